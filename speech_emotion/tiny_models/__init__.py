"""Tiny, randomly initialised models in the published on-disk layouts, for tests and offline
demos."""

from __future__ import annotations

from .whisper import build_tiny_whisper

__all__ = ["build_tiny_whisper"]
