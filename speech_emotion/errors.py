"""The closed set of per-row failures.

A stage catches exactly :class:`RowError` per row and turns it into an error row; anything else is
a bug and is allowed to raise.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ErrorCode", "RowError", "ManifestError", "ModelLoadError"]


class ErrorCode(str, Enum):
    """Stable codes for the ``error_code`` output column; analysts group by these."""

    OUTSIDE_ALLOWED_PREFIXES = "outside_allowed_prefixes"
    MISSING_OBJECT = "missing_object"
    READ_FAILED = "read_failed"
    EMPTY_FILE = "empty_file"
    UNDECODABLE = "undecodable"
    NO_AUDIO = "no_audio"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    UNSUPPORTED_LANGUAGE = "unsupported_language"


class RowError(Exception):
    """One row could not be processed; the message says why in words a person can act on."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ManifestError(ValueError):
    """The manifest as a whole is unusable; raised before any model is loaded."""


class ModelLoadError(RuntimeError):
    """A model could not be found, fetched or loaded; the message names the model."""
