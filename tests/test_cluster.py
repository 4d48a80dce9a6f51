"""The job on a multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``), joined with
``--ray-address`` as on a real one: a head that runs no work (as in ``infra/``), CPU nodes and
nodes with a GPU resource (the models run on the CPU device there), manifest, audio, models and
output in the loopback S3. Where each actor ran comes from the cluster's GCS; each node has its
own home, so its own model cache.

Then one run loses two nodes, each killed at once as a lost machine goes: a CPU node holding the
decode actor while the run still waits for its GPU node, then, once two GPU nodes have joined,
the GPU node holding the working model actor. Each run ends with every manifest row exactly once.

One cluster serves the module (each test makes the nodes it needs); figures for
docs/reliability.md print with ``-s``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from speech_emotion.output import open_output

from .clusters import LocalCluster, RunOnCluster, full_downloads
from .factories import Corpus

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

RUN_TIMEOUT_S = 240
# Each actor is a process importing torch: on two shared cores one starts in 5-20 s.
ACTOR_TIMEOUT_S = 120
WEIGHTS = ("emotion/model.safetensors", "text-encoder/model.safetensors", "whisper/model.bin")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    # After the S3 fixture: the nodes' processes inherit its endpoint from the environment.
    cluster = LocalCluster(tmp_path_factory.mktemp("nodes"))
    try:
        yield cluster
    finally:
        cluster.close()


def shape(cluster: LocalCluster, cpu: list[str], gpu: list[str]) -> None:
    """Makes the cluster's worker nodes exactly these, adding and removing as needed."""
    for name in set(cluster.nodes()) - {*cpu, *gpu}:
        cluster.remove(name)
    for name in set(cpu) - set(cluster.nodes()):
        cluster.add(name, cpus=1, wait=False)
    for name in set(gpu) - set(cluster.nodes()):
        cluster.add(name, cpus=1, gpus=1, wait=False)
    cluster.wait()


def start(cluster, s3, s3_models, name: str, rows: int, *extra: str) -> tuple[Corpus, RunOnCluster]:
    corpus = Corpus(s3.url(f"cluster/{name}")).add_tones([f"{name}-{i:02d}" for i in range(rows)])
    args = [
        corpus.manifest,
        s3.url(f"cluster/{name}/labels"),
        *s3_models.flags(),
        "--ray-address",
        cluster.address,
        "--device",
        "cpu",
        "--lease-timeout-s",
        "10",
        *extra,
    ]
    return corpus, RunOnCluster(cluster, args)


def committed_ids(s3, name: str) -> Counter:
    rows = open_output(s3.url(f"cluster/{name}/labels")).read(["id", "status"]).to_pylist()
    assert {row["status"] for row in rows} == {"ok"}
    return Counter(row["id"] for row in rows)


@pytest.fixture(scope="module")
def multi_node_run(cluster, s3, s3_models):
    shape(cluster, cpu=["cpu-1", "cpu-2"], gpu=["gpu-1"])
    with full_downloads("/models/cluster/") as downloads:
        corpus, run = start(cluster, s3, s3_models, "multi", 6)
        code, stderr, wall_s = run.finish(RUN_TIMEOUT_S)
    assert code == 0, stderr
    print(f"\nmulti-node run: 6 rows in {wall_s:.1f} s")
    return corpus, run.actors(), sorted(downloads)


def test_every_row_is_annotated_exactly_once_on_the_cluster(multi_node_run, s3):
    corpus, _, _ = multi_node_run
    assert committed_ids(s3, "multi") == Counter(corpus.ids)


def test_model_actors_run_on_the_gpu_node_and_decode_actors_on_nodes_with_cpus(multi_node_run):
    _, actors, _ = multi_node_run
    where = {(a.stage, a.node) for a in actors}
    assert {node for stage, node in where if stage == "models"} == {"gpu-1"}
    # Ray Data spreads actors over every node that has room (its SPREAD strategy): a decode
    # actor may take the GPU node's spare CPU, never the head, which offers none.
    decode_nodes = {node for stage, node in where if stage == "decode"}
    assert decode_nodes and decode_nodes <= {"cpu-1", "cpu-2", "gpu-1"}
    print(f"decode actors ran on {sorted(decode_nodes)}")


def test_the_runs_own_actor_stays_on_the_drivers_node(multi_node_run):
    _, actors, _ = multi_node_run
    assert [a.node for a in actors if a.stage == "tally"] == ["head"]


def test_object_storage_models_are_copied_once_to_the_node_that_runs_them(multi_node_run, cluster):
    _, _, downloads = multi_node_run
    # The emotion model, its text encoder and Whisper (the rows have no transcripts).
    assert len(cluster.model_copies("gpu-1")) == 3
    for name in ("cpu-1", "cpu-2", "head", "driver"):
        assert cluster.model_copies(name) == [], name
    # Whole weight files fetched, by the S3 server's count: once each (the driver reads only
    # the emotion model's header, a ranged read).
    fetched = Counter(path.split("/models/cluster/")[1] for path in downloads)
    assert {name: fetched[name] for name in WEIGHTS} == dict.fromkeys(WEIGHTS, 1)


@pytest.fixture(scope="module")
def nodes_lost_run(cluster, s3, s3_models):
    """One run that loses a node twice: a CPU node holding the decode actor while the run still
    waits for its GPU node (as on an autoscaling cluster), so everything decoded so far waits on
    that node; then, once two GPU nodes have joined, the GPU node holding the working model
    actor."""
    shape(cluster, cpu=["cpu-1", "cpu-2"], gpu=[])
    corpus, run = start(cluster, s3, s3_models, "lost", 8, "--batch-size", "1")
    lost = {}
    lost["cpu"] = run.lose_node_of("decode", ["cpu-1", "cpu-2"], ACTOR_TIMEOUT_S)
    cluster.add("gpu-2", cpus=1, gpus=1, wait=False)
    cluster.add("gpu-3", cpus=1, gpus=1, wait=False)
    lost["gpu"] = run.lose_node_of("models", ["gpu-2", "gpu-3"], ACTOR_TIMEOUT_S)
    code, stderr, wall_s = run.finish(RUN_TIMEOUT_S)
    assert code == 0, stderr
    print(f"\nnodes lost at {run.losses}: 8 rows in {wall_s:.1f} s")
    return corpus, run.actors(), lost


def test_every_row_is_annotated_exactly_once_though_nodes_were_lost(nodes_lost_run, s3):
    corpus, _, _ = nodes_lost_run
    assert committed_ids(s3, "lost") == Counter(corpus.ids)


def test_the_actors_of_the_lost_nodes_are_restarted_on_the_nodes_left(nodes_lost_run, cluster):
    _, actors, lost = nodes_lost_run
    left = set(cluster.nodes())
    for stage in ("decode", "models"):
        mine = [a for a in actors if a.stage == stage]
        assert any(a.restarts >= 1 and a.node in left for a in mine), mine
    # The model work went on on the GPU node that joined with the lost one.
    [other_gpu] = {"gpu-2", "gpu-3"} - {lost["gpu"]}
    assert any(a.stage == "models" and a.node == other_gpu for a in actors), actors
