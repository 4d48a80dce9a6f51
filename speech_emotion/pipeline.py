"""The annotation job: manifest in, labelled Parquet out, on Ray.

Reads top to bottom: validate the manifest and the models on the driver (fail fast, before any
worker starts); skip what earlier runs finished; decode on a CPU actor pool and run the models on a
GPU actor pool, writing Parquet into the run's staging folder; then compact, check every expected
row came out exactly once, and commit the run by writing its record last.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from .config import JobConfig, ResourceConfig
from .features import FeatureSpec, WhisperFeatureSpec
from .manifest import default_allowed_prefix, read_manifest
from .output import OutputStore, RunRecord
from .runs import RunSummary, choose_run_id, select_clips, summarise
from .schema import SCHEMA_VERSION
from .sources import check_model_source, read_model_file
from .stages import DecodeStage, ModelPlan, ModelStage

if TYPE_CHECKING:
    from ray.data import ActorPoolStrategy

__all__ = ["RunSummary", "plan_models", "build_dataset", "model_pool", "run"]

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


def plan_models(config: JobConfig, clips: pa.Table, run_id: str) -> ModelPlan:
    """Checks every model the run needs is reachable and pins hub revisions."""
    models = config.models
    needs_whisper = models.needs_text and pc.sum(pc.is_null(clips["text"])).as_py() > 0
    text_encoder = models.text_encoder_source
    emotion_revision = check_model_source(models.emotion_model_source)
    features = None
    if models.needs_audio:
        # Decode workers compute the emotion model's features, so the GPU's actor does not.
        source = models.emotion_model_source
        raw = read_model_file(source, "preprocessor_config.json", revision=emotion_revision)
        features = FeatureSpec.from_config(raw, source)
    whisper_revision = whisper_features = None
    if needs_whisper:
        whisper_revision = check_model_source(models.whisper_model, whisper=True)
        # And Whisper's log-mel; a model folder without the file has faster-whisper's defaults.
        raw = read_model_file(
            models.whisper_model,
            "preprocessor_config.json",
            revision=whisper_revision,
            whisper=True,
            missing_ok=True,
        )
        whisper_features = WhisperFeatureSpec.from_config(raw, models.whisper_model)
    return ModelPlan(
        run_id=run_id,
        needs_whisper=needs_whisper,
        features=features,
        whisper_features=whisper_features,
        emotion_revision=emotion_revision,
        text_encoder_revision=check_model_source(text_encoder) if text_encoder else None,
        whisper_revision=whisper_revision,
    )


def with_default_prefixes(config: JobConfig) -> JobConfig:
    """Audio may come only from the manifest's own bucket or folder, unless told otherwise."""
    if config.decode.allowed_prefixes is not None:
        return config
    prefixes = (default_allowed_prefix(config.manifest.uri),)
    return replace(config, decode=replace(config.decode, allowed_prefixes=prefixes))


def _blocks(clips: pa.Table, workers: int, decode_batch_size: int) -> list[pa.Table]:
    # A small manifest would otherwise be one block, and one actor would get all of it.
    per_block = math.ceil(clips.num_rows / (workers * _BLOCKS_PER_DECODE_WORKER))
    per_block = max(1, min(per_block, decode_batch_size * _DECODE_BATCHES_PER_BLOCK))
    return [clips.slice(start, per_block) for start in range(0, clips.num_rows, per_block)]


def build_dataset(config: JobConfig, clips: pa.Table, plan: ModelPlan):
    import ray.data
    from ray.data import ActorPoolStrategy

    context = ray.data.DataContext.get_current()
    context.retried_io_errors = list(
        dict.fromkeys([*context.retried_io_errors, *_TRANSIENT_IO_ERRORS])
    )
    res = config.resources
    # A GPU actor already reserves one CPU, and Ray warns when both are given: say what differs.
    default_cpus = res.num_gpus_per_worker > 0 and res.cpus_per_gpu_worker == 1
    cluster = ray.cluster_resources()
    decode_workers = res.cpu_workers or max(1, int(cluster.get("CPU", 1)))
    ds = ray.data.from_arrow(_blocks(clips, decode_workers, res.decode_batch_size))
    ds = ds.map_batches(
        DecodeStage,
        fn_constructor_kwargs={
            "config": config.decode,
            "features": plan.features,
            "whisper_features": plan.whisper_features,
            "whisper": plan.needs_whisper,
        },
        batch_size=res.decode_batch_size,
        batch_format="pyarrow",
        num_cpus=1,
        compute=ActorPoolStrategy(min_size=1, max_size=res.cpu_workers),
    )
    return ds.map_batches(
        ModelStage,
        fn_constructor_kwargs={
            "config": config.models,
            "plan": plan,
            "batch_size": res.batch_size,
            "cpu_threads": max(1, int(res.cpus_per_gpu_worker)),
        },
        batch_size=res.batch_size,
        batch_format="pyarrow",
        num_cpus=None if default_cpus else res.cpus_per_gpu_worker,
        num_gpus=res.num_gpus_per_worker,
        compute=model_pool(res, gpus=cluster.get("GPU", 0.0)),
    )


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


def _record(config: JobConfig, summary: RunSummary, started_at: str, files: list[str]):
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
        ok=summary.ok,
        errors=summary.errors,
        skipped_done=summary.skipped_done,
        skipped_exhausted=summary.skipped_exhausted,
        audio_s=round(summary.audio_s, 3),
        files=files,
        models={
            "mode": models.mode,
            "emotion_model": models.emotion_model_source,
            "text_encoder": models.text_encoder_source,
            "whisper_model": models.whisper_model,
        },
    )


def run(config: JobConfig) -> RunSummary:
    """Runs (or resumes) one annotation job and commits it; returns what it did."""
    import ray

    started = time.monotonic()
    clips = read_manifest(config.manifest)
    config = with_default_prefixes(config)
    store = OutputStore(config.output)
    run_id, resumed = choose_run_id(config, store)
    selection = select_clips(clips, store.history(resuming=run_id), config.max_attempts)
    # Models are checked only when there is work: a night with nothing new needs no hub.
    plan = plan_models(config, selection.todo, run_id) if selection.todo.num_rows else None
    started_at = store.start(run_id)
    logger.info("run %s: %d clips to do", run_id, selection.todo.num_rows)
    if plan is not None:
        if not ray.is_initialized():
            ray.init(address=config.resources.ray_address)
        dataset = build_dataset(config, selection.todo, plan)
        dataset.write_parquet(store.staging(run_id), filesystem=store.fs)
    files = store.compact(run_id, run_date=started_at[:10])
    written = store.read_files(files, ["id", "status", "error_code", "duration_s"])
    summary = summarise(run_id, selection, written, time.monotonic() - started, resumed)
    store.write_record(_record(config, summary, started_at, files))
    store.discard_staging(run_id)
    return summary
