"""A compact progress line at a steady interval, the same in a terminal and in a log (``ray job
submit``, schedulers, CI): recordings done of all, rows, audio hours, rate, errors, and the time
left at the rate so far. It replaces Ray Data's progress bars and operator dumps."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

__all__ = ["Progress", "progress_line"]

logger = logging.getLogger(__name__)


def progress_line(models: Mapping[str, float], total: int, elapsed_s: float) -> str:
    """One line from the model stage's sums (``tally.Tally``) ``elapsed_s`` into the run."""
    done = models.get("recordings", 0.0)
    audio_s = models.get("audio_s", 0.0)
    line = (
        f"progress: {done:.0f}/{total} recordings, {models.get('clips', 0):.0f} rows, "
        f"{audio_s / 3600:.2f} h of audio, {audio_s / elapsed_s if elapsed_s else 0:.1f} "
        f"audio-s/s, {models.get('errors', 0):.0f} errors"
    )
    if 0 < done < total:
        left_s = (total - done) * elapsed_s / done
        line += f", about {_duration(left_s)} left"
    return line


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


class Progress:
    """Logs :func:`progress_line` every ``interval_s`` until the ``with`` block ends."""

    def __init__(
        self,
        read: Callable[[], Mapping[str, float]],
        total: int,
        interval_s: float = 30.0,
    ) -> None:
        self._read = read
        self._total = total
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._started = 0.0

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                figures = self._read()
            except Exception:  # a missed progress line must not end the run
                logger.debug("progress: could not read the stages' figures", exc_info=True)
                continue
            logger.info(progress_line(figures, self._total, time.monotonic() - self._started))
