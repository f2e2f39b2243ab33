"""A guide made of guides mixes its members' distributions with the weights its ensemble.json gives."""
from __future__ import annotations

import json

import pytest

from collab.data import Mention, Pair, Prediction
from guides import ensemble
from guides.ensemble import ENSEMBLE_FILE, EnsembleGuide, load_ensemble
from guides.guide import GuideError, guide_identity, guide_path


class FakeGuide:
    """Answers each pair with the distribution its table gives for the pair's id; counts its calls."""

    def __init__(self, table: dict[str, dict[str, float]]):
        self.table, self.calls = table, 0

    def predict(self, pairs, batch_size=8):
        self.calls += 1
        out = []
        for pair in pairs:
            dist = dict(sorted(self.table[pair.id].items(), key=lambda kv: -kv[1]))
            top = next(iter(dist))
            out.append(Prediction(id=pair.id, relation=top, confidence=dist[top], distribution=dist))
        return out


def _pair(i: int) -> Pair:
    return Pair(f"p{i}", "Ann met Bob.", Mention("Ann", 0, 3), Mention("Bob", 8, 11))


def test_the_mixture_weights_each_members_probabilities_and_keeps_input_order(monkeypatch):
    monkeypatch.setattr(ensemble, "CHUNK", 2)  # five pairs: three chunks, order kept across them
    pairs = [_pair(i) for i in range(5)]
    lm = FakeGuide({p.id: {"friend_of": 0.6, "enemy_of": 0.3, "no_relation": 0.1} for p in pairs})
    encoder = FakeGuide({p.id: {"friend_of": 0.1, "enemy_of": 0.8, "no_relation": 0.1} for p in pairs})
    predictions = EnsembleGuide([lm, encoder], [0.75, 0.25]).predict(pairs)
    assert [p.id for p in predictions] == [p.id for p in pairs]
    assert lm.calls == encoder.calls == 3
    first = predictions[0]
    assert first.relation == "friend_of"
    assert first.distribution == pytest.approx({"friend_of": 0.475, "enemy_of": 0.425, "no_relation": 0.1})
    assert list(first.distribution) == ["friend_of", "enemy_of", "no_relation"]
    assert first.confidence == pytest.approx(0.475) and first.margin == pytest.approx(0.05)
    # the encoder's weight is enough to turn the answer when the language model is less sure
    flipped = EnsembleGuide([lm, encoder], [0.5, 0.5]).predict(pairs[:1])[0]
    assert flipped.relation == "enemy_of"


def test_members_that_score_different_labels_are_refused():
    pair = _pair(0)
    one = FakeGuide({pair.id: {"friend_of": 0.9, "no_relation": 0.1}})
    other = FakeGuide({pair.id: {"friend_of": 0.5, "long_tail": 0.4, "no_relation": 0.1}})
    with pytest.raises(ValueError, match="members score different labels"):
        EnsembleGuide([one, other], [0.5, 0.5]).predict([pair])
    with pytest.raises(ValueError, match="head-only guide"):
        EnsembleGuide([other, other], [0.5, 0.5]).predict([pair])


def _write(folder, **meta):
    folder.mkdir(parents=True, exist_ok=True)
    body = {"format": 1, "schema": "characters.v1",
            "members": [{"guide": "a", "weight": 0.9}, {"guide": "b", "weight": 0.1}], **meta}
    (folder / ENSEMBLE_FILE).write_text(json.dumps(body))
    return folder


@pytest.mark.parametrize("meta, message", [
    ({"members": [{"guide": "a", "weight": 1.0}]}, "at least two guides"),
    ({"members": [{"guide": "a", "weight": 0.7}, {"guide": "b", "weight": 0.2}]}, "sum to 0.9, not 1"),
    ({"members": [{"guide": "a", "weight": 1.1}, {"guide": "b", "weight": -0.1}]}, r"members\[1\]"),
    ({"format": 2}, "format 2"),
    ({"schema": ""}, "schema"),
])
def test_a_bad_ensemble_file_names_the_file_and_the_field(tmp_path, meta, message):
    folder = _write(tmp_path / "mix", **meta)
    with pytest.raises(GuideError, match=message) as err:
        load_ensemble(folder, lambda spec, schema: None, None)
    assert str(folder / ENSEMBLE_FILE) in str(err.value)


def test_an_ensemble_file_that_is_not_json_names_the_file_and_line(tmp_path):
    folder = tmp_path / "mix"
    folder.mkdir()
    (folder / ENSEMBLE_FILE).write_text('{"format": 1,\n "members": [}')
    with pytest.raises(GuideError, match=r"ensemble.json: line 2: not valid JSON"):
        load_ensemble(folder, lambda spec, schema: None, None)


def test_members_load_from_the_folder_or_by_name_for_the_ensembles_schema(tmp_path):
    folder = _write(tmp_path / "mix")
    (folder / "a").mkdir()
    loaded = []
    guide = load_ensemble(folder, lambda spec, schema: loaded.append((spec, schema)) or spec, "characters")
    assert loaded == [(str(folder / "a"), "characters.v1"), ("b", "characters.v1")]
    assert guide.weights == [0.9, 0.1]
    with pytest.raises(GuideError, match="scores schema characters.v1, not semeval.v1"):
        load_ensemble(folder, lambda spec, schema: spec, "semeval")


def test_an_ensemble_folder_is_a_guide_whose_identity_follows_its_weights(tmp_path):
    folder = _write(tmp_path / "mix", members=[{"guide": "characters-smollm2-enum", "weight": 0.9},
                                               {"guide": "characters-minilm", "weight": 0.1}])
    assert guide_path(folder) == folder
    before = guide_identity(folder)
    _write(folder, members=[{"guide": "characters-smollm2-enum", "weight": 0.8},
                            {"guide": "characters-minilm", "weight": 0.2}])
    assert guide_identity(folder) != before


def test_an_ensemble_is_not_served_by_an_endpoint(tmp_path):
    from guides.guide import served_guide

    folder = _write(tmp_path / "mix")
    with pytest.raises(GuideError, match="runs locally"):
        served_guide(folder, "http://127.0.0.1:9/v1")
