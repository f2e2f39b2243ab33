"""Prediction speed of the guide's batched label scoring against naive per-pair generation, in the same run.

    python benchmarks/speed.py --data semeval:test --n 200 --threads 2

The baseline is what a plain LLM-style classifier does: the same model and prompt through the chat template,
greedy `generate` of up to 10 new tokens, one pair at a time. Both run on the same pairs, after one warm-up
call each; model loading is not timed. Prints one JSON object for BENCHMARKS.md.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="semeval:test")
    parser.add_argument("--n", type=int, default=200, help="first N pairs of the data")
    parser.add_argument("--schema", default="semeval")
    parser.add_argument("--guide", default="semeval-smollm2", help="a language-model guide (generate needs one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=10)
    args = parser.parse_args()

    import torch

    from collab import api, datasets
    from collab.config import Config
    from collab.schema import load_schema

    torch.set_num_threads(args.threads)
    config = Config(schema=args.schema, guide=args.guide, threads=args.threads, batch_size=args.batch_size)
    schema = load_schema(args.schema)
    pairs = list(datasets.resolve(args.data).read(schema=schema))[:args.n]
    scorer = api.scorer_for(config, schema)
    model, tokenizer = scorer.model, scorer.tokenizer

    def generate(pair) -> str:
        ids = torch.tensor([scorer.prompt_ids(pair)])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    generate(pairs[0])
    start = time.perf_counter()
    answers = [generate(p) for p in pairs]
    naive_seconds = time.perf_counter() - start

    scorer.predict(pairs[:args.batch_size], args.batch_size)
    start = time.perf_counter()
    predictions = scorer.predict(pairs, args.batch_size)
    scored_seconds = time.perf_counter() - start

    labels = set(schema.label_names)
    guide = api.guide_for(config, schema)
    print(json.dumps({
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} torch threads, {'cuda' if torch.cuda.is_available() else 'cpu'}",
        "command": "python " + " ".join(sys.argv), "data": args.data, "pairs": len(pairs),
        "guide": Path(guide).name if guide else f"none ({config.model}, {config.prompt})",
        "naive_generate_pairs_per_s": round(len(pairs) / naive_seconds, 3),
        "naive_generate_valid_label_rate": round(sum(a.strip() in labels for a in answers) / len(answers), 4),
        "scored_pairs_per_s": round(len(pairs) / scored_seconds, 3),
        "speedup": round(naive_seconds / scored_seconds, 2),
        "scored_valid_label_rate": sum(p.relation in labels for p in predictions) / len(predictions),
        "agreement_with_generate": round(sum(a.strip() == p.relation for a, p in zip(answers, predictions))
                                         / len(pairs), 4),
    }))


if __name__ == "__main__":
    main()
