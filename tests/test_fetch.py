"""Reading recordings: every failure is a row error naming the URI, audio outside the allowed
prefixes is refused, and reads run ahead of the decoder within a count and a byte budget."""

from __future__ import annotations

import threading
import time

import pytest

from speech_emotion import fetch
from speech_emotion.errors import ErrorCode, RowError
from speech_emotion.fetch import Prefetcher, default_allowed_prefix, within_prefixes

from .manifests import hf_shard


def test_a_missing_file_is_a_missing_object_naming_the_uri(tmp_path):
    with pytest.raises(RowError) as raised:
        fetch.read_bytes(str(tmp_path / "gone.wav"))
    assert raised.value.code == ErrorCode.MISSING_OBJECT
    assert str(tmp_path / "gone.wav") in raised.value.message


def test_a_folder_is_not_an_audio_file(tmp_path):
    with pytest.raises(RowError, match="is a folder") as raised:
        fetch.read_bytes(str(tmp_path))
    assert raised.value.code == ErrorCode.READ_FAILED


def test_audio_outside_the_allowed_prefixes_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "read_bytes", lambda uri: pytest.fail(f"read {uri}"))
    with pytest.raises(RowError, match="--allowed-prefix") as raised:
        fetch.fetch(str(tmp_path / "elsewhere" / "a.wav"), (str(tmp_path / "corpus"),))
    assert raised.value.code == ErrorCode.OUTSIDE_ALLOWED_PREFIXES


@pytest.mark.parametrize(
    ("uri", "inside"),
    [
        ("s3://corpus/clips/a.wav", True),
        ("s3://corpus/clips/../../other/a.wav", False),
        ("s3://corpus-other/a.wav", False),
        ("s3://corpus", True),
    ],
)
def test_prefixes_are_compared_after_resolving_dot_dot(uri, inside):
    assert within_prefixes(uri, ("s3://corpus/",)) is inside


def test_the_default_prefix_is_the_manifests_store_its_bucket_or_the_local_disk(tmp_path):
    assert default_allowed_prefix("s3://corpus/manifests/m.jsonl") == "s3://corpus/"
    local = default_allowed_prefix(str(tmp_path / "m.jsonl"))
    assert within_prefixes("/data/elsewhere/a.wav", [local])
    assert not within_prefixes("s3://corpus/a.wav", [local])


def files(tmp_path, sizes: list[int]) -> list[str]:
    paths = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(bytes([i % 256]) * size)
        paths.append(str(path))
    return paths


def concurrent_reads(monkeypatch) -> list[int]:
    """Records, at each read, how many reads are running at once."""
    running, seen, lock = [0], [], threading.Lock()
    real = fetch.read_bytes

    def read(uri: str) -> bytes:
        with lock:
            running[0] += 1
            seen.append(running[0])
        time.sleep(0.05)
        try:
            return real(uri)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(fetch, "read_bytes", read)
    return seen


def test_reads_come_back_in_order_with_failures_in_their_place(tmp_path):
    paths = files(tmp_path, [10, 20, 30])
    paths.insert(1, str(tmp_path / "gone.bin"))
    got = list(Prefetcher(threads=4, allowed_prefixes=None)(paths))
    assert [len(g) if isinstance(g, bytes) else g.code for g in got] == [
        10,
        ErrorCode.MISSING_OBJECT,
        20,
        30,
    ]


def test_small_files_are_read_ahead_on_several_threads(tmp_path, monkeypatch):
    seen = concurrent_reads(monkeypatch)
    list(Prefetcher(threads=4, allowed_prefixes=None)(files(tmp_path, [100] * 12)))
    assert max(seen) >= 3


def test_large_files_are_read_one_ahead_so_memory_stays_bounded(tmp_path, monkeypatch):
    # A budget of 100 kB fits one 64 kB file ahead of the consumer: the one being consumed (or
    # awaited) and one more.
    seen = concurrent_reads(monkeypatch)
    prefetch = Prefetcher(threads=4, allowed_prefixes=None, max_bytes=100_000)
    got = list(prefetch(files(tmp_path, [64_000] * 6)))
    assert all(isinstance(g, bytes) for g in got)
    assert max(seen) <= 2


# -- rows of a Parquet shard ---------------------------------------------------------------------


def shard_refs(shard: str, rows) -> list[str]:
    return [fetch.embedded_ref(shard, row, "audio") for row in rows]


def test_rows_of_a_shard_come_in_the_order_asked_and_a_row_it_lacks_says_so(tmp_path):
    rows = [{"audio": {"bytes": bytes([i]) * (i + 1), "path": None}} for i in range(7)]
    shard = hf_shard(tmp_path / "s.parquet", rows, row_group_rows=3)
    refs = [*shard_refs(shard, [5, 0, 6, 9]), str(tmp_path / "gone.wav")]
    got = list(Prefetcher(threads=2, allowed_prefixes=None)(refs))
    assert got[:3] == [b"\5" * 6, b"\0", b"\6" * 7]
    assert [g.code for g in got[3:]] == [ErrorCode.MISSING_OBJECT] * 2
    assert "has 7 rows, and no row 9" in got[3].message


def test_a_shard_outside_the_allowed_prefixes_is_refused_for_each_of_its_rows(tmp_path):
    shard = hf_shard(tmp_path / "s.parquet", [{"audio": {"bytes": b"x", "path": None}}] * 2)
    got = fetch.read_refs(shard_refs(shard, [0, 1]), (str(tmp_path / "elsewhere"),))
    assert [g.code for g in got] == [ErrorCode.OUTSIDE_ALLOWED_PREFIXES] * 2
    assert within_prefixes(shard_refs(shard, [0])[0], (str(tmp_path),))


def test_rows_of_a_shard_in_object_storage_are_read_there(s3, tmp_path):
    hf_shard(tmp_path / "s.parquet", [{"audio": {"bytes": b"RIFF", "path": "a.wav"}}])
    shard = s3.put("hub/data/train.parquet", (tmp_path / "s.parquet").read_bytes())
    assert fetch.read_refs(shard_refs(shard, [0]), ("s3://corpus/",)) == [b"RIFF"]
