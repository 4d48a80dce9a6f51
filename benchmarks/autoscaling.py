"""Autoscaling from zero with enough work to grow the model pool: how long the job waits for its
first GPU node, and whether the pool grows as more GPU nodes come.

    .venv/bin/python benchmarks/autoscaling.py [--rows 600] [--max-gpu-nodes 2] [--no-write]

The harness of tests/test_autoscaling.py (tests/autoscaling.py: Ray's fake multi-node provider
with the node types of infra/aws/cluster.yaml, no worker at the start, ``ray job submit``), on a
bigger corpus of 1 s tones in a moto S3 on loopback, with the tiny models there too; batches of
one clip keep the model actor busy long enough for Ray Data to ask for a second. Fake nodes are
processes on this machine: they start in seconds, where a cloud's GPU nodes take minutes. Writes
into docs/benchmarks.md between the ``autoscaling`` markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import start_s3, write_results  # noqa: E402

from tests.autoscaling import alive, figures, run_autoscaled  # noqa: E402
from tests.factories import Corpus  # noqa: E402

BUCKET = "autoscaling-bench"


def upload_models(folder: Path) -> list[str]:
    """The tiny models, built and copied to S3; their command-line flags."""
    import fsspec

    from speech_emotion.tiny_models.emotion import build_tiny_emotion_model, build_tiny_text_encoder
    from speech_emotion.tiny_models.whisper import build_tiny_whisper

    built = {
        "--emotion-model": build_tiny_emotion_model(folder / "emotion", mode="concat"),
        "--text-encoder": build_tiny_text_encoder(folder / "bert"),
        "--whisper-model": build_tiny_whisper(folder / "whisper"),
    }
    fs = fsspec.filesystem("s3")
    flags = []
    for flag, path in built.items():
        fs.put(f"{path}/", f"{BUCKET}/models/{path.name}/", recursive=True)
        flags += [flag, f"s3://{BUCKET}/models/{path.name}"]
    return flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--max-gpu-nodes", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    os.environ["HF_HUB_OFFLINE"] = "1"
    server = start_s3()
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as folder:
            flags = upload_models(Path(folder))
        corpus = Corpus(f"s3://{BUCKET}/corpus")
        corpus.add_tones([f"clip-{i:05d}" for i in range(args.rows)])
        output = f"s3://{BUCKET}/labels"
        job_args = [corpus.manifest, output, *flags, "--device", "cpu", "--lease-timeout-s", "10"]
        job_args += ["--batch-size", "1", "--decode-batch-size", "4", "--cpu-workers", "2"]
        job = run_autoscaled(job_args, output, max_gpu=args.max_gpu_nodes)
    finally:
        server.kill()
    pool = [alive("models", m) for m in job.timeline]
    grew = max(pool) > 1
    line = (
        f"Latest run: `python benchmarks/autoscaling.py --rows {args.rows} --max-gpu-nodes "
        f"{args.max_gpu_nodes}` on {dt.date.today()}, {platform.machine()}: {figures(job)}; "
        f"{sum(job.rows.values())} rows committed. The model pool "
        f"{'grew' if grew else 'did not grow'} ({' -> '.join(_changes(pool))} live actors)."
    )
    print(line)
    if not args.no_write:
        write_results(line, "autoscaling")


def _changes(values: list[int]) -> list[str]:
    out: list[str] = []
    for value in values:
        if not out or out[-1] != str(value):
            out.append(str(value))
    return out


if __name__ == "__main__":
    main()
