"""Speech segments: found where the sentences are, cut at the longest pauses, joined when short,
never longer than asked or than Whisper's window, per channel when channels are split."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speech_emotion.audio import decode_audio
from speech_emotion.config import SegmentConfig
from speech_emotion.segments import (
    FRAME_SAMPLES,
    Segmenter,
    find_segments,
    speech_probabilities,
)

from .audiogen import tone
from .factories import RATE_HZ, speech


def segments(track: np.ndarray, *, min_s: float = 1.0, max_s: float = 15.0):
    return find_segments(
        speech_probabilities(track), len(track), min_segment_s=min_s, max_segment_s=max_s
    )


def holds(segment: tuple[int, int], span: tuple[int, int]) -> bool:
    return segment[0] <= span[0] and span[1] <= segment[1]


def test_the_probabilities_are_faster_whispers_own():
    from faster_whisper.vad import get_vad_model

    # 40 s: more than one of our runs of the model, one of faster-whisper's.
    track = speech(["a00", "b01"] * 6, [0.7, 0.8] * 6).samples[: 40 * RATE_HZ + 100]
    theirs = get_vad_model()(np.pad(track, (0, -len(track) % FRAME_SAMPLES)))
    np.testing.assert_array_equal(speech_probabilities(track), np.asarray(theirs).reshape(-1))


def test_each_sentence_after_a_pause_is_a_segment_of_its_own():
    said = speech(["a00", "a01", "b02", "a03", "b04", "a05"], [0.8, 1.2, 2.5, 0.9, 1.6, 0.5])
    found = segments(said.samples)
    assert len(found) == len(said.spans)
    for segment, (_, start, end) in zip(found, said.spans, strict=True):
        assert holds(segment, (start, end))
        # Little more than the sentence: its pauses are not part of it.
        assert (segment[1] - segment[0]) - (end - start) < 0.5 * RATE_HZ


def test_sentences_with_short_pauses_between_them_are_one_utterance():
    said = speech(["a06", "a07", "a08"], [0.25, 0.25, 1.0])
    (segment,) = segments(said.samples)
    assert all(holds(segment, (s, e)) for _, s, e in said.spans)


def test_a_long_utterance_is_cut_at_its_pauses_never_inside_a_sentence():
    said = speech([f"a{i:02d}" for i in range(7)], [0.3] * 7)  # about 21 s of speech
    found = segments(said.samples, max_s=8.0)
    assert len(found) >= 3
    assert all(end - start <= 8.0 * RATE_HZ for start, end in found)
    for _, start, end in said.spans:
        assert sum(holds(segment, (start, end)) for segment in found) == 1


def test_unbroken_speech_longer_than_the_maximum_is_still_cut():
    said = speech(["a10", "b11", "a12", "b13"], [0.0] * 4)
    found = segments(said.samples, max_s=5.0)
    assert len(found) >= 3 and all(end - start <= 5.0 * RATE_HZ for start, end in found)


def test_a_short_utterance_joins_its_nearer_neighbour():
    word = speech(["a09"], [0.0], lead_s=0.0).samples[: int(0.5 * RATE_HZ)]
    track = np.concatenate(
        [
            speech(["a00"], [0.7]).samples,
            word,
            np.zeros(int(2.0 * RATE_HZ), np.float32),
            speech(["b01"], [0.5]).samples,
        ]
    )
    found = segments(track, min_s=1.0)
    assert len(found) == 2
    first_end = int((0.5 + 2.31 + 0.7 + 0.4) * RATE_HZ)
    assert found[0][1] >= first_end  # the word went with the sentence before it


def test_a_lone_short_utterance_takes_in_the_silence_around_it():
    word = speech(["a09"], [0.0], lead_s=0.0).samples[: int(0.5 * RATE_HZ)]
    silence = np.zeros(2 * RATE_HZ, np.float32)
    (segment,) = segments(np.concatenate([silence, word, silence]), min_s=1.5)
    assert segment[1] - segment[0] == int(1.5 * RATE_HZ)


@pytest.mark.parametrize(
    "track",
    [
        np.zeros(40 * RATE_HZ, np.float32),
        tone(40.0, RATE_HZ, 1, freq_hz=440.0)[:, 0],
        (0.05 * np.random.default_rng(0).standard_normal(40 * RATE_HZ)).astype(np.float32),
    ],
    ids=["silence", "tone", "noise"],
)
def test_silence_tones_and_noise_hold_no_speech(track):
    assert segments(track) == []


@settings(max_examples=60, deadline=None)
@given(
    probs=st.lists(st.floats(0, 1), min_size=0, max_size=2000).map(
        lambda p: np.asarray(p, np.float32)
    ),
    min_s=st.floats(0.5, 3.0),
    max_s=st.floats(3.5, 30.0),
)
def test_segments_are_in_order_apart_within_the_track_and_never_too_long(probs, min_s, max_s):
    samples = len(probs) * FRAME_SAMPLES
    found = find_segments(probs, samples, min_segment_s=min_s, max_segment_s=max_s)
    flat = [x for segment in found for x in segment]
    assert flat == sorted(flat)
    assert all(0 <= start < end <= samples for start, end in found)
    assert all(end - start <= max_s * RATE_HZ for start, end in found)


def decoded(wav: bytes, split: bool = False):
    return decode_audio(wav, split_channels=split)


def test_auto_keeps_a_short_recording_whole_and_segments_a_long_one():
    auto = Segmenter(SegmentConfig(mode="auto", over_s=30.0))
    short = decoded(speech(["a00", "a01", "a02"], [1.0] * 3).wav())
    (whole,) = auto(short)
    assert (whole.whole, whole.start, whole.end_s) == (True, 0, short.duration_s)
    long = decoded(speech([f"b{i:02d}" for i in range(9)], [1.0] * 9).wav())
    clips = auto(long)
    assert len(clips) == 9 and not any(c.whole for c in clips)
    assert [c.segment_index for c in clips] == list(range(9))
    assert {c.segment_count for c in clips} == {9}
    # Exact sample positions at 16 kHz.
    assert all(c.start_s == c.start / RATE_HZ and c.end_s == c.end / RATE_HZ for c in clips)


def test_always_segments_even_a_short_recording_and_off_never_does():
    short = decoded(speech(["a00", "a01"], [1.0, 0.5]).wav())
    assert len(Segmenter(SegmentConfig(mode="always"))(short)) == 2
    assert (
        len(Segmenter(SegmentConfig(mode="off"))(decoded(speech(["a00"] * 12, [1.0] * 12).wav())))
        == 1
    )


def test_split_channels_put_each_speakers_sentences_on_their_own_channel():
    call = speech(
        ["a00", "b01", "a02", "b03", "a04", "b05"],
        [0.8, 0.6, 1.0, 0.7, 0.9, 0.5],
        channels=[0, 1, 0, 1, 0, 1],
    )
    clips = Segmenter(SegmentConfig(mode="always"))(decoded(call.wav(8000), split=True))
    for channel in (0, 1):
        mine = [(c.start, c.end) for c in clips if c.channel == channel]
        said = call.on(channel)
        assert len(mine) == len(said)
        # 8 kHz round trip: sentence edges within a frame or two.
        for (start, end), (s, e) in zip(mine, said, strict=True):
            assert start <= s + 2 * FRAME_SAMPLES and end >= e - 2 * FRAME_SAMPLES
        assert [c.segment_index for c in clips if c.channel == channel] == [0, 1, 2]
    assert {c.segment_count for c in clips} == {6}


def test_a_channel_without_speech_has_no_segments():
    call = speech(["a00", "a01"], [1.0, 1.0], channels=[1, 1])
    clips = Segmenter(SegmentConfig(mode="always"))(decoded(call.wav(), split=True))
    assert {c.channel for c in clips} == {1} and len(clips) == 2
