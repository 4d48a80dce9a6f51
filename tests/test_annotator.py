"""The annotator with fake models: Whisper only where a transcript is missing, languages from the
clip, the job or detection, a language Whisper lacks is that clip's error alone, and the emotion
model gets features when the decode stage made them."""

from __future__ import annotations

import numpy as np
import pytest

from speech_emotion.annotator import Annotator, ClipInput

from .factories import FakeClassifier, FakeTranscriber


def clip(samples: int, text: str | None = None, language: str | None = None, **extra):
    return ClipInput(np.zeros(samples, np.float32), text=text, language=language, **extra)


def test_only_clips_without_a_transcript_are_transcribed_in_one_call_in_order():
    transcriber, classifier = FakeTranscriber(), FakeClassifier()
    notes = Annotator(classifier, transcriber, language="en").annotate(
        [clip(100, "given"), clip(200), clip(300, ""), clip(400)]
    )
    assert transcriber.calls == [[200, 400]]
    assert [n.transcript for n in notes] == ["given", "heard 200", "", "heard 400"]
    assert [n.transcript_source for n in notes] == ["manifest", "whisper", "manifest", "whisper"]
    assert classifier.calls[0]["texts"] == ["given", "heard 200", "", "heard 400"]


def test_a_clips_language_wins_then_the_jobs_and_without_either_whisper_detects_it():
    transcriber = FakeTranscriber()
    job = Annotator(FakeClassifier(), transcriber, language="en")
    said, defaulted = job.annotate([clip(10, language="es"), clip(10)])
    assert (said.language, said.language_probability) == ("es", None)
    assert (defaulted.language, defaulted.language_probability) == ("en", None)
    (detected,) = Annotator(FakeClassifier(), transcriber, language=None).annotate([clip(10)])
    assert (detected.language, detected.language_probability) == ("en", 0.9)


def test_a_language_whisper_lacks_fails_that_clip_alone():
    classifier = FakeClassifier()
    odd, fine = Annotator(classifier, FakeTranscriber(), language="en").annotate(
        [clip(10, language="klingon"), clip(20)]
    )
    assert (odd.error_code, odd.scores) == ("unsupported_language", None)
    assert odd.error.startswith("transcribe: language 'klingon'")
    assert fine.ok and fine.emotion in fine.scores
    assert classifier.calls[0]["sizes"] == [20]


def test_a_clip_with_a_transcript_needs_no_whisper_even_in_an_odd_language():
    (note,) = Annotator(FakeClassifier(), None, language="en").annotate(
        [clip(10, "hola", language="xx")]
    )
    assert note.ok and note.language == "xx"


def test_clips_without_transcripts_and_no_transcriber_are_a_bug_not_a_row_error():
    with pytest.raises(RuntimeError, match="no transcriber"):
        Annotator(FakeClassifier(), None).annotate([clip(10)])


def test_audio_only_models_hear_nothing_and_take_the_jobs_language():
    transcriber = FakeTranscriber()
    classifier = FakeClassifier(needs_text=False)
    (note,) = Annotator(classifier, transcriber, language="en").annotate([clip(10)])
    assert transcriber.calls == []
    assert (note.transcript, note.language) == (None, "en")
    assert classifier.calls[0]["texts"] is None


def test_features_from_decode_are_used_where_a_clip_has_them_and_waveforms_elsewhere():
    classifier = FakeClassifier()
    features = (np.zeros((7, 160), np.float32), 7)
    annotator = Annotator(classifier, FakeTranscriber(), language="en")
    annotator.annotate([clip(0, "a", features=features), clip(0, "b", features=features)])
    annotator.annotate([clip(50, "a", features=features), clip(60, "b")])
    assert [(c["features"], c["sizes"]) for c in classifier.calls] == [
        (True, [7, 7]),
        (True, [7]),
        (False, [60]),
    ]


def test_the_top_label_is_the_most_probable_and_scores_sum_to_one():
    (note,) = Annotator(FakeClassifier(), FakeTranscriber()).annotate([clip(123, "x")])
    assert note.emotion == max(note.scores, key=note.scores.get)
    assert note.emotion_score == note.scores[note.emotion]
    assert sum(note.scores.values()) == pytest.approx(1.0)


def test_an_empty_batch_calls_no_model():
    transcriber, classifier = FakeTranscriber(), FakeClassifier()
    assert Annotator(classifier, transcriber).annotate([]) == []
    assert transcriber.calls == classifier.calls == []
