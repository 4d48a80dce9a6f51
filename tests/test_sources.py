"""Models come from a local folder, object storage (copied once per node) or the hub, and every
failure names the model (hub ids offline from the cache: tests/test_hub_cache.py)."""

from __future__ import annotations

import pytest

from speech_emotion.errors import ModelLoadError
from speech_emotion.sources import check_model_source, read_model_file, resolve_model


def upload_folder(s3, folder, prefix: str) -> str:
    for path in folder.iterdir():
        s3.put(f"{prefix}/{path.name}", path.read_bytes())
    return s3.url(prefix)


def test_an_object_storage_model_is_copied_once_and_then_reused(s3, tiny_models, tmp_path):
    import fsspec

    uri = upload_folder(s3, tiny_models.emotion["audio"], "models/audio-v1")
    assert check_model_source(uri) is None
    first = resolve_model(uri, cache_dir=str(tmp_path))
    assert (first.path / "model.safetensors").read_bytes() == (
        tiny_models.emotion["audio"] / "model.safetensors"
    ).read_bytes()
    fsspec.filesystem("s3").rm(f"{s3.bucket}/models/audio-v1", recursive=True)
    again = resolve_model(uri + "/", cache_dir=str(tmp_path))
    assert again.path == first.path


def test_a_missing_object_storage_model_is_named(s3, tmp_path):
    with pytest.raises(ModelLoadError, match="models/nothing-here'.*no such folder"):
        check_model_source(s3.url("models/nothing-here"))
    with pytest.raises(ModelLoadError, match="no such folder"):
        resolve_model(s3.url("models/nothing-here"), cache_dir=str(tmp_path))


def test_a_local_folder_is_used_in_place(tiny_models):
    resolved = resolve_model(str(tiny_models.text_encoder))
    assert (resolved.path, resolved.revision) == (tiny_models.text_encoder, None)


def test_a_missing_local_folder_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder"):
        resolve_model(str(tmp_path / "absent"))


def test_one_config_file_is_read_without_fetching_the_model(s3, tiny_models, tmp_path):
    folder = tiny_models.emotion["concat"]
    expected = (folder / "preprocessor_config.json").read_bytes()
    uri = upload_folder(s3, folder, "models/concat-config")
    assert read_model_file(uri, "preprocessor_config.json") == expected
    assert read_model_file(str(folder), "preprocessor_config.json") == expected
    with pytest.raises(ModelLoadError, match="concat-config' has no nothing.json"):
        read_model_file(uri, "nothing.json")
    with pytest.raises(ModelLoadError, match="emotion-en' is not in the Hugging Face cache"):
        read_model_file("UMUTeam/w2v-bert-emotion-en", "preprocessor_config.json")


def test_an_optional_config_file_may_be_absent_but_a_model_out_of_reach_is_still_an_error(
    s3, tiny_models
):
    folder = tiny_models.emotion["concat"]
    uri = upload_folder(s3, folder, "models/optional-config")
    assert read_model_file(uri, "nothing.json", missing_ok=True) is None
    assert read_model_file(str(folder), "nothing.json", missing_ok=True) is None
    # Offline, a model the cache lacks is not a model without the file.
    with pytest.raises(ModelLoadError, match="'large-v3-turbo' .* is not in the Hugging Face"):
        read_model_file("large-v3-turbo", "preprocessor_config.json", whisper=True, missing_ok=True)
