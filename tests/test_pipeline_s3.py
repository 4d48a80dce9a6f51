"""End to end on a real local Ray and a real S3 endpoint: a manifest in S3 with good files in
several formats, rates and channel counts and every kind of bad file comes back as one labelled
row per input, in S3."""

from __future__ import annotations

import time

import pyarrow.dataset as pads
import pytest

from speech_emotion.config import ResourceConfig
from speech_emotion.emotion import EN_LABELS, ES_LABELS
from speech_emotion.output import open_output
from speech_emotion.pipeline import run
from speech_emotion.schema import OUTPUT_SCHEMA

from .audiogen import corrupt_bytes, encode, tone
from .factories import Corpus, job_config

GOOD = {
    # id: (format, sample rate, channels, seconds)
    "wav-16k-mono": ("wav", 16000, 1, 1.0),
    "flac-44k-stereo": ("flac", 44100, 2, 1.5),
    "mp3-22k-mono": ("mp3", 22050, 1, 2.0),
    "opus-48k-stereo": ("opus", 48000, 2, 0.8),
    "m4a-44k-mono": ("m4a", 44100, 1, 1.2),
    "wav-8k-stereo": ("wav", 8000, 2, 0.6),
}
BAD = {
    "missing": "missing_object",
    "corrupt": "undecodable",
    "empty": "empty_file",
    "too-short": "too_short",
}


@pytest.fixture(scope="module")
def corpus(s3) -> Corpus:
    corpus = Corpus(s3.url("corpus1"))
    for i, (clip_id, (fmt, rate, channels, seconds)) in enumerate(GOOD.items()):
        samples = tone(seconds, rate, channels, freq_hz=220.0 * (i + 1))
        extra = {"text": "hello world"} if i == 0 else {"language": "es"} if i == 1 else {}
        corpus.add(clip_id, encode(samples, rate, fmt), path=f"clips/{clip_id}.{fmt}", **extra)
    corpus.add("missing", missing=True)
    corpus.add("corrupt", corrupt_bytes())
    corpus.add("empty", b"")
    corpus.add("too-short", encode(tone(0.05, 16000, 1), 16000, "wav"))
    return corpus


@pytest.fixture(scope="module")
def annotated(corpus, s3, tiny_models, ray_cluster):
    config = job_config(
        corpus,
        s3.url("corpus1/labels"),
        tiny_models,
        resources=ResourceConfig(batch_size=4, decode_batch_size=3, cpu_workers=2),
    )
    started = time.monotonic()
    summary = run(config)
    elapsed = time.monotonic() - started
    import fsspec

    fs = fsspec.filesystem("s3")
    table = pads.dataset(f"{s3.bucket}/corpus1/labels", filesystem=fs, format="parquet").to_table()
    return summary, {row["id"]: row for row in table.to_pylist()}, table, corpus.rows, elapsed


def test_every_manifest_row_comes_back_exactly_once(annotated):
    summary, by_id, table, rows, _ = annotated
    assert table.num_rows == len(rows) == summary.rows
    assert sorted(by_id) == sorted(row["id"] for row in rows)


def test_the_output_follows_the_schema_module(annotated):
    _, _, table, _, _ = annotated
    assert table.schema.remove_metadata() == OUTPUT_SCHEMA.remove_metadata()


@pytest.mark.parametrize(("clip_id", "code"), BAD.items())
def test_bad_files_become_error_rows_that_name_the_stage_and_reason(annotated, clip_id, code):
    _, by_id, _, _, _ = annotated
    row = by_id[clip_id]
    assert (row["status"], row["error_code"]) == ("error", code)
    assert row["error"].startswith("decode: ")
    assert row["emotion"] is None and row["scores"] is None


def test_missing_objects_name_the_uri(annotated, s3):
    _, by_id, _, _, _ = annotated
    assert s3.url("corpus1/clips/missing.wav") in by_id["missing"]["error"]


@pytest.mark.parametrize("clip_id", GOOD)
def test_good_files_are_labelled_with_probabilities_summing_to_one(annotated, clip_id):
    _, by_id, _, _, _ = annotated
    row = by_id[clip_id]
    assert row["status"] == "ok" and row["error"] is None
    scores = dict(row["scores"])
    # The row said "es" in the manifest: the Spanish models, with their labels, classify it.
    labels = ES_LABELS if row["language"] == "es" else EN_LABELS
    assert (set(scores), row["model_language"]) == (set(labels), row["language"])
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert row["emotion"] == max(scores, key=scores.get)
    assert row["emotion_score"] == pytest.approx(scores[row["emotion"]])


@pytest.mark.parametrize(("clip_id", "spec"), GOOD.items())
def test_original_format_and_duration_are_recorded(annotated, clip_id, spec):
    _, by_id, _, _, _ = annotated
    _, rate, channels, seconds = spec
    row = by_id[clip_id]
    assert (row["sample_rate_hz"], row["channels"]) == (rate, channels)
    # Lossy codecs pad a few tens of milliseconds.
    assert row["duration_s"] == pytest.approx(seconds, abs=0.08)
    assert row["end_s"] == pytest.approx(row["start_s"] + row["duration_s"])


def test_a_manifest_transcript_skips_whisper_and_others_go_through_it(annotated, tiny_models):
    _, by_id, _, _, _ = annotated
    given = by_id["wav-16k-mono"]
    assert (given["transcript"], given["transcript_source"]) == ("hello world", "manifest")
    assert given["whisper_model"] is None
    for clip_id in set(GOOD) - {"wav-16k-mono"}:
        row = by_id[clip_id]
        assert row["transcript_source"] == "whisper"
        assert row["whisper_model"] == str(tiny_models.whisper)


def test_languages_come_from_the_row_or_the_job(annotated):
    _, by_id, _, _, _ = annotated
    assert by_id["flac-44k-stereo"]["language"] == "es"
    assert by_id["mp3-22k-mono"]["language"] == "en"


def test_the_summary_counts_rows_errors_and_audio(annotated, s3):
    summary, by_id, _, _, elapsed = annotated
    assert (summary.ok, summary.rows - summary.ok) == (len(GOOD), len(BAD))
    assert summary.errors == {code: 1 for code in BAD.values()}
    expected_audio = sum(by_id[clip_id]["duration_s"] for clip_id in GOOD)
    assert summary.audio_s == pytest.approx(expected_audio)
    # The wall time is the run's own, as measured from outside, and the record says the same.
    assert 0 < summary.wall_s <= elapsed
    [record] = open_output(s3.url("corpus1/labels")).publisher.runs()
    assert (record.rows, record.recordings, record.ok) == (summary.rows, len(by_id), len(GOOD))
    assert record.audio_s == pytest.approx(expected_audio, abs=1e-3)
    assert record.wall_s == pytest.approx(summary.wall_s, abs=1e-3)
