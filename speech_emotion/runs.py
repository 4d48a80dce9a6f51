"""Run bookkeeping for scheduled, incremental runs: which run this is, which rows it does, and
what its commit record says. Pure functions over the manifest and the output's history."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .config import ConfigError, JobConfig, new_run_id
from .output import History, OutputStore
from .schema import STATUS_OK

__all__ = ["Selection", "choose_run_id", "select_clips", "RunSummary", "summarise"]

logger = logging.getLogger(__name__)


def choose_run_id(config: JobConfig, store: OutputStore) -> tuple[str, bool]:
    """(run id, resuming). Re-running a crashed run's command resumes it."""
    if config.run_id:
        if store.is_committed(config.run_id):
            raise ConfigError(
                f"run_id={config.run_id!r} is invalid: that run is already committed in "
                f"{config.output}; scheduled runs need a new id each time"
            )
        return config.run_id, config.run_id in store.uncommitted_runs()
    unfinished = store.uncommitted_runs()
    if unfinished:
        logger.warning("resuming run %s, which did not finish", unfinished[-1])
        return unfinished[-1], True
    return new_run_id(), False


@dataclass(frozen=True)
class Selection:
    todo: pa.Table
    """Clips this run still has to process, with their attempt numbers."""
    expected_ids: frozenset[str]
    """Ids this run's committed rows must hold: resumed ones plus todo."""
    skipped_done: int
    skipped_exhausted: int


def select_clips(clips: pa.Table, history: History, max_attempts: int) -> Selection:
    ids = clips["id"].to_pylist()
    attempts = [history.attempts.get(i, 0) for i in ids]
    keep = [
        i not in history.done and i not in history.staged and tried < max_attempts
        for i, tried in zip(ids, attempts, strict=True)
    ]
    todo = clips.filter(pa.array(keep)).set_column(
        clips.schema.get_field_index("attempt"),
        clips.schema.field("attempt"),
        pa.array([t + 1 for t, k in zip(attempts, keep, strict=True) if k], pa.int32()),
    )
    pending = [i not in history.done and i not in history.staged for i in ids]
    return Selection(
        todo=todo,
        expected_ids=frozenset(todo["id"].to_pylist()) | history.staged,
        skipped_done=sum(i in history.done for i in ids),
        skipped_exhausted=sum(
            p and tried >= max_attempts for p, tried in zip(pending, attempts, strict=True)
        ),
    )


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    rows: int
    ok: int
    errors: dict[str, int]
    audio_s: float
    wall_s: float
    skipped_done: int = 0
    skipped_exhausted: int = 0
    resumed: bool = False

    @property
    def audio_s_per_s(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s else 0.0

    def __str__(self) -> str:
        errors = ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items())) or "none"
        skipped = ""
        if self.skipped_done or self.skipped_exhausted:
            skipped = (
                f"; skipped {self.skipped_done} already ok, "
                f"{self.skipped_exhausted} out of attempts"
            )
        return (
            f"run {self.run_id}{' (resumed)' if self.resumed else ''}: {self.rows} rows, "
            f"{self.ok} ok, {self.rows - self.ok} error ({errors}){skipped}; "
            f"{self.audio_s / 3600:.3f} h of audio in {self.wall_s:.1f} s "
            f"= {self.audio_s_per_s:.1f} audio-s/s"
        )


def summarise(
    run_id: str, selection: Selection, written: pa.Table, wall_s: float, resumed: bool
) -> RunSummary:
    """Counts from the rows actually written, after checking each expected id is there once."""
    ids = written["id"]
    distinct = pc.count_distinct(ids).as_py()
    if written.num_rows != len(selection.expected_ids) or distinct != written.num_rows:
        missing = selection.expected_ids - set(ids.to_pylist())
        # Should never happen; if it does, refuse to commit rather than report a clean run.
        raise RuntimeError(
            f"run {run_id}: expected {len(selection.expected_ids)} rows, wrote {written.num_rows} "
            f"({distinct} distinct ids, {len(missing)} missing); not committed"
        )
    ok = pc.equal(written["status"], STATUS_OK)
    return RunSummary(
        run_id=run_id,
        rows=written.num_rows,
        ok=pc.sum(ok).as_py() or 0,
        errors=dict(Counter(c for c in written["error_code"].to_pylist() if c is not None)),
        audio_s=pc.sum(pc.filter(written["duration_s"], ok)).as_py() or 0.0,
        wall_s=wall_s,
        skipped_done=selection.skipped_done,
        skipped_exhausted=selection.skipped_exhausted,
        resumed=resumed,
    )
