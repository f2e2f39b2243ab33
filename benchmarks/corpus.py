"""Books at corpus scale: the staged novels through `books` in one process and over a local Ray instance,
and what that projects for Project Gutenberg (about 70,000 books) in 24 hours.

    .venv/bin/python benchmarks/corpus.py --novels 4 --threads 2

Both runs start from empty output folders and a shared model cache, so each pays for every stage; the Ray
run also pays for starting Ray and loading the guide in each worker. Measured: wall seconds of each run,
pair sentences and words per book. Projected (and labelled so): worker-hours for the corpus at the
measured seconds per word, and the workers a 24-hour run needs. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collab import datasets  # noqa: E402
from collab.cli import main  # noqa: E402

GUTENBERG_BOOKS = 70_000
# Not measured here: the mean length of a Gutenberg book, taken as the median of the staged novels' lengths
# would overstate it (they are long novels); the projection states the words per book it assumes.


def run(args_list: list[str]) -> float:
    start = time.perf_counter()
    if main(args_list):
        raise SystemExit(f"books failed: {' '.join(args_list)}")
    return time.perf_counter() - start


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--novels", type=int, default=4, help="the first N staged novels, by size [default: 4]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--guide", default="auto", help="the books' guide, as `books --guide` [default: auto]")
    parser.add_argument("--words-per-book", type=int, default=60_000,
                        help="assumed mean length of a corpus book, for the projection [default: 60000]")
    # Defaults measured on the literary set (BENCHMARKS.md, escalation): 30% of pairs escalated, 1,159 prompt
    # and 45 completion tokens per call with 2 demonstrations.
    parser.add_argument("--escalation-rate", type=float, default=0.30)
    parser.add_argument("--prompt-tokens", type=int, default=1159, help="LLM prompt tokens per escalated pair")
    parser.add_argument("--completion-tokens", type=int, default=45)
    parser.add_argument("--price-in", type=float, default=0.15, help="assumed $ per million prompt tokens")
    parser.add_argument("--price-out", type=float, default=0.60, help="assumed $ per million completion tokens")
    args = parser.parse_args()

    novels_dir = datasets.datasets_root() / "novels"
    novels = sorted(novels_dir.glob("*.txt"), key=lambda p: p.stat().st_size)[:args.novels]
    work = Path(tempfile.mkdtemp(prefix="collab-corpus-"))
    try:
        folder = work / "books"
        folder.mkdir()
        for novel in novels:
            shutil.copy(novel, folder / novel.name)
        common = ["books", str(folder), "--threads", str(args.threads), "--guide", args.guide, "--exports", "json"]
        local_s = run([*common, "--out", str(work / "local")])
        ray_s = run([*common, "--out", str(work / "ray"), "--backend", "ray"])
        summary = json.loads((work / "local" / "summary.json").read_text())
        same = all((work / "local" / d.name / "graph.json").read_text() ==
                   (work / "ray" / d.name / "graph.json").read_text() for d in (work / "local").iterdir() if d.is_dir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    words = sum(len(re.findall(r"\w+", n.read_text(encoding="utf-8", errors="replace"))) for n in novels)
    pairs = sum(b["counts"]["pair_mentions"] for b in summary["books"])
    best = min(local_s, ray_s)
    seconds_per_word = best / words  # on this machine's cores, all of them
    corpus_hours = GUTENBERG_BOOKS * args.words_per_book * seconds_per_word / 3600
    corpus_pairs = GUTENBERG_BOOKS * args.words_per_book * pairs / words
    calls = corpus_pairs * args.escalation_rate
    cost = calls * (args.prompt_tokens * args.price_in + args.completion_tokens * args.price_out) / 1e6
    print(json.dumps({
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "command": "python " + " ".join(sys.argv),
        "measured": {"books": len(novels), "words": words, "pair_sentences": pairs,
                     "pair_sentences_per_book": round(pairs / len(novels), 1),
                     "local_seconds": round(local_s, 1), "ray_seconds": round(ray_s, 1),
                     "ray_over_local": round(ray_s / local_s, 3), "identical_graphs": same,
                     "words_per_second_per_machine": round(words / best, 1),
                     "pair_sentences_per_second_per_core": round(pairs / best / (os.cpu_count() or 1), 2)},
        "projected": {"books": GUTENBERG_BOOKS, "assumed_words_per_book": args.words_per_book,
                      "machine_hours": round(corpus_hours, 1),
                      "machines_like_this_for_24h": round(corpus_hours / 24, 1),
                      "pair_sentences": round(corpus_pairs),
                      "escalation_rate": args.escalation_rate, "llm_calls": round(calls),
                      "llm_tokens": round(calls * (args.prompt_tokens + args.completion_tokens)),
                      "llm_cost_usd": round(cost), "assumed_price_per_mtok": [args.price_in, args.price_out]},
    }))


if __name__ == "__main__":
    main_bench()
