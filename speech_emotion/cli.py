"""``speech-emotion``: the command line, and the one place a :class:`JobConfig` is built.

Known failures (bad manifest, bad setting, unreachable model) print one clear line and exit 2;
a traceback means a bug. Defaults come from the configuration dataclasses, never from here, and
``--help`` shows every one.

Exit codes, for schedulers: 0 the run committed and something succeeded (or there was nothing to
do); 1 a bug; 2 a known failure, nothing committed; 3 committed, but no recording succeeded;
4 committed, but more recordings failed than ``--max-error-fraction`` allows; 143 / 130 stopped
by SIGTERM / SIGINT, nothing committed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Sequence

from .config import (
    CHANNEL_MODES,
    MANIFEST_FORMATS,
    MODES,
    OUTPUT_FORMATS,
    PRECISIONS,
    SEGMENT_MODES,
    DecodeConfig,
    JobConfig,
    ManifestConfig,
    ModelConfig,
    OutputConfig,
    ResourceConfig,
    SegmentConfig,
)
from .console import configure
from .errors import ConfigError, known_failure
from .stops import Stopped, stopped_by_signals

__all__ = [
    "main",
    "build_parser",
    "job_config_from_args",
    "EXIT_NOTHING_OK",
    "EXIT_TOO_MANY_ERRORS",
]

EXIT_KNOWN_FAILURE = 2
EXIT_NOTHING_OK = 3
EXIT_TOO_MANY_ERRORS = 4

_MANIFEST_HELP = """\
The manifest: a file, or a folder/prefix of them, at any fsspec URI (a path, s3://, gs://, ...);
.gz, .zst and .bz2 text files are read as such. --manifest-format (auto: from the files):

  table   JSONL, CSV or Parquet, one row per recording: `audio` (required; a URI, or a path
          relative to the manifest's folder), `id` (optional, unique; else a hash of the audio
          and span), `text` (optional transcript: Whisper is skipped for whole clips),
          `language` (optional code forced on Whisper), `offset_s` and `duration_s` (optional:
          only that span of the file is annotated)
  hf      Hugging Face audio datasets: Parquet shards whose `audio` column holds the files
          ({bytes, path}); decode workers read each row's bytes from the shard
  nemo    NeMo JSON lines: audio_filepath, offset, duration, text, lang
  lhotse  recordings + supervisions (.jsonl.gz; a row per supervision, on its channel, with its
          speaker), or cuts

A span of a file is annotated as a file of its own (start_s/end_s: its place in the file): it is
segmented when longer than --segment-over-s, and --min/--max-duration-s are its length's limits;
a lhotse supervision is on its channel whatever --channels says. A span the file does not hold
is a span_outside_audio row.

Audio must be on the manifest's own store: its bucket for a manifest in object storage, the
local disk for a local one (--allowed-prefix widens or narrows it). A manifest whose audio is
all elsewhere is refused before anything starts; a row elsewhere is an error row.

On a machine without a GPU the models run on CPU. For example, CPU only:

  speech-emotion annotate corpus/manifest.jsonl labels/ --num-gpus-per-worker 0

Exit codes: 0 committed (or nothing to do); 2 a setting, the manifest, a model or the output must
be fixed, or another run holds the output (nothing committed); 3 committed, no recording
succeeded; 4 committed, more failed than --max-error-fraction; 143/130 stopped by SIGTERM/SIGINT
(nothing committed; the same command resumes)."""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help; an option whose default is None says in words what
    happens instead."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or default in (None, False, argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def _option(
    parser: argparse.ArgumentParser, flag: str, config: type, name: str | None = None, **kwargs
) -> None:
    """An option whose default is that of the configuration field of the same name (or
    ``name``), so the command line and the library agree."""
    name = name or flag.removeprefix("--").replace("-", "_")
    [field] = [f for f in dataclasses.fields(config) if f.name == name]
    kwargs.setdefault("default", field.default)
    parser.add_argument(flag, **kwargs)


def _add_segment_options(parser: argparse.ArgumentParser, **segment) -> None:
    _option(
        parser,
        "--segment",
        SegmentConfig,
        "mode",
        choices=SEGMENT_MODES,
        help="cut recordings into speech segments: off, always, or auto (those longer than "
        "--segment-over-s)",
        **segment,
    )
    _option(
        parser,
        "--segment-over-s",
        SegmentConfig,
        "over_s",
        type=float,
        help="in auto mode, longer recordings are segmented, shorter ones stay whole",
    )
    _option(
        parser,
        "--min-segment-s",
        SegmentConfig,
        type=float,
        help="shorter speech joins a neighbouring segment",
    )
    _option(
        parser,
        "--max-segment-s",
        SegmentConfig,
        type=float,
        help="longer speech is cut at its longest pauses (at most 30)",
    )
    _option(
        parser,
        "--channels",
        DecodeConfig,
        choices=CHANNEL_MODES,
        help="mix: average the channels; split: annotate each channel on its own",
    )


def _segment_config(args: argparse.Namespace) -> SegmentConfig:
    return SegmentConfig(
        mode=args.segment,
        over_s=args.segment_over_s,
        min_segment_s=args.min_segment_s,
        max_segment_s=args.max_segment_s,
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    _option(
        parser,
        "--format",
        OutputConfig,
        choices=OUTPUT_FORMATS,
        help="parquet: files plus commit records; delta: a Delta table at OUTPUT; iceberg: the "
        "Iceberg table OUTPUT (NAMESPACE.TABLE); one commit per run (default %(default)s)",
    )
    parser.add_argument(
        "--catalog",
        help="iceberg: the pyiceberg catalog's name (default: pyiceberg's default catalog, else "
        "an embedded SQLite one)",
    )
    parser.add_argument(
        "--staging",
        help="delta, iceberg: where runs stage rows and keep records and reports (default: "
        "OUTPUT for delta, the table's location for iceberg)",
    )


def _output_config(args: argparse.Namespace) -> OutputConfig:
    return OutputConfig(
        uri=args.output, format=args.format, catalog=args.catalog, staging=args.staging
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    _option(
        parser,
        "--mode",
        ModelConfig,
        choices=MODES,
        help="fusion mode: concat, mean, multihead (speech and text), audio, text",
    )
    _option(
        parser,
        "--language",
        ModelConfig,
        help="a Whisper language code (en, es, ...) or auto to detect; a manifest row's wins; "
        "es selects the Spanish models",
    )
    parser.add_argument(
        "--emotion-model",
        action="append",
        metavar="[LANG=]SOURCE",
        help="hub id, folder or s3:// URI of the checkpoint for --language (en with auto), or, "
        "as LANG=SOURCE, for language LANG; repeatable (default: the published ones for --mode, "
        "en and es)",
    )
    parser.add_argument(
        "--text-encoder",
        action="append",
        metavar="[LANG=]SOURCE",
        help="text encoder for fusion modes, for --language or, as LANG=SOURCE, for LANG; "
        "repeatable (default: en google-bert/bert-base-uncased, es "
        "dccuchile/bert-base-spanish-wwm-uncased)",
    )
    _option(
        parser,
        "--fallback-language",
        ModelConfig,
        help="language whose models classify clips of a language without models, or of an "
        "unsure detection; default: such clips are error rows (unsupported_language, "
        "uncertain_language)",
    )
    _option(
        parser,
        "--min-language-probability",
        ModelConfig,
        type=float,
        help="with auto, a detected language picks the models from this probability up "
        "(faster-whisper's own bar)",
    )
    _option(
        parser,
        "--whisper-model",
        ModelConfig,
        help="faster-whisper size name, hub id, folder or s3:// URI",
    )
    _option(
        parser,
        "--device",
        ModelConfig,
        choices=("auto", "cpu", "cuda"),
        help="torch device; auto: CUDA where the model actor has a GPU",
    )
    _option(
        parser,
        "--precision",
        ModelConfig,
        choices=PRECISIONS,
        help="emotion model precision; auto: bf16/fp16 on CUDA, fp32 (the toolkit's) on CPU; "
        "int8: CPU only, Linear layers quantised (faster, slightly different probabilities)",
    )
    _option(
        parser,
        "--whisper-compute-type",
        ModelConfig,
        help="CTranslate2 compute type; auto: float16 on CUDA, int8 on CPU",
    )
    _option(parser, "--beam-size", ModelConfig, type=int, help="Whisper beam size")
    parser.add_argument(
        "--model-cache-dir",
        help="where models from object storage are copied, once per node (default: "
        "~/.cache/speech_emotion/models)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-emotion",
        description="Annotate speech with transcripts and emotions.",
        formatter_class=_Help,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, **kwargs) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help, description=help, formatter_class=_Help, **kwargs
        )
        # -v after the subcommand too; SUPPRESS keeps one given before it.
        sub.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP
        )
        return sub

    annotate = command(
        "annotate", "annotate a manifest of audio files on Ray", epilog=_MANIFEST_HELP
    )
    annotate.add_argument("manifest", help="manifest file or folder (any fsspec URI)")
    annotate.add_argument(
        "output",
        help="output dataset folder or Delta table (any fsspec URI; an object-store bucket must "
        "exist), or Iceberg table",
    )
    _add_output_options(annotate)
    _option(
        annotate,
        "--manifest-format",
        ManifestConfig,
        "format",
        choices=MANIFEST_FORMATS,
        help="table, hf, nemo, lhotse, or auto: decided from the files (see below)",
    )
    for column in ("audio", "id", "text", "language"):
        _option(annotate, f"--{column}-column", ManifestConfig, help=f"manifest column: {column}")
    for column in ("offset", "duration"):
        _option(
            annotate,
            f"--{column}-column",
            ManifestConfig,
            help=f"manifest column: a span's {column}, seconds",
        )
    _add_model_options(annotate)
    _option(
        annotate,
        "--batch-size",
        ResourceConfig,
        type=int,
        help="Whisper windows per model batch (a short clip, or up to 30 s of segments, each)",
    )
    _option(
        annotate,
        "--decode-batch-size",
        ResourceConfig,
        type=int,
        help="recordings per decode batch",
    )
    _option(
        annotate,
        "--cpu-workers",
        ResourceConfig,
        type=_workers,
        help="max decode actors (default auto: as many as the cluster has CPUs for)",
    )
    _option(
        annotate,
        "--gpu-workers",
        ResourceConfig,
        type=_workers,
        help="max model actors (default auto: one per GPU, growing with an autoscaling cluster)",
    )
    _option(
        annotate,
        "--num-gpus-per-worker",
        ResourceConfig,
        type=float,
        help="GPUs per model actor; 0: the models run on CPU. Without a GPU on the job's own "
        "local Ray the models run on CPU anyway; on a cluster, a request no node type can meet "
        "is refused",
    )
    _option(
        annotate,
        "--cpus-per-gpu-worker",
        ResourceConfig,
        type=_cpus,
        help="CPUs per model actor, and its models' threads (default auto: 1; on CPU-only runs "
        "the models' threads use every core of the node)",
    )
    _add_segment_options(annotate)
    _option(
        annotate,
        "--min-duration-s",
        DecodeConfig,
        type=float,
        help="shorter recordings are too_short error rows",
    )
    _option(
        annotate,
        "--max-duration-s",
        DecodeConfig,
        type=float,
        help="longer recordings are error rows (default: 1800 with --segment off, else 14400)",
    )
    annotate.add_argument(
        "--whisper-packing",
        choices=("on", "off"),
        default="on",
        help="on: short clips of several recordings share one of Whisper's 30 s windows, with "
        "silence between them, and its timestamps give each its words (rows say which window "
        "in whisper_window); off: a window per clip",
    )
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
    _option(
        annotate,
        "--max-attempts",
        JobConfig,
        type=int,
        help="give up on a recording after this many failures",
    )
    _option(
        annotate,
        "--progress-every-s",
        JobConfig,
        type=float,
        help="seconds between progress lines",
    )
    _option(
        annotate,
        "--lease-timeout-s",
        JobConfig,
        type=float,
        help="a run holds its output while it runs; one that crashed loses it after this long, "
        "and the same command then takes over and resumes",
    )
    _option(
        annotate,
        "--max-error-fraction",
        JobConfig,
        type=float,
        help="exit 4 (after committing) when a larger share of the recordings failed (default: "
        "fail only when none succeeded, exit 3)",
    )
    annotate.add_argument(
        "--allowed-prefix",
        action="append",
        help="audio must be under this URI prefix (repeatable; default: the manifest's store: "
        "its bucket, or the local disk)",
    )

    runs = command("runs", "list the committed (and unfinished) runs of an output dataset")
    runs.add_argument("output", help="output Parquet dataset folder (any fsspec URI)")
    _add_output_options(runs)

    report = command("report", "write an HTML report (self-contained, offline) of committed runs")
    report.add_argument("output", help="output dataset folder (any fsspec URI)")
    _add_output_options(report)
    report.add_argument(
        "--run", action="append", help="a run to report (repeatable; default: every run)"
    )
    report.add_argument("--out", default="report.html", help="the HTML file to write")

    predict = command("predict", "classify one file (models cached per process)")
    predict.add_argument("file", help="audio file (any fsspec URI)")
    predict.add_argument("--text", help="transcript; when absent, Whisper transcribes")
    _add_model_options(predict)
    # One file is the toolkit's whole-file call unless asked for its segments (a timeline).
    _add_segment_options(predict, default="off")
    return parser


_VERBOSE_HELP = "also show Ray's, the workers' and the models' own logs, and log every batch"


def _workers(value: str) -> int | None:
    """An actor count, or "auto" (None) to size the pool from the cluster."""
    return None if value == "auto" else int(value)


def _cpus(value: str) -> float | None:
    """A CPU count, or "auto" (None)."""
    return None if value == "auto" else float(value)


def job_config_from_args(args: argparse.Namespace) -> JobConfig:
    return JobConfig(
        manifest=ManifestConfig(
            uri=args.manifest,
            format=args.manifest_format,
            audio_column=args.audio_column,
            id_column=args.id_column,
            text_column=args.text_column,
            language_column=args.language_column,
            offset_column=args.offset_column,
            duration_column=args.duration_column,
        ),
        output=_output_config(args),
        decode=DecodeConfig(
            min_duration_s=args.min_duration_s,
            max_duration_s=args.max_duration_s,
            allowed_prefixes=tuple(args.allowed_prefix) if args.allowed_prefix else None,
            segment=_segment_config(args),
            channels=args.channels,
            whisper_packing=args.whisper_packing == "on",
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
        progress_every_s=args.progress_every_s,
        lease_timeout_s=args.lease_timeout_s,
        max_error_fraction=args.max_error_fraction,
        verbose=args.verbose,
    )


_LANGUAGE_PREFIX = re.compile(r"([a-z]{2,3})=(.+)")


def _per_language(values: list[str] | None) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """A repeatable [LANG=]SOURCE option: its plain SOURCE (the last one) and its LANG pairs."""
    plain, pairs = None, []
    for value in values or ():
        matched = _LANGUAGE_PREFIX.fullmatch(value)
        if matched:
            pairs.append((matched[1], matched[2]))
        else:
            plain = value
    return plain, tuple(pairs)


def _model_config(args: argparse.Namespace) -> ModelConfig:
    emotion_model, emotion_models = _per_language(args.emotion_model)
    text_encoder, text_encoders = _per_language(args.text_encoder)
    return ModelConfig(
        mode=args.mode,
        language=args.language,
        emotion_model=emotion_model,
        emotion_models=emotion_models,
        text_encoder=text_encoder,
        text_encoders=text_encoders,
        fallback_language=args.fallback_language,
        min_language_probability=args.min_language_probability,
        whisper_model=args.whisper_model,
        device=args.device,
        precision=args.precision,
        whisper_compute_type=args.whisper_compute_type,
        beam_size=args.beam_size,
        cache_dir=args.model_cache_dir,
    )


def _annotate(args: argparse.Namespace) -> int:
    from .pipeline import run

    config = job_config_from_args(args)
    try:
        with stopped_by_signals():
            summary = run(config)
    except Stopped as stop:
        _stop_ray()
        print(
            f"speech-emotion: stopped by {stop}, nothing committed; run the same command again "
            "to resume (what was staged is kept)",
            file=sys.stderr,
        )
        return stop.exit_code
    print(f"speech-emotion: {summary}")
    if summary.recordings and not summary.ok:
        print("speech-emotion: no recording succeeded (exit 3)", file=sys.stderr)
        return EXIT_NOTHING_OK
    limit = config.max_error_fraction
    if limit is not None and summary.recordings and summary.failed / summary.recordings > limit:
        print(
            f"speech-emotion: {summary.failed} of {summary.recordings} recordings failed, more "
            f"than --max-error-fraction {limit:g} allows (exit 4)",
            file=sys.stderr,
        )
        return EXIT_TOO_MANY_ERRORS
    return 0


def _existing_output(config: OutputConfig):
    """The output ``config`` names, its committed runs, unfinished runs and holder (each read
    once); a ConfigError if nothing was ever written there."""
    from .output import open_output

    output = open_output(config)
    runs, unfinished, holder = output.publisher.runs(), output.uncommitted(), output.holder()
    if not (runs or unfinished or holder):
        raise ConfigError(f"no output at {config.uri}: no committed or unfinished runs there")
    return output, runs, unfinished, holder


def _runs(args: argparse.Namespace) -> int:
    _, runs, unfinished, holder = _existing_output(_output_config(args))
    print(
        f"{'run_id':<26} {'run_date':<10} {'rows':>8} {'ok':>8} {'error':>7} "
        f"{'skipped':>8} {'audio_h':>8} {'wall_s':>8}"
    )
    for r in runs:
        skipped = r.skipped_done + r.skipped_exhausted
        print(
            f"{r.run_id:<26} {r.run_date:<10} {r.rows:>8} {r.ok:>8} "
            f"{r.rows - r.ok:>7} {skipped:>8} {r.audio_s / 3600:>8.3f} {r.wall_s:>8.1f}"
        )
    for run_id in unfinished:
        print(f"{run_id:<26} (not committed: running, or crashed; re-run the job to resume it)")
    if holder is not None:
        state = "expired: the next run takes over" if holder.expired() else "held"
        print(f"output {state} by {holder}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import fsspec

    from .report import report_for

    output, *_ = _existing_output(_output_config(args))
    html = report_for(output, args.run)
    with fsspec.open(args.out, "w") as f:
        f.write(html)
    print(f"report of {len(args.run) if args.run else 'every'} run(s) written to {args.out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .predict import Predictor

    predictor = Predictor(_model_config(args))
    if args.segment == "off" and args.channels == "mix":
        print(json.dumps(predictor.predict(args.file, args.text), indent=2))
        return 0
    rows = predictor.timeline(
        args.file, segment=_segment_config(args), channels=args.channels, text=args.text
    )
    print(f"{'start_s':>9} {'end_s':>9} {'channel':>7}  {'emotion':<9} {'score':>5}  transcript")
    for row in rows:
        channel = "mix" if row["channel"] is None else row["channel"]
        print(
            f"{row['start_s']:>9.2f} {row['end_s']:>9.2f} {channel:>7}  "
            f"{row['top_label']:<9} {row['top_score']:>5.2f}  {row['transcript'] or ''}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(args.verbose)
    handler = {"annotate": _annotate, "predict": _predict, "runs": _runs, "report": _report}[
        args.command
    ]
    try:
        return handler(args)
    except Exception as exc:
        known = known_failure(exc)
        if known is None:
            raise
        _stop_ray()  # so that no worker's log lines come after the one that says what to fix
        print(f"speech-emotion: error: {known}", file=sys.stderr)
        return EXIT_KNOWN_FAILURE


def _stop_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
