"""From what a reader found to recordings (:data:`schema.RECORDING_SCHEMA`): every check on a
manifest's rows, once, whatever its format.

Audio paths resolved from the manifest's folder; spans checked (an offset >= 0, a duration > 0)
and placed (``start_s``, ``end_s``); ids given, or derived from the audio and the span; blank
text and languages null; languages as lower-case codes (a language's English name, as lhotse
recipes write it, as its Whisper code).
"""

from __future__ import annotations

import hashlib
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ManifestError
from ..schema import RECORDING_SCHEMA
from .files import ManifestFile

__all__ = ["normalise", "derive_id"]


def derive_id(
    audio_uri: str,
    start_s: float = 0.0,
    end_s: float | None = None,
    channel: int | None = None,
) -> str:
    """Stable across runs for the same audio and span, so re-runs and joins line up. A whole
    file's is the hash of its URI alone."""
    key = audio_uri
    if start_s or end_s is not None:
        key += f"#t={start_s!r},{'' if end_s is None else repr(end_s)}"
    if channel is not None:
        key += f"&channel={channel}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _blank_to_null(column: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _first(file: ManifestFile, entries: pa.Table, bad: pa.Array, problem: str) -> None:
    """A ManifestError naming how many rows have ``problem``, and where the first is."""
    count = pc.sum(bad.fill_null(False)).as_py() or 0
    if count:
        index = pc.index(bad.fill_null(False), True).as_py()
        line = entries["line"][index].as_py()
        raise ManifestError(f"{file.where(line)}: {problem} ({count} rows like it)")


def _check_spans(file: ManifestFile, entries: pa.Table) -> None:
    offset, duration = entries["offset_s"], entries["duration_s"]
    _first(file, entries, pc.less(offset, 0), "a span cannot start before the file (offset < 0)")
    _first(file, entries, pc.less_equal(duration, 0), "a span must last longer than 0 s")
    for name in ("channel", "file_channel"):
        _first(file, entries, pc.less(entries[name], 0), f"{name} cannot be negative")


def normalise(file: ManifestFile, entries: pa.Table) -> pa.Table:
    """A reader's entries of ``file`` as recordings, or a ManifestError naming the line."""
    audio = _blank_to_null(entries["audio"].combine_chunks())
    blank = pc.is_null(audio)
    if pc.any(blank).as_py():
        count = pc.sum(blank).as_py()
        line = entries["line"][pc.index(blank, True).as_py()].as_py()
        raise ManifestError(
            f"{file.uri}: {count} rows have no audio path (first at "
            f"{file.where(line).rsplit(': ', 1)[1]})"
        )
    _check_spans(file, entries)
    uris = [file.resolve(value) for value in audio.to_pylist()]
    starts = entries["offset_s"].fill_null(0.0).to_pylist()
    durations = entries["duration_s"].to_pylist()
    # Rounded to the nanosecond: an offset plus a duration carries float noise (0.1 + 0.2).
    ends = [None if d is None else round(s + d, 9) for s, d in zip(starts, durations, strict=True)]
    channels = entries["channel"].to_pylist()
    given = _blank_to_null(entries["id"].combine_chunks()).to_pylist()
    ids = [
        i if i is not None else derive_id(uri, s, e, c)
        for i, uri, s, e, c in zip(given, uris, starts, ends, channels, strict=True)
    ]
    n = entries.num_rows
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "audio": pa.array(uris, pa.string()),
            "text": _blank_to_null(entries["text"].combine_chunks()),
            "language": _languages(_blank_to_null(entries["language"].combine_chunks())),
            "start_s": pa.array(starts, pa.float64()),
            "end_s": pa.array(ends, pa.float64()),
            "attempt": pa.array([1] * n, pa.int32()),
            "channel": entries["channel"],
            "file_channel": entries["file_channel"],
            "speaker": _blank_to_null(entries["speaker"].combine_chunks()),
        },
        schema=RECORDING_SCHEMA,
    )


def _languages(column: pa.Array) -> pa.Array:
    # A BCP 47 tag's region ("en-US", "es_ES") does not change the models: its language does.
    lower = pc.replace_substring_regex(
        pc.utf8_lower(column), r"^([a-z]{2,3})[-_][a-z0-9-_]+$", r"\1"
    )
    named = [v for v in pc.unique(lower).to_pylist() if v is not None and len(v) > 3]
    if not named:
        return lower
    codes = _language_codes()
    mapping = {name: codes[name] for name in named if name in codes}
    if not mapping:
        return lower
    return pa.array([mapping.get(v, v) for v in lower.to_pylist()], pa.string())


@cache
def _language_codes() -> dict[str, str]:
    """Language name (english, castilian, ...) -> Whisper's code; Whisper's own table."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    return dict(TO_LANGUAGE_CODE)
