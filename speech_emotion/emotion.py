"""The UMUTeam speech-emotion models: strict checkpoint loading and batched inference.

Model code only: nothing here knows about Ray, columns or object storage. The forward pass
reproduces the toolkit's one-clip-at-a-time probabilities for every clip, however clips are batched
(see ``../shared/docs/emotion-model.md``).
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar, cast

import numpy as np
import torch
from torch import nn

from .checkpoint import shape_of
from .config import AUDIO_MODES, TEXT_MODES
from .errors import ModelLoadError
from .features import FRAMES_PER_S, ClipFeatures, FeatureSpec, audio_features, stack_features

__all__ = [
    "EN_LABELS",
    "ES_LABELS",
    "FusionEmotionModel",
    "load_fusion_model",
    "TextEncoder",
    "EmotionClassifier",
    "quantize_linear",
]

logger = logging.getLogger(__name__)

# The toolkit forces these maps by label count; it does not trust id2label in the checkpoint.
EN_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
ES_LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness")

TEXT_MAX_TOKENS = 512
# Weights only from safetensors (a pickle can run code) and never a repo's own Python code.
_SAFE_LOADING = {"use_safetensors": True, "trust_remote_code": False}
# Present in some checkpoints, never used at inference.
_OPTIONAL_KEYS = frozenset({"wav2vec2_bert.masked_spec_embed"})


class _RelativeKeyAttention(Protocol):
    """The attributes of transformers' Wav2Vec2-BERT self-attention that the bias reads."""

    left_max_position_embeddings: int
    right_max_position_embeddings: int
    distance_embedding: nn.Embedding
    scaling: float


def relative_key_bias(
    module: _RelativeKeyAttention, query: torch.Tensor, key: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wav2Vec2-BERT's relative-key attention bias, without a [frames, frames, head] tensor.

    transformers looks up one embedding per (query, key) pair and contracts it with the query:
    at the 160 s cap (8,000 frames) that tensor is 8,000 x 8,000 x 64 values per layer, 8 GB in
    bf16. Distances are clamped, so only left + right + 1 embeddings exist (73 for w2v-bert-2.0):
    the query is contracted with those and the result gathered by distance. Same products, same
    sums; the bias is the size of the attention scores it is added to.
    """
    left = module.left_max_position_embeddings
    right = module.right_max_position_embeddings
    batch, heads, query_length, _ = query.shape
    key_length = key.shape[2]
    per_distance = torch.matmul(query, module.distance_embedding.weight.to(query.dtype).T)
    distance = torch.arange(key_length, device=query.device).view(1, -1) - torch.arange(
        query_length, device=query.device
    ).view(-1, 1)
    index = (distance.clamp(-left, right) + left).expand(batch, heads, -1, -1)
    return query, torch.gather(per_distance, 3, index) * module.scaling


def _use_compact_relative_key_bias():
    """Installs :func:`relative_key_bias`; returns the function it replaces (None if it did not)."""
    from transformers.models.wav2vec2_bert import modeling_wav2vec2_bert as w2v_bert

    # The attention layer calls this module-level helper by name; the signature is checked so a
    # transformers upgrade that changes it keeps its own code rather than breaking ours.
    stock = getattr(w2v_bert, "_apply_relative_key_position_encoding", None)
    if stock is None or list(inspect.signature(stock).parameters) != ["module", "query", "key"]:
        return None
    w2v_bert._apply_relative_key_position_encoding = relative_key_bias
    return stock


TRANSFORMERS_RELATIVE_KEY_BIAS = _use_compact_relative_key_bias()


class ClassificationHead(nn.Module):
    def __init__(self, dim: int, num_labels: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        # Saved in every checkpoint but never applied in the toolkit's forward pass.
        self.layernorm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out_proj(torch.tanh(self.dense(features)))


class CrossModalHead(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.Wq, self.Wk, self.Wv = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.Wq_reverse = nn.Linear(dim, dim)
        self.Wk_reverse = nn.Linear(dim, dim)
        self.Wv_reverse = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(2 * dim, dim)

    def forward(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        # The toolkit's attention runs over the batch axis, so its output would depend on the other
        # clips in a batch. It always ran one clip, where softmax over a single key is 1 and each
        # head reduces to this; applying the reduction row by row reproduces it for any batch.
        return self.linear_out(torch.cat([2 * self.Wv(audio), 2 * self.Wv_reverse(text)], dim=-1))


class MultiHeadFusion(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(CrossModalHead(dim) for _ in range(num_heads))
        self.proj = nn.Linear(num_heads * dim, dim)

    def forward(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([head(audio, text) for head in self.heads], dim=-1))


class FusionEmotionModel(nn.Module):
    """Wav2Vec2-BERT audio vector, optionally fused with a text vector, then the head."""

    def __init__(
        self,
        config,
        *,
        mode: str,
        projection_dim: int,
        head_dim: int,
        num_labels: int,
        num_fusion_heads: int = 0,
    ) -> None:
        from transformers import Wav2Vec2BertModel

        super().__init__()
        self.mode = mode
        self.use_weighted_layer_sum = bool(getattr(config, "use_weighted_layer_sum", False))
        self.wav2vec2_bert = Wav2Vec2BertModel(config)
        self.projector = nn.Linear(config.hidden_size, projection_dim)
        if self.use_weighted_layer_sum:
            num_layers = config.num_hidden_layers + 1
            self.layer_weights = nn.Parameter(torch.ones(num_layers) / num_layers)
        self.classifier = ClassificationHead(head_dim, num_labels)
        if mode == "multihead":
            self.mult_attn_model = MultiHeadFusion(projection_dim, num_fusion_heads)

    def audio_vectors(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Masked mean of the projected encoder states over valid frames: [batch, proj_dim]."""
        outputs = self.wav2vec2_bert(
            input_features,
            attention_mask=attention_mask,
            output_hidden_states=self.use_weighted_layer_sum,
        )
        if self.use_weighted_layer_sum:
            stacked = torch.stack(outputs.hidden_states, dim=1)
            weights = nn.functional.softmax(self.layer_weights, dim=-1).view(-1, 1, 1)
            hidden = (stacked * weights).sum(dim=1)
        else:
            hidden = outputs.last_hidden_state
        hidden = self.projector(hidden)
        mask = self.wav2vec2_bert._get_feature_vector_attention_mask(
            hidden.shape[1], cast(torch.LongTensor, attention_mask)
        )
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        return hidden.sum(dim=1) / mask.sum(dim=1, keepdim=True).to(hidden.dtype)

    def fuse(self, audio: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "audio":
            return audio
        if text is None:
            raise ValueError(f"mode {self.mode!r} needs text vectors")
        if self.mode == "concat":
            return torch.cat([audio, text], dim=-1)
        if self.mode == "mean":
            return (audio + text) / 2
        return self.mult_attn_model(audio, text)

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor,
        text_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [batch, num_labels]."""
        audio = self.audio_vectors(input_features, attention_mask)
        return self.classifier(self.fuse(audio, text_vectors))


def _read_state_dict(folder: Path, source: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"emotion model {source!r}: no model.safetensors in {folder}")
    state = load_file(str(weights))
    override = folder / "model.bin"
    if override.is_file():
        # The toolkit lets an optional torch state dict override the safetensors weights.
        logger.info("emotion model %s: model.bin overrides model.safetensors", source)
        state.update(torch.load(override, map_location="cpu", weights_only=True))
    return state


def load_fusion_model(
    folder: str | Path, mode: str, *, source: str | None = None
) -> FusionEmotionModel:
    """Build the model for ``mode`` and load a published-layout checkpoint into it, strictly.

    ``config.json`` names an architecture transformers does not have, so the generic auto classes
    would silently build a random head; here any missing or unexpected key is an error.
    """
    from transformers import Wav2Vec2BertConfig
    from transformers.initialization import no_init_weights

    folder = Path(folder)
    source = source or str(folder)
    try:
        config = Wav2Vec2BertConfig.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"emotion model {source!r}: unreadable config.json ({exc})") from exc
    state = _read_state_dict(folder, source)
    shape = shape_of({key: tuple(t.shape) for key, t in state.items()}, mode, source)
    # Every weight is about to be replaced: random initialisation would only cost time (about
    # 5 s of a full model's load on two cores), and so would copying the weights in.
    with no_init_weights():
        model = FusionEmotionModel(
            config,
            mode=mode,
            projection_dim=shape.projection_dim,
            head_dim=shape.head_dim,
            num_labels=shape.num_labels,
            num_fusion_heads=shape.fusion_heads,
        )
    params = model.state_dict()
    expected = set(params)
    missing = sorted(expected - set(state) - _OPTIONAL_KEYS)
    unexpected = sorted(set(state) - expected - _OPTIONAL_KEYS)
    if missing or unexpected:
        raise ModelLoadError(
            f"emotion model {source!r} does not match the {mode} architecture: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
            f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}. "
            "Refusing to run with randomly initialised weights."
        )
    weights = {k: v.to(params[k].dtype) for k, v in state.items() if k in expected}
    model.load_state_dict(weights, strict=False, assign=True)
    with torch.no_grad():
        for key in _OPTIONAL_KEYS & (expected - set(weights)):
            model.get_parameter(key).zero_()  # unused, but never left as uninitialised memory
    return model.eval()


def labels_for(num_labels: int, config_id2label: dict | None = None) -> tuple[str, ...]:
    """The toolkit's forced label maps, chosen by label count (7 English, 6 Spanish)."""
    for labels in (EN_LABELS, ES_LABELS):
        if num_labels == len(labels):
            return labels
    if config_id2label and len(config_id2label) == num_labels:
        return tuple(config_id2label[i] for i in sorted(config_id2label, key=int))
    raise ModelLoadError(f"a {num_labels}-label checkpoint matches neither label set")


def _tokenize(tokenizer, texts: Sequence[str], device: str):
    # Padded to the batch's longest text, not to 512 as the toolkit does: the attention mask
    # leaves the outputs unchanged, and short transcripts cost a fraction.
    return tokenizer(
        list(texts), padding=True, truncation=True, max_length=TEXT_MAX_TOKENS, return_tensors="pt"
    ).to(device)


class TextEncoder:
    """A frozen encoder's [CLS] vector of the last hidden state (no pooler), as the toolkit does."""

    def __init__(self, folder: str | Path, *, device: str, dtype: torch.dtype, source: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModel.from_pretrained(folder, dtype=dtype, **_SAFE_LOADING)
            self.model = self.model.to(device).eval()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"text encoder {source!r} could not be loaded: {exc}") from exc
        self.device = device
        self.dim = self.model.config.hidden_size

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = _tokenize(self.tokenizer, texts, self.device)
        return self.model(**tokens).last_hidden_state[:, 0]


class _TextOnlyModel:
    """``mode="text"``: a plain sequence classifier whose labels come from its own config."""

    def __init__(self, folder: str | Path, *, device: str, dtype: torch.dtype, source: str) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                folder, dtype=dtype, **_SAFE_LOADING
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"text emotion model {source!r} could not be loaded: {exc}"
            ) from exc
        self.model = self.model.to(device).eval()
        self.device = device
        id2label = self.model.config.id2label
        self.labels = tuple(id2label[i] for i in sorted(id2label))

    @torch.inference_mode()
    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model(**_tokenize(self.tokenizer, texts, self.device)).logits


_Model = TypeVar("_Model", bound=nn.Module)


def quantize_linear(model: _Model) -> _Model:
    """``model``, changed in place, with every Linear layer's weights in int8 and its inputs
    quantised per batch as it runs (torch's dynamic quantisation, CPU only). Attention scores,
    convolutions and norms stay fp32. Faster on CPU, with probabilities a little off fp32's
    (docs/benchmarks.md); fp32 is what matches the toolkit."""
    with warnings.catch_warnings():
        # torch marks torch.ao.quantization deprecated in favour of the separate torchao
        # package, but still ships it (2.13); its warnings would only worry a user of the job.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions")
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        # In place, its Linear children swapped: a copy would first duplicate the fp32 model
        # (measured on the full model: 3.3 GB private memory and 16 s, against 0.8 GB and 7 s).
        return cast(
            _Model,
            torch.ao.quantization.quantize_dynamic(
                model, {nn.Linear}, dtype=torch.qint8, inplace=True
            ),
        )


def micro_batches(
    sizes: Sequence[int], max_clips: int, max_padded: float | None = None
) -> list[np.ndarray]:
    """Indices of clips grouped shortest first, so padding stays small.

    A group ends at ``max_clips`` clips, or before its padded size (clips x longest) passes
    ``max_padded``: the encoder's attention grows with the square of a clip's length, and a batch
    of long clips would not fit in memory. A clip over the budget on its own still runs, alone.
    """
    order = np.argsort(sizes, kind="stable")
    groups: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        full = end - start > max_clips
        too_big = max_padded is not None and (end - start) * sizes[order[end - 1]] > max_padded
        if (full or too_big) and end - 1 > start:
            groups.append(order[start : end - 1])
            start = end - 1
    if start < len(order):
        groups.append(order[start:])
    return groups


class EmotionClassifier:
    """Loads once, then classifies batches of clips into label probabilities."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        mode: str,
        text_encoder_dir: str | Path | None = None,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        int8: bool = False,
        max_batch_clips: int = 16,
        max_batch_padded_s: float = 320.0,
        model_source: str | None = None,
        text_encoder_source: str | None = None,
    ) -> None:
        if int8 and (device != "cpu" or dtype != torch.float32):
            raise ValueError(f"int8 quantises fp32 models on CPU, not {dtype} on {device}")
        self.mode = mode
        self.device = device
        self.dtype = dtype
        self.int8 = int8
        self.max_batch_clips = max_batch_clips
        self.max_batch_padded_s = max_batch_padded_s
        source = model_source or str(model_dir)
        self._text_only: _TextOnlyModel | None = None
        self._text_encoder: TextEncoder | None = None
        if mode == "text":
            self._text_only = _TextOnlyModel(model_dir, device=device, dtype=dtype, source=source)
            self.labels = self._text_only.labels
            if int8:
                self._text_only.model = quantize_linear(self._text_only.model)
            return

        self.model = load_fusion_model(model_dir, mode, source=source).to(
            device=device, dtype=dtype
        )
        preprocessor = Path(model_dir) / "preprocessor_config.json"
        if not preprocessor.is_file():
            raise ModelLoadError(f"emotion model {source!r} has no preprocessor_config.json")
        self.feature_spec = FeatureSpec.from_config(preprocessor.read_bytes(), source)
        num_labels = self.model.classifier.out_proj.out_features
        self.labels = labels_for(num_labels)
        if mode != "audio":
            if text_encoder_dir is None:
                raise ValueError(f"mode {mode!r} needs a text encoder")
            self._text_encoder = TextEncoder(
                text_encoder_dir,
                device=device,
                dtype=dtype,
                source=text_encoder_source or str(text_encoder_dir),
            )
            expected = self.model.projector.out_features
            if self._text_encoder.dim != expected:
                raise ModelLoadError(
                    f"text encoder {text_encoder_source!r} gives {self._text_encoder.dim}-d "
                    f"vectors; emotion model {source!r} fuses {expected}-d vectors"
                )
        if int8:
            self.model = quantize_linear(self.model)
            if self._text_encoder is not None:
                self._text_encoder.model = quantize_linear(self._text_encoder.model)

    @property
    def needs_text(self) -> bool:
        return self.mode in TEXT_MODES

    @property
    def needs_audio(self) -> bool:
        return self.mode in AUDIO_MODES

    def classify(
        self,
        waveforms: Sequence[np.ndarray] | None,
        texts: Sequence[str] | None,
        *,
        features: Sequence[ClipFeatures] | None = None,
    ) -> np.ndarray:
        """Probabilities [clips, labels] (float32), in input order.

        Audio comes as waveforms, or as ``features`` already computed by :func:`audio_features`
        with this model's :attr:`feature_spec`. Clips are sorted by length and run in
        micro-batches, so padding stays small; the masks make every clip's result equal to running
        it alone.
        """
        if self.needs_audio and features is None and waveforms is not None:
            features = [audio_features(self.feature_spec, wave) for wave in waveforms]
        audio = list(features) if self.needs_audio and features is not None else None
        text = list(texts) if self.needs_text and texts is not None else None
        count = len(audio) if audio is not None else len(text or ())
        if self.needs_audio and (audio is None or len(audio) != count):
            raise ValueError(f"mode {self.mode!r} needs one waveform per clip")
        if self.needs_text and (text is None or len(text) != count):
            raise ValueError(f"mode {self.mode!r} needs one text per clip")
        if count == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        sizes = [len(f) for f, _ in audio] if audio is not None else [len(t) for t in text or ()]
        budget = self.max_batch_padded_s * FRAMES_PER_S if audio is not None else None
        probabilities = np.empty((count, len(self.labels)), dtype=np.float32)
        for index in micro_batches(sizes, self.max_batch_clips, budget):
            logits = self._logits(
                [audio[i] for i in index] if audio is not None else None,
                [text[i] for i in index] if text is not None else None,
            )
            probabilities[index] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return probabilities

    @torch.inference_mode()
    def _logits(self, features: list[ClipFeatures] | None, texts: list[str] | None) -> torch.Tensor:
        # classify() checked that the mode's inputs are there.
        if self._text_only is not None:
            return self._text_only.logits(texts or [])
        stacked, mask = stack_features(features or [], self.feature_spec.padding_value)
        input_features = torch.from_numpy(stacked).to(self.device, self.dtype)
        attention_mask = torch.from_numpy(mask).to(self.device)
        text_vectors = self._text_encoder.encode(texts or []) if self._text_encoder else None
        return self.model(input_features, attention_mask, text_vectors)
