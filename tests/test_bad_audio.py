"""Bad audio that real archives hold: each case gives an ``ok`` row with the file's own metadata or
an error row whose reason a person can act on; never a crash, a hang or a NaN.

One table of cases, run three ways: through :func:`decode_audio` (the bytes), through the decode
stage without Ray (the file on disk: reading, decoding, the length checks), and all together in one
real run. Every file is made here, none is committed. README.md's table "What archives hold, and
what the job gives" lists the same cases by the same names, and a test keeps the two in step.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from speech_emotion.audio import decode_audio
from speech_emotion.config import DecodeConfig
from speech_emotion.errors import ErrorCode, RowError
from speech_emotion.pipeline import run
from speech_emotion.schema import RECORDING_SCHEMA
from speech_emotion.stages import DecodeStage

from . import audiogen
from .factories import Corpus, job_config, recording
from .factories import table as table_of
from .test_scheduled_runs import committed

README = Path(__file__).resolve().parents[1] / "README.md"
README_TABLE = "What archives hold, and what the job gives"

# The tone every good case carries, so its level checks the scaling of each sample format.
TONE_RMS = 0.5 / math.sqrt(2)

# -- making the files -----------------------------------------------------------------------------


def _soundfile(samples: np.ndarray, rate_hz: int, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate_hz, format="WAV", subtype=subtype)
    return buffer.getvalue()


def truncated_mp3() -> bytes:
    """2 s of mp3 cut off mid-frame a little after the middle: an upload that stopped."""
    data = audiogen.encode(audiogen.tone(2.0, 16000, 1), 16000, "mp3")
    return data[: len(data) // 2 + 7]


LYING_HOURS = 3


def wav_claiming_hours() -> bytes:
    """A 1 s WAV whose RIFF and data sizes claim three hours (a writer that died before it
    patched them, or one that never does)."""
    data = bytearray(audiogen.encode(audiogen.tone(1.0, 16000, 1), 16000, "wav"))
    claimed = LYING_HOURS * 3600 * 16000 * 2
    at = data.index(b"data")
    struct.pack_into("<I", data, at + 4, claimed)
    struct.pack_into("<I", data, 4, claimed + at)
    return bytes(data)


def float_wav_with(value: float) -> bytes:
    samples = audiogen.tone(1.0, 16000, 1)
    samples[8000:8010] = value
    return _soundfile(samples, 16000, "FLOAT")


def one_sample() -> bytes:
    return audiogen.encode(np.array([[0.25]], np.float32), 16000, "wav")


def text_file() -> bytes:
    return b"<!DOCTYPE html>\n<html><body><h1>403 Forbidden</h1></body></html>\n"


def png_image() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="image2pipe") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def video(container_format: str, video_codec: str, audio_codec: str | None, rate_hz: int) -> bytes:
    """1 s of a 32x32 picture, with a 1 s stereo tone in ``audio_codec`` or no audio at all."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        picture = container.add_stream(video_codec, rate=10)
        picture.width, picture.height, picture.pix_fmt = 32, 32, "yuv420p"
        sound = None
        if audio_codec is not None:
            sound = container.add_stream(audio_codec, rate=rate_hz, layout="stereo")
        container.start_encoding()
        if sound is not None:
            _mux_tone(container, sound, rate_hz, channels=2)
        audiogen.mux_pictures(container, picture, 10)
    return buffer.getvalue()


def opus_in_webm() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="webm") as container:
        sound = container.add_stream("libopus", rate=48000, layout="mono")
        container.start_encoding()
        _mux_tone(container, sound, 48000, channels=1)
    return buffer.getvalue()


def _mux_tone(container, stream, rate_hz: int, *, channels: int) -> None:
    samples = audiogen.tone(1.0, rate_hz, channels)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples.reshape(1, -1)),
        format="flt",
        layout="mono" if channels == 1 else "stereo",
    )
    frame.sample_rate, frame.pts, frame.time_base = rate_hz, 0, Fraction(1, rate_hz)
    for packet in [*stream.encode(frame), *stream.encode(None)]:
        container.mux(packet)


# -- the cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    """An ok row: the original file's rate and channels, its length to within ``within_s``."""

    sample_rate_hz: int
    channels: int
    duration_s: float
    within_s: float = 0.002
    tone: bool = True  # holds audiogen's 440 Hz tone at amplitude 0.5


@dataclass(frozen=True)
class Error:
    """An error row with ``code`` whose reason says ``says``."""

    code: ErrorCode
    says: str


@dataclass(frozen=True)
class Case:
    name: str  # as README's table names it
    file: str  # the file's name in the corpus, relative to the manifest
    make: Callable[[], bytes] | None  # None: a folder, not a file
    decoded: Ok | Error | None  # what decode_audio gives (None: there are no bytes to decode)
    row: Ok | Error | None = None  # what the job's row is, when not the same

    @property
    def outcome(self) -> Ok | Error:
        outcome = self.row or self.decoded
        assert outcome is not None
        return outcome

    def data(self) -> bytes:
        assert self.make is not None
        return _made(self.make)


@functools.cache
def _made(make: Callable[[], bytes]) -> bytes:
    return make()


NOT_FINITE = "NaN or infinite sample values"
CASES = [
    Case("truncated mp3", "cut.mp3", truncated_mp3, Ok(16000, 1, 0.94, within_s=0.05)),
    Case("WAV whose header claims hours but holds 1 s", "liar.wav", wav_claiming_hours,
         Ok(16000, 1, 1.0)),
    Case("float WAV with NaN samples", "nan.wav", lambda: float_wav_with(np.nan),
         Error(ErrorCode.UNDECODABLE, NOT_FINITE)),
    Case("float WAV with infinite samples", "inf.wav", lambda: float_wav_with(-np.inf),
         Error(ErrorCode.UNDECODABLE, NOT_FINITE)),
    Case("one-sample WAV", "one.wav", one_sample, Ok(16000, 1, 1 / 16000, tone=False),
         row=Error(ErrorCode.TOO_SHORT, "the minimum is 0.1 s")),
    Case("text file named .wav", "page.wav", text_file,
         Error(ErrorCode.UNDECODABLE, "the file is text, beginning '<!DOCTYPE html>")),
    Case("PNG image named .wav", "picture.wav", png_image,
         Error(ErrorCode.UNDECODABLE, "the file is an image (png), not audio")),
    Case("mp4 video with AAC audio", "film.mp4", lambda: video("mp4", "mpeg4", "aac", 44100),
         Ok(44100, 2, 1.0, within_s=audiogen.PADDING_TOLERANCE_S["m4a"])),
    Case("webm video with Opus audio", "film.webm",
         lambda: video("webm", "libvpx", "libopus", 48000), Ok(48000, 2, 1.0, within_s=0.03)),
    Case("mp4 video without audio", "silent-film.mp4", lambda: video("mp4", "mpeg4", None, 0),
         Error(ErrorCode.NO_AUDIO, "has no audio stream; it holds only video streams")),
    Case("webm video without audio", "silent-film.webm", lambda: video("webm", "libvpx", None, 0),
         Error(ErrorCode.NO_AUDIO, "has no audio stream; it holds only video streams")),
    Case("8-channel 96 kHz 16-bit PCM WAV", "array.wav",
         lambda: _soundfile(audiogen.tone(1.0, 96000, 8), 96000, "PCM_16"), Ok(96000, 8, 1.0)),
    Case("24-bit PCM WAV", "studio24.wav",
         lambda: _soundfile(audiogen.tone(1.0, 48000, 2), 48000, "PCM_24"), Ok(48000, 2, 1.0)),
    Case("32-bit integer PCM WAV", "studio32.wav",
         lambda: _soundfile(audiogen.tone(1.0, 44100, 1), 44100, "PCM_32"), Ok(44100, 1, 1.0)),
    Case("A-law telephony WAV (8 kHz)", "call-alaw.wav",
         lambda: _soundfile(audiogen.tone(1.0, 8000, 1), 8000, "ALAW"), Ok(8000, 1, 1.0)),
    Case("μ-law telephony WAV (8 kHz)", "call-ulaw.wav",
         lambda: _soundfile(audiogen.tone(1.0, 8000, 1), 8000, "ULAW"), Ok(8000, 1, 1.0)),
    Case("Opus in webm", "voice.webm", opus_in_webm, Ok(48000, 1, 1.0, within_s=0.03)),
    Case("file name with spaces and non-ASCII characters", "café – interview 1.wav",
         lambda: audiogen.encode(audiogen.tone(1.0, 16000, 1), 16000, "wav"), Ok(16000, 1, 1.0)),
    Case("a folder where the manifest names a file", "session 3.wav", None, None,
         row=Error(ErrorCode.READ_FAILED, "is a folder, not an audio file")),
]  # fmt: skip
IDS = [case.name for case in CASES]
WITH_BYTES = [case for case in CASES if case.decoded is not None]


def _rms(waveform: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))


def _holds_the_tone(waveform: np.ndarray) -> bool:
    middle = waveform[len(waveform) // 4 : len(waveform) * 3 // 4]  # past any codec ramp
    return _rms(middle) == pytest.approx(TONE_RMS, rel=0.1)


def write_corpus(root: Path) -> list[dict]:
    """Every case as a file (or folder) under ``root``; the manifest rows that name them."""
    rows = []
    for case in CASES:
        path = root / "clips" / case.file
        path.parent.mkdir(parents=True, exist_ok=True)
        if case.make is None:
            path.mkdir()
        else:
            path.write_bytes(case.data())
        rows.append({"id": case.name, "audio": f"clips/{case.file}"})
    return rows


# -- decode_audio ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", WITH_BYTES, ids=[case.name for case in WITH_BYTES])
def test_decode_audio_gives_the_files_metadata_or_a_reason(case: Case) -> None:
    expected = case.decoded
    if isinstance(expected, Error):
        with pytest.raises(RowError) as caught:
            decode_audio(case.data(), max_duration_s=1800.0)
        assert caught.value.code is expected.code
        assert expected.says in caught.value.message
        assert "\n" not in caught.value.message and "Traceback" not in caught.value.message
        return

    assert isinstance(expected, Ok)
    decoded = decode_audio(case.data(), max_duration_s=1800.0)
    assert (decoded.sample_rate_hz, decoded.channels) == (
        expected.sample_rate_hz,
        expected.channels,
    )
    assert decoded.duration_s == pytest.approx(expected.duration_s, abs=expected.within_s)
    frames = round(decoded.duration_s * decoded.sample_rate_hz)
    assert decoded.waveform.size == math.ceil(frames * (16000 / decoded.sample_rate_hz))
    assert np.isfinite(decoded.waveform).all()
    if expected.tone:
        assert _holds_the_tone(decoded.waveform)


def test_a_header_claiming_hours_is_judged_by_what_the_file_holds() -> None:
    data = wav_claiming_hours()
    at = data.index(b"data")
    (claimed,) = struct.unpack_from("<I", data, at + 4)
    assert claimed / (16000 * 2) == LYING_HOURS * 3600  # the header does claim it

    tracemalloc.start()
    try:
        decoded = decode_audio(data, max_duration_s=2.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Not too long (it holds 1 s), and nothing sized by the header: 3 h at 16 kHz is 690 MB.
    assert decoded.duration_s == 1.0
    assert peak < 16 * 2**20


def test_a_file_that_is_really_too_long_says_what_its_header_declares() -> None:
    data = audiogen.encode(audiogen.tone(3.0, 8000, 1), 8000, "wav")

    with pytest.raises(RowError) as caught:
        decode_audio(data, max_duration_s=1.0)

    assert caught.value.code is ErrorCode.TOO_LONG
    assert "the file declares 3.0 s" in caught.value.message


# -- the decode stage, without Ray ----------------------------------------------------------------


def test_the_decode_stage_gives_each_case_one_row_with_its_metadata_or_reason(tmp_path) -> None:
    rows = write_corpus(tmp_path)
    batch = table_of(
        RECORDING_SCHEMA,
        [recording(row["id"], audio=str(tmp_path / row["audio"])) for row in rows],
    )

    windows = pa.concat_tables(DecodeStage(DecodeConfig(), packing=False)(batch))

    clips = pa.Table.from_struct_array(windows["clips"].combine_chunks().flatten()).to_pylist()
    assert [clip["id"] for clip in clips] == IDS  # one row each (whole files), in order
    for case, clip in zip(CASES, clips, strict=True):
        expected = case.outcome
        if isinstance(expected, Error):
            assert clip["error_code"] == expected.code.value, case.name
            assert expected.says in clip["error"], case.name
            assert clip["error"].startswith("decode: ")
            assert not clip["waveform"]
        else:
            assert clip["error_code"] is None, (case.name, clip["error"])
            assert (clip["sample_rate_hz"], clip["channels"]) == (
                expected.sample_rate_hz,
                expected.channels,
            ), case.name
            assert clip["duration_s"] == pytest.approx(expected.duration_s, abs=expected.within_s)
            assert np.isfinite(np.asarray(clip["waveform"], np.float32)).all(), case.name
        for value in clip.values():
            assert not (isinstance(value, float) and math.isnan(value)), case.name


# -- one real run ---------------------------------------------------------------------------------


def test_one_run_over_every_case_gives_each_recording_ok_rows_or_one_error_row(
    tmp_path, tiny_models, ray_cluster
) -> None:
    corpus = Corpus(str(tmp_path / "corpus"))
    for row in write_corpus(tmp_path / "corpus"):
        corpus.add(row["id"], missing=True, path=row["audio"])  # the files are there already
    out = tmp_path / "labels"

    summary = run(job_config(corpus, out, tiny_models, mode="concat"))

    rows = committed(out)
    assert sorted(rows) == sorted(IDS)
    errors = [case for case in CASES if isinstance(case.outcome, Error)]
    assert (summary.rows, summary.ok) == (len(CASES), len(CASES) - len(errors))
    for case in CASES:
        got, expected = rows[case.name], case.outcome
        for row in got:
            for column, value in row.items():
                assert not (isinstance(value, float) and math.isnan(value)), (case.name, column)
        if isinstance(expected, Error):
            assert len(got) == 1, case.name
            (row,) = got
            assert (row["status"], row["error_code"]) == ("error", expected.code.value), case.name
            assert row["error"].startswith("decode: ") and expected.says in row["error"]
            assert row["emotion"] is None and row["scores"] is None
            continue
        assert [row["status"] for row in got] == ["ok"] * len(got), case.name
        for row in got:
            assert math.isfinite(row["emotion_score"]), case.name
            assert sum(p for _, p in row["scores"]) == pytest.approx(1.0, abs=1e-4)
            assert (row["sample_rate_hz"], row["channels"]) == (
                expected.sample_rate_hz,
                expected.channels,
            ), case.name
            assert row["recording_duration_s"] == pytest.approx(
                expected.duration_s, abs=expected.within_s
            ), case.name
        assert sum(row["duration_s"] for row in got) == pytest.approx(
            expected.duration_s, abs=expected.within_s
        )


# -- the README -----------------------------------------------------------------------------------


def test_the_readme_table_lists_every_case_with_what_the_tests_assert() -> None:
    text = README.read_text(encoding="utf-8")
    assert README_TABLE in text
    table = text.split(README_TABLE, 1)[1].split("\n\n", 2)[1]
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert sorted(lines) == sorted(IDS)
    for case in CASES:
        line = lines[case.name]
        outcome = case.outcome
        if isinstance(outcome, Error):
            assert f"`{outcome.code.value}`" in line, case.name
        else:
            says = f"| ok: {outcome.sample_rate_hz / 1000:g} kHz, {outcome.channels} ch, "
            assert says in line, case.name
