"""The one cache root: converted models, indexes, LLM replies and stage outputs, each in its own subfolder."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

ENV_VAR = "COLLAB_CACHE_DIR"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """--cache-dir, else $COLLAB_CACHE_DIR, else the user cache dir (e.g. ~/.cache/collab)."""
    root = Path(cache_dir or os.environ.get(ENV_VAR) or platformdirs.user_cache_dir("collab"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_subdir(name: str, cache_dir: str | Path | None = None) -> Path:
    path = cache_root(cache_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def content_key(*parts: str | bytes) -> str:
    """A stable key for cached content: sha256 over the parts, each length-prefixed so ('ab','c') != ('a','bc')."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
