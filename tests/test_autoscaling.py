"""Autoscaling from zero on this machine (tests/autoscaling.py): a head whose worker types are
those of ``infra/aws/cluster.yaml`` (its CPU type and a GPU type, both from zero, no worker at
the start) gets ``jobs/annotate.py`` through ``ray job submit``. The autoscaler must start the
CPU and GPU workers the job's actors ask for, the job must finish, though its wait for the first
GPU node outlasts Ray Data's no-progress timeout, and the workers must go once idle.

Figures for docs/benchmarks.md print with ``-s``.
"""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from speech_emotion.config import ResourceConfig
from speech_emotion.pipeline import no_progress_timeout_s

from .autoscaling import (
    HEAD_TYPE,
    INFRA,
    NO_PROGRESS_TIMEOUT_S,
    AutoscaledJob,
    alive,
    fake_cluster_config,
    figures,
    run_autoscaled,
)
from .factories import Corpus
from .test_job_submit import SUMMARY_LINE

ROWS = 6


def on_a_cluster(test):
    """Starts the autoscaling cluster (through the fixture): slow, and a cluster test."""
    return pytest.mark.slow(pytest.mark.cluster(test))


def test_the_local_cluster_has_the_shipped_head_and_worker_types():
    infra = yaml.safe_load(INFRA.read_text())
    config = fake_cluster_config(infra, "127.0.0.1:1", max_cpu=1, max_gpu=2)
    types = config["available_node_types"]
    shipped = infra["available_node_types"]
    assert types[HEAD_TYPE]["resources"] == shipped[infra["head_node_type"]]["resources"]
    assert types[HEAD_TYPE]["resources"].get("CPU", 0) == 0, "the head must run no work"
    workers = {name: t for name, t in types.items() if name != HEAD_TYPE}
    assert [t["resources"].get("GPU", 0) > 0 for t in workers.values()] == [False, True]
    for name, node_type in workers.items():
        assert node_type["resources"] == shipped[name]["resources"]
        assert node_type["min_workers"] == 0, f"{name} must start from zero"


def test_a_run_that_starts_without_a_gpu_node_has_no_no_progress_timeout():
    assert no_progress_timeout_s(ResourceConfig(), gpus=0.0, default=1800) == -1
    assert no_progress_timeout_s(ResourceConfig(num_gpus_per_worker=2), 1.0, 1800) == -1
    assert no_progress_timeout_s(ResourceConfig(), gpus=1.0, default=1800) == 1800
    assert no_progress_timeout_s(ResourceConfig(num_gpus_per_worker=0), 0.0, 1800) == 1800


@pytest.fixture(scope="module")
def autoscaled_job(s3, s3_models) -> AutoscaledJob:
    corpus = Corpus(s3.url("autoscaling")).add_tones([f"clip-{i}" for i in range(ROWS)])
    output = s3.url("autoscaling/labels")
    job_args = [
        corpus.manifest,
        output,
        *s3_models.flags(),
        "--device",
        "cpu",
        # The CPU type has 16 CPUs: a decode actor each would be 16 processes on two cores.
        "--cpu-workers",
        "1",
        "--lease-timeout-s",
        "10",
    ]
    job = run_autoscaled(job_args, output, max_gpu=2)
    errors = len(job.worker_errors.splitlines())
    print(f"\nautoscaling, {ROWS} rows: {figures(job)}; {errors} error lines in workers' logs")
    return job


@on_a_cluster
def test_the_job_finishes_on_a_cluster_that_starts_without_workers(autoscaled_job):
    assert autoscaled_job.status == "SUCCEEDED", (
        f"{autoscaled_job.logs}\nworkers:\n{autoscaled_job.worker_errors}"
    )
    assert autoscaled_job.timeline[0].gpu_nodes == autoscaled_job.timeline[0].cpu_nodes == 0
    assert SUMMARY_LINE.findall(autoscaled_job.logs) == [(str(ROWS), str(ROWS), "0", "none")]
    assert autoscaled_job.rows == Counter(f"clip-{i}" for i in range(ROWS))


@on_a_cluster
def test_the_autoscaler_starts_gpu_workers_from_zero_for_the_model_actors(autoscaled_job):
    assert autoscaled_job.first(lambda m: m.gpu_nodes > 0) is not None
    ran = {
        (stage, on_gpu)
        for m in autoscaled_job.timeline
        for stage, state, on_gpu in m.actors
        if state == "ALIVE"
    }
    assert ("models", True) in ran
    assert ("models", False) not in ran
    assert ("decode", True) in ran or ("decode", False) in ran


@on_a_cluster
def test_waiting_for_the_gpu_node_longer_than_the_no_progress_timeout_does_not_fail_the_job(
    autoscaled_job,
):
    decoding = autoscaled_job.first(lambda m: alive("decode", m))
    models = autoscaled_job.first(lambda m: alive("models", m))
    assert decoding is not None and models is not None
    # Decoding ran ahead, then nothing moved until the first model actor was up.
    assert models.at_s - decoding.at_s > NO_PROGRESS_TIMEOUT_S
    assert autoscaled_job.status == "SUCCEEDED"


@on_a_cluster
def test_the_workers_scale_down_once_idle(autoscaled_job):
    assert autoscaled_job.scaled_down_s is not None
