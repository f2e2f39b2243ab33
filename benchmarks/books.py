"""Book graphs against gold graphs: typed edges of the pipeline vs a plain co-occurrence graph (same characters).

    python benchmarks/books.py --gold pp      # our gold: Pride and Prejudice, chapters 1-6 (benchmarks/gold/)
    python benchmarks/books.py --gold conan   # the 24 CONAN English stories (evaluation only: no licence)
    python benchmarks/books.py --gold massey  # Massey et al. dyads for the staged novels they cover

Prints one JSON line per gold set: the pipeline's character, pair and typed-relation P/R/F1 summed over the
books (micro); the same pairs and relations counting only edges between characters the gold names
(`among_gold_characters`: the Massey dyads name a few characters of each novel and leave the others' ties
out, so there an edge between two characters they never name is no evidence of an error); the co-occurrence
baseline's pair P/R/F1 at each minimum support (`kN`) and share of the book's pair sentences (`shareR`),
per-stage seconds, and the settings. Every flag of `books` (guide, thresholds, window, ...) is accepted after
`--`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collab import api, datasets  # noqa: E402
from collab.book.edges import cooccurrence_edges, meetings  # noqa: E402
from collab.book.graph_eval import conan_gold, load_conan_mapping, load_gold, massey_gold, score_graph, sum_scores  # noqa: E402
from collab.book.pairs import PairMention  # noqa: E402
from collab.book.stages import BookRun, book_slug, run_book  # noqa: E402
from collab.book.text import read_book  # noqa: E402
from collab.cli import build_parser  # noqa: E402
from collab.config import config_from_args  # noqa: E402
from collab.files import atomic_write_text  # noqa: E402
from collab.schema import load_schema  # noqa: E402

PP_GOLD = ROOT / "benchmarks" / "gold" / "pride_and_prejudice_ch1-6.json"
# The dev set for edge settings; Pride and Prejudice is left out because our test gold is from it.
MASSEY_NOVELS = {"Emma": "emma.txt", "Northanger Abbey": "northanger_abbey.txt", "Persuasion": "persuasion.txt",
                 "Sense and Sensibility": "sense_and_sensibility.txt", "Great Expectations": "great_expectations.txt",
                 "Silas Marner": "silas_marner.txt", "The Picture of Dorian Gray": "the_picture_of_dorian_gray.txt",
                 "Little Women": "little_women.txt", "Jane Eyre": "jane_eyre.txt"}
SUPPORTS = (1, 2, 3, 5, 8, 10, 12, 15, 20)
# The same baseline with a length-relative threshold, as `--edge-frequent` has: a pair named together in at
# least this share of the book's pair sentences.
SHARES = (0.005, 0.01, 0.015, 0.02, 0.03)


def chapters_file(novel: Path, first: int, last: int, out: Path) -> Path:
    """The text of chapters first..last of a novel, as its own book file."""
    book = read_book(novel)
    chosen = [c for c in book.chapters if first <= c.number <= last]
    atomic_write_text(out, book.text[chosen[0].start:chosen[-1].end])
    return out


def gold_books(which: str, shared: Path, work: Path) -> list[tuple[Path, dict, dict | None]]:
    """(book file, gold graph, label mapping) for a gold set."""
    root = datasets.datasets_root(shared)
    if which == "pp":
        gold = load_gold(PP_GOLD)
        first, last = gold["source"]["chapters"]
        text = chapters_file(shared / gold["source"]["novel"], first, last, work / "pride_and_prejudice_ch1-6.txt")
        return [(text, gold, None)]
    if which == "conan":
        mapping = load_conan_mapping()
        return [(path, conan_gold(path.stem, shared=shared), mapping)
                for path in sorted((root / "conan_en" / "stories").glob("*.txt"))]
    if which == "massey":
        found = []
        for title, name in MASSEY_NOVELS.items():
            try:
                gold = massey_gold(title, shared=shared)
            except (KeyError, ValueError):
                continue
            found.append((root / "novels" / name, gold, None))
        return found
    raise ValueError(f"unknown gold set {which!r}")


def baseline_graph(graph: dict, where: list[PairMention], min_support: int) -> dict:
    """The same characters, an untyped edge for every pair co-mentioned at least `min_support` times."""
    links = [{"source": a, "target": b, "relation": "acquaintance_of", "confidence": 1.0}
             for a, b, _ in cooccurrence_edges(where, min_support=min_support)]
    return {**graph, "links": links}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gold", choices=["pp", "conan", "massey"], required=True)
    parser.add_argument("--out", default="out/bench/books", help="output folder (cached stages make reruns cheap)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N books of the gold set")
    parser.add_argument("books_flags", nargs=argparse.REMAINDER, help="-- then any `books` flags")
    args = parser.parse_args()
    flags = [f for f in args.books_flags if f != "--"]
    books_args = build_parser().parse_args(["books", "--out", args.out, *flags])
    config = config_from_args(books_args)
    schema = load_schema(config.schema)
    shared = datasets.shared_root(config.shared)
    out = Path(args.out) / args.gold
    out.mkdir(parents=True, exist_ok=True)
    books = gold_books(args.gold, shared, out)[: args.limit or None]
    scorer_id = api.scorer_identity(config, schema)
    factory = lambda: api.scorer_for(config, schema)  # noqa: E731
    results, among, seconds, stage_seconds = [], [], 0.0, {}
    baselines: dict[str, list] = {f"k{k}": [] for k in SUPPORTS} | {f"share{r}": [] for r in SHARES}
    for path, gold, mapping in books:
        run = BookRun(path, config, schema, scorer_id, factory, out / book_slug(path), progress=False)
        start = time.perf_counter()
        summary = run_book(run, rerun_from=books_args.rerun_from)
        seconds += time.perf_counter() - start
        for name, row in summary["stages"].items():
            stage_seconds[name] = round(stage_seconds.get(name, 0) + row["seconds"], 2)
        graph = json.loads((run.out / "graph.json").read_text(encoding="utf-8"))
        results.append(score_graph(gold, graph, schema=schema, mapping=mapping))
        named = results[-1]["matched"]
        among.append(score_graph(gold, {**graph, "links": [link for link in graph["links"] if link["source"] in named
                                                           and link["target"] in named]},
                                 schema=schema, mapping=mapping))
        where = [PairMention(**w) for w in json.loads((run.out / "stages" / "pairs.json").read_text())["data"]["where"]]
        meets = sum(meetings(where).values())
        supports = {f"k{k}": k for k in SUPPORTS} | {f"share{r}": math.ceil(r * meets) for r in SHARES}
        for name, k in supports.items():
            baselines[name].append(score_graph(gold, baseline_graph(graph, where, max(1, k)), schema=schema,
                                               mapping=mapping))
        print(f"{path.name}: relations F1 {results[-1]['relations']['f1']:.3f}, pairs F1 "
              f"{results[-1]['pairs']['f1']:.3f}", file=sys.stderr)
    total = sum_scores(results)
    keep = ("characters", "pairs", "relations")
    print(json.dumps({
        "gold": args.gold, "books": len(books), "scorer": scorer_id[:16], "schema": schema.id,
        "settings": {k: getattr(config, k) for k in ("guide", "min_mentions", "window", "max_pair_mentions",
                                                     "edge_threshold", "edge_triggers", "edge_frequent",
                                                     "pronouns", "family_names")},
        **{k: total[k] for k in keep}, "gold_relations": total["gold_relations"], "gold_dropped": total["gold_dropped"],
        "among_gold_characters": {k: sum_scores(among)[k] for k in ("pairs", "relations")},
        "cooccurrence_pairs": {name: sum_scores(v)["pairs"] for name, v in baselines.items()},
        "seconds": round(seconds, 1), "stage_seconds": stage_seconds,
    }))


if __name__ == "__main__":
    main()
