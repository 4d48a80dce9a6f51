"""An autoscaling Ray on this machine: a head with Ray's fake multi-node provider whose worker
types are those of ``infra/aws/cluster.yaml``, a job submitted to it as the README says, and what
the cluster looked like while it ran (for ``tests/test_autoscaling.py`` and
``benchmarks/autoscaling.py``).

The wheel lacks the provider's example config, so this writes its own; worker types come from
the shipped file, so a change there that the job cannot use shows. What Ray needs of a real cloud
(node configs, images, ssh) has no meaning here and is left out; the maximum node counts are cut
to what two cores can hold, and the idle timeout to seconds. Fake nodes share one temp dir, and
the driver's working dir with it (docs/ray.md): manifest, models and output belong in S3, and the
job is not uploaded (``_submit``).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from speech_emotion.output import open_output

from .clusters import OUR_ACTORS
from .test_job_submit import PROJECT, VENV_BIN, RayHead, _free_ports, _ray_env

INFRA = PROJECT / "infra" / "aws" / "cluster.yaml"
HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head it runs on
IDLE_TIMEOUT_MIN = 0.1
# Ray Data's no-progress timeout (30 min by default) cut to well under the fake GPU node's start
# and its model actor's (seconds here, minutes on a cloud; 5 s was not always under): the job must
# wait for its first GPU node all the same.
NO_PROGRESS_TIMEOUT_S = 1
JOB_TIMEOUT_S = 600


def worker_types(infra: dict) -> tuple[tuple[str, dict], tuple[str, dict]]:
    """The shipped cluster's CPU worker type and its first GPU worker type."""
    head = infra["head_node_type"]
    workers = {k: v for k, v in infra["available_node_types"].items() if k != head}
    cpu = [(k, v) for k, v in workers.items() if not v["resources"].get("GPU")]
    gpu = [(k, v) for k, v in workers.items() if v["resources"].get("GPU", 0) >= 1]
    assert len(cpu) == 1, f"one CPU worker type for decoding, found {[k for k, _ in cpu]}"
    assert gpu, "no worker type with a GPU for the model actors"
    return cpu[0], gpu[0]


def fake_cluster_config(infra: dict, gcs_address: str, *, max_cpu: int, max_gpu: int) -> dict:
    """The autoscaling config of a local cluster with the shipped cluster's node types."""
    (cpu_name, cpu), (gpu_name, gpu) = worker_types(infra)
    head = infra["available_node_types"][infra["head_node_type"]]
    return {
        "cluster_name": f"fake-{infra['cluster_name']}",
        "max_workers": infra["max_workers"],
        "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            # Its default is port 6379 of this machine, where another Ray may be listening.
            "gcs_address": gcs_address,
        },
        "auth": {"ssh_user": "ray"},
        "head_node_type": HEAD_TYPE,
        "available_node_types": {
            HEAD_TYPE: {"resources": head["resources"], "node_config": {}, "max_workers": 0},
            cpu_name: _fake_type(cpu, max_cpu),
            gpu_name: _fake_type(gpu, max_gpu),
        },
        # The autoscaler reads these whatever the provider (a KeyError stops the head without
        # them); a fake node, a process on this machine, runs none.
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def _fake_type(node_type: dict, most: int) -> dict:
    return {
        "resources": node_type["resources"],
        "min_workers": node_type["min_workers"],
        "max_workers": min(most, node_type["max_workers"]),
        "node_config": {},
    }


@dataclass(frozen=True)
class Moment:
    """What the cluster looked like at one poll, seconds after the submission."""

    at_s: float
    status: str
    gpu_nodes: int
    cpu_nodes: int
    actors: tuple[tuple[str, str, bool], ...]
    """(stage, state, on a GPU node) of each of our actors."""


@dataclass(frozen=True)
class AutoscaledJob:
    status: str
    logs: str
    timeline: list[Moment]
    scaled_down_s: float | None
    """Seconds from the job's end until only the head was left (None: not within the wait)."""
    rows: Counter
    worker_errors: str
    """Last lines of the workers' stderr that name an error, to say why a job failed."""

    def first(self, found) -> Moment | None:
        return next((m for m in self.timeline if found(m)), None)


class Dashboard:
    """The head's HTTP APIs (jobs, state), with its token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def get(self, path: str) -> dict:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def job_status(self, submission_id: str) -> str:
        return self.get(f"/api/jobs/{submission_id}")["status"]

    def alive_workers(self) -> list[dict]:
        nodes = self.get("/api/v0/nodes?limit=100&detail=1")["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE" and not n["is_head_node"]]

    def our_actors(self, gpu_nodes: set[str]) -> tuple[tuple[str, str, bool], ...]:
        actors = self.get("/api/v0/actors?limit=1000&detail=1")["data"]["result"]["result"]
        return tuple(
            sorted(
                (OUR_ACTORS[a["class_name"]], a["state"], a.get("node_id") in gpu_nodes)
                for a in actors
                if a["class_name"] in OUR_ACTORS
            )
        )

    def moment(self, at_s: float, submission_id: str) -> Moment:
        workers = self.alive_workers()
        gpu = {n["node_id"] for n in workers if n["resources_total"].get("GPU", 0) > 0}
        return Moment(
            round(at_s, 1),
            self.job_status(submission_id),
            len(gpu),
            len(workers) - len(gpu),
            self.our_actors(gpu),
        )


def _start_head(temp_dir: Path, config_of) -> tuple[RayHead, Dashboard]:
    token_path = temp_dir / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    gcs, dashboard, agent, client = _free_ports(4)
    import ray._private.services

    ip = ray._private.services.get_node_ip_address()
    config = config_of(f"{ip}:{gcs}")
    config_path = temp_dir / "autoscaling.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = _ray_env(token_path)
    env.update(
        RAY_FAKE_CLUSTER="1",
        AUTOSCALER_UPDATE_INTERVAL_S="1",
        RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S=str(NO_PROGRESS_TIMEOUT_S),
    )
    head_cpus = config["available_node_types"][HEAD_TYPE]["resources"].get("CPU", 0)
    with open(temp_dir / "head.log", "wb") as log:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "ray"),
                "start",
                "--head",
                "--block",
                f"--port={gcs}",
                f"--autoscaling-config={config_path}",
                f"--num-cpus={head_cpus}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                f"--dashboard-agent-listen-port={agent}",
                f"--ray-client-server-port={client}",
                "--include-dashboard=true",
                f"--temp-dir={temp_dir / 'ray'}",
                "--disable-usage-stats",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    head = RayHead(process, temp_dir, f"http://127.0.0.1:{dashboard}", env)
    deadline = time.monotonic() + 60
    while head.jobs_api_status(token_path.read_text()) != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            head.stop()
            raise RuntimeError(f"the head's jobs API did not come up:\n{head.log}")
        time.sleep(0.5)
    return head, Dashboard(head.dashboard_url, token_path.read_text())


def _submit(head: RayHead, submission_id: str, job_args: Sequence[str]) -> None:
    """The README's command without the upload, and without waiting (the caller watches the
    cluster meanwhile). The project is on every fake node's disk, as in an image with it
    installed. Fake nodes share one temp dir, so each node that joins unpacks an upload again
    where the running workers have their working dir: a decode worker then lost its cwd
    (``FileNotFoundError`` from ``os.getcwd``, importing transformers) and the job failed, or
    died with *"Intel oneMKL FATAL ERROR: Cannot load …libctranslate2…"*. The README's upload is
    tests/test_job_submit.py's, on a head of one node."""
    submitted = head.ray(
        "job", "submit",
        "--address", head.dashboard_url,
        "--submission-id", submission_id,
        "--entrypoint-num-cpus", "0",
        "--no-wait",
        "--",
        "python", str(PROJECT / "jobs" / "annotate.py"), *job_args,
        timeout_s=60,
    )  # fmt: skip
    if submitted.returncode != 0:
        raise RuntimeError(submitted.stdout + submitted.stderr)


def _watch(dashboard: Dashboard, submission_id: str, since: float) -> list[Moment]:
    """The cluster at every change until the job ends."""
    timeline: list[Moment] = []
    while time.monotonic() - since < JOB_TIMEOUT_S:
        moment = dashboard.moment(time.monotonic() - since, submission_id)
        if not timeline or (moment.status, moment.gpu_nodes, moment.cpu_nodes, moment.actors) != (
            timeline[-1].status,
            timeline[-1].gpu_nodes,
            timeline[-1].cpu_nodes,
            timeline[-1].actors,
        ):
            timeline.append(moment)
        if moment.status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return timeline
        time.sleep(0.5)
    raise TimeoutError(f"the job did not end within {JOB_TIMEOUT_S} s: {timeline[-1]}")


def _scaled_down_s(dashboard: Dashboard) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < IDLE_TIMEOUT_MIN * 60 + 30:
        if not dashboard.alive_workers():
            return round(time.monotonic() - started, 1)
        time.sleep(0.5)
    return None


def run_autoscaled(job_args: Sequence[str], output: str, *, max_gpu: int) -> AutoscaledJob:
    """Starts an autoscaling head with no workers, submits ``jobs/annotate.py job_args``, watches
    the cluster until the job ends and its workers have gone, and stops the head."""
    infra = yaml.safe_load(INFRA.read_text())
    # Short and private: Ray's socket paths must stay under the 107-byte Unix limit.
    temp_dir = Path(tempfile.mkdtemp(prefix="rayas-"))
    head = None
    try:
        head, dashboard = _start_head(
            temp_dir, lambda gcs: fake_cluster_config(infra, gcs, max_cpu=1, max_gpu=max_gpu)
        )
        submission_id = f"autoscaling-{secrets.token_hex(3)}"
        since = time.monotonic()
        _submit(head, submission_id, job_args)
        timeline = _watch(dashboard, submission_id, since)
        scaled_down_s = _scaled_down_s(dashboard)
        logs = head.ray("job", "logs", "--address", head.dashboard_url, submission_id, timeout_s=60)
        worker_errors = _worker_errors(temp_dir)
    finally:
        if head is not None:
            head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
    status = timeline[-1].status
    rows = open_output(output).read(["id"])["id"].to_pylist() if status == "SUCCEEDED" else []
    return AutoscaledJob(status, logs.stdout, timeline, scaled_down_s, Counter(rows), worker_errors)


def _worker_errors(temp_dir: Path) -> str:
    lines = [
        f"{path.name}: {line}"
        for path in sorted((temp_dir / "ray" / "session_latest" / "logs").glob("worker-*.err"))
        for line in path.read_text(errors="replace").splitlines()
        if "Error" in line or "FATAL" in line
    ]
    return "\n".join(lines[-20:])


def figures(job: AutoscaledJob) -> str:
    """When things happened, in seconds after the submission."""
    running = job.first(lambda m: m.status == "RUNNING")
    most_gpus = max(m.gpu_nodes for m in job.timeline)
    most = max(alive("models", m) for m in job.timeline)
    gpu, gpus = (job.first(lambda m, n=n: m.gpu_nodes >= n) for n in (1, max(1, most_gpus)))
    models, pool = (job.first(lambda m, n=n: alive("models", m) >= n) for n in (1, max(1, most)))
    return (
        f"job {job.status} at {job.timeline[-1].at_s} s; driver running at "
        f"{running and running.at_s} s; first GPU node at {gpu and gpu.at_s} s, first model "
        f"actor up at {models and models.at_s} s; {most_gpus} GPU node(s) at "
        f"{gpus and gpus.at_s} s, {most} model actor(s) up at {pool and pool.at_s} s; workers "
        f"gone {job.scaled_down_s} s after the end"
    )


def alive(stage: str, moment: Moment) -> int:
    return sum(s == stage and state == "ALIVE" for s, state, _ in moment.actors)
