"""The untuned small model as a guide: zero-shot (or schema-enumerated) label scoring, the baseline a tuned
guide is measured against.

    .venv/bin/python benchmarks/zero_shot.py --data semeval:test --sample 600
    .venv/bin/python benchmarks/zero_shot.py --data conll04:test --prompt slm/zero_shot.v1
    .venv/bin/python benchmarks/zero_shot.py --data dialogre:test --schema characters --sample 150

Runs `predict --guide none` (the model scores every label's name as a continuation of the prompt, so every
answer is a label) on the split, or on a seeded random sample of it (the untuned model scores a label name
token by token, about 2 pairs/s on this CPU), then scores it as `eval` does. Prints one JSON line (also in
OUT/summary.json): micro-F1, macro-F1, head/long-tail micro-F1, schema-valid rate, pairs/s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collab import api, datasets  # noqa: E402
from collab.cli import main  # noqa: E402
from collab.data import read_predictions  # noqa: E402
from collab.files import atomic_write_text  # noqa: E402
from collab.schema import load_schema  # noqa: E402

KEYS = ("micro_p", "micro_r", "micro_f1", "macro_f1", "head_micro_f1", "tail_micro_f1",
        "schema_valid_rate")


def run() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="labelled split, e.g. semeval:test")
    parser.add_argument("--schema", help="schema (default: the data's)")
    parser.add_argument("--model", default="smollm2", help="small model [default: smollm2]")
    parser.add_argument("--prompt", default="slm/schema_enum.v1", help="prompt template [default: slm/schema_enum.v1]")
    parser.add_argument("--sample", type=int, help="a seeded random sample of this many pairs [default: all]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="out/bench/zero_shot", help="folder for predictions and the summary")
    args = parser.parse_args()

    schema = load_schema(args.schema or datasets.resolve(args.data).schema)
    name = f"{args.data}_{args.model}_{args.prompt}" + (f"_sample{args.sample}" if args.sample else "")
    out = Path(args.out) / name.replace(":", "_").replace("/", "_")
    data = str(datasets.write_sample(args.data, schema, args.sample, out / "sample.jsonl")) if args.sample \
        else args.data
    pred = out / "pred.jsonl"
    started = time.perf_counter()
    code = main(["predict", "--data", data, "--out", str(pred), "--schema", schema.name, "--guide", "none",
                 "--model", args.model, "--prompt", args.prompt, "--threads", str(args.threads)])
    if code:
        raise SystemExit(code)
    seconds = time.perf_counter() - started
    records = list(read_predictions(pred))
    result = api.evaluate(data, [{"id": r["id"], "relation": r["relation"]} for r in records], schema=schema.name)
    summary = {"data": args.data, "sample": args.sample, "schema": schema.id, "model": args.model,
               "prompt": args.prompt, "pairs": len(records), "seconds": round(seconds, 1),
               "pairs_per_s": round(len(records) / seconds, 2),
               **{k: round(result[k], 4) if isinstance(result.get(k), float) else result.get(k) for k in KEYS}}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    print(json.dumps(run()))
