"""Short windows of different recordings share one of Whisper's 30 s windows.

Whisper's encoder always runs on 30 s: a 4 s clip heard alone pays for 30 s, on CPU and GPU alike.
So windows that are short (a short clip, or neighbouring segments of a recording, :mod:`windows`)
and are to be heard in the same language go into one window, one after another with
:data:`GAP_S` of silence between them, and Whisper's aligned words are given back to each clip
by its place (the same mechanism as segments of one recording). The silence keeps one clip's words
from running into the next's; a word Whisper places in the middle of a gap means it could not tell
them apart, and the model stage hears that window's clips again one by one
(:data:`asr.STRAY_MARGIN_S`). Windows near 30 s, or whose language is to be detected (one detection
would speak for every clip), are heard alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from .clips import RATE_HZ

__all__ = ["GAP_S", "GAP_SAMPLES", "MAX_PACKED_S", "plan_packs"]

WINDOW_SAMPLES = 30 * RATE_HZ
GAP_S = 2.0
"""Silence between two packed windows: longer than a pause within a sentence, so Whisper ends one
clip's sentence before the next begins."""
GAP_SAMPLES = round(GAP_S * RATE_HZ)
MAX_PACKED_S = 20.0
"""A window longer than this is heard alone: it would leave room for little else, and Whisper's
timestamps are least sure at the end of a full window."""


def plan_packs(lengths: Sequence[int], keys: Sequence[Hashable | None]) -> list[tuple[int, ...]]:
    """Which windows share a 30 s window: groups of indices, in order, each window in exactly one.

    ``lengths`` are the windows' samples; ``keys`` what must be equal to share (the language
    forced on Whisper), None for a window to hear alone. Windows join the open group of their key
    while it fits (``GAP_SAMPLES`` between each), so a batch's windows pack in the order they came.
    """
    longest = round(MAX_PACKED_S * RATE_HZ)
    groups: list[tuple[int, ...]] = []
    open_groups: dict[Hashable, tuple[int, int]] = {}  # key -> (group index, its samples)
    for i, (length, key) in enumerate(zip(lengths, keys, strict=True)):
        if key is None or length > longest:
            groups.append((i,))
            continue
        if key in open_groups:
            at, used = open_groups[key]
            if used + GAP_SAMPLES + length <= WINDOW_SAMPLES:
                groups[at] = (*groups[at], i)
                open_groups[key] = (at, used + GAP_SAMPLES + length)
                continue
        open_groups[key] = (len(groups), length)
        groups.append((i,))
    return groups
