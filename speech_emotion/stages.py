"""The two Ray Data stages: decode (CPU pool) and models (GPU pool). Glue only.

Each is a class that sets up once in ``__init__`` and maps a batch in ``__call__``. The decode
stage turns each recording into its clips (:mod:`segments`) grouped into the windows Whisper hears
(:mod:`windows`), or into one error row; the model stage turns windows back into one output row
per clip, in order. A row that fails carries its error code and reason onward; it is never
dropped. Only :class:`RowError` is caught per row: anything else is a bug and raises. What is done
to the audio lives in :mod:`fetch`, :mod:`audio`, :mod:`features`; what the models do, in
:mod:`annotator`; the batch between the stages, in :mod:`decoded`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from .annotator import (
    Annotation,
    Annotator,
    Classifier,
    ClipInput,
    Transcriber,
    WindowInput,
    select_windows,
)
from .clips import RATE_HZ, Clip, Clipper
from .config import DecodeConfig, ModelConfig
from .crashes import CrashGuard
from .decoded import DecodedClip, DecodedWindow, read_table, to_table
from .errors import ErrorCode, RowError
from .faults import die_if_poisoned
from .features import FeatureSpec, WhisperFeatureSpec, audio_features
from .fetch import Prefetcher
from .languages import Classifiers
from .memory import annotate_within_memory
from .packing import Packer, Unheard, packable
from .schema import OUTPUT_SCHEMA, STATUS_ERROR, STATUS_OK
from .segments import Segmenter
from .spans import MAX_GAP_S, Piece, Span, by_file, cut, plan_pieces, spans_of
from .tally import Report
from .windows import Window, plan_windows

if TYPE_CHECKING:
    from .asr import Transcript
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
_MAX_BLOCK_SAMPLES = 600 * RATE_HZ


class DecodeStage:
    """Fetches and decodes each recording to 16 kHz float32 (channels mixed, or split), records
    its original format, cuts it into clips (:mod:`clips`, :mod:`segments`) and groups them into
    the windows Whisper will hear (:mod:`windows`). A recording that is a span of a file (on one
    of its channels) is cut from the file's piece that its batch decoded once for all its spans
    there (:mod:`spans`).

    Given the emotion model's feature settings (``features``: one for all, or by a recording's
    language, None for one without), it computes each clip's input features here on a CPU
    worker, so the accelerator's actor does not; given Whisper's (``whisper_features``), each
    heard window's log-mel, for windows up to 30 s. A window is heard when Whisper runs in this
    job (``whisper``) and a clip of it has no transcript (the row has none, or the clip is not
    the whole recording the transcript describes), or its language is to be detected
    (``detect``) and the row has none. With ``packing`` (default: the configuration's), short
    heard windows of the batch's recordings share Whisper's 30 s windows (:mod:`packing`) with
    others in the same language (the row's, else the job's ``language``), and go after the
    others. Samples go on only where the model stage still needs them. Yields windows
    as one or more tables of at most ``_MAX_BLOCK_SAMPLES`` float32 values (a longer window goes
    alone).
    """

    def __init__(
        self,
        config: DecodeConfig,
        *,
        features: FeatureSpec | Mapping[str | None, FeatureSpec] | None = None,
        whisper: bool = True,
        whisper_features: WhisperFeatureSpec | None = None,
        detect: bool = False,
        language: str | None = None,
        packing: bool | None = None,
        clipper: Clipper | None = None,
        report: Report | None = None,
        crashes: CrashGuard | None = None,
    ) -> None:
        self.config = config
        self._crashes = crashes
        self._features = features
        self._whisper = whisper
        self._detect = detect
        self._language = language
        self._packing = config.whisper_packing if packing is None else packing
        self._whisper_features = whisper_features
        self._clipper = clipper or Segmenter(config.segment)
        self._prefetch = Prefetcher(config.fetch_threads, config.allowed_prefixes)
        self._report = report
        self._figures: defaultdict[str, float] = defaultdict(float)
        self.counts = StageCounts()

    @contextmanager
    def _timing(self, figure: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._figures[figure] += time.perf_counter() - started

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        started, yielded = time.perf_counter(), False
        rows: list[DecodedWindow] = []
        packer = Packer(self._hear)
        values = 0
        has_text = batch["text"].is_valid().to_pylist()
        languages = batch["language"].to_pylist()
        ids = batch["id"].to_pylist()
        # After a worker died on this batch: one recording at a time, each marked (crashes.py).
        isolating = self._crashes if self._crashes and self._crashes.start_batch(ids) else None
        for recording, audio in self._recordings(batch, ids, isolating):
            self._figures["recordings"] += 1
            if not isinstance(audio, RowError):
                self._figures["audio_s"] += audio.duration_s
            language = languages[recording]
            for row in self._windows(recording, audio, has_text[recording], language):
                if isinstance(row, Unheard):
                    packer.add(row)
                    if packer.samples < _MAX_BLOCK_SAMPLES // 2:
                        continue
                    with self._timing("features_s"):
                        packed = packer.flush()
                else:
                    packed = [row]
                for made in packed:
                    rows.append(made)
                    values += made.values
                if values >= _MAX_BLOCK_SAMPLES:
                    yield self._table(batch, rows, started)
                    rows, values, yielded, started = [], 0, True, time.perf_counter()
            del audio
        with self._timing("features_s"):
            rows.extend(packer.flush())
        if rows or not yielded:
            yield self._table(batch, rows, started)
        if self._crashes is not None:
            self._crashes.end_batch(ids)

    def _table(self, batch: pa.Table, windows: list[DecodedWindow], started: float) -> pa.Table:
        table = to_table(batch, windows)
        codes = [c.error.code.value if c.error else None for w in windows for c in w.clips]
        busy = time.perf_counter() - started
        self.counts.add(codes, busy)
        logger.info("decode: %s", self.counts)
        if self._report is not None:
            self._report(
                "decode",
                {**self._figures, "busy_s": busy, "windows": len(windows), "clips": len(codes)},
            )
        self._figures = defaultdict(float)
        return table

    def _recordings(
        self, batch: pa.Table, ids: list[str], isolating: CrashGuard | None
    ) -> Iterator[tuple[int, DecodedAudio | RowError]]:
        """Each recording's audio, or why it has none, file by file and piece by piece: each
        file read once, each piece decoded once. Isolating, each piece is one recording, marked
        while in hand."""
        spans = spans_of(batch)
        files = by_file(batch["audio"].to_pylist())
        fetched = self._prefetch(list(files))
        for ref, rows in files.items():
            # Taken with next(), not zipped: zip would keep the last file's bytes alive.
            with self._timing("fetch_wait_s"):
                data = next(fetched)
            pieces = self._pieces(ref, rows, spans, data, share=isolating is None)
            for i, piece in enumerate(pieces):
                item = ids[piece.rows[0]]
                crashed = isolating.start_item(item) if isolating else None
                with self._timing("decode_s"):
                    decoded = crashed or self._decode(data, piece)
                if i == len(pieces) - 1:
                    del data  # the encoded file goes before the windows are made
                for recording in piece.rows:
                    yield recording, _cut(decoded, piece, spans[recording])
                del decoded
                if isolating and crashed is None:
                    isolating.end_item(item)

    def _pieces(
        self, ref: str, rows: list[int], spans: list[Span], data: bytes | RowError, share: bool
    ) -> list[Piece]:
        return plan_pieces(
            ref,
            rows,
            spans,
            split_channels=self.config.channels == "split",
            longest_s=self.config.longest_s,
            max_gap_s=MAX_GAP_S if len(rows) > 1 and _seeks(data) else None,
            share=share,
        )

    def _decode(self, data: bytes | RowError, piece: Piece) -> DecodedAudio | RowError:
        from .audio import decode_audio

        if isinstance(data, RowError):
            return data
        die_if_poisoned([data])
        try:
            return decode_audio(
                data,
                max_duration_s=self.config.longest_s,
                split_channels=piece.split,
                start_s=piece.start_s,
                end_s=piece.end_s,
            )
        except RowError as exc:
            return exc

    def _windows(
        self, recording: int, audio: DecodedAudio | RowError, has_text: bool, language: str | None
    ) -> Iterator[DecodedWindow | Unheard]:
        """The recording's windows, made one at a time, or one row saying why it has none; a
        window to pack, with what it shares a window by, not yet heard."""
        if isinstance(audio, RowError):
            yield DecodedWindow([DecodedClip(recording, None, error=audio)])
            return
        if audio.duration_s < self.config.min_duration_s:
            # A recording too short for the model still reports what it is.
            too_short = RowError(
                ErrorCode.TOO_SHORT,
                f"clip is {audio.duration_s:.3f} s; the minimum is "
                f"{self.config.min_duration_s} s (--min-duration-s)",
            )
            yield DecodedWindow([DecodedClip(recording, audio, error=too_short)])
            return
        with self._timing("segment_s"):
            clips = self._clipper(audio)
        if not clips:
            silent = RowError(
                ErrorCode.NO_SPEECH,
                f"no speech found in {audio.duration_s:.1f} s of audio (voice activity "
                "detection); nothing to annotate",
            )
            yield DecodedWindow([DecodedClip(recording, audio, error=silent)])
            return
        features = self._features
        if isinstance(features, Mapping):
            features = features.get(language)
        detected = self._detect and language is None
        # Windows share Whisper's by the language it is forced to (the job's where the row names
        # none); one whose language is to be detected is heard alone (a detection per window).
        key = None if detected or not self._packing else language or self._language or ""
        for window in plan_windows(clips):
            with self._timing("features_s"):
                made, samples = self._window(
                    recording, audio, clips, window, has_text, detected, features
                )
                if samples is None:
                    yield made
                elif key is not None and packable(len(samples)):
                    yield Unheard(made, samples, key)
                else:
                    yield self._hear(made, samples)

    def _window(
        self,
        recording: int,
        audio: DecodedAudio,
        clips: list[Clip],
        window: Window,
        has_text: bool,
        detected: bool,
        features: FeatureSpec | None,
    ) -> tuple[DecodedWindow, np.ndarray | None]:
        """The window's clips, and its samples where Whisper hears it."""
        members = [clips[i] for i in window.clips]
        heard = detected or (
            self._whisper and any(not (has_text and clip.whole) for clip in members)
        )
        made = DecodedWindow(
            [self._clip(recording, audio, clip, window, features) for clip in members]
        )
        return made, audio.track(window.channel)[window.start : window.end] if heard else None

    def _hear(
        self, window: DecodedWindow, samples: np.ndarray, packed: bool = False
    ) -> DecodedWindow:
        """The window with what Whisper hears: its log-mel, or its samples where the model stage
        computes that (or decodes it long-form)."""
        spec = self._whisper_features
        window.log_mel = spec.log_mel(samples) if spec is not None else None  # None past 30 s
        window.waveform = samples if window.log_mel is None else None
        window.packed = packed
        return window

    def _clip(
        self,
        recording: int,
        audio: DecodedAudio,
        clip: Clip,
        window: Window,
        features: FeatureSpec | None,
    ) -> DecodedClip:
        samples = clip.samples(audio)
        return DecodedClip(
            recording,
            audio,
            clip=clip,
            offset_s=(clip.start - window.start) / RATE_HZ,
            features=audio_features(features, samples) if features else None,
            waveform=samples if features is None else None,
        )


def _seeks(data: bytes | RowError) -> bool:
    from .audio import seekable

    return isinstance(data, bytes) and seekable(data)


def _cut(decoded: DecodedAudio | RowError, piece: Piece, span: Span) -> DecodedAudio | RowError:
    return decoded if isinstance(decoded, RowError) else cut(decoded, piece, span)


def _window_key(first_clip: dict) -> str:
    """A window, by its first clip: unique within a run."""
    return f"{first_clip['id']}#{first_clip['channel']}#{first_clip['segment_index']}"


class _OnFirstUse:
    """Whisper, loaded the first time a clip needs it. With recordings segmented, a run may need
    it though every manifest row has a transcript (a long one is transcribed per segment), or
    never (every recording was short)."""

    def __init__(self, load: Callable[[], Transcriber]) -> None:
        self._load = load
        self._model: Transcriber | None = None

    @property
    def model(self) -> Transcriber:
        if self._model is None:
            self._model = self._load()
        return self._model

    @property
    def languages(self) -> Sequence[str]:
        return self.model.languages

    def transcribe(self, *args, **kwargs) -> list[Transcript]:
        return self.model.transcribe(*args, **kwargs)

    def detect(self, *args, **kwargs) -> list[tuple[str, float]]:
        return self.model.detect(*args, **kwargs)


class ModelStage:
    """Loads the models once, then annotates batches of decoded clips (:class:`Annotator`)."""

    def __init__(
        self,
        config: ModelConfig,
        plan: ModelPlan,
        *,
        batch_size: int = 16,
        cpu_threads: int = 1,
        report: Report | None = None,
        crashes: CrashGuard | None = None,
    ) -> None:
        import torch

        from .models import load_transcriber, resolve_device

        self.config = config
        self.plan = plan
        # Ray sets OMP_NUM_THREADS from the actor's CPUs; torch needs telling as well.
        torch.set_num_threads(max(1, cpu_threads))
        self._device = resolve_device(config)
        self._batch_size = batch_size
        self.model_columns: dict[str | None, dict[str, str | None]] = {}
        """Each loaded language's model columns, as the rows it classified carry them."""
        classifiers = Classifiers(
            self._load_classifier,
            config.routes,
            needs_text=config.needs_text,
            needs_audio=config.needs_audio,
        )
        # The job language's models load now, so a model that cannot load fails the actor's
        # start; other languages' load when a clip of theirs first comes.
        if config.job_language in plan.sets:
            classifiers.load(config.job_language)
        transcriber = None
        if plan.needs_whisper:
            transcriber = _OnFirstUse(
                lambda: load_transcriber(
                    config,
                    self._device,
                    batch_size=batch_size,
                    cpu_threads=cpu_threads,
                    revision=plan.whisper_revision,
                    windows_at_once=True,
                )[0]
            )
        self.annotator = Annotator(classifiers, transcriber, language=config.job_language)
        self.whisper_columns = {
            "whisper_model": config.whisper_model,
            "whisper_model_revision": plan.whisper_revision,
        }
        self.counts = StageCounts()
        self._report = report
        self._crashes = crashes

    def _load_classifier(self, language: str | None) -> Classifier:
        from .models import load_classifier

        planned = self.plan.sets.get(language) if language else None
        classifier, emotion, encoder = load_classifier(
            self.config,
            self._device,
            language=language,
            batch_size=self._batch_size,
            emotion_revision=planned.emotion_revision if planned else None,
            text_encoder_revision=planned.text_encoder_revision if planned else None,
        )
        self.model_columns[language] = {
            "model_language": language,
            "emotion_model": emotion.source,
            "emotion_model_revision": emotion.revision
            or (planned.emotion_revision if planned else None),
            "text_encoder": encoder.source if encoder else None,
            "text_encoder_revision": (encoder.revision if encoder else None)
            or (planned.text_encoder_revision if planned else None),
        }
        return classifier

    def __call__(self, batch: pa.Table) -> pa.Table:
        """A batch of windows in, one output row per clip out, in order."""
        started = time.perf_counter()
        rows, live, clips, windows = read_table(batch)
        durations = [rows[i]["duration_s"] or 0.0 for i in live]
        keys = [_window_key(rows[live[w.clips[0]]]) for w in windows]
        if self._crashes is not None and self._crashes.start_batch(keys):
            annotations = self._window_by_window(clips, windows, durations, keys)
        else:
            annotations = self._annotate(clips, windows, durations)
        if self._crashes is not None:
            self._crashes.end_batch(keys)
        for i, note in zip(live, annotations, strict=True):
            self._fill(rows[i], note)
            if note.heard_by_whisper and note.heard_with is not None:
                rows[i]["whisper_window"] = _window_key(rows[live[note.heard_with]])
        now = dt.datetime.now(dt.timezone.utc)
        for row in rows:
            row.update(
                status=STATUS_OK if row["error_code"] is None else STATUS_ERROR,
                mode=self.config.mode,
                run_id=self.plan.run_id,
                processed_at=now,
            )
        out = pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)
        busy = time.perf_counter() - started
        self.counts.add([row["error_code"] for row in rows], busy)
        logger.info("models: %s", self.counts)
        if self._report is not None:
            self._report("models", self._figures(batch, rows, busy))
        return out

    def _annotate(
        self, clips: list[ClipInput], windows: list[WindowInput], durations: list[float]
    ) -> list[Annotation]:
        die_if_poisoned(clip.text for clip in clips)
        return annotate_within_memory(self.annotator.annotate, clips, windows, durations)

    def _window_by_window(
        self,
        clips: list[ClipInput],
        windows: list[WindowInput],
        durations: list[float],
        keys: list[str],
    ) -> list[Annotation]:
        """A batch that killed a worker before, one window at a time (:mod:`crashes`)."""
        crashes = self._crashes
        assert crashes is not None
        out: list[Annotation] = [Annotation() for _ in clips]
        for window, key in zip(windows, keys, strict=True):
            part_clips, part_windows, order = select_windows(clips, [window])
            crashed = crashes.start_item(key)
            if crashed is not None:
                notes = [Annotation(language=clip.language) for clip in part_clips]
                for note in notes:
                    note.fail(crashed, "models")
            else:
                notes = self._annotate(part_clips, part_windows, [durations[c] for c in order])
                crashes.end_item(key)
            for clip, note in zip(order, notes, strict=True):
                out[clip] = note
        return out

    def _figures(self, batch: pa.Table, rows: list[dict], busy: float) -> dict[str, float]:
        ok = [row for row in rows if row["error_code"] is None]
        figures = self.annotator.take_figures()
        return {
            "busy_s": busy,
            "windows": batch.num_rows,
            "clips": len(rows),
            "errors": len(rows) - len(ok),
            "audio_s": sum(row["duration_s"] or 0.0 for row in ok),
            # Each clip is its share of a recording: the sum counts recordings done.
            "recordings": sum(1 / (row["segment_count"] or 1) for row in rows),
            "whisper_s": figures.get("whisper_s", 0.0),
            "emotion_s": figures.get("emotion_s", 0.0),
            "whisper_windows": figures.get("whisper_windows", 0.0),
        }

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
                **self.model_columns[note.model_language],
            )
