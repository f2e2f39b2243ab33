"""Temperature scaling of label scores, expected calibration error and a reliability diagram.

A guide's label scores are summed log-probabilities normalised over its labels; softmax(scores / T) with T fitted
on a dev split makes the top probability mean what it says (Guo et al., 2017). T changes no argmax, so it costs
no F1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def fit_temperature(scores: torch.Tensor, gold: torch.Tensor, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """The T minimising the negative log-likelihood of `gold` (indices) under softmax(scores / T), within
    `bounds` (a model that is always wrong would otherwise push T to infinity)."""
    scores, gold = scores.double(), gold.long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(scores / log_t.exp(), gold)
        loss.backward()
        return loss

    optimizer.step(closure)
    return min(max(float(log_t.detach().exp()), bounds[0]), bounds[1])


def expected_calibration_error(probs: torch.Tensor, gold: torch.Tensor, bins: int = 15) -> float:
    """Top-label ECE: |accuracy − confidence| per equal-width confidence bin, weighted by the bin's share."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == gold).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += float(inside.double().mean() * (correct[inside].mean() - confidence[inside].mean()).abs())
    return total


def reliability_diagram(curves: Sequence[tuple[str, torch.Tensor]], gold: torch.Tensor, path: str | Path,
                        bins: int = 10, title: str = "") -> Path:
    """Accuracy against confidence per bin, one line per (name, probabilities), with each curve's ECE."""
    from matplotlib.figure import Figure

    from .report import save_png

    fig = Figure(figsize=(4.8, 4.8))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    for name, probs in curves:
        confidence, predicted = probs.double().max(dim=1)
        correct = (predicted == gold).double()
        xs, ys = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            inside = (confidence > lo) & (confidence <= hi)
            if inside.any():
                xs.append(float(confidence[inside].mean()))
                ys.append(float(correct[inside].mean()))
        ece = expected_calibration_error(probs, gold)
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    path = Path(path)
    save_png(fig, path)
    return path


def calibrate_on_dev(scores: torch.Tensor, gold: torch.Tensor, labels: Sequence[str], gold_labels: dict[str, list[str]],
                     png: Path, title: str) -> dict:
    """What a guide records from its dev split, whatever kind it is: the fitted temperature, ECE before and
    after, micro/macro and per-label F1 of the argmax (against `gold_labels`, id → acceptable labels, in the
    order of `scores`' rows), and a reliability diagram at `png`."""
    from .metrics import score

    temperature = fit_temperature(scores, gold)
    raw, calibrated = torch.softmax(scores, 1), torch.softmax(scores / temperature, 1)
    reliability_diagram([("uncalibrated", raw), (f"T = {temperature:.2f}", calibrated)], gold, png, title=title)
    predicted = scores.argmax(1).tolist()
    result = score(gold_labels, {i: labels[p] for i, p in zip(gold_labels, predicted)}, label_set=labels)
    return {"temperature": round(temperature, 4),
            "dev": {"n": len(gold_labels), "micro_f1": round(result["micro_f1"], 4),
                    "macro_f1": round(result["macro_f1"], 4),
                    "ece_before": round(expected_calibration_error(raw, gold), 4),
                    "ece_after": round(expected_calibration_error(calibrated, gold), 4),
                    "per_label_f1": {k: round(v["f1"], 4) for k, v in result["per_label"].items()}}}
