"""Segment transcripts with a real Whisper (OpenAI Whisper base): neighbouring segments heard in
one window get their own words back, and a recording's segments, joined, read as well as
faster-whisper's own long-form transcription of it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from speech_emotion.asr import WhisperTranscriber
from speech_emotion.config import DecodeConfig, ModelConfig, SegmentConfig
from speech_emotion.features import FeatureSpec, WhisperFeatureSpec
from speech_emotion.plan import ModelPlan
from speech_emotion.schema import RECORDING_SCHEMA
from speech_emotion.stages import DecodeStage, ModelStage

from .factories import RATE_HZ, recording, speech, table, wer, words

# Two minutes of Whisper base on two cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def whisper(whisper_base) -> WhisperTranscriber:
    return WhisperTranscriber(str(whisper_base), compute_type="int8", batch_size=1, cpu_threads=2)


def test_each_clip_of_a_shared_window_gets_its_own_sentence_back(whisper):
    said = speech(["a00", "b05", "a07", "b12"], [0.9, 0.7, 1.2, 0.5])
    spans = tuple((s / RATE_HZ, e / RATE_HZ) for _, s, e in said.spans)
    (heard,) = whisper.transcribe([said.samples], ["en"], spans=[spans])
    assert len(heard.parts) == 4
    for part, text in zip(heard.parts, said.texts, strict=True):
        # Each clip's words are its own sentence's (with Whisper's own mistakes), nobody else's.
        others = [wer(other, part) for other in said.texts if other != text]
        assert wer(text, part) < 0.35 and wer(text, part) < min(others), (part, text)
    # Every word Whisper heard went to exactly one clip: none lost, none doubled at the edges.
    assert sum(len(words(part)) for part in heard.parts) == len(words(heard.text))


def stages(tiny_models, whisper_base) -> tuple[DecodeStage, ModelStage]:
    emotion = tiny_models.emotion["concat"]
    config = DecodeConfig(segment=SegmentConfig(mode="always"), channels="split")
    decode = DecodeStage(
        config,
        features=FeatureSpec.from_config((emotion / "preprocessor_config.json").read_bytes(), "m"),
        whisper_features=WhisperFeatureSpec(),
    )
    models = ModelConfig(
        emotion_model=str(emotion),
        text_encoder=str(tiny_models.text_encoder),
        whisper_model=str(whisper_base),
    )
    return decode, ModelStage(models, ModelPlan("r", needs_whisper=True), cpu_threads=2)


def test_joined_segment_transcripts_read_as_well_as_faster_whispers_long_form(
    tiny_models, whisper_base, tmp_path
):
    import ctranslate2
    from faster_whisper import WhisperModel

    recordings = {
        "interview": speech(
            ["a01", "b03", "a06", "b08", "a10", "b13"], [0.8, 1.1, 0.6, 1.5, 0.9, 0.5]
        ),
        "call": speech(
            ["a02", "b04", "a09", "b06", "a11", "b00"],
            [0.7, 1.0, 0.8, 0.6, 1.2, 0.5],
            channels=[0, 1, 0, 1, 0, 1],
        ),
    }
    rows = []
    for name, said in recordings.items():
        path = tmp_path / f"{name}.wav"
        path.write_bytes(said.wav(16000 if name == "interview" else 8000))
        rows.append(recording(name, audio=str(path)))
    decode, models = stages(tiny_models, whisper_base)
    out = pa.concat_tables([models(block) for block in decode(table(RECORDING_SCHEMA, rows))])
    assert set(out["status"].to_pylist()) == {"ok"}

    long_form = WhisperModel(str(whisper_base), compute_type="int8", cpu_threads=2)
    ctranslate2.set_random_seed(0)  # its fallback samples at higher temperatures
    ours, theirs = [], []
    for name, said in recordings.items():
        audio = decode_track(tmp_path / f"{name}.wav")
        for channel in sorted({c for c, _, _ in said.spans}):
            spoken = zip(said.spans, said.texts, strict=True)
            reference = " ".join(t for (c, _, _), t in spoken if c == channel)
            mine = [r for r in out.to_pylist() if r["id"] == name and r["channel"] == channel]
            joined = " ".join(r["transcript"] for r in sorted(mine, key=lambda r: r["start_s"]))
            segments, _ = long_form.transcribe(audio[channel], language="en", vad_filter=True)
            ours.append(wer(reference, joined))
            theirs.append(wer(reference, " ".join(s.text for s in segments)))
    print(f"mean WER: segments {np.mean(ours):.3f}, faster-whisper long-form {np.mean(theirs):.3f}")
    assert np.mean(ours) <= np.mean(theirs) + 0.03


def decode_track(path) -> list[np.ndarray]:
    from speech_emotion.audio import decode_audio

    return list(decode_audio(path.read_bytes(), split_channels=True).split or ())
