"""What the driver settles about the models before any worker starts.

Every model the run needs is checked to be reachable (a run fails here, in one line, rather than
on a GPU node later), hub revisions are pinned so every actor loads the same commit, and the
models' feature settings are read so decode workers can compute features without the models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from .checkpoint import shape_of
from .config import JobConfig, ModelConfig
from .errors import ModelLoadError, RowError
from .features import FeatureSpec, WhisperFeatureSpec
from .languages import ModelSet
from .sources import check_model_source, read_model_file, read_tensor_shapes

__all__ = ["ModelPlan", "PlannedSet", "check_checkpoint", "languages_needed", "plan_models"]


@dataclass(frozen=True)
class PlannedSet:
    """One language's models, with the hub revisions every actor loads."""

    models: ModelSet
    emotion_revision: str | None = None
    text_encoder_revision: str | None = None
    features: FeatureSpec | None = None
    """The emotion model's feature settings, for decode workers to compute its features."""


@dataclass(frozen=True)
class ModelPlan:
    """What the driver settled before any actor started: pinned revisions, what is needed."""

    run_id: str
    needs_whisper: bool
    sets: dict[str, PlannedSet] = field(default_factory=dict)
    """The models of each language this run may meet; others' clips fall back or fail."""
    whisper_revision: str | None = None
    whisper_features: WhisperFeatureSpec | None = None
    """Whisper's log-mel settings, for decode workers to compute its features."""
    features: FeatureSpec | dict[str | None, FeatureSpec] | None = None
    """The emotion model's feature settings, for decode workers to compute its features: one
    spec for every recording where all languages' models share it, else by a recording's
    language (None: one without), and a language known only once Whisper detects it has none
    (that clip's features are computed on the model's worker)."""

    @property
    def revisions(self) -> dict[str, str | None]:
        pinned: dict[str, str | None] = {"whisper_model_revision": self.whisper_revision}
        for language, planned in self.sets.items():
            pinned[f"{language}:emotion_model_revision"] = planned.emotion_revision
            pinned[f"{language}:text_encoder_revision"] = planned.text_encoder_revision
        return pinned


def _routed(config: ModelConfig, recordings: pa.Table) -> dict[str | None, str]:
    """Each language the manifest gives (None: rows without one, in the job's language; with
    auto they are detected, so not here) and the language whose models take it; languages whose
    clips become error rows are left out."""
    given: set[str | None] = set(pc.unique(recordings["language"].drop_null()).to_pylist())
    if config.job_language is not None and pc.any(pc.is_null(recordings["language"])).as_py():
        given.add(None)
    routes, routed = config.routes, {}
    for language in given:
        try:
            chosen = routes.pick(language or config.job_language)
        except RowError:
            continue
        if chosen is not None:
            routed[language] = chosen
    return routed


def languages_needed(config: ModelConfig, recordings: pa.Table) -> set[str]:
    """The languages whose models the run may use: those the manifest's rows and the job's
    language route to, and every language with models where Whisper detects it."""
    needed = set(_routed(config, recordings).values())
    detected = config.job_language is None and pc.any(pc.is_null(recordings["language"])).as_py()
    return needed | set(config.model_sets) if detected else needed


def _features(
    config: ModelConfig, recordings: pa.Table, sets: dict[str, PlannedSet]
) -> FeatureSpec | dict[str | None, FeatureSpec] | None:
    specs = {language: planned.features for language, planned in sets.items()}
    distinct = set(specs.values())
    if not specs or None in distinct:
        return None
    if len(distinct) == 1:
        return distinct.pop()
    return {
        language: spec
        for language, chosen in _routed(config, recordings).items()
        if (spec := specs.get(chosen)) is not None
    }


def plan_models(config: JobConfig, recordings: pa.Table, run_id: str) -> ModelPlan:
    """Checks every model the run needs is reachable and pins hub revisions."""
    models = config.models
    # A transcript in the manifest is a whole recording's: segments and split channels are heard.
    cut = config.decode.segment.mode != "off" or config.decode.channels == "split"
    untranscribed = pc.any(pc.is_null(recordings["text"])).as_py()
    # With auto, a recording without a language is heard to know which models classify it.
    undetected = models.job_language is None and pc.any(pc.is_null(recordings["language"])).as_py()
    needs_whisper = bool((models.needs_text and (cut or untranscribed)) or undetected)
    sets = {
        language: _plan_set(models.model_sets[language], models.mode, models.needs_audio)
        for language in sorted(languages_needed(models, recordings))
    }
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
        sets=sets,
        features=_features(models, recordings, sets),
        whisper_revision=whisper_revision,
        whisper_features=whisper_features,
    )


def _plan_set(models: ModelSet, mode: str, needs_audio: bool) -> PlannedSet:
    source = models.emotion_model
    revision = check_model_source(source)
    check_checkpoint(source, mode, revision)
    features = None
    if needs_audio:
        raw = read_model_file(source, "preprocessor_config.json", revision=revision)
        features = FeatureSpec.from_config(raw, source)
    encoder = models.text_encoder
    return PlannedSet(
        models,
        emotion_revision=revision,
        text_encoder_revision=check_model_source(encoder) if encoder else None,
        features=features,
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
