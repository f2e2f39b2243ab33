"""The guide's batched scoring in one process against the same pairs split over several single-threaded processes.

    python benchmarks/processes.py --data semeval:test --n 200 --threads 2 --processes 2

On a small CPU the two threads of one process meet at every small operation (norms, attention, the products of
short rows) and lose time there; one process a core, each with one thread, does not, and neither do the one-thread
workers the scorer runs batches on within one process (`LabelScorer.workers`; the one-process run here uses them,
as `predict` does). This measures both on the same pairs and machine: pairs/s, GFLOP/s (counted as `speed.py`
counts them) and the share of the fp32 matmul peak that `speed.py` measures (the better of one product on all
the threads and one product a thread side by side), and checks that both give the same answers. The processes
each load the guide, split the pairs by sentence (so a sentence's pairs stay in one process) and start timing
together; the split run's time is its slowest process's. Model loading is not timed. Prints one JSON object for
BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import (attention_flops, guide_flops, matmul_peak, pair_arguments, pairs_and_scorer,  # noqa: E402
                   prompt_rests_by_text)


def shard(pairs: list, part: int, parts: int) -> list:
    """Every `parts`-th sentence's pairs, from the `part`-th, in their order."""
    texts = list(dict.fromkeys(p.text for p in pairs))
    mine = set(texts[part::parts])
    return [p for p in pairs if p.text in mine]


def _worker(args: argparse.Namespace, part: int, start, results) -> None:
    _, _, pairs, scorer = pairs_and_scorer(args)
    pairs = shard(pairs, part, args.processes)
    scorer.predict(pairs[:args.batch_size], args.batch_size)  # warm-up
    start.wait()
    began = time.perf_counter()
    predictions = scorer.predict(pairs, args.batch_size)
    seconds = time.perf_counter() - began
    results.put((seconds, [(p.id, p.relation, p.confidence) for p in predictions]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pair_arguments(parser)
    parser.add_argument("--processes", type=int, default=2, help="single-threaded processes for the split run")
    args = parser.parse_args()

    _, _, pairs, scorer = pairs_and_scorer(args)
    rests = prompt_rests_by_text(scorer, pairs)
    work = guide_flops(scorer, rests) + attention_flops(scorer, rests)
    scorer.predict(pairs[:args.batch_size], args.batch_size)
    began = time.perf_counter()
    together = scorer.predict(pairs, args.batch_size)
    one_seconds = time.perf_counter() - began
    peak = matmul_peak(scorer.model, tokens=args.batch_size * 48)
    del scorer

    context = multiprocessing.get_context("spawn")  # a forked torch would share the parent's thread pool
    start, results = context.Barrier(args.processes), context.Queue()
    single = argparse.Namespace(**{**vars(args), "threads": 1})
    workers = [context.Process(target=_worker, args=(single, part, start, results)) for part in range(args.processes)]
    for worker in workers:
        worker.start()
    parts = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    split_seconds = max(seconds for seconds, _ in parts)
    split = {pair_id: (relation, confidence) for _, answers in parts for pair_id, relation, confidence in answers}

    print(json.dumps({
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": "python " + " ".join(sys.argv), "data": args.book_pairs or args.data, "pairs": len(pairs),
        "guide": args.guide, "matmul_peak_gflops": round(peak, 1),
        "one_process_threads": args.threads, "one_process_pairs_per_s": round(len(pairs) / one_seconds, 2),
        "one_process_share_of_peak": round(work / one_seconds / 1e9 / peak, 3),
        "processes": args.processes, "split_pairs_per_s": round(len(pairs) / split_seconds, 2),
        "split_share_of_peak": round(work / split_seconds / 1e9 / peak, 3),
        "split_speedup": round(one_seconds / split_seconds, 3),
        "same_answers": all(split[p.id][0] == p.relation for p in together) and len(split) == len(together),
        "max_probability_gap": max(abs(split[p.id][1] - p.confidence) for p in together),
    }))


if __name__ == "__main__":
    main()
