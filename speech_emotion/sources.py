"""Where models come from: a hub id, a local folder, or an object-storage URI.

Object-storage models are copied once per node into a local cache and reused by every actor on
it; hub models go through the Hugging Face cache, and with ``HF_HUB_OFFLINE=1`` come from it alone
(:mod:`.hub_cache`). Every failure names the model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from .errors import ModelLoadError
from .hub_cache import cached_snapshot, offline

__all__ = [
    "ResolvedModel",
    "check_model_source",
    "read_model_file",
    "read_tensor_shapes",
    "resolve_model",
    "whisper_repo_id",
]

logger = logging.getLogger(__name__)

# Files a model folder needs; the hub repos also hold training artefacts we never read.
_HUB_PATTERNS = ["*.json", "*.safetensors", "model.bin", "*.txt", "*.model", "vocabulary.*"]
_HINT = (
    "If the machines cannot reach the Hugging Face hub, set HF_HUB_OFFLINE=1 to use a Hugging "
    "Face cache that holds the model, or copy the model folder to object storage or a local path "
    "and pass that instead."
)


@dataclass(frozen=True)
class ResolvedModel:
    source: str
    """What the user named: hub id, folder or URI."""
    path: Path
    """Local folder holding the model files."""
    revision: str | None
    """Hub commit, when the model came from the hub."""


def _is_remote(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def _local_path(source: str) -> Path:
    return Path(source.removeprefix("file://")).expanduser()


def whisper_repo_id(source: str) -> str:
    """faster-whisper's size names (``large-v3-turbo``) map to hub repos; anything else is an id."""
    from faster_whisper.utils import _MODELS

    return _MODELS.get(source, source)


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "speech_emotion" / "models"


def _copy_from_object_storage(source: str, cache_dir: Path) -> Path:
    import fsspec

    key = hashlib.sha256(source.rstrip("/").encode()).hexdigest()[:16]
    target = cache_dir / key
    done = target / ".complete"
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Several actors on one node start together: one copies, the others wait and reuse it.
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return target
        partial = cache_dir / f"{key}.partial-{os.getpid()}"
        try:
            fs, path = fsspec.core.url_to_fs(source)
            if not fs.isdir(path):
                raise ModelLoadError(f"model {source!r}: no such folder in object storage")
            fs.get(path.rstrip("/") + "/", str(partial) + "/", recursive=True)
        except ModelLoadError:
            raise
        except Exception as exc:  # any storage failure is reported with the model
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelLoadError(f"model {source!r} could not be copied: {exc}") from exc
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        done.touch()
        logger.info("copied model %s to %s", source, target)
    return target


def _download_from_hub(repo_id: str, source: str, revision: str | None) -> ResolvedModel:
    from huggingface_hub import snapshot_download

    if offline():
        path = cached_snapshot(source, repo_id, revision, _HUB_PATTERNS)
        return ResolvedModel(source=source, path=path, revision=path.name)
    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_PATTERNS))
    except Exception as exc:  # hub, HTTP and network errors share no base class
        raise ModelLoadError(
            f"model {source!r} could not be downloaded from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]}). {_HINT}"
        ) from exc
    commit = path.name if path.parent.name == "snapshots" else revision
    return ResolvedModel(source=source, path=path, revision=commit)


def _kind(source: str) -> str:
    """remote (object storage), local (an existing folder) or hub; a missing path is an error."""
    if _is_remote(source):
        return "remote"
    if _local_path(source).is_dir():
        return "local"
    if source.startswith(("/", ".", "~", "file://")):
        raise ModelLoadError(f"model {source!r}: no such folder")
    return "hub"


def _folder(source: str, kind: str, revision: str | None, whisper: bool) -> Path | None:
    """Where a model's files can be read in place: its local folder or, offline, its snapshot
    in the Hugging Face cache; None where they must be fetched."""
    if kind == "local":
        return _local_path(source)
    if kind == "hub" and offline():
        repo_id = whisper_repo_id(source) if whisper else source
        return cached_snapshot(source, repo_id, revision, _HUB_PATTERNS)
    return None


def resolve_model(
    source: str, *, whisper: bool = False, revision: str | None = None, cache_dir: str | None = None
) -> ResolvedModel:
    """A local folder for ``source``, fetching it first if it lives elsewhere."""
    kind = _kind(source)
    if kind == "remote":
        cache = Path(cache_dir) if cache_dir else _default_cache_dir()
        return ResolvedModel(source, _copy_from_object_storage(source, cache), None)
    if kind == "local":
        return ResolvedModel(source, _local_path(source), None)
    return _download_from_hub(whisper_repo_id(source) if whisper else source, source, revision)


def check_model_source(source: str, *, whisper: bool = False) -> str | None:
    """Fail fast on the driver, before any worker starts; returns the hub commit to pin.

    Pinning the commit here means every actor loads the same revision even if the repo changes
    during a long run. Offline, the commit is the one the Hugging Face cache has for ``main``.
    """
    kind = _kind(source)
    if kind == "remote":
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(source)
            found = fs.isdir(path)
        except Exception as exc:  # reported with the model name
            raise ModelLoadError(f"model {source!r} could not be reached: {exc}") from exc
        if not found:
            raise ModelLoadError(f"model {source!r}: no such folder in object storage")
        return None
    if kind == "local":
        return None
    from huggingface_hub import HfApi

    repo_id = whisper_repo_id(source) if whisper else source
    if offline():
        return cached_snapshot(source, repo_id, None, _HUB_PATTERNS).name
    try:
        return HfApi().model_info(repo_id).sha
    except Exception as exc:  # hub, HTTP and network errors share no base class
        raise ModelLoadError(
            f"model {source!r} (hub repo {repo_id!r}) is not reachable "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]}). {_HINT}"
        ) from exc


@overload
def read_model_file(
    source: str,
    name: str,
    *,
    revision: str | None = None,
    whisper: bool = False,
    missing_ok: Literal[False] = False,
) -> bytes: ...


@overload
def read_model_file(
    source: str, name: str, *, revision: str | None = None, whisper: bool = False, missing_ok: bool
) -> bytes | None: ...


def read_model_file(
    source: str,
    name: str,
    *,
    revision: str | None = None,
    whisper: bool = False,
    missing_ok: bool = False,
) -> bytes | None:
    """One small file of a model (a config) without fetching its weights: for the driver, and
    for workers that need a model's settings but not the model. None if the model has no such
    file and ``missing_ok``; any other failure is a :class:`ModelLoadError`."""
    kind = _kind(source)
    folder = _folder(source, kind, revision, whisper)
    try:
        if folder is not None:
            return (folder / name).read_bytes()
        if kind == "hub":
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

            repo_id = whisper_repo_id(source) if whisper else source
            try:
                with open(hf_hub_download(repo_id, name, revision=revision), "rb") as f:
                    return f.read()
            except RemoteEntryNotFoundError as exc:  # the repo has no such file
                raise FileNotFoundError(name) from exc
            except LocalEntryNotFoundError as exc:  # the hub is unreachable: not "no such file"
                raise ConnectionError(str(exc)) from exc
        import fsspec

        fs, path = fsspec.core.url_to_fs(source)
        return fs.cat_file(f"{path.rstrip('/')}/{name}")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ModelLoadError(f"model {source!r} has no {name}") from None
    except Exception as exc:  # hub, storage and file errors share no base class
        raise ModelLoadError(f"model {source!r}: cannot read its {name} ({_why(exc)})") from exc


# A safetensors header is a few hundred kB at most; anything larger is not one.
_MAX_HEADER_BYTES = 64 * 2**20


def read_tensor_shapes(source: str, *, revision: str | None = None) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a model's ``model.safetensors``, from its header alone (a few kB of
    a file of gigabytes); any failure is a :class:`ModelLoadError` naming the model."""
    kind = _kind(source)
    folder = _folder(source, kind, revision, whisper=False)
    try:
        if folder is not None:
            opened = open(folder / "model.safetensors", "rb")  # noqa: SIM115
        elif kind == "hub":
            from huggingface_hub import get_safetensors_metadata

            metadata = get_safetensors_metadata(source, revision=revision)
            return {
                name: tuple(tensor.shape)
                for file in metadata.files_metadata.values()
                for name, tensor in file.tensors.items()
            }
        else:
            import fsspec

            fs, path = fsspec.core.url_to_fs(source)
            opened = fs.open(f"{path.rstrip('/')}/model.safetensors", "rb")
        with opened as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > _MAX_HEADER_BYTES:
                raise ValueError("not a safetensors file")
            header = json.loads(f.read(size))
    except FileNotFoundError:
        raise ModelLoadError(f"model {source!r} has no model.safetensors") from None
    except Exception as exc:  # hub, storage and format errors share no base class
        raise ModelLoadError(
            f"model {source!r}: cannot read the header of its model.safetensors ({_why(exc)})"
        ) from exc
    return {name: tuple(v["shape"]) for name, v in header.items() if name != "__metadata__"}


def _why(exc: BaseException) -> str:
    """An exception in a few words: its type and its message's first line."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}"
