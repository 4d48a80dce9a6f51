"""Per-stage CPU cost and FLOPs of the real-shaped models, as a basis for GPU-hour estimates.

    flock /tmp/se-bench.lock .venv/bin/python benchmarks/stage_costs.py \
        --models-dir /tmp/se-stage-models

Builds random models with the published shapes (no download is possible here): Whisper
large-v3-turbo converted to CTranslate2 int8, w2v-bert-2.0 inside the concat emotion model, and
bert-base-uncased. Then, on one thread, after one warm-up, takes the median of a few repeats of:

- decoding a 30 s 44.1 kHz FLAC to 16 kHz mono (the job's decode_audio);
- Whisper log-mel features (128 bins) of a 30 s window;
- the Whisper encoder on 1 and 4 windows, per window;
- the Whisper decoder at batch 1 and 4: a per-token cost and a fixed cost per window (prompt and
  cross-attention keys/values), fitted from two generation lengths;
- SeamlessM4T fbank features, and the concat emotion model forward on 10 s and 30 s clips;
- BERT-base on 16 transcripts of about 30 words, padded to the longest.

Counts FLOPs for each from the formulas in the ``*_flops`` functions, and prints CPU seconds and
FLOPs per audio-hour plus the GFLOP/s achieved. Writes the table into docs/benchmarks.md between
the stage-costs markers. The Whisper model is cached in --models-dir (built in a child process, so
its ~5 GB build peak is not the measuring process's); `--build-only` builds it and exits.
"""

from __future__ import annotations

import os

# Before numpy and torch load: their BLAS pools read these once. Every stage is measured on one
# core, so that its cost adds up and divides by cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TypeVar  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- stage-costs:start -->", "<!-- stage-costs:end -->"
SAMPLE_RATE = 16000
WINDOW_S = 30.0
HOUR_S = 3600.0
# Whisper's text vocabulary is 50257 entries; <|endoftext|> and the special tokens follow.
WHISPER_TEXT_TOKENS = 50257

T = TypeVar("T")
# Wall / CPU of every timed call set, for the contention check (fitted rows would add noise).
WALL_OVER_CPU: list[float] = []


@dataclass(frozen=True)
class WhisperShape:
    """Whisper large-v3-turbo: the large-v3 encoder with a 4-layer decoder."""

    d_model: int = 1280
    encoder_layers: int = 32
    decoder_layers: int = 4
    heads: int = 20
    ffn: int = 5120
    n_mels: int = 128
    vocab: int = 51866
    source_positions: int = 1500
    target_positions: int = 448


@dataclass(frozen=True)
class Timing:
    """Median seconds: CPU (user + system), the system part alone, and wall."""

    cpu: float
    sys: float
    wall: float

    def times(self, k: float) -> Timing:
        return Timing(self.cpu * k, self.sys * k, self.wall * k)

    def per(self, n: float) -> Timing:
        return self.times(1 / n)

    def __sub__(self, other: Timing) -> Timing:
        return Timing(self.cpu - other.cpu, self.sys - other.sys, self.wall - other.wall)


@dataclass
class Row:
    stage: str
    unit: str
    time: Timing
    """Per unit."""
    flops: float | None
    """FLOPs per unit, from the formulas below; None where counting them means nothing."""
    units_per_hour: float
    """Units in one hour of audio, from the stated assumptions."""
    side: str
    """'cpu' for work that stays on CPU workers, 'model' for what would move to the GPU."""
    in_total: bool
    peak_mb: float


# -- FLOP counts (1 multiply-add = 2 FLOPs; norms, activations and softmax left out) ----------


def whisper_encoder_flops(s: WhisperShape, frames: int = 3000) -> float:
    """One 30 s window.

    conv1 (n_mels -> d, k 3) on 3000 frames + conv2 (d -> d, k 3, stride 2) on 1500, then per layer
    and position 2*(4 d^2 + 2 d ffn) for Q, K, V, out and the MLP, plus 2*2*T*d for QK^T and AV.
    """
    t = frames // 2
    conv = 2 * s.n_mels * 3 * s.d_model * frames + 2 * s.d_model * 3 * s.d_model * t
    dense = 2 * (4 * s.d_model**2 + 2 * s.d_model * s.ffn) * t
    attention = 2 * 2 * t * t * s.d_model
    return conv + s.encoder_layers * (dense + attention)


def whisper_token_flops(s: WhisperShape, context: float) -> float:
    """One decoded token with a KV cache, ``context`` tokens already in it.

    Per layer 2*(4 d^2 + 2 d^2 + 2 d ffn) for self-attention Q, K, V, out, cross-attention Q, out
    and the MLP, plus 2*2*(context + 1500)*d for both attentions; then 2 d vocab for the logits.
    """
    per_layer = 2 * (6 * s.d_model**2 + 2 * s.d_model * s.ffn)
    per_layer += 2 * 2 * (context + s.source_positions) * s.d_model
    return s.decoder_layers * per_layer + 2 * s.d_model * s.vocab


def whisper_window_flops(s: WhisperShape, prompt_tokens: int) -> float:
    """Decoder work paid once per window: cross-attention K and V of the 1500 encoder states in
    every layer, 2*2*1500*d^2 per layer, plus the prompt's tokens."""
    cross_kv = s.decoder_layers * 2 * 2 * s.source_positions * s.d_model**2
    return cross_kv + prompt_tokens * whisper_token_flops(s, prompt_tokens / 2)


def emotion_flops(config, frames: int, compact_bias: bool) -> float:
    """The concat emotion model on one clip of ``frames`` feature frames (50 per second).

    Feature projection 2*160*d per frame. Per conformer layer and frame: two half-step FFNs
    2*2*(2 d ffn), Q, K, V, out 2*4 d^2, pointwise convs d -> 2d and d -> d 2*3 d^2, depthwise conv
    2*k*d; plus 2 * 2*T*d for QK^T and AV, and the relative-key term: the query against the
    left + right + 1 distance embeddings, 2*(left + right + 1)*d, with the job's compact bias
    (speech_emotion.emotion.relative_key_bias), or against one embedding per query-key pair,
    2*T*d, as transformers computes it. Head: projector 2*d*768 per frame, dense 2*1536^2, out
    2*1536*7.
    """
    d, ffn, k = config.hidden_size, config.intermediate_size, config.conv_depthwise_kernel_size
    distances = config.left_max_position_embeddings + config.right_max_position_embeddings + 1
    per_frame = 2 * (2 * 2 * d * ffn + 4 * d * d + 3 * d * d + k * d)
    per_frame += 2 * 2 * frames * d + 2 * (distances if compact_bias else frames) * d
    layers = config.num_hidden_layers * per_frame * frames
    head = 2 * d * 768 * frames + 2 * 1536 * 1536 + 2 * 1536 * 7
    return 2 * config.feature_projection_input_dim * d * frames + layers + head


@dataclass(frozen=True)
class EmotionSetup:
    config: object
    """The Wav2Vec2BertConfig the encoder was built with."""
    attention: str
    """transformers' attention implementation for the encoder (eager, sdpa, ...)."""
    compact_bias: bool
    """Whether the job's relative-key bias replaced transformers' [T, T, head] one."""


def bert_flops(config, batch: int, padded_len: int) -> float:
    """BERT on a padded batch: per layer and token 2*(4 d^2 + 2 d ffn), plus 2*2*L*d attention."""
    d, ffn = config.hidden_size, config.intermediate_size
    per_layer = 2 * (4 * d * d + 2 * d * ffn) * padded_len + 2 * 2 * padded_len**2 * d
    return batch * config.num_hidden_layers * per_layer


def spectrogram_flops(frames: int, n_fft: int, n_mels: int) -> float:
    """Short-time features: a real FFT of ~2.5 N log2 N, |X|^2 3 per bin, the mel matrix
    2*bins*mels, per frame. Framing, windowing, logs and normalisation left out."""
    bins = n_fft // 2 + 1
    return frames * (2.5 * n_fft * math.log2(n_fft) + 3 * bins + 2 * bins * n_mels)


# -- timing ---------------------------------------------------------------------------------


def timed(fn: Callable[[], T], repeats: int) -> tuple[Timing, T]:
    """Median timing of ``repeats`` calls after one warm-up call, and the last call's result.

    CPU time is the cost. The system part is mostly page faults on freshly allocated buffers;
    wall time above CPU time would mean contention or waiting.
    """
    result = fn()  # the first call pays allocations, lazy initialisation and cold caches
    cpu, sys_, wall = [], [], []
    for _ in range(repeats):
        c0, s0, w0 = time.process_time(), _system_s(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c0)
        sys_.append(_system_s() - s0)
        wall.append(time.perf_counter() - w0)
    median = statistics.median
    WALL_OVER_CPU.append(median(wall) / median(cpu))
    return Timing(median(cpu), median(sys_), median(wall)), result


def _system_s() -> float:
    # getrusage splits user and system time by sampling at kernel ticks, so the split is rough
    # for short calls; the total (process_time) is exact.
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_wave(seconds: float, rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A tone in noise: the models' cost does not depend on what is said."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


# -- Whisper: build ---------------------------------------------------------------------------


def _whisper_tokenizer(shape: WhisperShape):
    """Byte-level tokenizer with large-v3's 51866 ids: <|endoftext|> at 50257, the special tokens
    after it (languages in faster-whisper's order). Fillers stand in for the BPE tokens."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import AddedToken, WhisperTokenizer

    vocab = {char: i for i, char in enumerate(sorted(ByteLevel.alphabet()))}
    # The empty-string token is what makes CTranslate2 (>= 4.7) treat the model as multilingual.
    vocab[""] = len(vocab)
    while len(vocab) < WHISPER_TEXT_TOKENS:
        vocab[f"filler{len(vocab)}"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    specials = [
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in _LANGUAGE_CODES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *(f"<|{i * 0.02:.2f}|>" for i in range(1501)),
    ]
    tokenizer.add_tokens([AddedToken(token, special=True) for token in specials])
    if len(tokenizer) != shape.vocab:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, large-v3 has {shape.vocab}")
    return tokenizer


def _save_hf_whisper(hf_dir: Path, shape: WhisperShape) -> None:
    import torch
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    tokenizer = _whisper_tokenizer(shape)
    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=shape.vocab,
        num_mel_bins=shape.n_mels,
        d_model=shape.d_model,
        encoder_layers=shape.encoder_layers,
        decoder_layers=shape.decoder_layers,
        encoder_attention_heads=shape.heads,
        decoder_attention_heads=shape.heads,
        encoder_ffn_dim=shape.ffn,
        decoder_ffn_dim=shape.ffn,
        max_source_positions=shape.source_positions,
        max_target_positions=shape.target_positions,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=[],
        begin_suppress_tokens=[eot],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    # Without explicit language and task ids the converter finds no language tokens.
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=shape.target_positions,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in _LANGUAGE_CODES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        suppress_tokens=[],
        begin_suppress_tokens=[eot],
    )
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)


def build_whisper(out_dir: Path, shape: WhisperShape) -> float:
    """Random large-v3-turbo-shaped Whisper as a CTranslate2 int8 folder; returns build seconds.

    Runs in a child process: the fp32 model, its safetensors and the converter's copy peak near
    5 GB, which would otherwise be the measuring process's peak memory.
    """
    import ctranslate2

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="se-whisper-hf-") as hf_dir:
        _save_hf_whisper(Path(hf_dir), shape)
        gc.collect()
        converter = ctranslate2.converters.TransformersConverter(hf_dir, low_cpu_mem_usage=True)
        converter.convert(str(out_dir), quantization="int8", force=True)
    (out_dir / "stage_costs_shape.json").write_text(json.dumps(asdict(shape)))
    return time.perf_counter() - started


def ensure_whisper(models_dir: Path, shape: WhisperShape) -> Path:
    out = models_dir / "whisper-large-v3-turbo-shape-int8"
    marker = out / "stage_costs_shape.json"
    if marker.is_file() and json.loads(marker.read_text()) == asdict(shape):
        print(f"whisper: cached in {out}", flush=True)
        return out
    print(f"whisper: building {shape} into {out} (child process)...", flush=True)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
        seconds = child.submit(build_whisper, out, shape).result()
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"whisper: built in {seconds:.0f} s, {size:.0f} MB on disk")
    return out


# -- measurements -----------------------------------------------------------------------------


def measure_decode(args: argparse.Namespace) -> list[Row]:
    import soundfile as sf

    from speech_emotion.audio import decode_audio

    rate = 44100
    buffer = io.BytesIO()
    sf.write(buffer, synthetic_wave(WINDOW_S, rate=rate), rate, format="FLAC")
    data = buffer.getvalue()
    timing, _ = timed(lambda: decode_audio(data), args.repeats)
    stage = "decode + resample to 16 kHz (30 s FLAC, 44.1 kHz mono)"
    return [Row(stage, "audio-s", timing.per(WINDOW_S), None, HOUR_S, "cpu", True, peak_mb())]


def measure_whisper(model_dir: Path, shape: WhisperShape, args: argparse.Namespace) -> list[Row]:
    import ctranslate2
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.feature_extractor import FeatureExtractor

    windows_per_hour = HOUR_S / WINDOW_S
    wave = synthetic_wave(WINDOW_S)
    extractor = FeatureExtractor(feature_size=shape.n_mels)
    timing, mel = timed(lambda: extractor(wave), args.repeats)
    mel_flops = spectrogram_flops(mel.shape[1], extractor.n_fft, shape.n_mels)
    rows = [
        Row("Whisper log-mel, 128 bins", "window", timing, mel_flops, windows_per_hour, "cpu",
            True, peak_mb())
    ]  # fmt: skip
    # As the job does (asr.py): drop the padding frame, pad to the 30 s window.
    features = pad_or_trim(mel[:, :-1])

    model = ctranslate2.models.Whisper(
        str(model_dir), device="cpu", compute_type="int8", intra_threads=1, inter_threads=1
    )
    vocabulary = json.loads((model_dir / "vocabulary.json").read_text())
    ids = {token: i for i, token in enumerate(vocabulary)}
    prompt = [ids[t] for t in ("<|startoftranscript|>", "<|en|>", "<|transcribe|>")]
    prompt.append(ids["<|notimestamps|>"])
    encoder_flops = whisper_encoder_flops(shape, features.shape[1])
    for batch in (1, 4):
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray([features] * batch))
        timing, encoded = timed(lambda view=view: model.encode(view), args.repeats)
        rows.append(
            Row(f"Whisper encoder, batch {batch}", "window", timing.per(batch), encoder_flops,
                windows_per_hour, "model", batch == 4, peak_mb())
        )  # fmt: skip
        eot = ids["<|endoftext|>"]
        rows += _measure_decoder(model, encoded, batch, prompt, eot, shape, args)
        print(f"  whisper batch {batch} done", flush=True)
    return rows  # the model is freed here, before the emotion model is built


def _measure_decoder(model, encoded, batch, prompt, eot, shape, args) -> list[Row]:
    """Greedy decoding, end of text suppressed so every row runs to the length asked for.

    Two lengths give a slope (cost per token) and an intercept (cost per window: prompt and
    cross-attention keys and values), which one length divided by its token count would mix.
    """
    timings, counts = [], []
    for tokens in (args.short_tokens, args.long_tokens):

        def generate(tokens: int = tokens):
            # CTranslate2's Whisper generates at most max_length // 2 tokens (the other half of
            # the 448-token context is kept for a prompt, as in OpenAI's sample_len).
            return model.generate(
                encoded,
                [prompt] * batch,
                beam_size=1,
                max_length=2 * tokens,
                suppress_blank=False,
                suppress_tokens=[eot],
            )

        timing, results = timed(generate, args.repeats)
        timings.append(timing)
        counts.append(statistics.mean(len(r.sequences_ids[0]) for r in results))
    print(f"  decoder batch {batch}: {counts} tokens generated for {args.short_tokens} and "
          f"{args.long_tokens} asked", flush=True)  # fmt: skip
    short, long = timings[0].per(batch), timings[1].per(batch)
    token = (long - short).per(counts[1] - counts[0])
    fixed = short - token.times(counts[0])
    # A transcript's tokens see on average half the window's text plus the prompt in the cache.
    context = len(prompt) + args.tokens_per_second * WINDOW_S / 2
    stage = f"Whisper decoder, batch {batch}"
    return [
        Row(f"{stage}: per token", "token", token, whisper_token_flops(shape, context),
            HOUR_S * args.tokens_per_second, "model", batch == 4, peak_mb()),
        Row(f"{stage}: fixed per window", "window", fixed,
            whisper_window_flops(shape, len(prompt)), HOUR_S / WINDOW_S, "model", batch == 4,
            peak_mb()),
    ]  # fmt: skip


def measure_emotion(args: argparse.Namespace) -> tuple[list[Row], EmotionSetup]:
    import torch
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig

    from speech_emotion import emotion
    from speech_emotion.emotion import FusionEmotionModel
    from speech_emotion.features import FEATURE_EXTRACTOR_KWARGS, FeatureSpec, audio_features

    # The job installs its own relative-key bias on import when transformers' helper has the
    # signature it expects; the FLOPs follow whichever one runs.
    compact = getattr(emotion, "TRANSFORMERS_RELATIVE_KEY_BIAS", None) is not None

    # Wav2Vec2BertConfig's defaults are w2v-bert-2.0's; the two named here are what the
    # published checkpoint sets explicitly.
    config = Wav2Vec2BertConfig(position_embeddings_type="relative_key", add_adapter=False)
    torch.manual_seed(0)
    model = FusionEmotionModel(
        config, mode="concat", projection_dim=768, head_dim=1536, num_labels=7
    ).eval()
    extractor = SeamlessM4TFeatureExtractor()
    short = synthetic_wave(10.0)
    # As the decode stage computes them (the same numbers as the extractor, faster).
    timing, (frames, _) = timed(lambda: audio_features(FeatureSpec(), short), args.repeats)
    # Each feature frame stacks two 10 ms fbank frames: the spectrogram work is per 10 ms frame.
    fbank = spectrogram_flops(2 * len(frames), 512, extractor.feature_size)
    rows = [
        Row("SeamlessM4T fbank (10 s clip)", "audio-s", timing.per(10.0), fbank / 10.0, HOUR_S,
            "cpu", True, peak_mb())
    ]  # fmt: skip
    text = torch.zeros(1, 768)
    for seconds in (10.0, 30.0):
        inputs = extractor(synthetic_wave(seconds), **FEATURE_EXTRACTOR_KWARGS)
        features, mask = inputs["input_features"], inputs["attention_mask"]
        with torch.inference_mode():
            timing, _ = timed(lambda f=features, m=mask: model(f, m, text), args.repeats)
        flops = emotion_flops(config, features.shape[1], compact) / seconds
        rows.append(
            Row(f"W2V-BERT + concat head ({seconds:.0f} s clip)", "audio-s", timing.per(seconds),
                flops, HOUR_S, "model", seconds == WINDOW_S, peak_mb())
        )  # fmt: skip
        print(f"  emotion {seconds:.0f} s done", flush=True)
    attention = model.wav2vec2_bert.config._attn_implementation
    return rows, EmotionSetup(config, attention, compact)


def measure_bert(args: argparse.Namespace) -> tuple[list[Row], float]:
    """Returns the rows and the mean number of word pieces per transcript."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig()  # the defaults are bert-base-uncased's
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False).eval()  # the toolkit takes [CLS], no pooler
    rng = np.random.default_rng(0)
    words = rng.integers(args.words - 6, args.words + 7, size=args.bert_batch)
    pieces = np.round(words * args.wordpieces_per_word).astype(int)
    lengths = pieces + 2  # [CLS] and [SEP]
    padded = int(lengths.max())
    ids = torch.from_numpy(rng.integers(1000, config.vocab_size, size=(len(lengths), padded)))
    mask = torch.from_numpy(np.arange(padded)[None, :] < lengths[:, None]).long()
    with torch.inference_mode():
        timing, _ = timed(lambda: model(input_ids=ids, attention_mask=mask), args.repeats)
    batch = len(lengths)
    # One transcript per clip; clips per hour follow from the transcript rate.
    per_hour = HOUR_S * args.tokens_per_second / float(pieces.mean())
    row = Row(
        f"BERT-base, batch {batch}, padded to {padded}", "transcript", timing.per(batch),
        bert_flops(config, batch, padded) / batch, per_hour, "model", True, peak_mb(),
    )  # fmt: skip
    return [row], float(pieces.mean())


# -- report -----------------------------------------------------------------------------------


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| stage | unit | CPU ms / unit | sys % | GFLOP / unit | GFLOP/s | units / audio-h "
        "| CPU s / audio-h | TFLOP / audio-h | peak RSS MB so far |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, f = r.time, r.flops
        gflop = "–" if f is None else f"{f / 1e9:.3g}"
        rate = "–" if f is None else f"{f / t.cpu / 1e9:.1f}"
        # Fitted rows are differences of tick-sampled figures and can come out below zero.
        system = min(max(100 * t.sys / t.cpu, 0), 100)
        tflop = "–" if f is None else f"{f * r.units_per_hour / 1e12:.3g}"
        name = r.stage if r.in_total else f"{r.stage} *(not in totals)*"
        lines.append(
            f"| {name} | {r.unit} | {t.cpu * 1e3:.4g} | {system:.0f} | {gflop} | {rate} "
            f"| {r.units_per_hour:.4g} | {t.cpu * r.units_per_hour:.4g} | {tflop} "
            f"| {r.peak_mb:,.0f} |"
        )
    return lines


def totals(rows: list[Row]) -> list[str]:
    lines, seconds = [], {}
    for side, label in (("model", "Model stages (what a GPU would run)"),
                        ("cpu", "CPU-side stages (decode and features)")):  # fmt: skip
        chosen = [r for r in rows if r.side == side and r.in_total]
        seconds[side] = sum(r.time.cpu * r.units_per_hour for r in chosen)
        flops = sum(r.flops * r.units_per_hour for r in chosen if r.flops is not None)
        lines.append(
            f"- **{label}**: {seconds[side]:,.4g} CPU core-s per audio-hour "
            f"({seconds[side] / HOUR_S:.3g} cores to keep up with real time), "
            f"{flops / 1e12:.4g} TFLOP per audio-hour."
        )
    lines.append(
        f"- A GPU running the model stages at R × real time needs R × {seconds['cpu']:.3g} / 3600 "
        f"= R × {seconds['cpu'] / HOUR_S:.2e} CPU cores for decoding and features, at this "
        "machine's per-core speed and for FLAC input."
    )
    return lines


def report(
    args: argparse.Namespace,
    shape: WhisperShape,
    rows: list[Row],
    emotion: EmotionSetup,
    pieces: float,
    peak: float,
) -> str:
    import ctranslate2
    import torch
    import transformers

    config = emotion.config
    command = "flock /tmp/se-bench.lock .venv/bin/python benchmarks/stage_costs.py"
    command = f"{command} {shlex.join(sys.argv[1:])}".strip()
    left, right = config.left_max_position_embeddings, config.right_max_position_embeddings
    heads, head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    # fp32 GB per clip and layer at 50 frames per second: transformers' relative-key lookup holds
    # a [T, T, head_dim] tensor, the compact bias a [heads, T, T] one like the attention scores.
    width = heads if emotion.compact_bias else head_dim
    gb = {s: (50 * s) ** 2 * width * 4 / 1e9 for s in (30, 160)}
    shape_name = f"[{heads}, T, T]" if emotion.compact_bias else f"[T, T, {head_dim}]"
    bias = "the job's compact bias" if emotion.compact_bias else "transformers' own"
    contention = max(WALL_OVER_CPU)
    verdict = ": no contention" if contention < 1.05 else ": some stages waited or shared a core"
    return "\n".join(
        [
            "## Per-stage CPU cost and FLOPs, real model shapes",
            "",
            f"Latest run: `{command}` on {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, every stage on 1 thread; torch {torch.__version__}, "
            f"CTranslate2 {ctranslate2.__version__}, transformers {transformers.__version__}. "
            f"Median of {args.repeats} after 1 warm-up; CPU time is user + system (largest wall / "
            f"CPU ratio {contention:.2f}{verdict}). Peak RSS of the run "
            f"{peak:,.0f} MB (the Whisper build, when it runs, is a separate process).",
            "",
            "Random weights in the published shapes, full size (no layer scaling):",
            f"- Whisper large-v3-turbo, CTranslate2 int8: d_model {shape.d_model}, "
            f"{shape.encoder_layers} encoder / {shape.decoder_layers} decoder layers, "
            f"{shape.heads} heads, FFN {shape.ffn}, {shape.n_mels} mels, vocab {shape.vocab}, "
            f"{shape.source_positions}/{shape.target_positions} positions; greedy decoding.",
            f"- Concat emotion model, fp32 torch ({emotion.attention} attention): w2v-bert-2.0 "
            f"(hidden {config.hidden_size}, {config.num_hidden_layers} conformer layers, "
            f"{config.num_attention_heads} heads, FFN {config.intermediate_size}, depthwise "
            f"kernel {config.conv_depthwise_kernel_size}, relative_key {left}/{right} computed "
            f"with {bias}), projector 1024→768, head 1536→1536→7.",
            "- BERT-base-uncased shape, fp32: 768 hidden, 12 layers, 12 heads, FFN 3072.",
            "",
            f"Assumptions: Whisper sees {HOUR_S / WINDOW_S:.0f} full 30 s windows per audio-hour "
            "(a clip shorter than 30 s still costs a whole window of encoder); speech gives "
            f"{args.tokens_per_second:g} text tokens per audio-second, so "
            f"{args.tokens_per_second * WINDOW_S:.0f} decoded tokens per window; BERT reads one "
            f"transcript per clip, {args.words}±6 words × {args.wordpieces_per_word:g} word "
            f"pieces (mean {pieces:.1f}), so {HOUR_S:.0f} × {args.tokens_per_second:g} / "
            f"{pieces:.1f} transcripts per audio-hour. The decoder's per-token and per-window "
            f"costs are the slope and intercept between {args.short_tokens} and "
            f"{args.long_tokens} generated tokens (end of text suppressed).",
            "",
            *table(rows),
            "",
            "Totals, from the rows not marked *not in totals* (batch 4 for Whisper, the 30 s clip "
            "for the emotion model):",
            "",
            *totals(rows),
            "",
            "FLOPs count a multiply-add as 2 and leave out norms, activations and softmax: dense "
            "layers 2 × weights × positions; attention 2 × 2 × T² × d per layer, plus for "
            f"w2v-bert's relative-key term 2 × T × {left + right + 1} × d with the compact bias "
            "(2 × T² × d with transformers' own); Whisper's decoder "
            "per token 2 × (6 d² + 2 d·ffn) per layer plus attention over its cache and the 1500 "
            "encoder states plus 2 d × vocab for the logits, and per window 2 × 2 × 1500 × d² "
            "per layer for the cross-attention keys and values plus the 4-token prompt; "
            "spectrograms 2.5 N log2 N per FFT plus the mel matrix. The formulas are the "
            "`*_flops` functions in `benchmarks/stage_costs.py`. GFLOP/s is on CPU time. The "
            "system share (sys %) is mostly page faults on freshly allocated buffers, an "
            "allocator cost a GPU does not pay; the kernel samples it at ticks, so it is rough "
            "for calls of a few ms and for the decoder's fitted rows.",
            "",
            f"Memory: with {bias}, the relative-key bias is a {shape_name} fp32 tensor per clip "
            f"and layer, {gb[30]:.2f} GB for a 30 s clip and {gb[160]:.1f} GB at the toolkit's "
            "160 s cap (T = 50 frames per second).",
        ]
    )


def write_results(markdown: str) -> None:
    text = RESULTS.read_text()
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    RESULTS.write_text(f"{head}{START}\n{markdown}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, help="cache for the built Whisper model")
    parser.add_argument("--build-only", action="store_true", help="build the cache and exit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens-per-second", type=float, default=3.0)
    parser.add_argument("--short-tokens", type=int, default=8, help="tokens generated, short run")
    parser.add_argument("--long-tokens", type=int, default=40, help="tokens generated, long run")
    parser.add_argument("--words", type=int, default=30, help="mean words per BERT transcript")
    parser.add_argument("--wordpieces-per-word", type=float, default=1.3)
    parser.add_argument("--bert-batch", type=int, default=16)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    shape = WhisperShape()
    models_dir = args.models_dir or Path(tempfile.mkdtemp(prefix="se-stage-models-"))
    try:
        whisper_dir = ensure_whisper(models_dir, shape)
        if args.build_only:
            return
        rows = measure_decode(args)
        rows += measure_whisper(whisper_dir, shape, args)
        emotion_rows, emotion = measure_emotion(args)
        rows += emotion_rows
        bert_rows, pieces = measure_bert(args)
        rows += bert_rows
    finally:
        if args.models_dir is None:
            shutil.rmtree(models_dir, ignore_errors=True)

    markdown = report(args, shape, rows, emotion, pieces, peak_mb())
    print(markdown)
    if not args.no_write:
        write_results(markdown)
        print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
