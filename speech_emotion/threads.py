"""The models' threads: torch and CTranslate2 in one process, without their pools fighting.

torch and CTranslate2 each bring their own OpenMP runtime (two copies of libgomp), and by
default each keeps its threads spinning after every parallel region, on the very cores the other
library needs next. Measured with real models on two cores (docs/benchmarks.md, *Sharing the
cores*): the one-file API spent 25-55 % more CPU for the same clips with spinning threads (about
20 % with Whisper base), and 2-4 times the wall time beside other work. Letting idle threads
sleep costs the wake-up of each parallel region, microseconds next to a model layer.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["SLEEPING_OPENMP", "quiet_openmp"]

logger = logging.getLogger(__name__)

SLEEPING_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE"}
"""The environment a process running both libraries is started with (the model actors)."""


def quiet_openmp() -> None:
    """Lets the OpenMP runtimes loaded from now on put idle threads to sleep, unless the
    environment already chose (``OMP_WAIT_POLICY``). A runtime reads it once, when its library
    loads, so this only reaches torch and CTranslate2 if neither is imported yet."""
    for name, value in SLEEPING_OPENMP.items():
        os.environ.setdefault(name, value)
    late = [module for module in ("torch", "ctranslate2") if module in sys.modules]
    if late:
        logger.debug("%s already loaded: their OpenMP threads keep spinning", ", ".join(late))
