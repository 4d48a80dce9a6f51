"""A clean stop: SIGTERM to the driver (what ``ray job stop`` and Kubernetes send) ends the run
promptly, uncommitted, with the lease released and a line saying how to resume; the next run
resumes it, and every recording ends exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from speech_emotion.lease import LEASE_NAME
from speech_emotion.output import open_output
from speech_emotion.pipeline import run

from .factories import Corpus, job_config, tiny_model_flags

pytestmark = pytest.mark.slow  # a run on a local Ray of its own, then one on the session's


def test_sigterm_stops_the_run_uncommitted_and_the_next_run_resumes_it(
    tmp_path, tiny_models, ray_cluster
):
    corpus = Corpus(str(tmp_path / "corpus")).add_tones([f"clip-{i:02d}" for i in range(16)])
    out = tmp_path / "labels"
    args = [
        "annotate",
        corpus.manifest,
        str(out),
        *tiny_model_flags(tiny_models),
        "--decode-batch-size",
        "1",
        "--batch-size",
        "1",
    ]
    driver = subprocess.Popen(
        [sys.executable, "-m", "speech_emotion.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("_staging/*/*.parquet")) and time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGTERM)
    signalled = time.monotonic()
    _, stderr = driver.communicate(timeout=60)
    stop_s = time.monotonic() - signalled

    assert driver.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM, nothing committed" in stderr
    assert "Traceback" not in stderr, stderr
    assert stop_s < 15
    assert not (out / LEASE_NAME).exists()
    assert not list(out.glob("_runs/*.json"))
    assert open_output(str(out)).ledger.uncommitted()

    resumed = run(job_config(corpus, out, tiny_models))  # the same models and settings
    assert resumed.resumed and resumed.rows == len(corpus.ids)
    rows = open_output(str(out)).read(["id", "status"]).to_pylist()
    assert Counter(r["id"] for r in rows) == Counter(corpus.ids)
    assert all(r["status"] == "ok" for r in rows)
