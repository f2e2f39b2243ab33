from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collab.metrics import is_negative, normalise_label, score

CE12 = "Cause-Effect(e1,e2)"
CE21 = "Cause-Effect(e2,e1)"
MC12 = "Member-Collection(e1,e2)"
SCHEMA = [CE12, CE21, MC12, "Other"]


def single(labels: dict[str, str]) -> dict[str, list[str]]:
    return {example_id: [label] for example_id, label in labels.items()}


def test_normalise_label() -> None:
    assert normalise_label(None) == ""
    assert normalise_label("  'Founded   By'  ") == "founded by"
    assert normalise_label('"Cause-Effect(E1,E2)"\nBecause the text says so.') == "cause-effect(e1,e2)"
    assert normalise_label("\n\nper:title\nmore") == "per:title"
    assert normalise_label('""x""') == '"x"'  # only one pair of quotes comes off
    assert normalise_label("'half") == "'half"


def test_is_negative() -> None:
    assert is_negative(" No_Relation ")
    assert is_negative("'Other'")
    assert is_negative(None)
    assert is_negative("NaN")
    assert not is_negative(CE12)


def test_all_correct() -> None:
    result = score(single({"a": CE12, "b": MC12, "c": "Other"}),
                   {"a": CE12, "b": MC12, "c": "Other"}, label_set=SCHEMA)
    assert (result["tp"], result["fp"], result["fn"]) == (2, 0, 0)
    assert result["micro_p"] == result["micro_r"] == result["micro_f1"] == 1.0
    assert result["macro_f1"] == 1.0
    assert result["schema_valid_rate"] == 1.0
    assert result["n"] == 3


def test_direction_error_counts_fn_and_fp() -> None:
    # a: CE12 right (TP CE12); b: CE12 read as CE21 (FN CE12 + FP CE21).
    # tp=1 fp=1 fn=1 -> P = 1/2, R = 1/2, F1 = 1/2.
    result = score(single({"a": CE12, "b": CE12}), {"a": CE12, "b": CE21})
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 1)
    assert result["micro_f1"] == pytest.approx(0.5)
    assert result["per_label"][CE12] == {
        "p": 1.0, "r": 0.5, "f1": pytest.approx(2 / 3), "tp": 1, "fp": 0, "fn": 1, "support": 2,
    }
    assert result["per_label"][CE21] == {
        "p": 0.0, "r": 0.0, "f1": 0.0, "tp": 0, "fp": 1, "fn": 0, "support": 0,
    }
    assert result["confusion"] == {CE12: {CE12: 1, CE21: 1}}


def test_negative_predicted_for_positive_is_fn_only() -> None:
    # a: TP CE12; b: no_relation for CE12 -> FN only. tp=1 fp=0 fn=1 -> P=1, R=1/2, F1=2/3.
    result = score(single({"a": CE12, "b": CE12}), {"a": CE12, "b": "no_relation"})
    assert (result["tp"], result["fp"], result["fn"]) == (1, 0, 1)
    assert result["micro_p"] == 1.0
    assert result["micro_r"] == pytest.approx(0.5)
    assert result["micro_f1"] == pytest.approx(2 / 3)
    assert "no_relation" not in result["per_label"]


def test_positive_predicted_for_negative_is_fp_only() -> None:
    # a: TP CE12; b: CE12 for no_relation -> FP only. tp=1 fp=1 fn=0 -> P=1/2, R=1, F1=2/3.
    result = score(single({"a": CE12, "b": "no_relation"}), {"a": CE12, "b": CE12})
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 0)
    assert result["micro_p"] == pytest.approx(0.5)
    assert result["micro_r"] == 1.0
    assert result["micro_f1"] == pytest.approx(2 / 3)
    assert result["confusion"]["no_relation"] == {CE12: 1}


def test_negative_against_negative_counts_nothing() -> None:
    result = score(single({"a": "no_relation", "b": "Other"}), {"a": "no_relation", "b": "none"})
    assert (result["tp"], result["fp"], result["fn"]) == (0, 0, 0)
    assert result["micro_p"] == result["micro_r"] == result["micro_f1"] == 0.0
    assert result["macro_f1"] == 0.0
    assert result["per_label"] == {}
    assert result["confusion"] == {"no_relation": {"no_relation": 1}, "Other": {"none": 1}}


def test_prediction_outside_label_set_is_a_plain_fp() -> None:
    # a: TP CE12; b: "Cause-Effect" (not in the schema) for CE12 -> FN CE12 + FP "Cause-Effect",
    # never mapped to the nearest label. tp=1 fp=1 fn=1 -> F1 = 1/2; 1 of 2 predictions valid.
    result = score(single({"a": CE12, "b": CE12}), {"a": CE12, "b": "Cause-Effect"},
                   label_set=SCHEMA)
    assert result["micro_f1"] == pytest.approx(0.5)
    assert result["per_label"]["Cause-Effect"]["fp"] == 1
    assert result["schema_valid_rate"] == pytest.approx(0.5)
    assert score(single({"a": CE12}), {"a": CE12})["schema_valid_rate"] is None


def test_labels_are_compared_after_normalisation() -> None:
    gold = single({"a": CE12, "b": "Member Of", "c": "no_relation"})
    pred = {
        "a": '  "cause-effect(E1,E2)"\nThe cause is the storm.',
        "b": "member   OF",
        "c": "'No_Relation'",
    }
    result = score(gold, pred, label_set=[CE12, "member of", "no_relation"])
    assert (result["tp"], result["fp"], result["fn"]) == (2, 0, 0)
    assert result["micro_f1"] == 1.0
    assert result["schema_valid_rate"] == 1.0
    assert set(result["per_label"]) == {CE12, "Member Of"}  # gold's spelling is kept
    assert result["confusion"]["no_relation"] == {"no_relation": 1}


def test_predicted_label_unseen_in_gold_keeps_its_own_spelling() -> None:
    result = score(single({"a": CE12}), {"a": "  Works_For \nbecause"})
    assert set(result["per_label"]) == {CE12, "Works_For"}


def test_multi_label_gold_credits_any_gold_label() -> None:
    # a: gold [friends, roommate], pred roommate -> TP roommate (a secondary label is acceptable).
    # b: gold [friends, roommate], pred boss -> FN friends (primary) + FP boss.
    # tp=1 fp=1 fn=1 -> F1 = 1/2. Support follows the label scored: roommate 1, friends 1.
    gold = {"a": ["per:friends", "per:roommate"], "b": ["per:friends", "per:roommate"]}
    result = score(gold, {"a": "per:roommate", "b": "per:boss"})
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 1)
    assert result["micro_f1"] == pytest.approx(0.5)
    per_label = result["per_label"]
    assert (per_label["per:roommate"]["tp"], per_label["per:roommate"]["support"]) == (1, 1)
    assert (per_label["per:friends"]["fn"], per_label["per:friends"]["support"]) == (1, 1)
    assert per_label["per:boss"]["fp"] == 1
    # macro over gold labels with support: roommate F1 1, friends F1 0 -> 1/2.
    assert result["macro_f1"] == pytest.approx(0.5)
    assert result["confusion"] == {
        "per:roommate": {"per:roommate": 1}, "per:friends": {"per:boss": 1},
    }


# Seven examples used for macro-F1 and the head/tail split:
#   1 gold CE12  pred CE12       -> TP CE12
#   2 gold CE12  pred CE21       -> FN CE12, FP CE21
#   3 gold CE12  pred Other      -> FN CE12
#   4 gold Other pred CE12       -> FP CE12
#   5 gold Other pred Other      -> nothing
#   6 gold MC12  pred MC12       -> TP MC12
#   7 gold MC12  pred Friend-Of  -> FN MC12, FP Friend-Of (outside the schema)
# Per label: CE12 tp1 fp1 fn2 | CE21 fp1 | MC12 tp1 fn1 | Friend-Of fp1.
# Micro: tp2 fp3 fn3 -> P = 2/5, R = 2/5, F1 = 2/5.
# CE12: P = 1/2, R = 1/3, F1 = (2 * 1/6) / (5/6) = 2/5.   MC12: P = 1, R = 1/2, F1 = 2/3.
# Macro over the gold labels CE12 and MC12: (2/5 + 2/3) / 2 = 8/15.
# Head = {CE12}: head micro tp1 fp1 fn2 -> F1 2/5, head macro 2/5.
# Tail = CE21, MC12, Friend-Of: tp1 fp2 fn1 -> P 1/3, R 1/2, F1 (2 * 1/6) / (5/6) = 2/5;
# tail macro over gold labels on the tail (MC12 only) = 2/3.
# Schema-valid: 6 of 7 predictions.
SEVEN_GOLD = {"1": CE12, "2": CE12, "3": CE12, "4": "Other", "5": "Other", "6": MC12, "7": MC12}
SEVEN_PRED = {"1": CE12, "2": CE21, "3": "Other", "4": CE12, "5": "Other", "6": MC12,
              "7": "Friend-Of"}


def test_micro_and_macro_f1() -> None:
    result = score(single(SEVEN_GOLD), SEVEN_PRED, label_set=SCHEMA)
    assert (result["tp"], result["fp"], result["fn"]) == (2, 3, 3)
    assert result["micro_p"] == pytest.approx(2 / 5)
    assert result["micro_r"] == pytest.approx(2 / 5)
    assert result["micro_f1"] == pytest.approx(2 / 5)
    assert result["per_label"][CE12]["f1"] == pytest.approx(2 / 5)
    assert result["per_label"][MC12]["f1"] == pytest.approx(2 / 3)
    assert result["macro_f1"] == pytest.approx(8 / 15)
    assert result["schema_valid_rate"] == pytest.approx(6 / 7)
    assert list(result["per_label"]) == [CE12, MC12, CE21, "Friend-Of"]  # by support, then name
    assert result["head_micro_f1"] is None and result["tail_macro_f1"] is None


def test_head_tail_split() -> None:
    result = score(single(SEVEN_GOLD), SEVEN_PRED, head_labels=["cause-effect(e1,e2)"])
    assert result["head_micro_f1"] == pytest.approx(2 / 5)
    assert result["head_macro_f1"] == pytest.approx(2 / 5)
    assert result["tail_micro_f1"] == pytest.approx(2 / 5)
    assert result["tail_macro_f1"] == pytest.approx(2 / 3)


def test_mismatched_ids_are_named() -> None:
    gold = single({f"g{i}": CE12 for i in range(8)})
    pred = {f"g{i}": CE12 for i in range(1, 8)} | {"stray": CE12}
    with pytest.raises(ValueError, match=r"1 without a prediction \['g0'\].*\['stray'\]"):
        score(gold, pred)
    with pytest.raises(ValueError, match=r"7 without a prediction \['g1', 'g2', 'g3', 'g4', 'g5'\]"):
        score(gold, {"g0": CE12})


def test_malformed_rate() -> None:
    result = score(single({"a": CE12, "b": CE12, "c": CE12, "d": CE12}),
                   {"a": CE12, "b": "", "c": "x" * 61, "d": "x" * 60})
    assert result["malformed_rate"] == pytest.approx(2 / 4)


ALPHABET = ["A", "B", "C", "no_relation"]


@settings(deadline=None)  # a busy CI machine must not turn slowness into a failure
@given(st.lists(st.tuples(st.sampled_from(ALPHABET), st.sampled_from(ALPHABET)), max_size=30))
def test_scores_stay_consistent(pairs: list[tuple[str, str]]) -> None:
    gold = {str(i): [g] for i, (g, _) in enumerate(pairs)}
    pred = {str(i): p for i, (_, p) in enumerate(pairs)}
    result = score(gold, pred)
    for key in ("micro_p", "micro_r", "micro_f1", "macro_f1"):
        assert 0.0 <= result[key] <= 1.0
    true_positives = sum(g == p != "no_relation" for g, p in pairs)
    per_label = result["per_label"].values()
    assert sum(scores["tp"] for scores in per_label) == result["tp"] == true_positives
    assert all(scores["tp"] + scores["fn"] == scores["support"] for scores in per_label)
    if any(g != "no_relation" for g, _ in pairs):
        assert (result["micro_f1"] == 1.0) == all(g == p for g, p in pairs)
