"""Every guide shipped under guides/adapters loads offline in a fresh clone and answers inside its schema."""
from __future__ import annotations

import json

import pytest

from guides.guide import GUIDE_FILE, SHIPPED

SHIPPED_NAMES = sorted(p.parent.name for p in SHIPPED.glob(f"*/{GUIDE_FILE}"))


def test_every_shipped_guide_has_a_card_and_a_plain_peft_adapter():
    assert SHIPPED_NAMES, "no shipped guide"
    for name in SHIPPED_NAMES:
        folder = SHIPPED / name
        meta = json.loads((folder / GUIDE_FILE).read_text())
        assert meta["temperature"] is not None and meta["dev"]["n"] > 0
        assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
        assert "## Training" in (folder / "README.md").read_text()


@pytest.mark.model
@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_guide_predicts_the_demo_sentences_of_its_schema(name, model_cache):
    from collab.cli import DEMO_DATA
    from collab.config import Config
    from collab.data import read_pairs
    from guides.guide import load_guide

    scorer = load_guide(name, Config(cache_dir=model_cache))
    meta = json.loads((SHIPPED / name / GUIDE_FILE).read_text())
    if meta["schema"]["name"] != "semeval.v1":
        pytest.skip("the bundled demo sentences are SemEval pairs")
    pairs = list(read_pairs(DEMO_DATA))
    predictions = scorer.predict(pairs)
    assert all(p.relation in meta["labels"] for p in predictions)
    correct = sum(p.relation == pair.relation for p, pair in zip(predictions, pairs))
    assert correct >= 6, f"{name}: only {correct}/10 of the hand-written demo sentences right"
