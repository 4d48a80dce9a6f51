"""What tests build: rows from the schema's own defaults, corpora on disk or in S3, the tiny
models' settings, fake models for the annotator, and speech with pauses where the tests put them.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa

from speech_emotion.asr import Transcript
from speech_emotion.config import JobConfig, ManifestConfig, ModelConfig, OutputConfig
from speech_emotion.emotion import EN_LABELS
from speech_emotion.schema import OUTPUT_SCHEMA, RECORDING_SCHEMA

from .audiogen import encode, tone

RATE_HZ = 16000

# -- rows ---------------------------------------------------------------------------------------


def _zero(field: pa.Field) -> object:
    """A value for a required column nobody named: the type's zero."""
    if pa.types.is_string(field.type):
        return ""
    if pa.types.is_timestamp(field.type):
        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    if pa.types.is_floating(field.type):
        return 0.0
    if pa.types.is_integer(field.type):
        return 1 if field.name == "attempt" else 0
    raise TypeError(f"no zero for {field}")


def row(schema: pa.Schema, **values: object) -> dict:
    """A row of ``schema``: the given values, null where allowed, the type's zero elsewhere."""
    unknown = set(values) - set(schema.names)
    if unknown:
        raise KeyError(f"not columns of the schema: {sorted(unknown)}")
    return {
        f.name: values[f.name] if f.name in values else None if f.nullable else _zero(f)
        for f in schema
    }


def table(schema: pa.Schema, rows: Sequence[dict]) -> pa.Table:
    return pa.Table.from_pylist([row(schema, **r) for r in rows], schema=schema)


def recording(id: str, **values: object) -> dict:
    """A manifest row as the manifest reader makes it."""
    return row(RECORDING_SCHEMA, id=id, audio=values.pop("audio", f"{id}.wav"), **values)


def clip_rows(id: str, count: int = 1, *, channels: Sequence[int | None] = (None,), **values):
    """The output rows of one recording cut into ``count`` clips on each of ``channels``."""
    values.setdefault("status", "ok")
    total = count * len(channels)
    return [
        row(OUTPUT_SCHEMA, id=id, channel=c, segment_index=i, segment_count=total, **values)
        for c in channels
        for i in range(count)
    ]


def error_row(id: str, code: str = "missing_object", **values: object) -> dict:
    """A recording-level error row."""
    return row(OUTPUT_SCHEMA, id=id, status="error", error_code=code, error="decode: x", **values)


# -- corpora ------------------------------------------------------------------------------------


def wav(seconds: float = 0.5, rate_hz: int = RATE_HZ, channels: int = 1, freq_hz=300.0) -> bytes:
    return encode(tone(seconds, rate_hz, channels, freq_hz=freq_hz), rate_hz, "wav")


@dataclass
class Corpus:
    """A manifest and its audio under one folder or object-storage prefix, growing as tests add.

    The manifest (``manifest.jsonl``) names clips relative to itself, as users write them.
    """

    root: str
    rows: list[dict] = field(default_factory=list)

    @property
    def manifest(self) -> str:
        return f"{self.root}/manifest.jsonl"

    def add(
        self,
        id: str,
        audio: bytes | None = None,
        *,
        missing: bool = False,
        path: str | None = None,
        **columns,
    ) -> Corpus:
        """Adds a row whose file holds ``audio`` (default: a short tone), or no file at all."""
        path = path or f"clips/{id}.wav"
        if not missing:
            data = wav(freq_hz=200.0 + 10 * len(self.rows)) if audio is None else audio
            with fsspec.open(f"{self.root}/{path}", "wb", auto_mkdir=True) as f:
                f.write(data)
        self.rows.append({"id": id, "audio": path, **columns})
        with fsspec.open(self.manifest, "w", auto_mkdir=True) as f:
            f.write("".join(json.dumps(r) + "\n" for r in self.rows))
        return self

    def add_tones(self, ids: Sequence[str], **columns) -> Corpus:
        for id in ids:
            self.add(id, **columns)
        return self

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]


# -- models -------------------------------------------------------------------------------------


def _tiny_emotion(models, mode: str) -> str:
    return str(models.text_classifier if mode == "text" else models.emotion[mode])


def tiny_model_config(tiny_models, mode: str = "concat", **overrides) -> ModelConfig:
    """Tiny models in place of the published English (the job language's) and Spanish sets."""
    spanish = tiny_models.spanish
    return ModelConfig(
        mode=mode,
        **{
            "emotion_model": _tiny_emotion(tiny_models, mode),
            "emotion_models": (("es", _tiny_emotion(spanish, mode)),),
            "text_encoder": str(tiny_models.text_encoder),
            "text_encoders": (("es", str(spanish.text_encoder)),),
            "whisper_model": str(tiny_models.whisper),
            **overrides,
        },
    )


def tiny_model_flags(tiny_models, mode: str = "concat", *, job: bool = True) -> list[str]:
    """The same models as command-line flags; for a job, on a CPU-only local Ray."""
    spanish = tiny_models.spanish
    flags = [
        "--mode",
        mode,
        "--emotion-model",
        _tiny_emotion(tiny_models, mode),
        "--emotion-model",
        f"es={_tiny_emotion(spanish, mode)}",
        "--text-encoder",
        str(tiny_models.text_encoder),
        "--text-encoder",
        f"es={spanish.text_encoder}",
        "--whisper-model",
        str(tiny_models.whisper),
    ]
    return [*flags, "--num-gpus-per-worker", "0"] if job else flags


def job_config(corpus: Corpus, output, tiny_models, mode: str = "concat", **overrides) -> JobConfig:
    return JobConfig(
        manifest=ManifestConfig(uri=corpus.manifest),
        output=OutputConfig(uri=str(output)),
        models=tiny_model_config(tiny_models, mode),
        **overrides,
    )


@dataclass
class FakeTranscriber:
    """Says how many samples (or log-mel frames) it heard, and, asked for the text of parts of a
    clip, which part each is; records what each call got."""

    languages: tuple[str, ...] = ("en", "es")
    calls: list[list[int]] = field(default_factory=list)
    detected: tuple[str, float] = ("en", 0.9)
    """The language (and its probability) found in every clip not forced to one."""

    def transcribe(self, waveforms, languages, *, features=None, spans=None) -> list[Transcript]:
        features = features or [None] * len(waveforms)
        spans = spans or [None] * len(waveforms)
        self.calls.append([len(w) for w in waveforms])
        out = []
        for wave, language, mel, parts in zip(waveforms, languages, features, spans, strict=True):
            text = f"heard {mel.shape[1] if mel is not None else len(wave)}"
            out.append(
                Transcript(
                    text=text,
                    language=language or self.detected[0],
                    language_probability=None if language else self.detected[1],
                    no_speech_prob=0.0,
                    avg_logprob=-0.1,
                    compression_ratio=1.0,
                    suppressed=False,
                    parts=tuple(f"{text} from {a:g} to {b:g}" for a, b in parts or []) or (text,),
                )
            )
        return out

    def detect(self, waveforms, *, features=None) -> list[tuple[str, float]]:
        self.calls.append([len(w) for w in waveforms])
        return [self.detected] * len(waveforms)


@dataclass
class FakeClassifier:
    """Probabilities that depend on the clip's length and text; records what each call got."""

    needs_audio: bool = True
    needs_text: bool = True
    labels: tuple[str, ...] = EN_LABELS
    calls: list[dict] = field(default_factory=list)

    def classify(self, waveforms, texts, *, features=None) -> np.ndarray:
        sizes = [len(f) for f, _ in features] if features is not None else None
        sizes = sizes or [len(w) for w in waveforms or []] or [0] * len(texts or [])
        self.calls.append({"sizes": sizes, "texts": texts, "features": features is not None})
        seeds = [n + len(t) for n, t in zip(sizes, texts or [""] * len(sizes), strict=True)]
        logits = np.array(
            [[(seed * (k + 1)) % 7 for k in range(len(self.labels))] for seed in seeds]
        )
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


# -- speech -------------------------------------------------------------------------------------

SPEECH = Path(__file__).resolve().parent / "data" / "speech"
_SAID = json.loads((SPEECH / "sentences.json").read_text())


def _said(language: str) -> dict[str, str]:
    return {e["file"].removesuffix(".flac"): e["text"] for e in _SAID if e["language"] == language}


SENTENCES = _said("en")
"""Sentence name (voice a or b, then its number) -> what espeak-ng says in it."""
SPANISH_SENTENCES = _said("es")
"""The same, in Spanish (voice s)."""


@functools.cache
def sentence(name: str) -> np.ndarray:
    """One spoken sentence, 16 kHz mono, without leading or trailing silence."""
    from speech_emotion.audio import decode_audio

    return decode_audio((SPEECH / f"{name}.flac").read_bytes()).waveform


@dataclass(frozen=True)
class Speech:
    """A recording made of sentences with silence between them, and where each one is."""

    samples: np.ndarray
    """[samples] for mono, [samples, channels] otherwise; 16 kHz."""
    spans: list[tuple[int, int, int]]
    """(channel, first sample, end sample) of each sentence, in the order said."""
    texts: list[str]

    def wav(self, rate_hz: int = RATE_HZ) -> bytes:
        import soxr

        samples = (
            self.samples if rate_hz == RATE_HZ else soxr.resample(self.samples, RATE_HZ, rate_hz)
        )
        return encode(samples, rate_hz, "wav")

    def on(self, channel: int) -> list[tuple[int, int]]:
        return [(start, end) for c, start, end in self.spans if c == channel]


def speech(
    names: Sequence[str],
    pauses_s: Sequence[float],
    *,
    channels: Sequence[int] | None = None,
    lead_s: float = 0.5,
) -> Speech:
    """Sentences said one after another, ``pauses_s[i]`` of silence after sentence ``i`` and
    ``lead_s`` before the first. With ``channels``, sentence ``i`` is on channel ``channels[i]``
    of a multi-channel recording (a call: the others are silent meanwhile)."""
    if len(pauses_s) != len(names):
        raise ValueError("one pause after each sentence")
    channels = channels or [0] * len(names)
    at, spans = round(lead_s * RATE_HZ), []
    for name, pause in zip(names, pauses_s, strict=True):
        spans.append((at, at + len(sentence(name))))
        at += len(sentence(name)) + round(pause * RATE_HZ)
    samples = np.zeros((at, max(channels) + 1), np.float32)
    for name, channel, (start, end) in zip(names, channels, spans, strict=True):
        samples[start:end, channel] = sentence(name)
    return Speech(
        samples[:, 0] if samples.shape[1] == 1 else samples,
        [(c, start, end) for c, (start, end) in zip(channels, spans, strict=True)],
        [SENTENCES[name] for name in names],
    )


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing transcripts."""
    import re

    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word edits (substitutions, insertions, deletions) per reference word."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row = row, [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (r != h))
    return row[-1] / max(1, len(ref))
