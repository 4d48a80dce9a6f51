"""How the job sizes its work: input blocks stay small whatever the corpus, and the model actor
pool follows the cluster's GPUs unless capped."""

from __future__ import annotations

import pyarrow as pa
import pytest

from speech_emotion.config import ResourceConfig
from speech_emotion.pipeline import _blocks, model_pool, model_threads


def manifest(rows: int) -> pa.Table:
    return pa.table({"id": [str(i) for i in range(rows)]})


@pytest.mark.parametrize("rows", [1_000, 10_000, 1_000_000])
def test_input_blocks_hold_a_few_decode_batches_whatever_the_corpus_size(rows):
    blocks = _blocks(manifest(rows), workers=2, decode_batch_size=16)
    assert max(block.num_rows for block in blocks) == 64
    assert sum(block.num_rows for block in blocks) == rows


def test_blocks_bigger_than_a_decode_batch_hold_whole_decode_batches():
    blocks = _blocks(manifest(200), workers=2, decode_batch_size=16)
    assert [block.num_rows for block in blocks] == [32] * 6 + [8]


def test_a_small_manifest_still_spreads_over_the_decode_actors():
    blocks = _blocks(manifest(24), workers=2, decode_batch_size=16)
    assert len(blocks) == 8
    assert [block.num_rows for block in blocks] == [3] * 8


def test_model_actors_start_at_one_per_gpu_and_may_grow_with_the_cluster():
    pool = model_pool(ResourceConfig(num_gpus_per_worker=1.0), gpus=4.0)
    assert (pool.min_size, pool.initial_size, pool.max_size) == (1, 4, float("inf"))
    half = model_pool(ResourceConfig(num_gpus_per_worker=0.5), gpus=4.0)
    assert half.initial_size == 8


def test_a_cluster_still_scaling_up_from_zero_gpus_starts_one_model_actor():
    pool = model_pool(ResourceConfig(num_gpus_per_worker=1.0), gpus=0.0)
    assert (pool.initial_size, pool.max_size) == (1, float("inf"))


def test_a_configured_maximum_caps_the_model_actors():
    pool = model_pool(ResourceConfig(gpu_workers=2), gpus=8.0)
    assert (pool.min_size, pool.max_size) == (1, 2)


def test_a_cpu_only_run_loads_one_set_of_models_by_default():
    pool = model_pool(ResourceConfig(num_gpus_per_worker=0.0), gpus=0.0)
    assert (pool.min_size, pool.max_size) == (1, 1)


def test_cpu_only_models_use_every_core_of_their_node_unless_told():
    cpu_only = ResourceConfig(num_gpus_per_worker=0.0)
    assert model_threads(cpu_only, node_cpus=16) == 16
    assert model_threads(ResourceConfig(num_gpus_per_worker=0.0, cpus_per_gpu_worker=3), 16) == 3


def test_a_gpu_model_actor_keeps_one_thread_to_feed_its_gpu_unless_told():
    assert model_threads(ResourceConfig(num_gpus_per_worker=1.0), node_cpus=16) == 1
    assert model_threads(ResourceConfig(cpus_per_gpu_worker=4), node_cpus=16) == 4
