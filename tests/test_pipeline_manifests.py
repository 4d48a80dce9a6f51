"""Corpora as they are published, end to end on Ray in one run: a folder holding a Hugging Face
shard with the audio inside, a gzipped NeMo manifest of spans, and a lhotse recordings and
supervisions pair of a two-channel call; the rows read back with DuckDB say what was asked."""

from __future__ import annotations

import duckdb
import pytest

from speech_emotion.config import JobConfig, ManifestConfig, OutputConfig, ResourceConfig
from speech_emotion.manifest import derive_id
from speech_emotion.pipeline import run

from .audiogen import encode, tone
from .factories import RATE_HZ, tiny_model_config
from .manifests import hf_shard, lhotse_recording, supervision, write_jsonl


def clip(seconds: float, fmt: str = "wav", channels: int = 1, freq_hz: float = 300.0) -> bytes:
    return encode(tone(seconds, RATE_HZ, channels, freq_hz=freq_hz), RATE_HZ, fmt)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    (root / "audio").mkdir()
    hf_shard(
        root / "hub-train-00000-of-00001.parquet",
        [
            {
                "audio": {"bytes": clip(0.6, fmt), "path": f"u.{fmt}"},
                "id": f"hub-{fmt}",
                "text": fmt,
            }
            for fmt in ("wav", "flac", "mp3")
        ],
    )
    (root / "audio" / "lecture.wav").write_bytes(clip(12.0, freq_hz=220.0))
    write_jsonl(
        root / "nemo_manifest.json.gz",
        [
            {"audio_filepath": "audio/lecture.wav", "offset": 2.5, "duration": 1.5, "text": "one"},
            {"audio_filepath": "audio/lecture.wav", "offset": 7.0, "duration": 2.0, "text": "two"},
        ],
    )
    (root / "audio" / "call.flac").write_bytes(clip(8.0, "flac", channels=2))
    write_jsonl(
        root / "call_recordings.jsonl.gz",
        [lhotse_recording("call", [("audio/call.flac", [0, 1])], seconds=8.0)],
    )
    write_jsonl(
        root / "call_supervisions.jsonl.gz",
        [
            supervision("agent-1", "call", 0.5, 2.0, 0, text="hello", speaker="agent"),
            supervision("caller-1", "call", 3.0, 2.5, 1, speaker="caller", language="English"),
            supervision("caller-2", "call", 9.0, 1.0, 1, text="late", speaker="caller"),
        ],
    )
    return root


@pytest.fixture(scope="module")
def labels(published, tmp_path_factory, tiny_models, ray_cluster):
    output = tmp_path_factory.mktemp("labels")
    summary = run(
        JobConfig(
            ManifestConfig(str(published)),
            OutputConfig(str(output)),
            models=tiny_model_config(tiny_models),
            resources=ResourceConfig(batch_size=4, decode_batch_size=4, cpu_workers=2),
        )
    )
    rows = duckdb.sql(
        f"SELECT id, audio, status, error_code, start_s, end_s, duration_s, channel, speaker, "
        f"language, transcript, transcript_source, emotion FROM "
        f"read_parquet('{output}/run_date=*/*.parquet') ORDER BY id"
    )
    return summary, {row["id"]: row for row in _dicts(rows)}


def _dicts(relation) -> list[dict]:
    return [dict(zip(relation.columns, values, strict=True)) for values in relation.fetchall()]


def nemo_ids(published) -> list[str]:
    lecture = str(published / "audio" / "lecture.wav")
    return [derive_id(lecture, 2.5, 4.0), derive_id(lecture, 7.0, 9.0)]


def test_every_row_of_every_format_is_one_output_row(labels, published):
    summary, rows = labels
    assert sorted(rows) == sorted(
        ["hub-wav", "hub-flac", "hub-mp3", "agent-1", "caller-1", "caller-2", *nemo_ids(published)]
    )
    assert (summary.rows, summary.ok) == (8, 7)


def test_a_hub_shards_audio_is_decoded_from_the_shard(labels, published):
    _, rows = labels
    for fmt in ("wav", "flac", "mp3"):
        row = rows[f"hub-{fmt}"]
        assert (row["status"], row["transcript"], row["start_s"]) == ("ok", fmt, 0.0)
        assert row["duration_s"] == pytest.approx(0.6, abs=0.03)
        assert row["audio"].startswith(f"{published}/hub-train-00000-of-00001.parquet#row=")


def test_nemo_spans_are_placed_in_their_file(labels, published):
    _, rows = labels
    first, second = (rows[i] for i in nemo_ids(published))
    assert (first["start_s"], first["end_s"], first["transcript"]) == (2.5, 4.0, "one")
    assert (second["start_s"], second["end_s"], second["transcript"]) == (7.0, 9.0, "two")


def test_lhotse_supervisions_keep_their_channel_and_speaker(labels):
    _, rows = labels
    agent, caller, late = rows["agent-1"], rows["caller-1"], rows["caller-2"]
    assert (agent["channel"], agent["speaker"], agent["start_s"], agent["end_s"]) == (
        0,
        "agent",
        0.5,
        2.5,
    )
    assert (agent["transcript"], agent["transcript_source"]) == ("hello", "manifest")
    assert (caller["channel"], caller["speaker"], caller["language"]) == (1, "caller", "en")
    assert caller["transcript_source"] == "whisper" and caller["emotion"] is not None
    assert (late["status"], late["error_code"], late["channel"]) == (
        "error",
        "span_outside_audio",
        1,
    )
