"""speech_emotion: annotate speech corpora with transcripts and emotions, on Ray."""

from __future__ import annotations

from .config import DecodeConfig, JobConfig, ManifestConfig, ModelConfig, ResourceConfig
from .errors import ErrorCode, ManifestError, ModelLoadError, RowError
from .predict import Predictor, predict_emotion

__all__ = [
    "predict_emotion",
    "Predictor",
    "annotate",
    "JobConfig",
    "ManifestConfig",
    "DecodeConfig",
    "ModelConfig",
    "ResourceConfig",
    "ErrorCode",
    "RowError",
    "ManifestError",
    "ModelLoadError",
]


def annotate(config: JobConfig):
    """Runs an annotation job; see :func:`speech_emotion.pipeline.run`."""
    from .pipeline import run

    return run(config)
