"""Poison inputs: a file that kills the worker decoding it, or a clip that kills the model
worker, ends as one ``worker_crashed`` error row naming the stage, after a bounded number of
deaths; every other row of its batch is annotated, each exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from speech_emotion.crashes import CrashGuard
from speech_emotion.faults import POISON
from speech_emotion.output import open_output
from speech_emotion.pipeline import run
from speech_emotion.tally import Tally

from .factories import Corpus, job_config


def test_a_batch_a_worker_died_on_is_isolated_and_its_killer_given_up_after_two_deaths():
    guard = CrashGuard(Tally(), "decode", max_deaths=2)
    batch = ["a", "b", "c"]
    assert guard.start_batch(batch) is False  # ... and the worker dies
    assert guard.start_batch(batch) is True  # the retry goes one item at a time
    assert guard.start_item("a") is None
    guard.end_item("a")
    assert guard.start_item("b") is None  # ... and the worker dies again, holding b alone
    assert guard.start_batch(batch) is True
    assert guard.start_item("a") is None
    guard.end_item("a")
    assert guard.start_item("b") is None  # a second death holding b alone
    assert guard.start_batch(batch) is True
    assert guard.start_item("a") is None
    guard.end_item("a")
    crashed = guard.start_item("b")
    assert crashed is not None and crashed.code.value == "worker_crashed"
    assert "died 2 times" in crashed.message
    assert guard.start_item("c") is None
    guard.end_item("c")
    guard.end_batch(batch)
    assert guard.start_batch(batch) is False  # all clear: a later batch is not suspected


def test_a_batch_that_finishes_leaves_no_mark():
    guard = CrashGuard(Tally(), "models")
    for _ in range(3):
        assert guard.start_batch(["w1", "w2"]) is False
        guard.end_batch(["w1", "w2"])


@pytest.mark.slow
def test_inputs_that_kill_their_workers_are_one_error_row_each_and_the_rest_is_annotated(
    tmp_path, tiny_models, ray_cluster
):
    corpus = Corpus(str(tmp_path / "corpus")).add_tones(["a", "b", "c"], text="fine words")
    corpus.add("kills-decoder", POISON, text="fine words")
    corpus.add_tones(["d", "e"], text="fine words")
    corpus.add("kills-model", text=POISON.decode())  # decodes well; its transcript kills
    corpus.add_tones(["f", "g"], text="fine words")
    out = tmp_path / "labels"
    summary = run(job_config(corpus, out, tiny_models))
    rows = open_output(str(out)).read(["id", "status", "error_code", "error"]).to_pylist()
    assert Counter(r["id"] for r in rows) == Counter(corpus.ids)
    by_id = {r["id"]: r for r in rows}
    for poison, stage in (("kills-decoder", "decode"), ("kills-model", "models")):
        assert by_id[poison]["error_code"] == "worker_crashed"
        assert by_id[poison]["error"].startswith(f"{stage}: the worker died 2 times")
    assert all(by_id[i]["status"] == "ok" for i in "abcdefg")
    assert (summary.rows, summary.ok) == (9, 7)
