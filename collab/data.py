"""Pair and Prediction records, and streaming JSONL reading with errors that name file, line and field.

A Pair is one entity pair in a text (optionally with its gold label); a Prediction is what any predictor
returns for it. Every later stage passes these two records along, so nothing downstream re-reads raw text.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .files import atomic_write_text

if TYPE_CHECKING:
    from .schema import LabelMapping, Schema

NEGATIVE = "no_relation"
ROUTES = ("slm", "llm", "merged")


class DataError(ValueError):
    """Bad input: one line that names the file, the line number and the field."""

    def __init__(self, path: str | Path, line: int, field: str, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        super().__init__(f"{path}:{line}: {field}: {message}")


@dataclass(frozen=True, slots=True)
class Mention:
    text: str
    start: int
    end: int
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Pair:
    id: str
    text: str
    head: Mention
    tail: Mention
    relation: str | None = None  # gold label; None for unlabelled input
    labels: tuple[str, ...] = ()  # every acceptable gold label (multi-label data); empty means (relation,)
    split: str | None = None
    source: str | None = None

    @property
    def gold_labels(self) -> tuple[str, ...]:
        if self.labels:
            return self.labels
        return (self.relation,) if self.relation is not None else ()

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["labels"] = list(self.labels)
        if not self.labels:
            del record["labels"]
        return record


@dataclass(slots=True)
class Prediction:
    """The prediction record every predictor writes (one JSONL line per pair).

    `distribution` holds the labels with their probabilities, most probable first (a guide gives every label);
    `slm` and `llm` keep both answers when a pair was escalated, so merge modes can be re-run offline.
    Evaluation reads only `id` and `relation`.
    """

    id: str
    relation: str
    confidence: float
    margin: float = 0.0
    distribution: dict[str, float] = field(default_factory=dict)
    route: str = "slm"
    slm: dict[str, Any] | None = None
    llm: dict[str, Any] | None = None
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class LoadStats:
    """Counts for one read: what was read, kept, skipped as invalid, or dropped by a label mapping."""

    read: int = 0
    kept: int = 0
    skipped: int = 0
    dropped: int = 0
    first_errors: list[str] = field(default_factory=list)

    def skip(self, error: DataError) -> None:
        self.skipped += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(str(error))


def _mention(value: Any, text: str, where: tuple[str, int], side: str) -> Mention:
    path, line = where
    if not isinstance(value, dict):
        raise DataError(path, line, side, "must be an object {text, start, end, type}")
    for key in ("text", "start", "end"):
        if key not in value:
            raise DataError(path, line, f"{side}.{key}", "missing")
    mention_text, start, end = value["text"], value["start"], value["end"]
    if not isinstance(mention_text, str) or not mention_text:
        raise DataError(path, line, f"{side}.text", "must be a non-empty string")
    for key, offset in (("start", start), ("end", end)):
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise DataError(path, line, f"{side}.{key}", f"must be an integer, got {offset!r}")
    if not 0 <= start < end <= len(text):
        raise DataError(path, line, f"{side}.start", f"offsets {start}:{end} outside the text (length {len(text)})")
    if text[start:end] != mention_text:
        raise DataError(path, line, f"{side}.text",
                        f"offsets {start}:{end} give {text[start:end]!r}, not {mention_text!r}")
    mention_type = value.get("type")
    if mention_type is not None and not isinstance(mention_type, str):
        raise DataError(path, line, f"{side}.type", "must be a string or null")
    return Mention(mention_text, start, end, mention_type)


def _optional_str(record: dict, key: str, where: tuple[str, int]) -> str | None:
    value = record.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise DataError(*where, key, "must be a non-empty string")
    return value


def _json_object(line_text: str, path: str | Path, line: int) -> dict[str, Any]:
    try:
        record = json.loads(line_text)
    except json.JSONDecodeError as e:
        raise DataError(path, line, "(line)", f"invalid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(record, dict):
        raise DataError(path, line, "(line)", "must be a JSON object")
    return record


def parse_pair(line_text: str, where: tuple[str, int], *, require_label: bool = False) -> Pair:
    """One JSONL line → Pair, or DataError naming the field at fault."""
    path, line = where
    record = _json_object(line_text, path, line)
    for key in ("id", "text", "head", "tail"):
        if key not in record:
            raise DataError(path, line, key, "missing")
    if require_label and "relation" not in record:
        raise DataError(path, line, "relation", "missing")
    for key in ("id", "text"):
        if not isinstance(record[key], str) or not record[key]:
            raise DataError(path, line, key, "must be a non-empty string")
    text = record["text"]
    relation = _optional_str(record, "relation", where)
    labels = record.get("labels") or ()
    if not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) and x for x in labels):
        raise DataError(path, line, "labels", "must be a list of non-empty strings")
    return Pair(
        id=record["id"], text=text,
        head=_mention(record["head"], text, where, "head"),
        tail=_mention(record["tail"], text, where, "tail"),
        relation=relation, labels=tuple(labels),
        split=_optional_str(record, "split", where), source=_optional_str(record, "source", where),
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their numbers; bytes are decoded line by line so an encoding error names its line."""
    try:
        handle = path.open("rb")
    except OSError as e:
        raise DataError(path, 0, "(file)", e.strerror or str(e)) from None
    with handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                line_text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, line_no, "(line)", f"not UTF-8: {e.reason} at byte {e.start}") from None
            if line_text.strip():
                yield line_no, line_text


def read_pairs(path: str | Path, *, schema: Schema | None = None, mapping: LabelMapping | None = None,
               require_label: bool = False, skip_invalid: bool = False,
               stats: LoadStats | None = None) -> Iterator[Pair]:
    """Stream Pairs from a JSONL file.

    With a mapping, source labels are mapped (and head/tail swapped where the mapping says so); pairs whose
    labels all map to nothing are dropped and counted. With a schema, every gold label must be one of its
    labels. An invalid line raises DataError, or with skip_invalid is counted in `stats` and skipped.
    """
    stats = stats if stats is not None else LoadStats()
    path = Path(path)
    seen_ids: set[str] = set()
    for line_no, line_text in _lines(path):
        stats.read += 1
        where = (str(path), line_no)
        try:
            pair = parse_pair(line_text, where, require_label=require_label)
            if pair.id in seen_ids:
                raise DataError(*where, "id", f"duplicate id {pair.id!r}")
            if mapping is not None:
                mapped = mapping.apply(pair, where)
                if mapped is None:
                    stats.dropped += 1
                    continue
                pair = mapped
            if schema is not None:
                schema.check_labels(pair, where)
        except DataError as e:
            if not skip_invalid:
                raise
            stats.skip(e)
            continue
        seen_ids.add(pair.id)
        stats.kept += 1
        yield pair


def read_predictions(path: str | Path) -> Iterator[dict[str, Any]]:
    """Prediction records as dicts; only `id` and `relation` are required (that is all eval needs)."""
    path = Path(path)
    for line_no, line_text in _lines(path):
        record = _json_object(line_text, path, line_no)
        for key in ("id", "relation"):
            if not isinstance(record.get(key), str):
                raise DataError(path, line_no, key, "missing or not a string")
        route = record.get("route")
        if route is not None and route not in ROUTES:
            raise DataError(path, line_no, "route", f"{route!r} is not one of {', '.join(ROUTES)}")
        yield record


def read_distributions(path: str | Path) -> dict[str, dict[str, float]]:
    """Each prediction's label distribution by pair id (its top label alone where none is stored): what
    retrieval takes as the guide's evidence."""
    return {r["id"]: r.get("distribution") or {r["relation"]: r.get("confidence", 1.0)} for r in read_predictions(path)}


def write_jsonl(path: str | Path, records: Iterable[Pair | Prediction | dict]) -> int:
    """Write records atomically (a reader never sees half a file); returns how many were written."""
    lines = [json.dumps(r if isinstance(r, dict) else r.to_json(), ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)
