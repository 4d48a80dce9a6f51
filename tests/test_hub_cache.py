"""With HF_HUB_OFFLINE=1 (set for the whole test session), hub ids come from the local Hugging
Face cache: the commit it records for ``main`` is pinned and written to the rows, a pinned commit
is loaded as it is, and a model or revision the cache lacks is one error naming the cache."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pytest

from speech_emotion.config import JobConfig, ManifestConfig, ModelConfig, OutputConfig
from speech_emotion.errors import ModelLoadError
from speech_emotion.hub_cache import cache_folder
from speech_emotion.pipeline import run
from speech_emotion.plan import plan_models
from speech_emotion.sources import check_model_source, read_model_file, resolve_model

from .factories import Corpus
from .hubcache import put_in_cache

EMOTION = "tiny-org/emotion-concat-en"
ENCODER = "tiny-org/bert-uncased"
WHISPER = "tiny"  # faster-whisper's size name for Systran/faster-whisper-tiny


@dataclass(frozen=True)
class Cached:
    emotion: str
    """The commit ``refs/main`` names."""
    emotion_before: str
    """An older commit of the same repo, still in the cache, that no ref names."""
    encoder: str
    whisper: str


@pytest.fixture(scope="module")
def cached(tiny_models, tmp_path_factory) -> Cached:
    cache = cache_folder()
    older = tmp_path_factory.mktemp("older") / "emotion"
    shutil.copytree(tiny_models.emotion["concat"], older)
    (older / "README.md").write_text("the previous commit\n")
    return Cached(
        emotion_before=put_in_cache(cache, EMOTION, older, ref=None),
        emotion=put_in_cache(cache, EMOTION, tiny_models.emotion["concat"]),
        encoder=put_in_cache(cache, ENCODER, tiny_models.text_encoder),
        whisper=put_in_cache(cache, "Systran/faster-whisper-tiny", tiny_models.whisper),
    )


def hub_models() -> ModelConfig:
    return ModelConfig(
        mode="concat", emotion_model=EMOTION, text_encoder=ENCODER, whisper_model=WHISPER
    )


def test_the_cache_layout_is_the_one_huggingface_hub_reads(cached):
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(cache_folder())
    assert not info.warnings
    repos = {repo.repo_id: repo for repo in info.repos}
    assert {r.commit_hash for r in repos[EMOTION].revisions} == {
        cached.emotion,
        cached.emotion_before,
    }


def test_a_hub_id_is_pinned_to_the_commit_the_cache_records_for_main(cached):
    assert check_model_source(EMOTION) == cached.emotion
    assert check_model_source(ENCODER) == cached.encoder
    assert check_model_source(WHISPER, whisper=True) == cached.whisper


def test_the_driver_plans_every_hub_model_from_the_cache_alone(cached, tiny_models):
    config = JobConfig(ManifestConfig("m.jsonl"), OutputConfig("out"), models=hub_models())
    manifest = pa.table({"text": pa.array([None], pa.string()), "language": ["en"]})
    plan = plan_models(config, manifest, "run")
    assert plan.revisions == {
        "en:emotion_model_revision": cached.emotion,
        "en:text_encoder_revision": cached.encoder,
        "whisper_model_revision": cached.whisper,
    }
    assert plan.features is not None and plan.whisper_features is not None
    expected = (tiny_models.emotion["concat"] / "preprocessor_config.json").read_bytes()
    assert read_model_file(EMOTION, "preprocessor_config.json", revision=cached.emotion) == expected


def test_a_worker_loads_the_pinned_commit_even_where_main_names_another(cached):
    pinned = resolve_model(EMOTION, revision=cached.emotion_before)
    assert (pinned.path.name, pinned.revision) == (cached.emotion_before, cached.emotion_before)
    assert (pinned.path / "README.md").read_text() == "the previous commit\n"
    whisper = resolve_model(WHISPER, whisper=True, revision=cached.whisper)
    assert (whisper.path / "model.bin").is_file()


def test_a_model_missing_from_the_cache_is_one_error_naming_it_and_the_cache(cached):
    with pytest.raises(ModelLoadError) as missing:
        check_model_source("tiny-org/not-downloaded")
    message = str(missing.value)
    assert "'tiny-org/not-downloaded' is not in the Hugging Face cache" in message
    assert str(cache_folder()) in message
    assert "hf download tiny-org/not-downloaded" in message
    # Every way in says the same: the driver's checks and a worker's load.
    with pytest.raises(ModelLoadError, match="not-downloaded' is not in the Hugging Face cache"):
        read_model_file("tiny-org/not-downloaded", "config.json")
    named = r"'large-v3-turbo' \(hub repo 'mobiuslabsgmbh/faster-whisper-large-v3-turbo'\) is not"
    with pytest.raises(ModelLoadError, match=named):
        check_model_source("large-v3-turbo", whisper=True)
    with pytest.raises(ModelLoadError, match=named):
        resolve_model("large-v3-turbo", whisper=True)


def test_a_pinned_revision_absent_from_the_cache_names_it_and_what_the_cache_holds(cached):
    absent = "0" * 40
    with pytest.raises(ModelLoadError) as error:
        resolve_model(EMOTION, revision=absent)
    message = str(error.value)
    assert f"revision '{absent}' is not in the Hugging Face cache {cache_folder()}" in message
    assert f"main = {cached.emotion}" in message
    assert f"commit {cached.emotion_before}" in message


def test_a_run_with_hub_ids_only_labels_from_the_cache_and_records_the_commits(
    cached, tmp_path, ray_cluster
):
    corpus = Corpus(str(tmp_path / "corpus")).add_tones(["a", "b"])
    out = tmp_path / "labels"
    config = JobConfig(ManifestConfig(corpus.manifest), OutputConfig(str(out)), models=hub_models())
    summary = run(config)
    assert (summary.rows, summary.ok) == (2, 2)
    rows = duckdb.sql(
        "SELECT DISTINCT status, transcript_source, emotion_model, emotion_model_revision, "
        "text_encoder_revision, whisper_model, whisper_model_revision "
        f"FROM read_parquet('{out}/**/*.parquet')"
    ).fetchall()
    assert rows == [
        ("ok", "whisper", EMOTION, cached.emotion, cached.encoder, WHISPER, cached.whisper)
    ]


def test_a_snapshot_the_cache_knows_is_incomplete_is_refused(tiny_models):
    commit = put_in_cache(cache_folder(), "tiny-org/interrupted", tiny_models.text_encoder)
    snapshot = cache_folder() / "models--tiny-org--interrupted" / "snapshots" / commit
    (snapshot / "model.safetensors").unlink()  # a download that stopped half way
    with pytest.raises(ModelLoadError, match=r"interrupted'.*incomplete \(1 file\(s\) are missing"):
        check_model_source("tiny-org/interrupted")
