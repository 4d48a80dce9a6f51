"""One writer per output: a second run is refused naming the holder, a crashed holder's lease is
taken over after its timeout, and a holder that stalled past it cannot commit (fencing). On a
local disk and in S3 (moto's server, whose conditional writes are S3's)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from speech_emotion.lease import LEASE_NAME, Holder, LeaseHeld, _objects
from speech_emotion.output import open_output

from .test_cli import assert_clean_failure, speech_emotion


@pytest.fixture(params=["local", "s3"])
def output_uri(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "labels")
    s3 = request.getfixturevalue("s3")
    return f"s3://{s3.bucket}/labels-{uuid.uuid4().hex[:8]}"


def test_a_second_writer_is_refused_naming_the_run_its_host_and_since_when(output_uri):
    output = open_output(output_uri)
    with output.lease(60) as lease:
        lease.claim("nightly-1")
        with (
            pytest.raises(LeaseHeld, match=r"run nightly-1 on \S+ \(pid \d+\) since 20"),
            output.lease(60),
        ):
            pass
        assert output.holder().run_id == "nightly-1"
    assert output.holder() is None  # released at the end
    with output.lease(60):
        pass


def test_a_crashed_holders_lease_is_taken_over_once_it_expires(output_uri):
    output = open_output(output_uri)
    crashed = Holder("gone-host", 1, "2026-12-01T00:00:00+00:00", time.time() - 30, 10, "old")
    _objects(output.ledger.fs, output.ledger.root).create(crashed.encode())
    with output.lease(60) as lease:
        lease.claim("new")
        assert output.holder().run_id == "new"


def test_a_fresh_holders_lease_is_not_taken_over(output_uri):
    output = open_output(output_uri)
    alive = Holder("busy-host", 1, "2026-12-01T00:00:00+00:00", time.time(), 60, "running")
    _objects(output.ledger.fs, output.ledger.root).create(alive.encode())
    with pytest.raises(LeaseHeld, match="run running on busy-host"), output.lease(60):
        pass


STALLING_HOLDER = textwrap.dedent(
    """
    import sys
    from speech_emotion.lease import LeaseLost
    from speech_emotion.output import open_output

    with open_output(sys.argv[1]).lease(1.0) as lease:
        lease.claim("stalled")
        print("held", flush=True)
        sys.stdin.readline()
        try:
            lease.confirm()
            print("would commit", flush=True)
        except LeaseLost as lost:
            print(f"refused: {lost}", flush=True)
    """
)


def test_a_holder_that_stalled_past_its_timeout_cannot_commit_over_the_one_that_took_over(
    output_uri,
):
    holder = subprocess.Popen(
        [sys.executable, "-c", STALLING_HOLDER, output_uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGSTOP)  # a long GC pause, a frozen VM
        time.sleep(1.5)
        output = open_output(output_uri)
        with output.lease(60) as lease:
            lease.claim("took-over")
            os.kill(holder.pid, signal.SIGCONT)
            answer, _ = holder.communicate("\n", timeout=30)
            assert answer.startswith("refused:") and "run took-over" in answer
            assert output.holder().run_id == "took-over"
    finally:
        holder.kill()


def test_annotate_on_an_output_another_run_holds_exits_2_at_once(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav"}\n')
    (tmp_path / "a.wav").write_bytes(b"")
    out = tmp_path / "labels"
    with open_output(str(out)).lease(60) as lease:
        lease.claim("nightly-7")
        result = speech_emotion("annotate", str(tmp_path / "m.jsonl"), str(out))
        assert_clean_failure(result, "is being written by run nightly-7 on")
        listed = speech_emotion("runs", str(out))
    assert "output held by run nightly-7" in listed.stdout
    assert not (out / LEASE_NAME).exists()


def test_a_holder_that_died_on_this_machine_is_taken_over_at_once(output_uri):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    output = open_output(output_uri)
    dead = Holder(
        socket.gethostname(),
        int(gone.stdout),
        "2026-12-01T00:00:00+00:00",
        time.time(),
        600,
        "killed",
    )
    _objects(output.ledger.fs, output.ledger.root).create(dead.encode())
    with output.lease(60) as lease:
        lease.claim("re-run")
        assert output.holder().run_id == "re-run"
