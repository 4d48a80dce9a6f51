"""Decode audio bytes into 16 kHz mono float32, the way the reference toolkit's ``librosa.load``
did.

The reference toolkit loaded clips with ``librosa.load(path, sr=16000)``: libsndfile (via
soundfile) decodes to float32, channels are averaged, then soxr "HQ" resamples and the result is
padded or trimmed to ``ceil(n * target / original)`` samples. Doing the same steps here keeps our
waveforms, and so the models' outputs, comparable with theirs.

Everything here is pure: the caller fetches the bytes; this module never touches a filesystem, a
network or a subprocess.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import av
import numpy as np
import soundfile as sf
import soxr

from speech_emotion.errors import ErrorCode, RowError

__all__ = ["TARGET_SAMPLE_RATE_HZ", "DecodedAudio", "decode_audio"]

logger = logging.getLogger(__name__)

TARGET_SAMPLE_RATE_HZ = 16000

# Blocks of this many frames keep a soundfile read's float32 scratch small (256 KiB per channel)
# while still letting a too-long file be abandoned a few seconds past the limit.
_SOUNDFILE_BLOCK_FRAMES = 1 << 16

# Library error strings can embed whole paths or logs; a row's message must stay readable.
_MAX_REASON_CHARS = 160

# libsndfile's public code for "no reader claims these bytes"; every other code means a reader
# recognised the format and then failed inside it.
_SF_ERR_UNRECOGNISED_FORMAT = 1

# libsndfile reports a stream its mp3 reader cannot parse with a message about file paths, which
# would send a person looking for a missing file.
_MISLEADING_SOUNDFILE_REASONS = {
    "file does not exist or is not a regular file (possibly a pipe?)": "could not parse the stream",
}

# What PyAV raises for bad input: FFmpeg errors (InvalidDataError, EOFError, ...), ValueError from
# its own checks, and UnicodeDecodeError from text it decodes.
_PYAV_INPUT_ERRORS = (av.FFmpegError, ValueError, EOFError, UnicodeDecodeError)
_SOUNDFILE_INPUT_ERRORS = (sf.SoundFileError, RuntimeError, ValueError, TypeError)


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded clip, ready for the models.

    ``waveform`` is float32, mono, at the requested rate (16 kHz by default) and C-contiguous. Its
    scale is [-1, 1]; like ``librosa.load`` it is not clipped, so lossy codecs and the resampler
    may overshoot full scale by a little.
    """

    waveform: np.ndarray
    sample_rate_hz: int  # of the decoded stream, before resampling (Opus may report 48 kHz)
    channels: int  # of the original stream, before mixing to mono
    duration_s: float  # of the original stream, as decoded


class _DecoderFailed(Exception):
    """One decoder could not handle the bytes; another may still succeed."""

    def __init__(self, reason: str, *, recognised: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        # True when the decoder identified the format and then failed inside the stream.
        self.recognised = recognised


@dataclass
class _MonoCollector:
    """Gathers mono float32 chunks at one sample rate and enforces the duration limit."""

    max_duration_s: float | None
    declared_s: float | None = None
    sample_rate_hz: int = 0
    channels: int = 0
    frames: int = 0
    chunks: list[np.ndarray] = field(default_factory=list)

    def add(self, mono: np.ndarray, sample_rate_hz: int, channels: int) -> None:
        if sample_rate_hz <= 0:
            raise _DecoderFailed(
                f"the stream has a sample rate of {sample_rate_hz} Hz", recognised=True
            )
        if not self.chunks:
            self.sample_rate_hz, self.channels = sample_rate_hz, channels
        elif sample_rate_hz != self.sample_rate_hz:
            raise _DecoderFailed(
                f"the sample rate changes mid-stream ({self.sample_rate_hz} Hz to "
                f"{sample_rate_hz} Hz)",
                recognised=True,
            )
        self.chunks.append(mono)
        self.frames += mono.size
        self._check_duration()

    def mono(self) -> np.ndarray:
        if not self.chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self.chunks)

    def _check_duration(self) -> None:
        decoded_s = self.frames / self.sample_rate_hz
        if self.max_duration_s is None or decoded_s <= self.max_duration_s:
            return
        declared = (
            f"; the file declares {self.declared_s:.1f} s"
            if self.declared_s and self.declared_s > 0
            else ""
        )
        raise RowError(
            ErrorCode.TOO_LONG,
            f"the audio is longer than the {self.max_duration_s:g} s limit (decoding stopped at "
            f"{decoded_s:.2f} s{declared}); split it or raise the limit",
        )


def decode_audio(
    data: bytes,
    *,
    target_hz: int = TARGET_SAMPLE_RATE_HZ,
    max_duration_s: float | None = None,
) -> DecodedAudio:
    """Decode one audio file's bytes to mono float32 at ``target_hz``.

    Raises :class:`RowError` with ``EMPTY_FILE``, ``UNDECODABLE``, ``NO_AUDIO`` or ``TOO_LONG``
    for bad input; with ``max_duration_s`` set, decoding stops as soon as the limit is passed.
    """
    if target_hz <= 0:
        raise ValueError(f"target_hz must be positive, got {target_hz}")
    if max_duration_s is not None and not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
    if not data:
        raise RowError(ErrorCode.EMPTY_FILE, "the file is empty (0 bytes)")

    collected = _decode_native(bytes(data), max_duration_s)
    mono = collected.mono()
    if mono.size == 0:
        raise RowError(
            ErrorCode.NO_AUDIO,
            "the audio stream holds no samples (an empty recording, or a file cut off before "
            "its first complete audio frame)",
        )
    return DecodedAudio(
        waveform=_resample(mono, collected.sample_rate_hz, target_hz),
        sample_rate_hz=collected.sample_rate_hz,
        channels=collected.channels,
        duration_s=mono.size / collected.sample_rate_hz,
    )


def _decode_native(data: bytes, max_duration_s: float | None) -> _MonoCollector:
    # soundfile goes first because it is what librosa.load used, so for everything libsndfile
    # reads (wav, flac, ogg vorbis/opus, mp3) our samples are bit-identical to the reference's.
    # PyAV (FFmpeg) then covers what libsndfile cannot open at all, chiefly m4a/aac, and gets a
    # second chance at streams libsndfile recognised but choked on, since FFmpeg is more lenient.
    try:
        return _decode_with_soundfile(data, max_duration_s)
    except _DecoderFailed as failure:
        soundfile_failure = failure
    try:
        return _decode_with_pyav(data, max_duration_s)
    except _DecoderFailed as failure:
        pyav_failure = failure
    tried = f"tried soundfile: {soundfile_failure.reason}; PyAV: {pyav_failure.reason}"
    if soundfile_failure.recognised or pyav_failure.recognised:
        raise RowError(ErrorCode.UNDECODABLE, f"the audio stream is corrupt ({tried})")
    raise RowError(ErrorCode.UNDECODABLE, f"not a recognised audio format ({tried})")


def _decode_with_soundfile(data: bytes, max_duration_s: float | None) -> _MonoCollector:
    try:
        sound_file = sf.SoundFile(io.BytesIO(data))
    except _SOUNDFILE_INPUT_ERRORS as exc:
        logger.debug("soundfile could not open the bytes", exc_info=True)
        code = getattr(exc, "code", _SF_ERR_UNRECOGNISED_FORMAT)
        recognised = code != _SF_ERR_UNRECOGNISED_FORMAT
        raise _DecoderFailed(_soundfile_reason(exc), recognised=recognised) from None

    with sound_file:
        rate, channels = sound_file.samplerate, sound_file.channels
        if rate <= 0 or channels <= 0:
            raise _DecoderFailed(
                f"the header declares {rate} Hz and {channels} channel(s)", recognised=True
            )
        # Only used to word the TOO_LONG message, never to decide it: mp3 headers can be wrong,
        # and libsndfile reports an unknown length as a huge sentinel.
        declared_s = sound_file.frames / rate if 0 < sound_file.frames < 2**62 else None
        collector = _MonoCollector(max_duration_s, declared_s=declared_s)
        try:
            for block in _soundfile_blocks(sound_file):
                collector.add(_mix_to_mono(block), rate, channels)
        except _SOUNDFILE_INPUT_ERRORS as exc:
            logger.debug("soundfile failed while decoding", exc_info=True)
            raise _DecoderFailed(_soundfile_reason(exc), recognised=True) from None
    return collector


def _soundfile_blocks(sound_file: sf.SoundFile) -> Iterator[np.ndarray]:
    """Successive [frames, channels] float32 blocks, scaled as librosa.load reads them."""
    while True:
        block = sound_file.read(_SOUNDFILE_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            return
        yield block


def _decode_with_pyav(data: bytes, max_duration_s: float | None) -> _MonoCollector:
    try:
        # Tag text is irrelevant here; a badly encoded title must not sink the whole clip.
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="replace")
    except _PYAV_INPUT_ERRORS as exc:
        logger.debug("PyAV could not open the bytes", exc_info=True)
        raise _DecoderFailed(_pyav_reason(exc), recognised=False) from None

    with container:
        stream = _first_decodable_audio_stream(container)
        collector = _MonoCollector(max_duration_s, declared_s=_declared_duration_s(stream))
        damaged: list[av.FFmpegError] = []
        try:
            for frame in _as_packed_float(_decoded_frames(container, stream, damaged)):
                channels = frame.layout.nb_channels
                # Packed frames are one interleaved row; to_ndarray of planar frames is avoided
                # because PyAV reads past the plane pointers of 8-channel frames and segfaults.
                interleaved = frame.to_ndarray().reshape(-1, channels)
                collector.add(_mix_to_mono(interleaved), frame.sample_rate, channels)
        except _PYAV_INPUT_ERRORS as exc:
            logger.debug("PyAV failed while decoding", exc_info=True)
            raise _DecoderFailed(_pyav_reason(exc), recognised=True) from None

    if damaged and not collector.chunks:
        raise _DecoderFailed(_pyav_reason(damaged[-1]), recognised=True)
    if damaged:
        logger.info(
            "skipped %d damaged audio packet(s) and kept %.2f s of audio",
            len(damaged),
            collector.frames / collector.sample_rate_hz,
        )
    return collector


def _first_decodable_audio_stream(container: av.container.InputContainer) -> av.AudioStream:
    if not container.streams.audio:
        kinds = sorted({stream.type for stream in container.streams})
        holds = f"only {', '.join(kinds)} streams" if kinds else "no streams at all"
        raise RowError(
            ErrorCode.NO_AUDIO,
            f"the file ({container.format.name}) has no audio stream; it holds {holds}",
        )
    for stream in container.streams.audio:
        # PyAV leaves codec_context unset when FFmpeg has no decoder for the stream's codec.
        if stream.codec_context is not None:
            return stream
    raise _DecoderFailed("no decoder for the file's audio codec", recognised=True)


def _declared_duration_s(stream: av.AudioStream) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _decoded_frames(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    damaged: list[av.FFmpegError],
) -> Iterator[av.AudioFrame]:
    """Every decoded frame of ``stream``; packets the codec rejects are noted in ``damaged``."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.InvalidDataError as exc:
            # Like the ffmpeg CLI, drop a damaged packet (typically the cut-off last one of a
            # truncated upload) rather than the whole clip.
            damaged.append(exc)
            continue
        yield from frames


def _as_packed_float(frames: Iterable[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    """The same frames converted to packed float32, keeping layout and rate.

    libswresample scales integer samples by 2**-(bits-1), exactly as libsndfile does. A stream
    may switch layout or format mid-way (broadcast AAC does), so the converter follows it.
    """
    resampler: av.AudioResampler | None = None
    setup: tuple[str, str, int] | None = None
    for frame in frames:
        frame_setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        if frame_setup != setup or resampler is None:
            if resampler is not None:
                yield from resampler.resample(None)
            resampler, setup = av.AudioResampler(format="flt"), frame_setup
        yield from resampler.resample(frame)
    if resampler is not None:
        yield from resampler.resample(None)


def _mix_to_mono(interleaved: np.ndarray) -> np.ndarray:
    """Average a [frames, channels] float32 array into a fresh 1-D float32 array."""
    if interleaved.shape[1] == 1:
        # A copy, so the chunk does not pin the decoder's whole (padded) buffer.
        return np.array(interleaved[:, 0], dtype=np.float32)
    return interleaved.mean(axis=1, dtype=np.float32)


def _resample(mono: np.ndarray, orig_hz: int, target_hz: int) -> np.ndarray:
    if orig_hz == target_hz:
        return np.ascontiguousarray(mono, dtype=np.float32)
    resampled = soxr.resample(mono, orig_hz, target_hz, quality="HQ")
    # librosa.resample(fix=True) pads or trims to ceil(n * ratio); soxr itself rounds, so without
    # this our clips would sometimes be one sample shorter than the reference's. The expression is
    # librosa's own, float ratio included, so the two agree even where float rounding bites.
    expected = math.ceil(mono.size * (target_hz / orig_hz))
    if resampled.size < expected:
        resampled = np.pad(resampled, (0, expected - resampled.size))
    return np.ascontiguousarray(resampled[:expected], dtype=np.float32)


def _soundfile_reason(exc: BaseException) -> str:
    reason = _shorten(getattr(exc, "error_string", None) or str(exc))
    return _MISLEADING_SOUNDFILE_REASONS.get(reason, reason)


def _pyav_reason(exc: BaseException) -> str:
    # FFmpegError.strerror is the bare reason; str() adds the file name and the last log line.
    return _shorten(getattr(exc, "strerror", None) or str(exc))


def _shorten(reason: str) -> str:
    reason = " ".join(reason.split()).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 1] + "…"
    return reason or "no reason given"
