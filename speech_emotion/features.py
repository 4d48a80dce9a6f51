"""The emotion model's input features, computed clip by clip so a CPU worker can make them.

numpy only at import: the decode stage and the driver import this, and neither loads a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "FEATURE_EXTRACTOR_KWARGS",
    "FRAMES_PER_S",
    "ClipFeatures",
    "audio_features",
    "stack_features",
]

# Exactly the toolkit's call. max_length counts 10 ms fbank frames: clips are cut at 160 s, after
# the per-bin normalisation over the whole clip.
FEATURE_EXTRACTOR_KWARGS = {
    "sampling_rate": 16000,
    "max_length": 16000,
    "truncation": True,
    "padding": True,
    "pad_to_multiple_of": 2,
    "return_attention_mask": True,
    "return_tensors": "pt",
}
# The same call returning numpy, for one clip at a time.
_ONE_CLIP = {**FEATURE_EXTRACTOR_KWARGS, "return_tensors": "np"}
# Model input frames per second of audio: 10 ms fbank frames, stacked in pairs.
FRAMES_PER_S = 50
# fbank frames: 25 ms windows every 10 ms at 16 kHz, no centring.
_WINDOW, _HOP = 400, 160
# Past the toolkit's 160 s cut only statistics are needed: fbank in pieces of this many frames
# keeps a 30-minute file from holding 1.2 GB of spectrogram at once.
_CHUNK_FRAMES = 6000

ClipFeatures = tuple[np.ndarray, int]
"""One clip's model input: features [frames, 160] and how many leading frames are valid."""


def audio_features(extractor, waveform: np.ndarray) -> ClipFeatures:
    """One clip's input features: exactly its rows of the toolkit's batched extractor output.

    ``extractor`` is the model's ``SeamlessM4TFeatureExtractor``. It normalises each clip over the
    clip's own frames, so nothing but padding depends on the other clips in a batch, and
    :func:`stack_features` adds that. An odd frame count ends in a pair holding one padding frame,
    which the extractor masks out: hence the valid count.
    """
    keep = FEATURE_EXTRACTOR_KWARGS["max_length"]
    frames = 1 + (len(waveform) - _WINDOW) // _HOP
    if frames > keep:
        return _past_the_cut(extractor, waveform, frames, keep)
    out = extractor(waveform, **_ONE_CLIP)
    return out["input_features"][0], int(out["attention_mask"][0].sum())


def _past_the_cut(extractor, waveform: np.ndarray, frames: int, keep: int) -> ClipFeatures:
    """The extractor's numbers for a clip longer than ``keep`` frames, without its peak memory.

    The extractor builds the whole clip's spectrogram at once (1.2 GB for 30 minutes) to
    normalise each mel bin over the clip, then cuts. Frames are independent, so the fbank is
    computed a chunk at a time into one [frames, 80] array (58 MB for 30 minutes), and the
    statistics are taken on it with the same numpy calls: the same numbers, to the bit (tested).
    """
    fbank = np.concatenate(
        [
            # The extractor's own fbank (private, but it is the exact computation to repeat).
            extractor._extract_fbank_features(
                waveform[first * _HOP : (min(first + _CHUNK_FRAMES, frames) - 1) * _HOP + _WINDOW]
            )
            for first in range(0, frames, _CHUNK_FRAMES)
        ]
    )
    mean = np.expand_dims(fbank.mean(0), 0)
    var = np.expand_dims(fbank.var(0, ddof=1), 0)
    normalised = (fbank[:keep] - mean) / np.sqrt(var + 1e-7)
    return normalised.reshape(keep // extractor.stride, -1), keep // extractor.stride


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
