"""Accelerator memory errors absorbed: a model batch that does not fit is split in halves and
tried again, down to one Whisper window; the clips of a window that still does not fit become
``out_of_memory`` error rows, and the run goes on.

Windows are the unit because Whisper hears a window's clips together (windows.py): a window is
never split, so a clip keeps the transcript it would have had in any batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from .annotator import Annotation, ClipInput, WindowInput, select_windows
from .errors import ErrorCode, RowError

__all__ = ["annotate_within_memory", "is_out_of_memory"]

logger = logging.getLogger(__name__)

Annotate = Callable[[Sequence[ClipInput], Sequence[WindowInput]], list[Annotation]]

# CUDA's and the libraries' wordings: torch's OutOfMemoryError, CTranslate2's RuntimeError
# ("CUDA failed with error out of memory"), cuBLAS's allocation failure.
_OUT_OF_MEMORY = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDA_ERROR_OUT_OF_MEMORY")


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and any(text in str(exc) for text in _OUT_OF_MEMORY)
    )


def annotate_within_memory(
    annotate: Annotate,
    clips: Sequence[ClipInput],
    windows: Sequence[WindowInput],
    durations_s: Sequence[float],
) -> list[Annotation]:
    """``annotate(clips, windows)``, in smaller pieces where the accelerator runs out of memory;
    ``durations_s[i]`` is clip ``i``'s length, for the error of one that never fits."""
    try:
        return annotate(clips, windows)
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        _free_cached_memory()
        if len(windows) == 1:
            logger.warning("out of accelerator memory on one window alone: %s", exc)
            return [_out_of_memory(clip, durations_s[i]) for i, clip in enumerate(clips)]
        logger.info("out of accelerator memory on %d windows: splitting the batch", len(windows))
    out: list[Annotation | None] = [None] * len(clips)
    half = len(windows) // 2
    for part in (windows[:half], windows[half:]):
        part_clips, part_windows, order = select_windows(clips, part)
        notes = annotate_within_memory(
            annotate, part_clips, part_windows, [durations_s[c] for c in order]
        )
        for clip, note in zip(order, notes, strict=True):
            out[clip] = note
    assert all(note is not None for note in out), "each clip is in exactly one window"
    return out  # type: ignore[return-value]


def _out_of_memory(clip: ClipInput, duration_s: float) -> Annotation:
    note = Annotation(language=clip.language)
    note.fail(
        RowError(
            ErrorCode.OUT_OF_MEMORY,
            f"the accelerator ran out of memory on this {duration_s:.1f} s clip even alone (with "
            "the neighbours Whisper hears it with); run it on a GPU with more memory, or on CPU "
            "(--num-gpus-per-worker 0)",
        ),
        "models",
    )
    return note


def _free_cached_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
