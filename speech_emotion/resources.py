"""Whether the cluster can ever give a model actor the GPUs it asks for.

Ray waits forever for a resource no node has (it cannot know that none will come), printing
autoscaler warnings. On the job's own local Ray there is nothing to wait for: without a GPU the
models run on CPU. On a cluster whose autoscaler reports its node types, a request no type can
meet is refused at once; where Ray cannot tell (a cluster without an autoscaler's node types),
the job says what it is waiting for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from .config import ResourceConfig
from .errors import ConfigError

__all__ = ["fit_gpus", "gpu_verdict"]

logger = logging.getLogger(__name__)


def gpu_verdict(
    need: float, node_gpus: Sequence[float], node_type_gpus: Sequence[float] | None, own_ray: bool
) -> str:
    """``run`` (a node has them), ``cpu`` (the job's own Ray has none: use the CPU), ``wait``
    (an autoscaler may add such a node, or nobody can tell) or ``never``."""
    if need == 0 or any(gpus >= need for gpus in node_gpus):
        return "run"
    if own_ray:
        return "cpu"
    if node_type_gpus is None:
        return "wait"
    return "wait" if any(gpus >= need for gpus in node_type_gpus) else "never"


def _node_type_gpus() -> list[float] | None:
    """GPUs per node of each node type the autoscaler may start; None where none reports."""
    import ray._private.state

    try:
        config = ray._private.state.state.get_cluster_config()
    except Exception:  # an internal API: its absence means "cannot tell", never a failure
        logger.debug("no cluster config from the autoscaler", exc_info=True)
        return None
    if config is None or not config.node_group_configs:
        return None
    return [
        float(group.resources.get("GPU", 0))
        for group in config.node_group_configs
        if group.max_count != 0
    ]


def fit_gpus(res: ResourceConfig, *, own_ray: bool) -> ResourceConfig:
    """``res`` as this cluster can run it: CPU models on a local Ray without a GPU."""
    import ray

    need = res.num_gpus_per_worker
    node_gpus = [float(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n["Alive"]]
    # The autoscaler's node types matter only on a cluster where no node has the GPUs now.
    ask_types = not own_ray and not any(gpus >= need for gpus in node_gpus)
    verdict = gpu_verdict(need, node_gpus, _node_type_gpus() if ask_types else None, own_ray)
    if verdict == "cpu":
        logger.warning(
            "no GPU on this machine: the models run on CPU (as with --num-gpus-per-worker 0)"
        )
        return replace(res, num_gpus_per_worker=0.0)
    if verdict == "never":
        raise ConfigError(
            f"num_gpus_per_worker={need:g} is invalid: no node type of this cluster has "
            f"{need:g} GPU(s), so the model actors would wait forever; use "
            "--num-gpus-per-worker 0 to run the models on CPU, or add a GPU node type"
        )
    if verdict == "wait":
        logger.warning(
            "no node has %g GPU(s) yet: waiting for the cluster to add one "
            "(--num-gpus-per-worker 0 runs the models on CPU)",
            need,
        )
    return res
