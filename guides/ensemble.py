"""A guide made of guides: each member's calibrated distribution, mixed with fixed weights chosen on dev.

Two guides trained differently (a LoRA language model and the MiniLM encoder) make different mistakes, so
their mixture ranks the gold label higher than either alone; candidate retrieval cuts that ranking
adaptively, so a better ranking means fewer candidates for the same recall. The folder holds only
`ensemble.json`:

    {"format": 1, "schema": "characters.v1",
     "members": [{"guide": "characters-smollm2-enum", "weight": 0.9}, {"guide": "characters-minilm", "weight": 0.1}]}

A member is a shipped guide's name or a path relative to the ensemble's folder. The members must score the
same labels, so the mixture is a distribution over them, and all of them (no head-only guide).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Callable

from collab.data import Pair, Prediction

from .guide import ENSEMBLE_FILE, LONG_TAIL, GuideError

FORMAT = 1
CHUNK = 256  # pairs per member call: long enough for each member's own batching and length sorting


def read_ensemble(folder: Path) -> dict:
    """ensemble.json, checked: format, a schema, at least two members with positive weights summing to 1."""
    path = folder / ENSEMBLE_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GuideError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    if meta.get("format") != FORMAT:
        raise GuideError(f"{path}: format {meta.get('format')!r}; this collab reads format {FORMAT}")
    members = meta.get("members")
    if not isinstance(members, list) or len(members) < 2:
        raise GuideError(f"{path}: members: give at least two guides to mix")
    for i, member in enumerate(members):
        weight = member.get("weight") if isinstance(member, dict) else None
        if not isinstance(member, dict) or not member.get("guide") or not isinstance(weight, (int, float)) \
                or weight <= 0:
            raise GuideError(f"{path}: members[{i}]: needs a guide name and a positive weight")
    total = sum(member["weight"] for member in members)
    if abs(total - 1.0) > 1e-6:
        raise GuideError(f"{path}: members: the weights sum to {total:g}, not 1")
    if not meta.get("schema"):
        raise GuideError(f"{path}: schema: name the schema every member scores")
    return meta


def member_spec(folder: Path, name: str) -> str:
    """A member's path relative to the ensemble folder where one exists there, else the name as given."""
    local = folder / name
    return str(local) if local.exists() else name


class EnsembleGuide:
    """Scores pairs with every member and mixes their distributions; the same predict / iter_predict as the
    other guides, so the pipeline does not know it is several."""

    def __init__(self, members: Sequence[Any], weights: Sequence[float]):
        self.members, self.weights = list(members), [float(w) for w in weights]

    def predict(self, pairs: Iterable[Pair], batch_size: int = 8) -> list[Prediction]:
        return list(self.iter_predict(pairs, batch_size))

    def iter_predict(self, pairs: Iterable[Pair], batch_size: int = 8) -> Iterator[Prediction]:
        """Predictions in input order, a chunk at a time (each member scores the whole chunk in turn)."""
        pairs = iter(pairs)
        while chunk := list(islice(pairs, CHUNK)):
            answers = [member.predict(chunk, batch_size) for member in self.members]
            for pair, predictions in zip(chunk, zip(*answers)):
                yield self._mixed(pair, predictions)

    def _mixed(self, pair: Pair, predictions: Sequence[Prediction]) -> Prediction:
        labels = set(predictions[0].distribution)
        if LONG_TAIL in labels:  # "something rarer" means something else to each head-only guide
            raise ValueError(f"pair {pair.id}: a head-only guide (it answers {LONG_TAIL}) cannot be mixed")
        for prediction in predictions[1:]:
            if set(prediction.distribution) != labels:
                raise ValueError(f"pair {pair.id}: the ensemble's members score different labels "
                                 f"({sorted(labels ^ set(prediction.distribution))})")
        mixed = {label: sum(w * p.distribution[label] for w, p in zip(self.weights, predictions)) for label in labels}
        ranked = sorted(mixed.items(), key=lambda item: (-item[1], item[0]))
        relation, confidence = ranked[0]
        margin = confidence - ranked[1][1] if len(ranked) > 1 else confidence
        return Prediction(id=pair.id, relation=relation, confidence=confidence, margin=margin,
                          distribution=dict(ranked), route="slm", slm={"relation": relation, "confidence": confidence})


def load_ensemble(folder: Path, load_member: Callable[[str, str], Any], expect_schema: str | None) -> EnsembleGuide:
    """The ensemble in `folder`; `load_member(spec, schema)` loads one member and checks that it scores the
    ensemble's schema (guides.guide.load_guide)."""
    from collab.schema import load_schema

    meta = read_ensemble(folder)
    schema = load_schema(meta["schema"]).id
    if expect_schema and load_schema(expect_schema).id != schema:
        raise GuideError(f"{folder / ENSEMBLE_FILE}: this ensemble scores schema {schema}, "
                         f"not {load_schema(expect_schema).id}")
    members = [load_member(member_spec(folder, m["guide"]), schema) for m in meta["members"]]
    return EnsembleGuide(members, [m["weight"] for m in meta["members"]])
