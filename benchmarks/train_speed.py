"""CPU training throughput of the guide's LoRA trainer against the same training padded to a fixed length.

    python benchmarks/train_speed.py --n 96 --threads 2
    python benchmarks/train_speed.py --n 96 --threads 2 --prompt slm/schema_enum.v1 --max-length 384
    python benchmarks/train_speed.py --n 96 --threads 2 --prompt slm/k_shot_codes.v1 --max-length 512

Both arms train the same LoRA (r 16 on q/k/v/o/gate/up/down of SmolLM2, fp32) on the same SemEval training
pairs for the same number of micro-batches, each from fresh adapters, after one warm-up batch:

* guide trainer (`guides/train.py`): length-bucketed batches, each packed into one row with no padding, the
  prompt prefix every pair shares (chat header, system prompt, a listed label set) once, each pair attending
  to that prefix and to itself; LM head only over the answer columns, loss on the answer tokens; a batch's
  parts side by side, one torch thread each, where the prefix is short (`split_for_threads`);
* the same trainer running each batch whole on all torch threads, as it did before the parts;
* the same trainer with the shared prefix in every pair, as it was before that prefix ran once per batch;
* baseline: every batch padded to `--max-length` tokens and the LM head over every column (what a plain
  causal-LM fine-tune with ignored prompt labels computes), same loss.

Tokens/s counts the pairs' real (non-padding) tokens, the shared prefix in each pair: the training data
consumed per second. Work is counted on the tokens computed (a shared prefix once per batch, also where its
parts each run it) in two ways. Weights only (`useful_gflops`, `..._weights_only`): 4 x non-embedding
parameters per token (the forward pass, and the backward pass through the activations; frozen weights need no
weight gradient), LM head and attention left out. Model FLOPs (`model_gflops`, the headline share), as
model-FLOP utilisation is usually counted (PaLM, appendix B) and as `speed.py` counts scoring: every product
the step needs, from each layer's shapes seen in a forward pass (`step_flops`): a frozen projection's forward
and, where its input needs a gradient (not the first layer's q/k/v, whose input is the frozen embedding), its
input gradient; a LoRA adapter's forward, input gradient and the gradients of both its matrices; the LM head
over the answer columns, forward and input gradient; and attention, 12 x heads x head size per layer for each
key a token sees under the block mask (QK^T and AV forward, four products backward). Each rate is compared
with the fp32 matmul peak measured here at the model's shapes. As in `speed.py`, the guide trainer's
arm runs `--rounds` timed passes over its batches, each straight after its own peak measurement (on a shared
machine the peak moves by a tenth or more within a minute), and the medians are reported. Prints one JSON
object.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=96, help="training pairs per arm")
    parser.add_argument("--micro-batch", type=int, default=None,
                        help="pairs per forward/backward pass, both arms (default: guides.train.PASS_PAIRS, 16, the "
                             "trainer's pass and batch on short pairs; the padded baseline at --max-length 384 "
                             "needs --micro-batch 8 to fit in 24 GB)")
    parser.add_argument("--max-length", type=int, default=128, help="the baseline's fixed padded length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", default="slm/guide.v1", help="the training prompt (a template in prompts/)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed passes of the guide trainer, each after its own peak measurement; medians reported")
    parser.add_argument("--lora-dropout", type=float, default=None, help="both arms; default: the trainer's")
    args = parser.parse_args()

    import torch

    from collab import datasets
    from collab.config import Config, TrainSettings
    from collab.schema import load_schema
    from guides.models import load_model
    from guides.guide import make_scorer
    from guides.scoring import OneTorchThreadPool
    from guides.train import PASS_PAIRS, adamw, add_lora, backward_micro_batch, bucketed_batches, encode

    from speed import _body_and_head, matmul_peak

    torch.set_num_threads(args.threads)
    schema = load_schema("semeval")
    settings = TrainSettings()
    mb = args.micro_batch or PASS_PAIRS
    pairs = list(datasets.resolve("semeval:train").read(schema=schema))[:args.n + mb]
    config = Config(threads=args.threads)
    if args.lora_dropout is not None:
        settings = dataclasses.replace(settings, lora_dropout=args.lora_dropout)

    def padded(examples, pad_id):
        """The baseline batch: right-padded to max_length."""
        n = len(examples)
        ids = torch.full((n, args.max_length), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        targets = torch.full((n, args.max_length - 1), -100, dtype=torch.long)
        for row, e in enumerate(examples):
            ids[row, :len(e.ids)] = torch.tensor(e.ids)
            mask[row, :len(e.ids)] = 1
            targets[row, e.n_prompt - 1:len(e.ids) - 1] = torch.tensor(e.ids[e.n_prompt:])
        return {"input_ids": ids, "attention_mask": mask, "targets": targets,
                "tokens": int(mask.sum()), "computed": int(mask.sum())}

    def padded_loss(model, batch):
        """A plain causal-LM fine-tune's loss: logits over every column, prompt and padding ignored."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 batch["targets"].reshape(-1), ignore_index=-100)

    pool = OneTorchThreadPool(args.threads, "side-by-side") if args.threads > 1 else None
    results, rounds = {}, []  # (peak, weights-only and model GFLOP/s) of each guide trainer round
    for arm in ("guide_trainer", "guide_trainer_whole_batches", "guide_trainer_unshared", "padded_baseline"):
        model, tokenizer = load_model("smollm2", None, device="cpu")
        # A k-shot prompt's examples are retrieved as in training; retrieval runs before the clock starts.
        scorer = make_scorer(model, tokenizer, schema.label_names, args.prompt, schema, config)
        examples, _ = encode(pairs, scorer, lambda p: p.relation, args.max_length)
        model = add_lora(model, settings)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = adamw(params, settings)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if arm.startswith("guide_trainer"):
            batches = [[examples[i] for i in b] for b in bucketed_batches([len(e.ids) for e in examples], mb, 13)]
            prefix = scorer.shared_prefix if arm != "guide_trainer_unshared" else ()
            parts = pool if arm != "guide_trainer_whole_batches" else None

            def step(batch):
                return backward_micro_batch(model, params, batch, prefix, 1.0, parts)
        else:
            batches = [padded(examples[i:i + mb], pad) for i in range(0, len(examples), mb)]

            def step(batch):
                padded_loss(model, batch).backward()
                return batch

        def train(batches):
            """Tokens, computed tokens and seconds of training on `batches`."""
            tokens = computed = 0
            start = time.perf_counter()
            for batch in batches:
                done = step(batch)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += done["tokens"]
                computed += done["computed"]
            return tokens, computed, time.perf_counter() - start

        body, head = _body_and_head(model.get_base_model())
        if arm.startswith("guide_trainer"):
            work = step_flops(model, examples[0], [ran_as(batch, prefix, parts.size if parts else 1)
                                                   for batch in batches[1:]])
        train(batches[:1])  # warm-up
        runs = []
        for _ in range(args.rounds if arm == "guide_trainer" else 1):
            peak = matmul_peak(model.get_base_model(), tokens=mb * 48) if arm == "guide_trainer" else None
            tokens, computed, seconds = train(batches[1:])
            runs.append(seconds)
            if peak:
                rounds.append((peak, 4 * body * computed / seconds / 1e9, work / seconds / 1e9))
        seconds = statistics.median(runs)
        results[arm] = {"tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 2),
                        "computed_share": round(computed / tokens, 3),
                        "useful_gflops": round((4 * body * computed) / seconds / 1e9, 1)}
        if arm.startswith("guide_trainer"):
            results[arm]["model_gflops"] = round(work / seconds / 1e9, 1)
    guide, baseline = results["guide_trainer"], results["padded_baseline"]
    print(json.dumps({"prompt": args.prompt, "lora_dropout": settings.lora_dropout,
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} torch threads", "command": "python " + " ".join(sys.argv), "pairs": args.n,
        "micro_batch": mb,
        **{f"{arm}_{k}": v for arm, row in results.items() for k, v in row.items()},
        "speedup": round(guide["tokens_per_s"] / baseline["tokens_per_s"], 2),
        "prefix_sharing_speedup": round(guide["tokens_per_s"] / results["guide_trainer_unshared"]["tokens_per_s"], 2),
        "side_by_side_speedup": round(guide["tokens_per_s"] / results["guide_trainer_whole_batches"]["tokens_per_s"],
                                      2),
        "matmul_peak_gflops_by_round": [round(peak, 1) for peak, _, _ in rounds],
        "guide_trainer_share_of_peak_by_round": [round(model / peak, 3) for peak, _, model in rounds],
        "guide_trainer_share_of_peak": round(statistics.median(model / peak for peak, _, model in rounds), 3),
        "guide_trainer_share_of_peak_weights_only_by_round": [round(w / peak, 3) for peak, w, _ in rounds],
        "guide_trainer_share_of_peak_weights_only": round(statistics.median(w / peak for peak, w, _ in rounds), 3),
    }))


def ran_as(examples, prefix, threads: int) -> list[dict]:
    """The collated parts one micro-batch runs as (`backward_micro_batch`), each part's blocks and targets."""
    from guides.train import collate, split_for_threads

    return [collate(part, prefix) for part in split_for_threads(examples, prefix, threads)]


def step_flops(model, probe, micro_batches: list[list[dict]]) -> float:
    """Model FLOPs of training on these micro-batches, each as its collated parts (see the module docstring):
    the products each projection's shapes call for, the LM head over the answer columns, and attention under the
    block mask. A prefix that several parts of one micro-batch each ran counts once, as `backward_micro_batch`
    counts its tokens. `probe` (an example) runs one forward pass to see each projection's shapes and whether its
    input needs a gradient."""
    from guides.train import answer_loss, collate

    per_token = 0.0
    for fan_in, fan_out, rank, input_grad in projections(model, lambda: answer_loss(model, collate([probe]))):
        per_token += 2 * fan_in * fan_out + 2 * rank * (fan_in + fan_out)  # forward
        per_token += 4 * rank * fan_out + 2 * rank * fan_in  # the adapter's B and A gradients, and B's input
        per_token += 2 * fan_in * (fan_out + rank) if input_grad else 0  # the input's gradient, base and adapter
    config = model.get_base_model().config
    head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_key = 12.0 * config.num_attention_heads * head_size * config.num_hidden_layers
    head = 4.0 * model.get_base_model().get_output_embeddings().weight.numel()
    flops = 0.0
    for parts in micro_batches:
        prefixes = 0
        for part in parts:
            tokens, k = part["computed"], part["blocks"].prefix
            keys = k * (k + 1) // 2 + sum(int(mask.sum()) for mask in part["blocks"].masks)
            if k and prefixes:  # the micro-batch's prefix, run again by another of its parts
                tokens, keys = tokens - k, keys - k * (k + 1) // 2
            prefixes += bool(k)
            flops += per_token * tokens + head * len(part["targets"]) + per_key * keys
    return flops


def projections(model, forward) -> list[tuple[int, int, int, bool]]:
    """(fan-in, fan-out, LoRA rank or 0, whether its input needs a gradient) of each linear layer of the model's
    body, seen while `forward` runs; the LM head and the adapters' own matrices are not body layers."""
    import torch
    from peft.tuners.lora import Linear as LoraLinear

    base = model.get_base_model()
    inside = {id(m) for layer in base.modules() if isinstance(layer, LoraLinear)
              for m in layer.modules() if m is not layer}
    skip = inside | {id(base.get_output_embeddings())}
    seen = []

    def record(layer, inputs, _output):
        rank = layer.r[layer.active_adapters[0]] if isinstance(layer, LoraLinear) else 0
        seen.append((layer.in_features, layer.out_features, rank, inputs[0].requires_grad))

    hooks = [m.register_forward_hook(record) for m in base.modules()
             if isinstance(m, (torch.nn.Linear, LoraLinear)) and id(m) not in skip]
    try:
        with torch.enable_grad():
            forward()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


if __name__ == "__main__":
    main()
