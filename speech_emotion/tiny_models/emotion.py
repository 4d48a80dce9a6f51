"""Tiny random emotion checkpoints, saved exactly as the UMUTeam folders are.

The state dict is written key by key from the published layout (emotion-model.md), not from this
package's model class, so a loader that drifts from the real checkpoints fails against these too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = [
    "build_tiny_emotion_model",
    "build_tiny_text_encoder",
    "build_tiny_text_classifier",
    "write_emotion_checkpoint",
]

# Whole words plus single letters and their ## continuations: any lowercase text tokenises.
_SENTENCE = (
    "i can t believe you did that again this is the best day of my life please leave me alone "
    "meeting at three o clock happy sad angry what a surprise hello world"
)
_WORDS = _SENTENCE.split()
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocabulary() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    punctuation = list(".,!?'-")
    return _SPECIAL + sorted(set(_WORDS)) + letters + ["##" + c for c in letters] + punctuation


def _save_tokenizer(out_dir: Path) -> None:
    from transformers import BertTokenizer

    # transformers 5 builds the vocabulary from `vocab` and ignores a `vocab_file` argument,
    # which left a tokenizer of five special tokens that read every word as [UNK].
    vocab = {token: i for i, token in enumerate(_vocabulary())}
    BertTokenizer(vocab=vocab, do_lower_case=True).save_pretrained(out_dir)


def _tiny_bert_config(hidden_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(_vocabulary()),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
        # Wider than BERT's 0.02 so a random model's outputs differ visibly between inputs.
        initializer_range=0.5,
        **extra,
    )


def build_tiny_text_encoder(out_dir: str | Path, *, hidden_size: int = 16, seed: int = 0) -> Path:
    """A random tiny BERT with a WordPiece tokenizer, in a stock Hugging Face folder."""
    from transformers import BertModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    BertModel(_tiny_bert_config(hidden_size)).save_pretrained(out_dir)
    _save_tokenizer(out_dir)
    return out_dir


def build_tiny_text_classifier(
    out_dir: str | Path, *, labels: tuple[str, ...], hidden_size: int = 16, seed: int = 0
) -> Path:
    """A random tiny text-only classifier, like ``UMUTeam/roberta-emotion-en``'s folder."""
    from transformers import BertForSequenceClassification

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = _tiny_bert_config(
        hidden_size,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
    _save_tokenizer(out_dir)
    return out_dir


def _linear(state: dict, name: str, out_features: int, in_features: int) -> None:
    state[f"{name}.weight"] = torch.randn(out_features, in_features) / in_features**0.5
    state[f"{name}.bias"] = torch.randn(out_features) * 0.1


def _layernorm(state: dict, name: str, dim: int) -> None:
    state[f"{name}.weight"] = 1 + 0.1 * torch.randn(dim)
    state[f"{name}.bias"] = 0.1 * torch.randn(dim)


def _head_state(
    mode: str, hidden_size: int, projection_dim: int, num_labels: int, fusion_heads: int
) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    _linear(state, "projector", projection_dim, hidden_size)
    head_dim = 2 * projection_dim if mode == "concat" else projection_dim
    _linear(state, "classifier.dense", head_dim, head_dim)
    _layernorm(state, "classifier.layernorm", head_dim)
    _linear(state, "classifier.out_proj", num_labels, head_dim)
    if mode == "multihead":
        for h in range(fusion_heads):
            prefix = f"mult_attn_model.heads.{h}"
            _layernorm(state, f"{prefix}.norm", projection_dim)
            for name in ("Wq", "Wk", "Wv", "Wq_reverse", "Wk_reverse", "Wv_reverse"):
                _linear(state, f"{prefix}.{name}", projection_dim, projection_dim)
            _linear(state, f"{prefix}.linear_out", projection_dim, 2 * projection_dim)
        _linear(state, "mult_attn_model.proj", projection_dim, fusion_heads * projection_dim)
    return state


def build_tiny_emotion_model(
    out_dir: str | Path,
    *,
    mode: str = "concat",
    num_labels: int = 7,
    hidden_size: int = 32,
    projection_dim: int = 16,
    fusion_heads: int = 8,
    use_weighted_layer_sum: bool = False,
    seed: int = 0,
) -> Path:
    """A random tiny checkpoint for ``mode`` (concat, audio, mean, multihead) in the UMUTeam layout.

    ``projection_dim`` stands in for the published 768 and must equal the tiny text encoder's
    hidden size for fusion modes.
    """
    from transformers import Wav2Vec2BertConfig

    torch.manual_seed(seed)
    config = Wav2Vec2BertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        output_hidden_size=hidden_size,
        conv_depthwise_kernel_size=5,
        position_embeddings_type="relative_key",
        left_max_position_embeddings=16,
        right_max_position_embeddings=4,
        add_adapter=False,
        use_weighted_layer_sum=use_weighted_layer_sum,
        # Like the published config: an architecture transformers does not have.
        architectures=["Wav2Vec2BertForSpeechClassification"],
    )
    return write_emotion_checkpoint(
        out_dir,
        config,
        mode=mode,
        projection_dim=projection_dim,
        num_labels=num_labels,
        fusion_heads=fusion_heads,
        marker={"mode": mode, "seed": seed},
    )


def write_emotion_checkpoint(
    out_dir: str | Path,
    config,
    *,
    mode: str,
    projection_dim: int,
    num_labels: int = 7,
    fusion_heads: int = 8,
    marker: dict | None = None,
) -> Path:
    """A random checkpoint of ``config``'s Wav2Vec2-BERT and ``mode``'s head, in the UMUTeam
    layout, from the torch RNG as the caller seeded it. Any size: the benchmarks write the
    published one (w2v-bert-2.0, 580M parameters) with it."""
    from safetensors.torch import save_file
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.num_labels = num_labels
    encoder = Wav2Vec2BertModel(config)
    state = {f"wav2vec2_bert.{k}": v for k, v in encoder.state_dict().items()}
    state.setdefault("wav2vec2_bert.masked_spec_embed", torch.rand(config.hidden_size))
    state.update(_head_state(mode, config.hidden_size, projection_dim, num_labels, fusion_heads))
    if config.use_weighted_layer_sum:
        state["layer_weights"] = torch.randn(config.num_hidden_layers + 1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / "model.safetensors"))
    config.save_pretrained(out_dir)
    SeamlessM4TFeatureExtractor().save_pretrained(out_dir)
    if marker is not None:
        (out_dir / "speech_emotion_tiny.json").write_text(json.dumps(marker))
    return out_dir
