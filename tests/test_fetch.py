"""Reading recordings: every failure is a row error naming the URI, audio outside the allowed
prefixes is refused, and reads run ahead of the decoder within a count and a byte budget."""

from __future__ import annotations

import threading
import time

import pytest

from speech_emotion import fetch
from speech_emotion.errors import ErrorCode, RowError
from speech_emotion.fetch import Prefetcher, default_allowed_prefix, within_prefixes


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
