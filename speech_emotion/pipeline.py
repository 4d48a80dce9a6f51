"""The annotation job: manifest in, labelled rows out, on Ray.

Reads top to bottom: validate the manifest and the models on the driver (fail fast, before any
worker starts); skip what earlier runs finished; decode on a CPU actor pool and run the models on a
GPU actor pool, writing Parquet into the run's staging folder; then prepare the rows where readers
will see them, check every expected recording came out whole exactly once, and commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .config import JobConfig, ResourceConfig
from .console import quiet_native_stderr, quiet_ray_data
from .crashes import CrashGuard, Marks
from .errors import known_failure
from .fetch import default_allowed_prefix
from .lease import Lease
from .ledger import RunRecord
from .manifest import read_manifest
from .output import Output, open_output
from .plan import ModelPlan, plan_models
from .preflight import check_job
from .progress import Progress
from .resources import fit_gpus
from .runs import (
    SUMMARY_COLUMNS,
    RunSummary,
    check_same_settings,
    choose_run_id,
    nothing_to_do,
    select_recordings,
    summarise,
)
from .schema import SCHEMA_VERSION
from .stages import DecodeStage, ModelStage
from .stops import reclaim_signals
from .tally import Report, Tally, TallyClient, operator_figures
from .threads import SLEEPING_OPENMP

if TYPE_CHECKING:
    import ray.data
    from ray.data import ActorPoolStrategy

__all__ = [
    "RunSummary",
    "build_dataset",
    "decode_stage_kwargs",
    "model_stage_kwargs",
    "model_pool",
    "no_progress_timeout_s",
    "run",
]

logger = logging.getLogger(__name__)

# Manifest rows per input block: several blocks per decode actor so work spreads, and never more
# than a few decode batches. A decode task holds its block's audio until it yields, so bigger
# blocks meant memory growing with the corpus and the model stage waiting a minute for its first
# batch (1,024-row blocks on 10,000 clips); a few thousand small blocks schedule easily.
_BLOCKS_PER_DECODE_WORKER = 4
_DECODE_BATCHES_PER_BLOCK = 4
# Object-store errors that pass, as s3fs/botocore raise them. Ray Data retries a failed file write
# (10 attempts, backoff doubling from 1 s to 32 s) only if the error matches `retried_io_errors`,
# whose defaults are pyarrow's own S3 messages; our writes go through s3fs, so without these an
# outage longer than botocore's five quick attempts fails the run (docs/reliability.md).
_TRANSIENT_IO_ERRORS = (
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)


def with_default_prefixes(config: JobConfig) -> JobConfig:
    """Audio may come only from the manifest's own bucket or folder, unless told otherwise."""
    if config.decode.allowed_prefixes is not None:
        return config
    prefixes = (default_allowed_prefix(config.manifest.uri),)
    return replace(config, decode=replace(config.decode, allowed_prefixes=prefixes))


def _blocks(recordings: pa.Table, workers: int, decode_batch_size: int) -> list[pa.Table]:
    # A small manifest would otherwise be one block, and one actor would get all of it.
    per_block = math.ceil(recordings.num_rows / (workers * _BLOCKS_PER_DECODE_WORKER))
    if per_block > decode_batch_size:
        # Whole decode batches: Ray Data cuts batches within a block, and a block of 25 rows
        # became batches of 16 and 9, the 9 packing fewer clips into Whisper's windows.
        per_block = decode_batch_size * math.ceil(per_block / decode_batch_size)
    per_block = max(1, min(per_block, decode_batch_size * _DECODE_BATCHES_PER_BLOCK))
    return [recordings.slice(at, per_block) for at in range(0, recordings.num_rows, per_block)]


def build_dataset(
    config: JobConfig,
    recordings: pa.Table,
    plan: ModelPlan,
    report: Report | None = None,
    marks: Marks | None = None,
) -> ray.data.Dataset:
    """The stages; ``report`` takes their figures, ``marks`` their work in hand (crashes.py)."""
    import ray.data
    from ray.data import ActorPoolStrategy

    context = ray.data.DataContext.get_current()
    context.retried_io_errors = list(
        dict.fromkeys([*context.retried_io_errors, *_TRANSIENT_IO_ERRORS])
    )
    res = config.resources
    # A GPU actor already reserves one CPU, and Ray warns when both are given: say what differs.
    default_cpus = res.num_gpus_per_worker > 0 and res.cpus_per_gpu_worker in (None, 1)
    cluster = ray.cluster_resources()
    decode_workers = res.cpu_workers or max(1, int(cluster.get("CPU", 1)))
    ds: ray.data.Dataset = ray.data.from_arrow(
        _blocks(recordings, decode_workers, res.decode_batch_size)
    )
    ds = ds.map_batches(
        DecodeStage,
        fn_constructor_kwargs=decode_stage_kwargs(config, plan, report, marks),
        batch_size=res.decode_batch_size,
        batch_format="pyarrow",
        num_cpus=1,
        compute=ActorPoolStrategy(min_size=1, max_size=res.cpu_workers),
    )
    ds = ds.map_batches(
        ModelStage,
        fn_constructor_kwargs=model_stage_kwargs(config, plan, report, marks, _node_cpus()),
        batch_size=res.batch_size,
        batch_format="pyarrow",
        num_cpus=None if default_cpus else res.cpus_per_gpu_worker or 1,
        num_gpus=res.num_gpus_per_worker,
        # torch and CTranslate2 in one process: idle OpenMP threads sleep (threads.py).
        runtime_env={"env_vars": SLEEPING_OPENMP},
        compute=model_pool(res, gpus=cluster.get("GPU", 0.0)),
    )
    ds.context.execution_no_progress_timeout_s = no_progress_timeout_s(
        res, cluster.get("GPU", 0.0), ds.context.execution_no_progress_timeout_s
    )
    return ds


def no_progress_timeout_s(res: ResourceConfig, gpus: float, default: float) -> float:
    """Ray Data's no-progress timeout for a run starting on a cluster with ``gpus`` GPUs: none
    while the model actors wait for the autoscaler's first GPU node. That wait is for cloud
    capacity, not a hang, and the timeout (30 min by default) ended it with a traceback once
    decoding had run ahead (docs/benchmarks.md); the progress line shows the wait, and
    ``ray job stop`` ends it cleanly, resumable."""
    return -1 if gpus < res.num_gpus_per_worker else default


def decode_stage_kwargs(
    config: JobConfig, plan: ModelPlan, report: Report | None = None, marks: Marks | None = None
) -> dict[str, Any]:
    """What each decode actor is built with (benchmarks build the same stages outside Ray)."""
    return {
        "config": config.decode,
        "features": plan.features,
        "whisper_features": plan.whisper_features,
        "whisper": plan.needs_whisper and config.models.needs_text,
        "detect": plan.needs_whisper and config.models.job_language is None,
        "language": config.models.job_language,
        "report": report,
        "crashes": CrashGuard(marks, "decode") if marks else None,
    }


def model_stage_kwargs(
    config: JobConfig,
    plan: ModelPlan,
    report: Report | None = None,
    marks: Marks | None = None,
    node_cpus: int | None = None,
) -> dict[str, Any]:
    """What each model actor is built with; ``node_cpus``: the cores of a node (default:
    this machine's)."""
    res = config.resources
    return {
        "config": config.models,
        "plan": plan,
        "batch_size": res.batch_size,
        "cpu_threads": model_threads(res, node_cpus or len(os.sched_getaffinity(0))),
        "report": report,
        "crashes": CrashGuard(marks, "models") if marks else None,
    }


def model_threads(res: ResourceConfig, node_cpus: int) -> int:
    """torch's and CTranslate2's threads in a model actor: its CPUs where set. Otherwise one
    with a GPU (it only feeds the GPU), and on CPU-only runs every core of the node, though
    Ray reserves one: next to real models decoding is a few per cent of the work, so a model
    actor on one thread left the other cores idle most of the time (docs/benchmarks.md,
    *Sharing the cores*)."""
    if res.cpus_per_gpu_worker is not None:
        return max(1, int(res.cpus_per_gpu_worker))
    return max(1, node_cpus) if res.num_gpus_per_worker == 0 else 1


def _node_cpus() -> int:
    """The cores of the largest node: where a CPU-only model actor may land."""
    import ray

    cpus = [int(node["Resources"].get("CPU", 1)) for node in ray.nodes() if node["Alive"]]
    return max(cpus, default=1)


def model_pool(res: ResourceConfig, gpus: float) -> ActorPoolStrategy:
    """Model actors: the configured maximum, else one per GPU the cluster has now, and more
    as an autoscaling cluster adds GPU nodes. CPU-only runs default to one: each model actor
    holds a full set of models in memory."""
    from ray.data import ActorPoolStrategy

    if res.gpu_workers is not None:
        return ActorPoolStrategy(min_size=1, max_size=res.gpu_workers)
    if res.num_gpus_per_worker == 0:
        return ActorPoolStrategy(size=1)
    # Starting at full width saves Ray Data's gradual scale-up on a cluster already up.
    initial = max(1, int(gpus // res.num_gpus_per_worker))
    return ActorPoolStrategy(min_size=1, max_size=None, initial_size=initial)


def run_stages(
    config: JobConfig, todo: pa.Table, plan: ModelPlan, staging: str, fs
) -> dict[str, dict[str, float]]:
    """Runs the stages over ``todo`` into ``staging``; returns what each stage did."""
    import ray
    import ray.data

    # Ray Data's bars and operator dumps (every 10 s in a log) give way to one steady line.
    ray.data.DataContext.get_current().enable_progress_bars = False
    tally: Any = _on_this_node(ray.remote(num_cpus=0)(Tally)).remote()
    client = TallyClient(tally)
    dataset = build_dataset(config, todo, plan, report=client, marks=client)

    def models() -> dict[str, float]:
        return ray.get(tally.totals.remote()).get("models", {})

    progress = Progress(models, todo.num_rows, config.progress_every_s)
    with progress, quiet_native_stderr(not config.verbose):
        dataset.write_parquet(staging, filesystem=fs)
    stages: dict[str, dict[str, float]] = ray.get(tally.totals.remote())
    ray.kill(tally)
    for stage, figures in operator_figures(dataset).items():
        stages.setdefault(stage, {}).update(figures)
    return {stage: {k: round(v, 3) for k, v in f.items()} for stage, f in stages.items()}


def _on_this_node(actor_class: Any) -> Any:
    """The run's own actor, kept on the driver's node. Needing no CPU, it could land on any
    worker node, and a lost worker (spot, scale-down: an autoscaler sees a node holding only
    it as idle) took the run's sums and marks with it: every stage then failed on its next
    call and the run stopped (docs/reliability.md). The driver's node cannot go without the
    run."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return actor_class.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)
    )


def _record(
    config: JobConfig,
    plan: ModelPlan | None,
    summary: RunSummary,
    started_at: str,
    files: list[str],
    stages: dict[str, dict[str, float]],
) -> RunRecord:
    models = config.models
    return RunRecord(
        run_id=summary.run_id,
        run_date=started_at[:10],
        started_at=started_at,
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(summary.wall_s, 3),
        manifest=config.manifest.uri,
        schema_version=SCHEMA_VERSION,
        rows=summary.rows,
        recordings=summary.recordings,
        ok=summary.ok,
        errors=summary.errors,
        skipped_done=summary.skipped_done,
        skipped_exhausted=summary.skipped_exhausted,
        audio_s=round(summary.audio_s, 3),
        files=files,
        models={
            "mode": models.mode,
            "languages": {
                language: {
                    "emotion_model": planned.models.emotion_model,
                    "emotion_model_revision": planned.emotion_revision,
                    "text_encoder": planned.models.text_encoder,
                    "text_encoder_revision": planned.text_encoder_revision,
                }
                for language, planned in (plan.sets if plan else {}).items()
            },
            "fallback_language": models.fallback_language,
            "whisper_model": models.whisper_model if plan and plan.needs_whisper else None,
            "whisper_model_revision": plan.whisper_revision if plan else None,
        },
        stages=stages,
        options=json.loads(json.dumps(dataclasses.asdict(config), default=str)),
    )


def run(config: JobConfig) -> RunSummary:
    """Runs (or resumes) one annotation job and commits it; returns what it did."""
    started = time.monotonic()
    recordings = read_manifest(config.manifest)
    config = with_default_prefixes(config)
    check_job(config, recordings)
    output = open_output(config.output, create=True)
    with output.lease(config.lease_timeout_s) as lease:
        return _run_holding(config, recordings, output, lease, started)


def _run_holding(
    config: JobConfig, recordings: pa.Table, output: Output, lease: Lease, started: float
) -> RunSummary:
    output.settle()  # runs stopped between a table's commit and the ledger's record
    run_id, resumed = choose_run_id(config.run_id, output.ledger, output.publisher.is_committed)
    lease.claim(run_id)
    history = output.history(resuming=run_id)
    output.ledger.drop_staged(run_id, history.partial)
    selection = select_recordings(recordings, history, config.max_attempts)
    if not selection.expected_ids:
        output.ledger.discard(run_id)  # a resumed run that had staged nothing
        return nothing_to_do(run_id, selection, time.monotonic() - started)
    # Models are checked only when there is work: a resumed run with nothing left needs no hub.
    plan = plan_models(config, selection.todo, run_id) if selection.todo.num_rows else None
    settings = {**config.row_settings, **(plan.revisions if plan else {})}
    started_at, first = output.ledger.start(run_id, settings)
    check_same_settings(run_id, first, settings, output.ledger.staging(run_id))
    logger.info("run %s: %d recordings to do", run_id, selection.todo.num_rows)
    stages: dict[str, dict[str, float]] = {}
    if plan is not None:
        staging = output.ledger.staging(run_id)
        with _dropped_if_empty(output.ledger, run_id):
            config = connect(config)
            stages = run_stages(config, selection.todo, plan, staging, output.ledger.fs)
    # Checked for torn files when the history was read; written whole by Ray since.
    staged = output.ledger.staged_files(run_id, check=False)
    files = output.publisher.prepare(run_id, started_at[:10], staged)
    written = output.publisher.read(files, SUMMARY_COLUMNS)
    summary = summarise(run_id, selection, written, time.monotonic() - started, resumed)
    record = _record(config, plan, summary, started_at, files, stages)
    lease.confirm()  # fencing: a run that lost its lease while stalled commits nothing
    output.publisher.commit(record)
    output.ledger.discard(run_id)
    _report(output, record)
    return summary


@contextlib.contextmanager
def _dropped_if_empty(ledger, run_id: str) -> Iterator[None]:
    """A run stopped by a known failure before it wrote a row leaves nothing to resume, so
    ``runs`` must not list it as crashed."""
    try:
        yield
    except Exception as exc:
        # Ray hands an actor's known failure over wrapped, known only by its text.
        if known_failure(exc) is not None and not ledger.staged_files(run_id, check=False):
            ledger.discard(run_id)
        raise


def connect(config: JobConfig) -> JobConfig:
    """Joins the cluster (or starts the job's own local Ray); returns the configuration with
    the model actors' resources fitted to it (:func:`resources.fit_gpus`)."""
    import ray

    if not config.verbose:
        quiet_ray_data()
    own = not ray.is_initialized() and config.resources.ray_address == "local"
    if not ray.is_initialized():
        # The job's own Ray starts its dashboard only with -v, which shows where it is: quiet,
        # nobody would know it was there, and it costs seconds at every start.
        ray.init(
            address=config.resources.ray_address,
            include_dashboard=config.verbose if own else None,
            log_to_driver=config.verbose,
            logging_level=logging.INFO if config.verbose else logging.ERROR,
        )
        reclaim_signals()
    return replace(config, resources=fit_gpus(config.resources, own_ray=own))


def _report(output, record: RunRecord) -> None:
    """The run's report next to its record; the run is committed whatever happens here."""
    from .report import write_report

    try:
        logger.info("report: %s", write_report(output, record))
    except Exception:
        logger.warning("run %s: its report could not be written", record.run_id, exc_info=True)
