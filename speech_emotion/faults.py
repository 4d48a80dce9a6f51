"""Faults for the tests to cause for real inside Ray workers, off unless the workers' environment
sets ``SPEECH_EMOTION_TEST_FAULTS=1`` (the test suite's Ray does). Then an audio file whose bytes
are exactly :data:`POISON`, or a clip whose transcript is exactly its text, kills the worker
handling it (``os._exit``), as a crash in a native decoder or the kernel's OOM killer would.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["POISON", "die_if_poisoned"]

POISON = b"speech-emotion test fault: kill the worker that reads this"
_ENABLED = os.environ.get("SPEECH_EMOTION_TEST_FAULTS") == "1"


def die_if_poisoned(values: Iterable[bytes | str | None]) -> None:
    if _ENABLED and any(v in (POISON, POISON.decode()) for v in values):
        os._exit(137)  # what the OOM killer's SIGKILL leaves: no cleanup, no exception
