"""The Python API: what the CLI does, callable from a notebook without shelling out.

    import collab
    preds = collab.extract([("Smoke from the fire filled the hall.", "Smoke", "fire")], schema="semeval")
    scores = collab.evaluate("semeval:test", "pred.jsonl")
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import datasets
from .cache import content_key
from .config import Config
from .data import Mention, Pair, Prediction, read_predictions
from .metrics import score
from .schema import Schema, load_schema

PairLike = Pair | dict | tuple[str, str, str]


def make_pair(text: str, head: str, tail: str, id: str = "pair-0") -> Pair:
    """A pair from mention strings: each is located at its first occurrence in the text."""
    spans = []
    for side, mention in (("head", head), ("tail", tail)):
        start = text.find(mention)
        if start < 0:
            raise ValueError(f"{side} mention {mention!r} does not occur in the text {text[:60]!r}")
        spans.append(Mention(mention, start, start + len(mention)))
    return Pair(id=id, text=text, head=spans[0], tail=spans[1])


def as_pairs(items: Iterable[PairLike]) -> list[Pair]:
    pairs = []
    for i, item in enumerate(items):
        if isinstance(item, Pair):
            pairs.append(item)
        elif isinstance(item, dict):
            pairs.append(Pair(id=item.get("id", f"pair-{i}"), text=item["text"],
                              head=Mention(**item["head"]), tail=Mention(**item["tail"]),
                              relation=item.get("relation")))
        else:
            text, head, tail = item
            pairs.append(make_pair(text, head, tail, id=f"pair-{i}"))
    return pairs


@lru_cache(maxsize=2)
def _scorer(model: str, prompt: str, schema_id: str, four_bit: bool | None, cache_dir: Path | None,
            guide: str | None, guide_url: str | None = None, guide_served_model: str | None = None,
            api_key_env: str = "OPENAI_API_KEY"):
    # Model loads dominate start-up, so one process keeps the last two scorers it built.
    from guides.models import load_model

    from .cache import cache_root

    if guide and guide_url:
        from guides.guide import served_guide

        return served_guide(guide, guide_url, Config(model=model, cache_dir=cache_dir,
                                                     guide_served_model=guide_served_model,
                                                     llm_api_key_env=api_key_env),
                            expect_schema=schema_id)
    if guide_url:
        raise ValueError("--guide-url serves a tuned guide: name one with --guide")
    if guide:
        from guides.guide import load_guide

        return load_guide(guide, Config(model=model, four_bit=four_bit, cache_dir=cache_dir), expect_schema=schema_id)
    from guides.guide import make_scorer

    llm, tokenizer = load_model(model, cache_root(cache_dir), four_bit=four_bit)
    schema = load_schema(schema_id)
    return make_scorer(llm, tokenizer, schema.label_names, prompt, schema, Config(model=model, cache_dir=cache_dir))


def guide_for(config: Config, schema: Schema) -> str | None:
    """The guide folder `config.guide` selects for this schema, or None for untuned zero-shot scoring."""
    if config.guide == "none":
        return None
    if config.guide == "auto":
        from guides.guide import shipped_guide

        found = shipped_guide(schema, config.model)
        return str(found) if found else None
    from guides.guide import guide_path

    return str(guide_path(config.guide))


def scorer_identity(config: Config, schema: Schema) -> str:
    """What decides the predictions: the guide's files, or the untuned model, prompt and schema."""
    guide = guide_for(config, schema)
    if guide:
        from guides.guide import guide_identity

        return guide_identity(guide)
    return content_key(config.model, config.prompt, schema.fingerprint)


def scorer_for(config: Config, schema: Schema):
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    if config.guide_url:
        from .privacy import check_endpoint

        check_endpoint(config.guide_url, config.privacy, "guide endpoint")
    return _scorer(config.model, config.prompt, str(schema.path), config.four_bit, config.cache_dir,
                   guide_for(config, schema), config.guide_url, config.guide_served_model, config.llm_api_key_env)


def extract(items: Iterable[PairLike], *, config: Config | None = None, **overrides: Any) -> list[Prediction]:
    """Predict a relation, with its confidence and label distribution, for each pair."""
    config = (config or Config()).replace(**overrides) if overrides else (config or Config())
    schema = load_schema(config.schema)
    return scorer_for(config, schema).predict(as_pairs(items), config.batch_size)


def evaluate(gold: str | Path | Sequence[Pair], pred: str | Path | Sequence[Prediction | dict], *,
             schema: str | None = None, config: Config | None = None) -> dict:
    """Positive-class micro-F1 and friends, as the `eval` command prints them."""
    config = config or Config()
    schema_obj = None
    if isinstance(gold, (str, Path)):
        source = datasets.resolve(gold, config.shared)
        schema_obj = load_schema(schema or source.schema) if (schema or source.schema) else None
        gold = list(source.read(schema=schema_obj, require_label=True))
    elif schema:
        schema_obj = load_schema(schema)
    if isinstance(pred, (str, Path)):
        pred = list(read_predictions(pred))
    pred_map: dict[str, str] = {}
    for p in pred:
        record = p if isinstance(p, dict) else p.to_json()
        if record["id"] in pred_map:
            raise ValueError(f"prediction id {record['id']!r} occurs twice")
        pred_map[record["id"]] = record["relation"]
    gold_map = {p.id: list(p.gold_labels) for p in gold}
    missing_pred = [i for i in gold_map if i not in pred_map]
    missing_gold = [i for i in pred_map if i not in gold_map]
    if missing_pred or missing_gold:
        parts = []
        if missing_pred:
            parts.append(f"{len(missing_pred)} gold ids have no prediction (e.g. {', '.join(missing_pred[:5])})")
        if missing_gold:
            parts.append(f"{len(missing_gold)} predicted ids are not in the gold file "
                         f"(e.g. {', '.join(missing_gold[:5])})")
        raise ValueError("; ".join(parts))
    head_labels = None
    if schema_obj is not None and schema_obj.train_data:
        head_labels = datasets.head_tail(schema_obj, coverage=config.tail_coverage, shared=config.shared,
                                         cache_dir=config.cache_dir)["head"]
    return score(gold_map, pred_map, head_labels=head_labels,
                 label_set=schema_obj.label_names if schema_obj else None)
