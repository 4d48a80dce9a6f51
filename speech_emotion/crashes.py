"""Poison inputs: a file that kills the worker handling it (a crash in a native decoder, the
kernel's OOM killer) must neither be retried forever, Ray's default, nor fail the run.

Ray restarts a dead actor and retries its batch without end. So each stage marks what it works
on in the run's tally actor before it starts, and clears the mark when done: a mark found still
set means a worker died holding that work. A batch found so is worked through one item at a
time, each marked on its own; an item that workers died holding alone ``max_deaths`` times is not
tried again but becomes a ``worker_crashed`` error row naming the stage. Every other item of the
batch is done as usual. A batch costs two messages to the tally actor, each waited for (a worker
that dies next must not take them with it); only a batch that already killed a worker pays two
per item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from .errors import ErrorCode, RowError

__all__ = ["CrashGuard", "Marks"]

logger = logging.getLogger(__name__)


class Marks(Protocol):
    """Where the marks live: the run's tally (:class:`tally.TallyClient`, or a plain Tally)."""

    def enter(self, keys: Sequence[str]) -> list[int]:
        """Marks ``keys`` as in hand; returns, for each, how many earlier marks were never
        cleared (workers that died holding it)."""
        ...

    def leave(self, keys: Sequence[str]) -> None: ...


class CrashGuard:
    """One stage's use of the marks (picklable: it travels to the stage's actors)."""

    def __init__(self, marks: Marks, stage: str, max_deaths: int = 2) -> None:
        self.marks = marks
        self.stage = stage
        self.max_deaths = max_deaths

    def _key(self, item: str) -> str:
        return f"{self.stage}/{item}"

    def start_batch(self, items: Sequence[str]) -> bool:
        """Marks a batch in hand; True if a worker died holding it before: then go one item at
        a time, through :meth:`start_item`."""
        (deaths,) = self.marks.enter([self._batch_key(items)])
        if deaths:
            logger.warning(
                "%s: a worker died %d time(s) on this batch of %d; isolating its items",
                self.stage,
                deaths,
                len(items),
            )
        return deaths > 0

    def end_batch(self, items: Sequence[str]) -> None:
        self.marks.leave([self._batch_key(items)])

    def _batch_key(self, items: Sequence[str]) -> str:
        return self._key("batch:" + "|".join(items))

    def start_item(self, item: str) -> RowError | None:
        """Marks one item in hand; the error to give it instead if workers died holding it
        alone ``max_deaths`` times (its mark is then cleared: nothing will hold it)."""
        (deaths,) = self.marks.enter([self._key(item)])
        if deaths < self.max_deaths:
            return None
        self.end_item(item)
        logger.error("%s: %s killed %d workers; not tried again", self.stage, item, deaths)
        return RowError(
            ErrorCode.WORKER_CRASHED,
            f"the worker died {deaths} times while this was its only work (a crash in a native "
            "library, or out of memory); not tried again in this run",
        )

    def end_item(self, item: str) -> None:
        self.marks.leave([self._key(item)])
