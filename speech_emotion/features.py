"""The models' input features, computed clip by clip so a CPU worker can make them.

The emotion model's fbank features and Whisper's log-mel spectrogram, each exactly as the model's
own extractor computes them, so that the accelerator's worker gets features instead of samples.
numpy only at import: the decode stage and the driver import this, and neither loads a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import ModelLoadError

__all__ = [
    "FEATURE_EXTRACTOR_KWARGS",
    "FRAMES_PER_S",
    "ClipFeatures",
    "FeatureSpec",
    "WhisperFeatureSpec",
    "audio_features",
    "fbank",
    "stack_features",
    "whisper_features",
]

# Exactly the toolkit's call. max_length counts 10 ms fbank frames: clips are cut at 160 s, after
# the per-bin normalisation over the whole clip.
_RATE = 16000
FEATURE_EXTRACTOR_KWARGS = {
    "sampling_rate": _RATE,
    "max_length": 16000,
    "truncation": True,
    "padding": True,
    "pad_to_multiple_of": 2,
    "return_attention_mask": True,
    "return_tensors": "pt",
}
# Model input frames per second of audio: 10 ms fbank frames, stacked in pairs.
FRAMES_PER_S = 50
# The arguments SeamlessM4TFeatureExtractor._extract_fbank_features passes to transformers'
# spectrogram (Kaldi-style fbank): 25 ms windows every 10 ms at 16 kHz, no centring.
_WINDOW, _HOP, _FFT = 400, 160, 512
_PREEMPHASIS = 0.97
_MEL_FLOOR = 1.192092955078125e-07
# fbank frames computed at once, without changing any value: 256 frames of float64 temporaries
# (0.8 MB each) stay in a core's cache, which made a 12 s clip 2.8x faster than 6,000 at once
# (3.5 against 9.6 ms), and a 30-minute file no longer holds a gigabyte of them.
_CHUNK_FRAMES = 256

ClipFeatures = tuple[np.ndarray, int]
"""One clip's model input: features [frames, 160] and how many leading frames are valid."""


@dataclass(frozen=True)
class FeatureSpec:
    """The settings of the model's ``SeamlessM4TFeatureExtractor`` that its features depend on.

    The extractor itself imports torch: 150 MB and a second of start-up in every decode worker,
    which has no other use for it. The spec is small to ship to workers; each builds the window
    and filters when it first needs them.
    """

    num_mel_bins: int = 80
    """Mel bins per 10 ms fbank frame."""
    stride: int = 2
    """fbank frames stacked into one model input frame."""
    padding_value: float = 0.0
    """Value of padded frames."""

    @classmethod
    def from_config(cls, preprocessor_config: bytes | str, model: str) -> FeatureSpec:
        """The spec a model's ``preprocessor_config.json`` describes.

        A config that is not JSON, or is for another extractor or sampling rate (which these
        features would silently get wrong), is a :class:`ModelLoadError` naming ``model``.
        """
        config = _read_config(preprocessor_config, model)
        kind = config.get("feature_extractor_type", "SeamlessM4TFeatureExtractor")
        if kind != "SeamlessM4TFeatureExtractor":
            raise ModelLoadError(
                f"model {model!r}: preprocessor_config.json names {kind}; "
                "expected a SeamlessM4TFeatureExtractor (a Wav2Vec2-BERT checkpoint)"
            )
        _check_rate(config.get("sampling_rate", _RATE), model)
        return cls(**_fields_of(cls, config))

    # transformers.audio_utils' window_function and mel_filter_bank, restated with the same numpy
    # calls in the same order (tested equal to the bit against the extractor's own): importing
    # transformers costs each decode worker a second of CPU and 18 MB, for two small arrays.
    @cached_property
    def window(self) -> np.ndarray:
        """The 400-sample Povey window (symmetric: ``periodic=False``)."""
        return np.power(np.hanning(_WINDOW), 0.85)

    @cached_property
    def mel_filters(self) -> np.ndarray:
        """[257 frequency bins, mel bins] Kaldi-scale filters from 20 Hz to 8 kHz, no
        normalisation, triangular in mel space."""
        mel_freqs = np.linspace(_kaldi_mel(20.0), _kaldi_mel(_RATE // 2), self.num_mel_bins + 2)
        bins = _FFT // 2 + 1
        fft_freqs = _kaldi_mel(_RATE / ((bins - 1) * 2) * np.arange(bins))
        filter_diff = np.diff(mel_freqs)
        slopes = np.expand_dims(mel_freqs, 0) - np.expand_dims(fft_freqs, 1)
        down_slopes = -slopes[:, :-2] / filter_diff[:-1]
        up_slopes = slopes[:, 2:] / filter_diff[1:]
        return np.maximum(np.zeros(1), np.minimum(down_slopes, up_slopes))


def _kaldi_mel(hertz: float | np.ndarray) -> float | np.ndarray:
    return 1127.0 * np.log(1.0 + (hertz / 700.0))


def _read_config(preprocessor_config: bytes | str, model: str) -> dict:
    unreadable = f"model {model!r}: preprocessor_config.json is unreadable"
    try:
        config = json.loads(preprocessor_config)
    except ValueError as exc:
        raise ModelLoadError(f"{unreadable}: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{unreadable}: not a JSON object")
    return config


def _check_rate(rate: int, model: str) -> None:
    if rate != _RATE:
        raise ModelLoadError(
            f"model {model!r}: preprocessor_config.json has sampling_rate {rate}; "
            f"clips are decoded at {_RATE} Hz"
        )


def _fields_of(cls, config: dict) -> dict:
    """The config's values for the dataclass's fields; other keys are other components'."""
    return {name: config[name] for name in cls.__dataclass_fields__ if name in config}


def audio_features(spec: FeatureSpec, waveform: np.ndarray) -> ClipFeatures:
    """One clip's input features: exactly its rows of the toolkit's batched extractor output.

    Repeats the steps of the extractor's ``__call__`` with the same numpy calls (tested to the
    bit against it): fbank, normalisation of each mel bin over the whole clip, the cut at
    ``max_length`` frames, padding to an even count, pairs of frames stacked. Normalisation is
    per clip, so nothing but padding depends on the other clips in a batch, and
    :func:`stack_features` adds that. An odd frame count ends in a pair holding one padding frame,
    which the extractor masks out: hence the valid count.
    """
    x = fbank(spec, waveform)
    mean = np.expand_dims(x.mean(0), 0)
    var = np.expand_dims(x.var(0, ddof=1), 0)
    x = (x[: FEATURE_EXTRACTOR_KWARGS["max_length"]] - mean) / np.sqrt(var + 1e-7)
    frames, stride = len(x), spec.stride
    padded = -frames % stride
    if padded:
        x = np.concatenate([x, np.full((padded, x.shape[1]), spec.padding_value, x.dtype)])
    return x.reshape(len(x) // stride, -1), frames // stride


def fbank(spec: FeatureSpec, waveform: np.ndarray) -> np.ndarray:
    """The extractor's ``_extract_fbank_features``, every frame at once: [frames, mel bins].

    transformers computes the spectrogram one frame at a time in a Python loop. The same float64
    operations on all frames of a chunk at once give the same numbers to the bit (tested), in a
    third of the time (benchmarks/stage_costs.py: 1.13 against 0.34 CPU-ms per audio-second).
    """
    frames = 1 + (len(waveform) - _WINDOW) // _HOP
    window = spec.window.astype(np.float64)
    return np.concatenate(
        [
            _fbank_frames(
                waveform[first * _HOP : (min(first + _CHUNK_FRAMES, frames) - 1) * _HOP + _WINDOW],
                window,
                spec.mel_filters,
            )
            for first in range(0, frames, _CHUNK_FRAMES)
        ]
    )


def _fbank_frames(samples: np.ndarray, window: np.ndarray, mel_filters: np.ndarray) -> np.ndarray:
    # Kaldi's scale (16-bit integers), in float32 as the extractor scales, then float64.
    scaled = (samples * (2**15)).astype(np.float64)
    frames = sliding_window_view(scaled, _WINDOW)[::_HOP]
    frames = frames - frames.mean(axis=1, keepdims=True)  # remove_dc_offset
    frames[:, 1:] -= _PREEMPHASIS * frames[:, :-1]
    frames[:, 0] *= 1 - _PREEMPHASIS
    frames *= window
    # The extractor stores the spectrum as complex64 before taking its power in float64.
    spectrum = np.fft.rfft(frames, n=_FFT, axis=1).astype(np.complex64)
    power = np.abs(spectrum, dtype=np.float64) ** 2.0
    mel = np.maximum(_MEL_FLOOR, np.dot(mel_filters.T, power.T))
    return np.asarray(np.log(mel), np.float32).T


def stack_features(
    clips: Sequence[ClipFeatures], padding_value: float
) -> tuple[np.ndarray, np.ndarray]:
    """``input_features`` and ``attention_mask`` as the extractor pads the same clips together."""
    longest = max(len(features) for features, _ in clips)
    width = clips[0][0].shape[1]
    stacked = np.full((len(clips), longest, width), padding_value, dtype=np.float32)
    mask = np.zeros((len(clips), longest), dtype=np.int32)
    for row, (features, valid) in enumerate(clips):
        stacked[row, : len(features)] = features
        mask[row, :valid] = 1
    return stacked, mask


@dataclass(frozen=True)
class WhisperFeatureSpec:
    """faster-whisper's ``FeatureExtractor`` settings, from the model's preprocessor_config.json.

    A model folder without one gets faster-whisper's defaults, as ``WhisperModel`` does.
    """

    feature_size: int = 80
    """Mel bins: 80, or 128 for large-v3 and large-v3-turbo."""
    sampling_rate: int = _RATE
    hop_length: int = 160
    chunk_length: int = 30
    """Seconds in Whisper's window; longer clips are transcribed from their samples."""
    n_fft: int = 400

    @classmethod
    def from_config(cls, preprocessor_config: bytes | None, model: str) -> WhisperFeatureSpec:
        """Keeps the keys ``FeatureExtractor`` takes, as faster-whisper does."""
        if preprocessor_config is None:
            return cls()
        spec = cls(**_fields_of(cls, _read_config(preprocessor_config, model)))
        _check_rate(spec.sampling_rate, model)
        return spec

    @property
    def max_samples(self) -> int:
        """The longest clip whose features fit one window."""
        return self.chunk_length * self.sampling_rate

    def log_mel(self, waveform: np.ndarray) -> np.ndarray | None:
        """The clip's :func:`whisper_features`, or None past one window: Whisper then decodes
        the samples window by window."""
        if len(waveform) > self.max_samples:
            return None
        return whisper_features(self.extractor, waveform)

    @cached_property
    def extractor(self):
        """The ``faster_whisper.feature_extractor.FeatureExtractor`` these settings make."""
        from faster_whisper.feature_extractor import FeatureExtractor

        return FeatureExtractor(**asdict(self))


def whisper_features(extractor, waveform: np.ndarray) -> np.ndarray:
    """Log-mel [mel bins, frames] of a clip that fits one window, as faster-whisper computes it.

    ``extractor`` is a faster-whisper ``FeatureExtractor``. Its last frame comes from the padding
    it appends, and faster-whisper drops it before padding the features to the window; so here.
    """
    return extractor(waveform)[:, :-1]
