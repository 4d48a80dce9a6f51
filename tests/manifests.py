"""Manifests as the speech world writes them, for tests: JSON lines (compressed or not), NeMo's,
lhotse's recordings, supervisions and cuts, and Hugging Face Parquet shards with the audio inside.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_CODECS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}


def write_jsonl(path: Path, rows: list[dict]) -> str:
    """JSON lines at ``path``, compressed as its suffix says (.gz, .zst, .bz2)."""
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    codec = _CODECS.get(path.suffix)
    if codec is None:
        path.write_bytes(data)
    else:
        with pa.CompressedOutputStream(str(path), codec) as out:
            out.write(data)
    return str(path)


AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def hf_shard(path: Path, rows: list[dict], *, row_group_rows: int = 2) -> str:
    """A Parquet shard in the hub's layout: ``audio`` a struct ``{bytes, path}``, then the other
    columns of ``rows`` (each row's ``audio`` given as that struct's dict)."""
    columns = {"audio": pa.array([row["audio"] for row in rows], AUDIO_TYPE)}
    for name in dict.fromkeys(k for row in rows for k in row if k != "audio"):
        columns[name] = pa.array([row.get(name) for row in rows])
    pq.write_table(pa.table(columns), path, row_group_size=row_group_rows)
    return str(path)


def spoil_column(path: Path, column: str) -> None:
    """Overwrites the stored pages of ``column`` (a leaf, e.g. ``audio.bytes``) with zeros, so
    that any attempt to read them fails: what never reads them still works."""
    metadata = pq.read_metadata(path)
    data = bytearray(path.read_bytes())
    for group in range(metadata.num_row_groups):
        for index in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(index)
            if chunk.path_in_schema != column:
                continue
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            data[start : start + chunk.total_compressed_size] = bytes(chunk.total_compressed_size)
    path.write_bytes(bytes(data))


def lhotse_recording(
    id: str, sources: list[tuple[str, list[int]]], *, seconds: float, rate_hz: int = 16000
) -> dict:
    """A lhotse Recording: each source a file holding some of its channels."""
    channels = sorted(c for _, held in sources for c in held)
    return {
        "id": id,
        "sources": [{"type": "file", "channels": held, "source": path} for path, held in sources],
        "sampling_rate": rate_hz,
        "num_samples": round(seconds * rate_hz),
        "duration": seconds,
        "channel_ids": channels,
    }


def supervision(
    id: str, recording_id: str, start: float, duration: float, channel: int | list = 0, **more
) -> dict:
    """A lhotse SupervisionSegment (``text``, ``language``, ``speaker`` as given)."""
    return {
        "id": id,
        "recording_id": recording_id,
        "start": start,
        "duration": duration,
        "channel": channel,
        **more,
    }


def mono_cut(id: str, recording: dict, start: float, duration: float, supervisions=()) -> dict:
    """A lhotse MonoCut of ``recording``; its supervisions' starts count from the cut's."""
    return {
        "id": id,
        "start": start,
        "duration": duration,
        "channel": 0,
        "supervisions": list(supervisions),
        "recording": recording,
        "type": "MonoCut",
    }
