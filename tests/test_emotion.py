"""The fusion model loads published-layout checkpoints strictly and batches without changing
anything the toolkit's one-clip-at-a-time run would give."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from speech_emotion.emotion import EN_LABELS, ES_LABELS, EmotionClassifier, load_fusion_model
from speech_emotion.errors import ModelLoadError
from speech_emotion.tiny_models.emotion import build_tiny_emotion_model

from .conftest import FUSION_MODES, PROJECTION_DIM


def clips(count: int = 6, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    rng = np.random.default_rng(seed)
    durations = [0.05, 1.3, 0.4, 2.7, 0.9, 0.21][:count]
    waves = [(0.2 * rng.standard_normal(int(16000 * d))).astype(np.float32) for d in durations]
    texts = [
        "please leave me alone",
        "",
        "what a surprise",
        "i can t believe you did that again",
        "hello",
        "the best day of my life",
    ][:count]
    return waves, texts


def classifier(tiny_models, mode: str) -> EmotionClassifier:
    if mode == "text":
        return EmotionClassifier(tiny_models.text_classifier, mode="text")
    return EmotionClassifier(
        tiny_models.emotion[mode], mode=mode, text_encoder_dir=tiny_models.text_encoder
    )


def copy_checkpoint(tiny_models, mode: str, tmp_path):
    folder = tmp_path / mode
    shutil.copytree(tiny_models.emotion[mode], folder)
    return folder, load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("mode", [*FUSION_MODES, "text"])
def test_batched_probabilities_equal_one_clip_at_a_time(tiny_models, mode):
    model = classifier(tiny_models, mode)
    waves, texts = clips()
    batched = model.classify(waves if mode != "text" else None, texts)
    one_by_one = [
        model.classify([w] if mode != "text" else None, [t])
        for w, t in zip(waves, texts, strict=True)
    ]
    alone = np.concatenate(one_by_one)
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    # Distinct clips give distinct answers, so the equality above is not vacuous.
    assert np.abs(batched - batched[0]).max() > 1e-4


def test_features_computed_clip_by_clip_pad_into_exactly_the_toolkits_batch(tiny_models):
    from transformers import SeamlessM4TFeatureExtractor

    from speech_emotion.features import (
        FEATURE_EXTRACTOR_KWARGS,
        FeatureSpec,
        audio_features,
        stack_features,
    )

    folder = tiny_models.emotion["audio"]
    extractor = SeamlessM4TFeatureExtractor.from_pretrained(folder)
    spec = FeatureSpec.from_config((folder / "preprocessor_config.json").read_bytes(), str(folder))
    assert np.array_equal(spec.mel_filters, extractor.mel_filters)
    assert np.array_equal(spec.window, extractor.window)
    rng = np.random.default_rng(1)
    # Odd and even fbank frame counts, the shortest clip the model takes, fbank in chunks with a
    # last chunk of one frame (1,025 frames), and a clip past the 160 s cut.
    samples = [16000 + 160, 16000 + 320, 5200, 560, 400 + 160 * 1024, 161 * 16000]
    waves = [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in samples]
    toolkit = extractor(waves, **FEATURE_EXTRACTOR_KWARGS)
    clips_ = [audio_features(spec, wave) for wave in waves]
    features, mask = stack_features(clips_, spec.padding_value)
    assert torch.equal(torch.from_numpy(features), toolkit["input_features"])
    assert torch.equal(torch.from_numpy(mask), toolkit["attention_mask"])
    assert [valid for _, valid in clips_] != [len(f) for f, _ in clips_]  # an odd count is masked


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (b"{not json", "unreadable"),
        (b'{"feature_extractor_type": "WhisperFeatureExtractor"}', "names WhisperFeatureExtractor"),
        (b'{"sampling_rate": 8000}', "sampling_rate 8000"),
        (b"[80, 2]", "unreadable"),
    ],
)
def test_an_unusable_preprocessor_config_is_a_load_error_naming_the_model(config, says):
    from speech_emotion.features import FeatureSpec

    with pytest.raises(ModelLoadError, match=f"'some/model'.*{says}"):
        FeatureSpec.from_config(config, "some/model")


def test_precomputed_features_give_the_same_probabilities_as_waveforms(tiny_models):
    from speech_emotion.features import audio_features

    model = classifier(tiny_models, "concat")
    waves, texts = clips()
    features = [audio_features(model.feature_spec, wave) for wave in waves]
    np.testing.assert_array_equal(
        model.classify(None, texts, features=features), model.classify(waves, texts)
    )


@pytest.mark.parametrize("mode", FUSION_MODES)
def test_probabilities_sum_to_one_over_the_forced_english_labels(tiny_models, mode):
    model = classifier(tiny_models, mode)
    waves, texts = clips()
    probabilities = model.classify(waves, texts if mode != "audio" else None)
    assert model.labels == EN_LABELS
    assert probabilities.shape == (len(waves), 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_micro_batches_of_any_size_give_the_same_probabilities(tiny_models):
    waves, texts = clips()
    small = EmotionClassifier(
        tiny_models.emotion["multihead"],
        mode="multihead",
        text_encoder_dir=tiny_models.text_encoder,
        max_batch_clips=2,
    )
    large = classifier(tiny_models, "multihead")
    np.testing.assert_allclose(
        small.classify(waves, texts), large.classify(waves, texts), atol=1e-5
    )


def test_a_six_label_checkpoint_gets_the_spanish_labels(tmp_path):
    folder = build_tiny_emotion_model(tmp_path / "es", mode="audio", num_labels=6)
    assert EmotionClassifier(folder, mode="audio").labels == ES_LABELS


def test_the_unused_head_layernorm_does_not_change_the_output(tiny_models, tmp_path):
    folder, state = copy_checkpoint(tiny_models, "audio", tmp_path)
    waves, _ = clips()
    before = EmotionClassifier(folder, mode="audio").classify(waves, None)
    state["classifier.layernorm.weight"] = torch.zeros_like(state["classifier.layernorm.weight"])
    save_file(state, str(folder / "model.safetensors"))
    after = EmotionClassifier(folder, mode="audio").classify(waves, None)
    np.testing.assert_array_equal(before, after)


def test_every_weight_is_the_checkpoints_in_fp32_and_the_unused_optional_one_is_zero(
    tiny_models, tmp_path
):
    folder, state = copy_checkpoint(tiny_models, "concat", tmp_path)
    state = {key: tensor.half() for key, tensor in state.items()}  # a checkpoint saved in fp16
    state.pop("wav2vec2_bert.masked_spec_embed", None)
    save_file(state, str(folder / "model.safetensors"))
    loaded = load_fusion_model(folder, "concat").state_dict()
    for key, tensor in state.items():
        assert loaded[key].dtype == torch.float32, key
        torch.testing.assert_close(loaded[key], tensor.float(), rtol=0, atol=0, msg=key)
    assert not loaded["wav2vec2_bert.masked_spec_embed"].any()


def test_a_missing_head_key_is_a_loud_error(tiny_models, tmp_path):
    folder, state = copy_checkpoint(tiny_models, "concat", tmp_path)
    del state["classifier.dense.bias"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"missing keys \['classifier.dense.bias'\]"):
        load_fusion_model(folder, "concat")


def test_an_unexpected_key_is_a_loud_error(tiny_models, tmp_path):
    folder, state = copy_checkpoint(tiny_models, "mean", tmp_path)
    state["classifier.extra.weight"] = torch.zeros(3)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"unexpected keys \['classifier.extra.weight'\]"):
        load_fusion_model(folder, "mean")


def test_a_missing_multihead_head_is_a_loud_error(tiny_models, tmp_path):
    folder, state = copy_checkpoint(tiny_models, "multihead", tmp_path)
    for key in [k for k in state if k.startswith("mult_attn_model.heads.7.")]:
        del state[key]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="does not match the multihead architecture"):
        load_fusion_model(folder, "multihead")


def test_asking_for_the_wrong_mode_names_the_mismatch(tiny_models):
    with pytest.raises(ModelLoadError, match="is a multihead checkpoint"):
        load_fusion_model(tiny_models.emotion["multihead"], "concat")
    with pytest.raises(ModelLoadError, match="head takes 32-d input, but mode 'audio'"):
        load_fusion_model(tiny_models.emotion["concat"], "audio")


def test_a_folder_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "wav2vec2-bert"}')
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        load_fusion_model(tmp_path, "concat")


def test_model_bin_overrides_the_safetensors_weights(tiny_models, tmp_path):
    folder, state = copy_checkpoint(tiny_models, "audio", tmp_path)
    waves, _ = clips()
    before = EmotionClassifier(folder, mode="audio").classify(waves, None)
    bias = state["classifier.out_proj.bias"]
    override = {"classifier.out_proj.bias": bias + torch.arange(len(bias), dtype=bias.dtype)}
    torch.save(override, folder / "model.bin")
    model = load_fusion_model(folder, "audio")
    torch.testing.assert_close(model.classifier.out_proj.bias, override["classifier.out_proj.bias"])
    after = EmotionClassifier(folder, mode="audio").classify(waves, None)
    assert not np.allclose(before, after)


def test_weighted_layer_sum_checkpoints_load_and_batch(tiny_models, tmp_path):
    folder = build_tiny_emotion_model(
        tmp_path / "weighted",
        mode="concat",
        projection_dim=PROJECTION_DIM,
        use_weighted_layer_sum=True,
    )
    model = EmotionClassifier(folder, mode="concat", text_encoder_dir=tiny_models.text_encoder)
    waves, texts = clips()
    alone = np.concatenate([model.classify([w], [t]) for w, t in zip(waves, texts, strict=True)])
    np.testing.assert_allclose(model.classify(waves, texts), alone, atol=1e-5)


def test_a_text_encoder_of_the_wrong_width_is_refused(tiny_models, tmp_path):
    from speech_emotion.tiny_models.emotion import build_tiny_text_encoder

    wide = build_tiny_text_encoder(tmp_path / "wide", hidden_size=24)
    with pytest.raises(ModelLoadError, match="gives 24-d vectors"):
        EmotionClassifier(tiny_models.emotion["concat"], mode="concat", text_encoder_dir=wide)


def test_text_padding_does_not_change_the_cls_vector(tiny_models):
    from speech_emotion.emotion import TextEncoder

    encoder = TextEncoder(tiny_models.text_encoder, device="cpu", dtype=torch.float32, source="t")
    texts = ["hello", "i can t believe you did that again this is the best day of my life"]
    together = encoder.encode(texts)
    alone = torch.cat([encoder.encode([t]) for t in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_micro_batches_keep_every_clip_once_and_respect_both_limits():
    from speech_emotion.emotion import micro_batches

    sizes = [5, 100, 1, 40, 40, 3, 250, 7]
    groups = micro_batches(sizes, max_clips=3, max_padded=100)
    assert sorted(i for group in groups for i in group) == list(range(len(sizes)))
    for group in groups:
        longest = max(sizes[i] for i in group)
        assert len(group) <= 3
        assert len(group) * longest <= 100 or len(group) == 1
    # Shortest first, so each group's clips are of similar length.
    assert [sizes[i] for i in groups[0]] == [1, 3, 5]


def test_long_clips_run_in_smaller_micro_batches_with_the_same_result(tiny_models):
    waves, texts = clips()
    model = classifier(tiny_models, "concat")
    everything = model.classify(waves, texts)
    model.max_batch_padded_s = 1.0
    np.testing.assert_allclose(model.classify(waves, texts), everything, atol=1e-5)


def test_a_text_model_with_only_pickled_weights_is_refused(tmp_path):
    from transformers import BertModel

    from speech_emotion.emotion import TextEncoder
    from speech_emotion.tiny_models.emotion import build_tiny_text_encoder

    folder = build_tiny_text_encoder(tmp_path / "bert", hidden_size=PROJECTION_DIM)
    model = BertModel.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="text encoder 'pickled' could not be loaded"):
        TextEncoder(folder, device="cpu", dtype=torch.float32, source="pickled")


def test_the_compact_relative_key_bias_equals_the_one_transformers_computes():
    from speech_emotion.emotion import TRANSFORMERS_RELATIVE_KEY_BIAS, relative_key_bias

    torch.manual_seed(0)
    module = torch.nn.Module()
    # w2v-bert-2.0's clamp (64 left, 8 right); more frames than distances, in both directions.
    module.left_max_position_embeddings, module.right_max_position_embeddings = 64, 8
    module.distance_embedding = torch.nn.Embedding(73, 16)
    module.scaling = 16**-0.5
    query, key = torch.randn(2, 3, 150, 16), torch.randn(2, 3, 170, 16)
    _, expected = TRANSFORMERS_RELATIVE_KEY_BIAS(module, query, key)
    _, got = relative_key_bias(module, query, key)
    assert got.shape == expected.shape == (2, 3, 150, 170)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_encoder_uses_the_compact_bias():
    from transformers.models.wav2vec2_bert import modeling_wav2vec2_bert as w2v_bert

    from speech_emotion.emotion import relative_key_bias

    assert w2v_bert._apply_relative_key_position_encoding is relative_key_bias


def test_the_tiny_text_encoder_reads_words_not_unknown_tokens(tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.text_encoder)
    assert tokenizer.tokenize("Please leave me alone") == ["please", "leave", "me", "alone"]


def test_int8_precision_quantises_the_linear_layers_and_stays_near_fp32(tiny_models):
    from speech_emotion.models import load_classifier, resolve_device

    from .factories import tiny_model_config

    config = tiny_model_config(tiny_models, precision="int8", device="auto")
    int8, _, _ = load_classifier(config, resolve_device(config))
    fp32 = classifier(tiny_models, "concat")
    layers = [*int8.model.modules(), *int8._text_encoder.model.modules()]
    assert not any(isinstance(m, torch.nn.Linear) for m in layers)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in layers)
    waves, texts = clips()
    p8, p32 = int8.classify(waves, texts), fp32.classify(waves, texts)
    np.testing.assert_allclose(p8.sum(axis=1), 1.0, atol=1e-5)
    # Close, but not the same numbers: the layers really run in int8.
    assert 0 < np.abs(p8 - p32).max() < 0.1


def test_int8_is_refused_with_a_cuda_device():
    from speech_emotion.config import ModelConfig
    from speech_emotion.errors import ConfigError

    with pytest.raises(ConfigError, match="precision='int8'.*int8 is for CPU"):
        ModelConfig(precision="int8", device="cuda")
