"""Each clip's language picks its models: the manifest row's language, else the job's, else what
Whisper detected. A language without models is an error row naming it, unless a fallback
language's models take it (recorded per row); an unsure detection is not trusted. A language's
models load only when a clip of it comes, and a bilingual corpus goes through one run."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from speech_emotion.annotator import Annotator, ClipInput
from speech_emotion.cli import build_parser, job_config_from_args
from speech_emotion.config import (
    DEFAULT_EMOTION_MODELS,
    DEFAULT_TEXT_ENCODERS,
    DecodeConfig,
    JobConfig,
    ManifestConfig,
    ModelConfig,
    OutputConfig,
)
from speech_emotion.emotion import EN_LABELS, ES_LABELS
from speech_emotion.errors import ConfigError, ErrorCode, RowError
from speech_emotion.languages import Classifiers, ModelSet, Routes
from speech_emotion.pipeline import run
from speech_emotion.plan import languages_needed
from speech_emotion.preflight import check_languages
from speech_emotion.schema import RECORDING_SCHEMA
from speech_emotion.stages import DecodeStage

from .audiogen import encode
from .factories import (
    Corpus,
    FakeClassifier,
    FakeTranscriber,
    recording,
    sentence,
    tiny_model_config,
    wav,
)
from .factories import table as table_of
from .test_stages import decode, model_stage

BOTH = frozenset({"en", "es"})


# -- the rule ------------------------------------------------------------------------------------


def test_a_language_with_models_is_classified_by_its_own():
    assert Routes(BOTH).pick("es") == "es"
    assert Routes(BOTH).pick("en", 0.97) == "en"


def test_a_language_without_models_is_an_error_naming_it_and_the_way_out():
    with pytest.raises(RowError) as raised:
        Routes(BOTH).pick("fr", 0.93)
    error = raised.value
    assert error.code == ErrorCode.UNSUPPORTED_LANGUAGE
    for part in ("'fr'", "0.93", "en, es", "--emotion-model fr=SOURCE", "--fallback-language"):
        assert part in error.message


def test_an_unsure_detection_is_not_trusted():
    with pytest.raises(RowError) as raised:
        Routes(BOTH, min_probability=0.5).pick("es", 0.31)
    assert raised.value.code == ErrorCode.UNCERTAIN_LANGUAGE
    assert "'es' with probability 0.31" in raised.value.message
    assert Routes(BOTH, min_probability=0.5).pick("es", 0.5) == "es"
    assert Routes(BOTH, min_probability=0.2).pick("es", 0.31) == "es"


def test_the_fallback_takes_languages_without_models_unsure_detections_and_unknown_ones():
    routes = Routes(BOTH, fallback="en")
    assert [routes.pick("fr"), routes.pick("es", 0.3), routes.pick(None)] == ["en"] * 3
    assert routes.pick("es", 0.9) == "es"


# -- the settings --------------------------------------------------------------------------------


def test_the_published_sets_cover_english_and_spanish_and_lang_equals_source_replaces_one():
    config = ModelConfig(emotion_models=(("es", "/models/es"),), text_encoders=(("es", "/bert"),))
    assert config.model_sets == {
        "en": ModelSet("en", DEFAULT_EMOTION_MODELS["en"]["concat"], DEFAULT_TEXT_ENCODERS["en"]),
        "es": ModelSet("es", "/models/es", "/bert"),
    }


def test_a_plain_model_is_the_job_languages_and_englishs_with_auto():
    spanish = ModelConfig(language="es", emotion_model="/mine", text_encoder="/my-bert")
    assert spanish.model_sets["es"] == ModelSet("es", "/mine", "/my-bert")
    assert spanish.model_sets["en"].emotion_model == DEFAULT_EMOTION_MODELS["en"]["concat"]
    assert ModelConfig(language="auto", emotion_model="/mine").model_sets["en"].emotion_model == (
        "/mine"
    )


def test_a_new_language_needs_a_text_encoder_in_fusion_modes_only():
    with pytest.raises(ConfigError, match="text encoder for language 'fr'.*--text-encoder fr="):
        ModelConfig(emotion_models=(("fr", "/models/fr"),))
    audio = ModelConfig(mode="audio", emotion_models=(("fr", "/models/fr"),))
    assert audio.model_sets["fr"] == ModelSet("fr", "/models/fr", None)


def test_an_encoder_or_a_fallback_for_a_language_without_models_is_refused():
    with pytest.raises(ConfigError, match="add --emotion-model de=SOURCE"):
        ModelConfig(text_encoders=(("de", "/bert-de"),))
    with pytest.raises(ConfigError, match="fallback_language='de'.*en, es"):
        ModelConfig(fallback_language="de")


def test_the_command_line_takes_each_languages_models():
    args = build_parser().parse_args(
        [
            "annotate",
            "m.jsonl",
            "out",
            "--emotion-model",
            "/models/en",
            "--emotion-model",
            "es=s3://models/es",
            "--text-encoder",
            "es=/bert-es",
            "--fallback-language",
            "es",
            "--min-language-probability",
            "0.7",
        ]
    )
    models = job_config_from_args(args).models
    assert models.model_sets["en"].emotion_model == "/models/en"
    assert models.model_sets["es"] == ModelSet("es", "s3://models/es", "/bert-es")
    assert (models.fallback_language, models.min_language_probability) == ("es", 0.7)


# -- what a run plans ---------------------------------------------------------------------------


def manifest_languages(*languages: str | None) -> pa.Table:
    rows = [recording(f"r{i}", language=language) for i, language in enumerate(languages)]
    return table_of(RECORDING_SCHEMA, rows)


def test_a_run_plans_only_the_models_of_the_languages_it_can_meet():
    english = ModelConfig()
    assert languages_needed(english, manifest_languages("en", None)) == {"en"}
    assert languages_needed(english, manifest_languages("es", None)) == {"en", "es"}
    assert languages_needed(english, manifest_languages("fr")) == set()
    fallback = ModelConfig(fallback_language="es")
    assert languages_needed(fallback, manifest_languages("fr", "en")) == {"en", "es"}
    detected = ModelConfig(language="auto")
    assert languages_needed(detected, manifest_languages("es")) == {"es"}
    assert languages_needed(detected, manifest_languages("es", None)) == {"en", "es"}


def test_a_job_language_without_models_is_refused_before_anything_starts():
    with pytest.raises(ConfigError, match="language=.fr. has no emotion model.*--emotion-model"):
        check_languages(ModelConfig(language="fr"), manifest_languages(None))
    check_languages(ModelConfig(language="fr", fallback_language="en"), manifest_languages(None))
    check_languages(ModelConfig(language="fr"), manifest_languages("en"))  # each row says its own
    with pytest.raises(ConfigError, match="language='xx' is invalid"):
        mine = ModelConfig(mode="audio", emotion_models=(("xx", "/models/xx"),))
        check_languages(mine, manifest_languages("en"))


# -- the models of a clip's language ------------------------------------------------------------


def clip(text: str | None = "some words", language: str | None = None) -> ClipInput:
    return ClipInput(sentence("a00")[:8000], text=text, language=language)


class Loads:
    """Each language's fake classifier, with its label set, and the order they were loaded in."""

    def __init__(self) -> None:
        self.order: list[str | None] = []

    def __call__(self, language: str | None) -> FakeClassifier:
        self.order.append(language)
        return FakeClassifier(labels=ES_LABELS if language == "es" else EN_LABELS)


def classifiers(loads: Loads, **routes) -> Classifiers:
    return Classifiers(loads, Routes(BOTH, **routes), needs_text=True, needs_audio=True)


def test_each_clip_is_classified_by_its_languages_models_loaded_when_first_needed():
    loads = Loads()
    annotator = Annotator(classifiers(loads), FakeTranscriber(), language="en")
    first = annotator.annotate([clip(language="en"), clip()])
    assert loads.order == ["en"]
    english, spanish, french = annotator.annotate(
        [clip(language="en"), clip(language="es"), clip(language="fr")]
    )
    assert loads.order == ["en", "es"]
    assert [note.model_language for note in (*first, english, spanish)] == ["en"] * 3 + ["es"]
    assert set(spanish.scores or ()) == set(ES_LABELS) and set(english.scores or ()) == set(
        EN_LABELS
    )
    assert (french.error_code, french.emotion, french.model_language) == (
        "unsupported_language",
        None,
        None,
    )
    assert french.error is not None and french.error.startswith("route: no emotion model")


def test_with_auto_whisper_detects_the_language_of_clips_that_came_with_a_transcript():
    transcriber = FakeTranscriber(detected=("es", 0.88))
    annotator = Annotator(classifiers(Loads()), transcriber, language=None)
    given, said = annotator.annotate([clip("hola"), clip("hello", language="en")])
    assert (given.language, given.language_probability, given.model_language) == ("es", 0.88, "es")
    assert (given.transcript, given.transcript_source) == ("hola", "manifest")
    assert (said.language, said.language_probability, said.model_language) == ("en", None, "en")
    assert transcriber.calls == [[8000]]  # one detection, of the clip without a language


def test_an_unsure_detection_is_an_error_row_or_goes_to_the_fallback():
    unsure = FakeTranscriber(detected=("es", 0.2))
    (note,) = Annotator(classifiers(Loads()), unsure, language=None).annotate([clip(None)])
    assert (note.error_code, note.language, note.language_probability) == (
        "uncertain_language",
        "es",
        0.2,
    )
    (kept,) = Annotator(classifiers(Loads(), fallback="en"), unsure).annotate([clip(None)])
    assert (kept.ok, kept.language, kept.model_language) == (True, "es", "en")


def test_the_model_stage_writes_which_languages_models_classified_each_row(tiny_models, tmp_path):
    spanish = tiny_models.spanish
    rows = []
    for name, language in (("said-es", "es"), ("said-fr", "fr"), ("said-en", None)):
        (tmp_path / f"{name}.wav").write_bytes(wav(0.8))
        rows.append(
            recording(name, audio=str(tmp_path / f"{name}.wav"), text="hi", language=language)
        )
    stage = model_stage(tiny_models, fallback_language="en")
    out = {
        r["id"]: r
        for r in stage(
            decode(DecodeStage(DecodeConfig()), table_of(RECORDING_SCHEMA, rows))
        ).to_pylist()
    }
    es, fr, en = out["said-es"], out["said-fr"], out["said-en"]
    assert (es["language"], es["model_language"], es["emotion_model"], es["text_encoder"]) == (
        "es",
        "es",
        str(spanish.emotion["concat"]),
        str(spanish.text_encoder),
    )
    assert [k for k, _ in es["scores"]] == list(ES_LABELS)
    assert (fr["status"], fr["language"], fr["model_language"], fr["emotion_model"]) == (
        "ok",
        "fr",
        "en",
        str(tiny_models.emotion["concat"]),
    )
    assert [k for k, _ in fr["scores"]] == list(EN_LABELS)
    assert (en["language"], en["model_language"]) == ("en", "en")


# -- one run, two languages ---------------------------------------------------------------------


def flac(name: str) -> bytes:
    return encode(sentence(name), 16000, "flac")


def test_a_bilingual_corpus_goes_through_one_run_each_row_in_its_languages_models(
    tmp_path, tiny_models, whisper_base, ray_cluster
):
    corpus = Corpus(str(tmp_path / "calls"))
    said = {"en-given": "a00", "es-given": "s00", "en-heard": "b02", "es-heard": "s01"}
    for name, spoken in said.items():
        language = name.split("-")[0] if name.endswith("given") else None
        corpus.add(
            name, encode(sentence(spoken), 16000, "flac"), path=f"{name}.flac", language=language
        )
    corpus.add("es-text", encode(sentence("s02"), 16000, "flac"), path="es-text.flac", text="Hola")
    corpus.add("fr", encode(sentence("a01"), 16000, "flac"), path="fr.flac", language="fr")
    models = tiny_model_config(tiny_models, whisper_model=str(whisper_base), language="auto")
    out = tmp_path / "labels"
    summary = run(
        JobConfig(
            manifest=ManifestConfig(uri=corpus.manifest),
            output=OutputConfig(uri=str(out)),
            models=models,
        )
    )
    assert (summary.rows, summary.ok) == (6, 5)
    rows = {
        row[0]: row[1:]
        for row in duckdb.sql(
            "SELECT id, language, model_language, emotion_model, text_encoder, "
            "map_keys(scores), transcript_source, error_code, error "
            f"FROM '{out}/run_date=*/*.parquet'"
        ).fetchall()
    }
    spanish = tiny_models.spanish
    english = (str(tiny_models.emotion["concat"]), str(tiny_models.text_encoder), list(EN_LABELS))
    castilian = (str(spanish.emotion["concat"]), str(spanish.text_encoder), list(ES_LABELS))
    expected = {
        "en-given": ("en", "en", *english, "whisper"),
        "en-heard": ("en", "en", *english, "whisper"),
        "es-given": ("es", "es", *castilian, "whisper"),
        "es-heard": ("es", "es", *castilian, "whisper"),
        "es-text": ("es", "es", *castilian, "manifest"),
    }
    assert {name: rows[name][:6] for name in expected} == expected
    language, model_language, *_, error_code, error = rows["fr"]
    assert (language, model_language, error_code) == ("fr", None, "unsupported_language")
    assert "no emotion model for language 'fr'" in error
