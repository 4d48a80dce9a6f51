"""Multi-node Ray on one machine, for the cluster tests: a ``ray.cluster_utils.Cluster`` whose
nodes each have a home folder of their own (so each has its own model cache, as machines do),
where each actor of a run ran (from the GCS), and the job run as its command line does.

Nothing here connects this process to the cluster: the session's own Ray (``ray_cluster``) may
be connected already, and one process holds one connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

PROJECT = Path(__file__).resolve().parent.parent
MODEL_CACHE = Path(".cache") / "speech_emotion" / "models"  # under a home: the default cache
OUR_ACTORS = {
    "MapWorker(MapBatches(DecodeStage))": "decode",
    "MapWorker(MapBatches(ModelStage))": "models",
    "Tally": "tally",
}


@dataclass(frozen=True)
class ActorRun:
    """One actor of a run: its stage, state, the node it ran on (last) and its restarts."""

    stage: str
    state: str
    node: str
    restarts: int


@dataclass(frozen=True)
class S3Models:
    """The tiny models as folders in object storage, as clusters without the hub use them."""

    emotion: str
    text_encoder: str
    whisper: str

    def flags(self) -> list[str]:
        return [
            "--emotion-model",
            self.emotion,
            "--text-encoder",
            self.text_encoder,
            "--whisper-model",
            self.whisper,
        ]


T = TypeVar("T")


def _started(start: Callable[[], T], tries: int = 3) -> T:
    """A node started, tried again where it did not register in time: Ray waits a fixed 30 s
    for that, which a loaded 2-core machine can exceed while other nodes start."""
    for attempt in range(tries):
        try:
            return start()
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


class LocalCluster:
    """A head that runs no work and named worker nodes, started and removed one by one."""

    def __init__(self, root: Path) -> None:
        from ray.cluster_utils import Cluster

        self.root = root
        # Short and private: socket paths must stay under 107 bytes, and /tmp/ray is where
        # `ray.init(address="auto")` looks for a cluster.
        self.temp_dir = tempfile.mkdtemp(prefix="raycl-")
        self._nodes: dict[str, object] = {}
        self._names: dict[str, str] = {}
        with _machine_address_untouched():
            self._cluster = _started(
                lambda: Cluster(
                    initialize_head=True,
                    head_node_args={
                        "num_cpus": 0,
                        "temp_dir": self.temp_dir,
                        "include_dashboard": False,
                        "env_vars": self._home("head"),
                    },
                )
            )
        self._names[self._cluster.head_node.node_id] = "head"

    @property
    def address(self) -> str:
        return self._cluster.address

    def _home(self, name: str) -> dict[str, str]:
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        return {"HOME": str(home)}

    def add(self, name: str, *, cpus: int, gpus: int = 0, wait: bool = True) -> None:
        """A worker node; ``gpus`` is a GPU resource only (torch stays on the CPU device).
        Without ``wait``, it joins while the caller goes on (:meth:`wait` for all to be up)."""
        node = _started(
            lambda: self._cluster.add_node(
                wait=wait, num_cpus=cpus, num_gpus=gpus, env_vars=self._home(name)
            )
        )
        self._nodes[name] = node
        self._names[node.node_id] = name

    def wait(self) -> None:
        self._cluster.wait_for_nodes()

    def remove(self, name: str) -> None:
        """Kills the node's processes at once, as a lost machine would go."""
        self._cluster.remove_node(self._nodes.pop(name), allow_graceful=False)

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def actors(self) -> dict[str, ActorRun]:
        """Our actors of every run so far, by actor id."""
        out = {}
        for actor_id, info in self._cluster.global_state.actor_table(None).items():
            stage = OUR_ACTORS.get(info["ActorClassName"])
            node = self._names.get(info["Address"]["NodeID"], "?")
            if stage is not None:
                out[actor_id] = ActorRun(stage, info["State"], node, info["NumRestarts"])
            # A pending actor has no node yet.
        return out

    def model_copies(self, name: str) -> list[str]:
        """The complete model copies in a node's cache."""
        cache = self.root / name / MODEL_CACHE
        return sorted(p.parent.name for p in cache.glob("*/.complete"))

    def close(self) -> None:
        for name in list(self._nodes):
            self.remove(name)
        self._cluster.remove_node(self._cluster.head_node)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@contextlib.contextmanager
def _machine_address_untouched() -> Iterator[None]:
    """A new head records its address where ``ray.init(address="auto")`` finds it, for every
    Ray user of this machine; ours is no cluster for them."""
    import ray._private.utils

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray._private.utils, "write_ray_address", lambda *args, **kwargs: None)
        yield


class RunOnCluster:
    """The job as its command line runs it, joining the cluster with ``--ray-address``."""

    def __init__(self, cluster: LocalCluster, args: Sequence[str]) -> None:
        self.cluster = cluster
        self._before = set(cluster.actors())
        self.started = time.monotonic()
        self.losses: dict[str, float] = {}
        """Nodes removed mid-run, and when (seconds into the run)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "speech_emotion.cli", "annotate", *args],
            cwd=PROJECT,
            # The driver's machine is none of the nodes: its home shows what it copied itself.
            env={**os.environ, "HOME": str(cluster.root / "driver")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def actors(self) -> list[ActorRun]:
        """This run's actors (a cluster's GCS remembers those of earlier runs too)."""
        return [a for i, a in self.cluster.actors().items() if i not in self._before]

    def wait_for(self, what: str, found: Callable[[list[ActorRun]], bool], timeout_s: float):
        """Polls this run's actors until ``found``; fails if the run ends or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not found(self.actors()):
            if self.process.poll() is not None:
                pytest.fail(f"the run ended before {what}:\n{self.process.communicate()[1]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout_s} s: {self.actors()}")
            time.sleep(0.1)

    def lose_node_of(self, stage: str, nodes: Sequence[str], timeout_s: float) -> str:
        """Waits for a live actor of ``stage`` on one of ``nodes`` and removes its node at once;
        returns the node's name, and notes when (:attr:`losses`)."""

        def alive(actors: list[ActorRun]) -> list[str]:
            return [a.node for a in actors if a.stage == stage and a.state == "ALIVE"]

        self.wait_for(f"a live {stage} actor", lambda a: set(alive(a)) & set(nodes), timeout_s)
        node = next(n for n in alive(self.actors()) if n in nodes)
        self.cluster.remove(node)
        self.losses[node] = round(time.monotonic() - self.started, 1)
        return node

    def finish(self, timeout_s: float) -> tuple[int, str, float]:
        """Exit code, stderr and wall time of the run."""
        try:
            _, stderr = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
            pytest.fail(f"the run did not end within {timeout_s} s:\n{stderr}")
        return self.process.returncode, stderr, time.monotonic() - self.started


@contextlib.contextmanager
def full_downloads(path_part: str) -> Iterator[list[str]]:
    """Paths of whole-object GETs under ``path_part`` that the loopback S3 server answers
    meanwhile, from its access log (a ranged read, such as a header check, answers 206)."""
    got: list[str] = []

    class Downloads(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = record.getMessage()
            if '"GET ' in line and path_part in line and '" 200 ' in line:
                got.append(line.split('"GET ', 1)[1].split(" ", 1)[0])

    handler = Downloads()
    logger = logging.getLogger("werkzeug")
    logger.addHandler(handler)
    try:
        yield got
    finally:
        logger.removeHandler(handler)
