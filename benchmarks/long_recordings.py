"""Long recordings through the whole job: memory per worker, segment mode against --segment off,
Whisper encoder windows per hour of speech, and what voice activity detection costs.

    .venv/bin/python benchmarks/long_recordings.py [--lengths-min 5,30,120] [--no-write]

Each recording is espeak-ng sentences (tests/data/speech) with pauses of 0.3-1.6 s between
them, 16 kHz mono WAV on local disk, annotated alone by the real pipeline on a local Ray with tiny
random models (CPU): the figures are plumbing and memory, not model speed. For every length it
records the peak private memory (RssAnon) of each kind of process; for lengths up to 30 minutes it
also runs ``--segment off`` on the same file. Writes into docs/benchmarks.md between the
``long`` markers.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import ProcessSampler, tiny_models, write_results  # noqa: E402

from speech_emotion.config import (  # noqa: E402
    DecodeConfig,
    JobConfig,
    ManifestConfig,
    ModelConfig,
    OutputConfig,
    ResourceConfig,
    SegmentConfig,
)
from tests.audiogen import encode  # noqa: E402
from tests.factories import SENTENCES, sentence  # noqa: E402

RATE = 16000


def long_recording(path: Path, minutes: float, seed: int) -> float:
    """Writes ``minutes`` of sentences and pauses as a WAV; returns the seconds of speech."""
    rng = np.random.default_rng(seed)
    names = sorted(SENTENCES)
    parts, speech_s, total = [], 0.0, 0
    while total < minutes * 60 * RATE:
        said = sentence(names[int(rng.integers(len(names)))])
        pause = np.zeros(int(rng.uniform(0.3, 1.6) * RATE), np.float32)
        parts += [said, pause]
        speech_s += len(said) / RATE
        total += len(said) + len(pause)
    path.write_bytes(encode(np.concatenate(parts), RATE, "wav"))
    return speech_s


def run_once(work: Path, audio: Path, models: dict[str, str], segment: str, name: str):
    import ray

    from speech_emotion.output import open_output
    from speech_emotion.pipeline import run

    manifest = work / f"{name}.jsonl"
    manifest.write_text(f'{{"id": "{audio.stem}", "audio": "{audio}"}}\n')
    output = work / f"out-{name}"
    config = JobConfig(
        manifest=ManifestConfig(uri=str(manifest)),
        output=OutputConfig(uri=str(output)),
        decode=DecodeConfig(segment=SegmentConfig(mode=segment), max_duration_s=3 * 3600.0),
        models=ModelConfig(mode="concat", **models),
        resources=ResourceConfig(
            num_gpus_per_worker=0, cpu_workers=1, gpu_workers=1, batch_size=16
        ),
    )
    with ProcessSampler(s3_pid=None) as processes:
        ray.init(include_dashboard=False, log_to_driver=False)
        started = time.perf_counter()
        summary = run(config)
        wall = time.perf_counter() - started
        ray.shutdown()
    rows = open_output(str(output)).read(["start_s", "end_s", "status", "segment_count"])
    return summary, wall, processes, rows


def windows_per_hour(rows, speech_s: float) -> tuple[float, float]:
    """Encoder windows per hour of speech: packed as the job packs them, and one a segment."""
    from speech_emotion.clips import Clip
    from speech_emotion.windows import plan_windows

    spans = sorted(zip(rows["start_s"].to_pylist(), rows["end_s"].to_pylist(), strict=True))
    clips = [Clip(round(s * RATE), round(e * RATE), s, e, whole=False) for s, e in spans]
    hours = speech_s / 3600
    return len(plan_windows(clips)) / hours, len(clips) / hours


def vad_cost(audio: Path) -> tuple[float, float, float]:
    """CPU seconds per audio hour of decoding, of VAD and segmenting, and of emotion features."""
    from speech_emotion.audio import decode_audio
    from speech_emotion.features import FeatureSpec, audio_features
    from speech_emotion.segments import find_segments, speech_probabilities

    started = time.process_time()
    track = decode_audio(audio.read_bytes(), max_duration_s=None).waveform
    decoded = time.process_time() - started
    started = time.process_time()
    found = find_segments(
        speech_probabilities(track), len(track), min_segment_s=1, max_segment_s=15
    )
    vad = time.process_time() - started
    started = time.process_time()
    for start, end in found:
        audio_features(FeatureSpec(), track[start:end])
    features = time.process_time() - started
    hours = len(track) / RATE / 3600
    return decoded / hours, vad / hours, features / hours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths-min", default="5,30,120")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lengths = [float(x) for x in args.lengths_min.split(",")]

    with tempfile.TemporaryDirectory(prefix="se-long-") as folder:
        work = Path(folder)
        models = tiny_models(work / "models", "concat")
        lines = [
            f"Latest run: `python benchmarks/long_recordings.py --lengths-min {args.lengths_min}` "
            f"on {time.strftime('%Y-%m-%d')}, {platform.machine()}, 2 CPUs, tiny random models "
            "(plumbing and memory, not model speed); one recording a run, local disk, one decode "
            "and one model worker.",
            "",
            "| recording | mode | rows | wall s | audio-s/s | decode worker peak private MB "
            "| model worker peak private MB | driver peak private MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        windows = []
        for i, minutes in enumerate(lengths):
            audio = work / f"long-{minutes:g}min.wav"
            speech_s = long_recording(audio, minutes, args.seed + i)
            modes = ["auto", "off"] if minutes <= 30 else ["auto"]
            for mode in modes:
                summary, wall, processes, rows = run_once(work, audio, models, mode, f"{i}{mode}")
                private = processes.private
                lines.append(
                    f"| {minutes:g} min | {'segments' if mode == 'auto' else 'off'} "
                    f"| {summary.rows} | {wall:.1f} | {summary.audio_s / wall:.1f} "
                    f"| {private.get('MapBatches(DecodeStage)', 0):.0f} "
                    f"| {private.get('MapBatches(ModelStage)', 0):.0f} "
                    f"| {private.get('driver', 0):.0f} |"
                )
                print(lines[-1], flush=True)
                if mode == "auto":
                    packed, alone = windows_per_hour(rows, speech_s)
                    windows.append((minutes, speech_s, packed, alone))
        lines += [
            "",
            "Whisper encoder windows per hour of speech (30 s each): segments packed into shared "
            "windows, as the job does, against one window a segment, and against `--segment off`, "
            "where long-form decoding slides a 30 s window over the whole file, pauses included.",
            "",
            "| recording | speech share | packed | one a segment | off (whole file) |",
            "|---|---|---|---|---|",
        ]
        for minutes, speech_s, packed, alone in windows:
            whole = (minutes * 60 / 30) / (speech_s / 3600)
            lines.append(
                f"| {minutes:g} min | {speech_s / (minutes * 60):.0%} | {packed:.0f} | {alone:.0f} "
                f"| {whole:.0f} |"
            )
        decode, vad, features = vad_cost(work / f"long-{lengths[-1]:g}min.wav")
        lines += [
            "",
            f"Decode-worker CPU per audio hour ({lengths[-1]:g} min file): decoding "
            f"{decode:.1f} s, voice activity detection and segmenting {vad:.1f} s, the emotion "
            f"model's features {features:.1f} s.",
        ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_results(markdown, section="long")


if __name__ == "__main__":
    main()
