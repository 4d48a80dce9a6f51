"""The two Ray Data stages: decode (CPU pool) and models (GPU pool).

Each is a class that sets up once in ``__init__`` and maps a batch in ``__call__``, keeping the same
rows in the same order. A row that fails carries its error code and reason onward; it is never
dropped. Only :class:`RowError` is caught per row: anything else is a bug and raises.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from .config import DecodeConfig, ModelConfig
from .errors import ErrorCode, RowError
from .features import (
    ClipFeatures,
    FeatureSpec,
    WhisperFeatureSpec,
    audio_features,
)
from .manifest import within_prefixes
from .schema import (
    DECODED_SCHEMA,
    OUTPUT_SCHEMA,
    SOURCE_MANIFEST,
    SOURCE_WHISPER,
    STATUS_ERROR,
    STATUS_OK,
)

if TYPE_CHECKING:
    from .audio import DecodedAudio

__all__ = ["DecodeStage", "ModelStage", "ModelPlan", "read_bytes", "StageCounts"]

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


def read_bytes(uri: str) -> bytes:
    """An object's bytes, or a RowError saying why it could not be read."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri)
        return fs.cat_file(path)
    except FileNotFoundError as exc:
        raise RowError(ErrorCode.MISSING_OBJECT, f"no such file or object: {uri}") from exc
    except IsADirectoryError as exc:
        raise RowError(ErrorCode.READ_FAILED, f"{uri} is a folder, not an audio file") from exc
    except PermissionError as exc:
        raise RowError(ErrorCode.READ_FAILED, f"access denied reading {uri}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - every storage backend has its own error types
        raise RowError(
            ErrorCode.READ_FAILED, f"could not read {uri} ({type(exc).__name__}: {exc})"
        ) from exc


# float32 values (samples and features) per output block: 10 minutes at 16 kHz is 38 MB. Bounding
# blocks by audio rather than by rows keeps a decode actor's memory the same for 2 s clips and
# 30 min files.
_MAX_BLOCK_SAMPLES = 600 * 16000
# Encoded bytes read ahead of the decoder, per actor.
_MAX_READ_AHEAD_BYTES = 256 * 2**20


@dataclass
class _Decoded:
    audio: DecodedAudio | None
    error: RowError | None
    features: ClipFeatures | None = None
    whisper_features: np.ndarray | None = None
    keep_waveform: bool = True

    @property
    def values(self) -> int:
        """float32 values this row puts in the block."""
        if self.error is not None:
            return 0
        kept = len(self.audio.waveform) if self.keep_waveform else 0
        features = self.features[0].size if self.features is not None else 0
        mel = self.whisper_features.size if self.whisper_features is not None else 0
        return kept + features + mel


class DecodeStage:
    """Fetches and decodes each clip to 16 kHz mono float32, recording its original format.

    Given the emotion model's feature settings (``features``), it also computes the model's
    input features here on a CPU worker, so the accelerator's actor does not; given Whisper's
    (``whisper_features``), the same for the rows Whisper will transcribe (``whisper``: it runs
    in this job; the row has no transcript) that fit its 30 s window. The waveform goes on only
    where the model stage still needs it. Yields the batch's rows in order, as one or more tables
    of at most ``_MAX_BLOCK_SAMPLES`` float32 values (a longer clip goes alone).
    """

    def __init__(
        self,
        config: DecodeConfig,
        *,
        features: FeatureSpec | None = None,
        whisper: bool = True,
        whisper_features: WhisperFeatureSpec | None = None,
    ) -> None:
        self.config = config
        self._features = features
        self._whisper = whisper
        self._whisper_features = whisper_features
        # Object reads are latency-bound: threads fetch ahead while this thread decodes.
        self._pool = ThreadPoolExecutor(max_workers=config.fetch_threads)
        self._recent_sizes: deque[int] = deque(maxlen=config.fetch_threads)
        self.counts = StageCounts()

    def _fetch(self, uri: str) -> bytes | RowError:
        allowed = self.config.allowed_prefixes
        if allowed is not None and not within_prefixes(uri, allowed):
            return RowError(
                ErrorCode.OUTSIDE_ALLOWED_PREFIXES,
                f"{uri} is outside the allowed input prefixes ({', '.join(allowed)}); "
                "widen them with --allowed-prefix",
            )
        try:
            return read_bytes(uri)
        except RowError as exc:
            return exc

    def _fetched(self, uris: list[str]) -> Iterator[bytes | RowError]:
        """Each object's bytes in order, read ahead on threads while this thread decodes.

        Decoding stays on one thread, as the actor reserves one CPU. Reads ahead are capped by
        count (``fetch_threads``) and by bytes: a 30 min WAV is 100-300 MB, so with long files
        only as many are read ahead as fit in ``_MAX_READ_AHEAD_BYTES``, judged by the largest
        recent file.
        """
        window: deque[Future] = deque()
        for uri in uris:
            # Decoding happens while this generator waits at the yield: the reads in the window
            # are the ones running meanwhile.
            while len(window) > self._reads_ahead():
                yield self._collect(window.popleft())
            window.append(self._pool.submit(self._fetch, uri))
        while window:
            yield self._collect(window.popleft())

    def _reads_ahead(self) -> int:
        if not self._recent_sizes:
            return 1  # nothing known yet: size the window from the first file
        fit = _MAX_READ_AHEAD_BYTES // max(1, max(self._recent_sizes))
        return max(1, min(self.config.fetch_threads, fit))

    def _collect(self, read: Future) -> bytes | RowError:
        fetched = read.result()
        if isinstance(fetched, bytes):
            self._recent_sizes.append(len(fetched))
        return fetched

    def _decode(self, fetched: bytes | RowError, has_text: bool) -> _Decoded:
        """The decoded clip and/or why it cannot go on; a too-short clip keeps its metadata."""
        from .audio import decode_audio

        if isinstance(fetched, RowError):
            return _Decoded(None, fetched)
        try:
            audio = decode_audio(fetched, max_duration_s=self.config.max_duration_s)
        except RowError as exc:
            return _Decoded(None, exc)
        if audio.duration_s < self.config.min_duration_s:
            return _Decoded(
                audio,
                RowError(
                    ErrorCode.TOO_SHORT,
                    f"clip is {audio.duration_s:.3f} s; the minimum is "
                    f"{self.config.min_duration_s} s (--min-duration-s)",
                ),
            )
        heard = self._whisper and not has_text
        mel = None
        if heard and self._whisper_features is not None:
            mel = self._whisper_features.log_mel(audio.waveform)
        return _Decoded(
            audio,
            None,
            features=audio_features(self._features, audio.waveform) if self._features else None,
            whisper_features=mel,
            keep_waveform=self._features is None or (heard and mel is None),
        )

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        started = time.perf_counter()
        done, results, values = 0, [], 0
        has_text = batch["text"].is_valid().to_pylist()
        for fetched, text in zip(self._fetched(batch["audio"].to_pylist()), has_text, strict=True):
            results.append(self._decode(fetched, text))
            values += results[-1].values
            if values >= _MAX_BLOCK_SAMPLES:
                yield self._table(batch.slice(done, len(results)), results, started)
                done, results, values, started = done + len(results), [], 0, time.perf_counter()
        if results or not done:
            yield self._table(batch.slice(done, len(results)), results, started)

    def _table(self, rows: pa.Table, results: list[_Decoded], started: float) -> pa.Table:
        waves, features, frames, valid, mels, mel_frames = [], [], [], [], [], []
        durations, rates, channels, codes, reasons = [], [], [], [], []
        for row in results:
            audio, error = row.audio, row.error
            usable = error is None
            waves.append(audio.waveform if usable and row.keep_waveform else _EMPTY)
            features.append(row.features[0].ravel() if row.features is not None else _EMPTY)
            frames.append(len(row.features[0]) if row.features is not None else None)
            valid.append(row.features[1] if row.features is not None else None)
            mel = row.whisper_features
            mels.append(mel.ravel() if mel is not None else _EMPTY)
            mel_frames.append(mel.shape[1] if mel is not None else None)
            durations.append(audio.duration_s if audio else None)
            rates.append(audio.sample_rate_hz if audio else None)
            channels.append(audio.channels if audio else None)
            codes.append(None if usable else error.code.value)
            reasons.append(None if usable else f"decode: {error.message}")
        columns = {name: rows[name] for name in rows.column_names}
        columns.update(
            waveform=_float_lists(waves),
            audio_features=_float_lists(features),
            audio_feature_frames=pa.array(frames, pa.int32()),
            audio_feature_valid_frames=pa.array(valid, pa.int32()),
            whisper_features=_float_lists(mels),
            whisper_feature_frames=pa.array(mel_frames, pa.int32()),
            duration_s=pa.array(durations, pa.float64()),
            sample_rate_hz=pa.array(rates, pa.int32()),
            channels=pa.array(channels, pa.int32()),
            error_code=pa.array(codes, pa.string()),
            error=pa.array(reasons, pa.string()),
        )
        out = pa.table(columns).select(DECODED_SCHEMA.names).cast(DECODED_SCHEMA)
        self.counts.add(codes, time.perf_counter() - started)
        logger.info("decode: %s", self.counts)
        return out


_EMPTY = np.zeros(0, np.float32)


def _float_lists(arrays: list[np.ndarray]) -> pa.LargeListArray:
    """One list<float32> column from per-row arrays, without per-value Python objects."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else _EMPTY
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))


@dataclass(frozen=True)
class ModelPlan:
    """What the driver settled before any actor started: pinned revisions, what is needed."""

    run_id: str
    needs_whisper: bool
    emotion_revision: str | None = None
    text_encoder_revision: str | None = None
    whisper_revision: str | None = None
    features: FeatureSpec | None = None
    """The emotion model's feature settings, for decode workers to compute its features."""
    whisper_features: WhisperFeatureSpec | None = None
    """Whisper's log-mel settings, for decode workers to compute its features."""


def _waveforms(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """Zero-copy views of each row's samples."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = array.offsets.to_numpy()
    values = array.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(array))]


def _features(batch: pa.Table) -> list[ClipFeatures | None]:
    """Each row's features from the decode stage, as [frames, width] views; None if it has none."""
    frames = batch["audio_feature_frames"].to_pylist()
    valid = batch["audio_feature_valid_frames"].to_pylist()
    flat = _waveforms(batch["audio_features"])
    return [
        None if n is None else (values.reshape(n, -1), v)
        for values, n, v in zip(flat, frames, valid, strict=True)
    ]


def _whisper_features(batch: pa.Table) -> list[np.ndarray | None]:
    """Each row's Whisper log-mel from the decode stage, as [mel bins, frames] views, or None."""
    frames = batch["whisper_feature_frames"].to_pylist()
    flat = _waveforms(batch["whisper_features"])
    return [
        None if n is None else values.reshape(-1, n)
        for values, n in zip(flat, frames, strict=True)
    ]


_ARRAY_COLUMNS = ["waveform", "audio_features", "whisper_features"]
# Filled by the model stage; null where a row failed earlier or its mode needs no text.
_TRANSCRIPT_COLUMNS = (
    "language_probability",
    "transcript",
    "transcript_source",
    "transcript_suppressed",
)


class ModelStage:
    """Whisper where a transcript is missing, then the emotion model, for a batch of clips."""

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
        self.classifier, emotion, encoder = load_classifier(
            config,
            device,
            batch_size=batch_size,
            emotion_revision=plan.emotion_revision,
            text_encoder_revision=plan.text_encoder_revision,
        )
        self.transcriber = None
        self.whisper_languages: frozenset[str] = frozenset()
        if plan.needs_whisper and config.needs_text:
            self.transcriber, _ = load_transcriber(
                config,
                device,
                batch_size=batch_size,
                cpu_threads=cpu_threads,
                revision=plan.whisper_revision,
            )
            self.whisper_languages = frozenset(self.transcriber.languages)
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

    def _job_language(self) -> str | None:
        return None if self.config.language == "auto" else self.config.language

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        rows = batch.drop_columns(_ARRAY_COLUMNS).to_pylist()
        waves = _waveforms(batch["waveform"])
        features = _features(batch)
        for row in rows:
            row.update(dict.fromkeys(_TRANSCRIPT_COLUMNS))
        live = [i for i, row in enumerate(rows) if row["error_code"] is None]
        if self.config.needs_text:
            live = self._transcribe(rows, waves, _whisper_features(batch), live)
        self._classify(rows, waves, features, live)
        out = self._output(rows)
        self.counts.add([row["error_code"] for row in rows], time.perf_counter() - started)
        logger.info("models: %s", self.counts)
        return out

    def _transcribe(
        self,
        rows: list[dict],
        waves: list[np.ndarray],
        mels: list[np.ndarray | None],
        live: list[int],
    ) -> list[int]:
        """Fills transcripts; returns the rows still alive."""
        pending: list[int] = []
        for i in live:
            row = rows[i]
            row["language"] = row["language"] or self._job_language()
            if row["text"] is not None:
                row["transcript"], row["transcript_source"] = row["text"], SOURCE_MANIFEST
                continue
            language = row["language"]
            if language is not None and language not in self.whisper_languages:
                _fail(
                    row,
                    RowError(
                        ErrorCode.UNSUPPORTED_LANGUAGE,
                        f"language {language!r} is not one Whisper knows; "
                        "use a code such as en, es "
                        "or auto",
                    ),
                    "transcribe",
                )
                continue
            pending.append(i)
        if pending:
            if self.transcriber is None:
                raise RuntimeError("rows need Whisper but the plan said none did")
            transcripts = self.transcriber.transcribe(
                [waves[i] for i in pending],
                [rows[i]["language"] for i in pending],
                features=[mels[i] for i in pending],
            )
            for i, transcript in zip(pending, transcripts, strict=True):
                rows[i].update(
                    transcript=transcript.text,
                    transcript_source=SOURCE_WHISPER,
                    transcript_suppressed=transcript.suppressed,
                    language=transcript.language,
                    language_probability=transcript.language_probability,
                    **self.whisper_columns,
                )
        return [i for i in live if rows[i]["error_code"] is None]

    def _classify(
        self,
        rows: list[dict],
        waves: list[np.ndarray],
        features: list[ClipFeatures | None],
        live: list[int],
    ) -> None:
        if not live:
            return
        live_waves = live_features = None
        if self.classifier.needs_audio:
            # Features come from the decode stage in a job; a table decoded without them (the
            # one-file API, tests) still works from the waveforms.
            if all(features[i] is not None for i in live):
                live_features = [features[i] for i in live]
            else:
                live_waves = [waves[i] for i in live]
        probabilities = self.classifier.classify(
            live_waves,
            [rows[i]["transcript"] for i in live] if self.classifier.needs_text else None,
            features=live_features,
        )
        labels = self.classifier.labels
        for i, probs in zip(live, probabilities, strict=True):
            top = int(np.argmax(probs))
            rows[i].update(
                emotion=labels[top],
                emotion_score=float(probs[top]),
                scores=list(zip(labels, probs.tolist(), strict=True)),
                **self.model_columns,
            )

    def _output(self, rows: list[dict]) -> pa.Table:
        now = dt.datetime.now(dt.timezone.utc)
        for row in rows:
            failed = row["error_code"] is not None
            row.update(
                status=STATUS_ERROR if failed else STATUS_OK,
                end_s=row["start_s"] + row["duration_s"] if row["duration_s"] is not None else None,
                mode=self.config.mode,
                run_id=self.plan.run_id,
                processed_at=now,
            )
        return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)


def _fail(row: dict, error: RowError, stage: str) -> None:
    row["error_code"] = error.code.value
    row["error"] = f"{stage}: {error.message}"
