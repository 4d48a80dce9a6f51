"""One file at a time, with the toolkit's ``predict_emotion`` signature and return value.

Unlike the toolkit, models load once per process (an explicit cache keyed by what selects them),
audio is decoded once, and a checkpoint that does not match its architecture is an error.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

from .config import DEFAULT_EMOTION_MODELS, ModelConfig, SegmentConfig
from .errors import ErrorCode, RowError

__all__ = ["Predictor", "predict_emotion", "clear_model_cache"]

_CACHE: dict[ModelConfig, Predictor] = {}
_CACHE_LOCK = threading.Lock()


class Predictor:
    """Models for one :class:`ModelConfig`, each loaded on first use and kept."""

    def __init__(self, config: ModelConfig, *, cpu_threads: int = 0) -> None:
        """``cpu_threads``: CTranslate2's threads on CPU; 0 for one per core."""
        from .threads import quiet_openmp

        quiet_openmp()  # before torch and CTranslate2 load, where they have not yet
        from .models import resolve_device

        self.config = config
        self.cpu_threads = cpu_threads
        self.device = resolve_device(config)
        self._classifier = None
        self._transcriber = None

    @property
    def classifier(self):
        if self._classifier is None:
            from .models import load_classifier

            self._classifier, _, _ = load_classifier(self.config, self.device)
        return self._classifier

    @property
    def transcriber(self):
        if self._transcriber is None:
            from .models import load_transcriber

            self._transcriber, _ = load_transcriber(
                self.config, self.device, cpu_threads=self.cpu_threads
            )
        return self._transcriber

    def predict(self, audio_path: str | None = None, text: str | None = None) -> dict:
        """The toolkit's ``{"top_label", "top_score", "scores"}`` for one clip, plus what it was
        made from: ``transcript`` (``text``, or Whisper's), ``transcript_source`` (``manifest``
        for a given ``text``, else ``whisper``; None in audio mode) and ``language``. A bad file
        raises RowError."""
        import numpy as np

        from .annotator import Annotator, ClipInput
        from .audio import decode_audio
        from .fetch import read_bytes

        cfg = self.config
        if audio_path is None and (cfg.needs_audio or not text):
            raise ValueError(
                f"mode {cfg.mode!r} needs audio_path" + ("" if cfg.needs_audio else " or text")
            )
        if audio_path is None:
            waveform = np.zeros(0, np.float32)
        else:
            waveform = decode_audio(read_bytes(audio_path)).waveform
        heard = cfg.needs_text and not text
        annotator = Annotator(
            self.classifier, self.transcriber if heard else None, language=cfg.job_language
        )
        (note,) = annotator.annotate([ClipInput(waveform, text=text or None)])
        return {
            **_result(note),
            "transcript": note.transcript,
            "transcript_source": note.transcript_source,
            "language": note.language,
        }

    def timeline(
        self,
        audio_path: str,
        *,
        segment: SegmentConfig | None = None,
        channels: str = "mix",
        text: str | None = None,
    ) -> list[dict]:
        """The emotion over time of one recording: a row per speech segment (per channel where
        ``channels`` is split), in time order, each with its place (``start_s``, ``end_s``,
        ``channel``, ``segment_index``), ``transcript`` and the toolkit's result for it. A short
        recording stays whole in ``auto`` mode; ``text`` is used only for a whole recording.
        """
        from .annotator import Annotator, ClipInput, WindowInput
        from .audio import decode_audio
        from .fetch import read_bytes
        from .segments import Segmenter
        from .windows import plan_windows

        segment = segment or SegmentConfig(mode="always")
        audio = decode_audio(read_bytes(audio_path), split_channels=channels == "split")
        clips = Segmenter(segment)(audio)
        if not clips:
            raise RowError(ErrorCode.NO_SPEECH, f"no speech found in {audio_path}")
        inputs = [
            ClipInput(c.samples(audio), text=(text or None) if c.whole else None) for c in clips
        ]
        windows = [
            WindowInput(
                audio.track(w.channel)[w.start : w.end], w.clips, spans=tuple(w.spans(clips))
            )
            for w in plan_windows(clips)
        ]
        heard = self.config.needs_text and any(clip.text is None for clip in inputs)
        annotator = Annotator(
            self.classifier, self.transcriber if heard else None, language=self.config.job_language
        )
        return [
            {
                "start_s": clip.start_s,
                "end_s": clip.end_s,
                "channel": clip.channel,
                "segment_index": clip.segment_index,
                "transcript": note.transcript,
                **_result(note),
            }
            for clip, note in zip(clips, annotator.annotate(inputs, windows), strict=True)
        ]


def _result(note) -> dict:
    """The toolkit's return value for one annotated clip; a failed one raises its RowError."""
    if note.error is not None:
        raise RowError(ErrorCode(note.error_code), note.error)
    return {"top_label": note.emotion, "top_score": note.emotion_score, "scores": note.scores}


def _model_from_config_file(path: str, language: str, mode: str) -> str:
    import fsspec

    with fsspec.open(path, "r") as f:
        table = json.load(f)
    try:
        return table[language][mode]
    except KeyError as exc:
        raise ValueError(f"{path} has no model for language {language!r}, mode {mode!r}") from exc


def predict_emotion(
    audio_path: str | None = None,
    text: str | None = None,
    model_id: str | None = None,
    mode: str = "text",
    language: str = "es",
    device: str | None = None,
    model_config_path: str | None = None,
    *,
    whisper_model: str | None = None,
    text_encoder: str | None = None,
) -> dict:
    """Classifies one clip, as the UMUTeam toolkit's ``predict_emotion`` does: same arguments,
    same defaults, same return value, ``{"top_label", "top_score", "scores"}``; models stay
    loaded between calls with the same models.

    Args:
        audio_path: the audio file (any fsspec URI). Optional in ``text`` mode.
        text: its transcript. Without it (and with a mode that reads text), Whisper transcribes.
        model_id: the emotion checkpoint: hub id, local folder or object-storage URI (the
            command line's ``--emotion-model``). Default: the published one for mode and language.
        mode: ``text`` (the toolkit's default), ``audio``, ``concat``, ``mean`` or ``multihead``.
        language: ``es`` (the toolkit's default) or ``en``: picks the published checkpoints
            and text encoder, and is forced on Whisper.
        device: ``cpu`` or ``cuda``; default: CUDA when there is a GPU.
        model_config_path: the toolkit's JSON ``{language: {mode: model id or folder}}``, read
            when ``model_id`` is not given.
        whisper_model: Whisper (size name, hub id, folder or URI); default ``large-v3-turbo``.
        text_encoder: the fusion modes' text encoder; default: BERT for the language.

    A file that cannot be used raises :class:`~speech_emotion.errors.RowError`. For the
    transcript Whisper made, use :class:`Predictor`, whose ``predict`` returns it too.
    """
    if model_id is None and model_config_path is not None:
        model_id = _model_from_config_file(model_config_path, language, mode)
    if model_id is None and language not in DEFAULT_EMOTION_MODELS:
        raise ValueError(f"language {language!r}: published models exist for en and es only")
    config = ModelConfig(
        mode=mode,
        language=language,
        emotion_model=model_id,
        text_encoder=text_encoder,
        device=device or "auto",
    )
    if whisper_model:
        config = replace(config, whisper_model=whisper_model)
    with _CACHE_LOCK:
        predictor = _CACHE.get(config)
        if predictor is None:
            predictor = _CACHE[config] = Predictor(config)
    result = predictor.predict(audio_path, text)
    return {key: result[key] for key in ("top_label", "top_score", "scores")}


def clear_model_cache() -> None:
    """Frees the models ``predict_emotion`` keeps between calls."""
    with _CACHE_LOCK:
        _CACHE.clear()
