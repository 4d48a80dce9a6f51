"""speech_emotion: annotate speech corpora with transcripts and emotions, on Ray."""

from __future__ import annotations

from .config import DecodeConfig, JobConfig, ManifestConfig, ModelConfig, ResourceConfig
from .errors import ErrorCode, ManifestError, ModelLoadError, RowError

__all__ = [
    "predict_emotion",
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


def predict_emotion(*args, **kwargs) -> dict:
    """The toolkit's one-file API; see :func:`speech_emotion.predict.predict_emotion`."""
    from .predict import predict_emotion as _predict_emotion

    return _predict_emotion(*args, **kwargs)


def annotate(config: JobConfig):
    """Runs an annotation job; see :func:`speech_emotion.pipeline.run`."""
    from .pipeline import run

    return run(config)
