"""Prediction speed of the guide's batched label scoring against naive per-pair generation, in the same run.

    python benchmarks/speed.py --data semeval:test --n 200 --threads 2
    python benchmarks/speed.py --book-pairs out/books/<book>/stages/pairs.json --n 400 --threads 2

The baseline is what a plain LLM-style classifier does: the same model and prompt through the chat template,
greedy `generate` of up to 10 new tokens, one pair at a time. Both run on the same pairs, after one warm-up
call each; model loading is not timed. Prints one JSON object for BENCHMARKS.md.

Also in that object: micro-F1 of both on the same pairs (a generated answer that is not a label, or with a
label-code guide not a code, counts as a wrong positive answer; a generation is read as the label whose
answer it starts with); the guide's achieved GFLOP/s, counting the
work it must do (2 x non-embedding parameters per prompt token after the cached shared prefix and per fed
label token, 2 x hidden x vocabulary per position scored over the whole vocabulary, or x the labels' first
tokens where the prompt pass computes the LM head for those only, and, as model-FLOP utilisation is usually counted
(PaLM, appendix B), 4 x heads x head size per layer for each key a fed token attends to under the causal
mask; padding and masked-out keys not counted), and its share of the fp32 matmul peak measured here at the
model's own matrix shapes (see `matmul_peak`); `share_of_peak_weights_only` leaves attention out. The guide is
timed `--rounds` times, each round straight after its own peak measurement, and the medians are reported: on a
shared machine the peak moves by a quarter from one measurement to the next. `workers_busy_share` is the
share of the workers' time (workers x wall time) that the timed rounds spent inside batches; the rest went to
waiting (the first batches for the prompts to be tokenised, one worker for the other's last batch), so what
the share of the peak lacks beyond that is lost inside the batches. `--threads 1` gives the share of one worker
on one thread against the one-thread peak.

The guide runs three ways: as it is (the timed rounds above), where pairs of one sentence share a batch row
and batches run side by side on one-thread workers (one per torch thread), with that sharing off
(`unshared_*`), and one batch at a time on all the threads (`one_batch_at_a_time_*`), with the answers
compared. `--book-pairs` takes the pair sentences of a `books` run (its stages/pairs.json, in book order)
instead of a labelled split: there a sentence often names three or more characters, so several pairs share
it; with no gold, F1 is not reported.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags this script shares with profile_scoring.py: which pairs, which guide, threads, batch size."""
    parser.add_argument("--data", default="semeval:test")
    parser.add_argument("--n", type=int, default=200, help="first N pairs of the data")
    parser.add_argument("--book-pairs", help="a books run's stages/pairs.json, instead of --data")
    parser.add_argument("--schema", default="semeval")
    parser.add_argument("--guide", default="semeval-smollm2-codes", help="a language-model guide (generate needs one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)


def pairs_and_scorer(args: argparse.Namespace) -> tuple:
    """(config, schema, the first N pairs, the guide's scorer), with torch's threads set."""
    import torch

    from collab import api, datasets
    from collab.config import Config
    from collab.schema import load_schema

    torch.set_num_threads(args.threads)
    config = Config(schema=args.schema, guide=args.guide, threads=args.threads, batch_size=args.batch_size)
    schema = load_schema(args.schema)
    pairs = (book_pairs(args.book_pairs) if args.book_pairs
             else list(datasets.resolve(args.data).read(schema=schema)))[:args.n]
    return config, schema, pairs, api.scorer_for(config, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pair_arguments(parser)
    parser.add_argument("--new-tokens", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed runs of the guide, each after its own peak measurement; medians are reported")
    args = parser.parse_args()

    import torch

    from collab import api
    from collab.metrics import score

    config, schema, pairs, scorer = pairs_and_scorer(args)
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

    rests = prompt_rests_by_text(scorer, pairs)
    flops, attention = guide_flops(scorer, rests), attention_flops(scorer, rests)
    scorer.predict(pairs[:args.batch_size], args.batch_size)
    pool = scorer._workers_pool()
    workers = pool.size if pool else 1
    batch_seconds: list[float] = []  # of the timed rounds' batches, on whichever worker ran each
    score_batch = scorer.label_scores_batch

    def timed_batch(*batch_args):
        start = time.perf_counter()
        try:
            return score_batch(*batch_args)
        finally:
            batch_seconds.append(time.perf_counter() - start)

    scorer.label_scores_batch = timed_batch  # the scorer submits its batches through this attribute
    rounds = []  # (peak, seconds): on a shared machine the peak moves, so each round is held to the peak just before it
    busy = []  # each round's share of the workers' time spent in batches: the rest is waiting and bookkeeping
    for _ in range(args.rounds):
        peak = matmul_peak(model, tokens=args.batch_size * 48)
        batch_seconds.clear()
        start = time.perf_counter()
        predictions = scorer.predict(pairs, args.batch_size)
        rounds.append((peak, time.perf_counter() - start))
        busy.append(sum(batch_seconds) / workers / rounds[-1][1])
    del scorer.label_scores_batch
    scored_seconds = statistics.median(seconds for _, seconds in rounds)
    shares = [(flops + attention) / seconds / 1e9 / peak for peak, seconds in rounds]
    scorer.share_sentences = False
    start = time.perf_counter()
    unshared = scorer.predict(pairs, args.batch_size)
    unshared_seconds = time.perf_counter() - start
    scorer.share_sentences = True
    scorer.workers = 1
    start = time.perf_counter()
    serial = scorer.predict(pairs, args.batch_size)
    serial_seconds = time.perf_counter() - start
    scorer.workers = None
    texts = [p.text for p in pairs]

    labels = set(schema.label_names)
    guide = api.guide_for(config, schema)
    by_answer = sorted(zip(scorer.answers(), scorer.labels), key=lambda item: -len(item[0]))

    def parsed(text: str) -> str | None:
        """The label whose answer the generated text starts with (the longest), as a generative classifier
        would read it; a code guide writes its letter and may ramble on after it."""
        return next((label for answer, label in by_answer if text.strip().startswith(answer)), None)

    gold = {p.id: list(p.gold_labels) for p in pairs}

    def micro_f1(answers: dict[str, str]) -> float | None:
        """Against the gold labels; a books run's pairs have none."""
        return None if args.book_pairs else round(score(gold, answers)["micro_f1"], 4)

    print(json.dumps({
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} torch threads, {'cuda' if torch.cuda.is_available() else 'cpu'}",
        "command": "python " + " ".join(sys.argv), "data": args.book_pairs or args.data, "pairs": len(pairs),
        "pairs_per_sentence": round(len(pairs) / len(set(texts)), 2),
        "guide": Path(guide).name if guide else f"none ({config.model}, {config.prompt})",
        "naive_generate_pairs_per_s": round(len(pairs) / naive_seconds, 3),
        "naive_generate_valid_label_rate": round(sum(parsed(a) is not None for a in answers) / len(answers), 4),
        "scored_pairs_per_s": round(len(pairs) / scored_seconds, 3),
        "speedup": round(naive_seconds / scored_seconds, 2),
        "scored_valid_label_rate": sum(p.relation in labels for p in predictions) / len(predictions),
        "agreement_with_generate": round(sum(parsed(a) == p.relation for a, p in zip(answers, predictions))
                                         / len(pairs), 4),
        "unshared_pairs_per_s": round(len(pairs) / unshared_seconds, 3),
        "sharing_speedup": round(unshared_seconds / scored_seconds, 2),
        "unshared_same_answers": [p.relation for p in unshared] == [p.relation for p in predictions],
        "unshared_max_probability_gap": max(abs(a.confidence - b.confidence) for a, b in zip(unshared, predictions)),
        "one_batch_at_a_time_pairs_per_s": round(len(pairs) / serial_seconds, 3),
        "workers_speedup": round(serial_seconds / scored_seconds, 2),
        "one_batch_at_a_time_same_answers": [p.relation for p in serial] == [p.relation for p in predictions],
        "one_batch_at_a_time_max_probability_gap": max(abs(a.confidence - b.confidence)
                                                       for a, b in zip(serial, predictions)),
        "naive_generate_micro_f1": micro_f1({p.id: parsed(a) or a.strip() or "(empty)"
                                             for p, a in zip(pairs, answers)}),
        "scored_micro_f1": micro_f1({p.id: pred.relation for p, pred in zip(pairs, predictions)}),
        "scored_gflop_per_pair": round((flops + attention) / len(pairs) / 1e9, 3),
        "attention_gflop_per_pair": round(attention / len(pairs) / 1e9, 3),
        "scored_gflops": round((flops + attention) / scored_seconds / 1e9, 1),
        "matmul_peak_gflops_by_round": [round(peak, 1) for peak, _ in rounds],
        "share_of_peak_by_round": [round(share, 3) for share in shares],
        "share_of_peak": round(statistics.median(shares), 3),
        "share_of_peak_weights_only": round(statistics.median(flops / seconds / 1e9 / peak
                                                              for peak, seconds in rounds), 3),
        "workers": workers,
        "workers_busy_share": round(statistics.median(busy), 3),
    }))


def book_pairs(path: str) -> list:
    """The pairs of a books run, in book order (as the relations stage sends them)."""
    from collab.data import parse_pair

    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    start = {w["id"]: w["start"] for w in data["where"]}
    pairs = [parse_pair(json.dumps(p), (path, i + 1)) for i, p in enumerate(data["pairs"])]
    return sorted(pairs, key=lambda p: start[p.id])


def _body_and_head(model) -> tuple[int, int]:
    """Parameters every token runs through (embeddings and LM head excluded) and the LM head's size."""
    head = model.get_output_embeddings().weight
    embedding = model.get_input_embeddings().weight
    skip = {id(head), id(embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip), head.numel()


def guide_flops(scorer, rests: dict[str, list[list[int]]]) -> float:
    """The floating-point work in the guide's weights for the pairs whose prompt rests these are
    (`prompt_rests_by_text`; see the module docstring); the prompt tokens that pairs of one text have in
    common count once, as when they share a batch row."""
    from guides.scoring import _row_length

    body, head = _body_and_head(scorer.model)
    fed = len(scorer.shared_prefix)  # once per run
    nodes, n_pairs = label_nodes(scorer), sum(map(len, rests.values()))
    for row in rests.values():
        fed += (_row_length(row) if scorer.share_sentences else sum(map(len, row))) + nodes * len(row)
    vocabulary = scorer.model.get_output_embeddings().weight.shape[0]
    first = len(scorer._first_ids) / vocabulary if scorer._label_head else 1.0  # the prompt pass's share of the head
    return 2.0 * body * fed + 2.0 * head * n_pairs * (first + nodes)


def attention_flops(scorer, rests: dict[str, list[list[int]]]) -> float:
    """The attention products' work (QK^T and AV) for the pairs whose prompt rests these are
    (`prompt_rests_by_text`): each fed token against every key it may see, the cached prefix included; a label
    token sees its pair's whole prompt and its own ancestors in the trie."""
    from guides.scoring import _common_length

    def keys(start: int, end: int) -> int:  # tokens at positions start..end-1 each see every earlier one and self
        return (end * (end + 1) - start * (start + 1)) // 2

    prefix, depths = len(scorer.shared_prefix), label_node_depths(scorer)
    seen = keys(0, prefix)
    for row in rests.values():
        common = _common_length(row) if scorer.share_sentences else 0
        seen += keys(prefix, prefix + common)
        for rest in row:
            end = prefix + len(rest)
            seen += keys(prefix + common, end) + sum(end + depth + 1 for depth in depths)
    config = scorer.model.config
    head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 4.0 * config.num_attention_heads * head_size * config.num_hidden_layers * seen


def prompt_rests_by_text(scorer, pairs) -> dict[str, list[list[int]]]:
    """Each pair's prompt tokens after the cached shared prefix, grouped by the pair's text (a batch row)."""
    k = len(scorer.shared_prefix)
    by_text: dict[str, list[list[int]]] = {}
    for pair in pairs:
        by_text.setdefault(pair.text, []).append(scorer.prompt_ids(pair)[k:])
    return by_text


def label_nodes(scorer) -> int:
    """Label tokens fed after each prompt: the label tries' nodes (none with one-token label codes)."""
    return len(label_node_depths(scorer))


def label_node_depths(scorer) -> list[int]:
    """Each fed label token's depth after the prompt (0 = right after it)."""
    if scorer.tree:
        return [d for trie in scorer._tries for d in trie.depths.tolist()]
    return [d for c in scorer.continuations for d in range(len(c) - 1)]


def matmul_peak(model, tokens: int, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of this machine on the model's MLP shapes (tokens x hidden @ hidden x intermediate): the
    better of one product at a time on all torch threads and one product per thread side by side, each on one
    torch thread. On products this small the second is often well ahead (on 2 cores here, ~150 against ~120),
    and the guide's own batches run that way, so a peak taken only the first way would flatter its share."""
    import torch

    from guides.scoring import OneTorchThreadPool

    with OneTorchThreadPool(torch.get_num_threads(), "peak") as pool:
        return max(_products_rate(model, tokens, seconds, None), _products_rate(model, tokens, seconds, pool))


def _products_rate(model, tokens: int, seconds: float, pool) -> float:
    """GFLOP/s of one MLP-shaped product repeated on all torch threads (no pool), or of one such product per
    worker of a pool of one-thread workers, side by side."""
    import torch

    config = model.config
    flop = 2.0 * tokens * config.hidden_size * config.intermediate_size
    n = pool.size if pool else 1
    start, rates = threading.Barrier(n), [0.0] * n  # products per second, by thread

    def repeat(slot: int) -> None:
        a = torch.randn(tokens, config.hidden_size)
        b = torch.randn(config.hidden_size, config.intermediate_size)
        a @ b
        start.wait()
        done, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            a @ b
            done += 1
        rates[slot] = done / (time.perf_counter() - began)

    if pool:
        for job in [pool.submit(repeat, slot) for slot in range(n)]:
            job.result()
    else:
        repeat(0)
    return flop * sum(rates) / 1e9


if __name__ == "__main__":
    main()
