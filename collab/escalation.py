"""Predict: the small model answers every pair, the large model is asked where it helps, the answers merge.

For each chunk of pairs: the guide's predictions; `Routing` picks the pairs to escalate; for those, the
retriever gives candidate labels (the guide's distribution among its sources) and balanced demonstrations,
the guide answers the demonstrations too (SLCoLM shows the small model's answer next to the gold one), and
`build_prompt` renders the guidance prompt within the token budget. The large model's replies come back
concurrently (at most `concurrency` in flight) and `merge_pair` decides each pair.

`DevProfile` is what routing and merging learn from the dev split, once per guide: each dev pair's
confidence and whether the guide was right (so any target escalation rate or precision becomes a
threshold without rerunning the guide), per-label dev F1 (mode 3's weak list) and the labels the guide
predicts (mode 4). It is saved beside the guide as `escalation.json`.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .cache import cache_subdir, content_key
from .data import Pair, Prediction
from .files import atomic_write_text
from .llm import LLM, REQUEST_FAILED, LLMReply, LLMRequest, Price
from .retrieval import CANDIDATE_MASS, CANDIDATES
from .merge import MergeSettings, Routing, merge_pair, threshold_for_precision, threshold_for_rate
from .metrics import score
from .prompt_builder import BudgetError, Shot, TokenCounter, build_prompt, estimate_tokens
from .prompts import load_template
from .schema import Schema

PROFILE_FILE = "escalation.json"
PROFILE_FORMAT = "collab-escalation-profile/1"


# ------------------------------------------------------------------------------------------------ budget
@dataclass
class Budget:
    """Stops escalation exactly at `max_calls` requests or `max_cost` dollars: each request reserves its
    worst case (prompt tokens as estimated, which overcounts, plus max_tokens out) before it is sent, and
    settles to what the endpoint reports after."""

    max_calls: int | None = None
    max_cost: float | None = None
    price: Price = field(default_factory=Price)
    max_tokens: int = 128
    count_tokens: TokenCounter = estimate_tokens
    calls: int = 0
    spent: float = 0.0
    refused: int = 0

    def reserve(self, messages: list[dict[str, str]]) -> float | None:
        estimate = self.price.cost(self.count_tokens(messages), self.max_tokens)
        if (self.max_calls is not None and self.calls >= self.max_calls) or \
                (self.max_cost is not None and self.spent + estimate > self.max_cost):
            self.refused += 1
            return None
        self.calls += 1
        self.spent += estimate
        return estimate

    def settle(self, reserved: float, cost: float) -> None:
        self.spent += cost - reserved


def load_prices(path: str | Path | None) -> dict[str, Price]:
    """Model id -> Price from a YAML/JSON table {model: {input: $/Mtok, output: $/Mtok}}; none: no prices."""
    import yaml

    if path is None:
        return {}
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return {str(model): Price(float(p.get("input", 0)), float(p.get("output", 0))) for model, p in raw.items()}
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the price table {{model: {{input, output}}}}: {e}"
                         .replace("\n", " ")) from None


# ------------------------------------------------------------------------------------------------ dev profile
@dataclass(frozen=True)
class DevProfile:
    dev: str
    points: tuple[tuple[float, bool], ...]  # (confidence, correct) per dev pair
    per_label_f1: dict[str, float]
    predicted: tuple[str, ...]

    def threshold(self, *, rate: float | None = None, precision: float | None = None) -> float:
        confidences = [c for c, _ in self.points]
        if precision is not None:
            return threshold_for_precision(confidences, [ok for _, ok in self.points], precision)
        return threshold_for_rate(confidences, rate if rate is not None else 0.0)

    def to_json(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "dev": self.dev, "n": len(self.points),
                "per_label_f1": self.per_label_f1, "predicted": list(self.predicted),
                "points": [[round(c, 5), int(ok)] for c, ok in self.points]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DevProfile:
        return cls(raw["dev"], tuple((float(c), bool(ok)) for c, ok in raw["points"]), raw["per_label_f1"],
                   tuple(raw["predicted"]))


def build_profile(dev: str, pairs: Sequence[Pair], predictions: Sequence[Prediction], schema: Schema) -> DevProfile:
    gold = {p.id: list(p.gold_labels) for p in pairs}
    result = score(gold, {p.id: p.relation for p in predictions}, label_set=schema.label_names)
    points = tuple((float(pred.confidence), pred.relation in gold[pred.id]) for pred in predictions)
    predicted = tuple(sorted({p.relation for p in predictions} - {schema.negative}))
    return DevProfile(dev, points, {label: row["f1"] for label, row in result["per_label"].items()}, predicted)


def profile_path(guide: str | Path, cache_dir: str | Path | None, guide_id: str) -> Path:
    """Beside the guide when that folder is writable (shipped guides carry theirs), else in the cache."""
    folder = Path(guide)
    if (folder / PROFILE_FILE).is_file() or _writable(folder):
        return folder / PROFILE_FILE
    return cache_subdir("escalation", cache_dir) / f"{guide_id[:24]}.json"


def _writable(folder: Path) -> bool:
    try:
        probe = folder / ".collab-write-probe"
        probe.write_text("")
        probe.unlink()
        return True
    except OSError:
        return False


def load_or_build_profile(path: Path, guide_id: str, dev: str, build: Callable[[], DevProfile]) -> DevProfile:
    """The saved profile when it was made for this guide's content, else a new one (saved)."""
    if path.is_file():
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") == PROFILE_FORMAT and raw.get("guide") == guide_id and raw.get("dev") == dev:
            return DevProfile.from_json(raw)
    profile = build()
    atomic_write_text(path, json.dumps({**profile.to_json(), "guide": guide_id}, indent=None) + "\n")
    return profile


# ------------------------------------------------------------------------------------------------ escalation
@dataclass
class EscalationStats:
    pairs: int = 0
    escalated: int = 0
    llm_valid: int = 0
    llm_invalid: int = 0
    llm_failed: int = 0
    budget_skipped: int = 0
    requests: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    routes: dict[str, int] = field(default_factory=lambda: {"slm": 0, "llm": 0, "merged": 0})

    def add(self, prediction: Prediction, escalated: bool, reply: LLMReply | None) -> None:
        self.pairs += 1
        self.escalated += escalated
        self.routes[prediction.route] = self.routes.get(prediction.route, 0) + 1
        if reply is None:
            return
        flag = None if reply.valid else reply_flag(reply)
        if flag == "llm_budget":
            self.budget_skipped += 1
        elif flag == "llm_error":
            self.llm_failed += 1
        elif flag == "llm_invalid":
            self.llm_invalid += 1
        else:
            self.llm_valid += 1
        self.requests += reply.requests
        self.calls += reply.calls
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.cost += reply.cost


def reply_flag(reply: LLMReply) -> str:
    """Why an escalated pair kept the guide's answer: over budget, the request failed (timeout, server
    error: worth asking again), or the replies stayed invalid."""
    if reply.error == "budget":
        return "llm_budget"
    return "llm_error" if (reply.error or "").startswith(REQUEST_FAILED) else "llm_invalid"


def _slm_record(pred: Prediction | None) -> dict[str, Any] | None:
    if pred is None:
        return None
    return {"relation": pred.relation, "confidence": pred.confidence, "margin": pred.margin,
            "distribution": pred.distribution}


class Escalator:
    """Routes, prompts, asks and merges, chunk by chunk. `llm` None is a dry run: prompts are built and
    counted, nothing is sent, and every pair keeps the small model's answer."""

    def __init__(self, schema: Schema, llm: LLM | None, retriever: Any, routing: Routing, merge: MergeSettings, *,
                 template: str = "llm/guide.v1", k: int = CANDIDATES, mass: float = CANDIDATE_MASS, demos: int = 4,
                 budget_tokens: int | None = None, count_tokens: TokenCounter | None = None,
                 demo_answers: Callable[[list[Pair]], list[Prediction]] | None = None, concurrency: int = 4):
        self.schema, self.llm, self.retriever = schema, llm, retriever
        self.routing, self.merge = routing, merge
        self.template = load_template(template)
        self.template_id = f"{self.template.template}@{self.template.sha[:12]}"
        self.k, self.mass, self.demos = k, mass, demos
        self.budget_tokens, self.count_tokens = budget_tokens, count_tokens
        self.demo_answers = demo_answers
        self.concurrency = concurrency
        self._demo_cache: dict[str, dict[str, float]] = {}
        self.stats = EscalationStats()
        self.prompt_tokens_built = 0  # as counted for the budget: what a dry run reports
        # one loop for the whole run: the async HTTP client's connections belong to the loop that opened them
        self._loop = asyncio.new_event_loop()

    def close(self) -> None:
        if self.llm is not None and hasattr(self.llm, "close"):
            self._loop.run_until_complete(self.llm.close())
        self._loop.close()

    def check(self) -> None:
        """The endpoint's own check (reachable, serves the model), where the backend has one."""
        if self.llm is not None and hasattr(self.llm, "check"):
            self._loop.run_until_complete(self.llm.check())

    def _shots(self, demos: Sequence[Any]) -> list[Shot]:
        if self.demo_answers is not None:
            missing = list({d.pair.id: d.pair for d in demos if d.pair.id not in self._demo_cache}.values())
            for pair, pred in zip(missing, self.demo_answers(missing) if missing else []):
                self._demo_cache[pair.id] = pred.distribution or {pred.relation: pred.confidence}
        return [Shot(d.pair, self._demo_cache.get(d.pair.id)) for d in demos]

    def requests(self, pairs: Sequence[Pair], slm: Sequence[Prediction | None]) -> list[tuple[LLMRequest | None, Any]]:
        """The large-model request for each pair, with its built prompt (for counting and auditing); (None,
        None) for a pair whose prompt cannot fit the token budget."""
        guides = [(p.distribution or {p.relation: p.confidence}) if p else None for p in slm]
        vectors = self.retriever.encode(pairs)
        candidates = self.retriever.candidates(pairs, k=self.k, mass=self.mass, guides=guides, vectors=vectors)
        demos = self.retriever.demonstrations(pairs, candidates, k=self.demos, vectors=vectors)
        shots = self._shots([d for row in demos for d in row[:self.demos]])
        by_id = {s.pair.id: s for s in shots}
        built = []
        for pair, guide, cands, row in zip(pairs, guides, candidates, demos):
            try:
                prompt = build_prompt(pair, template=self.template, schema=self.schema, candidates=cands,
                                      demonstrations=[by_id[d.pair.id] for d in row[:self.demos]], slm=guide,
                                      budget=self.budget_tokens, count_tokens=self.count_tokens)
            except BudgetError:
                built.append((None, None))  # too long for the budget even bare: the guide's answer stands
                continue
            request = LLMRequest(pair, prompt.prompt.messages, prompt.kept["labels"], self.schema.negative,
                                 self.template_id)
            built.append((request, prompt))
        return built

    async def _ask(self, requests: list[LLMRequest]) -> list[LLMReply]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(request: LLMRequest) -> LLMReply:
            async with gate:
                return await self.llm.answer(request)

        return await asyncio.gather(*(one(r) for r in requests))

    def run(self, pairs: Sequence[Pair], slm: Sequence[Prediction | None]) -> list[Prediction]:
        """One merged prediction per pair, in order."""
        reasons = [self.routing.reasons(p.relation, p.confidence, p.margin, p.flags) if p else
                   self.routing.reasons(None, 0.0, 0.0) for p in slm]
        up = [i for i, r in enumerate(reasons) if r]
        replies: dict[int, LLMReply] = {}
        prompts: dict[int, Any] = {}
        too_long: set[int] = set()
        if up:
            built = [(i, request, prompt) for i, (request, prompt) in
                     zip(up, self.requests([pairs[i] for i in up], [slm[i] for i in up]))]
            too_long = {i for i, request, _ in built if request is None}
            built = [row for row in built if row[1] is not None]
            for i, _, prompt in built:
                prompts[i] = prompt
                self.prompt_tokens_built += prompt.tokens
            if self.llm is not None and built:
                answers = self._loop.run_until_complete(self._ask([request for _, request, _ in built]))
                replies = dict(zip((i for i, _, _ in built), answers))
        out = []
        for i, (pair, pred) in enumerate(zip(pairs, slm)):
            reply = replies.get(i)
            slm_record = _slm_record(pred)
            llm_record = None
            if reply is not None:
                llm_record = {**reply.to_json(), "candidates": prompts[i].kept["labels"]}
            merged = merge_pair(slm_record, llm_record, self.merge, self.schema.negative)
            flags = list(dict.fromkeys([*(pred.flags if pred else []), *reasons[i]]))
            if reply is not None and not reply.valid:
                flags.append(reply_flag(reply))
            if i in too_long:
                flags.append("llm_prompt_too_long")
            if merged.get("also"):
                flags.append(f"also:{merged['also']}")
            prediction = Prediction(
                id=pair.id, relation=merged["relation"], confidence=merged["confidence"],
                margin=pred.margin if pred and merged["relation"] == pred.relation else 0.0,
                distribution=pred.distribution if pred else {}, route=merged["route"], slm=slm_record,
                llm=llm_record, flags=flags)
            self.stats.add(prediction, bool(reasons[i]), reply)
            out.append(prediction)
        return out


def escalation_key(config_values: dict[str, Any]) -> str:
    """What decides escalated answers, for the resume key of a predict run."""
    return content_key(json.dumps(config_values, sort_keys=True, default=str))
