"""Short windows of different recordings share one of Whisper's 30 s windows, with silence
between them, in the language they are heard in; Whisper's aligned words go back to each clip, and
a packed window whose words Whisper cannot place is heard again clip by clip."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from speech_emotion.annotator import Annotator, ClipInput, WindowInput
from speech_emotion.asr import Transcript, WhisperTranscriber, stray_words, words_by_span
from speech_emotion.clips import RATE_HZ
from speech_emotion.config import DecodeConfig
from speech_emotion.decoded import read_table
from speech_emotion.features import WhisperFeatureSpec
from speech_emotion.packing import GAP_S, GAP_SAMPLES, plan_packs
from speech_emotion.schema import RECORDING_SCHEMA
from speech_emotion.stages import DecodeStage

from .audiogen import encode
from .factories import (
    SENTENCES,
    FakeClassifier,
    FakeTranscriber,
    recording,
    sentence,
    table,
    wav,
    wer,
    words,
)

S = RATE_HZ


def test_windows_of_one_language_share_a_window_while_they_fit():
    lengths = [4 * S, 5 * S, 6 * S, 7 * S, 8 * S]
    groups = plan_packs(lengths, ["en"] * 5)
    assert sorted(i for group in groups for i in group) == [0, 1, 2, 3, 4]
    assert len(groups) == 2
    for group in groups:
        assert sum(lengths[i] for i in group) + (len(group) - 1) * GAP_SAMPLES <= 30 * S


def test_long_windows_are_placed_first_so_short_ones_fill_the_gaps_they_leave():
    # In arrival order: 20 alone, then 14 + 8, then 14 alone (three windows).
    lengths = [20 * S, 14 * S, 8 * S, 14 * S]
    assert plan_packs(lengths, ["en"] * 4) == [(0, 2), (1, 3)]


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


def test_a_word_stretched_from_a_gap_into_one_clip_is_placed_but_one_across_both_strays():
    spans = [(0.0, 3.0), (5.0, 8.0)]
    into_next = {"word": " this", "start": 3.4, "end": 5.2}  # middle 4.3: 0.7 s from clip 2
    across = {"word": " and", "start": 2.9, "end": 5.1}  # middle 4.0, touching both clips
    assert stray_words([into_next], spans) == 0
    assert words_by_span([into_next], spans) == ("", "this")
    assert stray_words([across], spans) == 1


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


# -- in the decode stage ------------------------------------------------------------------------


def decoded(tmp_path, specs, **stage) -> pa.Table:
    """The decode stage's windows for recordings of ``specs``: (id, seconds, text, language)."""
    rows = []
    for name, seconds, text, language in specs:
        (tmp_path / f"{name}.wav").write_bytes(wav(seconds))
        rows.append(
            recording(name, audio=str(tmp_path / f"{name}.wav"), text=text, language=language)
        )
    stage = DecodeStage(
        DecodeConfig(), whisper_features=WhisperFeatureSpec(), **{"language": "en", **stage}
    )
    return pa.concat_tables(stage(table(RECORDING_SCHEMA, rows)))


def test_short_recordings_heard_in_one_language_share_a_window_with_silence_between(tmp_path):
    out = decoded(
        tmp_path,
        [
            ("en-1", 3.0, None, None),
            ("given", 2.0, "a transcript", None),
            ("es-1", 2.0, None, "es"),
            ("en-2", 4.0, None, "en"),
            ("en-3", 5.0, None, None),
            ("long", 25.0, None, None),
        ],
    )
    windows = [[c["id"] for c in w] for w in out["clips"].to_pylist()]
    # Those heard alone first, as they come; then the packed ones, in the order they came.
    assert windows == [["given"], ["long"], ["en-1", "en-2", "en-3"], ["es-1"]]
    assert out["packed"].to_pylist() == [False, False, True, False]
    offsets = [c["window_offset_s"] for c in out["clips"].to_pylist()[2]]
    assert offsets == [0.0, 3.0 + GAP_S, 3.0 + GAP_S + 4.0 + GAP_S]
    # One log-mel for the packed window: its clips and the silence between them.
    frames = out["whisper_feature_frames"].to_pylist()[2]
    assert frames == round((3.0 + 4.0 + 5.0 + 2 * GAP_S) * 100)


def test_windows_whose_language_is_to_be_detected_are_heard_alone(tmp_path):
    out = decoded(tmp_path, [("a", 2.0, None, None), ("b", 2.0, None, None)], detect=True)
    assert [len(w) for w in out["clips"].to_pylist()] == [1, 1]
    assert out["packed"].to_pylist() == [False, False]


def test_packing_off_gives_each_recording_its_own_window(tmp_path):
    specs = [("a", 2.0, None, None), ("b", 2.0, None, None)]
    assert decoded(tmp_path, specs, packing=False)["packed"].to_pylist() == [False, False]
    assert decoded(tmp_path, specs)["packed"].to_pylist() == [True]


# -- with a real Whisper ------------------------------------------------------------------------


@pytest.mark.slow
def test_packed_clips_get_their_own_sentences_back_as_well_as_heard_alone(whisper_base, tmp_path):
    names = ["a00", "b01", "a02", "b03", "a05", "b06", "a08", "b10"]
    rows = []
    for name in names:
        (tmp_path / f"{name}.flac").write_bytes(encode(sentence(name), RATE_HZ, "flac"))
        rows.append(recording(name, audio=str(tmp_path / f"{name}.flac")))
    whisper = WhisperTranscriber(
        str(whisper_base), compute_type="int8", batch_size=1, cpu_threads=2
    )
    heard, packs = {}, []
    for packing in (True, False):
        stage = DecodeStage(DecodeConfig(), whisper_features=whisper.feature_spec, packing=packing)
        batch = pa.concat_tables(stage(table(RECORDING_SCHEMA, rows)))
        found, live, clips, windows = read_table(batch)
        notes = Annotator(FakeClassifier(), whisper, language="en").annotate(clips, windows)
        ids = [found[i]["id"] for i in live]
        heard[packing] = {n: note.transcript or "" for n, note in zip(ids, notes, strict=True)}
        packs += [[ids[c] for c in w.clips] for w in windows if packing and w.packed]
    assert sum(len(pack) for pack in packs) == len(names)  # every clip was packed
    said = {name: SENTENCES[name] for name in names}
    for name, text in heard[True].items():
        others = [wer(other, text) for n, other in said.items() if n != name]
        assert wer(said[name], text) < min(others), (name, text)
    for pack in packs:
        for before, after in zip(pack, pack[1:], strict=False):
            # No word crossed the silence: the sentence before does not end with the next one's
            # first word, nor the next begin with the last of the one before.
            first, last = words(said[after])[0], words(said[before])[-1]
            assert words(heard[True][before])[-1] != first or first == last, (before, after)
            assert words(heard[True][after])[0] != last or first == last, (before, after)
    mean = {p: np.mean([wer(said[n], t) for n, t in heard[p].items()]) for p in heard}
    assert mean[True] <= mean[False] + 0.01, mean
