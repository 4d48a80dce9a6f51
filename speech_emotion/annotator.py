"""What happens to a batch of clips once decoded: Whisper where a transcript is missing, then the
emotion model. No Ray, no Arrow, no model loading: the models come in as arguments, so the model
stage, the one-file API and the benchmarks run the same code, and tests can pass fakes.

Whisper hears windows (windows.py): a window may hold several neighbouring clips of a recording,
whose text the transcriber splits back by the clips' places in it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .clips import RATE_HZ
from .errors import ErrorCode, RowError
from .languages import Classifiers
from .schema import SOURCE_MANIFEST, SOURCE_WHISPER

if TYPE_CHECKING:
    from .asr import Transcript
    from .features import ClipFeatures

__all__ = [
    "Transcriber",
    "Classifier",
    "ClipInput",
    "WindowInput",
    "Annotation",
    "Annotator",
    "select_windows",
]


class Transcriber(Protocol):
    """Speech to text for batches of 16 kHz mono clips (:class:`asr.WhisperTranscriber`)."""

    @property
    def languages(self) -> Sequence[str]:
        """Language codes a clip may be forced to."""
        ...

    def transcribe(
        self,
        waveforms: Sequence[np.ndarray],
        languages: Sequence[str | None],
        *,
        features: Sequence[np.ndarray | None] | None = None,
        spans: Sequence[Sequence[tuple[float, float]] | None] | None = None,
    ) -> list[Transcript]: ...

    def detect(
        self,
        waveforms: Sequence[np.ndarray],
        *,
        features: Sequence[np.ndarray | None] | None = None,
    ) -> list[tuple[str, float]]:
        """The most likely language of each clip, and its probability."""
        ...


class Classifier(Protocol):
    """Label probabilities for batches of clips (:class:`emotion.EmotionClassifier`)."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def needs_audio(self) -> bool: ...

    @property
    def needs_text(self) -> bool: ...

    def classify(
        self,
        waveforms: Sequence[np.ndarray] | None,
        texts: Sequence[str] | None,
        *,
        features: Sequence[ClipFeatures] | None = None,
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class ClipInput:
    """One decoded clip, as the decode stage hands it on."""

    waveform: np.ndarray
    """16 kHz mono samples; may be empty where the features below make them unnecessary."""
    text: str | None = None
    """Transcript from the manifest; None sends the clip through Whisper."""
    language: str | None = None
    """Language from the manifest; None: the job's, else detected."""
    features: ClipFeatures | None = None
    """The emotion model's input features, if computed already."""


@dataclass(frozen=True)
class WindowInput:
    """What Whisper hears at once, and which clips it holds."""

    waveform: np.ndarray
    """16 kHz mono samples; may be empty where the log-mel is given."""
    clips: tuple[int, ...]
    """Indices of its clips, in time order; they share a language (one recording's)."""
    log_mel: np.ndarray | None = None
    """Whisper's log-mel of the window, if computed already."""
    spans: tuple[tuple[float, float], ...] = ()
    """Where each clip lies, seconds from the window's start; needed with several clips."""
    packed: bool = False
    """Its clips come from several windows put one after another (:mod:`packing`): where Whisper
    cannot place every word in one of them, each clip is heard again alone."""


def select_windows(
    clips: Sequence[ClipInput], windows: Sequence[WindowInput]
) -> tuple[list[ClipInput], list[WindowInput], list[int]]:
    """A batch of just these ``windows``: their clips, the windows renumbered to them, and each
    clip's index in the whole batch."""
    order = [c for window in windows for c in window.clips]
    place = {clip: i for i, clip in enumerate(order)}
    renumbered = [replace(w, clips=tuple(place[c] for c in w.clips)) for w in windows]
    return [clips[c] for c in order], renumbered, order


@dataclass
class Annotation:
    """What the models said about one clip, or why they could not say it."""

    language: str | None = None
    language_probability: float | None = None
    transcript: str | None = None
    transcript_source: str | None = None
    transcript_suppressed: bool | None = None
    emotion: str | None = None
    emotion_score: float | None = None
    scores: dict[str, float] | None = None
    error_code: str | None = None
    error: str | None = None
    """The reason, prefixed by the step that failed."""
    model_language: str | None = None
    """The language whose models classified the clip (None where one set takes every language)."""
    heard_with: int | None = None
    """The first clip of the window Whisper heard it in (itself when heard alone)."""

    def fail(self, error: RowError, step: str) -> None:
        self.error_code, self.error = error.code.value, error.reason(step)

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def heard_by_whisper(self) -> bool:
        return self.transcript_source == SOURCE_WHISPER


MEL_FRAMES_S = 100
"""Whisper's log-mel frames per second (a 10 ms hop)."""


def _part(values: np.ndarray, span: tuple[float, float], rate: int) -> np.ndarray:
    """The rows of ``values`` (``rate`` a second) within ``span`` seconds."""
    return values[round(span[0] * rate) : round(span[1] * rate)]


class Annotator:
    """Transcribes where needed, routes each clip to its language's models and classifies, for
    any models that fit the protocols."""

    def __init__(
        self,
        classifier: Classifier | Classifiers,
        transcriber: Transcriber | None = None,
        *,
        language: str | None = None,
    ) -> None:
        """``classifier``: one for every clip, or each language's (:class:`Classifiers`);
        ``language``: the job's language for clips that do not say; None to detect it."""
        self.classifiers = (
            classifier if isinstance(classifier, Classifiers) else Classifiers.single(classifier)
        )
        self.transcriber = transcriber
        self.language = language
        self.figures: defaultdict[str, float] = defaultdict(float)
        """What the models did since :meth:`take_figures`: their time (``whisper_s``,
        ``emotion_s``) and the windows Whisper's encoder ran on (``whisper_windows``)."""

    def take_figures(self) -> dict[str, float]:
        """The models' figures since the last call, and a fresh start."""
        spent, self.figures = dict(self.figures), defaultdict(float)
        return spent

    def annotate(
        self, clips: Sequence[ClipInput], windows: Sequence[WindowInput] | None = None
    ) -> list[Annotation]:
        """One annotation per clip, in order; a clip that cannot be annotated says why.

        ``windows`` (each clip in exactly one) say what Whisper hears; by default each clip is
        heard alone, from its own samples.
        """
        if windows is None:
            windows = [WindowInput(clip.waveform, (i,)) for i, clip in enumerate(clips)]
        out = [Annotation(language=clip.language or self.language) for clip in clips]
        live = list(range(len(clips)))
        if self.classifiers.needs_text:
            live = self._transcribe(clips, windows, out, live)
        if self.classifiers.routing:
            live = self._detect(windows, out, live)
        by_language: defaultdict[str | None, list[int]] = defaultdict(list)
        for i in live:
            note = out[i]
            try:
                note.model_language = self.classifiers.routes.pick(
                    note.language, note.language_probability
                )
            except RowError as exc:
                note.fail(exc, "route")
                continue
            by_language[note.model_language].append(i)
        for language, chosen in by_language.items():
            self._classify(self.classifiers.load(language), clips, out, chosen)
        return out

    def _transcribe(
        self,
        clips: Sequence[ClipInput],
        windows: Sequence[WindowInput],
        out: list[Annotation],
        live: list[int],
    ) -> list[int]:
        """Fills transcripts; returns the clips still alive."""
        heard: set[int] = set()
        for i in live:
            clip, note = clips[i], out[i]
            if clip.text is not None:
                note.transcript, note.transcript_source = clip.text, SOURCE_MANIFEST
            elif self._unsupported(note.language):
                note.fail(
                    RowError(
                        ErrorCode.UNSUPPORTED_LANGUAGE,
                        f"language {note.language!r} is not one Whisper knows; "
                        "use a code such as en, es or auto",
                    ),
                    "transcribe",
                )
            else:
                heard.add(i)
        pending = [w for w in windows if heard.intersection(w.clips)]
        if pending:
            started = time.perf_counter()
            self.figures["whisper_windows"] += len(pending)
            transcripts = self._whisper.transcribe(
                [w.waveform for w in pending],
                [out[next(i for i in w.clips if i in heard)].language for w in pending],
                features=[w.log_mel for w in pending],
                spans=[w.spans if len(w.clips) > 1 else None for w in pending],
            )
            self.figures["whisper_s"] += time.perf_counter() - started
            for window, transcript in zip(pending, transcripts, strict=True):
                if window.packed and transcript.stray_words:
                    self._hear_alone(window, heard, out)
                    continue
                for i, text in zip(window.clips, transcript.parts, strict=True):
                    if i in heard:
                        self._heard(out[i], transcript, text)
                        out[i].heard_with = window.clips[0]
        return [i for i in live if out[i].ok]

    def _hear_alone(self, window: WindowInput, heard: set[int], out: list[Annotation]) -> None:
        """Each heard clip of a packed window Whisper could not split, from its own part."""
        parts = [
            (i, span) for i, span in zip(window.clips, window.spans, strict=True) if i in heard
        ]
        started = time.perf_counter()
        self.figures["whisper_windows"] += len(parts)
        transcripts = self._whisper.transcribe(
            [_part(window.waveform, span, RATE_HZ) for _, span in parts],
            [out[i].language for i, _ in parts],
            features=[
                None if window.log_mel is None else _part(window.log_mel.T, span, MEL_FRAMES_S).T
                for _, span in parts
            ],
        )
        self.figures["whisper_s"] += time.perf_counter() - started
        for (i, _), transcript in zip(parts, transcripts, strict=True):
            self._heard(out[i], transcript, transcript.text)
            out[i].heard_with = i

    def _detect(
        self, windows: Sequence[WindowInput], out: list[Annotation], live: list[int]
    ) -> list[int]:
        """Whisper's guess at the language of clips that have none (a transcript was given, or
        the mode needs none) where the language picks the models."""
        unknown = {i for i in live if out[i].language is None}
        pending = [w for w in windows if unknown.intersection(w.clips)]
        if pending and self.transcriber is not None:
            started = time.perf_counter()
            self.figures["whisper_windows"] += len(pending)
            found = self.transcriber.detect(
                [w.waveform for w in pending], features=[w.log_mel for w in pending]
            )
            self.figures["whisper_s"] += time.perf_counter() - started
            for window, (language, probability) in zip(pending, found, strict=True):
                for i in unknown.intersection(window.clips):
                    out[i].language, out[i].language_probability = language, probability
        return live

    @property
    def _whisper(self) -> Transcriber:
        if self.transcriber is None:
            raise RuntimeError("clips need Whisper but no transcriber was given")
        return self.transcriber

    @staticmethod
    def _heard(note: Annotation, transcript: Transcript, text: str) -> None:
        note.transcript, note.transcript_source = text, SOURCE_WHISPER
        note.transcript_suppressed = transcript.suppressed
        note.language = transcript.language
        note.language_probability = transcript.language_probability

    def _unsupported(self, language: str | None) -> bool:
        if language is None or self.transcriber is None:
            return False
        return language not in self.transcriber.languages

    def _classify(
        self,
        classifier: Classifier,
        clips: Sequence[ClipInput],
        out: list[Annotation],
        live: list[int],
    ) -> None:
        if not classifier.needs_audio:
            self._classify_part(classifier, clips, out, live, with_features=False)
            return
        # Features come from the decode stage in a job, except for clips whose language (and
        # with it the models' feature settings) was known only once Whisper heard them; clips
        # decoded without them (the one-file API) still work from the waveforms.
        computed = [i for i in live if clips[i].features is not None]
        waves = [i for i in live if clips[i].features is None]
        for part, with_features in ((computed, True), (waves, False)):
            if part:
                self._classify_part(classifier, clips, out, part, with_features=with_features)

    def _classify_part(
        self,
        classifier: Classifier,
        clips: Sequence[ClipInput],
        out: list[Annotation],
        live: list[int],
        *,
        with_features: bool,
    ) -> None:
        features = [f for i in live if (f := clips[i].features) is not None]
        waves = [clips[i].waveform for i in live]
        texts = [out[i].transcript or "" for i in live] if classifier.needs_text else None
        started = time.perf_counter()
        if with_features:
            probabilities = classifier.classify(None, texts, features=features)
        else:
            probabilities = classifier.classify(waves if classifier.needs_audio else None, texts)
        self.figures["emotion_s"] += time.perf_counter() - started
        labels = classifier.labels
        for i, probs in zip(live, probabilities, strict=True):
            top = int(np.argmax(probs))
            out[i].emotion, out[i].emotion_score = labels[top], float(probs[top])
            out[i].scores = dict(zip(labels, probs.tolist(), strict=True))
