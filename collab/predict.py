"""The `predict` command: the guide on every pair, escalation to a large model where configured, a resumable
output. Everything a run needs is set up here from the one Config, in the order that keeps privacy mode
closed: the endpoint is checked and the network guard installed before any model or socket is opened.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from . import api, datasets
from .cache import content_key
from .config import Config
from .data import Pair, Prediction
from .files import PartialJsonl, atomic_write_text
from .merge import MergeSettings, Routing

CHUNK = 64  # pairs per escalation round: enough to keep the LLM's concurrency busy, small enough to save often
# finished pairs a rerun asks again: a larger budget may now allow them, a failed request may now succeed
REDO_FLAGS = ("llm_budget", "llm_error")


@contextlib.contextmanager
def privacy_context(config: Config, out: Path) -> Iterator[Path | None]:
    """Checks and guards for privacy mode local; yields the audit log path (None: no audit log)."""
    from .privacy import NetworkGuard, check_endpoint, check_mode, local_only_environment

    check_mode(config.privacy)
    audit = config.audit_log
    if config.privacy != "local":
        yield audit
        return
    if config.escalate != "never" and config.local_llm is None:
        check_endpoint(config.llm_base_url, config.privacy)
    local_only_environment()
    with NetworkGuard():
        yield audit or out.with_name(out.name + ".audit.jsonl")


@contextlib.contextmanager
def llm_endpoint(config: Config) -> Iterator[Config]:
    """The config with the endpoint to use: a llama.cpp server started for the run with --local-llm."""
    if config.local_llm is None or config.escalate == "never":
        yield config
        return
    from .local_llm import LocalLLMServer, resolve_gguf

    # the guide and the server take turns, so the server may use every core; its context holds the prompt
    # at its budget plus each repair round (a reply and the repair request)
    n_ctx = (config.llm_prompt_budget or 4096) + (config.llm_repairs + 1) * (config.llm_max_tokens + 128)
    with LocalLLMServer(resolve_gguf(config.local_llm), threads=config.cores,
                        n_ctx=n_ctx) as server:
        print(f"serving {config.local_llm} at {server.base_url}", file=sys.stderr)
        # llama.cpp's server answers one request at a time: more in flight only wait in its queue, where
        # their timeout runs out
        yield config.replace(llm_base_url=server.base_url, llm_model=server.model, llm_concurrency=1)


def dev_profile(config: Config, schema, scorer, guide: str):
    """The guide's dev profile (collab.escalation.DevProfile), measured once and saved beside the guide."""
    from guides.guide import guide_identity

    from .escalation import build_profile, load_or_build_profile, profile_path

    dev = datasets.split_spec(schema, "dev")
    guide_id = guide_identity(guide)

    def build():
        print(f"measuring the guide on {dev} for escalation (once per guide)", file=sys.stderr)
        pairs = list(datasets.resolve(dev, config.shared).read(schema=schema, require_label=True))
        return build_profile(dev, pairs, scorer.predict(pairs, config.batch_size), schema)

    return load_or_build_profile(profile_path(guide, config.cache_dir, guide_id), guide_id, dev, build)


def routing_for(config: Config, schema, scorer, guide: str | None) -> tuple[Routing, MergeSettings, dict]:
    """Routing and merge settings from the config and, for auto, the guide's dev profile."""
    if config.escalate == "always" or scorer is None:
        return Routing(always=True), MergeSettings(config.merge, h=config.merge_h), {"threshold": None}
    needs_profile = config.escalate_threshold is None or config.merge in ("weak_list", "slm_types")
    profile = dev_profile(config, schema, scorer, guide) if guide and needs_profile else None
    tail: frozenset[str] = frozenset()
    if schema.train_data:
        tail = frozenset(datasets.head_tail(schema, coverage=config.tail_coverage, shared=config.shared,
                                            cache_dir=config.cache_dir)["tail"])
    if config.escalate_threshold is not None:
        threshold = config.escalate_threshold
    elif profile is not None:
        threshold = profile.threshold(rate=config.escalate_rate, precision=config.escalate_precision)
    else:
        raise ValueError("--escalate auto needs a guide with a dev split to tune on, or --escalate-threshold")
    from .merge import weak_labels

    weak = frozenset(weak_labels(profile.per_label_f1, config.weak_k, schema.negative)) if profile else frozenset()
    predicted = frozenset(profile.predicted) if profile else frozenset()
    routing = Routing(threshold=threshold, margin=config.escalate_margin, tail=tail)
    merge = MergeSettings(config.merge, h=config.merge_h, weak=weak, slm_types=predicted)
    return routing, merge, {"threshold": threshold, "weak": sorted(weak), "tail": sorted(tail)}


def build_llm(config: Config, *, cache: Any, audit: Any, budget: Any):
    from .escalation import load_prices
    from .llm import OpenAIChatLLM, OpenAISettings, Price

    prices = load_prices(config.prices)
    settings = OpenAISettings(
        base_url=config.llm_base_url, model=config.llm_model, api_key=os.environ.get(config.llm_api_key_env),
        temperature=config.llm_temperature, seed=config.seed, max_tokens=config.llm_max_tokens,
        timeout=config.llm_timeout, retries=config.llm_retries, repairs=config.llm_repairs,
        json_mode=config.llm_json, price=prices.get(config.llm_model, Price()),
        trust_env=config.privacy != "local")
    return OpenAIChatLLM(settings, cache=cache, audit=audit, budget=budget)


def _read_pairs(config: Config, spec: str, schema):
    from .data import LoadStats

    source = datasets.resolve(spec, config.shared)
    stats = LoadStats()
    pairs = list(source.read(schema=schema, skip_invalid=config.skip_invalid, stats=stats))
    if stats.skipped:
        print(f"skipped {stats.skipped} invalid lines of {stats.read}; first: {stats.first_errors[0]}",
              file=sys.stderr)
    return source, pairs


def run_predict(config: Config, data: str, out: str | Path, *, dry_run: bool = False) -> dict:
    """Predict every pair of `data` into `out` (JSONL); returns the run summary (also `<out>.summary.json`)."""
    from .data import DataError
    from .schema import load_schema

    out = Path(out)
    schema = load_schema(config.schema)
    source, pairs = _read_pairs(config, data, schema)
    if not pairs:
        raise DataError(source.path, 0, "(file)", "no pairs to read")
    with privacy_context(config, out) as audit_path:
        guide = api.guide_for(config, schema)
        if config.escalate == "never":
            scorer = api.scorer_for(config, schema)
            return _run_guide_only(config, schema, source, pairs, out, scorer)
        # with escalation, --guide none means the LLM alone answers (a schema with no trained guide)
        scorer = api.scorer_for(config, schema) if config.guide != "none" else None
        routing, merge, tuned = routing_for(config, schema, scorer, guide)
        with llm_endpoint(config) as config:
            return _run_escalated(config, schema, source, pairs, out, scorer, routing, merge, tuned, audit_path,
                                  dry_run)


def _run_guide_only(config: Config, schema, source, pairs: list[Pair], out: Path, scorer) -> dict:
    from tqdm import tqdm

    key = content_key(source.sha256(), api.scorer_identity(config, schema))
    partial = PartialJsonl(out, key)
    todo = [p for p in pairs if p.id not in partial.done]
    _say_resume(len(pairs), len(todo))
    start = time.perf_counter()
    for prediction in tqdm(scorer.iter_predict(todo, config.batch_size), total=len(todo), unit="pair",
                           disable=not todo):
        partial.add(prediction.to_json())
    seconds = time.perf_counter() - start
    n = partial.finish(p.id for p in pairs)
    return {"pairs": n, "predicted": len(todo), "seconds": round(seconds, 2), "escalate": "never"}


def _say_resume(total: int, todo: int) -> None:
    if todo < total:
        print(f"resuming: {total - todo} of {total} pairs already predicted", file=sys.stderr)


@dataclass
class EscalationSession:
    """What a run asks the LLM through: the Escalator, its settings (part of every resume key), reply cache and
    budget. `cache_stats` is filled when the session closes."""
    escalator: Any
    decided: dict
    budget: Any
    price: Any
    cache: Any
    cache_stats: dict | None = None


@contextlib.contextmanager
def escalation_session(config: Config, schema, scorer, routing, merge, tuned: dict, audit_path: Path | None, *,
                       dry_run: bool = False) -> Iterator[EscalationSession]:
    """Open the LLM client, reply cache, retriever and Escalator for a run; check the endpoint; close on exit."""
    from . import embed
    from .escalation import Budget, Escalator, load_prices
    from .llm import Price
    from .llm_cache import ReplyCache
    from .privacy import AuditLog
    from .retrieval import Retriever

    price = load_prices(config.prices).get(config.llm_model, Price())
    budget = Budget(config.max_llm_calls, config.max_cost, price, config.llm_max_tokens)
    cache = None if dry_run else ReplyCache.open(config.cache_dir)
    audit = AuditLog(audit_path) if audit_path and not dry_run else None
    llm = None if dry_run else build_llm(config, cache=cache, audit=audit, budget=budget)
    embedder = embed.SentenceEmbedder(None, batch_size=config.batch_size, threads=config.threads,
                                      cache_dir=config.cache_dir)
    retriever = Retriever(schema, embedder, shared=config.shared, cache_dir=config.cache_dir, index=config.index)
    escalator = Escalator(schema, llm, retriever, routing, merge, template=config.llm_template,
                          k=config.llm_candidates, mass=config.llm_candidate_mass, demos=config.llm_demos,
                          budget_tokens=config.llm_prompt_budget,
                          demo_answers=(lambda ps: scorer.predict(ps, config.batch_size)) if scorer else None,
                          concurrency=config.llm_concurrency)
    decided = {"escalate": config.escalate, **tuned, "merge": asdict(merge) | {"weak": sorted(merge.weak),
               "slm_types": sorted(merge.slm_types)}, "model": config.llm_model, "template": escalator.template_id,
               **{k: getattr(config, k) for k in ("escalate_margin", "llm_json", "llm_temperature", "llm_max_tokens",
                                                   "llm_repairs", "llm_candidates", "llm_candidate_mass",
                                                   "llm_demos", "llm_prompt_budget", "seed", "index")}}
    session = EscalationSession(escalator, decided, budget, price, cache)
    try:
        escalator.check()
        yield session
    finally:
        escalator.close()
        if cache is not None:
            session.cache_stats = cache.stats()
            cache.close()


def escalated_predictions(session: EscalationSession, pairs: list[Pair], scorer, batch_size: int
                          ) -> Iterator[Prediction]:
    """The guide's answers, escalated and merged where the routing says so, CHUNK pairs at a time."""
    for begin in range(0, len(pairs), CHUNK):
        chunk = pairs[begin:begin + CHUNK]
        slm = scorer.predict(chunk, batch_size) if scorer else [None] * len(chunk)
        yield from session.escalator.run(chunk, slm)


def _run_escalated(config: Config, schema, source, pairs: list[Pair], out: Path, scorer, routing, merge,
                   tuned: dict, audit_path: Path | None, dry_run: bool) -> dict:
    from tqdm import tqdm

    from .escalation import escalation_key

    scorer_id = api.scorer_identity(config, schema) if scorer else "llm-only"
    with escalation_session(config, schema, scorer, routing, merge, tuned, audit_path, dry_run=dry_run) as session:
        if dry_run:
            return _dry_run(config, pairs, scorer, session.escalator, session.price)
        key = content_key(source.sha256(), scorer_id, escalation_key(session.decided))
        partial = PartialJsonl(out, key)
        todo = [p for p in pairs if p.id not in partial.done or
                any(flag in partial.done[p.id].get("flags", []) for flag in REDO_FLAGS)]
        _say_resume(len(pairs), len(todo))
        start = time.perf_counter()
        with tqdm(total=len(todo), unit="pair", disable=not todo) as bar:
            for prediction in escalated_predictions(session, todo, scorer, config.batch_size):
                partial.add(prediction.to_json())
                bar.update(1)
        seconds = time.perf_counter() - start
        n = partial.finish(p.id for p in pairs)
    budget = session.budget
    summary = {"pairs": n, "predicted": len(todo), "seconds": round(seconds, 2), "settings": session.decided,
               "escalation": asdict(session.escalator.stats), "cache": session.cache_stats,
               "budget": {"max_llm_calls": config.max_llm_calls, "max_cost": config.max_cost,
                          "spent_estimate": round(budget.spent, 6), "refused": budget.refused},
               "audit_log": str(audit_path) if audit_path else None, "privacy": config.privacy}
    atomic_write_text(out.with_name(out.name + ".summary.json"), json.dumps(summary, indent=1) + "\n")
    return summary


def _dry_run(config: Config, pairs: list[Pair], scorer, escalator, price) -> dict:
    """Route and build every prompt, send nothing: how many pairs, tokens and dollars escalation would take."""
    from tqdm import tqdm

    for begin in tqdm(range(0, len(pairs), CHUNK), unit="chunk", disable=len(pairs) <= CHUNK):
        chunk = pairs[begin:begin + CHUNK]
        escalator.run(chunk, scorer.predict(chunk, config.batch_size) if scorer else [None] * len(chunk))
    stats = escalator.stats
    completion = stats.escalated * config.llm_max_tokens
    return {"dry_run": True, "pairs": stats.pairs, "escalated": stats.escalated,
            "escalation_rate": round(stats.escalated / max(stats.pairs, 1), 4),
            "prompt_tokens": escalator.prompt_tokens_built, "completion_tokens_at_most": completion,
            "estimated_cost_at_most": round(price.cost(escalator.prompt_tokens_built, completion), 6),
            "price_per_mtok": asdict(price), "model": config.llm_model,
            "would_stop_at": {"max_llm_calls": config.max_llm_calls, "max_cost": config.max_cost}}
