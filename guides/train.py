"""(Q)LoRA training of a small model to answer with a relation label, loss on the answer tokens only.

Practical on a 2-core CPU: no padding to a fixed length (batches are bucketed by length), fp32 compute,
gradient accumulation, a checkpoint every few steps that a rerun resumes from, and a seeded data order, so
an interrupted run resumed gives the same adapter as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from collab.config import TrainSettings
from collab.data import Pair

IGNORE = -100


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


def bucketed_batches(lengths: Sequence[int], micro_batch: int, seed: int) -> list[list[int]]:
    """Shuffle, sort by length inside windows of 50 micro-batches, cut, shuffle the batches: little padding,
    yet a different mix every epoch (the seed makes each epoch's order reproducible)."""
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


def collate(examples: Sequence[Example], pad_id: int, prefix: Sequence[int] = ()) -> dict[str, Any]:
    """Left-padded batch: every answer ends at the last column, so the LM head runs only over the last
    `keep` columns (its 49k-wide projection is a fifth of SmolLM2's forward cost when run on every token).

    `prefix`: prompt tokens every example may start with (chat header, system prompt, an enumerated label
    set). When all of the batch's examples start with them, they are cut off and run once for the batch
    (`answer_loss`), and the rows hold the rest: [left padding][own tokens] after the common prefix.
    """
    k = len(prefix)
    if not (k and all(e.n_prompt > k and e.ids[:k] == list(prefix) for e in examples)):
        k = 0
    width = max(len(e.ids) for e in examples) - k
    keep = max(len(e.ids) - e.n_prompt for e in examples) + 1
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.full((len(examples), keep - 1), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        n, answer = len(e.ids) - k, len(e.ids) - e.n_prompt
        ids[row, width - n:] = torch.tensor(e.ids[k:])
        mask[row, width - n:] = 1
        targets[row, keep - 1 - answer:] = torch.tensor(e.ids[e.n_prompt:])
    positions = (mask.cumsum(1) - 1).clamp(min=0) + k
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "targets": targets, "keep": keep,
            "prefix": torch.tensor(prefix[:k], dtype=torch.long)}


def answer_loss(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens (logits at column c predict the token at c + 1).

    A batch's common prefix runs once, with gradients, and every row attends to its keys and values: the
    same loss as running it in each row, for 1/batch of its cost (in training, LoRA dropout then draws one
    mask for the prefix rather than one per row).
    """
    device = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    prefix, cache = batch["prefix"].to(device), None
    if len(prefix):
        cache = model(input_ids=prefix[None], use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(ids))
        mask = torch.cat([torch.ones(len(ids), len(prefix), dtype=mask.dtype, device=device), mask], dim=1)
    out = model(input_ids=ids, attention_mask=mask, position_ids=batch["position_ids"].to(device),
                past_key_values=cache, logits_to_keep=batch["keep"], use_cache=cache is not None)
    logits = out.logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             batch["targets"].to(device).reshape(-1), ignore_index=IGNORE)


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
    return get_peft_model(model, config)


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


def train_lora(model: Any, tokenizer: Any, examples: list[Example], out_dir: Path, settings: TrainSettings, *,
               data_key: str, prefix: Sequence[int] = (), max_steps: int | None = None, progress: bool = True
               ) -> dict:
    """Train LoRA adapters on `examples`; resumes from out_dir/checkpoint. Returns training statistics.

    `prefix`: the prompt tokens examples share, run once per batch (see `collate`); `max_steps` stops early
    (for tests and timing runs); the schedule still spans the full run. `tokens` counts the tokens the
    examples hold, `computed_tokens` those the forward passes ran (a shared prefix once per batch).
    """
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(settings.seed)
    model = add_lora(model, settings)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
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
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stop_micro = min(total_micro, done_micro + max_steps * accumulation) if max_steps else total_micro
    bar = tqdm(total=stop_micro, initial=done_micro, disable=not progress, unit="batch", dynamic_ncols=True)
    micro = 0
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    for epoch in range(epochs):
        for batch_ids in bucketed_batches(lengths, settings.micro_batch, settings.seed + epoch):
            if micro >= stop_micro:
                break
            if micro < done_micro:  # already trained before the resume
                micro += 1
                continue
            batch = collate([examples[i] for i in batch_ids], pad, prefix)
            loss = answer_loss(model, batch)
            (loss / accumulation).backward()
            losses.append(loss.item())
            own = int(batch["attention_mask"].sum())
            tokens += own + len(batch["prefix"]) * len(batch_ids)
            computed += own + len(batch["prefix"])
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
    bar.close()
    elapsed = seconds + time.perf_counter() - started
    if micro < total_micro:  # stopped early: leave a checkpoint the next run continues from
        _save_checkpoint(checkpoint, model, optimizer, scheduler, {
            "micro_step": micro, "losses": losses, "tokens": tokens, "computed_tokens": computed, "seconds": elapsed,
            "settings_key": settings_key})
    model.eval()
    return {"model": model, "micro_steps": micro, "optimizer_steps": math.ceil(micro / accumulation),
            "losses": losses, "tokens": tokens, "computed_tokens": computed, "seconds": round(elapsed, 1),
            "tokens_per_second": round(tokens / elapsed, 1) if elapsed else None, "finished": micro >= total_micro}
