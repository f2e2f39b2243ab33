"""Positive-class micro-F1 for relation classification, as scored by Christou & Tsoumakas.

Negative labels ("no relation") never earn credit: a correct negative counts nothing,
so a model cannot score well by predicting "none" everywhere.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

NEGATIVE_LABELS = frozenset({"none", "other", "no_relation", "na", "nan", "null", ""})
MALFORMED_LENGTH = 60  # the paper's cut-off: no label is longer, so longer output is prose


def _tidy(label: str | None) -> str:
    """The normalised label with its case kept, so reports can show a readable spelling."""
    if label is None:
        return ""
    first_line = label.strip().split("\n", 1)[0]
    text = " ".join(first_line.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text


def normalise_label(label: str | None) -> str:
    """First line, lowercased, whitespace collapsed, one pair of surrounding quotes removed."""
    return _tidy(label).lower()


def is_negative(label: str | None) -> bool:
    return normalise_label(label) in NEGATIVE_LABELS


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _share(labels: Collection[str], predicate: Callable[[str], bool]) -> float:
    return _ratio(sum(predicate(label) for label in labels), len(labels))


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def precision_recall_f1(self) -> tuple[float, float, float]:
        precision = _ratio(self.tp, self.tp + self.fp)
        recall = _ratio(self.tp, self.tp + self.fn)
        return precision, recall, _ratio(2 * precision * recall, precision + recall)


def _summed(counts: Iterable[Counts]) -> Counts:
    total = Counts()
    for c in counts:
        total.tp, total.fp, total.fn = total.tp + c.tp, total.fp + c.fp, total.fn + c.fn
    return total


def _check_same_ids(gold: Mapping[str, object], pred: Mapping[str, object]) -> None:
    missing = sorted(set(gold) - set(pred))
    extra = sorted(set(pred) - set(gold))
    if missing or extra:
        raise ValueError(
            f"gold and predictions cover different examples: {len(missing)} without a prediction"
            f" {missing[:5]}, {len(extra)} predicted but not in gold {extra[:5]}"
        )


def score(
    gold: Mapping[str, Sequence[str]],
    pred: Mapping[str, str],
    *,
    head_labels: Collection[str] | None = None,
    label_set: Collection[str] | None = None,
) -> dict:
    """Score predicted labels against gold label lists (the first gold label is the primary one).

    A positive prediction equal to any gold label is a hit (TP), so multi-label data (DialogRE)
    credits any acceptable answer. A miss costs the primary gold label an FN and the predicted
    label an FP, negatives excepted; out-of-schema predictions are FPs, never mapped to a label.
    Support counts each example under the gold label it was scored against (the one hit, else
    the primary), so support == tp + fn. An out-of-schema prediction is not a head label, so
    its FP counts on the tail side of the head/tail split.
    """
    _check_same_ids(gold, pred)
    spelling: dict[str, str] = {}  # normalised label -> first spelling seen, gold before pred
    gold_labels: dict[str, list[str]] = {}
    for example_id, labels in gold.items():
        labels = [labels] if isinstance(labels, str) else list(labels)  # a bare string is one label
        if not labels:
            raise ValueError(f"example {example_id!r} has no gold label")
        for label in labels:
            spelling.setdefault(normalise_label(label), _tidy(label))
        gold_labels[example_id] = [normalise_label(label) for label in labels]
    pred_labels = {example_id: normalise_label(pred[example_id]) for example_id in gold}
    for example_id, label in pred_labels.items():
        spelling.setdefault(label, _tidy(pred[example_id]))

    counts: defaultdict[str, Counts] = defaultdict(Counts)
    support: Counter[str] = Counter()
    confusion: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for example_id, golds in gold_labels.items():
        guess = pred_labels[example_id]
        hit = guess not in NEGATIVE_LABELS and guess in golds
        target = guess if hit else golds[0]  # a secondary-label hit belongs on the diagonal
        confusion[target][guess] += 1
        if target not in NEGATIVE_LABELS:
            support[target] += 1
        if hit:
            counts[guess].tp += 1
            continue
        if target not in NEGATIVE_LABELS:
            counts[target].fn += 1
        if guess not in NEGATIVE_LABELS:
            counts[guess].fp += 1

    def micro_f1(labels: Iterable[str]) -> float:
        return _summed(counts[label] for label in labels).precision_recall_f1()[2]

    def macro_f1(labels: Iterable[str]) -> float:
        f1s = [counts[label].precision_recall_f1()[2] for label in labels if support[label]]
        return _ratio(sum(f1s), len(f1s))

    def label_scores(label: str) -> dict:
        c = counts[label]
        precision, recall, f1 = c.precision_recall_f1()
        return {"p": precision, "r": recall, "f1": f1, "tp": c.tp, "fp": c.fp, "fn": c.fn,
                "support": support[label]}

    total = _summed(counts.values())
    precision, recall, f1 = total.precision_recall_f1()
    result: dict = {
        "n": len(gold_labels),
        "tp": total.tp,
        "fp": total.fp,
        "fn": total.fn,
        "micro_p": precision,
        "micro_r": recall,
        "micro_f1": f1,
        "macro_f1": macro_f1(counts),
        "per_label": {
            spelling[label]: label_scores(label)
            for label in sorted(counts, key=lambda label: (-support[label], label))
        },
        "confusion": {
            spelling[gold_label]: {spelling[pred_label]: n for pred_label, n in row.items()}
            for gold_label, row in confusion.items()
        },
        "head_micro_f1": None,
        "tail_micro_f1": None,
        "head_macro_f1": None,
        "tail_macro_f1": None,
        "schema_valid_rate": None,
        "malformed_rate": _share(
            pred_labels.values(), lambda label: label == "" or len(label) > MALFORMED_LENGTH
        ),
    }
    if head_labels is not None:
        head = {normalise_label(label) for label in head_labels}
        head_side = [label for label in counts if label in head]
        tail_side = [label for label in counts if label not in head]
        result |= {
            "head_micro_f1": micro_f1(head_side),
            "tail_micro_f1": micro_f1(tail_side),
            "head_macro_f1": macro_f1(head_side),
            "tail_macro_f1": macro_f1(tail_side),
        }
    if label_set is not None:
        schema = {normalise_label(label) for label in label_set}
        result["schema_valid_rate"] = _share(pred_labels.values(), lambda label: label in schema)
    return result
