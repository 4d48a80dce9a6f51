"""Hub models without the hub: with ``HF_HUB_OFFLINE=1``, a hub id is a folder in the local
Hugging Face cache.

Clusters that cannot reach the hub bake the cache into their image or mount it from shared
storage, and set ``HF_HUB_OFFLINE=1`` as transformers and faster-whisper expect. The cache then
says which commit a name means (``refs/main``), and that commit is the one pinned for every
worker and written to the rows.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ModelLoadError

__all__ = ["cache_folder", "cached_snapshot", "offline"]


def offline() -> bool:
    """huggingface_hub's own switch (``HF_HUB_OFFLINE``, or ``TRANSFORMERS_OFFLINE``, read when
    each process imports it), so the job and the libraries that load its models always agree."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_folder() -> Path:
    """The cache huggingface_hub reads: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(source: str, repo_id: str, revision: str | None, patterns: list[str]) -> Path:
    """The cached snapshot of ``repo_id`` at ``revision`` (a commit, else the commit its ref
    names; ``main`` when None), holding the files ``patterns`` match; never the network.

    Completeness is checked where the cache knows the commit's file list (``trees/<commit>.json``,
    which huggingface_hub 2.x writes at download); a cache without one is taken as it is.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id, revision=revision, allow_patterns=patterns, local_files_only=True
        )
    except LocalEntryNotFoundError as exc:
        # huggingface_hub 2.x says an interrupted download apart (IncompleteSnapshotError).
        if hasattr(exc, "snapshot_path"):
            raise ModelLoadError(_incomplete(source, repo_id, exc)) from None
        raise ModelLoadError(_not_cached(source, repo_id, revision)) from None
    except Exception as exc:  # a malformed id or an unreadable cache: said with the model
        raise ModelLoadError(
            f"model {_named(source, repo_id)} cannot be looked up in the Hugging Face cache "
            f"{cache_folder()} ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    return Path(folder)


def _named(source: str, repo_id: str) -> str:
    return repr(source) if source == repo_id else f"{source!r} (hub repo {repo_id!r})"


def _not_cached(source: str, repo_id: str, revision: str | None) -> str:
    cache = f"the Hugging Face cache {cache_folder()} (HF_HUB_OFFLINE is set)"
    held = _held(repo_id)
    if not held:
        what = f"model {_named(source, repo_id)} is not in {cache}"
    else:
        what = f"model {_named(source, repo_id)}: revision {revision or 'main'!r} is not in {cache}"
        what += f", which holds {held}"
    return (
        f"{what}. {_fill(repo_id, revision)} Or pass the model as a local folder or one in "
        "object storage."
    )


def _incomplete(source: str, repo_id: str, exc: Exception) -> str:
    missing = re.search(r"\d+ file\(s\) (are|is) missing \(.*?\)(?=\. )", str(exc))
    return (
        f"model {_named(source, repo_id)}: its snapshot {getattr(exc, 'snapshot_path', '')} in "
        f"the Hugging Face cache is incomplete ({missing.group(0) if missing else 'files missing'}"
        f"). {_fill(repo_id)}"
    )


def _fill(repo_id: str, revision: str | None = None) -> str:
    command = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    return (
        f"Fill the cache where the hub is reachable (`{command}`), or point HF_HUB_CACHE at a "
        "cache that holds it."
    )


def _held(repo_id: str) -> str:
    """What the cache holds of a repo, in a few words: its refs and the commits it has."""
    from huggingface_hub.file_download import repo_folder_name

    repo = cache_folder() / repo_folder_name(repo_id=repo_id, repo_type="model")
    try:
        refs = sorted(p for p in (repo / "refs").rglob("*") if p.is_file())
        named = [f"{p.relative_to(repo / 'refs')} = {p.read_text().strip()}" for p in refs]
        snapshots = repo / "snapshots"
        commits = sorted(p.name for p in snapshots.iterdir()) if snapshots.is_dir() else []
    except OSError:  # an unreadable cache holds nothing we can name
        return ""
    return ", ".join([*named, *(f"commit {c}" for c in commits)])
