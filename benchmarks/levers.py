"""Throughput levers one at a time: each of the job's speed-ups measured before and after.

    flock /tmp/se-bench.lock .venv/bin/python benchmarks/levers.py

On the models alone (no Ray, no S3) and in-memory synthetic clips (tones and noise, 16 kHz), runs
the same clips through each lever switched off and on:

1. Whisper batched across clips: batch size 1 against 16;
2. CTranslate2 compute type: float32 against int8 (float16 against int8_float16 on CUDA);
3. clips sorted by length into the emotion model's micro-batches, against input order;
4. BERT inputs padded to the batch's longest text, against 512 tokens as the toolkit pads;
5. the padded-seconds budget per emotion batch, against a fixed 16 clips: peak memory and time,
   each variant in a fresh process;
6. emotion model precision: fp32 against bf16 (fp16 on CUDA without bf16);
7. the model worker's share of feature work: both models from waveforms (their features computed
   in the worker, as the toolkit does) against from features the decode workers computed.

Prints a markdown table and writes it into docs/benchmarks.md between the levers markers. Without
model options it builds tiny random models sized by --hidden and --text-hidden; pass real model
folders or hub ids (all three) and --mode on a GPU machine. Run it under the lock: the machine is
shared and other benchmarks must not overlap it.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import multiprocessing
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- levers:start -->", "<!-- levers:end -->"
RATE = 16000
BATCH = 16  # the job's default batch size (ResourceConfig.batch_size)
MIN_S, MAX_S = 1.0, 20.0
LONG_MIN_S, LONG_MAX_S = 60.0, 160.0  # lever 5's clips before --long-scale
WARM_CLIPS = 2
LANGUAGE = "en"
WORDS = (
    "i you we they it this that what there here really think know just going want need said told "
    "never always again today tomorrow meeting call home work time people thing good bad happy "
    "sad angry afraid sorry please thanks okay right wrong believe leave alone"
)


@dataclass(frozen=True)
class Models:
    whisper: str
    text_encoder: str
    emotion: str
    """Checkpoint for --mode (lever 6)."""
    emotion_audio: str
    """Checkpoint for levers 3 and 5: audio-only when tiny, else the same as ``emotion``."""
    audio_mode: str
    mode: str
    tiny: bool


@dataclass(frozen=True)
class Row:
    lever: str
    before: str
    after: str
    unit: str
    before_value: float
    after_value: float
    agreement: str
    """How far the two variants' outputs agree: a lever must not change results unnoticed."""
    meaning: str


# -- inputs and models -------------------------------------------------------------------------


def make_clips(count: int, min_s: float, max_s: float, seed: int) -> list[np.ndarray]:
    """Tones plus noise, like throughput.py's corpus, but mono 16 kHz float32 and in memory."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(count):
        t = np.arange(int(rng.uniform(min_s, max_s) * RATE)) / RATE
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 800) * t)
        clips.append((tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
    return clips


def make_texts(count: int, seed: int) -> list[str]:
    """Transcript-like strings of 5-60 common English words, one per clip."""
    rng = np.random.default_rng(seed)
    return [
        " ".join(rng.choice(WORDS.split(), size=int(rng.integers(5, 61)))) for _ in range(count)
    ]


def seconds_of(clips: Sequence[np.ndarray]) -> float:
    return sum(len(c) for c in clips) / RATE


def build_tiny(folder: Path, args: argparse.Namespace) -> Models:
    from speech_emotion.tiny_models import (
        build_tiny_emotion_model,
        build_tiny_text_encoder,
        build_tiny_whisper,
    )

    # projection_dim must equal the text encoder's width for the fusion modes.
    sizes = {"hidden_size": args.hidden, "projection_dim": args.text_hidden}
    return Models(
        whisper=str(build_tiny_whisper(folder / "whisper")),
        text_encoder=str(build_tiny_text_encoder(folder / "bert", hidden_size=args.text_hidden)),
        emotion=str(build_tiny_emotion_model(folder / args.mode, mode=args.mode, **sizes)),
        emotion_audio=str(build_tiny_emotion_model(folder / "audio", mode="audio", **sizes)),
        audio_mode="audio",
        mode=args.mode,
        tiny=True,
    )


def resolve_given(args: argparse.Namespace) -> Models:
    from speech_emotion.sources import resolve_model

    emotion = str(resolve_model(args.emotion_model).path)
    return Models(
        whisper=str(resolve_model(args.whisper_model, whisper=True).path),
        text_encoder=str(resolve_model(args.text_encoder).path),
        emotion=emotion,
        # One checkpoint has one mode; levers 3 and 5 then also run its text branch.
        emotion_audio=emotion,
        audio_mode=args.mode,
        mode=args.mode,
        tiny=False,
    )


def describe(models: Models, args: argparse.Namespace) -> str:
    from transformers import AutoConfig

    audio = AutoConfig.from_pretrained(models.emotion)
    text = AutoConfig.from_pretrained(models.text_encoder)
    whisper = "tiny random Whisper (tiny_models' fixed size; --hidden does not change it)"
    if not models.tiny:
        whisper = f"Whisper {args.whisper_model}"
    kind = "tiny random" if models.tiny else "given"
    return (
        f"{whisper}; {kind} Wav2Vec2-BERT {audio.hidden_size}-d, {audio.num_hidden_layers} "
        f"layers, {audio.num_attention_heads} heads; {kind} BERT {text.hidden_size}-d, "
        f"{text.num_hidden_layers} layers, {text.max_position_embeddings} positions"
    )


def low_precision(device: str):
    """What the job runs on ``device`` besides fp32: bf16, or fp16 on GPUs without bf16."""
    import torch

    if device == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def classifier(
    model_dir: str, mode: str, models: Models, device: str, dtype=None, **batching: float
):
    import torch

    from speech_emotion.emotion import EmotionClassifier

    return EmotionClassifier(
        model_dir,
        mode=mode,
        text_encoder_dir=models.text_encoder if mode != "audio" else None,
        device=device,
        dtype=dtype or torch.float32,
        max_batch_clips=BATCH,
        **batching,
    )


# -- timing ------------------------------------------------------------------------------------


def compare(before: Callable[[], Any], after: Callable[[], Any], repeats: int):
    """Best-of-``repeats`` seconds and the outputs of each variant.

    The two alternate, so a slow spell on the shared machine hits both; the minimum is the run
    least disturbed by other work.
    """
    times: tuple[list[float], list[float]] = ([], [])
    outputs: list[Any] = [None, None]
    for _ in range(repeats):
        for i, run in enumerate((before, after)):
            started = time.perf_counter()
            outputs[i] = run()
            times[i].append(time.perf_counter() - started)
    return min(times[0]), min(times[1]), outputs[0], outputs[1]


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def same_texts(a: Sequence, b: Sequence) -> str:
    same = sum(x.text == y.text for x, y in zip(a, b, strict=True))
    return f"{same}/{len(a)} transcripts identical"


def same_labels(a: np.ndarray, b: np.ndarray) -> str:
    top = int((a.argmax(axis=1) == b.argmax(axis=1)).sum())
    return f"max abs diff p {max_diff(a, b):.1e}; top label {top}/{len(a)}"


# -- the levers --------------------------------------------------------------------------------


def transcriber(models: Models, args: argparse.Namespace, compute_type: str, batch_size: int):
    from speech_emotion.asr import WhisperTranscriber

    return WhisperTranscriber(
        models.whisper,
        device=args.device,
        compute_type=compute_type,
        batch_size=batch_size,
        cpu_threads=args.threads,
    )


def transcribe(whisper, clips: list[np.ndarray]) -> Callable[[], list]:
    return lambda: whisper.transcribe(clips, [LANGUAGE] * len(clips))


def lever_whisper_batch(models: Models, args: argparse.Namespace, clips: list) -> Row:
    # "default" is what the job asks CTranslate2 for, so this lever runs at the job's precision.
    one, sixteen = (transcriber(models, args, "default", size) for size in (1, BATCH))
    for whisper in (one, sixteen):
        transcribe(whisper, clips[:WARM_CLIPS])()
    t_before, t_after, out_before, out_after = compare(
        transcribe(one, clips), transcribe(sixteen, clips), args.repeats
    )
    audio_s = seconds_of(clips)
    return Row(
        "1. Whisper batched across clips",
        "batch_size=1",
        f"batch_size={BATCH}",
        "audio-s/s",
        audio_s / t_before,
        audio_s / t_after,
        same_texts(out_before, out_after),
        f"how many times more audio Whisper transcribes per second when {BATCH} clips share one "
        "CTranslate2 encode and generate instead of one call each (compute type 'default', "
        # The library does not expose what 'default' resolved to; the reader needs it.
        f"{sixteen._model.model.compute_type} here).",
    )


def lever_compute_type(models: Models, args: argparse.Namespace, clips: list) -> Row:
    exact, quantized = ("float16", "int8_float16") if args.device == "cuda" else ("float32", "int8")
    slow, fast = (transcriber(models, args, kind, BATCH) for kind in (exact, quantized))
    for whisper in (slow, fast):
        transcribe(whisper, clips[:WARM_CLIPS])()
    t_before, t_after, out_before, out_after = compare(
        transcribe(slow, clips), transcribe(fast, clips), args.repeats
    )
    audio_s = seconds_of(clips)
    return Row(
        "2. CTranslate2 compute type",
        f'compute_type="{exact}"',
        f'compute_type="{quantized}"',
        "audio-s/s",
        audio_s / t_before,
        audio_s / t_after,
        same_texts(out_before, out_after),
        f"Whisper's speed with {quantized} weights relative to {exact}, batch {BATCH}; "
        "the outputs column counts the transcripts quantisation leaves unchanged.",
    )


def lever_sorting(models: Models, args: argparse.Namespace, clips: list, texts: list) -> Row:
    import torch

    from speech_emotion.features import audio_features

    # No frame budget: with it the sorted side would also split batches, which is lever 5.
    model = classifier(
        models.emotion_audio, models.audio_mode, models, args.device, max_batch_padded_s=np.inf
    )
    needs_text = model.needs_text
    # Features as the decode stage sends them, so that both sides time the model alone.
    features = [audio_features(model.feature_spec, clip) for clip in clips]

    def input_order() -> np.ndarray:
        # The unsorted baseline of the same forward pass: _logits is exactly what classify runs
        # per micro-batch, here fed consecutive chunks of BATCH clips as they come.
        probabilities = []
        for start in range(0, len(clips), BATCH):
            chunk_texts = texts[start : start + BATCH] if needs_text else None
            logits = model._logits(features[start : start + BATCH], chunk_texts)
            probabilities.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        return np.concatenate(probabilities)

    def by_length() -> np.ndarray:
        return model.classify(None, texts if needs_text else None, features=features)

    model.classify(clips[:WARM_CLIPS], texts[:WARM_CLIPS] if needs_text else None)
    t_before, t_after, out_before, out_after = compare(input_order, by_length, args.repeats)
    audio_s = seconds_of(clips)
    return Row(
        "3. clips sorted by length (emotion model)",
        f"chunks of {BATCH} in input order",
        "length-sorted micro_batches",
        "audio-s/s",
        audio_s / t_before,
        audio_s / t_after,
        same_labels(out_before, out_after),
        "speed-up of grouping clips of similar length, so each micro-batch pads to a near "
        f"length rather than the longest of {BATCH} clips in arrival order (mode "
        f"{models.audio_mode}, no frame budget).",
    )


def lever_padding(models: Models, args: argparse.Namespace, texts: list) -> Row:
    import torch

    from speech_emotion.emotion import TEXT_MAX_TOKENS, TextEncoder

    encoder = TextEncoder(
        models.text_encoder, device=args.device, dtype=torch.float32, source="bench"
    )
    batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]

    @torch.inference_mode()
    def to_max_length() -> np.ndarray:
        vectors = []
        for batch in batches:
            tokens = encoder.tokenizer(
                batch,
                padding="max_length",
                truncation=True,
                max_length=TEXT_MAX_TOKENS,
                return_tensors="pt",
            ).to(args.device)
            vectors.append(encoder.model(**tokens).last_hidden_state[:, 0].float().cpu())
        return torch.cat(vectors).numpy()

    def to_longest() -> np.ndarray:
        return torch.cat([encoder.encode(batch).float().cpu() for batch in batches]).numpy()

    encoder.encode(batches[0][:WARM_CLIPS])
    t_before, t_after, out_before, out_after = compare(to_max_length, to_longest, args.repeats)
    ids = encoder.tokenizer(texts)["input_ids"]
    lengths = [len(row) for row in ids]
    # Cost depends on token counts only, but a tokenizer that knows no word says so here.
    unknown = np.mean([np.mean(np.equal(row, encoder.tokenizer.unk_token_id)) for row in ids])
    padded = np.mean([max(lengths[i : i + BATCH]) for i in range(0, len(lengths), BATCH)])
    return Row(
        "4. BERT padding",
        f'padding="max_length", {TEXT_MAX_TOKENS} tokens',
        "padding=True (longest in batch)",
        "texts/s",
        len(texts) / t_before,
        len(texts) / t_after,
        f"max abs diff [CLS] {max_diff(out_before, out_after):.1e}",
        f"speed-up of padding each batch of {BATCH} texts to its longest instead of "
        f"{TEXT_MAX_TOKENS} tokens: texts of 5-60 words averaged {np.mean(lengths):.0f} tokens, "
        f"batches padded to {padded:.0f} on average ({unknown:.0%} of tokens [UNK]).",
    )


def budget_child(spec: dict[str, Any], budget_s: float) -> dict[str, Any]:
    """One lever-5 variant in a fresh process: peak memory (MB) above the start, and seconds."""
    import torch

    torch.set_num_threads(spec["threads"])
    models: Models = spec["models"]
    device = spec["device"]
    model = classifier(
        models.emotion_audio,
        models.audio_mode,
        models,
        device,
        max_batch_padded_s=budget_s,
    )
    clips = make_clips(BATCH, spec["min_s"], spec["max_s"], spec["seed"])
    texts = spec["texts"] if model.needs_text else None
    model.classify([c[:RATE] for c in clips[:WARM_CLIPS]], texts[:WARM_CLIPS] if texts else None)
    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        start_mb = torch.cuda.memory_allocated() / 2**20
    else:
        # Resets the kernel's high-water mark (VmHWM, what ru_maxrss reports), so the peak below
        # is this run's, not model loading's.
        Path("/proc/self/clear_refs").write_text("5")
        start_mb = _status_mb("VmRSS")
    started = time.perf_counter()
    probabilities = model.classify(clips, texts)
    seconds = time.perf_counter() - started
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = _status_mb("VmHWM")
    return {
        "added_mb": peak_mb - start_mb,
        "peak_mb": peak_mb,
        "seconds": seconds,
        "audio_s": seconds_of(clips),
        "batches": len(_groups(model, clips)),
        "probabilities": probabilities,
    }


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _groups(model, clips: list[np.ndarray]) -> list[np.ndarray]:
    from speech_emotion.emotion import micro_batches

    return micro_batches([len(c) for c in clips], BATCH, model.max_batch_padded_s * RATE)


def lever_budget(models: Models, args: argparse.Namespace, texts: list) -> list[Row]:
    from speech_emotion.emotion import EmotionClassifier

    default_s = inspect.signature(EmotionClassifier).parameters["max_batch_padded_s"].default
    spec = {
        "models": models,
        "device": args.device,
        "threads": args.threads,
        "min_s": LONG_MIN_S * args.long_scale,
        "max_s": LONG_MAX_S * args.long_scale,
        "seed": args.seed + 1,
        "texts": texts[:BATCH],
    }
    # Clips and budget scale together, so each batch holds as many clips as at full scale.
    budget_s = default_s * args.long_scale
    spawn = multiprocessing.get_context("spawn")
    results = []
    for budget in (np.inf, budget_s):
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
            results.append(child.submit(budget_child, spec, budget).result())
    fixed, budgeted = results
    memory = "CUDA allocated" if args.device == "cuda" else "RSS"
    scale = (
        f"clips of {spec['min_s']:g}-{spec['max_s']:g} s and a {budget_s:g} s budget "
        f"({args.long_scale:g} x the job's 60-160 s and {default_s:g} s"
        ", the same clips per batch)"
    )
    before = f"{BATCH} clips per batch (budget off)"
    after = f"padded-seconds budget ({budget_s:g} s)"
    agreement = same_labels(fixed["probabilities"], budgeted["probabilities"])
    return [
        Row(
            "5. frame budget: peak memory",
            f"{before}, {fixed['batches']} batch(es)",
            f"{after}, {budgeted['batches']} batch(es)",
            f"peak {memory} MB above start",
            fixed["added_mb"],
            budgeted["added_mb"],
            agreement,
            f"the budget's peak {memory} growth during the run as a fraction of a fixed "
            f"{BATCH}-clip batch's (absolute peaks {fixed['peak_mb']:.0f} and "
            f"{budgeted['peak_mb']:.0f} MB), each in a fresh process; {BATCH} {scale}.",
        ),
        Row(
            "5. frame budget: time",
            before,
            after,
            "audio-s/s",
            fixed["audio_s"] / fixed["seconds"],
            budgeted["audio_s"] / budgeted["seconds"],
            agreement,
            "what the smaller batches cost or save in speed on the same clips (one run each).",
        ),
    ]


def lever_precision(models: Models, args: argparse.Namespace, clips: list, texts: list) -> Row:
    import torch

    low = low_precision(args.device)
    full = classifier(models.emotion, models.mode, models, args.device)
    half = classifier(models.emotion, models.mode, models, args.device, low)
    batch_texts = texts if full.needs_text else None
    for model in (full, half):
        model.classify(clips[:WARM_CLIPS], batch_texts[:WARM_CLIPS] if batch_texts else None)
    t_before, t_after, out_before, out_after = compare(
        lambda: full.classify(clips, batch_texts),
        lambda: half.classify(clips, batch_texts),
        args.repeats,
    )
    audio_s = seconds_of(clips)
    name = str(low).removeprefix("torch.")
    return Row(
        "6. emotion model precision",
        "torch.float32",
        f"torch.{name}",
        "audio-s/s",
        audio_s / t_before,
        audio_s / t_after,
        same_labels(out_before, out_after),
        f"speed of the whole emotion model (mode {models.mode}, text encoder included) in {name} "
        f"relative to float32 on {args.device}, {torch.get_num_threads()} torch thread(s).",
    )


def features_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Lever 7 in a fresh process whose numpy has one model worker's threads.

    numpy's BLAS (Whisper's log-mel) reads OMP_NUM_THREADS at import, as in a Ray worker; this
    process's own numpy has every core.
    """
    import torch

    from speech_emotion.features import audio_features

    torch.set_num_threads(spec["threads"])
    models: Models = spec["models"]
    args = argparse.Namespace(device=spec["device"], threads=spec["threads"])
    # The batches the job runs on this device (models._model_batch): one clip at a time on CPU.
    batch = BATCH if spec["device"] == "cuda" else 1
    whisper = transcriber(models, args, "default", batch)
    model = classifier(models.emotion, models.mode, models, spec["device"])
    model.max_batch_clips = batch
    clips, languages = spec["clips"], [LANGUAGE] * len(spec["clips"])
    mels = [whisper.feature_spec.log_mel(c) for c in clips]
    features = [audio_features(model.feature_spec, c) for c in clips]

    def from_waveforms():
        texts = [t.text for t in whisper.transcribe(clips, languages)]
        return texts, model.classify(clips, texts)

    def from_features():
        empty = [c[:0] for c in clips]
        texts = [t.text for t in whisper.transcribe(empty, languages, features=mels)]
        return texts, model.classify(None, texts, features=features)

    from_waveforms(), from_features()  # warm-up
    t_before, t_after, out_before, out_after = compare(
        from_waveforms, from_features, spec["repeats"]
    )
    return {"before": t_before, "after": t_after, "outputs": (out_before, out_after)}


def lever_features(models: Models, args: argparse.Namespace, clips: list) -> Row:
    spec = {
        "models": models,
        "device": args.device,
        "threads": args.threads,
        "clips": clips,
        "repeats": args.repeats,
    }
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by the child's numpy
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            result = child.submit(features_child, spec).result()
    finally:
        del os.environ["OMP_NUM_THREADS"]
    (texts_before, p_before), (texts_after, p_after) = result["outputs"]
    same = sum(a == b for a, b in zip(texts_before, texts_after, strict=True))
    audio_s = seconds_of(clips)
    return Row(
        "7. features computed before the model worker",
        "from waveforms (log-mel and fbank in the worker)",
        "from the decode workers' features",
        "audio-s/s",
        audio_s / result["before"],
        audio_s / result["after"],
        f"{same}/{len(clips)} transcripts identical; {same_labels(p_before, p_after)}",
        f"how much faster the model worker (Whisper, then the {models.mode} model) gets when "
        "Whisper's log-mel and the emotion model's fbank come with the batch instead of being "
        f"computed between model calls; on {args.device} with {args.threads} thread(s), in a "
        "process limited to as many BLAS threads, batches as the job makes them there.",
    )


# -- report ------------------------------------------------------------------------------------


def report(args: argparse.Namespace, models: Models, clips: list, rows: list[Row]) -> str:
    command = "python benchmarks/levers.py " + shlex.join(sys.argv[1:])
    lines = [
        f"Latest run: `{command.strip()}` on {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, device {args.device}, {args.threads} thread(s) for torch and "
        f"CTranslate2, best of {args.repeats} run(s) per variant.",
        "",
        f"Models: {describe(models, args)}.",
        "",
        f"Clips: {len(clips)} of {MIN_S:g}-{MAX_S:g} s ({seconds_of(clips) / 60:.1f} min, seed "
        f"{args.seed}), tones plus noise at 16 kHz in memory; texts: one random 5-60 word "
        "string per clip. No Ray, no S3, no decoding: the models alone.",
        "",
        "| lever | before | after | unit | before | after | after / before | outputs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.lever} | {r.before} | {r.after} | {r.unit} | {r.before_value:.1f} "
            f"| {r.after_value:.1f} | **{r.after_value / r.before_value:.2f}** | {r.agreement} |"
        )
    lines += ["", "What each ratio means:", ""]
    lines += [f"- **{r.lever}**: {r.meaning}" for r in rows]
    return "\n".join(lines)


def write_results(markdown: str) -> None:
    text = RESULTS.read_text()
    if START not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    RESULTS.write_text(f"{head}{START}\n{markdown}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=256, help="tiny Wav2Vec2-BERT width")
    parser.add_argument("--text-hidden", type=int, default=256, help="tiny BERT width")
    parser.add_argument(
        "--mode",
        default="concat",
        choices=["audio", "concat", "mean", "multihead"],
        help="emotion mode for lever 6, and of a given --emotion-model",
    )
    parser.add_argument("--emotion-model")
    parser.add_argument("--text-encoder")
    parser.add_argument("--whisper-model")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="one model worker's CPUs")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant")
    parser.add_argument(
        "--long-scale",
        type=float,
        default=0.2,
        help="lever 5: clip lengths and budget as a fraction of 60-160 s and the default budget; "
        "1 needs tens of GB at 16 clips",
    )
    parser.add_argument("--levers", default="1,2,3,4,5,6,7", help="which, comma-separated")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    given = [args.emotion_model, args.text_encoder, args.whisper_model]
    if any(given) and not all(given):
        parser.error("give all of --emotion-model, --text-encoder, --whisper-model, or none")

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    wanted = set(args.levers.split(","))
    with tempfile.TemporaryDirectory(prefix="se-levers-") as work:
        models = resolve_given(args) if all(given) else build_tiny(Path(work), args)
        clips = make_clips(args.clips, MIN_S, MAX_S, args.seed)
        texts = make_texts(args.clips, args.seed)
        print(f"{len(clips)} clips, {seconds_of(clips) / 60:.1f} min of audio", flush=True)
        levers: dict[str, Callable[[], Row | list[Row]]] = {
            "1": lambda: lever_whisper_batch(models, args, clips),
            "2": lambda: lever_compute_type(models, args, clips),
            "3": lambda: lever_sorting(models, args, clips, texts),
            "4": lambda: lever_padding(models, args, texts),
            "5": lambda: lever_budget(models, args, texts),
            "6": lambda: lever_precision(models, args, clips, texts),
            "7": lambda: lever_features(models, args, clips),
        }
        rows: list[Row] = []
        for key, lever in levers.items():
            if key not in wanted:
                continue
            started = time.perf_counter()
            measured = lever()
            rows += measured if isinstance(measured, list) else [measured]
            gc.collect()  # models of one lever go before the next loads its own
            print(f"  lever {key}: {time.perf_counter() - started:.1f} s", flush=True)
        markdown = report(args, models, clips, rows)
    print(markdown)
    if not args.no_write:
        write_results(markdown)
        print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
