"""The two Ray Data stages: decode (CPU pool) and models (GPU pool). Glue only.

Each is a class that sets up once in ``__init__`` and maps a batch in ``__call__``. The decode stage
turns each recording into its clips (:mod:`clips`), one row per clip, or into one error row; the
model stage keeps its rows and their order. A row that fails carries its error code and reason
onward; it is never dropped. Only :class:`RowError` is caught per row: anything else is a bug and
raises. What is done to the audio lives in :mod:`fetch`, :mod:`audio`, :mod:`features`, and what the
models do in :mod:`annotator`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .annotator import Annotation, Annotator, ClipInput
from .clips import Clip, Clipper, whole_recording
from .config import DecodeConfig, ModelConfig
from .errors import ErrorCode, RowError
from .features import ClipFeatures, FeatureSpec, WhisperFeatureSpec, audio_features
from .fetch import Prefetcher
from .schema import DECODED_SCHEMA, OUTPUT_SCHEMA, STATUS_ERROR, STATUS_OK

if TYPE_CHECKING:
    from .audio import DecodedAudio
    from .plan import ModelPlan

__all__ = ["DecodeStage", "ModelStage", "StageCounts"]

logger = logging.getLogger(__name__)


@dataclass
class StageCounts:
    """What a stage did, logged per actor so a slow or failing worker is visible."""

    rows: int = 0
    ok: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, error_codes: list[str | None], seconds: float) -> None:
        self.rows += len(error_codes)
        self.ok += sum(code is None for code in error_codes)
        self.errors.update(code for code in error_codes if code is not None)
        self.seconds += seconds

    def __str__(self) -> str:
        errors = ", ".join(f"{code}={n}" for code, n in sorted(self.errors.items())) or "none"
        return f"rows={self.rows} ok={self.ok} errors: {errors} time={self.seconds:.1f}s"


# float32 values (samples and features) per output block: 10 minutes at 16 kHz is 38 MB. Bounding
# blocks by audio rather than by rows keeps a decode actor's memory the same for 2 s clips and
# 30 min files.
_MAX_BLOCK_SAMPLES = 600 * 16000


@dataclass
class _Decoded:
    """One output row of the decode stage: a clip of a recording, or why the recording failed."""

    recording: int
    """The row of the input batch it came from."""
    audio: DecodedAudio | None
    clip: Clip | None = None
    error: RowError | None = None
    waveform: np.ndarray | None = None
    """The clip's samples, where the model stage still needs them."""
    features: ClipFeatures | None = None
    whisper_features: np.ndarray | None = None

    @property
    def values(self) -> int:
        """float32 values this row puts in the block."""
        return sum(a.size for a in (self.waveform, self.whisper_features) if a is not None) + (
            self.features[0].size if self.features is not None else 0
        )


class DecodeStage:
    """Fetches and decodes each recording to 16 kHz mono float32, recording its original format,
    and cuts it into the clips to annotate.

    Given the emotion model's feature settings (``features``), it also computes the model's
    input features here on a CPU worker, so the accelerator's actor does not; given Whisper's
    (``whisper_features``), the same for the clips Whisper will transcribe (``whisper``: it runs
    in this job; the row has no transcript) that fit its 30 s window. The samples go on only
    where the model stage still needs them. Yields the clips in order, as one or more tables of
    at most ``_MAX_BLOCK_SAMPLES`` float32 values (a longer clip goes alone).
    """

    def __init__(
        self,
        config: DecodeConfig,
        *,
        features: FeatureSpec | None = None,
        whisper: bool = True,
        whisper_features: WhisperFeatureSpec | None = None,
        clipper: Clipper = whole_recording,
    ) -> None:
        self.config = config
        self._features = features
        self._whisper = whisper
        self._whisper_features = whisper_features
        self._clipper = clipper
        self._prefetch = Prefetcher(config.fetch_threads, config.allowed_prefixes)
        self.counts = StageCounts()

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        started, yielded = time.perf_counter(), False
        rows: list[_Decoded] = []
        values = 0
        has_text = batch["text"].is_valid().to_pylist()
        fetched = self._prefetch(batch["audio"].to_pylist())
        for recording, (data, text) in enumerate(zip(fetched, has_text, strict=True)):
            for row in self._decode(recording, data, text):
                rows.append(row)
                values += row.values
                if values >= _MAX_BLOCK_SAMPLES:
                    yield self._table(batch, rows, started)
                    rows, values, yielded, started = [], 0, True, time.perf_counter()
        if rows or not yielded:
            yield self._table(batch, rows, started)

    def _decode(self, recording: int, data: bytes | RowError, has_text: bool) -> list[_Decoded]:
        """The recording's clips, or one row saying why it has none."""
        from .audio import decode_audio

        if isinstance(data, RowError):
            return [_Decoded(recording, None, error=data)]
        try:
            audio = decode_audio(data, max_duration_s=self.config.max_duration_s)
        except RowError as exc:
            return [_Decoded(recording, None, error=exc)]
        if audio.duration_s < self.config.min_duration_s:
            # A recording too short for the model still reports what it is.
            too_short = RowError(
                ErrorCode.TOO_SHORT,
                f"clip is {audio.duration_s:.3f} s; the minimum is "
                f"{self.config.min_duration_s} s (--min-duration-s)",
            )
            return [_Decoded(recording, audio, error=too_short)]
        return [self._clip(recording, audio, clip, has_text) for clip in self._clipper(audio)]

    def _clip(self, recording: int, audio: DecodedAudio, clip: Clip, has_text: bool) -> _Decoded:
        samples = clip.samples(audio)
        heard = self._whisper and not has_text
        mel = None
        if heard and self._whisper_features is not None:
            mel = self._whisper_features.log_mel(samples)
        features = audio_features(self._features, samples) if self._features else None
        keep = self._features is None or (heard and mel is None)
        return _Decoded(
            recording,
            audio,
            clip=clip,
            waveform=samples if keep else None,
            features=features,
            whisper_features=mel,
        )

    def _table(self, batch: pa.Table, rows: list[_Decoded], started: float) -> pa.Table:
        recordings = batch.take(pa.array([row.recording for row in rows], pa.int64()))
        columns: dict[str, Any] = {name: recordings[name] for name in recordings.column_names}
        starts = recordings["start_s"].to_pylist()
        clip_columns = [_clip_columns(row, start) for row, start in zip(rows, starts, strict=True)]
        for name in _CLIP_COLUMN_TYPES:
            columns[name] = pa.array([c[name] for c in clip_columns], _CLIP_COLUMN_TYPES[name])
        features = [row.features for row in rows]
        mels = [row.whisper_features for row in rows]
        columns.update(
            waveform=_float_lists([_or_empty(row.waveform) for row in rows]),
            audio_features=_float_lists([_or_empty(f and f[0]) for f in features]),
            audio_feature_frames=pa.array([f and len(f[0]) for f in features], pa.int32()),
            audio_feature_valid_frames=pa.array([f and f[1] for f in features], pa.int32()),
            whisper_features=_float_lists([_or_empty(m) for m in mels]),
            whisper_feature_frames=pa.array(
                [m.shape[1] if m is not None else None for m in mels], pa.int32()
            ),
        )
        out = pa.table(columns).select(DECODED_SCHEMA.names).cast(DECODED_SCHEMA)
        self.counts.add(columns["error_code"].to_pylist(), time.perf_counter() - started)
        logger.info("decode: %s", self.counts)
        return out


_CLIP_COLUMN_TYPES = {
    "start_s": pa.float64(),
    "end_s": pa.float64(),
    "duration_s": pa.float64(),
    "channel": pa.int32(),
    "segment_index": pa.int32(),
    "segment_count": pa.int32(),
    "sample_rate_hz": pa.int32(),
    "channels": pa.int32(),
    "error_code": pa.string(),
    "error": pa.string(),
}


def _clip_columns(row: _Decoded, recording_start_s: float) -> dict[str, Any]:
    """A clip's place in its file and what the file is; for a failed recording, what is known."""
    audio, clip, error = row.audio, row.clip, row.error
    start_s, duration_s = recording_start_s, None
    if clip is not None:
        start_s, duration_s = recording_start_s + clip.start_s, clip.duration_s
    elif audio is not None:
        duration_s = audio.duration_s
    return {
        "start_s": start_s,
        "end_s": start_s + duration_s if duration_s is not None else None,
        "duration_s": duration_s,
        "channel": clip.channel if clip else None,
        "segment_index": clip.segment_index if clip else None,
        "segment_count": clip.segment_count if clip else None,
        "sample_rate_hz": audio.sample_rate_hz if audio else None,
        "channels": audio.channels if audio else None,
        "error_code": error.code.value if error else None,
        "error": error.reason("decode") if error else None,
    }


_EMPTY = np.zeros(0, np.float32)


def _or_empty(values: np.ndarray | None) -> np.ndarray:
    return _EMPTY if values is None else values.ravel()


def _float_lists(arrays: list[np.ndarray]) -> pa.LargeListArray:
    """One list<float32> column from per-row arrays, without per-value Python objects."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else _EMPTY
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))


def _views(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """Zero-copy views of each row's float values."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = array.offsets.to_numpy()
    values = array.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(array))]


def _clip_inputs(batch: pa.Table, live: list[int]) -> list[ClipInput]:
    """The live rows of a decoded batch as the annotator takes them."""
    waves = _views(batch["waveform"])
    features = _views(batch["audio_features"])
    frames = batch["audio_feature_frames"].to_pylist()
    valid = batch["audio_feature_valid_frames"].to_pylist()
    mels = _views(batch["whisper_features"])
    mel_frames = batch["whisper_feature_frames"].to_pylist()
    texts, languages = batch["text"].to_pylist(), batch["language"].to_pylist()
    return [
        ClipInput(
            waveform=waves[i],
            text=texts[i],
            language=languages[i],
            # Features [frames, width] and log-mel [mel bins, frames], row-major.
            features=None if frames[i] is None else (features[i].reshape(frames[i], -1), valid[i]),
            log_mel=None if mel_frames[i] is None else mels[i].reshape(-1, mel_frames[i]),
        )
        for i in live
    ]


_ARRAY_COLUMNS = ["waveform", "audio_features", "whisper_features"]


class ModelStage:
    """Loads the models once, then annotates batches of decoded clips (:class:`Annotator`)."""

    def __init__(
        self, config: ModelConfig, plan: ModelPlan, *, batch_size: int = 16, cpu_threads: int = 1
    ) -> None:
        import torch

        from .models import load_classifier, load_transcriber, resolve_device

        self.config = config
        self.plan = plan
        # Ray sets OMP_NUM_THREADS from the actor's CPUs; torch needs telling as well.
        torch.set_num_threads(max(1, cpu_threads))
        device = resolve_device(config)
        classifier, emotion, encoder = load_classifier(
            config,
            device,
            batch_size=batch_size,
            emotion_revision=plan.emotion_revision,
            text_encoder_revision=plan.text_encoder_revision,
        )
        transcriber = None
        if plan.needs_whisper and config.needs_text:
            transcriber, _ = load_transcriber(
                config,
                device,
                batch_size=batch_size,
                cpu_threads=cpu_threads,
                revision=plan.whisper_revision,
            )
        self.annotator = Annotator(classifier, transcriber, language=config.job_language)
        self.model_columns = {
            "emotion_model": emotion.source,
            "emotion_model_revision": emotion.revision or plan.emotion_revision,
            "text_encoder": encoder.source if encoder else None,
            "text_encoder_revision": (encoder.revision if encoder else None)
            or plan.text_encoder_revision,
        }
        self.whisper_columns = {
            "whisper_model": config.whisper_model,
            "whisper_model_revision": plan.whisper_revision,
        }
        self.counts = StageCounts()

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        rows = batch.drop_columns(_ARRAY_COLUMNS).to_pylist()
        live = [i for i, row in enumerate(rows) if row["error_code"] is None]
        annotations = self.annotator.annotate(_clip_inputs(batch, live))
        for i, note in zip(live, annotations, strict=True):
            self._fill(rows[i], note)
        now = dt.datetime.now(dt.timezone.utc)
        for row in rows:
            row.update(
                status=STATUS_OK if row["error_code"] is None else STATUS_ERROR,
                mode=self.config.mode,
                run_id=self.plan.run_id,
                processed_at=now,
            )
        out = pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)
        self.counts.add([row["error_code"] for row in rows], time.perf_counter() - started)
        logger.info("models: %s", self.counts)
        return out

    def _fill(self, row: dict, note: Annotation) -> None:
        row.update(
            language=note.language,
            language_probability=note.language_probability,
            transcript=note.transcript,
            transcript_source=note.transcript_source,
            transcript_suppressed=note.transcript_suppressed,
            error_code=note.error_code,
            error=note.error,
        )
        if note.heard_by_whisper:
            row.update(self.whisper_columns)
        if note.scores is not None:
            row.update(
                emotion=note.emotion,
                emotion_score=note.emotion_score,
                scores=list(note.scores.items()),
                **self.model_columns,
            )
