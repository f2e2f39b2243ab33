"""Temperature scaling recovers a known temperature, and fitting it lowers the calibration error."""
import torch

from collab.calibration import expected_calibration_error, fit_temperature, reliability_diagram


def _sampled(true_temperature: float, n: int = 4000, labels: int = 6, seed: int = 0):
    """Gold labels drawn from softmax(logits / true_temperature): that temperature is then the calibrated one."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, labels, generator=generator, dtype=torch.float64) * 4
    gold = torch.multinomial(torch.softmax(logits / true_temperature, 1), 1, generator=generator).squeeze(1)
    return logits, gold


def test_fit_recovers_the_temperature_the_labels_were_drawn_with():
    logits, gold = _sampled(2.5)
    assert abs(fit_temperature(logits, gold) - 2.5) < 0.25


def test_fitting_lowers_the_calibration_error():
    logits, gold = _sampled(3.0)
    before = expected_calibration_error(torch.softmax(logits, 1), gold)
    after = expected_calibration_error(torch.softmax(logits / fit_temperature(logits, gold), 1), gold)
    assert after < before / 2


def test_a_model_that_is_always_wrong_gets_a_bounded_temperature():
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    gold = torch.tensor([1, 1, 0])
    assert fit_temperature(logits, gold) <= 100.0


def test_ece_of_a_perfect_confident_model_is_zero():
    probs = torch.eye(4, dtype=torch.float64)
    assert expected_calibration_error(probs, torch.arange(4)) == 0.0


def test_reliability_diagram_is_written(tmp_path):
    logits, gold = _sampled(2.0, n=300)
    path = reliability_diagram([("raw", torch.softmax(logits, 1))], gold, tmp_path / "r.png")
    assert path.stat().st_size > 1000
