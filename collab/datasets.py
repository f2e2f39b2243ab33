"""The staged datasets under ../shared/datasets: where they are, how to name them, and how to read them.

A data spec is either a path to a JSONL file or `<dataset>:<file stem>` such as `semeval:test`,
`conll04:test_all_pairs` or `dialogre:train`; a dataset whose labels belong to another schema
(DialogRE → characters) is mapped onto that schema on reading.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import schema as schemas
from .cache import cache_subdir, content_key, file_sha256
from .data import DataError, LoadStats, Pair, read_pairs
from .files import atomic_write_text

SHARED_ENV = "COLLAB_SHARED"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Dataset:
    folder: str  # under shared/datasets
    schema: str | None  # the schema its labels are read into; None = raw labels
    mapping: str | None = None  # mapping file name in prompts/schemas/mappings


# Short names for the staged RE corpora. Corpora without a schema of ours are read with their raw labels.
DATASETS = {
    "semeval": Dataset("semeval2010_task8", "semeval"),
    "conll04": Dataset("conll04", "conll04"),
    "dialogre": Dataset("dialogre_en", "characters", "dialogre_en.characters.v1.yaml"),
    "fewrel": Dataset("fewrel", None),
    "nyt": Dataset("nyt", None),
    "gids": Dataset("gids", None),
    "redocred": Dataset("re_docred", None),
    "rebel": Dataset("rebel_sample", None),
}


class SharedMissing(FileNotFoundError):
    pass


def shared_root(shared: str | Path | None = None) -> Path:
    """--shared, else $COLLAB_SHARED, else ../shared beside the repository root."""
    candidates = [Path(shared)] if shared else (
        [Path(os.environ[SHARED_ENV])] if os.environ.get(SHARED_ENV) else [REPO_ROOT.parent / "shared"])
    for path in candidates:
        if (path / "datasets").is_dir():
            return path.resolve()
    raise SharedMissing(f"shared data folder not found at {candidates[0]} (expected a datasets/ folder in it); "
                        f"put the shared folder beside the repository or set {SHARED_ENV}")


def datasets_root(shared: str | Path | None = None) -> Path:
    return shared_root(shared) / "datasets"


def is_re_file(path: Path) -> bool:
    """Relation-extraction JSONL files carry head/tail mentions; other staged JSONL files are span annotations."""
    with path.open(encoding="utf-8") as handle:
        return '"head"' in handle.readline()


def re_files(shared: str | Path | None = None) -> list[Path]:
    root = datasets_root(shared)
    return [p for p in sorted(root.rglob("*.jsonl")) if is_re_file(p)]


@dataclass(frozen=True)
class DataSource:
    """A resolved data spec: the file, and the schema and mapping its labels are read into. A pooled spec
    (`semeval:train+conll04:train_all_pairs`) has `parts`, read one after another."""

    path: Path
    schema: str | None
    mapping: Path | None
    parts: tuple["DataSource", ...] = ()

    def read(self, *, schema: schemas.Schema | None = None, require_label: bool = False,
             skip_invalid: bool = False, stats: LoadStats | None = None) -> Iterator[Pair]:
        if self.parts:
            return (pair for part in self.parts for pair in part.read(
                schema=schema, require_label=require_label, skip_invalid=skip_invalid, stats=stats))
        schema = schema or (schemas.load_schema(self.schema) if self.schema else None)
        mapping = schemas.load_mapping(self.mapping, schema) if self.mapping and schema else None
        return read_pairs(self.path, schema=schema, mapping=mapping, require_label=require_label,
                          skip_invalid=skip_invalid, stats=stats)

    def origin(self) -> str:
        """Where the data comes from, not what it holds: caches keyed by it keep one entry per data set and
        refresh it in place when the file changes."""
        if self.parts:
            return "+".join(part.origin() for part in self.parts)
        return f"{self.path.resolve()}:{self.mapping or ''}"

    def sha256(self) -> str:
        """The data's content hash: the file's, or for a pooled source one over its parts and their mappings."""
        if not self.parts:
            return file_sha256(self.path)
        return content_key(*(f"{p.sha256()}:{file_sha256(p.mapping) if p.mapping else ''}" for p in self.parts))


def resolve(spec: str | Path, shared: str | Path | None = None) -> DataSource:
    text = str(spec)
    if "+" in text and not Path(text).is_file():
        parts = tuple(resolve(part, shared) for part in text.split("+"))
        names = {part.schema for part in parts}
        return DataSource(Path(text), names.pop() if len(names) == 1 else None, None, parts)
    name, sep, stem = text.partition(":")
    if sep and name in DATASETS and "/" not in name:
        dataset = DATASETS[name]
        path = datasets_root(shared) / dataset.folder / f"{stem}.jsonl"
        if not path.is_file():
            available = sorted(p.stem for p in path.parent.glob("*.jsonl"))
            raise FileNotFoundError(f"{path}: no such file; {name} has: {', '.join(available)}")
        mapping = schemas.MAPPING_DIR / dataset.mapping if dataset.mapping else None
        return DataSource(path, dataset.schema, mapping)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (give a JSONL path, one of "
                                f"{', '.join(f'{n}:<split>' for n in DATASETS)}, or several joined by +)")
    return DataSource(path, None, None)


def split_spec(schema: schemas.Schema, split: str) -> str:
    """The data spec of a schema's training data (`split="train"`) or its sibling split, e.g. semeval:dev;
    for a pooled schema, its included schemas' specs joined by +."""
    if not schema.train_data:
        raise ValueError(f"schema {schema.id} names no train_data; pass the data file explicitly")
    if schema.includes:
        return "+".join(split_spec(schemas.load_schema(name), split) for name in schema.includes)
    folder, _, filename = schema.train_data.partition("/")
    name = next((n for n, d in DATASETS.items() if d.folder == folder), None)
    stem = Path(filename).stem.replace("train", split)
    return f"{name}:{stem}" if name else str(Path(folder) / f"{stem}.jsonl")


def count_file(path: Path) -> dict:
    """Counts in the shape validate.py prints: examples ok, bad, label count and splits (raw labels)."""
    stats = LoadStats()
    labels: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    for pair in read_pairs(path, require_label=True, skip_invalid=True, stats=stats):
        labels[pair.relation] += 1
        splits[pair.split] += 1
    return {"ok": stats.kept, "bad": stats.skipped, "labels": len(labels), "splits": dict(splits),
            "errors": stats.first_errors}


def _train_source(schema: schemas.Schema, shared: str | Path | None) -> DataSource:
    if not schema.train_data:
        raise ValueError(f"schema {schema.id} names no train_data to count labels on")
    if schema.includes:
        return resolve(split_spec(schema, "train"), shared)
    mapping = schemas.MAPPING_DIR / schema.train_mapping if schema.train_mapping else None
    return DataSource(datasets_root(shared) / schema.train_data, schema.name, mapping)


def train_label_counts(schema: schemas.Schema, shared: str | Path | None = None) -> tuple[Counter[str], str]:
    """Label frequencies of the schema's training data (mapped onto the schema), and the data's hash."""
    source = _train_source(schema, shared)
    return Counter(p.relation for p in source.read(schema=schema, require_label=True)), source.sha256()


def head_tail(schema: schemas.Schema, *, coverage: float = 0.8, shared: str | Path | None = None,
              cache_dir: str | Path | None = None) -> dict:
    """The schema's head / long-tail split from its training data, cached under the schema fingerprint."""
    source = _train_source(schema, shared)
    files = [part.path for part in source.parts] or [source.path]
    key = content_key(schema.id, schema.fingerprint, f"{coverage:g}",
                      *(f"{f.stat().st_size}-{f.stat().st_mtime_ns}" for f in files))[:32]
    cached = cache_subdir("splits", cache_dir) / f"{schema.id}-{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    counts, data_hash = train_label_counts(schema, shared)
    head, tail = schemas.head_tail_split(counts, schema.negative, coverage, schema.label_names)
    result = {"schema": schema.id, "schema_fingerprint": schema.fingerprint, "train_data": schema.train_data,
              "train_sha256": data_hash, "coverage": coverage, "head": head, "tail": tail,
              "counts": dict(counts.most_common())}
    atomic_write_text(cached, json.dumps(result, indent=1))
    return result


def write_sample(spec: str, schema: schemas.Schema, n: int, out: Path, *, seed: int = 13) -> Path:
    """A seeded random sample of `n` labelled pairs of a split, as read into `schema` (dataset labels
    mapped, so the file needs no mapping), written to `out`: for benchmarks whose system is too slow on
    this CPU for the whole split."""
    import random

    pairs = list(resolve(spec).read(schema=schema, require_label=True))
    chosen = random.Random(seed).sample(pairs, min(n, len(pairs)))
    return atomic_write_text(out, "".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in chosen))


__all__ = ["DATASETS", "DataError", "DataSource", "SharedMissing", "count_file", "datasets_root", "head_tail",
           "re_files", "resolve", "shared_root", "split_spec", "train_label_counts", "write_sample"]
