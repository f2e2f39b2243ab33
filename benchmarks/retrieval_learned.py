"""Would a learned ranker beat the hand-set score weights of guide retrieval? Cross-validated on a dev split.

    python benchmarks/retrieval_learned.py --data dialogre:dev --schema characters \
        --guide-pred out/bench/characters-minilm.dialogre-dev.pred.jsonl

For every (pair, positive label) the evidence of `Retriever.evidence` becomes features (the guide's
probability, its log and rank, the best definition similarity and how many of the nearest definitions are the
label's, the demonstrations' vote, a trigger match, the label itself) and a logistic regression learns which
are gold, in 5 folds over the pairs. Prints, for 4-6 candidates (no_relation always one), the recall of the
hand-weighted score and of the learned one on the held-out folds, as one JSON line each. Dev splits only.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collab import cli  # noqa: E402
from collab.config import Config  # noqa: E402
from collab.embed import SentenceEmbedder  # noqa: E402
from collab.retrieval import Retriever  # noqa: E402

FOLDS = 5


def features(candidates, labels: list[str]) -> tuple[list[list[float]], list[float]]:
    """One feature row per positive label, and the hand-weighted score, from one pair's ranked evidence."""
    found = {label: defaultdict(float) for label in labels}
    for c in candidates:
        if c.label not in found:
            continue
        f = found[c.label]
        f["score"] = c.score
        for reason in c.reasons:
            kind, _, value = reason.partition(":")
            if kind == "guide":
                f["guide"] = float(value)
            elif kind == "definition":
                f["definition"], f["definitions"] = max(f["definition"], float(value)), f["definitions"] + 1
            elif kind == "demo":
                f["demo"] = float(value)
            elif kind == "trigger":
                f["trigger"] = 1.0
    by_guide = sorted((label for label in labels if found[label]["guide"] > 0), key=lambda x: -found[x]["guide"])
    rows = []
    for label in labels:
        f, rank = found[label], by_guide.index(label) if label in by_guide else len(labels)
        rows.append([f["guide"], float(np.log(f["guide"] + 1e-3)), f["definition"], f["definitions"], f["demo"],
                     f["trigger"], *(float(rank == r) for r in range(5)), *(float(label == x) for x in labels)])
    return rows, [found[label]["score"] for label in labels]


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--schema", default="characters")
    parser.add_argument("--guide-pred", required=True)
    args = parser.parse_args()
    config = Config(schema=args.schema)
    pairs, schema, _ = cli._read(config, args.data, require_label=True, schema_name=config.schema)
    retriever = Retriever(schema, SentenceEmbedder(None, batch_size=config.batch_size, threads=config.threads),
                          shared=config.shared)
    ranked = retriever.evidence(pairs, guides=cli._guide_distributions(args.guide_pred, pairs))
    labels = [label for label in schema.label_names if label != schema.negative]
    rows, hand = zip(*(features(candidates, labels) for candidates in ranked))
    x = np.array([row for pair_rows in rows for row in pair_rows])
    gold = np.array([label in pair.gold_labels for pair in pairs for label in labels])
    fold = np.random.default_rng(13).permutation(len(pairs)) % FOLDS
    row_fold = np.repeat(fold, len(labels))
    learned = np.zeros(len(gold))
    for k in range(FOLDS):
        train = row_fold != k
        model = LogisticRegression(max_iter=2000).fit(x[train], gold[train])
        learned[~train] = model.predict_proba(x[~train])[:, 1]
    for name, scores in (("hand weights", np.array(hand).ravel()), ("learned", learned)):
        by_pair = scores.reshape(len(pairs), len(labels))
        for keep in (3, 4, 5):
            hits = sum(schema.negative in pair.gold_labels
                       or bool({labels[j] for j in np.argsort(-row, kind="stable")[:keep]} & set(pair.gold_labels))
                       for pair, row in zip(pairs, by_pair))
            print(json.dumps({"data": args.data, "ranker": name, "candidates": keep + 1,
                              "candidate_recall": round(hits / len(pairs), 4)}))


if __name__ == "__main__":
    main()
