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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import av
import numpy as np
import soundfile as sf
import soxr

from speech_emotion.clips import RATE_HZ
from speech_emotion.errors import ErrorCode, RowError

__all__ = ["TARGET_SAMPLE_RATE_HZ", "DecodedAudio", "decode_audio", "seekable"]

logger = logging.getLogger(__name__)

TARGET_SAMPLE_RATE_HZ = RATE_HZ

# Decoded samples are gathered into arrays of this many (32 MB): see _Collector._gather.
_GATHERED_SAMPLES = 8 * 2**20
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

# FFmpeg's demuxers for still images: a picture saved under an audio name opens as one video frame.
_IMAGE_FORMATS = frozenset({"image2", "image2pipe", "gif", "apng"})
_IMAGE_FORMAT_SUFFIX = "_pipe"  # png_pipe, jpeg_pipe, bmp_pipe, webp_pipe, ...

# How much of a text file's start a message quotes: enough to tell an error page from a note.
_QUOTED_TEXT_CHARS = 40

# What PyAV raises for bad input: FFmpeg errors (InvalidDataError, EOFError, ...), ValueError from
# its own checks, and UnicodeDecodeError from text it decodes.
_PYAV_INPUT_ERRORS = (av.FFmpegError, ValueError, EOFError, UnicodeDecodeError)
_SOUNDFILE_INPUT_ERRORS = (sf.SoundFileError, RuntimeError, ValueError, TypeError)


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded recording, ready for the models.

    Samples are float32, mono, at the requested rate (16 kHz by default), C-contiguous and finite;
    their scale is [-1, 1] and, like ``librosa.load``'s, not clipped, so lossy codecs and the
    resampler may overshoot full scale by a little. ``waveform`` holds the channels averaged;
    decoded with ``split_channels``, ``split`` holds each channel on its own instead and
    ``waveform`` is empty.
    """

    waveform: np.ndarray
    sample_rate_hz: int  # of the decoded stream, before resampling (Opus may report 48 kHz)
    channels: int  # of the original stream, before mixing to mono
    duration_s: float  # of the original stream, as decoded
    split: tuple[np.ndarray, ...] | None = None

    def track(self, channel: int | None) -> np.ndarray:
        """One channel's samples, or (None) the channels averaged."""
        if channel is None:
            if self.split is not None:
                raise ValueError("decoded with its channels split: name a channel")
            return self.waveform
        if self.split is None:
            raise ValueError("decoded with its channels mixed: there is no channel to name")
        return self.split[channel]

    @property
    def samples(self) -> int:
        """Samples per track at the decoded rate."""
        return len(self.split[0]) if self.split is not None else len(self.waveform)


class _DecoderFailed(Exception):
    """One decoder could not handle the bytes; another may still succeed."""

    def __init__(self, reason: str, *, recognised: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        # True when the decoder identified the format and then failed inside the stream.
        self.recognised = recognised


@dataclass
class _Collector:
    """Resamples decoded blocks as they come, keeping only the output: a long file at 48 kHz never
    sits in memory at its own rate. soxr's stream gives the same samples, to the bit, as resampling
    the whole file at once (tested), so the result is librosa's. Keeps only the frames of the span
    asked for (``start_s`` to ``end_s``, None: to the end); enforces the duration limit on them."""

    max_duration_s: float | None
    split: bool = False
    target_hz: int = TARGET_SAMPLE_RATE_HZ
    declared_s: float | None = None
    start_s: float = 0.0
    end_s: float | None = None
    sample_rate_hz: int = 0
    channels: int = 0
    frames: int = 0
    """Frames kept."""
    position: int = 0
    """Frames of the stream passed so far, kept or not (where a seek landed, at first)."""
    _streams: list[soxr.ResampleStream | None] = field(default_factory=list)
    _tracks: list[list[np.ndarray]] = field(default_factory=list)
    _pending: list[list[np.ndarray]] = field(default_factory=list)
    _pending_samples: list[int] = field(default_factory=list)

    def add(self, interleaved: np.ndarray, sample_rate_hz: int) -> None:
        """A [frames, channels] float32 block."""
        channels = interleaved.shape[1]
        if sample_rate_hz <= 0:
            raise _DecoderFailed(
                f"the stream has a sample rate of {sample_rate_hz} Hz", recognised=True
            )
        if not self._tracks:
            self.sample_rate_hz, self.channels = sample_rate_hz, channels
            outputs = channels if self.split else 1
            self._streams = [self._stream() for _ in range(outputs)]
            self._tracks = [[] for _ in range(outputs)]
            self._pending = [[] for _ in range(outputs)]
            self._pending_samples = [0] * outputs
        elif sample_rate_hz != self.sample_rate_hz:
            raise _DecoderFailed(
                f"the sample rate changes mid-stream ({self.sample_rate_hz} Hz to "
                f"{sample_rate_hz} Hz)",
                recognised=True,
            )
        elif self.split and channels != self.channels:
            raise _DecoderFailed(
                f"the channel count changes mid-stream ({self.channels} to {channels}); "
                "its channels cannot be split",
                recognised=True,
            )
        begin = self.position
        self.position += interleaved.shape[0]
        first, last = self.span_frames(sample_rate_hz)
        low = max(0, first - begin)
        high = interleaved.shape[0] if last is None else min(interleaved.shape[0], last - begin)
        if high <= low:
            return
        interleaved = interleaved[low:high]
        self._check_finite(interleaved, begin + low)
        self.frames += interleaved.shape[0]
        self._check_duration()
        if self.split:
            for channel in range(channels):
                self._feed(channel, np.ascontiguousarray(interleaved[:, channel]))
        else:
            self._feed(0, _mix_to_mono(interleaved))

    def span_frames(self, rate_hz: int) -> tuple[int, int | None]:
        """The span's first frame and the frame after its last (None: the stream's end)."""
        last = None if self.end_s is None else round(self.end_s * rate_hz)
        return round(self.start_s * rate_hz), last

    def seeked(self, position: int, rate_hz: int) -> None:
        """The decoder skipped to frame ``position`` of a stream at ``rate_hz``."""
        self.position, self.sample_rate_hz = position, rate_hz

    @property
    def done(self) -> bool:
        """Every frame of the span is in: the rest of the stream need not be decoded."""
        if not self.sample_rate_hz:
            return False
        last = self.span_frames(self.sample_rate_hz)[1]
        return last is not None and self.position >= last

    def _stream(self) -> soxr.ResampleStream | None:
        if self.sample_rate_hz == self.target_hz:
            return None
        return soxr.ResampleStream(
            self.sample_rate_hz, self.target_hz, 1, dtype="float32", quality="HQ"
        )

    def _feed(self, track: int, mono: np.ndarray) -> None:
        stream = self._streams[track]
        # A copy either way, so the chunk does not pin the decoder's whole (padded) buffer.
        out = np.array(mono, np.float32) if stream is None else stream.resample_chunk(mono)
        self._pending[track].append(out)
        self._pending_samples[track] += len(out)
        if self._pending_samples[track] >= _GATHERED_SAMPLES:
            self._gather(track)

    def _gather(self, track: int) -> None:
        # Decoders hand over blocks of a few hundred kB, which malloc keeps on its heap after
        # they are freed; gathered into arrays of 32 MB (which it maps and unmaps on its own),
        # a long track's memory goes back to the system as the track is joined.
        if self._pending[track]:
            self._tracks[track].append(np.concatenate(self._pending[track]))
            self._pending[track].clear()
            self._pending_samples[track] = 0

    def tracks(self) -> list[np.ndarray]:
        """Each output track, resampled, at librosa's length (:func:`_length`)."""
        size = _length(self.frames, self.sample_rate_hz, self.target_hz)
        out = []
        for track, stream in enumerate(self._streams):
            if stream is not None:
                self._pending[track].append(
                    stream.resample_chunk(np.zeros(0, np.float32), last=True)
                )
            self._gather(track)
            out.append(_join(self._tracks[track], size))
        return out

    def _check_finite(self, interleaved: np.ndarray, at_frame: int) -> None:
        # Float files (WAV, AIFF or CAF in FLOAT or DOUBLE) can hold NaN or infinity where the
        # tool that wrote them divided by zero or overflowed. Such a sample is no sound at all: the
        # resampler smears it over its neighbours and the models' per-clip normalisation over
        # every score, so the row would be NaN. Patching them (to 0 or full scale) would annotate
        # audio nobody recorded, and a file with one NaN is seldom damaged in one place only, so
        # the recording fails instead, saying where.
        finite = np.isfinite(interleaved)
        if finite.all():
            return
        first = at_frame + int(np.argmin(finite.all(axis=1)))
        raise RowError(
            ErrorCode.UNDECODABLE,
            f"the audio holds NaN or infinite sample values (the first at "
            f"{first / self.sample_rate_hz:.3f} s): the file was damaged when it was written; "
            "export it again from its source",
        )

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
    split_channels: bool = False,
    start_s: float = 0.0,
    end_s: float | None = None,
) -> DecodedAudio:
    """Decode one audio file's bytes to float32 at ``target_hz``: its channels averaged, or with
    ``split_channels`` each channel on its own; only the span from ``start_s`` to ``end_s`` (None:
    the end of the file), which is then what the result's duration and samples are.

    Raises :class:`RowError` with ``EMPTY_FILE``, ``UNDECODABLE``, ``NO_AUDIO`` or ``TOO_LONG``
    for bad input (a file holding NaN or infinite samples is ``UNDECODABLE``), and
    ``SPAN_OUTSIDE_AUDIO`` for a span that starts past the file's end; with ``max_duration_s``
    set, decoding stops as soon as the limit is passed, judged by the samples decoded, never by
    the length a header declares.
    """
    if target_hz <= 0:
        raise ValueError(f"target_hz must be positive, got {target_hz}")
    if max_duration_s is not None and not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
    if not start_s >= 0 or (end_s is not None and not end_s > start_s):
        raise ValueError(f"the span {start_s}-{end_s} s is not a span of a file")
    if not data:
        raise RowError(ErrorCode.EMPTY_FILE, "the file is empty (0 bytes)")

    def collector(declared_s: float | None) -> _Collector:
        return _Collector(max_duration_s, split_channels, target_hz, declared_s, start_s, end_s)

    collected = _decode_native(bytes(data), collector)
    if collected.frames == 0 and collected.position > 0:
        raise RowError(
            ErrorCode.SPAN_OUTSIDE_AUDIO,
            f"the span lies past the end of the file, which holds "
            f"{collected.position / collected.sample_rate_hz:.3f} s of audio; check the "
            "manifest's offsets",
        )
    if collected.frames == 0:
        raise RowError(
            ErrorCode.NO_AUDIO,
            "the audio stream holds no samples (an empty recording, or a file cut off before "
            "its first complete audio frame)",
        )
    tracks = collected.tracks()
    return DecodedAudio(
        waveform=np.zeros(0, np.float32) if split_channels else tracks[0],
        sample_rate_hz=collected.sample_rate_hz,
        channels=collected.channels,
        duration_s=collected.frames / collected.sample_rate_hz,
        split=tuple(tracks) if split_channels else None,
    )


def seekable(data: bytes) -> bool:
    """Whether a span of the file is reached by seeking (libsndfile reads it: wav, flac, mp3,
    ogg), rather than by decoding from its start (FFmpeg: m4a, ...)."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as sound_file:
            return bool(sound_file.seekable())
    except _SOUNDFILE_INPUT_ERRORS:
        return False


_NewCollector = Callable[[float | None], _Collector]


def _decode_native(data: bytes, collector: _NewCollector) -> _Collector:
    # soundfile goes first because it is what librosa.load used, so for everything libsndfile
    # reads (wav, flac, ogg vorbis/opus, mp3) our samples are bit-identical to the reference's.
    # PyAV (FFmpeg) then covers what libsndfile cannot open at all, chiefly m4a/aac, and gets a
    # second chance at streams libsndfile recognised but choked on, since FFmpeg is more lenient.
    try:
        return _decode_with_soundfile(data, collector)
    except _DecoderFailed as failure:
        soundfile_failure = failure
    try:
        return _decode_with_pyav(data, collector)
    except _DecoderFailed as failure:
        pyav_failure = failure
    tried = f"tried soundfile: {soundfile_failure.reason}; PyAV: {pyav_failure.reason}"
    if soundfile_failure.recognised or pyav_failure.recognised:
        raise RowError(ErrorCode.UNDECODABLE, f"the audio stream is corrupt ({tried})")
    text = _text_start(data)
    if text is not None:
        # Often an error page or a note saved under the recording's name: its first words say which.
        raise RowError(
            ErrorCode.UNDECODABLE,
            f"not a recognised audio format: the file is text, beginning {text!r} ({tried})",
        )
    raise RowError(ErrorCode.UNDECODABLE, f"not a recognised audio format ({tried})")


def _text_start(data: bytes) -> str | None:
    """The start of ``data`` if it reads as text (UTF-8, no control characters but whitespace);
    None for binary. Audio headers hold binary sizes, so no audio file passes."""
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(data) <= len(head) or exc.start < len(head) - 3:  # not a character cut in two
            return None
        text = head[: exc.start].decode("utf-8")
    if not text or any(ch < " " and ch not in "\t\n\r" for ch in text):
        return None
    text = " ".join(text.split())
    return text if len(text) <= _QUOTED_TEXT_CHARS else text[: _QUOTED_TEXT_CHARS - 1] + "…"


def _decode_with_soundfile(data: bytes, new_collector: _NewCollector) -> _Collector:
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
        known = 0 < sound_file.frames < 2**62
        declared_s = sound_file.frames / rate if known else None
        collector = new_collector(declared_s)
        try:
            first, _ = collector.span_frames(rate)
            if first and sound_file.seekable():
                # libsndfile seeks to the sample (wav, flac, and mp3 through mpg123's index).
                collector.seeked(
                    sound_file.seek(min(first, sound_file.frames) if known else first), rate
                )
            for block in _soundfile_blocks(sound_file):
                collector.add(block, rate)
                if collector.done:
                    break
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


def _decode_with_pyav(data: bytes, new_collector: _NewCollector) -> _Collector:
    try:
        # Tag text is irrelevant here; a badly encoded title must not sink the whole clip.
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="replace")
    except _PYAV_INPUT_ERRORS as exc:
        logger.debug("PyAV could not open the bytes", exc_info=True)
        raise _DecoderFailed(_pyav_reason(exc), recognised=False) from None

    with container:
        stream = _first_decodable_audio_stream(container)
        collector = new_collector(_declared_duration_s(stream))
        damaged: list[av.FFmpegError] = []
        try:
            # A span's start is reached by decoding and counting samples, not by seeking: FFmpeg
            # lands on a packet before the time asked, and some containers' timestamps are off.
            for frame in _as_packed_float(_decoded_frames(container, stream, damaged)):
                channels = frame.layout.nb_channels
                # Packed frames are one interleaved row; to_ndarray of planar frames is avoided
                # because PyAV reads past the plane pointers of 8-channel frames and segfaults.
                interleaved = frame.to_ndarray().reshape(-1, channels)
                collector.add(interleaved, frame.sample_rate)
                if collector.done:
                    break
        except _PYAV_INPUT_ERRORS as exc:
            logger.debug("PyAV failed while decoding", exc_info=True)
            raise _DecoderFailed(_pyav_reason(exc), recognised=True) from None

    if damaged and not collector.position:
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
        name = container.format.name
        if name in _IMAGE_FORMATS or name.endswith(_IMAGE_FORMAT_SUFFIX):
            # Not a video that lost its sound: nothing here was ever audio.
            image = name.removesuffix(_IMAGE_FORMAT_SUFFIX)
            raise RowError(ErrorCode.UNDECODABLE, f"the file is an image ({image}), not audio")
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


def _length(frames: int, orig_hz: int, target_hz: int) -> int:
    """Samples after resampling: ``ceil(frames * ratio)``, as librosa.resample(fix=True) pads or
    trims to. soxr itself rounds, so without this our clips would sometimes be one sample
    shorter than the reference's. The expression is librosa's own, float ratio included, so the
    two agree even where float rounding bites."""
    if orig_hz == target_hz:
        return frames
    return math.ceil(frames * (target_hz / orig_hz))


def _join(chunks: list[np.ndarray], size: int) -> np.ndarray:
    """The chunks end to end in one array of ``size`` samples (padded with zeros or cut), each
    chunk let go as soon as it is copied, so a long track is never held twice."""
    out = np.zeros(size, np.float32)
    at = 0
    chunks.reverse()
    while chunks:
        chunk = chunks.pop()
        take = min(len(chunk), size - at)
        out[at : at + take] = chunk[:take]
        at += take
    return out


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
