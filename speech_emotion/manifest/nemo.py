"""The ``nemo`` format: NeMo's JSON-lines manifests (``manifest.json``), one utterance a line.

``audio_filepath`` (relative paths from the manifest's folder, as NeMo resolves them),
``duration`` and optional ``offset`` in seconds, ``text``, and a language as ``lang`` (NeMo's
multilingual manifests) or ``language``. NeMo loads ``duration`` seconds from ``offset`` (0 when
absent) whether or not the line is a span of a longer file, and so does this job. Lines carry no
id: the id column (``--id-column``) is read where present, else ids are derived from the audio and
the span.
"""

from __future__ import annotations

import pyarrow as pa

from ..config import ManifestConfig
from ..errors import ManifestError
from .entries import Entries, seconds, text
from .files import ManifestFile

__all__ = ["claims", "read_nemo"]

AUDIO_KEY = "audio_filepath"


def claims(record: dict, config: ManifestConfig) -> bool:
    """Whether a first JSON line looks like NeMo's (and not a table naming the same column)."""
    return AUDIO_KEY in record and config.audio_column not in record


def read_nemo(file: ManifestFile, config: ManifestConfig) -> tuple[ManifestFile, pa.Table]:
    if file.kind != "json":
        raise ManifestError(f"{file.uri}: a nemo manifest is JSON lines, not {file.kind}")
    entries = Entries()
    for line, record in file.records():
        where = file.where(line)
        language = "lang" if "lang" in record else "language"
        entries.add(
            line,
            audio=text(record.get(AUDIO_KEY), where, AUDIO_KEY),
            id=text(record.get(config.id_column), where, config.id_column),
            text=text(record.get("text"), where, "text"),
            language=text(record.get(language), where, language),
            offset_s=seconds(record.get("offset"), where, "offset"),
            duration_s=seconds(record.get("duration"), where, "duration"),
        )
    return file, entries.table()
