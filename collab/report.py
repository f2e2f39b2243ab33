"""Evaluation report for a `collab.metrics.score` result: two PNG charts and a Markdown summary."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from collab.files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ANNOTATE_UP_TO = 25  # beyond this many labels the cell counts are unreadable
LONGEST_TICK = 40  # off-schema predictions can be whole sentences
MAX_FIGURE_INCHES = 40  # REBEL has 219 labels; keep the image a sane size anyway


def _display(label: str) -> str:
    if not label:
        return "(empty)"
    return label if len(label) <= LONGEST_TICK else label[: LONGEST_TICK - 1] + "…"


def _tick_fontsize(count: int) -> int:
    return 8 if count <= 60 else 5


def save_png(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def _confusion_figure(confusion: dict[str, dict[str, int]]) -> Figure:
    # Figure without pyplot: no global backend switch and no figure registry to leak into.
    from matplotlib.figure import Figure

    # Gold labels by frequency, then labels only ever predicted: same order on both axes,
    # so correct answers sit on the diagonal.
    row_totals = {gold: sum(row.values()) for gold, row in confusion.items()}
    labels = sorted(row_totals, key=lambda label: (-row_totals[label], label))
    labels += sorted({pred for row in confusion.values() for pred in row} - set(row_totals))
    matrix = [[confusion.get(gold, {}).get(pred, 0) for pred in labels] for gold in labels]

    size = min(4 + 0.3 * len(labels), MAX_FIGURE_INCHES)
    figure = Figure(figsize=(size + 1, size))
    axes = figure.subplots()
    axes.set_title("Confusion matrix")
    if not labels:
        axes.text(0.5, 0.5, "no examples", ha="center", va="center")
        return figure
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = [_display(label) for label in labels]
    fontsize = _tick_fontsize(len(labels))
    axes.set_xticks(range(len(labels)), ticks, rotation=90, fontsize=fontsize)
    axes.set_yticks(range(len(labels)), ticks, fontsize=fontsize)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    if len(labels) <= ANNOTATE_UP_TO:
        darkest = max(max(row) for row in matrix)
        for row_index, row in enumerate(matrix):
            for column_index, count in enumerate(row):
                if count:
                    colour = "white" if count > darkest / 2 else "black"
                    axes.text(column_index, row_index, str(count), ha="center", va="center",
                              color=colour, fontsize=8)
    return figure


def _per_label_figure(per_label: dict[str, dict]) -> Figure:
    from matplotlib.figure import Figure

    # barh draws the first bar at the bottom, so ascending F1 puts the best label on top.
    rows = sorted(per_label.items(), key=lambda item: (item[1]["f1"], item[0]))
    figure = Figure(figsize=(8, min(2 + 0.3 * len(rows), MAX_FIGURE_INCHES)))
    axes = figure.subplots()
    axes.set_title("Per-label F1")
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1")
    if not rows:
        axes.text(0.5, 0.5, "no positive labels", ha="center", va="center")
        return figure
    bars = axes.barh(range(len(rows)), [scores["f1"] for _, scores in rows], color="tab:blue")
    # Print the value too: a zero-F1 bar is invisible.
    axes.bar_label(bars, fmt="%.2f", padding=2, fontsize=_tick_fontsize(len(rows)))
    axes.set_yticks(
        range(len(rows)),
        [f"{_display(label)} (n={scores['support']})" for label, scores in rows],
        fontsize=_tick_fontsize(len(rows)),
    )
    return figure


def _cell(label: str) -> str:
    return _display(label).replace("|", "\\|")


def _summary_markdown(result: dict, title: str) -> str:
    overall = [
        ("examples", str(result["n"])),
        ("micro precision", f"{result['micro_p']:.4f}"),
        ("micro recall", f"{result['micro_r']:.4f}"),
        ("micro F1", f"{result['micro_f1']:.4f}"),
        ("macro F1", f"{result['macro_f1']:.4f}"),
    ]
    optional = [
        ("head micro F1", "head_micro_f1"),
        ("tail micro F1", "tail_micro_f1"),
        ("head macro F1", "head_macro_f1"),
        ("tail macro F1", "tail_macro_f1"),
        ("schema-valid rate", "schema_valid_rate"),
        ("malformed rate", "malformed_rate"),
    ]
    overall += [(name, f"{result[key]:.4f}") for name, key in optional if result.get(key) is not None]
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in overall]
    lines += ["", "## Per label", "", "| label | P | R | F1 | TP | FP | FN | support |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {_cell(label)} | {s['p']:.4f} | {s['r']:.4f} | {s['f1']:.4f} | {s['tp']} | {s['fp']}"
        f" | {s['fn']} | {s['support']} |"
        for label, s in result["per_label"].items()
    ]
    lines += ["", "## Confusion matrix", "", "Rows are gold labels, columns predicted labels.", "",
              "![Confusion matrix](confusion.png)", "", "## Per-label F1", "",
              "![Per-label F1](per_label_f1.png)", ""]
    return "\n".join(lines)


def write_report(result: dict, out_dir: Path, *, title: str = "Relation extraction evaluation") -> Path:
    """Write confusion.png, per_label_f1.png and summary.md into out_dir; return the summary's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_png(_confusion_figure(result["confusion"]), out_dir / "confusion.png")
    save_png(_per_label_figure(result["per_label"]), out_dir / "per_label_f1.png")
    return atomic_write_text(out_dir / "summary.md", _summary_markdown(result, title))
