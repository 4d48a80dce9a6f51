"""Speech segments of a long recording: voice activity, then utterance-sized spans.

Silero VAD (the ONNX model faster-whisper ships, CPU, offline) scores every 32 ms frame; frames
above its thresholds are speech. Speech runs closer than a short pause are one utterance, and
utterances become segments: one longer than ``max_segment_s`` is cut at its longest pause (at its
least speech-like frame if it has none), one shorter than ``min_segment_s`` joins the neighbour
across the shorter pause, or else takes in the silence around it. Segments never overlap and never
pass 30 s, Whisper's window. The numbers below are explained in docs/segments.md.

numpy and onnxruntime only: this runs on decode workers, which never import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .clips import RATE_HZ, Clip, whole_recording

if TYPE_CHECKING:
    from .audio import DecodedAudio
    from .config import SegmentConfig

__all__ = ["FRAME_SAMPLES", "speech_probabilities", "find_segments", "Segmenter"]

FRAME_SAMPLES = 512
"""Silero VAD's frame at 16 kHz: 32 ms."""
_CONTEXT_SAMPLES = 64
# faster-whisper runs the model on 10,000 frames at a time, carrying its state from one run to the
# next. Runs of any size give the same probabilities (checked to the bit from 1,000 to 10,000
# frames); at 1,000 (32 s) onnxruntime's working memory is about 30 MB instead of 260.
_FRAMES_PER_RUN = 1_000
# Silero's thresholds as faster-whisper uses them: speech starts at 0.5 and lasts while >= 0.35.
_ON, _OFF = 0.5, 0.35
# Dips shorter than this are not pauses (Silero cuts over-long speech only at silences of 98 ms).
_MIN_PAUSE_S = 0.1
# A pause at least this long ends an utterance: longer than the pauses inside a sentence, shorter
# than those between sentences and turns (docs/segments.md).
UTTERANCE_PAUSE_S = 0.5
# Speech shorter than this, alone, is a click or a breath: Silero's own min_speech_duration_ms.
_MIN_SPEECH_S = 0.25
# Silence kept on each side of a segment's speech: onsets and trailing sounds are soft, and the
# VAD's frames are 32 ms.
PAD_S = 0.2


def speech_probabilities(track: np.ndarray) -> np.ndarray:
    """Silero's speech probability for each 32 ms frame of a 16 kHz track, exactly as
    faster-whisper computes it, in memory that does not grow with the track."""
    from faster_whisper.vad import get_vad_model

    session = get_vad_model().session
    h = c = np.zeros((1, 1, 128), np.float32)
    previous = np.zeros(_CONTEXT_SAMPLES, np.float32)
    out = []
    run = _FRAMES_PER_RUN * FRAME_SAMPLES
    for first in range(0, len(track), run):
        chunk = track[first : first + run]
        frames = np.pad(chunk, (0, -len(chunk) % FRAME_SAMPLES)).reshape(-1, FRAME_SAMPLES)
        # Each frame is read with the 64 samples before it (zeros before the first).
        context = np.concatenate([previous[None], frames[:-1, -_CONTEXT_SAMPLES:]])
        batch = np.concatenate([context, frames], axis=1).astype(np.float32, copy=False)
        probs, h, c = session.run(None, {"input": batch, "h": h, "c": c})
        previous = frames[-1, -_CONTEXT_SAMPLES:]
        out.append(np.asarray(probs, np.float32).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@dataclass(frozen=True)
class _Span:
    """Frames [start, end) holding speech runs; ``runs`` lists them."""

    runs: tuple[tuple[int, int], ...]

    @property
    def start(self) -> int:
        return self.runs[0][0]

    @property
    def end(self) -> int:
        return self.runs[-1][1]

    @property
    def frames(self) -> int:
        return self.end - self.start


def _speech_runs(probs: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame runs of speech: on at ``_ON``, staying on while above ``_OFF``."""
    runs, start = [], None
    for i, p in enumerate(probs.tolist()):
        if start is None and p >= _ON:
            start = i
        elif start is not None and p < _OFF:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(probs)))
    return runs


def _frames(seconds: float) -> int:
    return max(1, round(seconds * RATE_HZ / FRAME_SAMPLES))


def _utterances(runs: list[tuple[int, int]]) -> list[_Span]:
    """Runs joined across dips and short pauses; lone blips dropped."""
    closed: list[tuple[int, int]] = []
    for start, end in runs:
        if closed and start - closed[-1][1] < _frames(_MIN_PAUSE_S):
            closed[-1] = (closed[-1][0], end)
        else:
            closed.append((start, end))
    spans: list[list[tuple[int, int]]] = []
    for run in closed:
        if spans and run[0] - spans[-1][-1][1] < _frames(UTTERANCE_PAUSE_S):
            spans[-1].append(run)
        else:
            spans.append([run])
    return [
        _Span(tuple(s)) for s in spans if s[-1][1] - s[0][0] >= _frames(_MIN_SPEECH_S) or len(s) > 1
    ]


def _cut(span: _Span, probs: np.ndarray, longest: int) -> list[_Span]:
    """``span`` cut at its longest pauses until no piece is longer than ``longest`` frames."""
    if span.frames <= longest:
        return [span]
    if len(span.runs) > 1:
        gaps = [span.runs[i + 1][0] - span.runs[i][1] for i in range(len(span.runs) - 1)]
        at = int(np.argmax(gaps)) + 1
        left, right = _Span(span.runs[:at]), _Span(span.runs[at:])
    else:
        # One unbroken run: cut at its least speech-like frame, keeping both sides a second long.
        start, end = span.runs[0]
        edge = min(_frames(1.0), (end - start) // 3)
        middle = probs[start + edge : end - edge]
        cut = start + edge + int(np.argmin(middle)) if len(middle) else start + longest
        cut = min(cut, start + longest)
        left, right = _Span(((start, cut),)), _Span(((cut, end),))
    return _cut(left, probs, longest) + _cut(right, probs, longest)


def _join_short(spans: list[_Span], shortest: int, longest: int) -> list[_Span]:
    """Each span shorter than ``shortest`` frames joined to the neighbour across the shorter
    pause, where the two together are not longer than ``longest``."""
    spans = list(spans)
    i = 0
    while i < len(spans):
        if spans[i].frames >= shortest or len(spans) == 1:
            i += 1
            continue
        candidates = []
        if i > 0 and spans[i].end - spans[i - 1].start <= longest:
            candidates.append((spans[i].start - spans[i - 1].end, i - 1))
        if i + 1 < len(spans) and spans[i + 1].end - spans[i].start <= longest:
            candidates.append((spans[i + 1].start - spans[i].end, i + 1))
        if not candidates:
            i += 1
            continue
        _, other = min(candidates)
        first, second = sorted((i, other))
        spans[first : second + 1] = [_Span(spans[first].runs + spans[second].runs)]
        i = first
    return spans


def find_segments(
    probs: np.ndarray, samples: int, *, min_segment_s: float, max_segment_s: float
) -> list[tuple[int, int]]:
    """[start, end) sample spans of the speech segments of a track, in time order."""
    longest = _frames(max_segment_s - 2 * PAD_S)
    spans = [piece for s in _utterances(_speech_runs(probs)) for piece in _cut(s, probs, longest)]
    spans = _join_short(spans, _frames(min_segment_s), longest)
    return _to_samples(spans, samples, min_segment_s)


def _to_samples(
    spans: Sequence[_Span], samples: int, min_segment_s: float
) -> list[tuple[int, int]]:
    """Frame spans as sample spans, padded into the silence around them (never into a
    neighbour's half of a pause), and widened to ``min_segment_s`` where the silence allows."""
    pad, shortest = round(PAD_S * RATE_HZ), round(min_segment_s * RATE_HZ)
    bounds = [(s.start * FRAME_SAMPLES, min(samples, s.end * FRAME_SAMPLES)) for s in spans]
    out = []
    for i, (start, end) in enumerate(bounds):
        low = 0 if i == 0 else (bounds[i - 1][1] + start) // 2
        high = samples if i + 1 == len(bounds) else (end + bounds[i + 1][0]) // 2
        start, end = max(low, start - pad), min(high, end + pad)
        short = shortest - (end - start)
        if short > 0:
            grow_left = min(short // 2, start - low)
            end = min(high, end + short - grow_left)
            start = max(low, start - (shortest - (end - start)))
        out.append((start, end))
    return out


class Segmenter:
    """The clips of a recording: its speech segments, per channel where channels are split.

    In ``auto`` mode a recording no longer than ``over_s`` stays one whole clip, as in ``off``.
    A recording without speech has no clips.
    """

    def __init__(self, config: SegmentConfig) -> None:
        self.config = config

    def __call__(self, audio: DecodedAudio) -> list[Clip]:
        config = self.config
        if config.mode == "off" or (config.mode == "auto" and audio.duration_s <= config.over_s):
            return whole_recording(audio)
        channels: list[int | None] = (
            [None] if audio.split is None else list(range(len(audio.split)))
        )
        found = []
        for channel in channels:
            track = audio.track(channel)
            spans = find_segments(
                speech_probabilities(track),
                len(track),
                min_segment_s=config.min_segment_s,
                max_segment_s=config.max_segment_s,
            )
            found += [(channel, index, span) for index, span in enumerate(spans)]
        return [
            Clip(
                start=start,
                end=end,
                start_s=start / RATE_HZ,
                end_s=end / RATE_HZ,
                channel=channel,
                segment_index=index,
                segment_count=len(found),
                whole=False,
            )
            for channel, index, (start, end) in found
        ]
