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

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .clips import RATE_HZ
from .decoded import DecodedWindow

__all__ = ["GAP_S", "GAP_SAMPLES", "MAX_PACKED_S", "Packer", "Unheard", "packable", "plan_packs"]

WINDOW_SAMPLES = 30 * RATE_HZ
GAP_S = 2.0
"""Silence between two packed windows: longer than a pause within a sentence, so Whisper ends one
clip's sentence before the next begins."""
GAP_SAMPLES = round(GAP_S * RATE_HZ)
MAX_PACKED_S = 20.0
"""A window longer than this is heard alone: it would leave room for little else, and Whisper's
timestamps are least sure at the end of a full window."""


def packable(samples: int) -> bool:
    """Whether a window this long may share Whisper's window."""
    return samples <= round(MAX_PACKED_S * RATE_HZ)


def plan_packs(lengths: Sequence[int], keys: Sequence[Hashable | None]) -> list[tuple[int, ...]]:
    """Which windows share a 30 s window: groups of indices, each window in exactly one, each
    group in index order and the groups by their first index.

    ``lengths`` are the windows' samples; ``keys`` what must be equal to share (the language
    forced on Whisper), None for a window to hear alone. Longest first, each window joins the
    first group of its key it fits in (``GAP_SAMPLES`` between each), else starts one: on
    1-20 s clips in batches of 16, 15 % fewer windows than packing them in the order they came.
    """
    groups: list[list[int]] = []
    used: list[int] = []  # samples of each group, gaps included
    shared: defaultdict[Hashable, list[int]] = defaultdict(list)  # groups a key's windows join
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        key = keys[i]
        if key is None or not packable(lengths[i]):
            groups.append([i])
            used.append(lengths[i])
            continue
        fits = (g for g in shared[key] if used[g] + GAP_SAMPLES + lengths[i] <= WINDOW_SAMPLES)
        g = next(fits, None)
        if g is None:  # a new group: no gap before its first window
            g = len(groups)
            groups.append([])
            used.append(-GAP_SAMPLES)
            shared[key].append(g)
        groups[g].append(i)
        used[g] += GAP_SAMPLES + lengths[i]
    return sorted(tuple(sorted(group)) for group in groups)


@dataclass
class Unheard:
    """A window Whisper is to hear, waiting to be packed."""

    window: DecodedWindow
    """Its clips, placed from its own start."""
    samples: np.ndarray
    key: Hashable
    """What a window must share to be packed with it (the language Whisper is forced to)."""


Hear = Callable[[DecodedWindow, np.ndarray, bool], DecodedWindow]
"""Gives a window what Whisper hears of ``samples`` (its log-mel), and whether it was packed."""


class Packer:
    """Holds a decode batch's short windows until they are packed (:func:`plan_packs`)."""

    def __init__(self, hear: Hear) -> None:
        self._hear = hear
        self._held: list[Unheard] = []

    def add(self, unheard: Unheard) -> None:
        self._held.append(unheard)

    @property
    def samples(self) -> int:
        """Samples held."""
        return sum(len(u.samples) for u in self._held)

    def flush(self) -> list[DecodedWindow]:
        """The held windows, packed and heard; nothing is held after."""
        held, self._held = self._held, []
        groups = plan_packs([len(u.samples) for u in held], [u.key for u in held])
        return [self._pack([held[i] for i in group]) for group in groups]

    def _pack(self, units: list[Unheard]) -> DecodedWindow:
        if len(units) == 1:
            return self._hear(units[0].window, units[0].samples, False)
        gap = np.zeros(GAP_SAMPLES, np.float32)
        pieces: list[np.ndarray] = []
        clips, at = [], 0
        for unit in units:
            if pieces:
                pieces.append(gap)
                at += GAP_SAMPLES
            pieces.append(unit.samples)
            clips += [replace(c, offset_s=c.offset_s + at / RATE_HZ) for c in unit.window.clips]
            at += len(unit.samples)
        return self._hear(DecodedWindow(clips), np.concatenate(pieces), True)
