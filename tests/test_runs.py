"""Run bookkeeping without Ray: what is whole, what is done, what to do next, and the check that
refuses to commit a run whose rows are not exactly what it was asked to make."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from speech_emotion.errors import ConfigError
from speech_emotion.ledger import RunLedger
from speech_emotion.runs import (
    History,
    audit,
    choose_run_id,
    select_recordings,
    summarise,
)
from speech_emotion.schema import OUTPUT_SCHEMA, RECORDING_SCHEMA

from .factories import clip_rows, error_row, recording, table


def rows(*groups: list[dict] | dict) -> pa.Table:
    flat = [r for g in groups for r in (g if isinstance(g, list) else [g])]
    return table(OUTPUT_SCHEMA, flat)


def manifest(*ids: str) -> pa.Table:
    return table(RECORDING_SCHEMA, [recording(i) for i in ids])


# -- what is whole ------------------------------------------------------------------------------


def test_one_error_row_or_a_full_set_of_clips_is_whole():
    checked = audit(
        rows(
            error_row("failed"),
            clip_rows("file"),
            clip_rows("call", 3, channels=[0, 1]),
        )
    )
    assert checked.whole == {"failed", "file", "call"} and checked.broken == {}


def test_a_missing_last_clip_is_caught_by_the_count():
    partial = clip_rows("call", 4)[:3]
    assert audit(rows(partial)).broken == {"call": "3 clip rows for segment_count 4"}


def test_a_doubled_clip_is_caught():
    doubled = clip_rows("call", 2)
    doubled[1] = doubled[0]
    assert "not 0..1 once each" in audit(rows(doubled)).broken["call"]


def test_an_error_row_beside_clips_is_caught():
    checked = audit(rows(error_row("x"), clip_rows("x")))
    assert checked.broken == {"x": "1 recording-level error rows among 2 rows"}


recordings_strategy = st.dictionaries(
    st.text("abc", min_size=1, max_size=3),
    st.one_of(
        st.none(),  # a recording-level error
        st.tuples(st.integers(1, 4), st.sampled_from([(None,), (0,), (0, 1)])),
    ),
    max_size=6,
)


def whole_rows(recordings: dict) -> list[dict]:
    out: list[dict] = []
    for recording_id, shape in recordings.items():
        if shape is None:
            out.append(error_row(recording_id))
        else:
            count, channels = shape
            out += clip_rows(recording_id, count, channels=channels)
    return out


@given(recordings_strategy, st.data())
def test_whole_recordings_pass_and_losing_or_doubling_any_row_is_caught(recordings, data):
    made = whole_rows(recordings)
    assert audit(rows(made)).whole == set(recordings)
    if not made:
        return
    victim = data.draw(st.integers(0, len(made) - 1))
    lost = made[:victim] + made[victim + 1 :]
    damaged = made[victim]["id"]
    left = sum(r["id"] == damaged for r in lost)
    assert damaged not in audit(rows(lost)).whole
    assert (damaged in audit(rows(lost)).broken) == (left > 0)
    doubled = [*made, made[victim]]
    assert damaged in audit(rows(doubled)).broken


# -- what is done -------------------------------------------------------------------------------


def test_a_recording_is_done_when_one_attempt_is_all_ok():
    committed = rows(
        clip_rows("ok-first", attempt=1),
        error_row("retried", attempt=1),
        clip_rows("retried", attempt=2),
        error_row("failing", attempt=1),
        error_row("failing", attempt=2),
        clip_rows("half", 2, attempt=1)[:1],
        clip_rows("half", 2, attempt=1, status="error", error_code="unsupported_language")[1:],
    )
    history = History.of(committed)
    assert history.done == {"ok-first", "retried"}
    assert history.attempts == {"failing": 2, "half": 1}
    assert history.failures == {"failing": 2, "half": 0}


def test_failures_a_person_fixes_in_the_settings_use_up_no_attempts():
    committed = rows(
        error_row("elsewhere", "outside_allowed_prefixes", attempt=1),
        error_row("elsewhere", "outside_allowed_prefixes", attempt=2),
        error_row("klingon", "unsupported_language", attempt=1),
        error_row("flaky", "read_failed", attempt=1),
        error_row("flaky", "outside_allowed_prefixes", attempt=2),
    )
    history = History.of(committed)
    assert history.failures == {"elsewhere": 0, "klingon": 0, "flaky": 1}
    selection = select_recordings(manifest("elsewhere", "klingon", "flaky"), history, 1)
    attempts = {r["id"]: r["attempt"] for r in selection.todo.to_pylist()}
    # Tried again, numbered on from the latest attempt so "the latest attempt" stays one.
    assert attempts == {"elsewhere": 3, "klingon": 2}
    assert selection.skipped_exhausted == 1


def test_a_resumed_runs_partial_recordings_are_neither_done_nor_kept():
    staged = rows(clip_rows("whole", 2), clip_rows("cut", 3)[:2], error_row("failed"))
    history = History.of(rows(), staged)
    assert history.staged == {"whole", "failed"}
    assert history.partial == {"cut"}


def test_selection_skips_done_and_staged_and_gives_up_after_max_attempts():
    tried = {"tried-once": 1, "tried-twice": 2}
    history = History(done={"done"}, attempts=tried, failures=tried, staged={"s"})
    selection = select_recordings(
        manifest("new", "done", "tried-once", "tried-twice", "s"), history, max_attempts=2
    )
    todo = selection.todo.to_pylist()
    assert [(r["id"], r["attempt"]) for r in todo] == [("new", 1), ("tried-once", 2)]
    assert selection.expected_ids == {"new", "tried-once", "s"}
    assert (selection.skipped_done, selection.skipped_exhausted) == (1, 1)


@given(
    st.lists(
        st.tuples(st.sampled_from(["new", "done", "staged", "failed"]), st.integers(0, 4)),
        max_size=12,
    ),
    st.integers(1, 4),
)
def test_every_manifest_row_is_todo_done_staged_or_exhausted_and_only_one(kinds, max_attempts):
    ids = [f"r{i}" for i in range(len(kinds))]
    history = History(
        done={i for i, (k, _) in zip(ids, kinds, strict=True) if k == "done"},
        staged={i for i, (k, _) in zip(ids, kinds, strict=True) if k == "staged"},
        failures={i: n for i, (k, n) in zip(ids, kinds, strict=True) if k == "failed" and n},
    )
    selection = select_recordings(manifest(*ids), history, max_attempts)
    todo = set(selection.todo["id"].to_pylist())
    assert not todo & (history.done | history.staged)
    assert len(todo) + selection.skipped_done + selection.skipped_exhausted + len(
        history.staged
    ) == len(ids)
    assert selection.expected_ids == todo | history.staged


# -- which run ----------------------------------------------------------------------------------


def test_a_new_run_gets_a_new_id_and_an_unfinished_one_is_resumed(tmp_path):
    ledger = RunLedger(str(tmp_path / "out"))
    run_id, resumed = choose_run_id(None, ledger)
    assert not resumed and run_id[:8].isdigit()
    ledger.start("crashed")
    assert choose_run_id(None, ledger) == ("crashed", True)
    assert choose_run_id("nightly", ledger) == ("nightly", False)


def test_a_committed_run_id_is_refused(tmp_path):
    from .test_ledger import record

    ledger = RunLedger(str(tmp_path / "out"))
    ledger.write_record(record("2026-11-24"))
    with pytest.raises(ConfigError, match="already committed"):
        choose_run_id("2026-11-24", ledger)


# -- the check before committing ----------------------------------------------------------------


def selection_of(*ids: str):
    return select_recordings(manifest(*ids), History(), max_attempts=3)


def test_the_summary_counts_rows_recordings_errors_and_audio():
    written = rows(
        clip_rows("a", 2, duration_s=1.5),
        error_row("b", "too_short", duration_s=0.05),
        clip_rows("c", duration_s=2.0),
    )
    summary = summarise("r", selection_of("a", "b", "c"), written, wall_s=2.0, resumed=False)
    assert (summary.rows, summary.recordings, summary.ok) == (4, 3, 3)
    assert summary.errors == {"too_short": 1}
    assert summary.audio_s == pytest.approx(5.0)
    assert summary.audio_s_per_s == pytest.approx(2.5)
    assert str(summary).startswith("run r: 4 rows of 3 recordings, 3 ok, 1 error (too_short 1)")


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        (rows(clip_rows("a")), "1 missing"),
        (rows(clip_rows("a"), clip_rows("b"), clip_rows("c")), "1 unexpected"),
        (rows(clip_rows("a"), clip_rows("b", 2)[:1]), "1 not whole"),
        (rows(clip_rows("a"), clip_rows("b"), clip_rows("b")), "1 not whole"),
    ],
)
def test_a_run_that_lost_doubled_or_added_rows_is_not_committed(written, problem):
    with pytest.raises(RuntimeError, match=f"{problem}.*not committed"):
        summarise("r", selection_of("a", "b"), written, wall_s=1.0, resumed=False)
