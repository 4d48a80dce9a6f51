"""The GPU measurement: full-size models on one GPU, Whisper alone, the emotion model alone and the
whole job, in audio-hours per GPU-hour, with the GPU's busy fraction.

    benchmarks/gpu.sh              # on a GPU machine with the project installed: under 8 minutes
    benchmarks/gpu.sh --smoke      # the same steps on CPU, reduced, to catch mistakes first

Models (real_models.py, built on first use and cached): Whisper large-v3-turbo's shape with random
weights (CTranslate2 float16; its decoder writes ``TURBO_TOKENS`` tokens per window), w2v-bert-2.0
with the concat head and bert-base at the published sizes, random weights (bf16 on a GPU with
bf16, else fp16). Corpus: espeak-ng speech clips of 1-20 s (the test sentences, local disk), no
transcripts. Steps:

1. the model stage alone on batches the decode stage made beforehand (throughput.py's floor): the
   time inside Whisper's calls gives Whisper alone, the time inside the emotion model's calls the
   emotion model alone, the whole the model stage alone;
2. the whole job on a local Ray: manifest to Parquet, decode actors on the CPUs, one model actor
   on the GPU, actor start-up and model loading included.

Meanwhile ``nvidia-smi`` samples the GPU's utilisation every 100 ms (the share of time a kernel
was running, not how full the GPU was). Writes the table into docs/benchmarks.md between the
``gpu`` markers (not with ``--smoke``, whose CPU figures mean nothing for a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_models  # noqa: E402
from throughput import Floor, make_speech_corpus, run_floor, write_results  # noqa: E402

from speech_emotion.config import (  # noqa: E402
    JobConfig,
    ManifestConfig,
    ModelConfig,
    OutputConfig,
    ResourceConfig,
)

HOUR_S = 3600.0


class GpuSampler:
    """``nvidia-smi``'s GPU utilisation every 100 ms, kept with the time it was read."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._process: subprocess.Popen | None = None
        if shutil.which("nvidia-smi"):
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
                + ["-lms", "100", "-i", "0"],
                stdout=subprocess.PIPE,
                text=True,
            )
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if line.strip().isdigit():
                self.samples.append((time.monotonic(), float(line) / 100))

    def busy(self, start: float, end: float) -> float | None:
        """The mean utilisation between two ``time.monotonic()`` readings; None without a GPU."""
        chosen = [u for t, u in self.samples if start <= t <= end]
        return sum(chosen) / len(chosen) if chosen else None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU run)"


def job_config(work: Path, models: dict[str, str], args: argparse.Namespace) -> JobConfig:
    gpus = 0.0 if args.smoke else 1.0
    return JobConfig(
        manifest=ManifestConfig(uri=str(work / "corpus" / "manifest.jsonl")),
        output=OutputConfig(uri=str(work / "labels")),
        models=ModelConfig(mode="concat", device="cpu" if args.smoke else "auto", **models),
        resources=ResourceConfig(
            batch_size=args.batch_size, num_gpus_per_worker=gpus, gpu_workers=1
        ),
    )


def make_corpus(work: Path, args: argparse.Namespace) -> tuple[int, float]:
    """Clips enough for ``--audio-h`` of audio (``--clips`` with --smoke); no transcripts."""
    clips = args.clips or max(1, round(args.audio_h * HOUR_S / 10.5))  # 10.5 s on average
    seconds, _ = make_speech_corpus(work / "corpus", clips, 1.0, 20.0, args.seed)
    manifest = work / "corpus" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**r, "text": None}) + "\n" for r in rows))
    return clips, sum(seconds)


def run_job(config: JobConfig) -> float:
    import ray

    from speech_emotion.pipeline import run

    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        started = time.perf_counter()
        print(f"  job: {run(config)}", flush=True)
        return time.perf_counter() - started
    finally:
        ray.shutdown()


def rate(audio_s: float, seconds: float) -> str:
    return f"{audio_s / seconds:,.0f}" if seconds > 0 else "–"


def busy(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def report(
    args: argparse.Namespace,
    audio_s: float,
    clips: int,
    floor: Floor,
    job_s: float,
    busy_floor: float | None,
    busy_job: float | None,
    layers: dict[str, int],
) -> str:
    command = "benchmarks/gpu.sh " + " ".join(sys.argv[1:])
    windows_per_hour = floor.windows / (audio_s / HOUR_S)
    return "\n".join(
        [
            f"Latest run: `{command}` on {time.strftime('%Y-%m-%d')}, {gpu_name()}, "
            f"{os.cpu_count()} CPUs, {platform.machine()}.",
            "",
            f"Models: random large-v3-turbo-shaped Whisper (CTranslate2, "
            f"{real_models.TURBO_TOKENS} tokens a window, {layers['whisper']} encoder layers), "
            f"random w2v-bert-2.0 + concat head ({layers['emotion']} conformer layers) and "
            f"bert-base at the published widths; batch size {args.batch_size}. Corpus: {clips} "
            f"espeak-ng clips of 1-20 s, {audio_s / HOUR_S:.2f} h of audio, no transcripts; "
            f"{floor.windows} Whisper windows ({windows_per_hour:.0f} per audio hour).",
            "",
            "| what | seconds | audio-hours per GPU-hour | GPU busy |",
            "|---|---|---|---|",
            f"| Whisper alone (its calls in the model stage) | {floor.whisper_s:.1f} "
            f"| {rate(audio_s, floor.whisper_s)} | |",
            f"| emotion model alone (its calls in the model stage) | {floor.emotion_s:.1f} "
            f"| {rate(audio_s, floor.emotion_s)} | |",
            f"| model stage alone, on batches decoded beforehand | {floor.seconds:.1f} "
            f"| {rate(audio_s, floor.seconds)} | {busy(busy_floor)} |",
            f"| whole job: manifest to Parquet, Ray's start-up and model loading included "
            f"| {job_s:.1f} "
            f"| {rate(audio_s, job_s)} | {busy(busy_job)} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, a few clips, nothing written")
    parser.add_argument("--audio-h", type=float, default=1.0, help="corpus size (GPU run)")
    parser.add_argument("--clips", type=int, help="corpus size in clips (default: --audio-h)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--models-dir", help="real_models.py's cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.smoke and not args.clips:
        args.clips = 3
    started = time.perf_counter()
    root = real_models.models_dir(args.models_dir)
    # The smoke run builds the same models with 2 of their encoder layers: the same code and
    # widths, at a cost a CPU can run in a minute.
    layers = {"whisper": 2, "emotion": 2} if args.smoke else {"whisper": 32, "emotion": 24}
    models = {
        "whisper_model": str(real_models.whisper_turbo(root, encoder_layers=layers["whisper"])),
        "emotion_model": str(real_models.emotion_model(root, layers=layers["emotion"])),
        "text_encoder": str(real_models.text_encoder(root)),
    }
    print(f"models ready after {time.perf_counter() - started:.0f} s", flush=True)
    if args.smoke:
        print(f"smoke run: {layers} encoder layers, on CPU", flush=True)
    sampler = GpuSampler()
    with tempfile.TemporaryDirectory(prefix="se-gpu-") as folder:
        work = Path(folder)
        clips, audio_s = make_corpus(work, args)
        config = job_config(work, models, args)
        print(f"corpus: {clips} clips, {audio_s / HOUR_S:.2f} h; GPU: {gpu_name()}", flush=True)
        mark = time.monotonic()
        floor = run_floor(config, [("", "")] * clips)
        busy_floor = sampler.busy(mark, time.monotonic())
        print(f"  model stage alone: {floor}", flush=True)
        mark = time.monotonic()
        job_s = run_job(config)
        busy_job = sampler.busy(mark, time.monotonic())
    sampler.stop()
    markdown = report(args, audio_s, clips, floor, job_s, busy_floor, busy_job, layers)
    print(markdown)
    print(f"all done in {time.perf_counter() - started:.0f} s", flush=True)
    if not (args.smoke or args.no_write):
        write_results(markdown, "gpu")


if __name__ == "__main__":
    main()
