from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.image
import pytest

from collab.metrics import score
from collab.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_result() -> dict:
    gold = {"1": ["Cause-Effect(e1,e2)"], "2": ["Cause-Effect(e1,e2)"], "3": ["Other"],
            "4": ["Member-Collection(e1,e2)"], "5": ["Member|Of"]}
    pred = {"1": "Cause-Effect(e1,e2)", "2": "Cause-Effect(e2,e1)", "3": "Other",
            "4": "Member-Collection(e1,e2)", "5": ""}
    return score(gold, pred, head_labels=["Cause-Effect(e1,e2)"],
                 label_set=["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Member-Collection(e1,e2)",
                            "Member|Of", "Other"])


def assert_valid_png(path: Path) -> None:
    assert path.read_bytes().startswith(PNG_MAGIC)
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 50 and image.shape[1] > 50


def test_write_report_creates_charts_and_summary(tmp_path: Path) -> None:
    result = small_result()
    out_dir = tmp_path / "report"
    summary = write_report(result, out_dir, title="SemEval smoke test")

    assert summary == out_dir / "summary.md"
    assert sorted(path.name for path in out_dir.iterdir()) == [
        "confusion.png", "per_label_f1.png", "summary.md",
    ]
    assert_valid_png(out_dir / "confusion.png")
    assert_valid_png(out_dir / "per_label_f1.png")

    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# SemEval smoke test\n")
    assert f"| micro F1 | {result['micro_f1']:.4f} |" in text
    assert f"| head micro F1 | {result['head_micro_f1']:.4f} |" in text
    assert f"| schema-valid rate | {result['schema_valid_rate']:.4f} |" in text
    assert "| Member\\|Of |" in text  # a pipe in a label must not break the table
    assert "![Confusion matrix](confusion.png)" in text
    assert "![Per-label F1](per_label_f1.png)" in text


def test_optional_figures_are_left_out_when_absent(tmp_path: Path) -> None:
    result = score({"1": ["A"]}, {"1": "A"})
    text = write_report(result, tmp_path).read_text(encoding="utf-8")
    assert "| micro F1 | 1.0000 |" in text
    assert "head micro F1" not in text
    assert "schema-valid rate" not in text


def test_report_with_no_positive_labels_still_renders(tmp_path: Path) -> None:
    write_report(score({"1": ["none"]}, {"1": "none"}), tmp_path)
    assert_valid_png(tmp_path / "per_label_f1.png")


def test_large_label_set_renders_without_annotations(tmp_path: Path) -> None:
    gold = {str(i): [f"label_{i % 40}"] for i in range(200)}
    pred = {str(i): f"label_{(i * 7) % 41}" for i in range(200)}
    write_report(score(gold, pred), tmp_path)
    assert_valid_png(tmp_path / "confusion.png")


@pytest.mark.skipif("matplotlib.pyplot" in sys.modules, reason="pyplot already imported elsewhere")
def test_report_does_not_touch_pyplot(tmp_path: Path) -> None:
    write_report(small_result(), tmp_path)
    assert "matplotlib.pyplot" not in sys.modules
