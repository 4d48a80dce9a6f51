"""Run bookkeeping for scheduled, incremental runs: which run this is, which recordings it does,
and whether what it wrote is whole. Pure functions over Arrow tables; no Ray.

The unit of bookkeeping is the recording (a manifest row, by its id). A recording ends as exactly
one error row (``segment_index`` null), or as a complete set of clips: ``segment_count`` rows,
each (``channel``, ``segment_index``) once, indices 0, 1, ... per channel. Skip, retry and resume
decide per recording; a recording counts as done when all its clips of one attempt are ok.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from .config import new_run_id
from .errors import SETTINGS_ERRORS, ConfigError
from .schema import STATUS_OK

if TYPE_CHECKING:
    from .ledger import RunLedger

__all__ = [
    "HISTORY_COLUMNS",
    "SUMMARY_COLUMNS",
    "Audit",
    "audit",
    "History",
    "Selection",
    "choose_run_id",
    "check_same_settings",
    "select_recordings",
    "RunSummary",
    "summarise",
    "nothing_to_do",
]

logger = logging.getLogger(__name__)

_SETTINGS_ERRORS = pa.array(sorted(code.value for code in SETTINGS_ERRORS), pa.string())

HISTORY_COLUMNS = [
    "id",
    "status",
    "error_code",
    "attempt",
    "channel",
    "segment_index",
    "segment_count",
]


@dataclass(frozen=True)
class Audit:
    """Which recordings in a set of rows are whole, and what is wrong with the others."""

    whole: frozenset[str]
    broken: dict[str, str]
    """Recording id -> what is wrong with its rows."""


def audit(rows: pa.Table) -> Audit:
    """Checks each recording's rows against the invariant (module docstring)."""
    if rows.num_rows == 0:
        return Audit(frozenset(), {})
    index = rows["segment_index"]
    groups = (
        rows.select(["id", "channel", "segment_index", "segment_count"])
        .append_column("error_rows", pc.cast(pc.is_null(index), pa.int64()))
        .group_by(["id", "channel"])
        .aggregate(
            [
                ("id", "count"),
                ("error_rows", "sum"),
                ("segment_index", "min"),
                ("segment_index", "max"),
                ("segment_index", "count_distinct"),
                ("segment_count", "min"),
                ("segment_count", "max"),
            ]
        )
        .to_pylist()
    )
    by_recording: dict[str, list[dict]] = {}
    for group in groups:
        by_recording.setdefault(group["id"], []).append(group)
    broken = {}
    for recording, channels in by_recording.items():
        problem = _problem(channels)
        if problem:
            broken[recording] = problem
    return Audit(frozenset(by_recording) - broken.keys(), broken)


def _problem(channels: list[dict]) -> str | None:
    """What is wrong with one recording's rows (grouped by channel), or None if they are whole."""
    rows = sum(c["id_count"] for c in channels)
    errors = sum(c["error_rows_sum"] for c in channels)
    if errors:
        return None if rows == 1 else f"{errors} recording-level error rows among {rows} rows"
    counts = {c["segment_count_min"] for c in channels} | {c["segment_count_max"] for c in channels}
    if len(counts) != 1:
        return f"its clips disagree on segment_count ({sorted(counts, key=str)})"
    (expected,) = counts
    if rows != expected:
        return f"{rows} clip rows for segment_count {expected}"
    for c in channels:
        n = c["id_count"]
        if (c["segment_index_min"], c["segment_index_max"], c["segment_index_count_distinct"]) != (
            0,
            n - 1,
            n,
        ):
            return f"channel {c['channel']}: its {n} segment indices are not 0..{n - 1} once each"
    return None


@dataclass
class History:
    """What committed runs (and the run being resumed) already did, by recording id."""

    done: set[str] = field(default_factory=set)
    """Recordings with a whole, all-ok set of rows: never processed again."""
    attempts: dict[str, int] = field(default_factory=dict)
    """Recordings not done: the number of their latest attempt (the next one counts on)."""
    failures: dict[str, int] = field(default_factory=dict)
    """Recordings not done: how many of their attempts failed for a reason of their own. A
    failure a person fixes in the settings or the manifest (:data:`SETTINGS_ERRORS`) does not
    count: a recording must not run out of attempts while the job was told to skip it."""
    staged: set[str] = field(default_factory=set)
    """Recordings the run being resumed already wrote whole: not done again."""
    partial: set[str] = field(default_factory=set)
    """Recordings the run being resumed wrote in part (a crash): their rows are dropped and the
    recordings done again."""

    @classmethod
    def of(cls, committed: pa.Table, staged: pa.Table | None = None) -> History:
        """From committed rows (``id``, ``status``, ``error_code``, ``attempt``) and the resumed
        run's staged rows (:data:`HISTORY_COLUMNS`)."""
        history = cls()
        failed = pc.not_equal(committed["status"], STATUS_OK)
        own_fault = pc.and_(
            failed,
            pc.invert(pc.is_in(committed["error_code"], value_set=_SETTINGS_ERRORS)),
        )
        attempts = (
            pa.table(
                {
                    "id": committed["id"],
                    "attempt": committed["attempt"],
                    "bad": pc.cast(failed, pa.int64()),
                    "own_fault": pc.cast(own_fault, pa.int64()),
                }
            )
            .group_by(["id", "attempt"])
            .aggregate([("bad", "sum"), ("own_fault", "sum")])
        )
        clean = pc.equal(attempts["bad_sum"], 0)
        history.done = set(pc.filter(attempts["id"], clean).to_pylist())
        tried = attempts.filter(pc.invert(clean))
        tried = tried.append_column(
            "charged", pc.cast(pc.greater(tried["own_fault_sum"], 0), pa.int64())
        )
        per_recording = tried.group_by("id").aggregate([("attempt", "max"), ("charged", "sum")])
        for recording, latest, charged in zip(
            per_recording["id"].to_pylist(),
            per_recording["attempt_max"].to_pylist(),
            per_recording["charged_sum"].to_pylist(),
            strict=True,
        ):
            if recording not in history.done:
                history.attempts[recording] = latest
                history.failures[recording] = charged
        if staged is not None:
            checked = audit(staged)
            history.staged, history.partial = set(checked.whole), set(checked.broken)
        return history


def choose_run_id(
    requested: str | None, ledger: RunLedger, committed: Callable[[str], bool] | None = None
) -> tuple[str, bool]:
    """(run id, resuming). Re-running a crashed run's command resumes it.

    ``committed`` says whether the output holds a run (default: its ledger record; a table's
    commits, for a table format)."""
    committed = committed or ledger.is_committed
    if requested:
        if committed(requested):
            raise ConfigError(
                f"run_id={requested!r} is invalid: that run is already committed in "
                f"{ledger.uri}; scheduled runs need a new id each time"
            )
        return requested, requested in ledger.uncommitted()
    unfinished = ledger.uncommitted()
    if unfinished:
        logger.warning("resuming run %s, which did not finish", unfinished[-1])
        return unfinished[-1], True
    return new_run_id(), False


def check_same_settings(run_id: str, first: dict | None, now: dict, staging: str) -> None:
    """Refuses to resume a run with settings other than those it started with: its staged rows
    would be committed as if made with these. A revision counts only where both runs knew it."""
    if not first:
        return
    changed = [
        f"{key} {first.get(key)!r} then, {now.get(key)!r} now"
        for key in sorted(first.keys() | now.keys())
        if first.get(key) != now.get(key)
        and not (key.endswith("_revision") and None in (first.get(key), now.get(key)))
    ]
    if changed:
        raise ConfigError(
            f"run {run_id} did not finish, and was started with other settings "
            f"({'; '.join(changed)}); finish it with the settings it started with, or delete "
            f"{staging} to drop what it did"
        )


@dataclass(frozen=True)
class Selection:
    todo: pa.Table
    """Recordings this run still has to process, with their attempt numbers."""
    expected_ids: frozenset[str]
    """Recordings this run's committed rows must hold: resumed ones plus todo."""
    skipped_done: int
    skipped_exhausted: int


def select_recordings(recordings: pa.Table, history: History, max_attempts: int) -> Selection:
    ids = recordings["id"].to_pylist()
    failures = [history.failures.get(i, 0) for i in ids]
    pending = [i not in history.done and i not in history.staged for i in ids]
    keep = [p and f < max_attempts for p, f in zip(pending, failures, strict=True)]
    numbers = [history.attempts.get(i, 0) + 1 for i, k in zip(ids, keep, strict=True) if k]
    todo = recordings.filter(pa.array(keep, pa.bool_())).set_column(
        recordings.schema.get_field_index("attempt"),
        recordings.schema.field("attempt"),
        pa.array(numbers, pa.int32()),
    )
    return Selection(
        todo=todo,
        expected_ids=frozenset(todo["id"].to_pylist()) | history.staged,
        skipped_done=sum(i in history.done for i in ids),
        skipped_exhausted=sum(
            p and f >= max_attempts for p, f in zip(pending, failures, strict=True)
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
    recordings: int = 0
    failed: int = 0
    """Recordings with an error row (one of their segments, or the whole recording)."""
    skipped_done: int = 0
    skipped_exhausted: int = 0
    resumed: bool = False
    committed: bool = True
    """False for a run that had nothing to do: nothing was recorded."""

    @property
    def audio_s_per_s(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s else 0.0

    def __str__(self) -> str:
        if not self.committed:
            return (
                f"nothing to do: {self.skipped_done} recordings already ok, "
                f"{self.skipped_exhausted} out of attempts (raise --max-attempts to retry them); "
                "no run recorded"
            )
        errors = ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items())) or "none"
        of = f" of {self.recordings} recordings" if self.recordings != self.rows else ""
        skipped = ""
        if self.skipped_done or self.skipped_exhausted:
            skipped = (
                f"; skipped {self.skipped_done} already ok, "
                f"{self.skipped_exhausted} out of attempts"
            )
        return (
            f"run {self.run_id}{' (resumed)' if self.resumed else ''}: {self.rows} rows{of}, "
            f"{self.ok} ok, {self.rows - self.ok} error ({errors}){skipped}; "
            f"{self.audio_s / 3600:.3f} h of audio in {self.wall_s:.1f} s "
            f"= {self.audio_s_per_s:.1f} audio-s/s"
        )


SUMMARY_COLUMNS = [*HISTORY_COLUMNS, "duration_s"]


def nothing_to_do(run_id: str, selection: Selection, wall_s: float) -> RunSummary:
    """A run with no recording to do: nothing is recorded, so nightly runs over a finished
    corpus do not fill the output's history with empty runs."""
    return RunSummary(
        run_id=run_id,
        rows=0,
        ok=0,
        errors={},
        audio_s=0.0,
        wall_s=wall_s,
        skipped_done=selection.skipped_done,
        skipped_exhausted=selection.skipped_exhausted,
        committed=False,
    )


def summarise(
    run_id: str, selection: Selection, written: pa.Table, wall_s: float, resumed: bool
) -> RunSummary:
    """Counts from the rows actually written (:data:`SUMMARY_COLUMNS`), after checking that every
    expected recording is there, whole, exactly once, and nothing else is."""
    checked = audit(written)
    missing = selection.expected_ids - checked.whole - checked.broken.keys()
    unexpected = (checked.whole | checked.broken.keys()) - selection.expected_ids
    if checked.broken or missing or unexpected:
        # Should never happen; if it does, refuse to commit rather than report a clean run.
        example = next(iter(checked.broken.items()), None)
        raise RuntimeError(
            f"run {run_id}: expected {len(selection.expected_ids)} recordings; "
            f"{len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(checked.broken)} not whole"
            + (f" (e.g. {example[0]!r}: {example[1]})" if example else "")
            + "; not committed"
        )
    ok = pc.equal(written["status"], STATUS_OK)
    failed = pc.count_distinct(pc.filter(written["id"], pc.invert(ok))).as_py()
    return RunSummary(
        run_id=run_id,
        rows=written.num_rows,
        ok=pc.sum(ok).as_py() or 0,
        errors=dict(Counter(c for c in written["error_code"].to_pylist() if c is not None)),
        audio_s=pc.sum(pc.filter(written["duration_s"], ok)).as_py() or 0.0,
        wall_s=wall_s,
        recordings=len(checked.whole),
        failed=failed,
        skipped_done=selection.skipped_done,
        skipped_exhausted=selection.skipped_exhausted,
        resumed=resumed,
    )
