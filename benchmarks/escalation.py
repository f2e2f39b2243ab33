"""Escalation to an LLM: the guide alone against every merge mode, with a real local LLM, an oracle and a
simulated LLM of chosen accuracy.

    .venv/bin/python benchmarks/escalation.py --data semeval:dev --guide semeval-minilm
    .venv/bin/python benchmarks/escalation.py --data semeval:test --guide semeval-minilm --weak-k 3
    .venv/bin/python benchmarks/escalation.py --data conll04:test --guide none   # the LLM alone

One `predict --escalate auto --merge llm` run (`--local-llm`, default the packaged SmolLM2 served by
llama.cpp) saves the guide's and the LLM's answer on every escalated pair; every other row is re-merged
from that file offline (`collab.merge.remerge`), so all rows see the same LLM answers:

* `slm`: the guide alone; `<mode>`: each merge mode with the local LLM (weak_list for each --weak-k);
* `oracle`: the escalated pairs answered correctly (what a strong LLM could add at this routing);
* `simulated p=<p>`: a simulated LLM right with probability p on escalated pairs (else a random other
  candidate of the prompt), merged with `--sim-mode`: where escalation starts to pay.

Scores are `collab.api.evaluate`'s: micro-F1, macro-F1 and long-tail macro-F1 (the schema's tail labels).
Prints one JSON line (also written to OUT/summary.json) and a Markdown table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collab import api, datasets  # noqa: E402
from collab.cli import main  # noqa: E402
from collab.config import Config  # noqa: E402
from collab.data import read_predictions  # noqa: E402
from collab.files import atomic_write_text  # noqa: E402
from collab.llm import LLMRequest, SimulatedLLM  # noqa: E402
from collab.merge import MERGE_MODES, MergeSettings, remerge, weak_labels  # noqa: E402
from collab.schema import load_schema  # noqa: E402


def scores(gold, records, schema) -> dict:
    result = api.evaluate(gold, [{"id": r["id"], "relation": r["relation"]} for r in records], schema=schema)
    return {k: round(result[k], 4) if result.get(k) is not None else None
            for k in ("micro_f1", "macro_f1", "head_macro_f1", "tail_macro_f1")}


def simulated(records, pairs, accuracy: float, negative: str) -> list[dict]:
    """The records with the LLM's answer replaced by a simulated LLM's, on the pairs that were escalated."""
    llm = SimulatedLLM(accuracy)
    out = []
    for record in records:
        answer = record.get("llm")
        if answer and answer.get("candidates"):
            request = LLMRequest(pairs[record["id"]], [], answer["candidates"], negative, "")
            reply = asyncio.run(llm.answer(request))
            answer = {**answer, "relation": reply.relation, "confidence": reply.confidence, "valid": True}
        out.append({**record, "llm": answer})
    return out


def oracle(records, pairs) -> list[dict]:
    return [{**r, "llm": {**r["llm"], "relation": pairs[r["id"]].relation, "confidence": 1.0, "valid": True}}
            if r.get("llm") else r for r in records]


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="labelled split, e.g. semeval:dev")
    parser.add_argument("--guide", required=True, help="guide name or folder, or none (the LLM alone)")
    parser.add_argument("--schema", help="schema (default: the data's)")
    parser.add_argument("--local-llm", default="smollm2", help="GGUF served by llama.cpp [default: smollm2]")
    parser.add_argument("--rate", type=float, default=0.2, help="escalation rate tuned on dev [default: 0.2]")
    parser.add_argument("--sample", type=int, help="score a seeded random sample of this many pairs (the LLM "
                        "costs seconds a call on a CPU) [default: all]")
    parser.add_argument("--demos", type=int, default=4, help="demonstrations per LLM prompt [default: 4]")
    parser.add_argument("--weak-k", default="1,3,5", help="weak-list sizes to score [default: 1,3,5]")
    parser.add_argument("--simulate", default="0.3,0.5,0.7,0.9", help="simulated LLM accuracies")
    parser.add_argument("--sim-mode", default="llm", choices=[*MERGE_MODES, "all"],
                        help="merge mode for simulated rows, or all of them [default: llm]")
    parser.add_argument("--sim-weak-k", type=int, default=1, help="weak_list K for simulated rows [default: 1]")
    parser.add_argument("--out", default="out/bench/escalation", help="folder for predictions and the summary")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    source = datasets.resolve(args.data)
    schema = load_schema(args.schema or source.schema)
    out = Path(args.out) / (args.data.replace(":", "_").replace("/", "_") + (f"_sample{args.sample}" if args.sample
                                                                              else ""))
    data = args.data
    if args.sample:
        data = str(datasets.write_sample(args.data, schema, args.sample, out / "sample.jsonl"))
    pred = out / "escalated.jsonl"
    escalate = ["--escalate", "always"] if args.guide == "none" else ["--escalate", "auto", "--escalate-rate",
                                                                       str(args.rate)]
    # a finished run is reused (delete its folder to run again): the rows below are all offline re-merges
    done = pred.is_file() and pred.with_name(pred.name + ".summary.json").is_file()
    code = 0 if done else main(["predict", "--data", data, "--out", str(pred), "--schema", schema.name, "--guide", args.guide,
                 "--local-llm", args.local_llm, "--merge", "llm", "--threads", str(args.threads), "--llm-demos",
                 str(args.demos), *escalate])
    if code:
        raise SystemExit(code)
    run = json.loads(pred.with_name(pred.name + ".summary.json").read_text())
    records = list(read_predictions(pred))
    pairs = {p.id: p for p in datasets.resolve(data).read(schema=schema, require_label=True)}
    negative = schema.negative
    rows = {}
    if args.guide != "none":
        rows["slm"] = scores(data, [{**r, "relation": r["slm"]["relation"]} for r in records], schema.name)
    profile = None
    if args.guide != "none":
        from collab.predict import dev_profile

        config = Config(schema=schema.name, guide=args.guide)
        profile = dev_profile(config, schema, api.scorer_for(config, schema), api.guide_for(config, schema))
    for mode in MERGE_MODES:
        variants = [int(k) for k in args.weak_k.split(",")] if mode == "weak_list" else [None]
        for k in variants:
            if mode in ("weak_list", "slm_types") and profile is None:
                continue
            settings = MergeSettings(mode, weak=frozenset(weak_labels(profile.per_label_f1, k, negative))
                                     if k else frozenset(), slm_types=frozenset(profile.predicted) if profile else
                                     frozenset())
            name = f"{mode} K={k}" if k else mode
            rows[name] = scores(data, list(remerge(records, settings, negative)), schema.name)
    llm_mode = MergeSettings("llm")
    rows["oracle"] = scores(data, list(remerge(oracle(records, pairs), llm_mode, negative)), schema.name)
    weak = frozenset(weak_labels(profile.per_label_f1, args.sim_weak_k, negative)) if profile else frozenset()
    predicted = frozenset(profile.predicted) if profile else frozenset()
    for p in (float(x) for x in args.simulate.split(",") if x):
        answered = simulated(records, pairs, p, negative)
        for mode in (MERGE_MODES if args.sim_mode == "all" else [args.sim_mode]):
            if mode in ("weak_list", "slm_types") and profile is None:
                continue
            settings = MergeSettings(mode, weak=weak, slm_types=predicted)
            rows[f"simulated p={p:g} ({mode})"] = scores(data, list(remerge(answered, settings, negative)),
                                                         schema.name)
    e = run["escalation"]
    summary = {"data": args.data, "sample": args.sample, "guide": args.guide, "llm": args.local_llm, "demos": args.demos, "pairs": e["pairs"],
               "escalated": e["escalated"], "escalation_rate": round(e["escalated"] / max(e["pairs"], 1), 4),
               "threshold": run["settings"].get("threshold"), "llm_valid": e["llm_valid"],
               "llm_invalid": e["llm_invalid"], "llm_calls": e["calls"], "prompt_tokens": e["prompt_tokens"],
               "completion_tokens": e["completion_tokens"], "seconds": run["seconds"], "rows": rows}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    print(f"\n| {args.data} | micro-F1 | macro-F1 | long-tail macro-F1 |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['micro_f1']} | {row['macro_f1']} | {row['tail_macro_f1']} |")


if __name__ == "__main__":
    main_bench()
