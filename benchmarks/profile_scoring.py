"""Where the guide's scoring time goes: the share of CPU time per kind of operation, under torch.profiler.

    python benchmarks/profile_scoring.py --data semeval:test --n 200
    python benchmarks/profile_scoring.py --book-pairs out/books/<book>/stages/pairs.json --schema characters \
        --guide characters-smollm2-cued --n 400

`speed.py` measures how much of the matmul peak the guide reaches; this says what the rest goes to, so the
two inputs (short SemEval sentences, a novel's sentences where several pairs share a row) can be compared:
matrix products (the work counted as useful), attention, and the norms, activations, copies and masks
around them; and the share of the tokens computed that are padding (rows of one batch run to one width).
Times are the operators' own CPU time (children excluded), summed over the run; profiling slows the run, so
its wall time is no speed figure. torch's profiler records only the thread that starts it, not the scorer's
workers, so the run is profiled as one of those workers runs: one batch at a time on one torch thread
(`--threads` is ignored). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

KINDS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm"),
    "attention": ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product", "aten::_softmax",
                  "aten::softmax", "aten::_safe_softmax"),
    "masks and indexing": ("aten::index", "aten::where", "aten::masked_fill", "aten::eq", "aten::lt", "aten::le",
                           "aten::gt", "aten::ge", "aten::__and__", "aten::bitwise_", "aten::logical_",
                           "aten::arange", "aten::gather", "aten::scatter", "aten::index_put"),
    "copies and layout": ("aten::copy_", "aten::cat", "aten::contiguous", "aten::clone", "aten::_to_copy",
                          "aten::repeat_interleave", "aten::expand", "aten::transpose", "aten::view",
                          "aten::reshape", "aten::empty", "aten::fill_", "aten::zero_", "aten::slice",
                          "aten::select", "aten::unsqueeze", "aten::permute", "aten::t", "aten::as_strided"),
    "norms and activations": ("aten::mul", "aten::add", "aten::pow", "aten::mean", "aten::rsqrt", "aten::silu",
                              "aten::neg", "aten::div", "aten::sub", "aten::log_softmax", "aten::_log_softmax",
                              "aten::exp", "aten::sum", "aten::cos", "aten::sin"),
}


def kind_of(name: str) -> str:
    for kind, prefixes in KINDS.items():
        if any(name == p or name.startswith(p) for p in prefixes):
            return kind
    return "other"


def main() -> None:
    from speed import label_nodes, pair_arguments, pairs_and_scorer, prompt_rests_by_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pair_arguments(parser)
    parser.add_argument("--top", type=int, default=12, help="operators listed by own time")
    args = parser.parse_args()

    from torch.profiler import ProfilerActivity, profile

    from guides.scoring import _base_model, _row_length

    args.threads = 1
    _, _, pairs, scorer = pairs_and_scorer(args)
    scorer.workers = 1  # on the profiler's own thread
    scorer.predict(pairs[:args.batch_size], args.batch_size)  # warm-up, as in speed.py
    computed = []  # tokens each forward pass runs, padding included (the shared prefix is cached by now)
    # on the decoder body: the prompt pass runs it alone where the scorer has a label head, other passes via the model
    hook = _base_model(scorer.model).get_decoder().register_forward_pre_hook(
        lambda module, a, kw: computed.append(kw["input_ids"].numel()), with_kwargs=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        scorer.predict(pairs, args.batch_size)
    hook.remove()

    own: dict[str, float] = {}
    by_kind: dict[str, float] = {}
    for event in prof.key_averages():
        own[event.key] = event.self_cpu_time_total
        by_kind[kind_of(event.key)] = by_kind.get(kind_of(event.key), 0.0) + event.self_cpu_time_total
    total = sum(by_kind.values())
    rows = prompt_rests_by_text(scorer, pairs)
    lengths = [_row_length(r) for r in rows.values()]
    real = sum(lengths) + label_nodes(scorer) * len(pairs)
    print(json.dumps({
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        "1 torch thread (one worker's view)", "command": "python " + " ".join(sys.argv),
        "data": args.book_pairs or args.data, "pairs": len(pairs), "rows": len(rows),
        "mean_row_tokens": round(sum(lengths) / len(lengths), 1), "max_row_tokens": max(lengths),
        "padding_share": round(1 - real / sum(computed), 3),
        "share_by_kind": {kind: round(t / total, 3) for kind, t in sorted(by_kind.items(), key=lambda x: -x[1])},
        "top_operators": {name: round(t / total, 3)
                          for name, t in sorted(own.items(), key=lambda x: -x[1])[:args.top]},
    }))


if __name__ == "__main__":
    main()
