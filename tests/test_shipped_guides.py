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
    if meta["schema"]["name"] == "characters.v1":
        _reads_family_ties(scorer)
        return
    if meta["schema"]["name"] not in ("semeval.v1", "general.v1"):  # general holds SemEval's labels
        pytest.skip("the bundled demo sentences are SemEval pairs")
    pairs = list(read_pairs(DEMO_DATA))
    predictions = scorer.predict(pairs)
    assert all(p.relation in meta["labels"] for p in predictions)
    correct = sum(p.relation == pair.relation for p, pair in zip(predictions, pairs))
    assert correct >= 6, f"{name}: only {correct}/10 of the hand-written demo sentences right"


ENCODER_NAMES = sorted(p.parent.name for p in SHIPPED.glob("*/encoder.json"))


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_shipped_encoder_guide_is_calibrated_and_reads_family_ties(name):
    """Each encoder guide loads offline through the same entry point and gets plain family sentences right;
    with no LM guide for the model asked, `auto` takes the schema's encoder guide with the best dev score."""
    from collab.schema import load_schema
    from guides.guide import load_guide, shipped_guide

    meta = json.loads((SHIPPED / name / "encoder.json").read_text())
    assert meta["temperature"] is not None and meta["dev"]["n"] > 0
    assert "## Training" in (SHIPPED / name / "README.md").read_text()
    schema_name = meta["schema"]["id"].rsplit(".v", 1)[0]
    picked = shipped_guide(load_schema(schema_name), "no-such-model")
    picked_meta = json.loads((picked / "encoder.json").read_text())
    assert picked_meta["schema"]["id"] == meta["schema"]["id"]
    assert picked_meta["dev"]["micro_f1"] >= meta["dev"]["micro_f1"]
    guide = load_guide(name)
    if schema_name in ("semeval", "general"):  # general pools SemEval's labels with CoNLL04's
        from collab.cli import DEMO_DATA
        from collab.data import read_pairs

        pairs = list(read_pairs(DEMO_DATA))
        correct = sum(p.relation == pair.relation for p, pair in zip(guide.predict(pairs), pairs))
        assert correct >= 6, f"{name}: only {correct}/10 of the hand-written demo sentences right"
        return
    if schema_name != "characters":
        pytest.skip("no hand-written sentences for this schema")
    _reads_family_ties(guide)


def _reads_family_ties(guide) -> None:
    from collab.api import make_pair

    pairs = [make_pair("Mr. Henry Dashwood was the father of Elinor, and loved his daughter dearly.",
                       "Henry Dashwood", "Elinor", id="a"),
             make_pair("Elinor and her sister Marianne walked to the village together.", "Elinor", "Marianne",
                       id="b"),
             make_pair("John married Fanny, and his wife soon ruled the house.", "John", "Fanny", id="c")]
    predictions = guide.predict(pairs)
    assert [p.relation for p in predictions] == ["parent_of", "sibling_of", "spouse_of"]
    assert all(0 < p.confidence <= 1 for p in predictions)


def test_auto_picks_the_shipped_guide_with_the_best_dev_score(tmp_path, monkeypatch):
    from collab.schema import load_schema
    from guides import guide as guide_module

    schema = load_schema("semeval")

    def write(name, file, meta):
        (tmp_path / name).mkdir()
        (tmp_path / name / file).write_text(json.dumps(meta))

    write("lm", "guide.json", {"schema": {"name": schema.id}, "base_model": {"name": "smollm2"}, "temperature": 1.0,
                               "dev": {"micro_f1": 0.70}})
    write("enc", "encoder.json", {"schema": {"id": schema.id}, "temperature": 1.2, "dev": {"micro_f1": 0.60}})
    write("uncalibrated", "encoder.json", {"schema": {"id": schema.id}, "temperature": None, "dev": {"micro_f1": 0.99}})
    monkeypatch.setattr(guide_module, "SHIPPED", tmp_path)
    assert guide_module.shipped_guide(schema, "smollm2") == tmp_path / "lm"
    assert guide_module.shipped_guide(schema, "gemma3-270m") == tmp_path / "enc"  # the LM guide is for smollm2
    (tmp_path / "enc" / "encoder.json").write_text(json.dumps(
        {"schema": {"id": schema.id}, "temperature": 1.2, "dev": {"micro_f1": 0.80}}))
    assert guide_module.shipped_guide(schema, "smollm2") == tmp_path / "enc"
    write("named_only", "guide.json", {"schema": {"name": schema.id}, "base_model": {"name": "smollm2"},
                                       "temperature": 1.0, "dev": {"micro_f1": 0.90}, "auto": False})
    assert guide_module.shipped_guide(schema, "smollm2") == tmp_path / "enc"


ENSEMBLE_NAMES = sorted(p.parent.name for p in SHIPPED.glob("*/ensemble.json"))


@pytest.mark.parametrize("name", ENSEMBLE_NAMES)
def test_shipped_ensemble_mixes_shipped_guides_of_its_schema(name):
    from guides.ensemble import read_ensemble

    meta = read_ensemble(SHIPPED / name)
    assert "## Choice" in (SHIPPED / name / "README.md").read_text()
    for member in meta["members"]:
        folder = SHIPPED / member["guide"]
        found = [json.loads((folder / f).read_text()) for f in ("guide.json", "encoder.json") if (folder / f).is_file()]
        assert found, f"{name}: member {member['guide']} is not a shipped guide"
        schema = found[0]["schema"].get("name") or found[0]["schema"].get("id")
        assert schema == meta["schema"]


@pytest.mark.model
@pytest.mark.parametrize("name", ENSEMBLE_NAMES)
def test_shipped_ensemble_reads_family_ties(name, model_cache):
    from collab.config import Config
    from guides.guide import load_guide

    _reads_family_ties(load_guide(name, Config(cache_dir=model_cache)))
