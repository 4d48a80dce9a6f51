"""Behaviour of decode_audio: every supported format in, 16 kHz mono float32 out, or a RowError."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from speech_emotion.audio import TARGET_SAMPLE_RATE_HZ, DecodedAudio, decode_audio, seekable
from speech_emotion.errors import ErrorCode, RowError
from tests import audiogen

EXAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"


def _stopped_at_s(message: str) -> float:
    match = re.search(r"stopped at ([0-9.]+) s", message)
    assert match, message
    return float(match.group(1))


def _dominant_frequency_hz(waveform: np.ndarray, sample_rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(waveform.size)))
    return float(np.fft.rfftfreq(waveform.size, 1 / sample_rate_hz)[np.argmax(spectrum)])


def _rms(waveform: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))


@pytest.mark.parametrize("fmt", audiogen.FORMATS)
def test_every_format_decodes_to_16khz_mono_float32_of_the_right_length(fmt: str) -> None:
    data = audiogen.encode(audiogen.tone(1.0, 16000, 1), 16000, fmt)

    decoded = decode_audio(data)

    assert isinstance(decoded, DecodedAudio)
    assert decoded.waveform.dtype == np.float32
    assert decoded.waveform.ndim == 1
    assert decoded.waveform.flags.c_contiguous
    tolerance_s = audiogen.PADDING_TOLERANCE_S[fmt]
    assert decoded.duration_s == pytest.approx(1.0, abs=tolerance_s)
    assert decoded.waveform.size / TARGET_SAMPLE_RATE_HZ == pytest.approx(1.0, abs=tolerance_s)


@pytest.mark.parametrize("fmt", audiogen.FORMATS)
def test_every_format_decodes_to_the_tone_that_was_encoded(fmt: str) -> None:
    data = audiogen.encode(audiogen.tone(1.0, 22050, 2, freq_hz=440.0), 22050, fmt)

    waveform = decode_audio(data).waveform

    assert _dominant_frequency_hz(waveform, TARGET_SAMPLE_RATE_HZ) == pytest.approx(440.0, abs=2)
    assert _rms(waveform) == pytest.approx(0.5 / math.sqrt(2), rel=0.1)
    assert np.abs(waveform).max() < 1.0


@pytest.mark.parametrize("fmt", audiogen.FORMATS)
def test_original_sample_rate_and_channel_count_are_recorded(fmt: str) -> None:
    # 24 kHz is one rate that every codec here, Opus included, stores and decodes natively.
    data = audiogen.encode(audiogen.tone(0.5, 24000, 2), 24000, fmt)

    decoded = decode_audio(data)

    assert decoded.sample_rate_hz == 24000
    assert decoded.channels == 2


@pytest.mark.parametrize("fmt", audiogen.LOSSLESS_FORMATS)
def test_lossless_audio_at_16khz_is_returned_exactly_as_stored(fmt: str) -> None:
    samples = audiogen.tone(0.25, 16000, 1)

    decoded = decode_audio(audiogen.encode(samples, 16000, fmt))

    expected = audiogen.pcm16(samples)[:, 0].astype(np.float32) / 32768
    np.testing.assert_array_equal(decoded.waveform, expected)


def test_integer_pcm_is_scaled_by_32768_like_soundfile_and_librosa() -> None:
    samples = np.array([[-1.0], [0.5], [0.0], [32767 / 32768]], dtype=np.float32)

    decoded = decode_audio(audiogen.encode(samples, 16000, "wav"))

    np.testing.assert_array_equal(decoded.waveform, [-1.0, 0.5, 0.0, 32767 / 32768])


def test_stereo_is_mixed_to_mono_by_averaging_channels() -> None:
    left = audiogen.tone(0.25, 16000, 1)
    silence = np.zeros_like(left)

    decoded = decode_audio(audiogen.encode(np.hstack([left, silence]), 16000, "wav"))

    expected = audiogen.pcm16(left)[:, 0].astype(np.float32) / 32768 / 2
    np.testing.assert_array_equal(decoded.waveform, expected)
    assert decoded.channels == 2


@pytest.mark.parametrize("fmt", ["wav", "m4a"])
def test_channels_in_opposite_phase_cancel_to_silence(fmt: str) -> None:
    # wav is read by soundfile and m4a by PyAV, so both mixing paths are covered.
    left = audiogen.tone(0.5, 16000, 1)

    decoded = decode_audio(audiogen.encode(np.hstack([left, -left]), 16000, fmt))

    assert _rms(decoded.waveform) < 0.01 * _rms(left)


# Sample counts chosen so that n * 16000 / rate is fractional for 44.1 and 22.05 kHz, where soxr
# rounds down and librosa's ceil adds a sample.
@pytest.mark.parametrize(("source_hz", "n_samples"), [(44100, 22051), (8000, 4001), (22050, 11027)])
def test_resampling_matches_soxr_hq_on_the_same_pcm(source_hz: int, n_samples: int) -> None:
    samples = audiogen.tone(n_samples / source_hz, source_hz, 1, freq_hz=1000.0)
    assert samples.shape[0] == n_samples
    pcm = audiogen.pcm16(samples)[:, 0].astype(np.float32) / 32768

    decoded = decode_audio(audiogen.encode(samples, source_hz, "wav"))

    expected = soxr.resample(pcm, source_hz, TARGET_SAMPLE_RATE_HZ, quality="HQ")
    # librosa.resample(fix=True) zero-pads soxr's output to ceil(n * ratio) samples.
    assert decoded.waveform.size == math.ceil(pcm.size * TARGET_SAMPLE_RATE_HZ / source_hz)
    np.testing.assert_array_equal(decoded.waveform[: expected.size], expected)
    assert not decoded.waveform[expected.size :].any()
    assert decoded.sample_rate_hz == source_hz


def test_stereo_is_averaged_before_resampling() -> None:
    left = audiogen.tone(0.5, 44100, 1, freq_hz=300.0)
    right = audiogen.tone(0.5, 44100, 1, freq_hz=700.0)
    stereo = np.hstack([left, right])
    mono = (audiogen.pcm16(stereo).astype(np.float32) / 32768).mean(axis=1, dtype=np.float32)

    decoded = decode_audio(audiogen.encode(stereo, 44100, "wav"))

    expected = soxr.resample(mono, 44100, TARGET_SAMPLE_RATE_HZ, quality="HQ")
    np.testing.assert_array_equal(decoded.waveform[: expected.size], expected)


def test_a_different_target_rate_can_be_requested() -> None:
    data = audiogen.encode(audiogen.tone(1.0, 44100, 1), 44100, "flac")

    decoded = decode_audio(data, target_hz=8000)

    assert decoded.waveform.size == 8000
    assert decoded.sample_rate_hz == 44100


def test_eight_channel_aac_is_mixed_to_mono() -> None:
    # PyAV's planar to_ndarray reads past the plane pointers of 8-channel frames and crashes the
    # process, so this guards the packed-float conversion in the PyAV path.
    data = audiogen.encode(audiogen.tone(0.5, 16000, 8), 16000, "m4a")

    decoded = decode_audio(data)

    assert decoded.channels == 8
    assert _dominant_frequency_hz(decoded.waveform, TARGET_SAMPLE_RATE_HZ) == pytest.approx(
        440.0, abs=2
    )


def test_truncated_flac_keeps_the_audio_before_the_cut() -> None:
    # libsndfile gives up on the cut-off last frame; PyAV drops that packet and keeps the rest.
    data = audiogen.encode(audiogen.tone(2.0, 16000, 1), 16000, "flac")

    decoded = decode_audio(data[: len(data) * 6 // 10])

    assert 0.5 < decoded.duration_s < 1.5


def test_empty_bytes_are_an_empty_file() -> None:
    with pytest.raises(RowError) as caught:
        decode_audio(b"")

    assert caught.value.code is ErrorCode.EMPTY_FILE


def test_bytes_that_are_not_audio_are_undecodable_and_say_what_was_tried() -> None:
    with pytest.raises(RowError) as caught:
        decode_audio(b"this is a text file, not a recording\n" * 20)

    assert caught.value.code is ErrorCode.UNDECODABLE
    assert "not a recognised audio format" in caught.value.message
    assert "soundfile" in caught.value.message
    assert "PyAV" in caught.value.message
    assert "Traceback" not in caught.value.message


def test_a_wav_with_a_corrupt_header_is_undecodable() -> None:
    with pytest.raises(RowError) as caught:
        decode_audio(audiogen.corrupt_bytes())

    assert caught.value.code is ErrorCode.UNDECODABLE
    assert "fmt" in caught.value.message
    assert "\n" not in caught.value.message


def test_a_wav_with_zero_frames_has_no_audio() -> None:
    data = audiogen.encode(audiogen.tone(0.0, 16000, 1), 16000, "wav")
    assert data  # a valid header, just no samples

    with pytest.raises(RowError) as caught:
        decode_audio(data)

    assert caught.value.code is ErrorCode.NO_AUDIO


def test_a_container_without_an_audio_stream_has_no_audio() -> None:
    with pytest.raises(RowError) as caught:
        decode_audio(audiogen.video_only())

    assert caught.value.code is ErrorCode.NO_AUDIO
    assert "video" in caught.value.message


@pytest.mark.parametrize(("fmt", "sample_rate_hz"), [("wav", 8000), ("mp3", 8000), ("m4a", 8000)])
def test_audio_over_the_limit_is_too_long_and_decoding_stops_near_the_limit(
    fmt: str, sample_rate_hz: int
) -> None:
    data = audiogen.encode(audiogen.tone(30.0, sample_rate_hz, 1), sample_rate_hz, fmt)

    with pytest.raises(RowError) as caught:
        decode_audio(data, max_duration_s=2.0)

    assert caught.value.code is ErrorCode.TOO_LONG
    assert "2 s limit" in caught.value.message
    # Decoding gave up within one read block of the limit instead of finishing all 30 s.
    assert 2.0 < _stopped_at_s(caught.value.message) < 12.0


def test_audio_exactly_at_the_limit_is_accepted() -> None:
    data = audiogen.encode(audiogen.tone(2.0, 16000, 1), 16000, "wav")

    decoded = decode_audio(data, max_duration_s=2.0)

    assert decoded.duration_s == 2.0


@pytest.mark.parametrize("bad", [{"target_hz": 0}, {"max_duration_s": 0.0}, {"max_duration_s": -1}])
def test_nonsense_arguments_are_programming_errors_not_row_errors(bad: dict) -> None:
    data = audiogen.encode(audiogen.tone(0.1, 16000, 1), 16000, "wav")

    with pytest.raises(ValueError):
        decode_audio(data, **bad)


def test_every_clip_of_the_example_corpus_decodes_and_the_missing_one_is_missing() -> None:
    rows = [
        json.loads(line) for line in (EXAMPLE_CORPUS / "manifest.jsonl").read_text().splitlines()
    ]
    present = [row for row in rows if (EXAMPLE_CORPUS / row["audio"]).exists()]
    absent = [row["audio"] for row in rows if row not in present]

    decoded = [decode_audio((EXAMPLE_CORPUS / row["audio"]).read_bytes()) for row in present]

    assert absent == ["clips/missing.wav"]
    assert all(1.0 <= clip.duration_s <= 4.0 for clip in decoded)
    assert {clip.channels for clip in decoded} == {1, 2}
    assert len({clip.sample_rate_hz for clip in decoded}) >= 3
    assert len({Path(row["audio"]).suffix for row in present}) >= 5
    assert sum("text" in row for row in rows) == 1


@settings(max_examples=25, deadline=None)
@given(
    frames=st.integers(min_value=1, max_value=40_000),
    rate_hz=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    channels=st.integers(min_value=1, max_value=3),
)
def test_durations_are_the_files_own_and_the_resampled_length_follows_librosa(
    frames: int, rate_hz: int, channels: int
) -> None:
    samples = np.full((frames, channels), 0.25, np.float32)
    decoded = decode_audio(audiogen.encode(samples, rate_hz, "wav"))
    assert decoded.duration_s == frames / rate_hz
    assert (decoded.sample_rate_hz, decoded.channels) == (rate_hz, channels)
    assert decoded.waveform.size == math.ceil(frames * (TARGET_SAMPLE_RATE_HZ / rate_hz))


@pytest.mark.parametrize("fmt", ["wav", "flac", "m4a"])
def test_split_channels_are_each_channel_decoded_on_its_own(fmt: str) -> None:
    left = audiogen.tone(1.0, 44100, 1, freq_hz=300.0)
    right = audiogen.tone(1.0, 44100, 1, freq_hz=700.0, amplitude=0.2)
    stereo = decode_audio(
        audiogen.encode(np.hstack([left, right]), 44100, fmt), split_channels=True
    )
    assert stereo.split is not None and len(stereo.split) == 2 and stereo.waveform.size == 0
    assert _dominant_frequency_hz(stereo.track(0), TARGET_SAMPLE_RATE_HZ) == pytest.approx(
        300, abs=2
    )
    assert _dominant_frequency_hz(stereo.track(1), TARGET_SAMPLE_RATE_HZ) == pytest.approx(
        700, abs=2
    )
    mixed = decode_audio(audiogen.encode(np.hstack([left, right]), 44100, fmt))
    # Resampling is linear: the mix of the split channels is the mixed decode, to float rounding.
    np.testing.assert_allclose((stereo.track(0) + stereo.track(1)) / 2, mixed.waveform, atol=1e-5)
    if fmt in audiogen.LOSSLESS_FORMATS:
        alone = decode_audio(audiogen.encode(left, 44100, fmt))
        np.testing.assert_array_equal(stereo.track(0), alone.waveform)


def test_a_mixed_decode_has_no_channels_to_name_and_a_split_one_no_mix() -> None:
    data = audiogen.encode(audiogen.tone(0.2, 16000, 2), 16000, "wav")
    with pytest.raises(ValueError, match="mixed"):
        decode_audio(data).track(0)
    with pytest.raises(ValueError, match="split"):
        decode_audio(data, split_channels=True).track(None)


def test_long_audio_is_resampled_as_it_is_decoded_with_the_same_samples_as_at_once() -> None:
    # soxr's stream, fed block by block, gives librosa's one-shot result to the bit.
    samples = (0.1 * np.random.default_rng(3).standard_normal((3 * 48000 + 17, 1))).astype(
        np.float32
    )
    decoded = decode_audio(audiogen.encode(samples, 48000, "flac"))
    pcm = audiogen.pcm16(samples[:, 0]) / np.float32(32768)
    expected = soxr.resample(pcm.astype(np.float32), 48000, 16000, quality="HQ")
    np.testing.assert_array_equal(decoded.waveform[: expected.size], expected)


# -- spans of a file -----------------------------------------------------------------------------


def _noise(seconds: float, rate_hz: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (0.1 * rng.standard_normal((round(seconds * rate_hz), channels))).astype(np.float32)


def test_a_span_of_a_16khz_file_is_exactly_its_samples() -> None:
    samples = _noise(3.0, 16000)
    span = decode_audio(audiogen.encode(samples, 16000, "wav"), start_s=1.25, end_s=2.0)
    assert span.duration_s == 0.75
    np.testing.assert_array_equal(
        span.waveform, audiogen.pcm16(samples[20000:32000, 0]) / np.float32(32768.0)
    )


@pytest.mark.parametrize("fmt", audiogen.FORMATS)
def test_a_span_decodes_to_what_the_whole_file_holds_there(fmt: str) -> None:
    # Seeking (libsndfile) or decoding and counting (FFmpeg) lands on the same samples; only the
    # resampler's first and last few samples differ, started at the span rather than the file.
    data = audiogen.encode(_noise(4.0, 44100, 2), 44100, fmt)
    whole = decode_audio(data, split_channels=True)
    span = decode_audio(data, start_s=1.5, end_s=3.0, split_channels=True)
    assert len(span.split[1]) == 24000
    inside = slice(100, -100)
    np.testing.assert_allclose(
        span.split[1][inside], whole.split[1][24000:48000][inside], atol=1e-6
    )


@pytest.mark.parametrize("fmt", ["wav", "m4a"])
def test_a_span_past_the_end_of_the_file_says_where_the_file_ends(fmt: str) -> None:
    data = audiogen.encode(audiogen.tone(2.0, 16000, 1), 16000, fmt)
    with pytest.raises(RowError) as caught:
        decode_audio(data, start_s=5.0, end_s=6.0)
    assert caught.value.code is ErrorCode.SPAN_OUTSIDE_AUDIO
    assert "the span lies past the end of the file, which holds 2.0" in caught.value.message


def test_the_length_limit_is_the_spans_not_the_files() -> None:
    data = audiogen.encode(audiogen.tone(10.0, 16000, 1), 16000, "wav")
    assert decode_audio(data, start_s=8.0, max_duration_s=3.0).duration_s == 2.0
    with pytest.raises(RowError) as caught:
        decode_audio(data, start_s=2.0, max_duration_s=3.0)
    assert caught.value.code is ErrorCode.TOO_LONG


@pytest.mark.parametrize("fmt", audiogen.FORMATS)
def test_spans_are_reached_by_seeking_in_what_libsndfile_reads(fmt: str) -> None:
    data = audiogen.encode(audiogen.tone(0.5, 16000, 1), 16000, fmt)
    assert seekable(data) is (fmt != "m4a")
    assert seekable(b"not audio") is False
