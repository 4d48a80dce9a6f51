"""Whisper transcription through faster-whisper, batched across clips.

faster-whisper's ``BatchedInferencePipeline`` batches the 30 s chunks of *one* file, so a corpus of
short clips gets no speed-up from it. Here clips of up to 30 s are batched with each other: each
clip's log-mel features are padded to Whisper's 30 s window and stacked, then one CTranslate2
``encode``, at most one ``detect_language`` and one ``generate`` serve the whole batch. Longer
clips go one at a time through faster-whisper's own long-form decoding, fallbacks included.

Only model code lives here: no Ray, no columns, no object storage.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import (
    TranscriptionOptions,
    get_compression_ratio,
    get_suppressed_tokens,
    merge_punctuations,
)

from .config import require
from .errors import ErrorCode, ModelLoadError, RowError
from .features import WhisperFeatureSpec, whisper_features

__all__ = [
    "Transcript",
    "WhisperTranscriber",
    "is_hallucination",
    "stray_words",
    "words_by_span",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transcript:
    """What Whisper heard in one clip.

    For clips over 30 s the scores summarise the 30 s windows faster-whisper decoded: the lowest
    ``no_speech_prob`` (the clip holds speech if any window does), the token-weighted
    ``avg_logprob`` and the highest ``compression_ratio``.
    """

    text: str
    """Transcript; "" when nothing was said or the hallucination guard dropped it."""
    language: str
    """Language code used for decoding, forced or detected, e.g. "en"."""
    language_probability: float | None
    """Probability of the detected language; None when the language was forced."""
    no_speech_prob: float
    """Whisper's probability that the window holds no speech."""
    avg_logprob: float
    """Average log-probability of the decoded tokens, as faster-whisper computes it."""
    compression_ratio: float
    """gzip compression ratio of the text; high values mean repetitive output."""
    suppressed: bool
    """True when the hallucination guard dropped text (for long clips: in at least one window)."""
    parts: tuple[str, ...] = ()
    """With ``spans``: the text of each span, in order (words go to the span their middle falls
    in). Otherwise the text alone."""
    stray_words: int = 0
    """With ``spans``: words whose middle lies more than :data:`STRAY_MARGIN_S` outside every
    span, which Whisper could not place in one."""


def is_hallucination(
    no_speech_prob: float,
    avg_logprob: float,
    compression_ratio: float,
    *,
    no_speech_threshold: float,
    log_prob_threshold: float,
    compression_ratio_threshold: float,
) -> bool:
    """Whether a decoded window's text should be dropped rather than trusted.

    Whisper invents fluent text on silence and noise. The first clause is faster-whisper's (and
    OpenAI's) per-segment skip: the model thinks nothing was said *and* is not confident in what
    it wrote; a high no-speech probability alone is not enough, since confident text survives
    it. The second catches repetition loops, which faster-whisper retries at higher
    temperatures but keeps anyway when every retry loops too.
    """
    # <=, not <: faster-whisper keeps text only when its log-probability is above the threshold.
    silent = no_speech_prob > no_speech_threshold and avg_logprob <= log_prob_threshold
    return silent or compression_ratio > compression_ratio_threshold


class _Scored(Protocol):
    """Anything scored like a decoded window: ours, or a faster-whisper Segment."""

    @property
    def no_speech_prob(self) -> float: ...
    @property
    def avg_logprob(self) -> float: ...
    @property
    def compression_ratio(self) -> float: ...


@dataclass(frozen=True)
class _Window:
    """One decoded 30 s window, scored the way faster-whisper scores it."""

    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    n_tokens: int
    tokens: tuple[int, ...] = ()


class WhisperTranscriber:
    """A faster-whisper model loaded once, transcribing batches of mono 16 kHz clips.

    With ``workers`` above one, CTranslate2 keeps that many replicas of the model and a
    call's batches of short clips run on them at once, from a thread each: on a
    CPU, windows heard one at a time on one thread each keep every core busy, which one window on
    several threads does not (docs/benchmarks.md, *Sharing the cores*). Not safe for concurrent
    calls from several threads: give each worker its own transcriber.
    """

    def __init__(
        self,
        model_dir: str,
        *,
        device: str = "cpu",
        compute_type: str = "default",
        batch_size: int = 8,
        beam_size: int = 5,
        cpu_threads: int = 0,
        workers: int = 1,
        no_speech_threshold: float = 0.6,
        log_prob_threshold: float = -1.0,
        compression_ratio_threshold: float = 2.4,
    ) -> None:
        require(batch_size >= 1, "batch_size", batch_size, ">= 1")
        require(beam_size >= 1, "beam_size", beam_size, ">= 1")
        require(cpu_threads >= 0, "cpu_threads", cpu_threads, ">= 0")
        require(workers >= 1, "workers", workers, ">= 1")
        self.batch_size = batch_size
        self.workers = workers
        self.beam_size = beam_size
        self.no_speech_threshold = no_speech_threshold
        self.log_prob_threshold = log_prob_threshold
        self.compression_ratio_threshold = compression_ratio_threshold
        self._model = _load_model(model_dir, device, compute_type, cpu_threads, workers)
        # faster-whisper built its extractor from these same settings (WhisperModel.feat_kwargs).
        self._feature_spec = WhisperFeatureSpec(**self._model.feat_kwargs)
        self._tokenizers: dict[str, Tokenizer] = {}
        # [-1] is faster-whisper's default: its non-speech symbols plus the special tokens.
        self._suppress_tokens = list(get_suppressed_tokens(self._tokenizer("en"), [-1]))

    @property
    def languages(self) -> tuple[str, ...]:
        """Language codes this model can be forced to; any other is a per-row error."""
        return tuple(self._model.supported_languages)

    @property
    def feature_spec(self) -> WhisperFeatureSpec:
        """The log-mel settings of this model, for computing its features elsewhere."""
        return self._feature_spec

    def transcribe(
        self,
        waveforms: Sequence[np.ndarray],
        languages: Sequence[str | None],
        *,
        features: Sequence[np.ndarray | None] | None = None,
        spans: Sequence[Spans | None] | None = None,
    ) -> list[Transcript]:
        """Transcribe float mono 16 kHz clips: one result per clip, in input order.

        ``languages[i]`` forces clip ``i``'s language, or is None to detect it. ``features[i]``,
        if given, is clip ``i``'s log-mel from :func:`whisper_features` with this model's
        :attr:`feature_spec`, computed elsewhere; its waveform is then not used (it may be
        empty). ``spans[i]``, if given, splits clip ``i``'s text: its words are aligned to the
        audio (Whisper's cross-attention, as faster-whisper's word timestamps) and each goes to
        the (start, end) span, in seconds from the clip's start, that its middle falls in, or
        nearest to; clips over one window cannot be split. Raises :class:`RowError`
        (``unsupported_language``) before any decoding when a clip asks for a language the
        model does not know (stages check :attr:`languages` first), and ``ValueError`` for
        empty, non-mono or non-float arrays, which callers filter out.
        """
        features = features if features is not None else [None] * len(waveforms)
        spans = spans if spans is not None else [None] * len(waveforms)
        _check_inputs(waveforms, languages, features, self.languages)
        window = self._feature_spec.max_samples
        results: dict[int, Transcript] = {}
        short = [
            i
            for i, (wave, mel) in enumerate(zip(waveforms, features, strict=True))
            if mel is not None or len(wave) <= window
        ]
        # Input order is kept: every clip is padded to the same 30 s window, so sorting by length
        # would not shrink the encoder's work, and CTranslate2 drops finished rows from its
        # decoding batch, so mixed output lengths cost little.
        extract = self._model.feature_extractor

        def run(batch: list[int]) -> list[Transcript]:
            mels = [_log_mel(features[i], waveforms[i], extract) for i in batch]
            return self._transcribe_short(
                mels, [languages[i] for i in batch], [spans[i] for i in batch]
            )

        batches = [short[at : at + self.batch_size] for at in range(0, len(short), self.batch_size)]
        for batch, transcripts in zip(batches, self._map(run, batches), strict=True):
            results.update(zip(batch, transcripts, strict=True))
        for i, wave in enumerate(waveforms):
            if i not in results:
                if spans[i] is not None and len(spans[i] or ()) > 1:
                    raise ValueError(
                        f"clip {i} is longer than one window: its text cannot be split"
                    )
                results[i] = self._transcribe_long(wave, languages[i])
        return [results[i] for i in range(len(waveforms))]

    def _map(
        self, run: Callable[[list[int]], list[Transcript]], batches: list[list[int]]
    ) -> Iterable[list[Transcript]]:
        """``run`` over the batches, on the model's workers at once where it has several."""
        if self.workers == 1 or len(batches) == 1:
            return map(run, batches)
        # Per call, not per transcriber: an idle pool's threads would outlive a model actor's
        # batches for nothing, and starting two threads costs microseconds next to a window.
        with ThreadPoolExecutor(self.workers, thread_name_prefix="whisper") as pool:
            return list(pool.map(run, batches))

    def detect(
        self,
        waveforms: Sequence[np.ndarray],
        *,
        features: Sequence[np.ndarray | None] | None = None,
    ) -> list[tuple[str, float]]:
        """The most likely language of each clip and its probability, from its first window
        (``features`` as in :meth:`transcribe`)."""
        features = features if features is not None else [None] * len(waveforms)
        window, extract = self._feature_spec.max_samples, self._model.feature_extractor
        found: list[tuple[str, float]] = []
        for start in range(0, len(waveforms), self.batch_size):
            batch = range(start, min(start + self.batch_size, len(waveforms)))
            mels = [_log_mel(features[i], waveforms[i][:window], extract) for i in batch]
            encoded = self._model.encode(np.stack([pad_or_trim(mel) for mel in mels]))
            found.extend(self._detect_languages(encoded, [None] * len(mels)))
        return found

    def _transcribe_short(
        self,
        mels: Sequence[np.ndarray],
        languages: Sequence[str | None],
        spans: Sequence[Spans | None],
    ) -> list[Transcript]:
        expected = self._feature_spec.feature_size
        for mel in mels:
            if mel.ndim != 2 or mel.shape[0] != expected:
                raise ValueError(f"log-mel of shape {mel.shape}; this model takes {expected} bins")
        features = np.stack([pad_or_trim(mel) for mel in mels])
        encoded = self._model.encode(features)
        detected = self._detect_languages(encoded, languages)
        resolved = [forced or detected[i][0] for i, forced in enumerate(languages)]
        windows = self._generate(encoded, resolved)
        kept = ["" if self._drops(window) else window.text for window in windows]
        parts, strays = self._split(
            encoded, [m.shape[1] for m in mels], resolved, windows, kept, spans
        )
        return [
            replace(
                self._transcript(
                    [window],
                    text=text,
                    language=language,
                    language_probability=None if forced else detected[i][1],
                    parts=split,
                ),
                stray_words=stray,
            )
            for i, (window, text, language, forced, split, stray) in enumerate(
                zip(windows, kept, resolved, languages, parts, strays, strict=True)
            )
        ]

    def _split(
        self,
        encoded: ctranslate2.StorageView,
        frames: Sequence[int],
        languages: Sequence[str],
        windows: Sequence[_Window],
        kept: Sequence[str],
        spans: Sequence[Spans | None],
    ) -> tuple[list[tuple[str, ...]], list[int]]:
        """Each window's text split by its spans: (text,) where it has none (or one); and how
        many of its words lay in no span."""
        parts: list[tuple[str, ...]] = [(text,) for text in kept]
        strays = [0] * len(kept)
        split = [i for i, s in enumerate(spans) if s is not None and len(s) > 1]
        for i in split:
            parts[i] = ("",) * len(spans[i] or ())
        wanted = [i for i in split if kept[i]]
        if not wanted:
            return parts, strays
        eot = self._tokenizer(languages[wanted[0]]).eot
        # Every row of the encoder output goes to the aligner (rows not split, and rows of other
        # languages, are aligned too, and ignored): slicing it would mean copying it off the device.
        text_tokens = [[t for t in window.tokens if t < eot] for window in windows]
        for language in sorted({languages[i] for i in wanted}):
            tokenizer = self._tokenizer(language)
            words = self._model.find_alignment(tokenizer, text_tokens, encoded, list(frames))
            for i in wanted:
                if languages[i] == language:
                    merge_punctuations(words[i], _PREPEND_PUNCTUATION, _APPEND_PUNCTUATION)
                    parts[i] = words_by_span(words[i], spans[i] or ())
                    strays[i] = stray_words(words[i], spans[i] or ())
        return parts, strays

    def _detect_languages(
        self, encoded: ctranslate2.StorageView, languages: Sequence[str | None]
    ) -> list[tuple[str, float]]:
        """Top language and its probability per row; only rows with no forced language use them."""
        if all(language is not None for language in languages):
            return []
        if not self._model.model.is_multilingual:
            # English-only models have no language tokens; faster-whisper answers "en" too.
            return [("en", 1.0)] * len(languages)
        # The whole batch goes through detection even when only some rows need it: that is one
        # decoder step, while slicing the encoder output would mean copying it off the device.
        ranked = self._model.model.detect_language(encoded)
        return [(row[0][0][2:-2], row[0][1]) for row in ranked]

    def _generate(
        self, encoded: ctranslate2.StorageView, languages: Sequence[str]
    ) -> list[_Window]:
        tokenizers = [self._tokenizer(language) for language in languages]
        prompts = [
            self._model.get_prompt(tokenizer, [], without_timestamps=True)
            for tokenizer in tokenizers
        ]
        # faster-whisper's defaults for its first, temperature-0 try (generate_with_fallback).
        results = self._model.model.generate(
            encoded,
            prompts,
            beam_size=self.beam_size,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            max_length=self._model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress_tokens,
        )
        return [
            _window(tokenizer, result.sequences_ids[0], result.scores[0], result.no_speech_prob)
            for tokenizer, result in zip(tokenizers, results, strict=True)
        ]

    def _transcribe_long(self, waveform: np.ndarray, language: str | None) -> Transcript:
        segments, info = self._model.transcribe(
            waveform,
            language=language,
            task="transcribe",
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            no_speech_threshold=self.no_speech_threshold,
            log_prob_threshold=self.log_prob_threshold,
            compression_ratio_threshold=self.compression_ratio_threshold,
        )
        # segments is lazy: decoding happens while it is consumed, inside the recording.
        with self._model.recording_windows() as windows:
            # A segment carries its window's scores, so this is the per-window guard; windows
            # faster-whisper already skipped as silent yield no segment at all.
            kept = [segment.text.strip() for segment in segments if not self._drops(segment)]
        return self._transcript(
            windows,
            text=" ".join(part for part in kept if part),
            language=info.language,
            language_probability=None if language else float(info.language_probability),
        )

    def _transcript(
        self,
        windows: Sequence[_Window],
        *,
        text: str,
        language: str,
        language_probability: float | None,
        parts: tuple[str, ...] | None = None,
    ) -> Transcript:
        if not windows:
            raise RuntimeError("faster-whisper decoded no window for a non-empty clip")
        return Transcript(
            text=text,
            language=language,
            language_probability=language_probability,
            no_speech_prob=min(w.no_speech_prob for w in windows),
            # Total log-probability over total tokens (each window also scores its end token).
            avg_logprob=float(
                np.average(
                    [w.avg_logprob for w in windows], weights=[w.n_tokens + 1 for w in windows]
                )
            ),
            compression_ratio=max(w.compression_ratio for w in windows),
            suppressed=any(self._drops(window) for window in windows),
            parts=parts if parts is not None else (text,),
        )

    def _drops(self, window: _Scored) -> bool:
        return is_hallucination(
            window.no_speech_prob,
            window.avg_logprob,
            window.compression_ratio,
            no_speech_threshold=self.no_speech_threshold,
            log_prob_threshold=self.log_prob_threshold,
            compression_ratio_threshold=self.compression_ratio_threshold,
        )

    def _tokenizer(self, language: str) -> Tokenizer:
        # Workers may race to build one: both are equal, and the last one kept is as good.
        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self._model.hf_tokenizer,
                self._model.model.is_multilingual,
                task="transcribe",
                language=language,
            )
        return self._tokenizers[language]


class _WindowRecordingWhisperModel(WhisperModel):
    """faster-whisper's model that also keeps the scores of every 30 s window it decodes.

    Its long-form decoding skips silent windows without yielding anything, so their scores would
    otherwise be lost, and a silent long clip would have none to report.
    """

    _windows: list[_Window] | None = None

    @contextmanager
    def recording_windows(self) -> Iterator[list[_Window]]:
        self._windows = []
        try:
            yield self._windows
        finally:
            self._windows = None

    def generate_with_fallback(
        self,
        encoder_output: ctranslate2.StorageView,
        prompt: list[int],
        tokenizer: Tokenizer,
        options: TranscriptionOptions,
    ) -> tuple[ctranslate2.models.WhisperGenerationResult, float, float, float]:
        decoded = super().generate_with_fallback(encoder_output, prompt, tokenizer, options)
        result, avg_logprob, _, compression_ratio = decoded
        if self._windows is not None:
            tokens = result.sequences_ids[0]
            self._windows.append(
                _Window(
                    text=tokenizer.decode(tokens).strip(),
                    no_speech_prob=result.no_speech_prob,
                    avg_logprob=avg_logprob,
                    compression_ratio=compression_ratio,
                    n_tokens=len(tokens),
                )
            )
        return decoded


Spans = Sequence[tuple[float, float]]
"""(start, end) seconds of the parts of a clip whose text is wanted part by part."""

# faster-whisper's defaults (TranscriptionOptions): punctuation joins the word beside it.
_PREPEND_PUNCTUATION = "\"'“¿([{-"
_APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


def words_by_span(words: Sequence[dict], spans: Spans) -> tuple[str, ...]:
    """The text of each span: the aligned words (``word``, ``start``, ``end`` in seconds) whose
    middle falls in it, or, between spans, in the nearer one's half of the pause."""
    # A span's territory ends halfway through the pause before the next span.
    bounds = [(spans[k][1] + spans[k + 1][0]) / 2 for k in range(len(spans) - 1)]
    texts: list[list[str]] = [[] for _ in spans]
    for word in words:
        if not word["word"]:
            continue
        middle = (word["start"] + word["end"]) / 2
        texts[bisect.bisect_right(bounds, middle)].append(word["word"])
    return tuple("".join(t).strip() for t in texts)


STRAY_MARGIN_S = 0.5
"""How far outside every span a word's middle may lie and still be placed with certainty."""


def stray_words(words: Sequence[dict], spans: Spans) -> int:
    """How many words cannot be placed with certainty: a word is placed where its middle lies
    within :data:`STRAY_MARGIN_S` of a span, or where its time overlaps exactly one span (then
    that span is also the one nearest its middle). The alignment often stretches the first word
    after a pause back into the silence before it: that word still reaches into its own clip."""

    def placed(word: dict) -> bool:
        middle = (word["start"] + word["end"]) / 2
        if any(start - STRAY_MARGIN_S <= middle <= end + STRAY_MARGIN_S for start, end in spans):
            return True
        return sum(word["start"] < end and word["end"] > start for start, end in spans) == 1

    return sum(not placed(w) for w in words if w["word"])


def _log_mel(computed: np.ndarray | None, waveform: np.ndarray, extractor) -> np.ndarray:
    return computed if computed is not None else whisper_features(extractor, waveform)


def _window(
    tokenizer: Tokenizer, tokens: list[int], score: float, no_speech_prob: float
) -> _Window:
    """Score one generation result exactly as faster-whisper's ``generate_with_fallback`` does."""
    # CTranslate2 returns the cumulative log-probability divided by the length (length_penalty
    # 1); faster-whisper undoes that and averages over the tokens plus the end-of-text token.
    seq_len = len(tokens)
    avg_logprob = score * seq_len / (seq_len + 1)
    text = tokenizer.decode(tokens).strip()
    return _Window(
        text=text,
        no_speech_prob=no_speech_prob,
        avg_logprob=avg_logprob,
        compression_ratio=get_compression_ratio(text),
        n_tokens=seq_len,
        tokens=tuple(tokens),
    )


def _check_inputs(
    waveforms: Sequence[np.ndarray],
    languages: Sequence[str | None],
    features: Sequence[np.ndarray | None],
    supported: Sequence[str],
) -> None:
    if not len(waveforms) == len(languages) == len(features):
        raise ValueError(
            f"{len(waveforms)} waveforms, {len(languages)} languages, {len(features)} features"
        )
    for i, (wave, mel) in enumerate(zip(waveforms, features, strict=True)):
        if mel is not None:
            continue
        if wave.ndim != 1 or not np.issubdtype(wave.dtype, np.floating):
            raise ValueError(
                f"waveform {i} is {wave.dtype} with shape {wave.shape}; expected mono float"
            )
        if wave.size == 0:
            raise ValueError(f"waveform {i} is empty; filter zero-length clips before Whisper")
    for i, language in enumerate(languages):
        if language is not None and language not in supported:
            raise RowError(
                ErrorCode.UNSUPPORTED_LANGUAGE,
                f"clip {i} asks for language {language!r}, which this Whisper model cannot "
                "transcribe; use one of its language codes, or no language to detect it",
            )


def _load_model(
    model_dir: str, device: str, compute_type: str, cpu_threads: int, workers: int = 1
) -> _WindowRecordingWhisperModel:
    # faster-whisper treats a missing folder as a hub name to download and a folder without
    # tokenizer.json as a reason to fetch one: offline workers must fail here instead.
    for required in ("model.bin", "tokenizer.json"):
        if not os.path.isfile(os.path.join(model_dir, required)):
            raise ModelLoadError(
                f"Whisper model folder {model_dir!r} has no {required}; "
                "expected a faster-whisper (CTranslate2) model folder"
            )
    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type in ("default", "auto"):
        # "auto" means what the job configuration says (float16 on CUDA, int8 on CPU), not
        # CTranslate2's "fastest type this device supports".
        compute_type = "float16" if device == "cuda" else "int8"
    try:
        model = _WindowRecordingWhisperModel(
            model_dir,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=workers,
        )
    except (RuntimeError, ValueError, OSError) as error:
        raise ModelLoadError(f"cannot load Whisper model {model_dir!r}: {error}") from error
    logger.info("Loaded Whisper %s on %s (%s)", model_dir, device, compute_type)
    return model
