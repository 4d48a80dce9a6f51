"""What a UMUTeam fusion checkpoint's tensor shapes say about it: which fusion mode it was
trained for, its sizes, its label count. Read from the loaded weights on a worker, or from the
safetensors header alone on the driver, so a checkpoint that does not fit ``--mode`` is refused
before any worker starts (and without fetching 2 GB of weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ModelLoadError

__all__ = ["CheckpointShape", "shape_of"]


@dataclass(frozen=True)
class CheckpointShape:
    projection_dim: int
    head_dim: int
    num_labels: int
    fusion_heads: int
    """Attention heads of a multihead checkpoint; 0 for the others."""


def _dims(shapes: Mapping[str, Sequence[int]], key: str, source: str) -> Sequence[int]:
    if key not in shapes:
        raise ModelLoadError(
            f"emotion model {source!r}: checkpoint has no {key!r}; it is not a UMUTeam "
            "speech-emotion checkpoint"
        )
    return shapes[key]


def shape_of(shapes: Mapping[str, Sequence[int]], mode: str, source: str) -> CheckpointShape:
    """The checkpoint's sizes from its tensors' shapes; a ModelLoadError if they do not fit
    ``mode``."""
    projection_dim = _dims(shapes, "projector.weight", source)[0]
    head_dim = _dims(shapes, "classifier.dense.weight", source)[0]
    num_labels = _dims(shapes, "classifier.out_proj.weight", source)[0]
    # From proj's width, not from the head keys present: a missing head must show up as missing
    # keys, not as a smaller model.
    proj = shapes.get("mult_attn_model.proj.weight")
    heads = 0 if proj is None else proj[1] // projection_dim
    if (mode == "multihead") != (heads > 0):
        kind = "a multihead" if heads else "not a multihead"
        raise ModelLoadError(
            f"emotion model {source!r} is {kind} checkpoint but the job asked for mode {mode!r}"
        )
    expected = projection_dim * 2 if mode == "concat" else projection_dim
    if head_dim != expected:
        raise ModelLoadError(
            f"emotion model {source!r}: its head takes {head_dim}-d input, but mode {mode!r} "
            f"gives {expected}-d vectors (concat checkpoints take twice the projection size); "
            "check --mode against the checkpoint"
        )
    return CheckpointShape(projection_dim, head_dim, num_labels, heads)
