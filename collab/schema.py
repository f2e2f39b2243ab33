"""Relation schemas and dataset label mappings, loaded from the versioned YAML files in prompts/schemas/.

Direction convention for every schema: label(head, tail) reads "head is <label> of tail". Mappings bring a
dataset's own labels onto a schema and record when that means swapping head and tail.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import yaml

from .data import DataError, Pair

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "prompts" / "schemas"
MAPPING_DIR = SCHEMA_DIR / "mappings"
DIRECTIONS = ("directed", "symmetric")


class SchemaError(ValueError):
    """A schema or mapping file is malformed; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Label:
    name: str
    definition: str
    triggers: tuple[str, ...]
    direction: str
    inverse: str | None = None
    head_types: tuple[str, ...] = ()
    tail_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schema:
    name: str
    version: int
    description: str
    negative: str
    labels: tuple[Label, ...]
    train_data: str | None            # a file under shared/datasets; pooled schemas join their parts with "+"
    train_mapping: str | None
    path: Path
    fingerprint: str  # hash of the parsed content: edits to comments or layout do not change it
    includes: tuple[str, ...] = ()    # the schemas a pooled schema is made of ("semeval.v1", ...)

    @property
    def id(self) -> str:
        return f"{self.name}.v{self.version}"

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def positive_labels(self) -> tuple[str, ...]:
        return tuple(name for name in self.label_names if name != self.negative)

    def label(self, name: str) -> Label:
        for label in self.labels:
            if label.name == name:
                return label
        raise KeyError(f"{name!r} is not a label of schema {self.id}")

    def canonical(self, label: str, head: str, tail: str) -> tuple[str, str, str, bool]:
        """(label, head, tail, directed) in one form per fact: an inverse name (child_of) becomes its forward
        label with the arguments swapped, and a symmetric label gets its arguments sorted. KeyError for a
        name that is neither a label nor an inverse of one."""
        forward = {l.inverse: l.name for l in self.labels if l.inverse and l.inverse not in self.label_names}
        if label in forward:
            label, head, tail = forward[label], tail, head
        directed = self.label(label).direction == "directed"
        if not directed:
            head, tail = sorted((head, tail))
        return label, head, tail, directed

    def check_labels(self, pair: Pair, where: tuple[str, int]) -> None:
        names = set(self.label_names)
        for label in pair.gold_labels:
            if label not in names:
                field = "relation" if label == pair.relation else "labels"
                raise DataError(*where, field, f"unknown label {label!r} for schema {self.id}")


def _require(raw: dict, key: str, path: Path, where: str = "") -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise SchemaError(f"{path}: {where}{key}: missing")
    return raw[key]


def _fingerprint(raw: Any) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _parse_label(raw: dict, path: Path, index: int) -> Label:
    where = f"labels[{index}]."
    name = str(_require(raw, "name", path, where))
    direction = _require(raw, "direction", path, where)
    if direction not in DIRECTIONS:
        raise SchemaError(f"{path}: {where}direction: {direction!r} is not one of {', '.join(DIRECTIONS)}")
    return Label(
        name=name,
        definition=str(_require(raw, "definition", path, where)),
        triggers=tuple(raw.get("triggers") or ()),
        direction=direction,
        inverse=raw.get("inverse"),
        head_types=tuple(raw.get("head_types") or ()),
        tail_types=tuple(raw.get("tail_types") or ()),
    )


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SchemaError(f"{path}: invalid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise SchemaError(f"{path}: must be a YAML mapping")
    return raw


def available_schemas() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in SCHEMA_DIR.glob("*.v*.yaml"))


def schema_path(spec: str | Path) -> Path:
    """'semeval' (newest version), 'semeval.v1', or a path to a schema file."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SchemaError(f"{path}: schema file not found")
        return path
    spec = str(spec)
    candidates = [SCHEMA_DIR / f"{spec}.yaml"] if ".v" in spec else sorted(
        SCHEMA_DIR.glob(f"{spec}.v*.yaml"), key=lambda p: int(p.name.rsplit(".v", 1)[1].split(".")[0]))
    if not candidates or not candidates[-1].is_file():
        raise SchemaError(f"unknown schema {spec!r}; available: {', '.join(available_schemas())}")
    return candidates[-1]


def load_schema(spec: str | Path) -> Schema:
    """A schema file; with `includes: [name, ...]` it pools other schemas: their labels (in order, one shared
    negative label) come before its own, and its training data is theirs, one after another."""
    path = schema_path(spec)
    raw = _read_yaml(path)
    negative = _require(raw, "negative", path)
    included = [load_schema(name) for name in raw.get("includes") or ()]
    own = tuple(_parse_label(item, path, i) for i, item in enumerate(
        raw.get("labels") or [] if included else _require(raw, "labels", path)))
    labels = own
    if included:
        own_negative = [l for l in own if l.name == negative]
        inherited = [schema.label(negative) for schema in included if negative in schema.label_names]
        labels = (*(l for schema in included for l in schema.labels if l.name != schema.negative),
                  *(l for l in own if l.name != negative), *(own_negative or inherited)[:1])
    names = [label.name for label in labels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaError(f"{path}: labels: duplicate names {duplicates}")
    if negative not in names:
        raise SchemaError(f"{path}: negative: {negative!r} is not among the labels")
    for label in labels:
        # An inverse inside the schema must point back, or direction normalisation would loop.
        if label.inverse in names and label.inverse != label.name:
            back = labels[names.index(label.inverse)].inverse
            if back != label.name:
                raise SchemaError(f"{path}: {label.name}.inverse: {label.inverse!r} has inverse {back!r}")
    train_data = raw.get("train_data")
    if included and not train_data:
        if not all(schema.train_data for schema in included):
            raise SchemaError(f"{path}: includes: every included schema needs train_data")
        train_data = "+".join(schema.train_data for schema in included)
    return Schema(
        name=str(_require(raw, "name", path)), version=int(_require(raw, "version", path)),
        description=str(raw.get("description", "")), negative=negative, labels=labels,
        train_data=train_data, train_mapping=raw.get("train_mapping"), path=path,
        # an included schema's edit changes the pooled schema's fingerprint too
        fingerprint=_fingerprint({**raw, "includes": [schema.fingerprint for schema in included]}
                                 if included else raw),
        includes=tuple(str(spec) for spec in raw.get("includes") or ()),  # as written: names or paths
    )


@dataclass(frozen=True)
class LabelMapping:
    """Source label → (schema label, swap head/tail), or None where the source label has no target."""

    path: Path
    schema_id: str
    targets: dict[str, tuple[str, bool] | None]
    symmetric: frozenset[str]

    def target(self, label: str, where: tuple[str, int]) -> tuple[str, bool] | None:
        if label not in self.targets:
            raise DataError(*where, "relation", f"label {label!r} is not in the mapping {self.path.name}")
        return self.targets[label]

    def apply(self, pair: Pair, where: tuple[str, int]) -> Pair | None:
        """Map a pair's labels; None when none of them has a target (the pair is dropped).

        The first label with a target fixes the orientation; another directed label that would need the
        opposite orientation cannot hold on the same (head, tail) and is left out.
        """
        mapped = [t for t in (self.target(label, where) for label in pair.gold_labels) if t is not None]
        if not mapped:
            return None
        primary, swap = mapped[0]
        kept: list[str] = []
        for label, label_swap in mapped:
            if (label_swap == swap or label in self.symmetric) and label not in kept:
                kept.append(label)
        head, tail = (pair.tail, pair.head) if swap else (pair.head, pair.tail)
        return replace(pair, head=head, tail=tail, relation=primary,
                       labels=tuple(kept) if pair.labels else ())


def mapping_path(dataset: str, schema: Schema) -> Path:
    return MAPPING_DIR / f"{dataset}.{schema.name}.v{schema.version}.yaml"


def load_mapping(path: str | Path, schema: Schema) -> LabelMapping:
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: mapping file not found")
    raw = _read_yaml(path)
    targets: dict[str, tuple[str, bool] | None] = {}
    names = set(schema.label_names)
    for source, target in (_require(raw, "labels", path) or {}).items():
        if target is None:
            targets[str(source)] = None
            continue
        if not isinstance(target, dict) or target.get("label") not in names:
            raise SchemaError(f"{path}: labels.{source}: target must be {{label: <a {schema.id} label>, swap: bool}}")
        targets[str(source)] = (target["label"], bool(target.get("swap", False)))
    symmetric = frozenset(l.name for l in schema.labels if l.direction == "symmetric")
    return LabelMapping(path=path, schema_id=schema.id, targets=targets, symmetric=symmetric)


def head_tail_split(counts: Counter[str], negative: str, coverage: float = 0.8,
                    all_labels: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Head = the most frequent positive labels that together cover `coverage` of positive examples.

    Ties are broken by name so the split is deterministic; labels never seen in training are tail.
    """
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    positives = sorted(((n, label) for label, n in counts.items() if label != negative),
                       key=lambda item: (-item[0], item[1]))
    total = sum(n for n, _ in positives)
    head: list[str] = []
    covered = 0
    for n, label in positives:
        if total and covered / total >= coverage:
            break
        head.append(label)
        covered += n
    tail = [label for _, label in positives if label not in head]
    tail += sorted(set(all_labels) - set(head) - set(tail) - {negative})
    return head, tail
