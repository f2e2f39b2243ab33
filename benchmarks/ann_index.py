"""Exact against approximate search for the demonstrations index, on a synthetic set of sentence-like vectors.

    python benchmarks/ann_index.py --n 200000 --queries 1000 --threads 2

The retriever searches its demonstrations with an exact inner-product index (`flat`) by default, or HNSW
(`--index hnsw`), built by `collab.retrieval._new_index` with the shipped settings. No training set of a
million pairs is at hand, so this times both, and an IVF index for comparison, on `--n` synthetic vectors
drawn from a mixture fitted to real demonstrations' embeddings (`--fit`, embedded as the retriever embeds
them: the packaged all-MiniLM-L6-v2, mentions marked): their k-means clusters, each point its cluster's
centre plus noise with the spread of the real vectors about their centres, normalised. `--clusters 1`
makes it one Gaussian with the real set's mean and covariance; `--fit uniform` draws points uniformly on
the sphere, with no structure at all, the hardest case for an approximate index. Queries are fresh draws,
never in the index.

For each index and setting it prints the build time, the index's size, the search time per query (a batch
of `--queries` on `--threads` threads, as the retriever searches a file's pairs) at the two depths the
retriever asks for (the candidates' 20 nearest and the demonstrations' pool of 50, each with 8 spare),
recall (the share of the exact top k that the index returns) and the similarity kept (the mean similarity
of what it returns over the exact top k's: where neighbours are near-ties a miss costs little). Also the
label-restricted search the retriever runs when a candidate label has no training pair in a pair's pool
(`collab.retrieval.nearest_among`), an exact scan of that label's vectors, timed one query a call (as
`demonstrations` searched before), 64 a call (an escalation round's most) and all the queries in one
call, for labels holding 1%, 10% and 30% of the set. One JSON object on stdout; a line per index setting
on stderr as it is measured.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from collab.embed import normalize
from collab.retrieval import (HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M, NEIGHBOURS, POOL, VectorIndex,
                              _new_index, nearest_among)

SPARE = 8  # the retriever asks for this many more than it keeps (the query itself and its duplicates)
DEPTHS = (NEIGHBOURS + SPARE, POOL + SPARE)
Draw = Callable[[int, np.random.Generator], np.ndarray]
Found = tuple[np.ndarray, np.ndarray]  # similarities and ids, best first


def fitted(spec: str, threads: int) -> np.ndarray:
    """The retriever's embeddings of a split's pairs (the packaged all-MiniLM-L6-v2, mentions marked)."""
    from collab import datasets
    from collab.embed import SentenceEmbedder
    from collab.retrieval import mark_mentions

    pairs = list(datasets.resolve(spec).read())
    return normalize(SentenceEmbedder(threads=threads).encode([mark_mentions(p) for p in pairs]))


def sampler(real: np.ndarray | None, dim: int, clusters: int, seed: int) -> Draw:
    """draw(n, rng): `n` unit vectors (float32) from a mixture fitted to `real`: its k-means clusters (k =
    `clusters`, 1 for a single Gaussian), each drawn as often as it holds real vectors, around its centre with
    the covariance of the real vectors about their centres; uniform on the sphere when `real` is None."""
    if real is None:
        return lambda n, rng: normalize(rng.standard_normal((n, dim), dtype=np.float32))
    import faiss

    kmeans = faiss.Kmeans(dim, clusters, niter=25, seed=seed) if clusters > 1 else None
    if kmeans:
        kmeans.train(real)
        assigned = kmeans.index.search(real, 1)[1][:, 0]
        centres = kmeans.centroids
    else:
        assigned, centres = np.zeros(len(real), dtype=np.int64), real.mean(axis=0, keepdims=True)
    weights = np.bincount(assigned, minlength=len(centres)) / len(real)
    values, vectors = np.linalg.eigh(np.cov(real - centres[assigned], rowvar=False))
    root = vectors * np.sqrt(np.clip(values, 0, None))  # the residuals' covariance = root @ root.T

    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        return normalize(centres[rng.choice(len(centres), n, p=weights)] + rng.standard_normal((n, dim)) @ root.T)

    return draw


def similarity_profile(vectors: np.ndarray, queries: np.ndarray) -> list[float]:
    """Median similarity of the 1st, 10th and 100th nearest vector to a query."""
    ranked = np.sort(queries @ vectors.T, axis=1)[:, ::-1]
    return [round(float(np.median(ranked[:, r])), 3) for r in (0, 9, 99)]


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> Found:
    """Each query's k best similarities and ids, by exhaustive search."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index.search(queries, k)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def timed_search(index, queries: np.ndarray, k: int, rounds: int = 3) -> tuple[float, Found]:
    """Best of `rounds` batch searches, in ms per query, and the similarities and ids found."""
    best, found = float("inf"), None
    for _ in range(rounds):
        began = time.perf_counter()
        found = index.search(queries, k)
        best = min(best, time.perf_counter() - began)
    return 1000 * best / len(queries), found


def measure(name: str, index, vectors: np.ndarray, queries: np.ndarray, truth: dict[int, Found],
            settings: list[tuple[str, int, Callable[[int], None]]]) -> list[dict]:
    """Builds `index` (trained first where it must be) and searches it once per setting."""
    import faiss

    began = time.perf_counter()
    if not index.is_trained:
        index.train(vectors[np.random.default_rng(1).choice(len(vectors), min(len(vectors), 100_000),
                                                            replace=False)])
    index.add(vectors)
    build = time.perf_counter() - began
    size = faiss.serialize_index(index).size
    rows = []
    for setting, value, apply in settings:
        apply(value)
        row = {"index": name, setting: value} if setting else {"index": name}
        for k in DEPTHS:
            ms, (sims, ids) = timed_search(index, queries, k)
            row[f"ms_per_query@{k}"] = round(ms, 4)
            row[f"recall@{k}"] = round(recall(ids, truth[k][1]), 4)
            # what a shown demonstration loses: the mean similarity found over the exact top k's (a slot the
            # index left empty, id -1, counts as similarity 0)
            kept = np.where(ids >= 0, sims, 0).mean(axis=1) / truth[k][0].mean(axis=1)
            row[f"similarity_kept@{k}"] = round(float(np.mean(kept)), 4)
        rows.append({**row, "build_s": round(build, 2), "size_mb": round(size / 2**20, 1)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def label_scan_ms(vectors: np.ndarray, queries: np.ndarray, shares: tuple[float, ...], rng: np.random.Generator
                  ) -> dict[str, dict[str, float]]:
    """ms per query of the label-restricted search, for a label holding each share of the set: one query a
    call (how `demonstrations` searched before), 64 a call (an escalation round's most) and all in one call."""
    index = VectorIndex(_new_index(vectors.shape[1], "flat"), [], "")
    index.index.add(vectors)
    out = {}
    for share in shares:
        ids = np.sort(rng.choice(len(vectors), int(share * len(vectors)), replace=False)).tolist()
        row = {}
        for name, per_call, n in (("one_a_call", 1, 20), ("64_a_call", 64, 256), ("all_in_one_call", None, None)):
            batch = queries[:n]
            began = time.perf_counter()
            for start in range(0, len(batch), per_call or len(batch)):
                nearest_among(index, ids, batch[start:start + (per_call or len(batch))], lambda *_: False)
            row[name] = round(1000 * (time.perf_counter() - began) / len(batch), 2)
        out[f"{share:.0%}"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="vectors in the index [default: 200000]")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--fit", default="semeval:train", help="the split whose embeddings the synthetic "
                        "vectors take their mean and covariance from, or 'uniform' [default: semeval:train]")
    parser.add_argument("--clusters", type=int, default=64, help="k-means clusters of the fitted mixture (1: one "
                        "Gaussian) [default: 64]")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    import faiss

    faiss.omp_set_num_threads(args.threads)
    real = None if args.fit == "uniform" else fitted(args.fit, args.threads)
    dim = real.shape[1] if real is not None else 384  # all-MiniLM-L6-v2's width
    draw = sampler(real, dim, args.clusters, args.seed)
    rng = np.random.default_rng(args.seed)
    vectors, queries = draw(args.n, rng), draw(args.queries, rng)
    truth = {k: exact_top(vectors, queries, k) for k in DEPTHS}
    profiles = {"synthetic": similarity_profile(vectors, queries[:100])}
    if real is not None:  # the real set against a synthetic set of its size, each queried by 100 of its own
        held = real[rng.permutation(len(real))]
        profiles[f"real ({args.fit}, {len(real) - 100})"] = similarity_profile(held[100:], held[:100])
        profiles[f"synthetic ({len(real) - 100})"] = similarity_profile(draw(len(real) - 100, rng), queries[:100])

    hnsw = _new_index(dim, "hnsw")
    ivf_lists = int(4 * np.sqrt(args.n))
    quantizer = faiss.IndexFlatIP(dim)  # held here: the IVF index does not own it
    ivf = faiss.IndexIVFFlat(quantizer, dim, ivf_lists, faiss.METRIC_INNER_PRODUCT)

    def ef(value: int) -> None:
        hnsw.hnsw.efSearch = value

    def probes(value: int) -> None:
        ivf.nprobe = value

    rows = (measure("flat", _new_index(dim, "flat"), vectors, queries, truth, [("", 0, lambda _: None)])
            + measure("hnsw", hnsw, vectors, queries, truth,
                      [("efSearch", value, ef) for value in (32, HNSW_EF_SEARCH, 128, 256)])
            + measure("ivf", ivf, vectors, queries, truth,
                      [("nprobe", value, probes) for value in (4, 16, 64)]))
    print(json.dumps({
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__}, "
                   f"{args.threads} search threads",
        "command": "python benchmarks/ann_index.py " + " ".join(sys.argv[1:]),
        "n": args.n, "dim": dim, "fit": args.fit, "clusters": args.clusters if real is not None else None,
        "queries": args.queries,
        "similarity_of_1st_10th_100th_nearest": profiles,
        "hnsw_build": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION},
        "ivf_lists": ivf_lists,
        "rows": rows,
        "label_restricted_scan_ms": label_scan_ms(vectors, queries, (0.01, 0.1, 0.3), rng),
    }))


if __name__ == "__main__":
    main()
