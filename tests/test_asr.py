"""WhisperTranscriber on a tiny random Whisper: batching, order, languages, the guard, long clips.

The tiny model's text is garbage, so these tests check plumbing and bookkeeping, never words.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faster_whisper import WhisperModel

from speech_emotion.asr import Transcript, WhisperTranscriber, is_hallucination
from speech_emotion.errors import ErrorCode, ModelLoadError, RowError
from speech_emotion.features import WhisperFeatureSpec
from speech_emotion.tiny_models import build_tiny_whisper

SAMPLE_RATE_HZ = 16_000
# The guard switched off: the tiny model's output is often repetitive enough to be dropped, and
# comparing empty strings would prove nothing.
NO_GUARD = {
    "no_speech_threshold": 1.0,
    "log_prob_threshold": -math.inf,
    "compression_ratio_threshold": math.inf,
}
# Every window looks silent: any no-speech probability is above 0, any log-probability below 0.
ALL_SILENT = {"no_speech_threshold": 0.0, "log_prob_threshold": 0.0}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper")))


@pytest.fixture(scope="module")
def transcriber(model_dir: str) -> WhisperTranscriber:
    return WhisperTranscriber(model_dir, batch_size=4, **NO_GUARD)


def make_clips(durations_s: list[float], seed: int = 0) -> list[np.ndarray]:
    """Noise, tones, chirps and gated noise in turn: clips the model tells apart."""
    rng = np.random.default_rng(seed)
    clips = []
    for i, duration_s in enumerate(durations_s):
        t = np.arange(round(duration_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
        kind = i % 4
        if kind == 0:
            wave = 0.1 * rng.standard_normal(t.size)
        elif kind == 1:
            wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t)
        elif kind == 2:
            wave = 0.3 * np.sin(2 * np.pi * (100 + 400 * t) * t)
        else:
            wave = 0.3 * np.sign(np.sin(2 * np.pi * (3 + i) * t)) * rng.standard_normal(t.size)
        clips.append(wave.astype(np.float32))
    return clips


class _CountingCalls:
    """Forwards to a wrapped object, counting calls to one of its methods."""

    def __init__(self, wrapped: Any, method: str) -> None:
        self._wrapped = wrapped
        self._method = method
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._wrapped, name)
        if name != self._method:
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


DURATIONS_S = [0.5, 3.0, 20.0, 1.2, 7.5, 11.0, 2.0]


def test_results_come_back_one_per_clip_in_input_order(transcriber: WhisperTranscriber) -> None:
    languages = ["en", "fr", "de", "es", "it", "nl", "pt"]

    results = transcriber.transcribe(make_clips(DURATIONS_S), languages)

    assert all(isinstance(result, Transcript) for result in results)
    assert [result.language for result in results] == languages


def test_log_mel_computed_elsewhere_gives_the_same_transcripts(
    transcriber: WhisperTranscriber, model_dir: str
) -> None:
    clips = make_clips([*DURATIONS_S, 31.0])
    languages = [None, "en", None, "fr", "en", None, "de", "en"]
    spec = WhisperFeatureSpec.from_config(
        (Path(model_dir) / "preprocessor_config.json").read_bytes(), model_dir
    )
    assert spec == transcriber.feature_spec
    # As the decode stage sends them: features for clips that fit the window, samples beyond it.
    features = [spec.log_mel(clip) for clip in clips]
    waveforms = [
        clip if mel is None else clip[:0] for clip, mel in zip(clips, features, strict=True)
    ]

    from_features = transcriber.transcribe(waveforms, languages, features=features)
    from_waveforms = transcriber.transcribe(clips, languages)

    assert features[-1] is None and len({r.text for r in from_features}) > 1
    assert from_features == from_waveforms


def test_log_mel_with_other_mel_bins_than_the_model_is_refused(
    transcriber: WhisperTranscriber,
) -> None:
    bins = transcriber.feature_spec.feature_size + 1
    with pytest.raises(ValueError, match=f"shape \\({bins}, 100\\)"):
        transcriber.transcribe([np.zeros(0, np.float32)], ["en"], features=[np.zeros((bins, 100))])


def test_windows_heard_side_by_side_equal_windows_heard_in_turn(model_dir: str) -> None:
    clips = make_clips(DURATIONS_S)
    languages = [None, "en", None, "fr", "en", None, "de"]
    spans = [None, None, ((0.0, 1.0), (1.5, 2.5)), None, None, None, None]
    in_turn = WhisperTranscriber(model_dir, batch_size=1, cpu_threads=1, **NO_GUARD)
    side_by_side = WhisperTranscriber(model_dir, batch_size=1, cpu_threads=1, workers=3, **NO_GUARD)

    expected = in_turn.transcribe(clips, languages, spans=spans)
    got = side_by_side.transcribe(clips, languages, spans=spans)

    assert len({result.text for result in expected}) > 1
    assert [(r.text, r.parts, r.language) for r in got] == [
        (r.text, r.parts, r.language) for r in expected
    ]
    assert [r.avg_logprob for r in got] == pytest.approx([r.avg_logprob for r in expected])


def test_batched_results_equal_one_at_a_time_results(
    transcriber: WhisperTranscriber, model_dir: str
) -> None:
    clips = make_clips(DURATIONS_S)
    languages = [None, "en", None, "fr", "en", None, "de"]
    one_at_a_time = WhisperTranscriber(model_dir, batch_size=1, **NO_GUARD)

    batched = transcriber.transcribe(clips, languages)
    alone = one_at_a_time.transcribe(clips, languages)

    # Otherwise the comparison below could pass on empty or identical outputs.
    assert len({result.text for result in batched}) > 1
    for got, expected in zip(batched, alone, strict=True):
        assert (got.text, got.language, got.suppressed) == (
            expected.text,
            expected.language,
            expected.suppressed,
        )
        assert got.language_probability == pytest.approx(expected.language_probability, abs=1e-5)
        assert got.no_speech_prob == pytest.approx(expected.no_speech_prob, abs=1e-5)
        assert got.avg_logprob == pytest.approx(expected.avg_logprob, abs=1e-5)
        assert got.compression_ratio == pytest.approx(expected.compression_ratio, abs=1e-5)


def test_short_clips_decode_like_faster_whispers_own_single_file_transcribe(
    transcriber: WhisperTranscriber, model_dir: str
) -> None:
    clips = make_clips([0.5, 3.0, 20.0, 7.5])
    reference = WhisperModel(model_dir, device="cpu", compute_type="int8")

    results = transcriber.transcribe(clips, ["en"] * len(clips))

    for clip, result in zip(clips, results, strict=True):
        segments, _ = reference.transcribe(
            clip,
            language="en",
            beam_size=5,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        [segment] = list(segments)
        assert result.text == segment.text.strip()
        assert result.avg_logprob == pytest.approx(segment.avg_logprob, abs=1e-5)
        assert result.no_speech_prob == pytest.approx(segment.no_speech_prob, abs=1e-5)
        assert result.compression_ratio == pytest.approx(segment.compression_ratio)


def test_rows_with_a_forced_language_are_not_language_detected(
    model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = WhisperTranscriber(model_dir, **NO_GUARD)
    clips = make_clips([1.0, 4.0])
    [detected] = transcriber.transcribe(clips[:1], [None])
    forced = "fr" if detected.language != "fr" else "de"
    ctranslate2_model = _CountingCalls(transcriber._model.model, "detect_language")
    monkeypatch.setattr(transcriber._model, "model", ctranslate2_model)

    results = transcriber.transcribe(clips, [forced, forced])

    assert ctranslate2_model.calls == 0
    assert [(r.language, r.language_probability) for r in results] == [(forced, None)] * 2


def test_rows_without_a_language_are_detected_with_a_probability(
    transcriber: WhisperTranscriber,
) -> None:
    results = transcriber.transcribe(make_clips([0.5, 6.0, 13.0]), [None, "en", None])

    for result in (results[0], results[2]):
        assert result.language in transcriber.languages
        assert 0.0 < result.language_probability <= 1.0
    assert (results[1].language, results[1].language_probability) == ("en", None)


def test_a_clip_over_30_s_goes_through_long_form_decoding(
    model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = WhisperTranscriber(model_dir, beam_size=1, **NO_GUARD)
    long_form_calls: list[dict[str, Any]] = []
    long_form = transcriber._model.transcribe

    def spy(audio: np.ndarray, **options: Any) -> Any:
        long_form_calls.append({"duration_s": len(audio) / SAMPLE_RATE_HZ, **options})
        return long_form(audio, **options)

    monkeypatch.setattr(transcriber._model, "transcribe", spy)
    clips = make_clips([2.0, 31.0, 30.0])

    results = transcriber.transcribe(clips, ["en", None, "de"])

    [call] = long_form_calls
    assert (call["duration_s"], call["language"]) == (31.0, None)
    assert (call["vad_filter"], call["condition_on_previous_text"]) == (False, False)
    assert len(results) == 3
    assert results[1].text
    assert results[1].language in transcriber.languages
    assert 0.0 < results[1].language_probability <= 1.0
    assert [results[0].language, results[2].language] == ["en", "de"]


@pytest.mark.parametrize(
    ("no_speech_prob", "avg_logprob", "compression_ratio", "dropped"),
    [
        (0.9, -1.5, 1.2, True),  # the model hears nothing and is unsure of its text
        (0.9, -0.5, 1.2, False),  # confident text survives a high no-speech probability
        (0.9, -1.0, 1.2, True),  # a log-probability at the threshold is not confident enough
        (0.1, -1.5, 1.2, False),  # unsure text over speech is kept
        (0.1, -0.2, 3.1, True),  # a repetition loop
        (0.6, -1.5, 2.4, False),  # thresholds are strict: equal is not over
    ],
)
def test_the_guard_drops_text_only_when_the_thresholds_say_so(
    no_speech_prob: float, avg_logprob: float, compression_ratio: float, dropped: bool
) -> None:
    assert (
        is_hallucination(
            no_speech_prob,
            avg_logprob,
            compression_ratio,
            no_speech_threshold=0.6,
            log_prob_threshold=-1.0,
            compression_ratio_threshold=2.4,
        )
        is dropped
    )


def test_a_short_clip_the_guard_drops_comes_back_empty_and_suppressed(model_dir: str) -> None:
    transcriber = WhisperTranscriber(model_dir, compression_ratio_threshold=math.inf, **ALL_SILENT)

    [result] = transcriber.transcribe(make_clips([2.0]), ["en"])

    assert (result.text, result.suppressed) == ("", True)
    assert 0.0 < result.no_speech_prob < 1.0


def test_a_long_clip_whose_windows_all_look_silent_comes_back_empty_and_suppressed(
    model_dir: str,
) -> None:
    transcriber = WhisperTranscriber(
        model_dir, beam_size=1, compression_ratio_threshold=math.inf, **ALL_SILENT
    )

    [result] = transcriber.transcribe(make_clips([31.0]), ["en"])

    assert (result.text, result.suppressed) == ("", True)
    assert 0.0 < result.no_speech_prob < 1.0
    assert result.avg_logprob < 0.0


def test_a_zero_length_waveform_raises_value_error(transcriber: WhisperTranscriber) -> None:
    with pytest.raises(ValueError, match="empty"):
        transcriber.transcribe([*make_clips([1.0]), np.zeros(0, np.float32)], ["en", "en"])


def test_a_clip_asking_for_an_unknown_language_is_an_unsupported_language_row_error(
    transcriber: WhisperTranscriber,
) -> None:
    with pytest.raises(RowError) as raised:
        transcriber.transcribe(make_clips([1.0, 1.0]), ["en", "klingon"])

    assert raised.value.code is ErrorCode.UNSUPPORTED_LANGUAGE
    assert "clip 1" in raised.value.message and "klingon" in raised.value.message


def test_a_folder_without_a_model_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model.bin"):
        WhisperTranscriber(str(tmp_path))


def test_the_tiny_whisper_is_a_complete_folder_and_the_same_for_the_same_seed(
    model_dir: str, tmp_path: Path
) -> None:
    again = build_tiny_whisper(tmp_path / "again", seed=0)

    expected = {
        "config.json",
        "model.bin",
        "preprocessor_config.json",
        "tokenizer.json",
        "vocabulary.json",
    }
    assert {path.name for path in again.iterdir()} == expected
    assert (again / "model.bin").read_bytes() == (Path(model_dir) / "model.bin").read_bytes()


def test_words_go_to_the_span_their_middle_falls_in_or_the_nearer_half_of_a_pause():
    from speech_emotion.asr import words_by_span

    spans = [(0.5, 2.0), (3.0, 4.0), (6.0, 7.5)]
    words = [
        {"word": " Hello", "start": 0.4, "end": 0.9},
        {"word": " there.", "start": 1.8, "end": 2.3},  # runs past its span: middle still in it
        {"word": " Late", "start": 2.2, "end": 2.6},  # in the pause, nearer the first span
        {"word": " On", "start": 2.6, "end": 3.2},  # in the pause, nearer the second
        {"word": " time.", "start": 3.3, "end": 3.9},
        {"word": "", "start": 5.0, "end": 5.1},
        {"word": " Bye.", "start": 6.1, "end": 6.9},
    ]
    assert words_by_span(words, spans) == ("Hello there. Late", "On time.", "Bye.")
    assert words_by_span([], spans) == ("", "", "")
