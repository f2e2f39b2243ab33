"""Score a predicted character graph (graph.json) against a gold one.

Gold format: {"characters": [{"id", "name", "aliases": []}], "relations": [{"head", "tail", "label"}]}, read
"head is <label> of tail". Characters are matched by name and alias first; relations are then compared over
the matched characters, untyped (unordered pairs) and typed (label and, for directed labels, direction).
Every score comes with its tp/fp/fn so corpus micro scores are sums (`sum_scores`).
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterable

from ..datasets import datasets_root
from ..metrics import Counts
from ..schema import MAPPING_DIR, Schema, load_mapping, load_schema
from .characters import ABBREVIATIONS, TITLES

# Under shared/datasets (see collab.datasets.shared_root for where that is).
MASSEY_GRAPHS = "character_relations_massey2015/gold_graphs_by_title.json"
MASSEY_MAPPING = MAPPING_DIR / "massey2015.characters.v1.yaml"
CONAN_GOLD = "conan_en/gold"
CONAN_MAPPING = "conan_en/mapping_to_characters_v1.json"
LEVELS = ("characters", "pairs", "relations")


class GoldError(ValueError):
    """A gold graph, prediction or mapping that cannot be scored; the message names the file (or argument) and field."""


# --- loading ------------------------------------------------------------------------------------------------

def _check_graph(raw: Any, where: str) -> dict[str, Any]:
    """Check the gold shape (characters with id/name/aliases, relations between known ids) and return `raw`."""
    if not isinstance(raw, dict):
        raise GoldError(f"{where}: must be a JSON object with characters and relations")
    characters = raw.get("characters")
    if not isinstance(characters, list):
        raise GoldError(f"{where}: characters: missing or not a list")
    ids: set[str] = set()
    for i, c in enumerate(characters):
        if not isinstance(c, dict):
            raise GoldError(f"{where}: characters[{i}]: must be an object")
        for field in ("id", "name"):
            if not isinstance(c.get(field), str) or not c[field].strip():
                raise GoldError(f"{where}: characters[{i}].{field}: missing or not a non-empty string")
        aliases = c.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise GoldError(f"{where}: characters[{i}].aliases: must be a list of strings")
        if c["id"] in ids:
            raise GoldError(f"{where}: characters[{i}].id: duplicate id {c['id']!r}")
        ids.add(c["id"])
    relations = raw.get("relations")
    if not isinstance(relations, list):
        raise GoldError(f"{where}: relations: missing or not a list")
    for i, r in enumerate(relations):
        if not isinstance(r, dict):
            raise GoldError(f"{where}: relations[{i}]: must be an object")
        for field in ("head", "tail"):
            if r.get(field) not in ids:
                raise GoldError(f"{where}: relations[{i}].{field}: {r.get(field)!r} is not a character id")
        if not isinstance(r.get("label"), str) or not r["label"].strip():
            raise GoldError(f"{where}: relations[{i}].label: missing or not a non-empty string")
    return raw


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GoldError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GoldError(f"{path}: not readable JSON: {e}".replace("\n", " ")) from None


def load_gold(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return _check_graph(_read_json(path), str(path))


def _check_pred(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list) or not isinstance(raw.get("links"), list):
        raise GoldError(f"{where}: must be graph.json node-link data with nodes and links lists")
    ids: set[str] = set()
    for i, n in enumerate(raw["nodes"]):
        if not isinstance(n, dict) or "id" not in n:
            raise GoldError(f"{where}: nodes[{i}].id: missing")
        ids.add(n["id"])
    for i, link in enumerate(raw["links"]):
        for field in ("source", "target"):
            if link.get(field) not in ids:
                raise GoldError(f"{where}: links[{i}].{field}: {link.get(field)!r} is not a node id")
        if not isinstance(link.get("relation"), str):
            raise GoldError(f"{where}: links[{i}].relation: missing or not a string")
    return raw


def _label_key(label: str) -> str:
    # The CONAN lookup rule: case-insensitive, hyphen = space.
    return " ".join(label.replace("-", " ").casefold().split())


def load_conan_mapping(path: str | Path | None = None) -> dict[str, str | None]:
    """CONAN labels → characters-schema labels for `score_graph(mapping=...)` (default: the shared dataset's file).

    Keys are the label_v2 classes plus the raw-label overrides; score_graph tries a relation's raw `label`
    first, then its `label_v2`, which is the file's own lookup rule because a raw label that is also a class
    name belongs to that class. An "inverse" entry maps to the schema label's inverse name (Child of X →
    child_of), which scoring turns back into the forward label with head and tail swapped.
    """
    path = Path(path) if path is not None else datasets_root() / CONAN_MAPPING
    raw = _read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("mapping"), dict):
        raise GoldError(f"{path}: mapping: missing or not an object")
    overrides = raw.get("raw_label_overrides") or {}
    if not isinstance(overrides, dict):
        raise GoldError(f"{path}: raw_label_overrides: not an object")
    schema = load_schema(str(raw.get("schema", "characters_v1")).replace("_v", ".v"))
    mapping: dict[str, str | None] = {}
    for section, entries in (("mapping", raw["mapping"]), ("raw_label_overrides", overrides)):
        for label, target in entries.items():
            mapping[label] = _conan_target(target, schema, f"{path}: {section}.{label}")
    return mapping


def _conan_target(target: Any, schema: Schema, where: str) -> str | None:
    if target is None:
        return None
    if not isinstance(target, dict) or target.get("relation") not in schema.label_names:
        raise GoldError(f"{where}.relation: must name a {schema.id} label")
    label, direction = schema.label(target["relation"]), target.get("direction")
    if direction == "inverse":
        if not label.inverse:
            raise GoldError(f"{where}.direction: {label.name} has no inverse label to swap with")
        return label.inverse
    if direction not in ("same", "symmetric"):
        raise GoldError(f"{where}.direction: {direction!r} is not one of same, inverse, symmetric")
    return label.name


def conan_gold(story: str, *, shared: str | Path | None = None) -> dict[str, Any]:
    """One CONAN gold graph by story id (`131_sin`); its labels need `load_conan_mapping()` to be scored."""
    return load_gold(datasets_root(shared) / CONAN_GOLD / f"{story}.json")


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_") or "character"


def _massey_character(name: str) -> tuple[str, list[str]]:
    """'Abel Magwitch (“The Convict”)' → ('Abel Magwitch', ['The Convict']): the annotators' free text sometimes
    puts a second name in brackets, which would otherwise never match a predicted name."""
    match = re.fullmatch(r"(.+?)\s*\((.+)\)", name.strip())
    if not match:
        return name.strip(), []
    return match[1], [match[2].strip(" \"'“”‘’")]


def massey_gold(title: str, *, shared: str | Path | None = None, schema: Schema | None = None) -> dict[str, Any]:
    """One Massey et al. (2015) title as a gold graph with the repo's mapping applied: labels are schema labels,
    head and tail swapped where the mapping says so. Characters come from the dyads' names. Dyads with the
    "NR" placeholder name, self-dyads, no_relation and unmapped (null) labels are left out, and `dropped`
    counts the labels lost; a dyad's several labels (the annotators disagree) each become a relation."""
    path = datasets_root(shared) / MASSEY_GRAPHS
    schema = schema or load_schema("characters")
    raw = _read_json(path)
    titles = raw.get("titles") if isinstance(raw, dict) else None
    if not isinstance(titles, dict):
        raise GoldError(f"{path}: titles: missing or not an object")
    if title not in titles:
        raise GoldError(f"{path}: titles: no title {title!r}; known: {', '.join(sorted(titles))}")
    mapping = load_mapping(MASSEY_MAPPING, schema)
    characters: dict[str, dict[str, Any]] = {}

    def character(name: str) -> str:
        clean, aliases = _massey_character(name)
        cid = _slug(clean)
        record = characters.setdefault(cid, {"id": cid, "name": clean, "aliases": []})
        record["aliases"] += [a for a in aliases if a not in record["aliases"]]
        return cid

    relations: list[dict[str, str]] = []
    dropped = 0
    for i, dyad in enumerate(titles[title].get("edges") or []):
        names = (dyad.get("character_1"), dyad.get("character_2"))
        labels = dyad.get("fine_category") or {}
        if not all(isinstance(n, str) and n.strip() for n in names) or "NR" in names or names[0] == names[1]:
            dropped += len(labels)
            continue
        head, tail = character(names[0]), character(names[1])
        for label in labels:
            if label not in mapping.targets:
                raise GoldError(f"{path}: titles.{title}.edges[{i}].fine_category: {label!r} is not in "
                                f"{MASSEY_MAPPING.name}")
            target = mapping.targets[label]
            if target is None or target[0] == schema.negative:
                dropped += 1
                continue
            name, swap = target
            relation = {"head": tail if swap else head, "tail": head if swap else tail, "label": name}
            if relation not in relations:
                relations.append(relation)
    _add_name_parts(list(characters.values()))
    return {"title": title, "characters": list(characters.values()), "relations": relations, "dropped": dropped}


def _add_name_parts(characters: list[dict[str, Any]]) -> None:
    """Massey's dyads name a character once, in full ("Elinor Dashwood", "Bentley Drummle"), where the novel
    and any character finder say "Elinor" and "Drummle": a full name's given name and surname become aliases
    when no other character of the title has that word in its name. Names with a lower-case word ("The
    peddler", "Duchess of Monmouth", "Mr. and Mrs. Allen") give none."""
    owners: dict[str, set[str]] = {}
    parts: dict[str, list[str]] = {}
    for record in characters:
        words = record["name"].split()
        while words and words[0].rstrip(".") in {*TITLES, *ABBREVIATIONS}:
            words = words[1:]
        for word in words:
            owners.setdefault(word, set()).add(record["id"])
        if len(words) >= 2 and all(w[0].isupper() for w in words):
            parts[record["id"]] = [words[0], words[-1]]
    for record in characters:
        for word in parts.get(record["id"], ()):
            if owners[word] == {record["id"]} and word not in record["aliases"]:
                record["aliases"].append(word)


# --- matching -----------------------------------------------------------------------------------------------

def _name_key(name: str) -> str:
    """Case, periods, quotes and spacing do not decide a match ("Mr. Darcy" = "mr darcy")."""
    name = unicodedata.normalize("NFKC", name).casefold()
    return " ".join(re.sub(r"[.\"'“”‘’]", " ", name).split())


def _names(record: dict[str, Any]) -> set[str]:
    return {k for k in (_name_key(n) for n in [record.get("name") or "", *(record.get("aliases") or [])]) if k}


def match_characters(gold: list[dict[str, Any]], pred: list[dict[str, Any]]) -> dict[str, str]:
    """{pred id: gold id}, one to one. Candidates share at least one name or alias; the pairs sharing the most
    names are taken first, then pairs whose main names agree, then the gold and predicted order."""
    gold_names = [_names(g) for g in gold]
    pred_names = [_names(p) for p in pred]
    candidates = []
    for pi, p in enumerate(pred_names):
        for gi, g in enumerate(gold_names):
            overlap = len(p & g)
            if overlap:
                same_name = _name_key(pred[pi].get("name") or "") == _name_key(gold[gi]["name"])
                candidates.append((-overlap, not same_name, gi, pi))
    matched: dict[str, str] = {}
    taken: set[int] = set()
    for _, _, gi, pi in sorted(candidates):
        if pred[pi]["id"] not in matched and gi not in taken:
            matched[pred[pi]["id"]] = gold[gi]["id"]
            taken.add(gi)
    return matched


# --- scoring ------------------------------------------------------------------------------------------------

def _forward(schema: Schema, label: str, head: str, tail: str, where: str) -> tuple[str, str, str] | None:
    """(label, head, tail) in the schema's canonical form (Schema.canonical), or None for the negative label."""
    try:
        label, head, tail, _ = schema.canonical(label, head, tail)
    except KeyError:
        raise GoldError(f"{where}: {label!r} is not a {schema.id} label (nor an inverse of one); "
                        "pass a mapping") from None
    return None if label == schema.negative else (label, head, tail)


def _mapped_label(relation: dict[str, Any], mapping: dict[str, str | None], where: str) -> str | None:
    """A gold relation's target label: by its raw label first, then by its label_v2 (CONAN) when present."""
    for field in ("label", "label_v2"):
        value = relation.get(field)
        if isinstance(value, str) and _label_key(value) in mapping:
            return mapping[_label_key(value)]
    raise GoldError(f"{where}.label: {relation.get('label')!r} is not in the mapping")


def _scores(counts: Counts) -> dict[str, float | int]:
    precision, recall, f1 = counts.precision_recall_f1()
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "tp": counts.tp, "fp": counts.fp, "fn": counts.fn}


def _compare(gold: set, pred: set) -> Counts:
    return Counts(tp=len(gold & pred), fp=len(pred - gold), fn=len(gold - pred))


def score_graph(gold: dict[str, Any], pred: dict[str, Any], *, schema: Schema,
                mapping: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Character, pair and typed-relation P/R/F1 (with tp/fp/fn) of `pred` (graph.json data) against `gold`.

    `mapping` turns gold labels into schema labels (or their inverse names); None drops the relation and
    `gold_dropped` counts those. Without a mapping, gold labels must already be schema labels. Predicted edges
    touching an unmatched character are false positives; gold relations touching an unmatched gold character
    are false negatives."""
    gold = _check_graph(gold, "gold")
    pred = _check_pred(pred, "pred")
    keyed = {_label_key(k): v for k, v in mapping.items()} if mapping is not None else None
    matched = match_characters(gold["characters"], pred["nodes"])
    characters = Counts(tp=len(matched), fp=len(pred["nodes"]) - len(matched),
                        fn=len(gold["characters"]) - len(matched))

    gold_typed: set[tuple[str, str, str]] = set()
    dropped = 0
    for i, r in enumerate(gold["relations"]):
        where = f"gold: relations[{i}]"
        label = r["label"]
        if keyed is not None:
            label = _mapped_label(r, keyed, where)
            if label is None:
                dropped += 1
                continue
        triple = _forward(schema, label, r["head"], r["tail"], f"{where}.label")
        if triple is not None:
            gold_typed.add(triple)

    # An unmatched predicted character keeps its own id, marked so it can never equal a gold id.
    def gold_id(node: str) -> str:
        return matched.get(node, f"\0pred:{node}")

    pred_typed: set[tuple[str, str, str]] = set()
    for i, link in enumerate(pred["links"]):
        triple = _forward(schema, link["relation"], gold_id(link["source"]), gold_id(link["target"]),
                          f"pred: links[{i}].relation")
        if triple is not None:
            pred_typed.add(triple)

    def pairs(triples: set[tuple[str, str, str]]) -> set[frozenset[str]]:
        return {frozenset((head, tail)) for _, head, tail in triples}

    by_label = {label: _scores(_compare({t for t in gold_typed if t[0] == label},
                                        {t for t in pred_typed if t[0] == label}))
                for label in sorted({t[0] for t in gold_typed | pred_typed})}
    return {
        "characters": _scores(characters),
        "pairs": _scores(_compare(pairs(gold_typed), pairs(pred_typed))),
        "relations": _scores(_compare(gold_typed, pred_typed)),
        "by_label": by_label,
        "gold_relations": len(gold_typed),
        "gold_dropped": dropped,
        "matched": matched,
    }


def sum_scores(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Corpus micro scores: the tp/fp/fn of several `score_graph` results summed, then P/R/F1 recomputed."""
    results = list(results)
    total: dict[str, Any] = {}
    for level in LEVELS:
        counts = Counts(*(sum(r[level][k] for r in results) for k in ("tp", "fp", "fn")))
        total[level] = _scores(counts)
    labels = sorted({label for r in results for label in r["by_label"]})
    total["by_label"] = {label: _scores(Counts(*(sum(r["by_label"].get(label, {}).get(k, 0) for r in results)
                                                for k in ("tp", "fp", "fn")))) for label in labels}
    total["gold_relations"] = sum(r["gold_relations"] for r in results)
    total["gold_dropped"] = sum(r["gold_dropped"] for r in results)
    total["graphs"] = len(results)
    return total
