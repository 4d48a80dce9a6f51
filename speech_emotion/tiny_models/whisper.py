"""A tiny random Whisper in faster-whisper's folder layout, built offline in about a second.

Its text is garbage; it exists so that tests exercise the real CTranslate2 and faster-whisper code
paths (feature extraction, language detection, batched generation, long-form decoding) without
downloading anything.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

__all__ = ["build_tiny_whisper"]

# Small enough to convert and run in well under a second on CPU, large enough to have real
# attention heads. The encoder keeps Whisper's 1500 positions: faster-whisper always feeds 30 s.
_D_MODEL = 64
_LAYERS = 2
_HEADS = 2
_FFN_DIM = 128
_N_MELS = 80
_ENCODER_POSITIONS = 1500
_DECODER_POSITIONS = 448
_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>, as in every published Whisper vocabulary
_N_BYTES = 256
# Output shaping (see _shape_outputs), tuned by hand on tones and noise of 0.5-20 s with seed 0:
# with these, outputs run from a few tokens to the 224-token cap and differ from clip to clip.
_LOGIT_SCALE = 20.0
_END_BIAS = 7.0
_NEVER = -20.0
_AUDIO_GAIN = 10.0


def build_tiny_whisper(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write a random multilingual Whisper to ``out_dir`` as a faster-whisper model folder.

    The folder holds ``model.bin``, ``config.json``, ``vocabulary.json``, ``tokenizer.json`` and
    ``preprocessor_config.json``, exactly what ``faster_whisper.WhisperModel(out_dir)`` loads.
    The same seed gives the same weights.
    """
    import ctranslate2

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="tiny-whisper-hf-") as hf_dir:
        _save_hf_whisper(Path(hf_dir), seed=seed)
        converter = ctranslate2.converters.TransformersConverter(
            hf_dir, copy_files=["tokenizer.json", "preprocessor_config.json"]
        )
        converter.convert(str(out_dir), quantization="int8", force=True)
    return out_dir


def _save_hf_whisper(hf_dir: Path, *, seed: int) -> None:
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    tokenizer = _tokenizer()
    config = _model_config(tokenizer)
    # fork_rng keeps the caller's global torch RNG untouched while making the weights reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config)
    _shape_outputs(model, tokenizer)
    model.generation_config = _generation_config(tokenizer)
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    WhisperFeatureExtractor(feature_size=_N_MELS).save_pretrained(hf_dir)


def _shape_outputs(model: WhisperForConditionalGeneration, tokenizer: WhisperTokenizer) -> None:
    """Make the random model talk like a speech model, at the level tests can see.

    Left as initialised, it emits timestamp and special tokens even after <|notimestamps|>,
    never stops before the length limit and hardly listens to the audio. After this it writes
    only text tokens, stops after a number of them that depends on the audio, and different
    clips get different text. Its text is still garbage.
    """
    import torch

    with torch.no_grad():
        # Hidden unit 0 of the decoder's output becomes a constant 1, so column 0 of the (untied)
        # output projection is a per-token logit bias.
        final_norm = model.model.decoder.layer_norm
        final_norm.weight[0] = 0.0
        final_norm.bias.zero_()
        final_norm.bias[0] = 1.0
        projection = model.proj_out.weight
        projection[:, 1:] *= _LOGIT_SCALE
        projection[:, 0] = _NEVER
        projection[:_N_BYTES, 0] = 0.0
        projection[tokenizer.convert_tokens_to_ids("<|endoftext|>"), 0] = _END_BIAS
        projection[tokenizer.convert_tokens_to_ids("<|nospeech|>"), 0] = 0.0
        for layer in model.model.decoder.layers:
            layer.encoder_attn.out_proj.weight *= _AUDIO_GAIN


def _special_tokens() -> list[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return [
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in _LANGUAGE_CODES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *(f"<|{i * 0.02:.2f}|>" for i in range(_TIMESTAMPS)),
    ]


def _tokenizer() -> WhisperTokenizer:
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import AddedToken, WhisperTokenizer

    # One token per byte and no merges: every text round-trips, byte by byte. The empty-string
    # token is what makes CTranslate2 (>= 4.7) treat the model as multilingual.
    vocab = {char: i for i, char in enumerate(sorted(ByteLevel.alphabet()))}
    vocab[""] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens([AddedToken(token, special=True) for token in _special_tokens()])
    return tokenizer


def _token_id(tokenizer: WhisperTokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int):
        raise TypeError(f"{token!r} is not one token: {token_id}")
    return token_id


def _model_config(tokenizer: WhisperTokenizer) -> WhisperConfig:
    from transformers import WhisperConfig

    eot = _token_id(tokenizer, "<|endoftext|>")
    return WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=_N_MELS,
        d_model=_D_MODEL,
        encoder_layers=_LAYERS,
        decoder_layers=_LAYERS,
        encoder_attention_heads=_HEADS,
        decoder_attention_heads=_HEADS,
        encoder_ffn_dim=_FFN_DIM,
        decoder_ffn_dim=_FFN_DIM,
        max_source_positions=_ENCODER_POSITIONS,
        max_target_positions=_DECODER_POSITIONS,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=_token_id(tokenizer, "<|startoftranscript|>"),
        suppress_tokens=[],
        begin_suppress_tokens=[_token_id(tokenizer, "Ġ"), eot],
        # An output projection of its own, so that shaping the logits leaves the inputs alone.
        tie_word_embeddings=False,
    )


def _generation_config(tokenizer: WhisperTokenizer) -> GenerationConfig:
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    # Without explicit language and task ids the converter finds no language tokens and
    # CTranslate2's language detection fails.
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=_DECODER_POSITIONS,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in _LANGUAGE_CODES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        alignment_heads=[
            [layer, head] for layer in range(_LAYERS // 2, _LAYERS) for head in range(_HEADS)
        ],
        suppress_tokens=[],
        begin_suppress_tokens=[ids("Ġ"), eot],
    )
