"""Routing and the merge modes, on hand-made answers whose right outcome follows from each mode's rule."""
import pytest

from collab.merge import (MergeSettings, Routing, merge_pair, remerge, threshold_for_precision, threshold_for_rate,
                          weak_labels)

NEG = "no_relation"


def slm(relation, confidence, **distribution):
    return {"relation": relation, "confidence": confidence, "distribution": distribution or {relation: confidence}}


def llm(relation, confidence=0.9):
    return {"relation": relation, "confidence": confidence}


def merged(mode, small, large, **settings):
    return merge_pair(small, large, MergeSettings(mode, **settings), NEG)


def test_routing_reasons():
    routing = Routing(threshold=0.6, margin=0.2, tail=frozenset({"rare"}))
    assert routing.reasons("a", 0.9, 0.5) == []
    assert routing.reasons("a", 0.5, 0.5) == ["confidence<0.6"]
    assert routing.reasons("a", 0.9, 0.1) == ["margin<0.2"]
    assert routing.reasons("rare", 0.9, 0.5) == ["long_tail"]
    assert routing.reasons("a", 0.9, 0.5, flags=["long_tail"]) == ["long_tail"]
    assert Routing(always=True).reasons("a", 1.0, 1.0) == ["always"]


def test_without_a_valid_llm_answer_the_guide_stands():
    for mode in ("union", "llm", "weighted"):
        assert merged(mode, slm("a", 0.4), None) == {"relation": "a", "confidence": 0.4, "route": "slm"}
        assert merged(mode, slm("a", 0.4), {"relation": None, "confidence": 0})["route"] == "slm"


def test_union_lets_a_positive_llm_answer_win_and_keeps_the_guides_as_also():
    assert merged("union", slm(NEG, 0.5), llm("a"))["relation"] == "a"
    assert merged("union", slm("a", 0.5), llm(NEG))["relation"] == "a"
    both = merged("union", slm("b", 0.5), llm("a"))
    assert both["relation"] == "a" and both["also"] == "b" and both["route"] == "llm"


def test_confident_slm_keeps_the_guides_positive_answers_above_h():
    assert merged("confident_slm", slm("a", 0.8), llm("b"), h=0.75)["relation"] == "a"
    assert merged("confident_slm", slm("a", 0.7), llm("b"), h=0.75)["relation"] == "b"
    assert merged("confident_slm", slm(NEG, 0.9), llm("b"), h=0.75)["relation"] == "b"


def test_weak_list_gives_the_llm_only_the_weak_labels():
    weak = frozenset({"w"})
    assert merged("weak_list", slm("a", 0.3), llm("b"), weak=weak)["relation"] == "a"   # a is the guide's
    assert merged("weak_list", slm("a", 0.3), llm("w"), weak=weak)["relation"] == "w"   # w is the LLM's
    assert merged("weak_list", slm("w", 0.3), llm(NEG), weak=weak)["relation"] == NEG   # the guide's w dropped
    assert merged("weak_list", slm(NEG, 0.3), llm("b"), weak=weak)["relation"] == NEG   # b is not the LLM's


def test_slm_types_adds_only_labels_the_guide_never_predicts():
    types = frozenset({"a", "b"})
    assert merged("slm_types", slm(NEG, 0.5), llm("c"), slm_types=types)["relation"] == "c"
    assert merged("slm_types", slm(NEG, 0.5), llm("b"), slm_types=types)["relation"] == NEG
    assert merged("slm_types", slm("a", 0.5), llm("c"), slm_types=types)["relation"] == "a"


def test_weighted_adds_the_llms_confidence_to_the_guides_probability():
    guide = slm("a", 0.5, a=0.5, b=0.4, no_relation=0.1)
    assert merged("weighted", guide, llm("b", 0.2))["relation"] == "b"      # 0.4 + 0.2 > 0.5
    assert merged("weighted", guide, llm("b", 0.05))["relation"] == "a"     # 0.45 < 0.5
    result = merged("weighted", guide, llm("b", 0.2), weight=0.5)
    assert result["relation"] == "a" and result["route"] == "merged"


def test_routes_say_whose_answer_stands():
    assert merged("llm", slm("a", 0.3), llm("b"))["route"] == "llm"
    assert merged("llm", slm("a", 0.3), llm("a"))["route"] == "merged"
    assert merge_pair(None, llm("b"), MergeSettings("weak_list"), NEG)["route"] == "llm"


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="merge mode 'best'"):
        MergeSettings("best")


def test_thresholds_from_dev_points():
    confidences = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    t = threshold_for_rate(confidences, 0.3)
    assert sum(c < t for c in confidences) == 3
    assert threshold_for_rate(confidences, 0.0) == 0.0 and sum(c < threshold_for_rate(confidences, 1) for c in confidences) == 10
    correct = [False, False, True, False, True, True, True, True, True, True]
    t = threshold_for_precision(confidences, correct, 0.85)
    kept = [ok for c, ok in zip(confidences, correct) if c >= t]
    assert sum(kept) / len(kept) >= 0.85 and t == 0.3  # from 0.3 up: 7 of 8 right


def test_weak_labels_are_the_lowest_dev_f1_positive_labels():
    assert weak_labels({"a": 0.9, "b": 0.1, "c": 0.5, NEG: 0.0}, 2, NEG) == ["b", "c"]


def test_remerge_reroutes_by_threshold_and_keeps_long_tail_escalations():
    records = [
        {"id": "1", "slm": slm("a", 0.9), "llm": llm("b"), "flags": []},
        {"id": "2", "slm": slm("a", 0.3), "llm": llm("b"), "flags": []},
        {"id": "3", "slm": slm("rare", 0.9), "llm": llm("b"), "flags": ["long_tail"]},
        {"id": "4", "slm": slm("a", 0.2), "llm": None, "flags": []},
    ]
    out = list(remerge(records, MergeSettings("llm"), NEG, threshold=0.5))
    assert [r["relation"] for r in out] == ["a", "b", "b", "a"]
    assert [r["route"] for r in out] == ["slm", "llm", "llm", "slm"]
