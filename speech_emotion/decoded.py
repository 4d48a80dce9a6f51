"""The decoded batch between the two stages, in Python and in Arrow (:data:`schema.DECODED_SCHEMA`).

A row is a window Whisper hears at once, holding its clips (a nested list of structs); the decode
stage builds rows with :func:`to_table`, the model stage reads them back with :func:`read_table`
as the annotator's inputs. Samples and features cross as flat float32 lists, without a Python
object per value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .annotator import ClipInput, WindowInput
from .clips import Clip
from .errors import RowError
from .features import ClipFeatures
from .schema import DECODED_CLIP, DECODED_SCHEMA

if TYPE_CHECKING:
    from .audio import DecodedAudio

__all__ = ["DecodedClip", "DecodedWindow", "to_table", "read_table"]


@dataclass
class DecodedClip:
    """One clip of a recording as the decode stage sends it, or why the recording has none."""

    recording: int
    """The row of the input batch it came from."""
    audio: DecodedAudio | None
    clip: Clip | None = None
    error: RowError | None = None
    offset_s: float = 0.0
    """Where it lies in its window, seconds from the window's start."""
    features: ClipFeatures | None = None
    waveform: np.ndarray | None = None
    """Its samples, where the emotion model's features were not computed."""


@dataclass
class DecodedWindow:
    """One output row: what Whisper hears at once (a log-mel, or samples past 30 s) and the clips
    it holds."""

    clips: list[DecodedClip]
    log_mel: np.ndarray | None = None
    waveform: np.ndarray | None = None
    packed: bool = False
    """Its clips come from several windows, one after another with silence between
    (:mod:`packing`)."""

    @property
    def values(self) -> int:
        """float32 values this row puts in the block."""
        arrays = [self.log_mel, self.waveform] + [c.waveform for c in self.clips]
        arrays += [c.features[0] for c in self.clips if c.features is not None]
        return sum(a.size for a in arrays if a is not None)


def to_table(batch: pa.Table, windows: list[DecodedWindow]) -> pa.Table:
    """The windows as :data:`DECODED_SCHEMA` rows; ``batch`` holds the recordings they came from
    (:data:`schema.RECORDING_SCHEMA`), which each clip names by row."""
    clips = [clip for window in windows for clip in window.clips]
    recordings = batch.take(pa.array([c.recording for c in clips], pa.int64()))
    columns: dict[str, Any] = {
        name: recordings[name]
        for name in recordings.column_names
        if DECODED_CLIP.get_field_index(name) >= 0
    }
    places = zip(recordings["start_s"].to_pylist(), recordings["channel"].to_pylist(), strict=True)
    texts = recordings["text"].to_pylist()
    values = [_clip_columns(c, *place) for c, place in zip(clips, places, strict=True)]
    for name, kind in _CLIP_COLUMN_TYPES.items():
        columns[name] = pa.array([v[name] for v in values], kind)
    # A transcript given for a recording is not a segment's.
    columns["text"] = pa.array(
        [t if not c.clip or c.clip.whole else None for c, t in zip(clips, texts, strict=True)],
        pa.string(),
    )
    features = [c.features for c in clips]
    columns.update(
        audio_features=_float_lists([_or_empty(f and f[0]) for f in features]),
        audio_feature_frames=pa.array([f and len(f[0]) for f in features], pa.int32()),
        audio_feature_valid_frames=pa.array([f and f[1] for f in features], pa.int32()),
        waveform=_float_lists([_or_empty(c.waveform) for c in clips]),
    )
    flat = pa.table(columns).select(DECODED_CLIP.names).cast(pa.schema(list(DECODED_CLIP)))
    mels = [w.log_mel for w in windows]
    return pa.table(
        {
            "clips": pa.LargeListArray.from_arrays(
                _offsets([len(w.clips) for w in windows]),
                pa.StructArray.from_arrays(
                    [c.combine_chunks() for c in flat.columns], fields=list(DECODED_CLIP)
                ),
            ),
            "whisper_features": _float_lists([_or_empty(m) for m in mels]),
            "whisper_feature_frames": pa.array(
                [m.shape[1] if m is not None else None for m in mels], pa.int32()
            ),
            "waveform": _float_lists([_or_empty(w.waveform) for w in windows]),
            "packed": pa.array([w.packed for w in windows], pa.bool_()),
        }
    ).cast(DECODED_SCHEMA)


_CLIP_COLUMN_TYPES = {
    "start_s": pa.float64(),
    "end_s": pa.float64(),
    "duration_s": pa.float64(),
    "recording_duration_s": pa.float64(),
    "channel": pa.int32(),
    "segment_index": pa.int32(),
    "segment_count": pa.int32(),
    "sample_rate_hz": pa.int32(),
    "channels": pa.int32(),
    "error_code": pa.string(),
    "error": pa.string(),
    "window_offset_s": pa.float64(),
}


def _clip_columns(
    row: DecodedClip, recording_start_s: float, recording_channel: int | None
) -> dict[str, Any]:
    """A clip's place in its file and what the file is; for a failed recording, what is known.
    A recording on a channel the manifest names (a span of a file) is on that channel."""
    audio, clip, error = row.audio, row.clip, row.error
    start_s, end_s, duration_s = recording_start_s, None, None
    if clip is not None:
        start_s = _in_file(recording_start_s, clip.start_s)
        end_s = _in_file(recording_start_s, clip.end_s)
        duration_s = clip.duration_s
    elif audio is not None:
        duration_s = audio.duration_s
        end_s = _in_file(start_s, duration_s)
    channel = clip.channel if clip else None
    return {
        "start_s": start_s,
        "end_s": end_s,
        "duration_s": duration_s,
        "recording_duration_s": audio.duration_s if audio else None,
        "channel": recording_channel if recording_channel is not None else channel,
        "segment_index": clip.segment_index if clip else None,
        "segment_count": clip.segment_count if clip else None,
        "sample_rate_hz": audio.sample_rate_hz if audio else None,
        "channels": audio.channels if audio else None,
        "error_code": error.code.value if error else None,
        "error": error.reason("decode") if error else None,
        "window_offset_s": row.offset_s,
    }


def _in_file(recording_start_s: float, seconds: float) -> float:
    """Seconds into a recording as seconds into its file. A span's start (a manifest's decimal)
    plus sample times would carry float noise (0.1 + 0.2); nanoseconds are far below a sample."""
    if not recording_start_s:
        return seconds
    return round(recording_start_s + seconds, 9)


_EMPTY = np.zeros(0, np.float32)


def _or_empty(values: np.ndarray | None) -> np.ndarray:
    return _EMPTY if values is None else values.ravel()


def _offsets(lengths: list[int]) -> pa.Array:
    """A large list column's offsets for rows of these lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.array(offsets)


def _float_lists(arrays: list[np.ndarray]) -> pa.LargeListArray:
    """One list<float32> column from per-row arrays, without per-value Python objects."""
    values = np.concatenate(arrays) if arrays else _EMPTY
    return pa.LargeListArray.from_arrays(_offsets([len(a) for a in arrays]), pa.array(values))


def _views(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """Zero-copy views of each row's float values."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = array.offsets.to_numpy()
    values = array.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(array))]


def _clip_inputs(clips: pa.Table, live: list[int]) -> list[ClipInput]:
    """The live clips of a decoded batch as the annotator takes them."""
    waves = _views(clips["waveform"])
    features = _views(clips["audio_features"])
    frames = clips["audio_feature_frames"].to_pylist()
    valid = clips["audio_feature_valid_frames"].to_pylist()
    texts, languages = clips["text"].to_pylist(), clips["language"].to_pylist()
    return [
        ClipInput(
            waveform=waves[i],
            text=texts[i],
            language=languages[i],
            # [frames, width], row-major.
            features=None if frames[i] is None else (features[i].reshape(frames[i], -1), valid[i]),
        )
        for i in live
    ]


def _window_inputs(
    batch: pa.Table, clips: pa.Table, parents: np.ndarray, live: list[int]
) -> list[WindowInput]:
    """The windows of a decoded batch, over the live clips' positions in ``live``."""
    position = {clip: k for k, clip in enumerate(live)}
    members: list[list[int]] = [[] for _ in range(batch.num_rows)]
    for clip in live:
        members[parents[clip]].append(clip)
    waves = _views(batch["waveform"])
    mels = _views(batch["whisper_features"])
    mel_frames = batch["whisper_feature_frames"].to_pylist()
    packed = batch["packed"].to_pylist()
    offsets = clips["window_offset_s"].to_pylist()
    durations = clips["duration_s"].to_pylist()
    return [
        WindowInput(
            waveform=waves[w],
            clips=tuple(position[c] for c in held),
            # [mel bins, frames], row-major.
            log_mel=None if mel_frames[w] is None else mels[w].reshape(-1, mel_frames[w]),
            spans=tuple((offsets[c], offsets[c] + durations[c]) for c in held),
            packed=packed[w],
        )
        for w, held in enumerate(members)
        if held
    ]


_CLIP_ARRAYS = ["waveform", "audio_features"]


def read_table(batch: pa.Table) -> tuple[list[dict], list[int], list[ClipInput], list[WindowInput]]:
    """A decoded batch as the model stage works on it: every clip's row of plain values (arrays
    left out), which of them are live (not failed), and the live clips and their windows as the
    annotator takes them."""
    nested = batch["clips"].combine_chunks()
    clips = pa.Table.from_struct_array(nested.flatten())
    parents = nested.value_parent_indices().to_numpy()
    rows = clips.drop_columns(_CLIP_ARRAYS).to_pylist()
    live = [i for i, row in enumerate(rows) if row["error_code"] is None]
    return rows, live, _clip_inputs(clips, live), _window_inputs(batch, clips, parents, live)
