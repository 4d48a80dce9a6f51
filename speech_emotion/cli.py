"""``speech-emotion``: the command line, and the one place a :class:`JobConfig` is built.

Known failures (bad manifest, bad setting, unreachable model) print one clear line and exit 2;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence

from .config import (
    MODES,
    ConfigError,
    DecodeConfig,
    JobConfig,
    ManifestConfig,
    ModelConfig,
    ResourceConfig,
)
from .errors import ManifestError, ModelLoadError

__all__ = ["main", "build_parser", "job_config_from_args"]

_KNOWN_FAILURES = (ConfigError, ManifestError, ModelLoadError)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", choices=MODES, default="concat", help="fusion mode (default concat)"
    )
    parser.add_argument(
        "--language", default="en", help="en, es, ... or auto to detect (default en)"
    )
    parser.add_argument("--emotion-model", help="hub id, folder or s3:// URI of the checkpoint")
    parser.add_argument("--text-encoder", help="text encoder for fusion modes (default: BERT)")
    parser.add_argument("--whisper-model", default="large-v3-turbo", help="faster-whisper model")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto")
    parser.add_argument("--whisper-compute-type", default="auto", help="CTranslate2 compute type")
    parser.add_argument("--beam-size", type=int, default=5, help="Whisper beam size")
    parser.add_argument("--model-cache-dir", help="local cache for models from object storage")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-emotion", description="Annotate speech with transcripts and emotions."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every batch")
    commands = parser.add_subparsers(dest="command", required=True)

    annotate = commands.add_parser("annotate", help="annotate a manifest of audio files on Ray")
    annotate.add_argument("manifest", help="manifest file or folder (any fsspec URI)")
    annotate.add_argument("output", help="output Parquet dataset folder (any fsspec URI)")
    for column in ("audio", "id", "text", "language"):
        annotate.add_argument(
            f"--{column}-column", default=column, help=f"manifest column for {column}"
        )
    _add_model_options(annotate)
    annotate.add_argument("--batch-size", type=int, default=16, help="clips per model batch")
    annotate.add_argument(
        "--decode-batch-size", type=int, default=16, help="clips per decode batch"
    )
    annotate.add_argument(
        "--cpu-workers",
        type=_workers,
        default=None,
        help="max decode actors (default auto: as many as the cluster has CPUs for)",
    )
    annotate.add_argument(
        "--gpu-workers",
        type=_workers,
        default=None,
        help="max model actors (default auto: one per GPU, growing with an autoscaling cluster)",
    )
    annotate.add_argument(
        "--num-gpus-per-worker", type=float, default=1.0, help="GPUs per model actor (0: CPU only)"
    )
    annotate.add_argument("--cpus-per-gpu-worker", type=float, default=1.0)
    annotate.add_argument("--min-duration-s", type=float, default=0.1)
    annotate.add_argument("--max-duration-s", type=float, default=1800.0)
    annotate.add_argument(
        "--ray-address",
        help="Ray cluster to join (default: the job's cluster under `ray job submit`, else a "
        "new local Ray)",
    )
    annotate.add_argument(
        "--run-id",
        help="name of this run (default: resume the run that did not finish, else a new "
        "time-based id)",
    )
    annotate.add_argument(
        "--max-attempts", type=int, default=3, help="give up on a row after this many failures"
    )
    annotate.add_argument(
        "--allowed-prefix",
        action="append",
        help="audio must be under this URI prefix (repeatable; default: the manifest's bucket "
        "or folder)",
    )

    runs = commands.add_parser("runs", help="list the committed runs of an output dataset")
    runs.add_argument("output", help="output Parquet dataset folder (any fsspec URI)")

    predict = commands.add_parser("predict", help="classify one file (models cached per process)")
    predict.add_argument("file", help="audio file (any fsspec URI)")
    predict.add_argument("--text", help="transcript; when absent, Whisper transcribes")
    _add_model_options(predict)
    return parser


def _workers(value: str) -> int | None:
    """An actor count, or "auto" (None) to size the pool from the cluster."""
    return None if value == "auto" else int(value)


def job_config_from_args(args: argparse.Namespace) -> JobConfig:
    return JobConfig(
        manifest=ManifestConfig(
            uri=args.manifest,
            audio_column=args.audio_column,
            id_column=args.id_column,
            text_column=args.text_column,
            language_column=args.language_column,
        ),
        output=args.output,
        decode=DecodeConfig(
            min_duration_s=args.min_duration_s,
            max_duration_s=args.max_duration_s,
            allowed_prefixes=tuple(args.allowed_prefix) if args.allowed_prefix else None,
        ),
        models=_model_config(args),
        resources=ResourceConfig(
            batch_size=args.batch_size,
            decode_batch_size=args.decode_batch_size,
            cpu_workers=args.cpu_workers,
            gpu_workers=args.gpu_workers,
            num_gpus_per_worker=args.num_gpus_per_worker,
            cpus_per_gpu_worker=args.cpus_per_gpu_worker,
            # Inside `ray job submit`, Ray sets RAY_ADDRESS; a plain run starts its own Ray rather
            # than joining whatever cluster happens to run on the machine.
            ray_address=args.ray_address or os.environ.get("RAY_ADDRESS") or "local",
        ),
        run_id=args.run_id,
        max_attempts=args.max_attempts,
    )


def _model_config(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(
        mode=args.mode,
        language=args.language,
        emotion_model=args.emotion_model,
        text_encoder=args.text_encoder,
        whisper_model=args.whisper_model,
        device=args.device,
        precision=args.precision,
        whisper_compute_type=args.whisper_compute_type,
        beam_size=args.beam_size,
        cache_dir=args.model_cache_dir,
    )


def _annotate(args: argparse.Namespace) -> int:
    from .pipeline import run

    summary = run(job_config_from_args(args))
    print(summary)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from .output import OutputStore

    store = OutputStore(args.output)
    print(
        f"{'run_id':<26} {'run_date':<10} {'rows':>8} {'ok':>8} {'error':>7} "
        f"{'skipped':>8} {'audio_h':>8} {'wall_s':>8}"
    )
    for r in store.records():
        skipped = r["skipped_done"] + r["skipped_exhausted"]
        print(
            f"{r['run_id']:<26} {r['run_date']:<10} {r['rows']:>8} {r['ok']:>8} "
            f"{r['rows'] - r['ok']:>7} {skipped:>8} {r['audio_s'] / 3600:>8.3f} "
            f"{r['wall_s']:>8.1f}"
        )
    for run_id in store.uncommitted_runs():
        print(f"{run_id:<26} (not committed: running, or crashed; re-run the job to resume it)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .predict import Predictor

    predictor = Predictor(_model_config(args))
    print(json.dumps(predictor.predict(args.file, args.text), indent=2))
    return 0


# Ray keeps only the text of an actor's __init__ error (e.g. a checkpoint that does not fit the
# mode, found on the GPU node), so a known failure is also recognised by name in that text.
_KNOWN_IN_TEXT = re.compile(
    r"speech_emotion\.(?:errors|config)\.(?:ConfigError|ManifestError|ModelLoadError): (.+)"
)


def _known_failure(exc: BaseException) -> str | None:
    """The message of a known failure, however deeply Ray wrapped it on its way to the driver."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _KNOWN_FAILURES):
            return str(current)
        found = _KNOWN_IN_TEXT.findall(str(current))
        if found:
            return found[-1]
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = {"annotate": _annotate, "predict": _predict, "runs": _runs}[args.command]
    try:
        return handler(args)
    except Exception as exc:
        known = _known_failure(exc)
        if known is None:
            raise
        print(f"speech-emotion: error: {known}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
