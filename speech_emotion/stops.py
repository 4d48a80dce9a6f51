"""Clean stops: SIGTERM (``ray job stop``, Kubernetes) and SIGINT (Ctrl-C) end a run promptly,
uncommitted, releasing what it holds on the way out; the same command resumes it.

``ray job stop`` sends SIGKILL 3 s after SIGTERM (``RAY_JOB_STOP_WAIT_TIME_S``), so what runs on
the way out is short: the lease is released first, Ray is shut down last.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["Stopped", "reclaim_signals", "stopped_by_signals"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The handler of the innermost stopped_by_signals block, for reclaim_signals.
_active: list[Callable[[int, object], None]] = []


class Stopped(Exception):
    """The run was asked to stop by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Stopped` in the main thread; a second
    signal while stopping has its default effect (a hard stop)."""

    def stop(signum: int, frame: object) -> None:
        for s in _SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in _SIGNALS}
    _active.append(stop)
    try:
        yield
    finally:
        _active.remove(stop)
        for s, handler in previous.items():
            signal.signal(s, handler)


def reclaim_signals() -> None:
    """``ray.init`` replaces the SIGTERM handler (with ``sys.exit(15)``, and its C++ core with a
    stack dump and abort): put this module's back, inside a :func:`stopped_by_signals` block."""
    if _active and threading.current_thread() is threading.main_thread():
        for s in _SIGNALS:
            signal.signal(s, _active[-1])
