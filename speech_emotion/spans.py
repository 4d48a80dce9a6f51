"""A batch's recordings as spans of files, and the pieces of each file decoded once for them.

A manifest row may be a span of a longer file (NeMo offsets, lhotse supervisions), on one of its
channels. Rows of a batch that share a file share its read (:func:`by_file`), and rows whose
spans lie close together share one decode: a piece of the file from the first span's start to the
last one's end, at most the length limit long (and, where the decoder can seek, without long
gaps), from which each row's span is then cut at 16 kHz
(:func:`cut`), like a segment from a whole recording. A row without a span is the whole file:
a piece of its own, decoded exactly as before spans existed.

Pure functions over plain values; the decode stage fetches and decodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .clips import RATE_HZ
from .errors import ErrorCode, RowError

if TYPE_CHECKING:
    import pyarrow as pa

    from .audio import DecodedAudio

__all__ = [
    "END_TOLERANCE_S",
    "MAX_GAP_S",
    "Span",
    "Piece",
    "spans_of",
    "by_file",
    "plan_pieces",
    "cut",
]

# A span may end this far past the end of its file and is cut there: manifests are often written
# from the original files' lengths, and a lossy codec pads or trims up to a frame (mp3: 1,152
# samples, 72 ms at 16 kHz). lhotse tolerates 25 ms between a manifest's and a file's duration;
# a span ending further out names audio the file does not have.
END_TOLERANCE_S = 0.1
# Spans further apart than this in a file the decoder can seek in are decoded apart. Measured on
# the 2-core test machine: a new piece (open, seek, a fresh resampler) costs 5-25 ms, what
# decoding 2-9 s of wav, flac or mp3 at 44.1 kHz to 16 kHz costs; past that, skipping is cheaper,
# and the piece does not hold audio nobody annotates. A file that cannot seek (m4a: FFmpeg,
# decoded from its start) is one piece as long as the limit allows.
MAX_GAP_S = 5.0


@dataclass(frozen=True)
class Span:
    """Where a row's audio lies in its file."""

    start_s: float = 0.0
    end_s: float | None = None
    """None: to the end of the file."""
    file_channel: int | None = None
    """The file's channel the row is on; None: the channels as the job says (mixed or split)."""

    @property
    def whole(self) -> bool:
        return self.start_s == 0 and self.end_s is None and self.file_channel is None


@dataclass(frozen=True)
class Piece:
    """A part of one file, decoded once for the rows whose spans lie in it."""

    audio: str
    """The file (an audio reference, :mod:`fetch`)."""
    start_s: float
    end_s: float | None
    split: bool
    """Decoded with its channels split (the job splits them, or its rows are on one channel)."""
    rows: tuple[int, ...]
    """The batch rows it serves, by start."""


def spans_of(batch: pa.Table) -> list[Span]:
    """Each recording's span (:data:`schema.RECORDING_SCHEMA` columns)."""
    columns = zip(
        batch["start_s"].to_pylist(),
        batch["end_s"].to_pylist(),
        batch["file_channel"].to_pylist(),
        strict=True,
    )
    return [Span(start, end, channel) for start, end, channel in columns]


def by_file(refs: Sequence[str]) -> dict[str, list[int]]:
    """The rows of each file, files in the order they first appear."""
    files: dict[str, list[int]] = {}
    for row, ref in enumerate(refs):
        files.setdefault(ref, []).append(row)
    return files


def plan_pieces(
    ref: str,
    rows: Sequence[int],
    spans: Sequence[Span],
    *,
    split_channels: bool,
    longest_s: float,
    max_gap_s: float | None = MAX_GAP_S,
    share: bool = True,
) -> list[Piece]:
    """The pieces to decode of one file for its ``rows``: every row in exactly one. Spans share a
    piece up to ``longest_s`` long, with gaps of at most ``max_gap_s`` (None: any) between them;
    with ``share`` off, a piece per row."""
    groups: dict[bool, list[int]] = {}
    for row in rows:
        groups.setdefault(split_channels or spans[row].file_channel is not None, []).append(row)
    pieces: list[Piece] = []
    for split, held in groups.items():
        held = sorted(held, key=lambda r: (spans[r].start_s, r))
        if share:
            pieces += _pack(ref, split, held, spans, longest_s, max_gap_s)
        else:
            pieces += [Piece(ref, spans[r].start_s, spans[r].end_s, split, (r,)) for r in held]
    return pieces


def _pack(
    ref: str,
    split: bool,
    rows: list[int],
    spans: Sequence[Span],
    longest_s: float,
    max_gap_s: float | None,
) -> list[Piece]:
    """One file's rows (by start) in as few pieces as the limits allow. A row reaching to the
    file's end shares only with rows starting where it does: the length of what follows is
    unknown until decoded."""
    pieces: list[Piece] = []
    open_ended: dict[float, list[int]] = {}
    start, end = 0.0, 0.0  # the piece being filled
    held: list[int] = []
    for row in rows:
        span = spans[row]
        if span.end_s is None:
            open_ended.setdefault(span.start_s, []).append(row)
            continue
        close = max_gap_s is None or span.start_s - end <= max_gap_s
        if held and close and max(end, span.end_s) - start <= longest_s:
            end, held = max(end, span.end_s), [*held, row]
            continue
        if held:
            pieces.append(Piece(ref, start, end, split, tuple(held)))
        start, end, held = span.start_s, span.end_s, [row]
    if held:
        pieces.append(Piece(ref, start, end, split, tuple(held)))
    pieces += [Piece(ref, s, None, split, tuple(r)) for s, r in open_ended.items()]
    return sorted(pieces, key=lambda piece: piece.start_s)


def cut(audio: DecodedAudio, piece: Piece, span: Span) -> DecodedAudio | RowError:
    """A row's audio out of its piece's: the samples of its span (and channel), or why the file
    does not hold them. A row that is the whole piece gets the piece itself."""
    from .audio import DecodedAudio

    file_end_s = piece.start_s + audio.duration_s  # where the file ends, if the span passes it
    problem = _outside(audio, file_end_s, span)
    if problem is not None:
        return RowError(ErrorCode.SPAN_OUTSIDE_AUDIO, problem)
    if span.file_channel is None and (span.start_s, span.end_s) == (piece.start_s, piece.end_s):
        return audio
    first = round((span.start_s - piece.start_s) * RATE_HZ)
    stop = None if span.end_s is None else round((span.end_s - piece.start_s) * RATE_HZ)
    end_s = file_end_s if span.end_s is None else min(span.end_s, file_end_s)
    if span.file_channel is not None:
        waveform, split = audio.track(span.file_channel)[first:stop], None
    elif audio.split is not None:
        waveform, split = np.zeros(0, np.float32), tuple(t[first:stop] for t in audio.split)
    else:
        waveform, split = audio.waveform[first:stop], None
    return DecodedAudio(
        waveform=waveform,
        sample_rate_hz=audio.sample_rate_hz,
        channels=audio.channels,
        duration_s=end_s - span.start_s,
        split=split,
    )


def _outside(audio: DecodedAudio, file_end_s: float, span: Span) -> str | None:
    """What of the span the file does not hold, in words; None if it holds it all."""
    if span.file_channel is not None and span.file_channel >= audio.channels:
        return (
            f"the manifest names channel {span.file_channel} (0-based) of a file with "
            f"{audio.channels} channel(s)"
        )
    if span.start_s >= file_end_s:
        return (
            f"the span starts at {span.start_s:.3f} s, past the end of the file "
            f"({file_end_s:.3f} s); check the manifest's offsets"
        )
    if span.end_s is not None and span.end_s > file_end_s + END_TOLERANCE_S:
        return (
            f"the span ends at {span.end_s:.3f} s, past the end of the file ({file_end_s:.3f} s); "
            "check the manifest's offsets and durations"
        )
    return None
