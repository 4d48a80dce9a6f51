"""Which clips Whisper hears together.

Whisper's encoder always runs on a 30 s window, so a 4 s segment alone costs as much as 30 s of
audio, and heard alone it loses the context of its neighbours (on telephony audio that nearly
doubled the error; docs/segments.md). Neighbouring clips of one track therefore share a window:
the span of the recording from the first one's start to the last one's end, pauses included, at
most 30 s. Whisper's words are then given back to the clips by their aligned times. A clip longer
than a window (a whole recording kept whole) is a window of its own, decoded long-form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .clips import RATE_HZ, Clip

__all__ = ["Window", "plan_windows", "WINDOW_S"]

WINDOW_S = 30.0


@dataclass(frozen=True)
class Window:
    """A span of one track that Whisper hears at once, and the clips it holds."""

    channel: int | None
    start: int
    """First sample of the span."""
    end: int
    clips: tuple[int, ...]
    """Indices of the clips it holds, in time order."""

    def spans(self, clips: Sequence[Clip]) -> list[tuple[float, float]]:
        """Where each of its clips lies, in seconds from the window's start."""
        return [
            ((clips[i].start - self.start) / RATE_HZ, (clips[i].end - self.start) / RATE_HZ)
            for i in self.clips
        ]


def plan_windows(clips: Sequence[Clip], *, pack: bool = True) -> list[Window]:
    """Windows for a recording's clips (in time order per channel), each clip in exactly one.

    With ``pack``, a clip joins the window before it when both are of the same track and the
    window still spans at most :data:`WINDOW_S`; otherwise every clip is a window of its own.
    """
    longest = round(WINDOW_S * RATE_HZ)
    windows: list[Window] = []
    for i, clip in enumerate(clips):
        last = windows[-1] if windows else None
        if (
            pack
            and last is not None
            and last.channel == clip.channel
            and clip.start >= last.end
            and clip.end - last.start <= longest
        ):
            windows[-1] = Window(last.channel, last.start, clip.end, (*last.clips, i))
        else:
            windows.append(Window(clip.channel, clip.start, clip.end, (i,)))
    return windows
