"""The stages, called directly (no Ray): same rows out as in, in order, failures carried along."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from speech_emotion import stages
from speech_emotion.config import DecodeConfig, ModelConfig
from speech_emotion.features import FeatureSpec, WhisperFeatureSpec
from speech_emotion.schema import CLIP_SCHEMA, DECODED_SCHEMA, OUTPUT_SCHEMA
from speech_emotion.stages import DecodeStage, ModelPlan, ModelStage

from .audiogen import encode, tone


def clips_table(
    tmp_path, specs: list[tuple[str, float | None, str | None, str | None]]
) -> pa.Table:
    """specs: (id, seconds or None for a missing file, text, language)."""
    rows = []
    for clip_id, seconds, text, language in specs:
        path = tmp_path / f"{clip_id}.wav"
        if seconds is not None:
            path.write_bytes(encode(tone(seconds, 16000, 1, freq_hz=300.0), 16000, "wav"))
        rows.append(
            {
                "id": clip_id,
                "audio": str(path),
                "text": text,
                "language": language,
                "start_s": 0.0,
                "end_s": None,
                "attempt": 1,
            }
        )
    return pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)


def decode(stage: DecodeStage, table: pa.Table) -> pa.Table:
    """All the blocks the decode stage yields for one batch, as one table."""
    return pa.concat_tables(stage(table))


def model_stage(tiny_models, *, needs_whisper: bool = True, mode: str = "concat") -> ModelStage:
    config = ModelConfig(
        mode=mode,
        emotion_model=str(tiny_models.emotion[mode]),
        text_encoder=str(tiny_models.text_encoder),
        whisper_model=str(tiny_models.whisper),
    )
    return ModelStage(config, ModelPlan(run_id="test-run", needs_whisper=needs_whisper))


def whisper_spec(tiny_models) -> WhisperFeatureSpec:
    config = (tiny_models.whisper / "preprocessor_config.json").read_bytes()
    return WhisperFeatureSpec.from_config(config, str(tiny_models.whisper))


def features(tiny_models, mode: str = "concat") -> FeatureSpec:
    folder = tiny_models.emotion[mode]
    return FeatureSpec.from_config((folder / "preprocessor_config.json").read_bytes(), str(folder))


class CountingTranscriber:
    """Wraps the real transcriber and records how many clips each call got."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.languages = inner.languages

    def transcribe(self, waveforms, languages, *, features=None):
        self.calls.append(len(waveforms))
        return self.inner.transcribe(waveforms, languages, features=features)


def test_decode_keeps_rows_in_order_and_marks_failures(tmp_path):
    table = clips_table(
        tmp_path,
        [
            ("a", 0.5, None, None),
            ("gone", None, None, None),
            ("b", 0.05, None, None),
            ("c", 1.0, None, None),
        ],
    )
    out = decode(DecodeStage(DecodeConfig(min_duration_s=0.1)), table)
    assert out.schema == DECODED_SCHEMA
    assert out["id"].to_pylist() == ["a", "gone", "b", "c"]
    assert out["error_code"].to_pylist() == [None, "missing_object", "too_short", None]
    assert [len(w) for w in out["waveform"].to_pylist()] == [8000, 0, 0, 16000]
    # A clip too short for the model still reports what it is.
    assert out["duration_s"].to_pylist()[2] == pytest.approx(0.05)


def test_decode_splits_a_batch_into_blocks_of_bounded_audio(tmp_path, monkeypatch):
    # Two seconds of audio per block: a batch of long files must not become one huge block.
    monkeypatch.setattr(stages, "_MAX_BLOCK_SAMPLES", 2 * 16000)
    specs = [("a", 1.0), ("b", 1.5), ("gone", None), ("c", 3.0), ("d", 0.5)]
    table = clips_table(tmp_path, [(clip_id, s, None, None) for clip_id, s in specs])
    blocks = list(DecodeStage(DecodeConfig())(table))
    assert [block["id"].to_pylist() for block in blocks] == [["a", "b"], ["gone", "c"], ["d"]]
    assert all(block.schema == DECODED_SCHEMA for block in blocks)


def concurrent_reads(monkeypatch) -> list[int]:
    """Records, at each read, how many reads are running at once."""
    running, seen, lock = [0], [], threading.Lock()
    real = stages.read_bytes

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

    monkeypatch.setattr(stages, "read_bytes", read)
    return seen


def test_decode_reads_small_files_ahead_on_several_threads(tmp_path, monkeypatch):
    seen = concurrent_reads(monkeypatch)
    table = clips_table(tmp_path, [(f"c{i}", 0.2, None, None) for i in range(12)])
    decode(DecodeStage(DecodeConfig(fetch_threads=4)), table)
    assert max(seen) >= 3


def test_decode_reads_large_files_one_ahead_so_memory_stays_bounded(tmp_path, monkeypatch):
    # Each 2 s WAV is 64 kB; a budget of 100 kB fits one of them ahead of the decoder: the file
    # being decoded (or awaited) and one more.
    monkeypatch.setattr(stages, "_MAX_READ_AHEAD_BYTES", 100_000)
    seen = concurrent_reads(monkeypatch)
    table = clips_table(tmp_path, [(f"c{i}", 2.0, None, None) for i in range(6)])
    out = decode(DecodeStage(DecodeConfig(fetch_threads=4)), table)
    assert out["error_code"].to_pylist() == [None] * 6
    assert max(seen) <= 2


def test_decode_refuses_files_longer_than_the_maximum(tmp_path):
    table = clips_table(tmp_path, [("long", 3.0, None, None)])
    out = decode(DecodeStage(DecodeConfig(max_duration_s=2.0)), table)
    assert out["error_code"].to_pylist() == ["too_long"]
    assert "longer than the 2 s limit" in out["error"][0].as_py()


def test_decode_computes_the_emotion_features_and_keeps_audio_only_for_whisper(
    tiny_models, tmp_path
):
    table = clips_table(
        tmp_path,
        [("given", 0.6, "hello", None), ("heard", 0.8, None, None), ("gone", None, None, None)],
    )
    spec = features(tiny_models)
    out = decode(DecodeStage(DecodeConfig(), features=spec, whisper=True), table)
    assert out.schema == DECODED_SCHEMA
    # 58 and 78 fbank frames of 10 ms, stacked in pairs of 160 values.
    assert out["audio_feature_frames"].to_pylist() == [29, 39, None]
    assert [len(f) for f in out["audio_features"].to_pylist()] == [29 * 160, 39 * 160, 0]
    # Only the row Whisper will hear keeps its samples between the stages.
    assert [len(w) for w in out["waveform"].to_pylist()] == [0, 12800, 0]
    without = decode(DecodeStage(DecodeConfig(), features=spec, whisper=False), table)
    assert [len(w) for w in without["waveform"].to_pylist()] == [0, 0, 0]


def test_decode_gives_whisper_its_features_for_clips_that_fit_its_window(tiny_models, tmp_path):
    table = clips_table(
        tmp_path,
        [("given", 0.6, "hello", None), ("heard", 0.8, None, None), ("long", 30.5, None, None)],
    )
    whisper = whisper_spec(tiny_models)
    stage = DecodeStage(
        DecodeConfig(), features=features(tiny_models), whisper=True, whisper_features=whisper
    )
    out = decode(stage, table)
    # 80 frames of 10 ms (the extractor's last, from its own padding, dropped).
    assert out["whisper_feature_frames"].to_pylist() == [None, 80, None]
    mels = [len(m) for m in out["whisper_features"].to_pylist()]
    assert mels == [0, whisper.feature_size * 80, 0]
    # Past the 30 s window Whisper decodes from the samples, window by window.
    assert [len(w) for w in out["waveform"].to_pylist()] == [0, 0, 30.5 * 16000]


def test_a_decode_worker_computes_features_without_importing_torch(tiny_models, tmp_path):
    # torch costs every decode worker about 150 MB and a second of start-up, for nothing.
    table = clips_table(tmp_path, [("a", 0.6, None, None)])
    pq.write_table(table, tmp_path / "clips.parquet")
    folder = tiny_models.emotion["concat"]
    script = f"""
import sys
import pyarrow.parquet as pq
from speech_emotion.config import DecodeConfig
from speech_emotion.features import FeatureSpec, WhisperFeatureSpec
from speech_emotion.stages import DecodeStage

spec = FeatureSpec.from_config(open({str(folder / "preprocessor_config.json")!r}, "rb").read(), "m")
stage = DecodeStage(DecodeConfig(), features=spec)
out = list(stage(pq.read_table({str(tmp_path / "clips.parquet")!r})))
assert out[0]["audio_feature_frames"].to_pylist() == [29], out[0]
print(sorted(m for m in ("torch", "transformers.models") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_features_from_decode_give_the_labels_the_waveforms_give(tiny_models, tmp_path):
    table = clips_table(
        tmp_path, [("a", 0.6, None, None), ("b", 1.3, "hi there", None), ("c", 0.45, None, None)]
    )
    stage = model_stage(tiny_models)
    from_waves = stage(decode(DecodeStage(DecodeConfig()), table))
    ahead = DecodeStage(
        DecodeConfig(), features=features(tiny_models), whisper_features=whisper_spec(tiny_models)
    )
    decoded = decode(ahead, table)
    assert decoded["waveform"].to_pylist() == [[], [], []]  # features only
    from_features = stage(decoded)
    for column in ("status", "transcript", "emotion", "scores"):
        assert from_features[column].to_pylist() == from_waves[column].to_pylist()


def test_only_rows_without_a_transcript_go_through_whisper(tiny_models, tmp_path):
    table = clips_table(
        tmp_path,
        [
            ("given", 0.6, "hello world", None),
            ("heard", 0.8, None, None),
            ("also-heard", 0.4, None, "es"),
        ],
    )
    stage = model_stage(tiny_models)
    stage.transcriber = spy = CountingTranscriber(stage.transcriber)
    out = stage(decode(DecodeStage(DecodeConfig()), table))
    assert out.schema == OUTPUT_SCHEMA
    assert spy.calls == [2]
    rows = {row["id"]: row for row in out.to_pylist()}
    assert rows["given"]["transcript_source"] == "manifest"
    assert (
        rows["heard"]["transcript_source"] == rows["also-heard"]["transcript_source"] == "whisper"
    )
    assert rows["also-heard"]["language"] == "es"


def test_whisper_is_not_loaded_when_every_row_has_a_transcript(tiny_models, tmp_path):
    stage = model_stage(tiny_models, needs_whisper=False)
    assert stage.transcriber is None
    table = clips_table(tmp_path, [("a", 0.5, "hello", None)])
    assert stage(decode(DecodeStage(DecodeConfig()), table))["status"].to_pylist() == ["ok"]


def test_audio_mode_needs_neither_whisper_nor_text(tiny_models, tmp_path):
    stage = model_stage(tiny_models, mode="audio")
    assert stage.transcriber is None
    table = clips_table(tmp_path, [("a", 0.5, None, None)])
    out = stage(decode(DecodeStage(DecodeConfig()), table))
    row = out.to_pylist()[0]
    assert (row["status"], row["transcript"], row["text_encoder"]) == ("ok", None, None)


def test_a_language_whisper_does_not_know_is_an_error_row_not_a_crash(tiny_models, tmp_path):
    table = clips_table(tmp_path, [("odd", 0.5, None, "klingon"), ("fine", 0.5, None, None)])
    out = model_stage(tiny_models)(decode(DecodeStage(DecodeConfig()), table)).to_pylist()
    assert out[0]["error_code"] == "unsupported_language"
    assert out[0]["error"].startswith("transcribe: language 'klingon'")
    assert out[1]["status"] == "ok"


def test_decode_failures_pass_through_the_model_stage_untouched(tiny_models, tmp_path):
    table = clips_table(tmp_path, [("gone", None, None, None)])
    row = model_stage(tiny_models)(decode(DecodeStage(DecodeConfig()), table)).to_pylist()[0]
    assert (row["status"], row["error_code"], row["run_id"]) == (
        "error",
        "missing_object",
        "test-run",
    )
    assert row["emotion_model"] is None
