"""Whisper's windows: neighbouring clips of one track share one of at most 30 s, every clip is in
exactly one, and a clip longer than a window is one of its own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from speech_emotion.clips import Clip
from speech_emotion.windows import WINDOW_S, plan_windows

RATE = 16000


def clip(start_s: float, end_s: float, channel: int | None = None, index: int = 0) -> Clip:
    start, end = round(start_s * RATE), round(end_s * RATE)
    return Clip(start, end, start / RATE, end / RATE, channel, index, whole=False)


def test_neighbours_share_a_window_of_at_most_30_s_pauses_included():
    clips = [clip(0.5, 4.0), clip(5.0, 12.0), clip(13.0, 29.0), clip(31.0, 35.0), clip(36, 40)]
    windows = plan_windows(clips)
    assert [w.clips for w in windows] == [(0, 1, 2), (3, 4)]
    assert (windows[0].start, windows[0].end) == (clips[0].start, clips[2].end)
    assert windows[1].spans(clips) == [(0.0, 4.0), (5.0, 9.0)]


def test_clips_of_different_channels_never_share_a_window():
    clips = [clip(0, 2, 0, 0), clip(3, 5, 0, 1), clip(1, 2, 1, 0), clip(4, 6, 1, 1)]
    assert [w.clips for w in plan_windows(clips)] == [(0, 1), (2, 3)]
    assert [w.channel for w in plan_windows(clips)] == [0, 1]


def test_without_packing_every_clip_is_heard_alone():
    clips = [clip(0, 2), clip(3, 5)]
    assert [w.clips for w in plan_windows(clips, pack=False)] == [(0,), (1,)]


def test_a_whole_recording_longer_than_a_window_is_a_window_of_its_own():
    clips = [Clip(0, 40 * RATE, 0.0, 40.0)]
    (window,) = plan_windows(clips)
    assert (window.start, window.end, window.clips) == (0, 40 * RATE, (0,))


@given(
    st.lists(
        st.tuples(st.sampled_from([None, 0, 1]), st.floats(0.0, 3.0), st.floats(0.5, 20.0)),
        max_size=30,
    )
)
def test_every_clip_is_in_exactly_one_window_and_no_window_passes_30_s(shape):
    clips, at = [], {}
    for channel, pause, length in sorted(shape, key=lambda s: str(s[0])):
        start = at.get(channel, 0.0) + pause
        clips.append(clip(start, start + length, channel))
        at[channel] = start + length
    windows = plan_windows(clips)
    assert sorted(i for w in windows for i in w.clips) == list(range(len(clips)))
    for w in windows:
        assert w.end - w.start <= WINDOW_S * RATE or len(w.clips) == 1
        assert {clips[i].channel for i in w.clips} == {w.channel}
