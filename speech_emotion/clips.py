"""Which clips of a decoded recording get annotated.

A recording (one manifest row) becomes one or more clips, each a span of samples of one channel
(or of the channels mixed) with its place among the recording's clips. The decode stage asks a
:class:`Clipper` for them and emits one row per clip, so how a recording is cut is decided here and
nowhere else: :func:`whole_recording` keeps each recording (each channel, when they are split)
whole; :class:`segments.Segmenter` cuts long ones into speech segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from .audio import DecodedAudio

__all__ = ["RATE_HZ", "Clip", "Clipper", "whole_recording"]

RATE_HZ = 16000
"""Samples per second of a decoded track: clips, segments and windows count samples at it."""


@dataclass(frozen=True)
class Clip:
    """One span of a decoded recording, and its identity within the recording."""

    start: int
    """First sample, at :data:`RATE_HZ`."""
    end: int
    """One past the last sample."""
    start_s: float
    """Start within the recording, seconds."""
    end_s: float
    """End within the recording, seconds."""
    channel: int | None = None
    """0-based channel of the file; None when the channels are mixed."""
    segment_index: int = 0
    """Place among the recording's clips, in time order per channel."""
    segment_count: int = 1
    """How many clips the recording has, all channels together."""
    whole: bool = True
    """The clip is the recording as its manifest row describes it, so a transcript given there
    is the clip's."""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def samples(self, audio: DecodedAudio) -> np.ndarray:
        """The clip's samples: a view, not a copy."""
        return audio.track(self.channel)[self.start : self.end]


class Clipper(Protocol):
    """Cuts a decoded recording into the clips to annotate, in time order."""

    def __call__(self, audio: DecodedAudio) -> list[Clip]: ...


def whole_recording(audio: DecodedAudio) -> list[Clip]:
    """The whole file as one clip, channels mixed (the toolkit's unit), or one clip per channel
    where they are split."""
    # The file's own duration (from its original rate), not the resampled sample count.
    if audio.split is None:
        return [Clip(start=0, end=audio.samples, start_s=0.0, end_s=audio.duration_s)]
    count = len(audio.split)
    return [
        Clip(0, audio.samples, 0.0, audio.duration_s, channel, 0, count, whole=False)
        for channel in range(count)
    ]
