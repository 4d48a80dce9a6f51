"""A Hugging Face cache written as huggingface_hub writes it, holding the fixtures' tiny models
under hub ids: what a cluster bakes into its image or mounts from shared storage."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# The hub keeps these in LFS: their blobs are named by the file's sha256, others by git's sha1.
_LFS_SUFFIXES = (".safetensors", ".bin", ".model")


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _entry(name: str, data: bytes) -> tuple[str, dict]:
    """A file's blob name and its entry in the commit's file list, as the hub describes it."""
    if not name.endswith(_LFS_SUFFIXES):
        return _git_sha1(data), {"size": len(data), "blob_id": _git_sha1(data)}
    sha256 = hashlib.sha256(data).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n"
    blob_id = _git_sha1(pointer.encode())
    return sha256, {
        "size": len(data),
        "blob_id": blob_id,
        "lfs_sha256": sha256,
        "lfs_size": len(data),
    }


def put_in_cache(cache: Path, repo_id: str, folder: Path, *, ref: str | None = "main") -> str:
    """Adds ``folder``'s files as one commit of ``repo_id``: each file once under ``blobs/``,
    ``snapshots/<commit>/`` of relative links to them, and ``refs/<ref>`` naming the commit (no
    ref with None: a commit downloaded by its hash), and ``trees/<commit>.json``, the commit's
    file list huggingface_hub 2.x keeps to tell a complete snapshot. Returns the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha1(repo_id.encode())
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    commit = digest.hexdigest()
    tree = {}
    for path in files:
        data = path.read_bytes()
        name, tree[path.relative_to(folder).as_posix()] = _entry(path.name, data)
        blob = repo / "blobs" / name
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "trees").mkdir(exist_ok=True)
    (repo / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": tree}))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # huggingface_hub writes the bare hash
    return commit
