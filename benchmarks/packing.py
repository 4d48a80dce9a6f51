"""Whisper window packing: encoder windows per audio hour, Whisper's time and word error rate, with
short clips packed into shared 30 s windows and with a window per clip, on a real Whisper.

    .venv/bin/python benchmarks/packing.py [--clips 60] [--no-write]

The corpus is ``--clips`` recordings of 1-20 s, each one to six espeak-ng sentences
(tests/data/speech) with pauses of 0.3-1.2 s, 16 kHz FLAC on local disk. Each condition runs the
job's decode stage over batches of 16 recordings (as a decode actor does) and then Whisper
(OpenAI Whisper base, CTranslate2 int8 on CPU, from its PyPI packages: benchmarks/real_models.py)
through the job's annotator, timing Whisper alone. Writes into docs/benchmarks.md between the
``packing`` markers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_models import models_dir, whisper_base  # noqa: E402
from throughput import cpu_name, write_results  # noqa: E402

from tests.audiogen import encode  # noqa: E402
from tests.factories import SENTENCES, FakeClassifier, recording, sentence, table, wer  # noqa: E402

RATE = 16000


def corpus(folder: Path, clips: int, seed: int = 7) -> tuple[list[dict], dict[str, str]]:
    """Recordings of 1-20 s of sentences; their manifest rows and what is said in each."""
    rng = np.random.default_rng(seed)
    names = sorted(SENTENCES)
    rows, said = [], {}
    for i in range(clips):
        parts, texts = [], []
        for _ in range(int(rng.integers(1, 7))):
            name = names[int(rng.integers(len(names)))]
            if sum(len(p) for p in parts) + len(sentence(name)) > 19 * RATE:
                break
            parts += [sentence(name), np.zeros(int(rng.uniform(0.3, 1.2) * RATE), np.float32)]
            texts.append(SENTENCES[name])
        path = folder / f"clip{i:03d}.flac"
        path.write_bytes(encode(np.concatenate(parts[:-1]), RATE, "flac"))
        rows.append(recording(f"clip{i:03d}", audio=str(path)))
        said[f"clip{i:03d}"] = " ".join(texts)
    return rows, said


def measure(rows: list[dict], said: dict[str, str], whisper, packing: bool) -> dict[str, float]:
    import pyarrow as pa

    from speech_emotion.annotator import Annotator
    from speech_emotion.config import DecodeConfig
    from speech_emotion.decoded import read_table
    from speech_emotion.schema import RECORDING_SCHEMA
    from speech_emotion.stages import DecodeStage

    stage = DecodeStage(
        DecodeConfig(), whisper_features=whisper.feature_spec, language="en", packing=packing
    )
    annotator = Annotator(FakeClassifier(needs_audio=False), whisper, language="en")
    heard, audio_s, decode_s = {}, 0.0, 0.0
    for start in range(0, len(rows), 16):
        began = time.perf_counter()
        batch = pa.concat_tables(stage(table(RECORDING_SCHEMA, rows[start : start + 16])))
        decode_s += time.perf_counter() - began
        found, live, clips, windows = read_table(batch)
        audio_s += sum(found[i]["duration_s"] for i in live)
        notes = annotator.annotate(clips, windows)
        heard.update({found[i]["id"]: n.transcript or "" for i, n in zip(live, notes, strict=True)})
    figures = annotator.take_figures()
    hours = audio_s / 3600
    return {
        "audio_s": audio_s,
        "windows": figures["whisper_windows"],
        "windows_per_hour": figures["whisper_windows"] / hours,
        "whisper_s": figures["whisper_s"],
        "decode_s": decode_s,
        "wer": float(np.mean([wer(said[name], text) for name, text in heard.items()])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 threads")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from speech_emotion.asr import WhisperTranscriber

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows, said = corpus(work, args.clips)
        model = whisper_base(models_dir(None))  # built once, cached
        whisper = WhisperTranscriber(
            str(model), compute_type="int8", batch_size=1, cpu_threads=args.threads
        )
        measure(rows[:2], said, whisper, packing=False)  # warm up: first-call costs out
        results = {packing: measure(rows, said, whisper, packing) for packing in (False, True)}
    off, on = results[False], results[True]
    ideal = 3600 / 30
    lines = [
        f"{args.clips} recordings of 1-20 s ({off['audio_s'] / 60:.1f} min of audio), Whisper "
        f"base int8 on {args.threads} CPU threads, {cpu_name()}, {time.strftime('%Y-%m-%d')}; "
        f"`.venv/bin/python benchmarks/packing.py --clips {args.clips}`, one run:",
        "",
        "| --whisper-packing | encoder windows | windows per audio hour | Whisper s "
        "| audio-s per Whisper-s | mean WER | decode stage s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in (("off", off), ("on", on)):
        lines.append(
            f"| {name} | {r['windows']:.0f} | {r['windows_per_hour']:.0f} | {r['whisper_s']:.1f} "
            f"| {r['audio_s'] / r['whisper_s']:.2f} | {r['wer']:.3f} | {r['decode_s']:.1f} |"
        )
    lines += [
        "",
        f"The ideal is {ideal:.0f} windows per audio hour (one per 30 s). Packing: "
        f"**{off['windows'] / on['windows']:.2f}x** fewer encoder windows, Whisper "
        f"**{off['whisper_s'] / on['whisper_s']:.2f}x** faster, WER {on['wer'] - off['wer']:+.3f}.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_results(text, "packing")


if __name__ == "__main__":
    main()
