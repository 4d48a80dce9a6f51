"""Throughput: the pipeline against a plain one-file-at-a-time loop, same corpus, same models.

    .venv/bin/python benchmarks/throughput.py --clips 200

Makes a corpus of N synthetic clips (tones and noise, 1-20 s, mixed formats and rates), then runs
(a) the full pipeline on a local Ray and (b) a loop that reads, decodes, transcribes and classifies
one file at a time with the models kept loaded (what a user of the toolkit would write, minus its
per-call reloads). Prints audio-seconds per second for both and their ratio, and writes them into
docs/benchmarks.md between the result markers. Without model options it builds tiny random models
(CPU smoke scale); pass real model folders or hub ids on a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from speech_emotion.config import (  # noqa: E402
    DecodeConfig,
    JobConfig,
    ManifestConfig,
    ModelConfig,
    ResourceConfig,
)

RESULTS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def make_corpus(folder: Path, clips: int, transcript_fraction: float, seed: int) -> float:
    """Writes clips and a manifest; returns the total audio seconds."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    rows, total = [], 0.0
    (folder / "clips").mkdir(parents=True)
    for i in range(clips):
        seconds = float(rng.uniform(1.0, 20.0))
        rate = int(rng.choice([16000, 22050, 44100]))
        t = np.arange(int(seconds * rate)) / rate
        signal = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 800) * t) + 0.05 * rng.standard_normal(
            len(t)
        )
        name = f"clips/{i:06d}.{'flac' if i % 2 else 'wav'}"
        sf.write(folder / name, signal.astype(np.float32), rate)
        row = {"id": f"{i:06d}", "audio": name}
        if rng.uniform() < transcript_fraction:
            row["text"] = "this is the best day of my life"
        rows.append(row)
        total += seconds
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return total


def tiny_models(folder: Path) -> dict[str, str]:
    from speech_emotion.tiny_models.emotion import build_tiny_emotion_model, build_tiny_text_encoder
    from speech_emotion.tiny_models.whisper import build_tiny_whisper

    return {
        "emotion_model": str(build_tiny_emotion_model(folder / "emotion", projection_dim=16)),
        "text_encoder": str(build_tiny_text_encoder(folder / "bert", hidden_size=16)),
        "whisper_model": str(build_tiny_whisper(folder / "whisper")),
    }


def run_pipeline(config: JobConfig) -> float:
    from speech_emotion.pipeline import run

    started = time.perf_counter()
    summary = run(config)
    elapsed = time.perf_counter() - started
    print(f"  pipeline: {summary}")
    return elapsed


def run_naive_loop(config: JobConfig, corpus: Path) -> tuple[float, float]:
    """(load seconds, loop seconds) for one file at a time with models kept loaded."""
    from speech_emotion.audio import decode_audio
    from speech_emotion.predict import Predictor
    from speech_emotion.stages import read_bytes

    started = time.perf_counter()
    predictor = Predictor(config.models)
    predictor.classifier  # noqa: B018 - load now, outside the timed loop
    predictor.transcriber  # noqa: B018
    loaded = time.perf_counter()
    language = config.models.language
    for line in (corpus / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        waveform = decode_audio(read_bytes(str(corpus / row["audio"]))).waveform
        text = row.get("text") or predictor.transcriber.transcribe([waveform], [language])[0].text
        predictor.classifier.classify([waveform], [text])
    return loaded - started, time.perf_counter() - loaded


def write_results(markdown: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    RESULTS.write_text(f"{head}{START}\n{markdown}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description="pipeline vs one-file-at-a-time throughput")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--transcript-fraction", type=float, default=0.0)
    parser.add_argument("--emotion-model")
    parser.add_argument("--text-encoder")
    parser.add_argument("--whisper-model")
    parser.add_argument("--num-gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--cpu-workers", type=int, default=1)
    parser.add_argument("--gpu-workers", type=int, default=1)
    parser.add_argument("--cpus-per-gpu-worker", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    import ray
    import torch

    work = Path(tempfile.mkdtemp(prefix="se-bench-"))
    try:
        audio_s = make_corpus(work / "corpus", args.clips, args.transcript_fraction, args.seed)
        models = {
            "emotion_model": args.emotion_model,
            "text_encoder": args.text_encoder,
            "whisper_model": args.whisper_model,
        }
        tiny = not any(models.values())
        if tiny:
            models = tiny_models(work / "models")
        config = JobConfig(
            manifest=ManifestConfig(uri=str(work / "corpus" / "manifest.jsonl")),
            output=str(work / "out"),
            decode=DecodeConfig(),
            models=ModelConfig(**{k: v for k, v in models.items() if v}),
            resources=ResourceConfig(
                batch_size=args.batch_size,
                cpu_workers=args.cpu_workers,
                gpu_workers=args.gpu_workers,
                num_gpus_per_worker=args.num_gpus_per_worker,
                cpus_per_gpu_worker=args.cpus_per_gpu_worker,
            ),
        )
        print(f"corpus: {args.clips} clips, {audio_s / 60:.1f} min of audio; tiny models: {tiny}")
        ray.init(include_dashboard=False, log_to_driver=False)
        pipeline_s = run_pipeline(config)
        ray.shutdown()
        load_s, naive_s = run_naive_loop(config, work / "corpus")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        shutil.rmtree(work, ignore_errors=True)

    pipeline_rate, naive_rate = audio_s / pipeline_s, audio_s / naive_s
    command = "python benchmarks/throughput.py " + " ".join(sys.argv[1:])
    model_note = "tiny random models" if tiny else "models: " + ", ".join(map(str, models.values()))
    markdown = "\n".join(
        [
            f"Latest run: `{command}` on {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
            f"{model_note}.",
            "",
            f"Corpus: {args.clips} clips, {audio_s / 60:.1f} min of audio (1-20 s each), "
            f"transcript fraction {args.transcript_fraction}.",
            "",
            "| run | wall s | audio-s/s |",
            "|---|---|---|",
            f"| pipeline (Ray, model loading included) | {pipeline_s:.1f} | {pipeline_rate:.1f} |",
            f"| one file at a time, models kept loaded (load {load_s:.1f} s excluded) "
            f"| {naive_s:.1f} | {naive_rate:.1f} |",
            "",
            f"Ratio pipeline / one-at-a-time: **{pipeline_rate / naive_rate:.2f}**. "
            f"Driver peak RSS {peak_mb:.0f} MB.",
        ]
    )
    print(markdown)
    if not args.no_write:
        write_results(markdown)
        print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
