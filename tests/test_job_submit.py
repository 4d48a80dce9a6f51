"""``ray job submit`` against a Ray head this module starts on loopback, in the README's command
shape, with token authentication on; tearing the head down leaves the session's own Ray alone.

The head is ``ray start --head --block`` in a session of its own: stopping it means signalling
that one process tree. ``ray stop`` is never used, because it kills every Ray process on the
machine, including the ``ray_cluster`` fixture other test files share in this pytest process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from .factories import Corpus, wav

# Starts a Ray head and runs a job through it: about 25 s on two cores (15 s of it the job).
pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# Kept out of the working_dir upload: the job needs only speech_emotion/ and jobs/, and an upload
# over the size limit fails (.venv alone is gigabytes). Ray also skips what .gitignore lists, and
# 2.60 skips .venv and .git by itself, but the command should not rely on either.
UPLOAD_EXCLUDES = [
    # The README's list ...
    ".venv",
    ".git",
    ".models",
    "example-output",
    # ... and caches, small but of no use to the job.
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
]
MANIFEST_IDS = ["with-text", "transcribed", "stereo-8k", "missing"]
SUMMARY_LINE = re.compile(r"run \S+: (\d+) rows, (\d+) ok, (\d+) error \(([^)]*)\)")

HEAD_START_TIMEOUT_S = 60
JOB_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    args: str


def _running_processes() -> dict[int, Proc]:
    """Every live process on the machine, from ``ps``; zombies are dead, only awaiting reaping."""
    # -ww: never cut command lines to the terminal width (pytest sets COLUMNS), or the temp-dir
    # and program names matched below would silently go missing.
    command = ["ps", "-ww", "-eo", "pid=,ppid=,pgid=,stat=,args="]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    procs = {}
    for line in out.splitlines():
        pid, ppid, pgid, stat, *args = line.split(None, 4)
        if not stat.startswith("Z"):
            procs[int(pid)] = Proc(int(pid), int(ppid), int(pgid), args[0] if args else "")
    return procs


def _with_descendants(procs: dict[int, Proc], roots: dict[int, Proc]) -> dict[int, Proc]:
    found = dict(roots)
    frontier = list(found)
    while frontier:
        parent = frontier.pop()
        for pid, p in procs.items():
            if p.ppid == parent and pid not in found:
                found[pid] = p
                frontier.append(pid)
    return found


def _head_tree(root: int, marker: str) -> dict[int, Proc]:
    """The processes of a running head: ``root``, its process group, anything naming the head's
    private temp dir (the raylet gives each worker a process group of its own), and all their
    descendants (the job driver runs in a session of its own)."""
    procs = _running_processes()
    roots = {
        pid: p for pid, p in procs.items() if pid == root or p.pgid == root or marker in p.args
    }
    return _with_descendants(procs, roots)


def _still_running(known: dict[int, Proc], marker: str | None = None) -> dict[int, Proc]:
    """Those of ``known`` still alive as the same program (a pid may be reused meanwhile), plus
    any process naming ``marker`` and their descendants."""
    procs = _running_processes()
    alive = {pid: p for pid, p in known.items() if pid in procs and procs[pid].args == p.args}
    if marker is not None:
        alive |= _with_descendants(procs, {pid: p for pid, p in procs.items() if marker in p.args})
    return alive


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now; held open together so they cannot repeat."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _ray_env(token_path: Path) -> dict[str, str]:
    """The environment of the head and of the ``ray`` CLI calls that talk to it.

    Token authentication stays on, with a token made for this head alone (not ~/.ray/auth_token,
    which the session's own Ray and the developer's clusters use):

    - the head enables token auth because RAY_AUTH_MODE=token, and loads the token from
      RAY_AUTH_TOKEN_PATH (RAY_AUTH_TOKEN would win over the file, so it is dropped);
    - ``ray job submit`` never turns token mode on by itself, even with ~/.ray/auth_token present:
      without RAY_AUTH_MODE=token it sends no Authorization header and the dashboard answers 401;
    - the job's driver and workers inherit both variables from the head, so they reach the GCS.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(
        # The job runs `python ...` through a shell on the head: it must be this venv's python.
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        HF_HUB_OFFLINE="1",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_path),
        RAY_DATA_DISABLE_PROGRESS_BARS="1",
        # On SIGTERM the head first drains (for Serve traffic), waiting until every worker lease
        # is returned; the detached actors Ray Data leaves behind never return theirs, so it
        # would sit out the whole 30 s default. A test head has no traffic to migrate.
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
    )
    return env


@dataclass
class RayHead:
    process: subprocess.Popen
    temp_dir: Path
    dashboard_url: str
    env: dict[str, str]

    def jobs_api_status(self, token: str | None) -> int | None:
        """HTTP status of listing jobs, sending ``token`` as a bearer token; None if unreachable."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"{self.dashboard_url}/api/jobs/", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    @property
    def log(self) -> str:
        return (self.temp_dir / "head.log").read_text(errors="replace")

    def ray(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "ray"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def stop(self) -> tuple[dict[int, Proc], dict[int, Proc]]:
        """SIGTERM to ``ray start --block``: its handler stops what it started. Returns the head's
        processes as seen just before, and those that outlived the grace period (then SIGKILLed).
        """
        marker = str(self.temp_dir)
        # Taken while the head's pid is still its own, so matching on it and its group is safe.
        tree = _head_tree(self.process.pid, marker) if self.process.poll() is None else {}
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (left := _still_running(tree, marker)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return tree, left


def _start_head(temp_dir: Path) -> RayHead:
    token_path = temp_dir / "auth_token"
    token_path.write_text(secrets.token_hex(32))  # the format `ray get-auth-token --generate` uses
    token_path.chmod(0o600)
    gcs, dashboard, agent, client = _free_ports(4)
    with open(temp_dir / "head.log", "wb") as log:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "ray"),
                "start",
                "--head",
                "--block",
                f"--port={gcs}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                # Defaults are fixed ports (52365, 10001) that another Ray here may hold already.
                f"--dashboard-agent-listen-port={agent}",
                f"--ray-client-server-port={client}",
                "--include-dashboard=true",
                "--num-cpus=4",
                "--num-gpus=1",  # a fake GPU, so the model stage schedules; torch still runs on CPU
                f"--object-store-memory={256 * 1024**2}",
                # Not /tmp/ray: that is where `ray.init()` finds a running cluster to join.
                f"--temp-dir={temp_dir / 'ray'}",
                "--disable-usage-stats",
            ],
            env=_ray_env(token_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, whatever `ray start` does itself
        )
    head = RayHead(process, temp_dir, f"http://127.0.0.1:{dashboard}", _ray_env(token_path))
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    # Ready means the jobs API answers a request carrying the token.
    while head.jobs_api_status(token_path.read_text()) != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            head.stop()
            pytest.fail(f"the head's jobs API did not come up:\n{head.log}")
        time.sleep(0.5)
    return head


def _write_corpus(root: Path) -> Corpus:
    corpus = Corpus(str(root))
    corpus.add("with-text", wav(1.0), text="what a lovely day")
    corpus.add("transcribed", wav(0.8, 22050, freq_hz=330.0))
    corpus.add("stereo-8k", wav(0.6, 8000, channels=2))
    return corpus.add("missing", missing=True)


def _session_ray_daemons() -> dict[int, Proc]:
    """GCS and raylet of a Ray this pytest process started itself (the ``ray_cluster`` fixture)."""
    procs = _running_processes()
    mine = _with_descendants(procs, {os.getpid(): procs[os.getpid()]})
    return {pid: p for pid, p in mine.items() if re.search(r"/(gcs_server|raylet) ", p.args)}


@dataclass(frozen=True)
class JobRun:
    submit: subprocess.CompletedProcess
    logs: str
    tokenless_status: int | None
    wrong_token_status: int | None
    rows: list[dict]
    head_processes: dict[int, Proc]
    leftovers: dict[int, Proc]
    session_daemons: dict[int, Proc]
    session_daemons_lost: set[int]

    @property
    def by_id(self) -> dict[str, dict]:
        return {row["id"]: row for row in self.rows}


def _submit_args(dashboard_url: str, submission_id: str, manifest: Path, output: Path, models):
    """The README's command, word for word apart from the test's paths, models and sizes."""
    return [
        "job", "submit",
        "--address", dashboard_url,
        "--submission-id", submission_id,
        "--working-dir", str(PROJECT),
        "--runtime-env-json", json.dumps({"excludes": UPLOAD_EXCLUDES}),
        "--entrypoint-num-cpus", "0",
        "--",
        "python", "jobs/annotate.py", str(manifest), str(output),
        "--emotion-model", str(models.emotion["concat"]),
        "--text-encoder", str(models.text_encoder),
        "--whisper-model", str(models.whisper),
        "--num-gpus-per-worker", "1",
        "--cpu-workers", "1",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def job_run(tmp_path_factory, tiny_models, ray_cluster) -> JobRun:
    # ray_cluster: the session's own Ray is up, so teardown is shown to leave it alone.
    root = tmp_path_factory.mktemp("corpus")
    manifest = Path(_write_corpus(root).manifest)
    output = root / "labels"
    session_daemons = _session_ray_daemons()
    # Short and private: Ray's socket paths must stay under the 107-byte Unix limit.
    temp_dir = Path(tempfile.mkdtemp(prefix="rayhead-"))
    head = None
    try:
        head = _start_head(temp_dir)
        # Dated, so a rerun never collides with an earlier id (the server rejects reused ones).
        submission_id = f"test-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        args = _submit_args(head.dashboard_url, submission_id, manifest, output, tiny_models)
        submit = head.ray(*args, timeout_s=JOB_TIMEOUT_S)
        tokenless_status = head.jobs_api_status(None)
        wrong_token_status = head.jobs_api_status(secrets.token_hex(32))
        logs = head.ray("job", "logs", "--address", head.dashboard_url, submission_id, timeout_s=60)
        assert logs.returncode == 0, logs.stdout + logs.stderr
    finally:
        head_processes, leftovers = head.stop() if head else ({}, {})
        shutil.rmtree(temp_dir, ignore_errors=True)
    return JobRun(
        submit=submit,
        logs=logs.stdout,
        tokenless_status=tokenless_status,
        wrong_token_status=wrong_token_status,
        rows=_read_output(output) if submit.returncode == 0 else [],
        head_processes=head_processes,
        leftovers=leftovers,
        session_daemons=session_daemons,
        session_daemons_lost=session_daemons.keys() - _still_running(session_daemons).keys(),
    )


def _read_output(output: Path) -> list[dict]:
    """The labels as an analyst would read them: DuckDB over the Parquet folder."""
    import duckdb

    relation = duckdb.sql(
        "SELECT id, status, error_code, transcript, transcript_source "
        f"FROM read_parquet('{output}/**/*.parquet')"
    )
    columns = relation.columns
    return [dict(zip(columns, row, strict=True)) for row in relation.fetchall()]


def test_ray_job_submit_waits_for_the_job_and_exits_zero(job_run):
    assert job_run.submit.returncode == 0, job_run.submit.stdout + job_run.submit.stderr
    assert "succeeded" in job_run.submit.stdout


def test_the_head_refuses_requests_without_its_token(job_run):
    assert (job_run.tokenless_status, job_run.wrong_token_status) == (401, 403)


def test_the_job_logs_contain_the_run_summary(job_run):
    summaries = SUMMARY_LINE.findall(job_run.logs)
    assert summaries == [("4", "3", "1", "missing_object 1")], job_run.logs


def test_the_local_output_has_one_row_per_manifest_row(job_run):
    assert sorted(row["id"] for row in job_run.rows) == sorted(MANIFEST_IDS)


def test_a_missing_audio_file_is_a_missing_object_error_row(job_run):
    statuses = {id_: (row["status"], row["error_code"]) for id_, row in job_run.by_id.items()}
    assert statuses == {
        "with-text": ("ok", None),
        "transcribed": ("ok", None),
        "stereo-8k": ("ok", None),
        "missing": ("error", "missing_object"),
    }


def test_a_manifest_transcript_is_used_and_whisper_fills_in_the_rest(job_run):
    with_text = job_run.by_id["with-text"]
    assert (with_text["transcript"], with_text["transcript_source"]) == (
        "what a lovely day",
        "manifest",
    )
    assert job_run.by_id["transcribed"]["transcript_source"] == "whisper"


def test_stopping_the_head_leaves_none_of_its_processes_running(job_run):
    seen = " ".join(p.args for p in job_run.head_processes.values())
    # The check below means something only if the head's tree was found in the first place.
    for program in ("/gcs_server ", "/raylet ", "dashboard.py", "ray::"):
        assert program in seen, f"no {program!r} among the head's processes"
    assert job_run.leftovers == {}, "\n".join(p.args for p in job_run.leftovers.values())


def test_stopping_the_head_leaves_the_sessions_own_ray_running(job_run):
    assert job_run.session_daemons, "the session's own Ray was not found before the test"
    assert job_run.session_daemons_lost == set()
