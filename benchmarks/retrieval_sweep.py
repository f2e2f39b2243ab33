"""Choose the candidate cut on a dev split: candidate recall and mean candidates for each set of score weights,
cap k and evidence share `mass` (`Retriever.cut`), from one evidence pass per set of weights.

    python benchmarks/retrieval_sweep.py --data dialogre:dev --schema characters \
        --guide-pred out/bench/characters-minilm.dialogre-dev.pred.jsonl

Prints one JSON line per (weights, k, mass); the row to pick is the best worst-case recall whose mean stays
within the budget on every dev split (collab/retrieval.py's defaults were chosen so, over guide 1-4,
definition 0-1, demonstrations 0.5-2, trigger 0-0.5). Dev splits only: a test split is read once, by
`eval-retrieval`, with the chosen setting.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collab import cli, retrieval  # noqa: E402
from collab.config import Config  # noqa: E402
from collab.embed import SentenceEmbedder  # noqa: E402
from collab.retrieval import Retriever  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--schema", default=None)
    parser.add_argument("--guide-pred", default=None)
    parser.add_argument("--weights", default="1,0.5,0.5,0",
                        help="score weights guide,demo,definition,trigger; several separated by ';'")
    parser.add_argument("--ks", default="5,6,7,8,10")
    parser.add_argument("--masses", default="0.5,0.6,0.7,0.75,0.8,0.85,0.9,1.0", help="1.0 keeps k - 1 positives")
    args = parser.parse_args()
    config = Config(schema=args.schema) if args.schema else Config()
    pairs, schema, _ = cli._read(config, args.data, require_label=True, schema_name=config.schema)
    guides = cli._guide_distributions(args.guide_pred, pairs) if args.guide_pred else None
    retriever = Retriever(schema, SentenceEmbedder(None, batch_size=config.batch_size, threads=config.threads),
                          shared=config.shared)
    vectors = retriever.encode(pairs)
    masses = [float(m) for m in args.masses.split(",")]
    for weights in args.weights.split(";"):
        (retrieval.GUIDE_WEIGHT, retrieval.DEMO_WEIGHT, retrieval.DEFINITION_WEIGHT,
         retrieval.TRIGGER_WEIGHT) = (float(w) for w in weights.split(","))
        ranked = retriever.evidence(pairs, guides=guides, vectors=vectors)
        for k in (int(x) for x in args.ks.split(",")):
            for mass in masses:
                kept = [retriever.cut(labels, k, mass) for labels in ranked]
                hits = sum(any(c.label in pair.gold_labels for c in cands) for pair, cands in zip(pairs, kept))
                print(json.dumps({"data": args.data, "weights": weights, "k": k, "mass": mass,
                                  "candidate_recall": round(hits / len(pairs), 4),
                                  "mean_candidates": round(sum(map(len, kept)) / len(pairs), 3)}), flush=True)

if __name__ == "__main__":
    main()
