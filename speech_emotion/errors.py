"""The closed set of per-row failures, and the failures that end a run with one clear line.

A stage catches exactly :class:`RowError` per row and turns it into an error row; anything else is
a bug and is allowed to raise. A :class:`KnownError` ends the run: the command line prints its
message in one line and exits 2, however deeply Ray wrapped it on its way to the driver.
"""

from __future__ import annotations

import re
from enum import Enum

__all__ = [
    "ErrorCode",
    "SETTINGS_ERRORS",
    "RowError",
    "KnownError",
    "ConfigError",
    "ManifestError",
    "ModelLoadError",
    "known_failure",
]


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
    NO_SPEECH = "no_speech"
    SPAN_OUTSIDE_AUDIO = "span_outside_audio"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    UNCERTAIN_LANGUAGE = "uncertain_language"
    OUT_OF_MEMORY = "out_of_memory"
    WORKER_CRASHED = "worker_crashed"


# Failures a person fixes in the job's settings or the manifest (an allowed prefix, a language
# code, a span the file does not hold), not in the recording: they never use up a recording's
# attempts.
SETTINGS_ERRORS = frozenset(
    {
        ErrorCode.OUTSIDE_ALLOWED_PREFIXES,
        ErrorCode.UNSUPPORTED_LANGUAGE,
        ErrorCode.UNCERTAIN_LANGUAGE,
        ErrorCode.SPAN_OUTSIDE_AUDIO,
    }
)


class RowError(Exception):
    """One row could not be processed; the message says why in words a person can act on."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def reason(self, stage: str) -> str:
        """The ``error`` column's text: the stage that failed, then why."""
        return f"{stage}: {self.message}"


class KnownError(Exception):
    """A failure the user can fix (a setting, the manifest, a model), not a bug."""


class ConfigError(KnownError, ValueError):
    """A setting is invalid; the message names the setting and the bad value."""


class ManifestError(KnownError, ValueError):
    """The manifest as a whole is unusable; raised before any model is loaded."""


class ModelLoadError(KnownError, RuntimeError):
    """A model could not be found, fetched or loaded; the message names the model."""


def _known_names() -> set[str]:
    found, todo = set(), [KnownError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


# Ray keeps only the text of an exception raised in an actor's __init__ (a checkpoint that does
# not fit the mode is found on the GPU node), so a known failure is also found by its qualified
# name in that text; the names come from the class tree, never from a list kept by hand.
_NAMED_IN_TEXT = re.compile(rf"{re.escape(__name__)}\.(\w+): (.+)")


def known_failure(exc: BaseException) -> str | None:
    """The message of a known failure, however deeply Ray wrapped it; None for anything else."""
    names = _known_names()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KnownError):
            return str(current)
        found = [m for name, m in _NAMED_IN_TEXT.findall(str(current)) if name in names]
        if found:
            return found[-1]
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return None
