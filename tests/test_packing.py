"""Short windows of different recordings share one of Whisper's 30 s windows, with silence
between them, in the language they are heard in; Whisper's aligned words go back to each clip, and
a packed window whose words Whisper cannot place is heard again clip by clip."""

from __future__ import annotations

import numpy as np

from speech_emotion.annotator import Annotator, ClipInput, WindowInput
from speech_emotion.asr import Transcript, stray_words
from speech_emotion.clips import RATE_HZ
from speech_emotion.packing import GAP_SAMPLES, plan_packs

from .factories import FakeClassifier, FakeTranscriber

S = RATE_HZ


def test_windows_of_one_language_share_a_window_while_they_fit():
    lengths = [4 * S, 5 * S, 6 * S, 7 * S, 8 * S]
    assert plan_packs(lengths, ["en"] * 5) == [(0, 1, 2, 3), (4,)]
    used = sum(lengths[:4]) + 3 * GAP_SAMPLES
    assert used <= 30 * S < used + GAP_SAMPLES + lengths[4]


def test_languages_never_share_and_unknown_ones_or_long_ones_are_heard_alone():
    lengths = [3 * S, 3 * S, 3 * S, 3 * S, 25 * S, 3 * S]
    keys = ["en", "es", None, "en", "en", "es"]
    assert plan_packs(lengths, keys) == [(0, 3), (1, 5), (2,), (4,)]


def test_a_word_in_the_middle_of_a_gap_is_a_stray_but_one_at_a_clips_edge_is_not():
    spans = [(0.0, 3.0), (5.0, 8.0)]
    words = [
        {"word": " hello", "start": 2.6, "end": 3.4},  # middle 3.0: at the edge
        {"word": " there", "start": 3.6, "end": 4.0},  # middle 3.8: 0.8 s into the gap
        {"word": " world", "start": 5.1, "end": 5.5},
    ]
    assert stray_words(words, spans) == 1
    assert stray_words(words[:1] + words[2:], spans) == 0


class StrayOnce(FakeTranscriber):
    """Cannot place a word in the first packed window it hears; fine on every later one."""

    def transcribe(self, waveforms, languages, *, features=None, spans=None):
        out = super().transcribe(waveforms, languages, features=features, spans=spans)
        if spans and spans[0] and len(self.calls) == 1:
            out[0] = Transcript(**{**out[0].__dict__, "stray_words": 1})
        return out


def test_a_packed_window_whose_words_stray_is_heard_again_clip_by_clip_from_its_log_mel():
    clips = [ClipInput(np.zeros(0, np.float32)) for _ in range(2)]
    mel = np.zeros((80, 900), np.float32)  # 9 s: clip 0 at 0-3 s, 2 s gap, clip 1 at 5-9 s
    window = WindowInput(
        np.zeros(0, np.float32), (0, 1), log_mel=mel, spans=((0.0, 3.0), (5.0, 9.0)), packed=True
    )
    transcriber = StrayOnce()
    annotator = Annotator(FakeClassifier(), transcriber, language="en")
    first, second = annotator.annotate(clips, [window])
    assert (first.transcript, second.transcript) == ("heard 300", "heard 400")
    assert (first.heard_with, second.heard_with) == (0, 1)
    assert transcriber.calls == [[0], [0, 0]]  # the packed window, then each clip alone


def test_a_packed_window_whose_words_all_land_gives_each_clip_its_part():
    clips = [ClipInput(np.zeros(0, np.float32)) for _ in range(2)]
    mel = np.zeros((80, 900), np.float32)
    window = WindowInput(
        np.zeros(0, np.float32), (0, 1), log_mel=mel, spans=((0.0, 3.0), (5.0, 9.0)), packed=True
    )
    first, second = Annotator(FakeClassifier(), FakeTranscriber(), language="en").annotate(
        clips, [window]
    )
    assert (first.transcript, second.transcript) == (
        "heard 900 from 0 to 3",
        "heard 900 from 5 to 9",
    )
    assert (first.heard_with, second.heard_with) == (0, 0)
