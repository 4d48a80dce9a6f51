"""Each segment's emotion is the toolkit's for exactly that segment: its 16 kHz samples (its
channel's, with channels split) and its transcript, through the toolkit's own feature extractor
and the published model classes, one segment at a time."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from speech_emotion.audio import decode_audio
from speech_emotion.config import DecodeConfig, ModelConfig, SegmentConfig
from speech_emotion.emotion import EN_LABELS, load_fusion_model
from speech_emotion.features import FEATURE_EXTRACTOR_KWARGS, FeatureSpec, WhisperFeatureSpec
from speech_emotion.plan import ModelPlan
from speech_emotion.schema import RECORDING_SCHEMA
from speech_emotion.stages import DecodeStage, ModelStage

from .factories import recording, speech, table


def toolkit_probabilities(model_dir, encoder_dir, samples: np.ndarray, text: str) -> np.ndarray:
    """What the toolkit computes for one clip: its extractor call, BERT's [CLS], the model."""
    from transformers import AutoModel, AutoTokenizer, SeamlessM4TFeatureExtractor

    extractor = SeamlessM4TFeatureExtractor.from_pretrained(model_dir)
    inputs = extractor([samples], **FEATURE_EXTRACTOR_KWARGS)
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    bert = AutoModel.from_pretrained(encoder_dir).eval()
    model = load_fusion_model(model_dir, "concat")
    with torch.inference_mode():
        tokens = tokenizer([text], padding="max_length", truncation=True, max_length=512,
                           return_tensors="pt")  # fmt: skip
        cls = bert(**tokens).last_hidden_state[:, 0]
        logits = model(inputs["input_features"], inputs["attention_mask"], cls)
    return torch.softmax(logits, dim=-1)[0].numpy()


@pytest.mark.parametrize("channels", ["mix", "split"])
def test_segment_probabilities_are_the_toolkits_on_that_segments_samples(
    tiny_models, tmp_path, channels
):
    call = speech(["a00", "b01", "a02", "b03"], [0.8, 0.6, 1.0, 0.5], channels=[0, 1, 0, 1])
    path = tmp_path / "call.wav"
    path.write_bytes(call.wav(8000))
    emotion = tiny_models.emotion["concat"]
    decode = DecodeStage(
        DecodeConfig(segment=SegmentConfig(mode="always"), channels=channels),
        features=FeatureSpec.from_config((emotion / "preprocessor_config.json").read_bytes(), "m"),
        whisper_features=WhisperFeatureSpec.from_config(
            (tiny_models.whisper / "preprocessor_config.json").read_bytes(), "w"
        ),
    )
    models = ModelStage(
        ModelConfig(
            emotion_model=str(emotion),
            text_encoder=str(tiny_models.text_encoder),
            whisper_model=str(tiny_models.whisper),
        ),
        ModelPlan("r", needs_whisper=True),
    )
    batch = table(RECORDING_SCHEMA, [recording("call", audio=str(path))])
    rows = pa.concat_tables([models(block) for block in decode(batch)]).to_pylist()
    assert len(rows) == 4
    audio = decode_audio(path.read_bytes(), split_channels=channels == "split")
    for row in rows:
        track = audio.track(row["channel"])
        samples = track[round(row["start_s"] * 16000) : round(row["end_s"] * 16000)]
        assert row["start_s"] * 16000 == round(row["start_s"] * 16000)  # exact sample positions
        expected = toolkit_probabilities(
            emotion, tiny_models.text_encoder, samples, row["transcript"]
        )
        got = np.array([dict(row["scores"])[label] for label in EN_LABELS])
        np.testing.assert_allclose(got, expected, atol=2e-4)
