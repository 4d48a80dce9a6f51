"""The annotation job: manifest in, labelled Parquet out, on Ray.

Reads top to bottom: validate the manifest and the models on the driver (fail fast, before any
worker starts), then decode on a CPU actor pool, run the models on a GPU actor pool, write Parquet,
and read back this run's rows to check every manifest row came out exactly once.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .config import JobConfig
from .manifest import read_manifest
from .schema import STATUS_OK
from .sources import check_model_source
from .stages import DecodeStage, ModelPlan, ModelStage

__all__ = ["RunSummary", "plan_models", "build_dataset", "run"]

logger = logging.getLogger(__name__)

# Manifest rows per input block: several blocks per decode actor so work spreads, but not so many
# tiny blocks that scheduling dominates on million-row manifests.
_BLOCKS_PER_DECODE_WORKER = 4
_MAX_ROWS_PER_BLOCK = 1024


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    rows: int
    ok: int
    errors: dict[str, int]
    audio_s: float
    wall_s: float

    @property
    def audio_s_per_s(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s else 0.0

    def __str__(self) -> str:
        errors = ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items())) or "none"
        return (
            f"run {self.run_id}: {self.rows} rows, {self.ok} ok, {self.rows - self.ok} error "
            f"({errors}); {self.audio_s / 3600:.3f} h of audio in {self.wall_s:.1f} s "
            f"= {self.audio_s_per_s:.1f} audio-s/s"
        )


def plan_models(config: JobConfig, clips: pa.Table) -> ModelPlan:
    """Checks every model the run needs is reachable and pins hub revisions."""
    models = config.models
    needs_whisper = models.needs_text and pc.sum(pc.is_null(clips["text"])).as_py() > 0
    text_encoder = models.text_encoder_source
    return ModelPlan(
        run_id=config.run_id,
        needs_whisper=needs_whisper,
        emotion_revision=check_model_source(models.emotion_model_source),
        text_encoder_revision=check_model_source(text_encoder) if text_encoder else None,
        whisper_revision=(
            check_model_source(models.whisper_model, whisper=True) if needs_whisper else None
        ),
    )


def _blocks(clips: pa.Table, workers: int) -> list[pa.Table]:
    # A small manifest would otherwise be one block, and one actor would get all of it.
    per_block = math.ceil(clips.num_rows / (workers * _BLOCKS_PER_DECODE_WORKER))
    per_block = max(1, min(per_block, _MAX_ROWS_PER_BLOCK))
    return [clips.slice(start, per_block) for start in range(0, clips.num_rows, per_block)]


def build_dataset(config: JobConfig, clips: pa.Table, plan: ModelPlan):
    import ray.data
    from ray.data import ActorPoolStrategy

    res = config.resources
    # A GPU actor already reserves one CPU, and Ray warns when both are given: say what differs.
    default_cpus = res.num_gpus_per_worker > 0 and res.cpus_per_gpu_worker == 1
    ds = ray.data.from_arrow(_blocks(clips, res.cpu_workers))
    ds = ds.map_batches(
        DecodeStage,
        fn_constructor_kwargs={"config": config.decode},
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
        compute=ActorPoolStrategy(min_size=1, max_size=res.gpu_workers),
    )


def _output_filesystem(uri: str):
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def _read_back(config: JobConfig) -> pa.Table:
    import pyarrow.dataset as pads

    fs, path = _output_filesystem(config.output)
    dataset = pads.dataset(path, filesystem=fs, format="parquet")
    return dataset.to_table(
        columns=["id", "status", "error_code", "duration_s"],
        filter=pc.field("run_id") == config.run_id,
    )


def _summarise(config: JobConfig, clips: pa.Table, written: pa.Table, wall_s: float) -> RunSummary:
    if (
        written.num_rows != clips.num_rows
        or pc.count_distinct(written["id"]).as_py() != clips.num_rows
    ):
        # Should never happen; if it does, say so loudly rather than report a clean run.
        raise RuntimeError(
            f"run {config.run_id}: {clips.num_rows} manifest rows but "
            f"{written.num_rows} output rows "
            f"({pc.count_distinct(written['id']).as_py()} distinct ids) in {config.output}"
        )
    ok = pc.equal(written["status"], STATUS_OK)
    codes = Counter(c for c in written["error_code"].to_pylist() if c is not None)
    audio_s = pc.sum(pc.filter(written["duration_s"], ok)).as_py() or 0.0
    return RunSummary(
        run_id=config.run_id,
        rows=written.num_rows,
        ok=pc.sum(ok).as_py() or 0,
        errors=dict(codes),
        audio_s=audio_s,
        wall_s=wall_s,
    )


def run(config: JobConfig) -> RunSummary:
    """Runs one annotation job on the connected (or a new local) Ray cluster."""
    import ray

    started = time.monotonic()
    clips = read_manifest(config.manifest)
    plan = plan_models(config, clips)
    logger.info(
        "run %s: %d clips, whisper needed: %s", config.run_id, clips.num_rows, plan.needs_whisper
    )
    if not ray.is_initialized():
        ray.init(address=config.resources.ray_address)
    fs, path = _output_filesystem(config.output)
    build_dataset(config, clips, plan).write_parquet(path, filesystem=fs)
    return _summarise(config, clips, _read_back(config), time.monotonic() - started)
