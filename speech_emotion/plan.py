"""What the driver settles about the models before any worker starts.

Every model the run needs is checked to be reachable (a run fails here, in one line, rather than
on a GPU node later), hub revisions are pinned so every actor loads the same commit, and the
models' feature settings are read so decode workers can compute features without the models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .checkpoint import shape_of
from .config import JobConfig
from .errors import ModelLoadError
from .features import FeatureSpec, WhisperFeatureSpec
from .sources import check_model_source, read_model_file, read_tensor_shapes

__all__ = ["ModelPlan", "check_checkpoint", "plan_models"]


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

    @property
    def revisions(self) -> dict[str, str | None]:
        return {
            "emotion_model_revision": self.emotion_revision,
            "text_encoder_revision": self.text_encoder_revision,
            "whisper_model_revision": self.whisper_revision,
        }


def plan_models(config: JobConfig, recordings: pa.Table, run_id: str) -> ModelPlan:
    """Checks every model the run needs is reachable and pins hub revisions."""
    models = config.models
    # A transcript in the manifest is a whole recording's: segments and split channels are heard.
    cut = config.decode.segment.mode != "off" or config.decode.channels == "split"
    untranscribed = pc.any(pc.is_null(recordings["text"])).as_py()
    needs_whisper = bool(models.needs_text and (cut or untranscribed))
    text_encoder = models.text_encoder_source
    emotion_revision = check_model_source(models.emotion_model_source)
    check_checkpoint(models.emotion_model_source, models.mode, emotion_revision)
    features = None
    if models.needs_audio:
        source = models.emotion_model_source
        raw = read_model_file(source, "preprocessor_config.json", revision=emotion_revision)
        features = FeatureSpec.from_config(raw, source)
    whisper_revision = whisper_features = None
    if needs_whisper:
        whisper_revision = check_model_source(models.whisper_model, whisper=True)
        # A model folder without the file has faster-whisper's defaults.
        whisper_config = read_model_file(
            models.whisper_model,
            "preprocessor_config.json",
            revision=whisper_revision,
            whisper=True,
            missing_ok=True,
        )
        whisper_features = WhisperFeatureSpec.from_config(whisper_config, models.whisper_model)
    return ModelPlan(
        run_id=run_id,
        needs_whisper=needs_whisper,
        features=features,
        whisper_features=whisper_features,
        emotion_revision=emotion_revision,
        text_encoder_revision=check_model_source(text_encoder) if text_encoder else None,
        whisper_revision=whisper_revision,
    )


def check_checkpoint(source: str, mode: str, revision: str | None) -> None:
    """Refuses a checkpoint that does not fit ``mode``, from its config and its weights' shapes
    (the header of model.safetensors), without loading it."""
    config = json.loads(read_model_file(source, "config.json", revision=revision))
    speech = config.get("model_type") == "wav2vec2-bert"
    if mode == "text":
        if speech:
            raise ModelLoadError(
                f"emotion model {source!r} is a speech (Wav2Vec2-BERT) checkpoint, but mode "
                "'text' needs a text classifier; check --mode against the checkpoint"
            )
        return
    shape_of(read_tensor_shapes(source, revision=revision), mode, source)
