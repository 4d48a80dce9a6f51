"""The stages, called directly (no Ray): one row per clip out of the decode stage, the same rows in
the same order out of the model stage, failures carried along."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from speech_emotion import stages
from speech_emotion.clips import Clip
from speech_emotion.config import DecodeConfig, SegmentConfig
from speech_emotion.features import FeatureSpec, WhisperFeatureSpec
from speech_emotion.plan import ModelPlan, PlannedSet
from speech_emotion.schema import DECODED_SCHEMA, OUTPUT_SCHEMA, RECORDING_SCHEMA
from speech_emotion.stages import DecodeStage, ModelStage

from .factories import FakeClassifier, FakeTranscriber, recording, speech, tiny_model_config, wav
from .factories import table as table_of


def recordings(tmp_path, specs: list[tuple[str, float | None, str | None, str | None]]) -> pa.Table:
    """specs: (id, seconds or None for a missing file, text, language)."""
    rows = []
    for clip_id, seconds, text, language in specs:
        path = tmp_path / f"{clip_id}.wav"
        if seconds is not None:
            path.write_bytes(wav(seconds))
        rows.append(recording(clip_id, audio=str(path), text=text, language=language))
    return table_of(RECORDING_SCHEMA, rows)


def decode(stage: DecodeStage, batch: pa.Table) -> pa.Table:
    """All the windows the decode stage yields for one batch, as one table."""
    return pa.concat_tables(stage(batch))


def clips_of(windows: pa.Table) -> pa.Table:
    """The clips in decoded windows, in order."""
    return pa.Table.from_struct_array(windows["clips"].combine_chunks().flatten())


def lengths(column) -> list[int]:
    return [len(v) for v in column.to_pylist()]


def model_stage(
    tiny_models, *, needs_whisper: bool | None = None, mode: str = "concat", **models
) -> ModelStage:
    """A model stage with the tiny models; the job language's are loaded, as a job loads them."""
    config = tiny_model_config(tiny_models, mode, **models)
    needs_whisper = config.needs_text if needs_whisper is None else needs_whisper
    sets = {language: PlannedSet(chosen) for language, chosen in config.model_sets.items()}
    return ModelStage(config, ModelPlan(run_id="test-run", needs_whisper=needs_whisper, sets=sets))


def whisper_spec(tiny_models) -> WhisperFeatureSpec:
    config = (tiny_models.whisper / "preprocessor_config.json").read_bytes()
    return WhisperFeatureSpec.from_config(config, str(tiny_models.whisper))


def features(tiny_models, mode: str = "concat") -> FeatureSpec:
    folder = tiny_models.emotion[mode]
    return FeatureSpec.from_config((folder / "preprocessor_config.json").read_bytes(), str(folder))


def test_decode_keeps_rows_in_order_and_marks_failures(tmp_path):
    table = recordings(
        tmp_path,
        [
            ("a", 0.5, None, None),
            ("gone", None, None, None),
            ("b", 0.05, None, None),
            ("c", 1.0, None, None),
        ],
    )
    windows = decode(DecodeStage(DecodeConfig(min_duration_s=0.1), packing=False), table)
    assert windows.schema == DECODED_SCHEMA
    out = clips_of(windows)
    assert out["id"].to_pylist() == ["a", "gone", "b", "c"]
    assert out["error_code"].to_pylist() == [None, "missing_object", "too_short", None]
    # Without the emotion model's features the clips' samples go on; Whisper hears the windows.
    assert lengths(out["waveform"]) == lengths(windows["waveform"]) == [8000, 0, 0, 16000]
    # A clip too short for the model still reports what it is.
    assert out["duration_s"].to_pylist()[2] == pytest.approx(0.05)


def test_a_whole_file_is_one_clip_and_a_failed_recording_one_row_without_a_clip(tmp_path):
    table = recordings(tmp_path, [("a", 0.5, None, None), ("gone", None, None, None)])
    whole, failed = clips_of(decode(DecodeStage(DecodeConfig(), packing=False), table)).to_pylist()
    assert (whole["channel"], whole["segment_index"], whole["segment_count"]) == (None, 0, 1)
    assert (whole["start_s"], whole["end_s"], whole["duration_s"]) == (0.0, 0.5, 0.5)
    assert whole["recording_duration_s"] == 0.5
    assert (failed["channel"], failed["segment_index"], failed["segment_count"]) == (None,) * 3
    assert (failed["start_s"], failed["end_s"], failed["duration_s"]) == (0.0, None, None)


def halves(audio) -> list[Clip]:
    """A clipper that cuts every recording in two."""
    mid = len(audio.waveform) // 2
    end = len(audio.waveform)
    return [
        Clip(0, mid, 0.0, mid / 16000, segment_index=0, segment_count=2, whole=False),
        Clip(mid, end, mid / 16000, end / 16000, segment_index=1, segment_count=2, whole=False),
    ]


def test_a_clipper_makes_one_row_per_clip_each_with_its_own_samples_and_features(
    tiny_models, tmp_path
):
    table = recordings(
        tmp_path, [("a", 1.0, None, None), ("gone", None, None, None), ("b", 0.6, "hi", None)]
    )
    stage = DecodeStage(
        DecodeConfig(), features=features(tiny_models), clipper=halves, packing=False
    )
    windows = decode(stage, table)
    out = clips_of(windows)
    assert out["id"].to_pylist() == ["a", "a", "gone", "b", "b"]
    assert out["segment_index"].to_pylist() == [0, 1, None, 0, 1]
    assert out["start_s"].to_pylist() == [0.0, 0.5, 0.0, 0.0, 0.3]
    assert out["end_s"].to_pylist() == [0.5, 1.0, None, 0.3, 0.6]
    # Half a second is 48 fbank frames, stacked in pairs; the features are the slice's own.
    assert out["audio_feature_frames"].to_pylist() == [24, 24, None, 14, 14]
    # A recording's transcript is not its segments': Whisper hears them all, in shared windows.
    assert out["text"].to_pylist() == [None] * 5
    assert [len(w) for w in windows["clips"].to_pylist()] == [2, 1, 2]
    assert out["window_offset_s"].to_pylist() == [0.0, 0.5, 0.0, 0.0, 0.3]
    assert lengths(windows["waveform"]) == [16000, 0, 9600]
    assert lengths(out["waveform"]) == [0] * 5


def test_the_model_stage_puts_the_annotators_results_in_their_columns(tiny_models, tmp_path):
    table = recordings(
        tmp_path,
        [("given", 0.6, "hello", None), ("heard", 0.8, None, "es"), ("gone", None, None, None)],
    )
    stage = model_stage(tiny_models)
    classifier, transcriber = FakeClassifier(), FakeTranscriber()
    stage.annotator.classifiers.loaded.update(en=classifier, es=classifier)
    stage.model_columns["es"] = {"model_language": "es", "emotion_model": "the-es-model"}
    stage.annotator.transcriber = transcriber
    out = {row["id"]: row for row in stage(decode(DecodeStage(DecodeConfig()), table)).to_pylist()}
    assert transcriber.calls == [[12800]]
    heard, given, gone = out["heard"], out["given"], out["gone"]
    assert (heard["transcript"], heard["language"], heard["whisper_model"]) == (
        "heard 12800",
        "es",
        str(tiny_models.whisper),
    )
    assert (given["transcript"], given["language"], given["whisper_model"]) == ("hello", "en", None)
    [expected] = FakeClassifier().classify([np.zeros(12800)], ["heard 12800"])
    probabilities = dict(heard["scores"])
    assert list(probabilities) == list(classifier.labels)
    assert list(probabilities.values()) == pytest.approx(expected.tolist())
    assert heard["emotion"] == max(probabilities, key=probabilities.get)
    assert (heard["model_language"], heard["emotion_model"]) == ("es", "the-es-model")
    assert (given["model_language"], given["emotion_model"]) == (
        "en",
        str(tiny_models.emotion["concat"]),
    )
    assert (gone["status"], gone["error_code"], gone["scores"], gone["emotion_model"]) == (
        "error",
        "missing_object",
        None,
        None,
    )


def test_decode_splits_a_batch_into_blocks_of_bounded_audio(tmp_path, monkeypatch):
    # Two seconds of audio per block: a batch of long files must not become one huge block.
    monkeypatch.setattr(stages, "_MAX_BLOCK_SAMPLES", 2 * 16000)
    specs = [("a", 1.0), ("b", 1.5), ("gone", None), ("c", 3.0), ("d", 0.5)]
    table = recordings(tmp_path, [(clip_id, s, None, None) for clip_id, s in specs])
    blocks = list(DecodeStage(DecodeConfig(), whisper=False)(table))
    assert [clips_of(block)["id"].to_pylist() for block in blocks] == [
        ["a", "b"],
        ["gone", "c"],
        ["d"],
    ]
    assert all(block.schema == DECODED_SCHEMA for block in blocks)


def test_decode_refuses_files_longer_than_the_maximum(tmp_path):
    table = recordings(tmp_path, [("long", 3.0, None, None)])
    out = clips_of(decode(DecodeStage(DecodeConfig(max_duration_s=2.0)), table))
    assert out["error_code"].to_pylist() == ["too_long"]
    assert "longer than the 2 s limit" in out["error"][0].as_py()


def test_decode_computes_the_emotion_features_and_keeps_audio_only_for_whisper(
    tiny_models, tmp_path
):
    table = recordings(
        tmp_path,
        [("given", 0.6, "hello", None), ("heard", 0.8, None, None), ("gone", None, None, None)],
    )
    spec = features(tiny_models)
    windows = decode(DecodeStage(DecodeConfig(), features=spec, packing=False), table)
    out = clips_of(windows)
    # 58 and 78 fbank frames of 10 ms, stacked in pairs of 160 values.
    assert out["audio_feature_frames"].to_pylist() == [29, 39, None]
    assert lengths(out["audio_features"]) == [29 * 160, 39 * 160, 0]
    # Only the window Whisper will hear keeps its samples between the stages.
    assert lengths(out["waveform"]) == [0, 0, 0]
    assert lengths(windows["waveform"]) == [0, 12800, 0]
    without = decode(DecodeStage(DecodeConfig(), features=spec, whisper=False), table)
    assert lengths(without["waveform"]) == [0, 0, 0]


def test_decode_gives_whisper_its_features_for_clips_that_fit_its_window(tiny_models, tmp_path):
    table = recordings(
        tmp_path,
        [("given", 0.6, "hello", None), ("heard", 0.8, None, None), ("long", 30.5, None, None)],
    )
    whisper = whisper_spec(tiny_models)
    stage = DecodeStage(
        DecodeConfig(segment=SegmentConfig(mode="off")),
        features=features(tiny_models),
        whisper=True,
        whisper_features=whisper,
        packing=False,
    )
    out = decode(stage, table)
    # 80 frames of 10 ms (the extractor's last, from its own padding, dropped).
    assert out["whisper_feature_frames"].to_pylist() == [None, 80, None]
    assert lengths(out["whisper_features"]) == [0, whisper.feature_size * 80, 0]
    # Past the 30 s window Whisper decodes from the samples, window by window.
    assert lengths(out["waveform"]) == [0, 0, 30.5 * 16000]


def test_a_decode_worker_segments_and_computes_features_without_importing_torch_or_transformers(
    tiny_models, tmp_path
):
    # torch costs every decode worker about 150 MB and a second of start-up, transformers another
    # second and 18 MB: for nothing, since a decode worker runs no model.
    (tmp_path / "two.wav").write_bytes(speech(["a00", "b01"], [1.0, 0.5]).wav())
    table = table_of(RECORDING_SCHEMA, [recording("two", audio=str(tmp_path / "two.wav"))])
    pq.write_table(table, tmp_path / "recordings.parquet")
    folder = tiny_models.emotion["concat"]
    script = f"""
import sys
import pyarrow.parquet as pq
from speech_emotion.config import DecodeConfig, SegmentConfig
from speech_emotion.features import FeatureSpec
from speech_emotion.stages import DecodeStage

spec = FeatureSpec.from_config(open({str(folder / "preprocessor_config.json")!r}, "rb").read(), "m")
stage = DecodeStage(DecodeConfig(segment=SegmentConfig(mode="always")), features=spec)
out = list(stage(pq.read_table({str(tmp_path / "recordings.parquet")!r})))
clips = out[0]["clips"].to_pylist()
assert [c["segment_index"] for c in clips[0]] == [0, 1], clips
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_features_from_decode_give_the_labels_the_waveforms_give(tiny_models, tmp_path):
    table = recordings(
        tmp_path, [("a", 0.6, None, None), ("b", 1.3, "hi there", None), ("c", 0.45, None, None)]
    )
    stage = model_stage(tiny_models)
    from_waves = stage(decode(DecodeStage(DecodeConfig(), packing=False), table))
    ahead = DecodeStage(
        DecodeConfig(),
        features=features(tiny_models),
        whisper_features=whisper_spec(tiny_models),
        packing=False,
    )
    decoded = decode(ahead, table)
    assert lengths(decoded["waveform"]) == [0, 0, 0]  # features only
    assert lengths(clips_of(decoded)["waveform"]) == [0, 0, 0]
    from_features = stage(decoded)
    for column in ("status", "transcript", "emotion", "scores"):
        assert from_features[column].to_pylist() == from_waves[column].to_pylist()


def test_only_rows_without_a_transcript_go_through_whisper(tiny_models, tmp_path):
    table = recordings(
        tmp_path,
        [
            ("given", 0.6, "hello world", None),
            ("heard", 0.8, None, None),
            ("also-heard", 0.4, None, "es"),
        ],
    )
    stage = model_stage(tiny_models)
    stage.annotator.transcriber = spy = FakeTranscriber()
    out = stage(decode(DecodeStage(DecodeConfig()), table))
    assert out.schema == OUTPUT_SCHEMA
    assert spy.calls == [[12800, 6400]]
    rows = {row["id"]: row for row in out.to_pylist()}
    assert rows["given"]["transcript_source"] == "manifest"
    assert (
        rows["heard"]["transcript_source"] == rows["also-heard"]["transcript_source"] == "whisper"
    )
    assert rows["also-heard"]["language"] == "es"


def test_whisper_is_not_loaded_when_every_row_has_a_transcript(tiny_models, tmp_path):
    stage = model_stage(tiny_models, needs_whisper=False)
    assert stage.annotator.transcriber is None
    table = recordings(tmp_path, [("a", 0.5, "hello", None)])
    assert stage(decode(DecodeStage(DecodeConfig()), table))["status"].to_pylist() == ["ok"]


def test_audio_mode_needs_neither_whisper_nor_text(tiny_models, tmp_path):
    stage = model_stage(tiny_models, mode="audio")
    assert stage.annotator.transcriber is None
    table = recordings(tmp_path, [("a", 0.5, None, None)])
    out = stage(decode(DecodeStage(DecodeConfig()), table))
    row = out.to_pylist()[0]
    assert (row["status"], row["transcript"], row["text_encoder"]) == ("ok", None, None)


def test_a_language_whisper_does_not_know_is_an_error_row_not_a_crash(tiny_models, tmp_path):
    table = recordings(tmp_path, [("odd", 0.5, None, "klingon"), ("fine", 0.5, None, None)])
    out = model_stage(tiny_models)(decode(DecodeStage(DecodeConfig()), table)).to_pylist()
    assert out[0]["error_code"] == "unsupported_language"
    assert out[0]["error"].startswith("transcribe: language 'klingon'")
    assert out[1]["status"] == "ok"


def test_decode_failures_pass_through_the_model_stage_untouched(tiny_models, tmp_path):
    table = recordings(tmp_path, [("gone", None, None, None)])
    row = model_stage(tiny_models)(decode(DecodeStage(DecodeConfig()), table)).to_pylist()[0]
    assert (row["status"], row["error_code"], row["run_id"]) == (
        "error",
        "missing_object",
        "test-run",
    )
    assert row["emotion_model"] is None
