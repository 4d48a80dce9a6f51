"""Loading the configured models onto the configured device: shared by the model stage and the
one-file API, so both run exactly the same models the same way."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import ModelConfig
from .sources import ResolvedModel, resolve_model

if TYPE_CHECKING:
    import torch

    from .asr import WhisperTranscriber
    from .emotion import EmotionClassifier

__all__ = ["Device", "resolve_device", "load_classifier", "load_transcriber"]

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Device:
    torch_device: str
    torch_dtype: torch.dtype
    whisper_compute_type: str
    int8: bool = False
    """The emotion model's Linear layers dynamically quantised to int8 (CPU only)."""


def resolve_device(config: ModelConfig) -> Device:
    """CUDA when configured or available, half precision there; fp32 and int8 on CPU."""
    import torch

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = config.precision
    if precision == "int8" and device == "cuda":
        # Asked for a CPU run, but this actor has a GPU (--device auto): what CUDA runs best.
        logger.warning("--precision int8 is for CPU; on CUDA the emotion model runs in half")
        precision = "auto"
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    # "default" lets CTranslate2 pick: float16 on CUDA, int8 on CPU.
    compute = "default" if config.whisper_compute_type == "auto" else config.whisper_compute_type
    if precision == "int8":
        return Device(device, torch.float32, compute, int8=True)
    return Device(device, getattr(torch, _DTYPES[precision]), compute)


def _model_batch(device: Device, batch_size: int) -> int:
    """Clips per forward pass: batches fill a GPU, but on a CPU they only add padding (a 30 s
    window per clip in Whisper's encoder, the longest clip for the emotion model), so one clip
    at a time is faster there (benchmarks/levers.py, docs/benchmarks.md)."""
    return batch_size if device.torch_device == "cuda" else 1


def load_classifier(
    config: ModelConfig,
    device: Device,
    *,
    language: str | None = None,
    batch_size: int = 16,
    emotion_revision: str | None = None,
    text_encoder_revision: str | None = None,
) -> tuple[EmotionClassifier, ResolvedModel, ResolvedModel | None]:
    """The emotion classifier of ``language``'s models (default: the job language's)."""
    from .emotion import EmotionClassifier

    models = config.model_set(language)
    emotion = resolve_model(
        models.emotion_model, revision=emotion_revision, cache_dir=config.cache_dir
    )
    encoder = None
    if models.text_encoder:
        encoder = resolve_model(
            models.text_encoder, revision=text_encoder_revision, cache_dir=config.cache_dir
        )
    classifier = EmotionClassifier(
        emotion.path,
        mode=config.mode,
        text_encoder_dir=encoder.path if encoder else None,
        device=device.torch_device,
        dtype=device.torch_dtype,
        int8=device.int8,
        max_batch_clips=_model_batch(device, batch_size),
        model_source=emotion.source,
        text_encoder_source=encoder.source if encoder else None,
    )
    return classifier, emotion, encoder


def load_transcriber(
    config: ModelConfig,
    device: Device,
    *,
    batch_size: int = 16,
    cpu_threads: int = 0,
    revision: str | None = None,
    windows_at_once: bool = False,
) -> tuple[WhisperTranscriber, ResolvedModel]:
    """Whisper on ``cpu_threads`` threads (0: one per core). ``windows_at_once``: on a CPU, the
    windows of a call run side by side, one thread each, rather than one after another on all
    the threads: CTranslate2 gains little from a second thread on one window, and two windows
    on a thread each ran 1.6 times as fast on two cores (docs/benchmarks.md)."""
    from .asr import WhisperTranscriber

    whisper = resolve_model(
        config.whisper_model, whisper=True, revision=revision, cache_dir=config.cache_dir
    )
    # CTranslate2's own default is 4 threads, whatever the machine: on 2 cores that made a
    # one-file loop 7x slower (docs/benchmarks.md).
    threads = cpu_threads or len(os.sched_getaffinity(0))
    workers = threads if windows_at_once and device.torch_device == "cpu" else 1
    transcriber = WhisperTranscriber(
        str(whisper.path),
        device=device.torch_device,
        compute_type=device.whisper_compute_type,
        batch_size=_model_batch(device, batch_size),
        beam_size=config.beam_size,
        cpu_threads=threads // workers,
        workers=workers,
    )
    return transcriber, whisper
