"""Make small audio files in memory for tests, with in-process encoders only (no ffmpeg binary).

Encoders, and why each was chosen (checked against the PyAV 18 wheel's ``av.codecs_available``):

- ``wav``  PyAV ``pcm_s16le``; samples are quantised by :func:`pcm16` first, so a test can
  rebuild the exact PCM in the file as ``pcm16(x) / 32768``.
- ``flac`` PyAV ``flac`` from the same int16 samples, so it is lossless against ``pcm16``.
- ``mp3``  PyAV ``libmp3lame``; LAME accepts 8, 11.025, 12, 16, 22.05, 24, 32, 44.1 and 48 kHz.
- ``ogg``  Ogg Vorbis via soundfile (libsndfile's libvorbis). The wheel has no ``libvorbis`` and
  FFmpeg's own ``vorbis`` encoder is experimental and refuses anything but exactly 2 channels.
- ``opus`` Ogg Opus via PyAV ``libopus``, which only takes 8, 12, 16, 24 or 48 kHz: other rates
  are resampled to 48 kHz with soxr first. libsndfile decodes Opus back at that stored rate;
  FFmpeg would always decode at 48 kHz.
- ``m4a``  AAC in an MPEG-4 (``ipod``) container via PyAV's native ``aac`` encoder.

Lossy codecs add or keep padding (encoder delay, whole final frames), so decoded lengths differ
from the input by up to about one codec frame; :data:`PADDING_TOLERANCE_S` says how much.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import av
import numpy as np
import soundfile as sf
import soxr

__all__ = [
    "FORMATS",
    "LOSSLESS_FORMATS",
    "PADDING_TOLERANCE_S",
    "corrupt_bytes",
    "encode",
    "pcm16",
    "tone",
    "video_only",
]

FORMATS = ("wav", "flac", "mp3", "ogg", "opus", "m4a")
LOSSLESS_FORMATS = ("wav", "flac")

# How far a decoded duration may sit from the encoded one. AAC keeps up to one 1024-sample frame
# of tail padding (64 ms at 16 kHz, 128 ms at 8 kHz); the others trim their padding themselves.
PADDING_TOLERANCE_S = {
    "wav": 0.001,
    "flac": 0.001,
    "mp3": 0.03,
    "ogg": 0.03,
    "opus": 0.03,
    "m4a": 0.13,
}

_OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
_PYAV_AUDIO = {
    # fmt: (container format, codec, sample format fed to the encoder). Frames are always packed:
    # PyAV converts them to what the codec wants, and its planar from_ndarray breaks at 8 channels.
    "wav": ("wav", "pcm_s16le", "s16"),
    "flac": ("flac", "flac", "s16"),
    "mp3": ("mp3", "libmp3lame", "flt"),
    "opus": ("ogg", "libopus", "flt"),
    "m4a": ("ipod", "aac", "flt"),
}


def tone(
    duration_s: float,
    sample_rate_hz: int,
    channels: int = 1,
    freq_hz: float = 440.0,
    *,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A sine tone, float32, shaped ``[samples, channels]``, the same signal in every channel."""
    n = round(duration_s * sample_rate_hz)
    t = np.arange(n, dtype=np.float64) / sample_rate_hz
    mono = (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1)


def pcm16(samples: np.ndarray) -> np.ndarray:
    """The int16 PCM that ``encode(..., "wav"/"flac")`` writes for float ``samples``."""
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def encode(samples: np.ndarray, sample_rate_hz: int, fmt: str) -> bytes:
    """Encode ``[samples, channels]`` float audio as a whole file in format ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    samples = _as_2d(samples)
    if fmt == "ogg":
        return _encode_with_soundfile(samples, sample_rate_hz, "OGG", "VORBIS")
    if fmt == "opus" and sample_rate_hz not in _OPUS_RATES_HZ:
        samples = soxr.resample(samples, sample_rate_hz, 48000, quality="HQ")
        sample_rate_hz = 48000
    container_format, codec, sample_format = _PYAV_AUDIO[fmt]
    return _encode_with_pyav(samples, sample_rate_hz, container_format, codec, sample_format)


def corrupt_bytes() -> bytes:
    """Bytes that start like a WAV file but whose format chunk is nonsense, so nothing decodes.

    A valid WAV header in front of random bytes would decode (as noise), which is why the damage is
    in the header: the ``fmt`` chunk says 0 channels at 0 Hz in an unknown codec.
    """
    rng = np.random.default_rng(1234)
    garbage = rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    fmt_chunk = struct.pack("<4sIHHIIHH", b"fmt ", 16, 0x7A7A, 0, 0, 0, 0, 0)
    data_chunk = struct.pack("<4sI", b"data", len(garbage)) + garbage
    body = b"WAVE" + fmt_chunk + data_chunk
    return struct.pack("<4sI", b"RIFF", len(body)) + body


def video_only(duration_s: float = 0.2) -> bytes:
    """A Matroska file with a tiny video stream and no audio stream at all."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        mux_pictures(container, stream, max(1, round(duration_s * 10)))
    return buffer.getvalue()


def mux_pictures(container, stream, count: int) -> None:
    """``count`` 32x32 frames of growing grey into a video ``stream``, then its last packets."""
    for index in range(count):
        frame = av.VideoFrame.from_ndarray(
            np.full((32, 32, 3), index * 20, dtype=np.uint8), format="rgb24"
        )
        frame.pts = index
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def _as_2d(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] < 1:
        raise ValueError(f"expected [samples, channels], got shape {samples.shape}")
    return samples


def _encode_with_soundfile(
    samples: np.ndarray, sample_rate_hz: int, container: str, subtype: str
) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate_hz, format=container, subtype=subtype)
    return buffer.getvalue()


def _encode_with_pyav(
    samples: np.ndarray, sample_rate_hz: int, container_format: str, codec: str, sample_format: str
) -> bytes:
    channels = samples.shape[1]
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=sample_rate_hz, layout=layout)
        # Write the header now: with no samples nothing would be muxed and the file would be empty.
        container.start_encoding()
        if len(samples):
            frame = av.AudioFrame.from_ndarray(
                _frame_array(samples, sample_format), format=sample_format, layout=layout
            )
            frame.sample_rate = sample_rate_hz
            frame.pts = 0
            frame.time_base = Fraction(1, sample_rate_hz)
            # PyAV re-chunks one long frame into the codec's frame size itself.
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _frame_array(samples: np.ndarray, sample_format: str) -> np.ndarray:
    """One row of interleaved samples, the shape PyAV wants for packed formats."""
    if sample_format == "s16":
        return pcm16(samples).reshape(1, -1)
    return np.ascontiguousarray(samples.reshape(1, -1))
