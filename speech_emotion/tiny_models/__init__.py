"""Tiny, randomly initialised models in the published on-disk layouts, for tests and offline
demos."""

from __future__ import annotations

from .emotion import build_tiny_emotion_model, build_tiny_text_classifier, build_tiny_text_encoder
from .whisper import build_tiny_whisper

__all__ = [
    "build_tiny_emotion_model",
    "build_tiny_text_classifier",
    "build_tiny_text_encoder",
    "build_tiny_whisper",
]
