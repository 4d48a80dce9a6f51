"""Whisper on a CPU: one window on every thread, or windows side by side on a thread each.

    .venv/bin/python benchmarks/whisper_workers.py [--clips 16] [--rounds 2] [--no-write]

Whisper base (int8, benchmarks/real_models.py) hears ``--clips`` espeak-ng clips of one to three
sentences, one window a call (as the job does on a CPU), through the job's ``WhisperTranscriber``
with CTranslate2 as one worker on every core, one worker on one thread, and one worker per core on
one thread each (``workers``: CTranslate2's ``num_workers``, calls from a thread each). Each
setting runs in a fresh process with torch loaded beside it and idle OpenMP threads asleep, as in
a model actor; the settings alternate. Writes into docs/benchmarks.md between the
``whisper-workers`` markers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def hear(clips: int, rounds: int, workers: int, threads: int) -> None:
    """One setting, in this process: prints seconds per round, then the transcripts' digest."""
    import numpy as np
    import torch
    from real_models import models_dir, whisper_base

    from speech_emotion.asr import WhisperTranscriber
    from tests.factories import SENTENCES, speech

    torch.set_num_threads(len(os.sched_getaffinity(0)))  # loaded and sized as in a model actor
    rng = np.random.default_rng(0)
    names = sorted(SENTENCES)
    waves = []
    for _ in range(clips):
        said = [names[int(rng.integers(len(names)))] for _ in range(int(rng.integers(1, 4)))]
        waves.append(speech(said, [0.5] * len(said), lead_s=0.3).samples)
    model = str(whisper_base(models_dir(None)))
    whisper = WhisperTranscriber(
        model, compute_type="int8", batch_size=1, cpu_threads=threads, workers=workers
    )
    whisper.transcribe(waves[:2], ["en"] * 2)  # first-call costs out
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        heard = whisper.transcribe(waves, ["en"] * len(waves))
        seconds.append(time.perf_counter() - started)
    audio_s = sum(len(w) for w in waves) / 16000
    print(f"RESULT {audio_s:.1f} {' '.join(f'{s:.2f}' for s in seconds)}")
    print(f"TEXT {hash(tuple(t.text for t in heard))}")


def main() -> None:
    from throughput import write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # workers threads
    args = parser.parse_args()
    if args.one:
        hear(args.clips, args.rounds, *args.one)
        return
    cores = len(os.sched_getaffinity(0))
    settings = [(1, cores), (cores, 1), (1, 1), (cores, 1), (1, cores)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONHASHSEED": "0"}
    rows, audio_s, texts = [], 0.0, set()
    for workers, threads in settings:
        done = subprocess.run(
            [sys.executable, __file__, "--clips", str(args.clips), "--rounds", str(args.rounds)]
            + ["--one", str(workers), str(threads)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        found = dict(
            line.split(" ", 1) for line in done.stdout.splitlines() if line[:4] in ("RESU", "TEXT")
        )
        audio, *seconds = found["RESULT"].split()
        audio_s = float(audio)
        texts.add(found["TEXT"])
        label = f"{workers} worker{'s' if workers > 1 else ''}, {threads} thread"
        label += "s" if threads > 1 else ""
        label += " each" if workers > 1 else ""
        rows.append(f"| {label} | " + " | ".join(seconds) + " |")
        print(rows[-1], flush=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    command = " ".join(["python benchmarks/whisper_workers.py", *sys.argv[1:]])
    lines = [
        f"Latest run: `{command}` on {time.strftime('%Y-%m-%d')}, {cores} CPUs, load average "
        f"{load} at the end: Whisper base (int8), {args.clips} clips ({audio_s:.0f} s of audio) "
        "one window a call, each setting a fresh process with torch loaded, in the order shown.",
        "",
        "| CTranslate2 | " + " | ".join(f"round {r + 1} s" for r in range(args.rounds)) + " |",
        "|---|" + "---|" * args.rounds,
        *rows,
        "",
        "Every setting wrote the same transcripts."
        if len(texts) == 1
        else "**The settings wrote different transcripts.**",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_results(text, "whisper-workers")


if __name__ == "__main__":
    main()
