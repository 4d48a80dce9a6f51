"""The command line and the one-file API: clear one-line errors for bad input, the toolkit's
return value for one file, models loaded once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from speech_emotion import predict_emotion
from speech_emotion.audio import decode_audio
from speech_emotion.config import SegmentConfig
from speech_emotion.emotion import EN_LABELS
from speech_emotion.predict import _CACHE, Predictor, clear_model_cache

from .audiogen import encode, tone
from .factories import speech, tiny_model_config, tiny_model_flags

TRANSCRIPT_KEYS = ("transcript", "transcript_source", "language")


def speech_emotion(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "speech_emotion.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "clip.wav"
    path.write_bytes(encode(tone(0.8, 16000, 1), 16000, "wav"))
    return path


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_a_manifest_without_an_audio_column_fails_in_one_line(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"path": "a.wav"}\n')
    result = speech_emotion("annotate", str(tmp_path / "m.jsonl"), str(tmp_path / "out"))
    assert_clean_failure(result, "m.jsonl: no 'audio' column", "--audio-column")
    assert not (tmp_path / "out").exists()


def test_an_unreachable_hub_model_is_named_before_any_work_starts(tmp_path, wav):
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": str(wav)}) + "\n")
    result = speech_emotion("annotate", str(tmp_path / "m.jsonl"), str(tmp_path / "out"))
    assert_clean_failure(result, "UMUTeam/w2v-bert-beto-concat-emotion-en", "object storage")


def test_an_invalid_setting_names_the_setting_and_value(tmp_path):
    result = speech_emotion("annotate", "m.jsonl", "out", "--batch-size", "0")
    assert_clean_failure(result, "batch_size=0 is invalid")


def test_predict_prints_the_toolkit_result_and_the_transcript_for_one_file(tiny_models, wav):
    result = speech_emotion(
        "predict",
        str(wav),
        "--text",
        "what a surprise",
        "--emotion-model",
        str(tiny_models.emotion["concat"]),
        "--text-encoder",
        str(tiny_models.text_encoder),
    )
    assert result.returncode == 0, result.stderr
    prediction = json.loads(result.stdout)
    assert set(prediction) == {"top_label", "top_score", "scores", *TRANSCRIPT_KEYS}
    assert prediction["transcript"] == "what a surprise"
    assert prediction["top_score"] == max(prediction["scores"].values())
    assert sum(prediction["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_emotion_keeps_its_models_loaded_across_calls(tiny_models, wav):
    clear_model_cache()
    kwargs = {
        "model_id": str(tiny_models.emotion["mean"]),
        "mode": "mean",
        "language": "en",
        "device": "cpu",
        "text_encoder": str(tiny_models.text_encoder),
    }
    first = predict_emotion(str(wav), "hello", **kwargs)
    (predictor,) = _CACHE.values()
    classifier = predictor.classifier
    second = predict_emotion(str(wav), "hello", **kwargs)
    assert first == second
    assert list(_CACHE.values()) == [predictor] and predictor.classifier is classifier


def test_predict_emotion_transcribes_with_whisper_when_no_text_is_given(tiny_models, wav):
    clear_model_cache()
    kwargs = {
        "model_id": str(tiny_models.emotion["concat"]),
        "mode": "concat",
        "language": "en",
        "text_encoder": str(tiny_models.text_encoder),
        "whisper_model": str(tiny_models.whisper),
    }
    predict_emotion(str(wav), "given", **kwargs)
    (predictor,) = _CACHE.values()
    assert predictor._transcriber is None  # a given text needs no Whisper
    heard = predict_emotion(str(wav), **kwargs)
    assert predictor._transcriber is not None
    # What the emotion model saw is exactly what Whisper heard in the file.
    [transcript] = predictor.transcriber.transcribe(
        [decode_audio(wav.read_bytes()).waveform], ["en"]
    )
    assert heard == predict_emotion(str(wav), transcript.text or None, **kwargs)


def test_predict_emotion_text_mode_reads_the_toolkit_model_config_file(tiny_models, tmp_path):
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"en": {"text": str(tiny_models.text_classifier)}}))
    result = predict_emotion(
        text="please leave me alone", mode="text", language="en", model_config_path=str(config)
    )
    assert set(result["scores"]) == {
        "angry",
        "disgust",
        "fear",
        "happy",
        "neutral",
        "sad",
        "surprise",
    }


def test_predict_with_segments_prints_a_timeline_of_the_recording(tiny_models, tmp_path):
    said = speech(["a00", "b01", "a02"], [1.0, 0.8, 0.5])
    path = tmp_path / "three.wav"
    path.write_bytes(said.wav())
    result = speech_emotion(
        "predict", str(path), "--segment", "always", *tiny_model_flags(tiny_models, job=False)
    )
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.strip().splitlines()
    assert header.split()[:4] == ["start_s", "end_s", "channel", "emotion"]
    assert len(lines) == 3
    for line, (_, start, end) in zip(lines, said.spans, strict=True):
        start_s, end_s, channel, emotion = line.split()[:4]
        assert float(start_s) <= start / 16000 + 0.01 and float(end_s) >= end / 16000 - 0.01
        assert channel == "mix" and emotion in EN_LABELS


def test_the_predictor_timeline_gives_each_channels_segments_in_time_order(tiny_models, tmp_path):
    call = speech(["a00", "b01", "a02"], [0.8, 0.8, 0.5], channels=[0, 1, 0])
    path = tmp_path / "call.wav"
    path.write_bytes(call.wav(8000))
    predictor = Predictor(tiny_model_config(tiny_models))
    rows = predictor.timeline(str(path), channels="split")
    assert [(r["channel"], r["segment_index"]) for r in rows] == [(0, 0), (0, 1), (1, 0)]
    assert all(r["top_label"] in r["scores"] and r["transcript"] is not None for r in rows)
    whole = predictor.timeline(str(path), segment=SegmentConfig(mode="off"))
    assert [(r["channel"], r["start_s"]) for r in whole] == [(None, 0.0)]
