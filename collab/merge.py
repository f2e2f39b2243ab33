"""Routing (which pairs go to the large model) and merging (whose answer stands), with no model calls, so
saved answers can be re-merged offline under any mode or threshold (`run_pipeline.py merge`).

Escalation reasons: the small model's confidence is below `threshold`, its margin over the runner-up is
below `margin`, or its answer is `long_tail` / a long-tail label of the schema (`tail`).

Merge modes, after SLCoLM (`../shared/ANCHORS.md`), adapted to one label per pair; each applies only to
escalated pairs with a valid large-model answer, everything else keeps the small model's answer:

* `union` (SLCoLM 1): the union of both answers' triples; for one label per pair, the large model's
  positive answer wins over the small model's negative one, and when both are positive the large model's
  is the label (the small model's is kept as `also`).
* `confident_slm` (2): the large model's answer, except where the small model's positive answer has a
  confidence of at least `h`.
* `weak_list` (3): the small model's answer stands for every label but the `weak` ones (its K lowest
  dev-F1 labels); a weak label is the large model's to give or take.
* `slm_types` (4): for every label the small model predicts anywhere in the run (`slm_types`), its
  answers stand; the large model adds labels the small model never predicts.
* `weighted`: each label scores the small model's probability plus `weight` x the large model's
  confidence on its own answer; the best score wins.
* `llm`: the large model's answer replaces the small model's.

A merged prediction's route: `slm` (not escalated, or the large model gave no valid answer), `llm` (the
large model's answer replaced a different one) or `merged` (the large model was asked and the small
model's answer stands, or both agree).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

MERGE_MODES = ("union", "confident_slm", "weak_list", "slm_types", "weighted", "llm")
LONG_TAIL = "long_tail"


@dataclass(frozen=True)
class Routing:
    threshold: float = 0.0      # escalate below this confidence
    margin: float = 0.0         # escalate below this margin over the runner-up
    tail: frozenset[str] = frozenset()  # escalate answers with these labels
    always: bool = False

    def reasons(self, relation: str | None, confidence: float, margin: float, flags: Sequence[str] = ()) -> list[str]:
        """Why a pair goes to the large model (empty: it does not). `flags` holds `long_tail` when a head-only
        guide's top answer was "something rarer"; its relation is then its best real label."""
        if self.always or relation is None:
            return ["always"]
        found = []
        if confidence < self.threshold:
            found.append(f"confidence<{self.threshold:g}")
        if margin < self.margin:
            found.append(f"margin<{self.margin:g}")
        if relation == LONG_TAIL or LONG_TAIL in flags or relation in self.tail:
            found.append("long_tail")
        return found


@dataclass(frozen=True)
class MergeSettings:
    mode: str = "confident_slm"
    h: float = 0.75
    weak: frozenset[str] = frozenset()
    slm_types: frozenset[str] = frozenset()
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in MERGE_MODES:
            raise ValueError(f"merge mode {self.mode!r}: choose one of {', '.join(MERGE_MODES)}")


def merge_pair(slm: Mapping[str, Any] | None, llm: Mapping[str, Any] | None, settings: MergeSettings,
               negative: str) -> dict[str, Any]:
    """{relation, confidence, route[, also]} from the small model'small answer {relation, confidence,
    distribution} and the large model'small {relation, confidence} (None or relation None: no valid answer)."""
    if not llm or llm.get("relation") is None:
        if slm is None:
            return {"relation": negative, "confidence": 0.0, "route": "slm"}
        return {"relation": slm["relation"], "confidence": slm["confidence"], "route": "slm"}
    if slm is None:
        return {"relation": llm["relation"], "confidence": llm["confidence"], "route": "llm"}
    small, large = slm["relation"], llm["relation"]
    mode = settings.mode
    also = None
    if mode == "llm":
        take_llm = True
    elif mode == "union":
        take_llm = large != negative
        also = small if take_llm and small not in (negative, large) else None
    elif mode == "confident_slm":
        take_llm = not (small != negative and slm["confidence"] >= settings.h)
    elif mode == "weak_list":
        # the guide's triples stand unless weak, the LLM's weak triples are added; one label a pair, the LLM's first
        kept_slm = small if small != negative and small not in settings.weak else None
        kept_llm = large if large != negative and large in settings.weak else None
        if kept_llm is None and kept_slm is None:
            # neither answer survives the rule: the pair is negative, as sure as whichever model said so
            confidence = llm["confidence"] if large == negative else slm["confidence"] if small == negative else 0.0
            return _result(negative, confidence, small)
        take_llm = kept_llm is not None
    elif mode == "slm_types":
        take_llm = small == negative and large not in settings.slm_types
    else:  # weighted
        scores = dict(slm.get("distribution") or {small: slm["confidence"]})
        scores[large] = scores.get(large, 0.0) + settings.weight * llm["confidence"]
        best = max(sorted(scores), key=lambda label: scores[label])
        return _result(best, scores[best] / (1 + settings.weight), small)
    relation, confidence = (large, llm["confidence"]) if take_llm else (small, slm["confidence"])
    result = _result(relation, confidence, small)
    if also:
        result["also"] = also
    return result


def _result(relation: str, confidence: float, slm_relation: str) -> dict[str, Any]:
    route = "llm" if relation != slm_relation else "merged"
    return {"relation": relation, "confidence": float(confidence), "route": route}


def weak_labels(per_label_f1: Mapping[str, float], k: int, negative: str) -> list[str]:
    """The k positive labels with the lowest dev F1 (ties by name, for determinism)."""
    ranked = sorted((f1, label) for label, f1 in per_label_f1.items() if label != negative)
    return [label for _, label in ranked[:k]]


def threshold_for_rate(confidences: Sequence[float], rate: float) -> float:
    """The confidence threshold below which a `rate` share of these (dev) pairs falls."""
    if not 0 <= rate <= 1:
        raise ValueError(f"escalation rate {rate} is not between 0 and 1")
    ranked = sorted(confidences)
    n = round(rate * len(ranked))
    if n == 0:
        return 0.0
    if n >= len(ranked):
        return 1.0 + 1e-9
    # halfway between the last escalated and the first kept confidence, so ties near the cut stay put
    return (ranked[n - 1] + ranked[n]) / 2


def threshold_for_precision(confidences: Sequence[float], correct: Sequence[bool], target: float) -> float:
    """The lowest threshold at which the pairs the small model keeps (confidence >= threshold) are right
    at least `target` of the time on dev: escalate what the small model is not reliable on."""
    ranked = sorted(zip(confidences, correct), reverse=True)
    right = 0
    best = 1.0 + 1e-9
    for i, (confidence, ok) in enumerate(ranked, 1):
        right += ok
        if right / i >= target:
            best = confidence
    return best


def slm_predicted_types(records: Iterable[Mapping[str, Any]], negative: str) -> frozenset[str]:
    return frozenset(r["relation"] for r in records if r.get("relation") not in (None, negative))


def remerge(records: Iterable[Mapping[str, Any]], settings: MergeSettings, negative: str,
            threshold: float | None = None) -> Iterable[dict[str, Any]]:
    """Saved prediction records merged again under `settings`; with `threshold`, only pairs whose small-model
    confidence is below it (or that were escalated as long-tail) keep their large-model answer."""
    for record in records:
        slm, llm = record.get("slm"), record.get("llm")
        if threshold is not None and slm is not None and slm["confidence"] >= threshold \
                and "long_tail" not in record.get("flags", []):
            llm = None
        merged = merge_pair(slm, llm, settings, negative)
        yield {**record, "relation": merged["relation"], "confidence": merged["confidence"],
               "route": merged["route"]}
