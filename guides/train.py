"""(Q)LoRA training of a small model to answer with a relation label, loss on the answer tokens only.

Practical on a 2-core CPU: no padding (each micro-batch is packed into one row, its shared prompt prefix
once, and its parts run side by side, one torch thread each), fp32 compute, gradient accumulation, a
checkpoint every few steps that a rerun resumes from, and a seeded data order, so an interrupted run resumed
gives the same adapter as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from collab.config import TrainSettings
from collab.data import Pair

from .lora_linear import fuse_lora_layers
from .scoring import OneTorchThreadPool


@dataclass
class Example:
    ids: list[int]
    n_prompt: int  # tokens before the answer; the loss skips them


def encode(pairs: Sequence[Pair], scorer: Any, label_of: Callable[[Pair], str], max_length: int,
           progress: bool = False) -> tuple[list[Example], int]:
    """Prompt + answer token ids for each pair (answer = the label's continuation the scorer scores). A
    progress bar where asked: a k-shot prompt retrieves each pair's examples, minutes for a corpus."""
    from tqdm import tqdm

    index = {label: i for i, label in enumerate(scorer.labels)}
    examples, truncated = [], 0
    for pair in tqdm(pairs, desc="prompts", unit="pair", disable=not progress, dynamic_ncols=True):
        prompt = scorer.prompt_ids(pair)
        answer = scorer.continuations[index[label_of(pair)]]
        if len(prompt) + len(answer) > max_length:
            # Keep the answer and the prompt's end (entities, "Relation:"); the start of a long text goes.
            prompt = prompt[len(prompt) + len(answer) - max_length:]
            truncated += 1
        examples.append(Example(prompt + answer, len(prompt)))
    return examples, truncated


# Tokens a forward pass may hold when the micro-batch is left to the trainer: memory grows with them (the
# characters recipe's passes of about 2,500 tokens peaked at 12 GB on SmolLM2-135M), while passes of short
# pairs need many of them for products large enough to run near the CPU's peak (BENCHMARKS.md, "Guide
# training speed").
PASS_TOKENS = 2560
# The most pairs a pass takes when neither the batch nor the micro-batch is given: 16 held dev F1 for the
# code and CoNLL04 prompts (BENCHMARKS.md, "Batch 16 becomes the trainer's default").
PASS_PAIRS = 16


def fit_micro_batch(settings: TrainSettings, examples: Sequence[Example], prefix: Sequence[int] = ()
                    ) -> TrainSettings:
    """`settings` with its micro-batch and batch set where they were left unset. The micro-batch: the largest
    divisor of the batch (of PASS_PAIRS when that is unset too) whose packed pass (the shared prefix once, then
    each example's own tokens, at the mean length) stays within PASS_TOKENS. The batch: one such pass, since
    more passes a step train no faster and take fewer steps (two passes of 8 cost the characters recipe 0.03
    dev micro-F1)."""
    micro = settings.micro_batch
    if micro is None:
        limit = settings.batch_size or PASS_PAIRS
        k = len(prefix)
        own = sum(len(e.ids) - (k if e.ids[:k] == list(prefix) else 0) for e in examples) / max(1, len(examples))
        micro = [m for m in range(1, limit + 1) if limit % m == 0 and (m == 1 or k + m * own <= PASS_TOKENS)][-1]
    return replace(settings, batch_size=settings.batch_size or micro, micro_batch=micro)


def bucketed_batches(lengths: Sequence[int], micro_batch: int, seed: int) -> list[list[int]]:
    """Shuffle, sort by length inside windows of 50 micro-batches, cut, shuffle the batches: a different mix
    every epoch (the seed makes each epoch's order reproducible). The sort kept padding low when batches were
    padded rows; packed batches have none, and it stays so that the shipped guides' data order does too."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = micro_batch * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + micro_batch] for i in range(0, len(chunk), micro_batch)]
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Example], prefix: Sequence[int] = ()) -> dict[str, Any]:
    """A micro-batch packed into one row with no padding: the prompt tokens every example starts with
    (`prefix`: chat header, system prompt, an enumerated label set) once, then each example's own tokens.
    `answer_loss` lets each example attend to the prefix and to its own earlier tokens only, so each sees what
    it would see alone, and computes logits only at the columns that predict an answer token (the LM head's
    49k-wide projection is a fifth of SmolLM2's forward cost when run on every token). When some example does
    not start with the prefix (a long prompt cut from its start), nothing is shared.
    """
    k = _shared(examples, prefix)
    ids, positions, spans, keep, targets = list(prefix[:k]), list(range(k)), [], [], []
    for e in examples:
        start, own = len(ids), e.ids[k:]
        ids += own
        positions += range(k, k + len(own))
        spans.append((start, len(ids)))
        keep += range(start + e.n_prompt - k - 1, len(ids) - 1)  # column c predicts the token at c + 1
        targets += e.ids[e.n_prompt:]
    return {"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([positions]),
            "blocks": _Blocks.of(k, spans), "keep": torch.tensor(keep), "targets": torch.tensor(targets),
            "tokens": sum(len(e.ids) for e in examples), "computed": len(ids)}


def _shared(examples: Sequence[Example], prefix: Sequence[int]) -> int:
    """How many prompt tokens a packed batch of `examples` shares: all of `prefix` where every example starts
    with it and has a token of its own after it, else none."""
    k = len(prefix)
    return k if k and all(e.n_prompt > k and e.ids[:k] == list(prefix) for e in examples) else 0


# Run side by side, each part of a micro-batch computes the shared prefix again: worth it while that costs less
# than the one-thread products gain, about a tenth on 2 cores (BENCHMARKS.md, "Guide training speed").
MAX_REPEATED_PREFIX = 0.1


def split_for_threads(examples: Sequence[Example], prefix: Sequence[int], n: int) -> list[list[Example]]:
    """The micro-batch in up to n parts of about equal tokens (longest first, each to the lightest part), one
    per thread; whole where it has fewer than n examples or the repeated prefix would add over
    MAX_REPEATED_PREFIX to its work."""
    k = _shared(examples, prefix)
    work = k + sum(len(e.ids) - k for e in examples)
    if n < 2 or len(examples) < n or (n - 1) * k > MAX_REPEATED_PREFIX * work:
        return [list(examples)]
    parts: list[list[Example]] = [[] for _ in range(n)]
    loads = [0] * n
    for e in sorted(examples, key=lambda e: -len(e.ids)):
        lightest = loads.index(min(loads))
        parts[lightest].append(e)
        loads[lightest] += len(e.ids)
    return parts


def backward_micro_batch(model: Any, params: Sequence[torch.Tensor], examples: Sequence[Example],
                         prefix: Sequence[int], scale: float, pool: OneTorchThreadPool | None = None
                         ) -> dict[str, Any]:
    """One micro-batch's answer loss, its gradient times `scale` added to `params`' .grad. With a pool of
    one-thread workers its parts (`split_for_threads`) run side by side, each part's gradient taken
    on its own thread and summed here in a fixed order, so the result does not depend on which finishes first.
    Returns the loss, the examples' tokens and the tokens computed, a shared prefix counted once even where
    several parts ran it."""
    parts = split_for_threads(examples, prefix, pool.size if pool else 1)
    batches = [collate(part, prefix) for part in parts]
    tokens = sum(b["tokens"] for b in batches)
    sharing = sum(1 for b in batches if b["blocks"].prefix)  # a part may share the prefix where the whole could not
    computed = sum(b["computed"] for b in batches) - max(0, sharing - 1) * len(prefix)
    if len(batches) == 1:
        loss = answer_loss(model, batches[0])
        (loss * scale).backward()
        return {"loss": loss.item(), "tokens": tokens, "computed": computed}
    answers = sum(len(b["targets"]) for b in batches)

    def part_gradients(batch: dict[str, Any]) -> tuple[float, tuple[torch.Tensor, ...]]:
        loss = answer_loss(model, batch) * (len(batch["targets"]) / answers)  # its share of the batch's mean
        return loss.item(), torch.autograd.grad(loss * scale, params, allow_unused=True, materialize_grads=True)

    with _block_attention_on(model):  # switched once for all parts: one part's switch back must not end another's
        results = [job.result() for job in [pool.submit(part_gradients, batch) for batch in batches]]
    for param, *grads in zip(params, *(grads for _, grads in results)):
        total = sum(grads[1:], grads[0])
        param.grad = total if param.grad is None else param.grad + total
    return {"loss": sum(loss for loss, _ in results), "tokens": tokens, "computed": computed}


@dataclass
class _Blocks:
    """Where each example of a packed row lies: a shared prefix of `prefix` columns, then (start, end) spans,
    each with its [own, prefix + own] attention mask (the whole prefix, and its own tokens causally)."""
    prefix: int
    spans: list[tuple[int, int]]
    masks: list[torch.Tensor]

    @classmethod
    def of(cls, prefix: int, spans: list[tuple[int, int]]) -> _Blocks:
        masks = []
        for start, end in spans:
            n = end - start
            mask = torch.ones(n, prefix + n, dtype=torch.bool)
            mask[:, prefix:] = torch.ones(n, n, dtype=torch.bool).tril()
            masks.append(mask)
        return cls(prefix, spans, masks)

    def to(self, device: Any) -> _Blocks:
        return _Blocks(self.prefix, self.spans, [m.to(device) for m in self.masks])


BLOCK_ATTENTION = "collab_blocks"


def _block_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
                     scaling: float | None = None, dropout: float = 0.0, blocks: _Blocks | None = None,
                     **_: Any) -> tuple[torch.Tensor, None]:
    """Attention over a packed row, one example at a time (its queries against the prefix's keys and its own):
    the dense row-wide alternative computes every example against every other and masks most of it away.
    query [1, heads, T, d], key/value [1, kv heads, T, d]; returns [1, T, heads, d] as transformers expects."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    p = dropout if module.training else 0.0
    k = blocks.prefix
    # The row cut into its prefix and examples with one split each: a slice per example would cost a
    # row-sized gradient buffer per example in the backward pass, a split one for all.
    sizes = [k] + [end - start for start, end in blocks.spans]
    queries, keys, values = (torch.split(x, sizes, dim=2) for x in (query, key, value))
    out = [sdpa(queries[0], keys[0], values[0], is_causal=True, scale=scaling, dropout_p=p,
                enable_gqa=True)] if k else []
    for q, own_keys, own_values, mask in zip(queries[1:], keys[1:], values[1:], blocks.masks):
        out.append(sdpa(q, torch.cat([keys[0], own_keys], dim=2), torch.cat([values[0], own_values], dim=2),
                        attn_mask=mask, scale=scaling, dropout_p=p, enable_gqa=True))
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None


def _config(model: Any) -> Any:
    return (model.get_base_model() if hasattr(model, "get_base_model") else model).config


@contextmanager
def _block_attention_on(model: Any):
    """The model's attention implementation switched to `_block_attention` for one call (scoring after
    training needs its own)."""
    from transformers import AttentionInterface

    AttentionInterface.register(BLOCK_ATTENTION, _block_attention)
    config = _config(model)
    before = config._attn_implementation
    config._attn_implementation = BLOCK_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = before


def answer_loss(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens of a packed micro-batch (`collate`). The shared prefix runs
    once, with gradients, and every example attends to its keys and values: the same loss and gradients as
    running each example alone, for none of the padding and 1/batch of the prefix's cost."""
    device = next(model.parameters()).device
    blocks = batch["blocks"].to(device)
    window = getattr(_config(model), "sliding_window", None)
    longest = blocks.prefix + max(end - start for start, end in blocks.spans)
    if window and longest > window:  # block attention sees whole examples; such layers would see less
        raise ValueError(f"a training example of {longest} tokens is longer than the model's sliding attention "
                         f"window ({window}); lower --max-length to {window}")
    with _block_attention_on(model):
        out = model(input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device),
                    logits_to_keep=batch["keep"].to(device), use_cache=False, blocks=blocks)
    return torch.nn.functional.cross_entropy(out.logits[0].float(), batch["targets"].to(device))


def add_lora(model: Any, settings: TrainSettings) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if settings.four_bit:
        # Gradient checkpointing would trade speed for memory we do not lack with a 135M model.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in settings.targets if t in present]
    if not targets:
        raise ValueError(f"none of the LoRA target modules {settings.targets} exist in this model")
    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    fuse_lora_layers(model)
    return model


def adamw(params: Sequence[torch.Tensor], settings: TrainSettings) -> torch.optim.AdamW:
    """AdamW over the adapters, one fused update for all of them where torch has it (CPU, CUDA): updated tensor
    by tensor, its 420 LoRA matrices took 57 ms a step on 2 cores, fused 17 ms (about 2% of a step)."""
    fused = {p.device.type for p in params} <= {"cpu", "cuda"}
    return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused or None)


def _save_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "adapter")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), **state}, tmp / "state.pt")
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, settings_key: str) -> dict | None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state_file = path / "state.pt"
    if not state_file.is_file():
        return None
    state = torch.load(state_file, weights_only=False)
    if state.get("settings_key") != settings_key:
        raise ValueError(f"{path} was written with other settings or data; delete it to start over")
    set_peft_model_state_dict(model, load_file(path / "adapter" / "adapter_model.safetensors"))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state


def train_lora(model: Any, examples: list[Example], out_dir: Path, settings: TrainSettings, *,
               data_key: str, prefix: Sequence[int] = (), max_steps: int | None = None, progress: bool = True
               ) -> dict:
    """Train LoRA adapters on `examples`; resumes from out_dir/checkpoint. Returns training statistics.

    `prefix`: the prompt tokens examples share, run once per batch (see `collate`); `max_steps` stops early
    (for tests and timing runs); the schedule still spans the full run. `tokens` counts the tokens the
    examples hold, `computed_tokens` those of the packed batches (a shared prefix once per batch, even where a
    batch's parts ran it side by side).
    """
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    settings = fit_micro_batch(settings, examples, prefix)
    torch.manual_seed(settings.seed)
    model = add_lora(model, settings)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, settings)
    accumulation = settings.batch_size // settings.micro_batch
    lengths = [len(e.ids) for e in examples]
    epochs = math.ceil(settings.epochs)
    per_epoch = math.ceil(len(examples) / settings.micro_batch)
    total_micro = int(per_epoch * settings.epochs)
    total_steps = math.ceil(total_micro / accumulation)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup * total_steps), total_steps)
    settings_key = json.dumps([asdict(settings), data_key], sort_keys=True)
    checkpoint = out_dir / "checkpoint"
    state = _load_checkpoint(checkpoint, model, optimizer, scheduler, settings_key) or {}
    done_micro = state.get("micro_step", 0)
    losses: list[float] = state.get("losses", [])
    tokens = state.get("tokens", 0)
    computed = state.get("computed_tokens", 0)
    seconds = state.get("seconds", 0.0)
    stop_micro = min(total_micro, done_micro + max_steps * accumulation) if max_steps else total_micro
    bar = tqdm(total=stop_micro, initial=done_micro, disable=not progress, unit="batch", dynamic_ncols=True)
    micro = 0
    # on a CPU a micro-batch's parts run side by side, one torch thread each (see backward_micro_batch); not over
    # 4-bit weights, whose CPU kernels were not checked for running on two threads at once
    on_cpu = next(model.parameters()).device.type == "cpu"
    workers = torch.get_num_threads() if on_cpu and not settings.four_bit else 1
    pool = OneTorchThreadPool(workers, "guide-training") if workers > 1 else None
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    try:
        for epoch in range(epochs):
            for batch_ids in bucketed_batches(lengths, settings.micro_batch, settings.seed + epoch):
                if micro >= stop_micro:
                    break
                if micro < done_micro:  # already trained before the resume
                    micro += 1
                    continue
                done = backward_micro_batch(model, params, [examples[i] for i in batch_ids], prefix,
                                            1 / accumulation, pool)
                losses.append(done["loss"])
                tokens += done["tokens"]
                computed += done["computed"]
                micro += 1
                if micro % accumulation == 0 or micro == stop_micro:
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step = micro // accumulation
                    if step % settings.checkpoint_every == 0 and micro < stop_micro:
                        elapsed = seconds + time.perf_counter() - started
                        _save_checkpoint(checkpoint, model, optimizer, scheduler, {
                            "micro_step": micro, "losses": losses, "tokens": tokens, "computed_tokens": computed,
                            "seconds": elapsed, "settings_key": settings_key})
                elapsed = seconds + time.perf_counter() - started
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", tok_s=f"{tokens / elapsed:.0f}")
    finally:  # an interrupted run (Ctrl-C, a failing batch) must not leave the threads behind
        bar.close()
        if pool:
            pool.shutdown()
    elapsed = seconds + time.perf_counter() - started
    if micro < total_micro:  # stopped early: leave a checkpoint the next run continues from
        _save_checkpoint(checkpoint, model, optimizer, scheduler, {
            "micro_step": micro, "losses": losses, "tokens": tokens, "computed_tokens": computed, "seconds": elapsed,
            "settings_key": settings_key})
    model.eval()
    return {"model": model, "micro_steps": micro, "optimizer_steps": math.ceil(micro / accumulation),
            "losses": losses, "tokens": tokens, "computed_tokens": computed, "seconds": round(elapsed, 1),
            "tokens_per_second": round(tokens / elapsed, 1) if elapsed else None, "finished": micro >= total_micro}
