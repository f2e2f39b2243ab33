"""A guide is one folder: a PEFT LoRA adapter plus guide.json, which says what it may be used with.

guide.json holds the base model (name and GGUF/weights hash), the schema (name and fingerprint), the prompt
template, the training mode and data, the calibration temperature and the dev-split per-label F1. Loading
checks the fingerprints, so an adapter is never used with a schema or base model it was not trained for.

`train_guide` runs the stages in order; each stage's output lives in the folder, so a rerun resumes where the
last one stopped: training (checkpointed inside `train_lora`), then dev scoring (dev_scores.pt), then
calibration (guide.json, reliability.png).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from collab import datasets
from collab.cache import cache_root, content_key, file_sha256
from collab.calibration import calibrate_on_dev
from collab.config import Config, TrainSettings
from collab.data import Pair
from collab.files import atomic_write_text
from collab.prompts import load_template
from collab.schema import Schema, load_schema

from .models import ensure_chat_template, load_model, resolve_model
from .scoring import LabelScorer
from .train import encode, fit_micro_batch, train_lora

GUIDE_FILE = "guide.json"
ENCODER_FILE = "encoder.json"  # an encoder guide (guides/encoder.py)
ENSEMBLE_FILE = "ensemble.json"  # a mixture of guides (guides/ensemble.py)
LONG_TAIL = "long_tail"  # a head-only guide's answer for "a rarer relation than those I was trained on"
FORMAT = 1
SHIPPED = Path(__file__).resolve().parent / "adapters"


class GuideError(ValueError):
    """A guide folder is missing, incomplete, or does not fit the schema or base model asked for."""


def _is_guide(path: Path) -> bool:
    return any((path / name).is_file() for name in (GUIDE_FILE, ENCODER_FILE, ENSEMBLE_FILE))


def guide_path(spec: str | Path) -> Path:
    """A shipped guide's name (a folder under guides/adapters) or a path to a guide folder: a language-model
    guide (guide.json), an encoder guide (encoder.json) or a mixture of guides (ensemble.json)."""
    path = Path(spec).expanduser()
    if not path.exists() and (SHIPPED / str(spec)).is_dir():
        path = SHIPPED / str(spec)
    if not _is_guide(path):
        shipped = sorted(p.name for p in SHIPPED.glob("*") if _is_guide(p)) if SHIPPED.is_dir() else []
        raise GuideError(f"{path}: not a guide folder (no {GUIDE_FILE}, {ENCODER_FILE} or {ENSEMBLE_FILE}); "
                         f"shipped guides: {', '.join(shipped) or 'none'}")
    return path


def shipped_guide(schema: Schema, model: str) -> Path | None:
    """The shipped guide `auto` uses for this schema: of the calibrated language-model guides trained on
    `model` and the schema's encoder guides (no language model involved, so any `model` accepts them), the
    one with the best dev micro-F1 recorded at calibration. Chosen on dev, never on test. A guide whose
    guide.json says `"auto": false` is used only when named (its card says which dev result kept it out)."""
    found: list[tuple[float, str, Path]] = []
    for meta_file in sorted(SHIPPED.glob(f"*/{GUIDE_FILE}")):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("schema", {}).get("name") == schema.id and meta.get("base_model", {}).get("name") == model \
                and meta.get("temperature") is not None and meta.get("auto", True):
            found.append((meta.get("dev", {}).get("micro_f1", 0.0), meta_file.parent.name, meta_file.parent))
    for meta_file in sorted(SHIPPED.glob(f"*/{ENCODER_FILE}")):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("schema", {}).get("id") == schema.id and meta.get("temperature") is not None:
            found.append((meta.get("dev", {}).get("micro_f1", 0.0), meta_file.parent.name, meta_file.parent))
    return max(found)[2] if found else None


def guide_identity(path: str | Path) -> str:
    """A content hash of what decides a guide's predictions: its metadata and weight files (an ensemble's:
    its own file and its members' identities)."""
    path = Path(path)
    if (path / ENSEMBLE_FILE).is_file():
        from .ensemble import member_spec, read_ensemble

        members = [guide_identity(guide_path(member_spec(path, m["guide"]))) for m in read_ensemble(path)["members"]]
        return content_key(file_sha256(path / ENSEMBLE_FILE), *members)
    files = sorted(f for f in path.rglob("*") if f.name in (GUIDE_FILE, ENCODER_FILE) or f.suffix == ".safetensors")
    return content_key(*(f"{f.relative_to(path)}:{file_sha256(f)}" for f in files))


def read_guide(spec: str | Path) -> tuple[Path, dict]:
    path = guide_path(spec)
    meta = json.loads((path / GUIDE_FILE).read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise GuideError(f"{path / GUIDE_FILE}: format {meta.get('format')!r}; this collab reads format {FORMAT}")
    if meta.get("temperature") is None:
        raise GuideError(f"{path / GUIDE_FILE}: training finished but calibration did not; rerun the train command")
    return path, meta


def weights_hash(model_dir: Path) -> str:
    """The converted folder is named by its GGUF's hash; a plain folder is hashed by its weight files."""
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    return content_key(*(file_sha256(f) for f in files))[:16]


def load_guide(spec: str | Path, config: Config | None = None, *, expect_schema: str | None = None):
    """A calibrated scorer: a LabelScorer with the guide's adapter on its base model, or an EncoderGuide."""
    from peft import PeftModel

    config = config or Config()
    folder = guide_path(spec)
    if (folder / ENCODER_FILE).is_file():
        return _load_encoder(folder, expect_schema)
    if (folder / ENSEMBLE_FILE).is_file():
        from .ensemble import load_ensemble

        return load_ensemble(folder, lambda member, schema: load_guide(member, config, expect_schema=schema),
                             expect_schema)
    path, meta, schema, base = _checked_guide(spec, config, expect_schema)
    four_bit = torch.cuda.is_available() if config.four_bit is None else config.four_bit
    model, tokenizer = load_model(base, cache_root(config.cache_dir), four_bit=four_bit)
    model = PeftModel.from_pretrained(model, path)
    if not four_bit:
        model = model.merge_and_unload()  # plain weights again: scoring runs at the base model's speed
    model.eval()
    return make_scorer(model, tokenizer, meta["labels"], meta["prompt"], schema, config, **_calibrated(meta))


def served_guide(spec: str | Path, url: str, config: Config | None = None, *, expect_schema: str | None = None):
    """The guide scored by a server (guides.endpoint): only its tokenizer loads here. The server's model name
    is `config.guide_served_model`, or the guide folder's name (vLLM's `--lora-modules NAME=FOLDER`)."""
    from transformers import AutoTokenizer

    from .endpoint import EndpointScorer

    config = config or Config()
    if not (guide_path(spec) / GUIDE_FILE).is_file():
        raise GuideError(f"{guide_path(spec)}: an encoder guide or an ensemble runs locally; only a "
                         "language-model guide can be served by a completions endpoint")
    path, meta, schema, base = _checked_guide(spec, config, expect_schema)
    tokenizer = AutoTokenizer.from_pretrained(base)
    ensure_chat_template(tokenizer)
    return make_scorer(None, tokenizer, meta["labels"], meta["prompt"], schema, config, **_calibrated(meta),
                       scorer_class=lambda model, *args, **kwargs: EndpointScorer(
                           url, config.guide_served_model or path.name, *args,
                           api_key=os.environ.get(config.llm_api_key_env), **kwargs))


def _calibrated(meta: dict) -> dict:
    """The scorer settings guide.json fixes: calibration temperature, and long_tail for a head-only guide."""
    return {"temperature": meta["temperature"], "never_final": LONG_TAIL if meta["mode"] == "head_only" else None}


def _checked_guide(spec: str | Path, config: Config, expect_schema: str | None) -> tuple[Path, dict, Schema, Path]:
    """The guide's folder, guide.json, schema and base model folder, once the fingerprints match."""
    path, meta = read_guide(spec)
    schema = load_schema(meta["schema"]["name"])
    if expect_schema and load_schema(expect_schema).id != schema.id:
        raise GuideError(f"{path}: this guide was trained for schema {schema.id}, not {load_schema(expect_schema).id}")
    if schema.fingerprint != meta["schema"]["fingerprint"]:
        raise GuideError(f"{path}: schema {schema.id} has changed since this guide was trained "
                         f"(fingerprint {schema.fingerprint[:12]} != {meta['schema']['fingerprint'][:12]}); retrain it")
    if meta["labels"] != guide_labels(schema, meta["mode"] == "head_only", meta.get("head")):
        raise GuideError(f"{path}: the guide's labels do not fit schema {schema.id} in mode {meta['mode']}")
    base = resolve_model(meta["base_model"]["name"], cache_root(config.cache_dir))
    if weights_hash(base) != meta["base_model"]["weights"]:
        raise GuideError(f"{path}: base model {meta['base_model']['name']} ({base}) is not the one this guide was "
                         f"trained on (weights {weights_hash(base)} != {meta['base_model']['weights']})")
    return path, meta, schema, base


def make_scorer(model: Any, tokenizer: Any, labels: Sequence[str], template: str, schema: Schema, config: Config,
                *, scorer_class: Callable[..., LabelScorer] = LabelScorer, **kwargs: Any) -> LabelScorer:
    """A LabelScorer (or `scorer_class`); a template that shows solved examples (`shots`) gets them retrieved
    per pair from the schema's training data."""
    shots = load_template(template).extra.get("shots", 0)
    picker = None
    if shots:
        from collab import embed
        from collab.retrieval import Retriever, demonstration_picker

        embedder = embed.SentenceEmbedder(None, threads=config.threads, cache_dir=config.cache_dir)
        retriever = Retriever(schema, embedder, shared=config.shared, cache_dir=config.cache_dir, index=config.index)
        picker = demonstration_picker(retriever, shots)
    return scorer_class(model, tokenizer, labels, template=template, demonstrations=picker, **kwargs)


def _load_encoder(path: Path, expect_schema: str | None):
    from .encoder import EncoderGuide

    meta = json.loads((path / ENCODER_FILE).read_text(encoding="utf-8"))
    schema = load_schema(expect_schema or meta["schema"]["id"].rsplit(".v", 1)[0])
    if schema.id != meta["schema"]["id"]:
        raise GuideError(f"{path}: this guide was trained for schema {meta['schema']['id']}, not {schema.id}")
    if meta.get("temperature") is None:
        raise GuideError(f"{path / ENCODER_FILE}: training finished but calibration did not; rerun the train command")
    return EncoderGuide.load(path, schema)


def guide_labels(schema: Schema, head_only: bool, head: list[str] | None) -> list[str]:
    """The labels a guide scores: the schema's, or (head-only) its head labels, `long_tail` and the negative."""
    if not head_only:
        return list(schema.label_names)
    return [name for name in schema.label_names if name in set(head or ())] + [LONG_TAIL, schema.negative]


# ------------------------------------------------------------------------------------------------ training
def _dev_scores(scorer: LabelScorer, pairs: list[Pair], out: Path, batch_size: int,
                relabel: Callable[[str], str]) -> dict:
    cached = out / "dev_scores.pt"
    key = content_key(*(p.id for p in pairs), file_sha256(out / "adapter_model.safetensors"))
    if cached.is_file():
        saved = torch.load(cached)
        if saved.get("key") == key:
            return saved
    from tqdm import tqdm

    index = {label: i for i, label in enumerate(scorer.labels)}
    start = time.perf_counter()
    scores = torch.empty((len(pairs), len(scorer.labels)), dtype=torch.float64)
    with tqdm(total=len(pairs), desc="dev scoring", unit="pair") as bar:
        for i, scores_of_pair in enumerate(scorer.iter_label_scores(pairs, batch_size)):
            scores[i] = scores_of_pair
            bar.update()
    saved = {"key": key, "scores": scores, "gold": torch.tensor([index[relabel(p.relation)] for p in pairs]),
             "ids": [p.id for p in pairs], "seconds": time.perf_counter() - start}
    tmp = cached.with_suffix(".tmp")
    torch.save(saved, tmp)
    tmp.replace(cached)
    return saved


def calibrate(scorer: LabelScorer, dev: list[Pair], out: Path, batch_size: int = 8,
              relabel: Callable[[str], str] = str) -> dict:
    """Fit the temperature on dev; ECE before and after, per-label dev F1 (over the guide's own labels), and a
    reliability diagram."""
    saved = _dev_scores(scorer, dev, out, batch_size, relabel)
    # F1 against every label a pair's gold accepts (a DialogRE pair may hold two), as `eval` and the encoder
    # guide's calibration count it: `auto` compares the two kinds of guide on this figure
    gold_labels = {p.id: [relabel(label) for label in p.gold_labels] for p in dev}
    report = calibrate_on_dev(saved["scores"], saved["gold"], scorer.labels, gold_labels,
                              out / "reliability.png", f"{out.name}: dev reliability")
    report["dev"]["pairs_per_second"] = round(len(dev) / saved["seconds"], 2)
    return report


def _save_half(peft_model: Any, out: Path) -> None:
    """Save the adapter in fp16: half the size in git, and LoRA weights lose nothing that shows in F1."""
    lora = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    dtypes = [p.dtype for p in lora]
    for p in lora:
        p.data = p.data.half()
    peft_model.save_pretrained(out)
    for p, dtype in zip(lora, dtypes):
        p.data = p.data.to(dtype)


def train_guide(config: Config, train_spec: str, dev_spec: str, out: str | Path, settings: TrainSettings, *,
                max_steps: int | None = None, progress: bool = True) -> dict:
    """Train, score dev, calibrate; returns guide.json's content (also written into `out`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    schema = load_schema(config.schema)
    train_source = datasets.resolve(train_spec, config.shared)
    pairs = list(train_source.read(schema=schema, require_label=True))
    dev = list(datasets.resolve(dev_spec, config.shared).read(schema=schema, require_label=True))
    if not pairs or not dev:
        raise ValueError(f"{train_spec if not pairs else dev_spec}: no labelled pairs to train or calibrate on")
    if settings.head_only and not schema.train_data:
        raise ValueError(f"--head-only needs the head/long-tail split, and schema {schema.id} names no train_data")
    base = resolve_model(config.model, cache_root(config.cache_dir))
    model, tokenizer = load_model(base, cache_root(config.cache_dir), four_bit=settings.four_bit)
    split = datasets.head_tail(schema, coverage=config.tail_coverage, shared=config.shared,
                               cache_dir=config.cache_dir) if schema.train_data else {"head": None, "tail": None}
    labels = guide_labels(schema, settings.head_only, split["head"])
    tail = set(split["tail"] or ()) if settings.head_only else set()

    def relabel(relation: str) -> str:
        return LONG_TAIL if relation in tail else relation

    # never_final: a k-shot prompt shows a tail example answered as long_tail, as the guide is taught to
    never_final = LONG_TAIL if settings.head_only else None
    scorer = make_scorer(model, tokenizer, labels, config.prompt, schema, config, never_final=never_final)
    examples, truncated = encode(pairs, scorer, lambda p: relabel(p.relation), settings.max_length,
                                 progress=progress and bool(scorer.demonstrations))
    settings = fit_micro_batch(settings, examples, scorer.shared_prefix)  # recorded as trained
    data_key = content_key(train_source.sha256(), schema.fingerprint, config.prompt, weights_hash(base))
    run_key = content_key(data_key, json.dumps(asdict(settings), sort_keys=True))
    stats_file = out / "train.json"
    stats = json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.is_file() else {}
    if stats.get("run_key") == run_key and (out / "adapter_model.safetensors").is_file():
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(model, out)  # trained by an earlier run: go on to calibration
    else:
        trained = train_lora(model, examples, out, settings, data_key=data_key,
                             prefix=scorer.shared_prefix, max_steps=max_steps, progress=progress)
        peft_model = trained.pop("model")
        losses = trained.pop("losses")
        stats = {"run_key": run_key, "settings": asdict(settings), "truncated": truncated, **trained,
                 "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
                 "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                            f"{'cuda' if torch.cuda.is_available() else 'cpu'}"}
        if not trained["finished"]:
            print(f"stopped after {trained['micro_steps']} batches; rerun the same command to resume")
            return stats
        peft_model.peft_config["default"].base_model_name_or_path = config.model
        _save_half(peft_model, out)
        atomic_write_text(stats_file, json.dumps(stats, indent=1) + "\n")
        shutil.rmtree(out / "checkpoint", ignore_errors=True)
    meta: dict[str, Any] = {
        "format": FORMAT, "labels": labels, "prompt": config.prompt,
        "mode": "head_only" if settings.head_only else "all_labels",
        "head": split["head"], "tail": split["tail"], "tail_coverage": config.tail_coverage,
        "base_model": {"name": config.model, "weights": weights_hash(base)},
        "schema": {"name": schema.id, "fingerprint": schema.fingerprint},
        "train": {"data": train_spec, "sha256": train_source.sha256(), "pairs": len(pairs),
                  **{k: v for k, v in stats.items() if k != "run_key"}},
    }
    scorer = make_scorer(peft_model, tokenizer, labels, config.prompt, schema, config, never_final=never_final)
    meta.update(calibrate(scorer, dev, out, config.batch_size, relabel))
    meta["dev"]["data"] = dev_spec
    atomic_write_text(out / GUIDE_FILE, json.dumps(meta, indent=1) + "\n")
    return meta
