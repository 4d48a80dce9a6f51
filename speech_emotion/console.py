"""What a person running the job sees: this job's own lines, and others' only with ``-v``.

Ray, Ray Data, transformers and the Hugging Face hub each print startup banners, warnings about
their own settings, progress bars and, from Ray's C++ core, error-level lines about its
internals; a six-row run printed 36 lines, the one that mattered last. Quiet by default: their
loggers at ERROR, workers' output kept in Ray's log files, Ray's core lines dropped from stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator

__all__ = ["configure", "quiet_ray_data", "quiet_native_stderr"]

_LIBRARY_LOGGERS = ("ray", "ray.data", "transformers", "huggingface_hub", "faster_whisper")
# Ray's C++ log lines: "[2026-12-02 02:47:01,592 E 28119 28119] core_worker.cc:2465: ...".
_RAY_CORE_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z] \d+ \d+\] ")


def configure(verbose: bool) -> None:
    """Logging for the command line: INFO with ``verbose``, else this job's warnings and its
    progress line only."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("speech_emotion.progress").setLevel(logging.INFO)
    if verbose:
        return
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Inherited by the workers of the job's own Ray; their output stays in Ray's log files.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # Ray prints each failed task that it will retry, with its whole traceback ("There are
    # infinite retries remaining"): a model that cannot load printed 100 lines before the one
    # that says why. Read by the job's own Ray when it starts; a cluster keeps its setting.
    os.environ.setdefault("RAY_enable_output_error_log_if_still_retry", "false")


def quiet_ray_data() -> None:
    """Ray Data sets up its own console handler (INFO: plans, "execution finished", a warning that
    its bars are off; ERROR: the stack of any failure, which reaches the job anyway and is
    reported there once) when first imported; its session log file keeps everything."""
    import ray.data  # noqa: F401  (configures its loggers)

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.CRITICAL)


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True) -> Iterator[None]:
    """While the block runs, drops the lines Ray's C++ core writes to this process's stderr;
    everything else written there (Python's logging, any other library) passes unchanged, in
    order. Nothing is dropped once the block ends, so a traceback always shows."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError):  # no stderr to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forward = threading.Thread(target=_forward, args=(read_end, original), daemon=True)
    forward.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last write end: the reader sees its end
        forward.join(timeout=5)
        if not forward.is_alive():  # else a child still holds the pipe: leave the thread its fd
            os.close(original)


def _forward(read_end: int, target: int) -> None:
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if not _RAY_CORE_LINE.match(line):
                    os.write(target, line + b"\n")
        if pending:
            os.write(target, pending)
