"""Spans of files: a batch's rows of one file share its read and its decode, each row gets exactly
its span's samples (on its channel), and a span the file does not hold is an error row."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from speech_emotion import audio as audio_module
from speech_emotion import fetch
from speech_emotion.audio import decode_audio
from speech_emotion.config import DecodeConfig, ManifestConfig, SegmentConfig
from speech_emotion.errors import ErrorCode, RowError
from speech_emotion.manifest import read_manifest
from speech_emotion.spans import END_TOLERANCE_S, Piece, Span, by_file, cut, plan_pieces
from speech_emotion.stages import DecodeStage

from .audiogen import encode, pcm16
from .factories import RATE_HZ, speech
from .manifests import hf_shard, lhotse_recording, mono_cut, supervision, write_jsonl
from .test_stages import clips_of, decode

# -- which pieces a batch decodes ----------------------------------------------------------------


def pieces_of(rows, spans, **options) -> list[tuple[float, float | None, bool, tuple]]:
    options = {"split_channels": False, "longest_s": 60.0, **options}
    return [(p.start_s, p.end_s, p.split, p.rows) for p in plan_pieces("f", rows, spans, **options)]


def test_a_files_rows_are_in_the_order_it_first_appears():
    assert by_file(["b", "a", "b", "c", "a"]) == {"b": [0, 2], "a": [1, 4], "c": [3]}


def test_spans_close_together_are_one_piece_within_the_gap_and_the_length_limit():
    spans = [Span(50.0, 52.0), Span(1.0, 3.0), Span(2.0, 4.0), Span(8.0, 9.0), Span(54.0, 66.0)]
    assert pieces_of(range(5), spans) == [
        # 4 s to 8 s is within the 5 s gap; 9 s to 50 s is not.
        (1.0, 9.0, False, (1, 2, 3)),
        # 52 s to 54 s is within the gap too.
        (50.0, 66.0, False, (0, 4)),
    ]
    # A file the decoder cannot seek in: any gap, up to the length limit (60 s from 1 s).
    assert pieces_of(range(5), spans, max_gap_s=None) == [
        (1.0, 52.0, False, (1, 2, 3, 0)),
        (54.0, 66.0, False, (4,)),
    ]


def test_a_span_to_the_end_of_its_file_shares_only_with_spans_starting_where_it_does():
    spans = [Span(10.0, 11.0), Span(10.0), Span(10.0), Span(20.0), Span()]
    assert pieces_of(range(5), spans) == [
        # Rows of the whole file share its decode.
        (0.0, None, False, (4,)),
        (10.0, 11.0, False, (0,)),
        (10.0, None, False, (1, 2)),
        (20.0, None, False, (3,)),
    ]


def test_rows_on_a_channel_are_decoded_split_and_apart_from_mixed_rows_of_the_same_file():
    spans = [Span(0.0, 1.0, file_channel=1), Span(0.0, 1.0), Span(2.0, 3.0, file_channel=0)]
    assert pieces_of(range(3), spans) == [(0.0, 3.0, True, (0, 2)), (0.0, 1.0, False, (1,))]
    # Split by the job, they are all one piece.
    assert pieces_of(range(3), spans, split_channels=True) == [(0.0, 3.0, True, (0, 1, 2))]


def test_without_sharing_each_row_is_a_piece_of_its_own():
    spans = [Span(0.0, 1.0), Span(0.5, 2.0)]
    assert pieces_of(range(2), spans, share=False) == [
        (0.0, 1.0, False, (0,)),
        (0.5, 2.0, False, (1,)),
    ]


# -- a row's samples, cut from its piece ---------------------------------------------------------


def ramp(seconds: float, channels: int = 1) -> np.ndarray:
    """[samples, channels] at 16 kHz whose every sample says where it is (and on which channel)."""
    n = round(seconds * RATE_HZ)
    t = (np.arange(n) % 30000) / 32768.0
    return np.stack([t * (1 if c == 0 else -1) for c in range(channels)], axis=1).astype(np.float32)


def exact(samples: np.ndarray) -> np.ndarray:
    """What a 16 kHz WAV of ``samples`` decodes to."""
    return pcm16(samples) / np.float32(32768.0)


def test_a_span_is_exactly_its_samples_of_the_file_and_its_length_the_manifests():
    samples = ramp(4.0, channels=2)
    piece = Piece("f", 1.0, 3.5, True, (0, 1))
    decoded = decode_audio(
        encode(samples, RATE_HZ, "wav"), start_s=1.0, end_s=3.5, split_channels=True
    )
    caller = cut(decoded, piece, Span(2.0, 2.75, file_channel=1))
    assert not isinstance(caller, RowError)
    assert caller.split is None and caller.duration_s == 0.75
    np.testing.assert_array_equal(caller.waveform, exact(samples[32000:44000, 1]))
    # A row that is the whole piece is the piece.
    assert cut(decoded, piece, Span(1.0, 3.5)) is decoded


def test_a_span_the_file_does_not_hold_is_an_error_saying_where_the_file_ends():
    decoded = decode_audio(encode(ramp(4.0), RATE_HZ, "wav"), start_s=3.0)
    piece = Piece("f", 3.0, None, False, (0, 1, 2))
    past = cut(decoded, piece, Span(3.0, 6.0))
    assert isinstance(past, RowError) and past.code == ErrorCode.SPAN_OUTSIDE_AUDIO
    assert "ends at 6.000 s, past the end of the file (4.000 s)" in past.message
    # A manifest's rounding past the end is cut at the end.
    near = cut(decoded, piece, Span(3.0, 4.0 + END_TOLERANCE_S / 2))
    assert not isinstance(near, RowError) and near.duration_s == 1.0
    assert len(near.waveform) == RATE_HZ
    channel = cut(decoded, piece, Span(3.0, 3.5, file_channel=2))
    assert isinstance(channel, RowError) and "channel 2 (0-based) of a file with 1" in str(channel)


# -- the decode stage ----------------------------------------------------------------------------


def test_a_file_with_many_spans_is_read_and_decoded_once_per_batch(tmp_path, monkeypatch):
    samples = ramp(12.0)
    (tmp_path / "long.wav").write_bytes(encode(samples, RATE_HZ, "wav"))
    rows = [
        {"audio_filepath": "long.wav", "offset": 1.0 + 2 * i, "duration": 1.5, "text": f"s{i}"}
        for i in range(5)
    ]
    batch = read_manifest(ManifestConfig(write_jsonl(tmp_path / "m.json", rows)))
    reads, decodes = [], []
    real_read, real_decode = fetch.read_bytes, audio_module.decode_audio
    monkeypatch.setattr(fetch, "read_bytes", lambda uri: reads.append(uri) or real_read(uri))
    monkeypatch.setattr(
        audio_module, "decode_audio", lambda *a, **k: decodes.append(k) or real_decode(*a, **k)
    )
    out = clips_of(decode(DecodeStage(DecodeConfig(), whisper=False), batch)).to_pylist()
    assert reads == [str(tmp_path / "long.wav")]
    assert [(k["start_s"], k["end_s"]) for k in decodes] == [(1.0, 10.5)]
    assert [(c["start_s"], c["end_s"], c["duration_s"], c["text"]) for c in out] == [
        (1.0 + 2 * i, 2.5 + 2 * i, 1.5, f"s{i}") for i in range(5)
    ]
    assert {c["recording_duration_s"] for c in out} == {1.5}
    for clip, i in zip(out, range(5), strict=True):
        first = round((1.0 + 2 * i) * RATE_HZ)
        np.testing.assert_array_equal(clip["waveform"], exact(samples[first : first + 24000, 0]))


def test_lhotse_rows_are_annotated_on_their_channel_with_their_speaker(tmp_path):
    (tmp_path / "call.flac").write_bytes(encode(ramp(6.0, channels=2), RATE_HZ, "flac"))
    write_jsonl(
        tmp_path / "recordings.jsonl.gz",
        [lhotse_recording("call", [("call.flac", [0, 1])], seconds=6.0)],
    )
    write_jsonl(
        tmp_path / "supervisions.jsonl.gz",
        [
            supervision("agent", "call", 0.5, 1.0, 0, text="hello", speaker="A"),
            supervision("caller", "call", 2.0, 1.0, 1, text="hi", speaker="B"),
            supervision("both", "call", 4.0, 1.0, [0, 1]),
            supervision("late", "call", 7.0, 1.0, 1),
        ],
    )
    batch = read_manifest(ManifestConfig(str(tmp_path)))
    for channels in ("mix", "split"):
        out = clips_of(decode(DecodeStage(DecodeConfig(channels=channels), whisper=False), batch))
        rows = {
            (r["id"], r["channel"]): (r["start_s"], r["end_s"], r["speaker"], r["text"])
            for r in out.to_pylist()
        }
        both = {("both", None)} if channels == "mix" else {("both", 0), ("both", 1)}
        assert rows.keys() == {("agent", 0), ("caller", 1), ("late", 1)} | both
        assert rows["agent", 0] == (0.5, 1.5, "A", "hello")
        assert rows["caller", 1] == (2.0, 3.0, "B", "hi")
        # Past the file's end: a row saying so, on the supervision's channel.
        late = out.filter(pc.equal(out["id"], "late")).to_pylist()[0]
        assert late["error_code"] == "span_outside_audio"
        assert "past the end of the file (6.000 s)" in late["error"]
    caller = out.filter(pc.equal(out["id"], "caller")).to_pylist()[0]
    np.testing.assert_array_equal(caller["waveform"], exact(ramp(6.0, 2)[32000:48000, 1]))


def test_a_cut_without_supervisions_is_annotated_whole(tmp_path):
    (tmp_path / "rec.wav").write_bytes(encode(ramp(5.0), RATE_HZ, "wav"))
    recording = lhotse_recording("rec", [("rec.wav", [0])], seconds=5.0)
    cuts = [mono_cut("c", recording, 1.0, 2.0)]
    batch = read_manifest(ManifestConfig(write_jsonl(tmp_path / "cuts.jsonl.zst", cuts)))
    [clip] = clips_of(decode(DecodeStage(DecodeConfig(), whisper=False), batch)).to_pylist()
    assert (clip["id"], clip["channel"], clip["start_s"], clip["end_s"]) == ("c", 0, 1.0, 3.0)


def test_a_span_longer_than_the_segmenting_threshold_is_segmented_within_it(tmp_path):
    said = speech([f"a{i:02d}" for i in range(6)], [1.0] * 6, lead_s=8.0)
    (tmp_path / "talk.wav").write_bytes(said.wav())
    total = len(said.samples) / RATE_HZ
    rows = [{"audio": "talk.wav", "offset_s": 5.0, "text": "the talk"}]
    batch = read_manifest(ManifestConfig(write_jsonl(tmp_path / "m.jsonl", rows)))
    segmenting = DecodeConfig(segment=SegmentConfig(mode="auto", over_s=10.0))
    out = clips_of(decode(DecodeStage(segmenting, whisper=False), batch)).to_pylist()
    assert [c["segment_index"] for c in out] == list(range(6))
    # Each segment is placed in the file, around its sentence; the span's text is not theirs.
    for clip, (_, start, end) in zip(out, said.spans, strict=True):
        assert clip["start_s"] * RATE_HZ <= start and end <= clip["end_s"] * RATE_HZ
        assert clip["start_s"] >= 5.0 and clip["text"] is None
    assert out[0]["recording_duration_s"] == pytest.approx(total - 5.0)


def test_a_span_longer_than_the_maximum_is_too_long_without_decoding_the_rest(tmp_path):
    (tmp_path / "a.wav").write_bytes(encode(ramp(8.0), RATE_HZ, "wav"))
    rows = [
        {"audio": "a.wav", "offset_s": 1.0, "duration_s": 5.0},
        {"audio": "a.wav", "offset_s": 6.0, "duration_s": 1.0},
    ]
    batch = read_manifest(ManifestConfig(write_jsonl(tmp_path / "m.jsonl", rows)))
    out = clips_of(decode(DecodeStage(DecodeConfig(max_duration_s=3.0), whisper=False), batch))
    assert out["error_code"].to_pylist() == ["too_long", None]
    assert out["start_s"].to_pylist() == [1.0, 6.0]


# -- Hugging Face shards -------------------------------------------------------------------------


def test_a_hub_shards_rows_are_decoded_from_their_own_bytes(tmp_path):
    (tmp_path / "beside.wav").write_bytes(encode(ramp(0.25), RATE_HZ, "wav"))
    rows = [
        {"audio": {"bytes": encode(ramp(seconds), RATE_HZ, fmt), "path": f"x.{fmt}"}, "id": fmt}
        for fmt, seconds in (("wav", 0.5), ("flac", 0.75), ("mp3", 1.0))
    ]
    rows += [
        # Saved without embedding: the path, from the shard's folder.
        {"audio": {"bytes": None, "path": "beside.wav"}, "id": "by-path"},
        {"audio": {"bytes": None, "path": None}, "id": "empty"},
        {"audio": {"bytes": encode(ramp(3.0), RATE_HZ, "wav"), "path": None}, "id": "spanned"},
    ]
    for row in rows:
        row["offset_s"] = 1.0 if row["id"] == "spanned" else None
    shard = tmp_path / "train-00000-of-00001.parquet"
    hf_shard(shard, rows, row_group_rows=2)
    batch = read_manifest(ManifestConfig(str(shard)))
    out = clips_of(decode(DecodeStage(DecodeConfig(), whisper=False), batch)).to_pylist()
    got = {c["id"]: (c["error_code"], c["duration_s"], c["start_s"]) for c in out}
    assert got["wav"] == (None, 0.5, 0.0)
    assert got["flac"] == (None, 0.75, 0.0)
    assert got["mp3"][0] is None and got["mp3"][1] == pytest.approx(1.0, abs=0.03)
    assert got["by-path"] == (None, 0.25, 0.0)
    assert got["spanned"] == (None, 2.0, 1.0)
    assert got["empty"][0] == "missing_object"
    empty = next(c for c in out if c["id"] == "empty")
    assert "row 4 of" in empty["error"] and "neither bytes nor a path" in empty["error"]
    wav = next(c for c in out if c["id"] == "wav")
    assert wav["audio"] == f"{shard}#row=0&column=audio"
    np.testing.assert_array_equal(wav["waveform"], exact(ramp(0.5)[:, 0]))
