from collections import Counter

import pytest
from conftest import pair_record

from collab.data import DataError, read_pairs
from collab.schema import SchemaError, head_tail_split, load_mapping, load_schema, mapping_path


@pytest.mark.parametrize("name, n_labels", [("semeval", 19), ("conll04", 6), ("characters", 12), ("general", 24)])
def test_shipped_schemas_load(name, n_labels):
    schema = load_schema(name)
    assert schema.id == f"{name}.v1" and len(schema.labels) == n_labels
    assert schema.negative == "no_relation" and "no_relation" not in schema.positive_labels
    for label in schema.labels:
        assert label.definition and label.direction in ("directed", "symmetric")
        if label.inverse in schema.label_names:
            assert schema.label(label.inverse).inverse == label.name


def test_characters_schema_matches_the_literary_label_set():
    schema = load_schema("characters.v1")
    directed = {l.name for l in schema.labels if l.direction == "directed"}
    assert directed == {"parent_of", "employer_of", "mentor_of"}
    assert schema.label("parent_of").inverse == "child_of"
    assert set(schema.label_names) == {"parent_of", "sibling_of", "spouse_of", "relative_of", "romantic_partner_of",
                                       "friend_of", "enemy_of", "employer_of", "colleague_of", "mentor_of",
                                       "acquaintance_of", "no_relation"}


def test_fingerprint_ignores_comments_but_not_content(tmp_path):
    source = load_schema("conll04").path.read_text()
    (tmp_path / "a.v1.yaml").write_text("# a comment\n" + source)
    (tmp_path / "b.v1.yaml").write_text(source.replace("no_relation", "no_relation ", 1).replace(
        "Kill", "Murder"))
    base = load_schema("conll04")
    assert load_schema(tmp_path / "a.v1.yaml").fingerprint == base.fingerprint
    assert load_schema(tmp_path / "b.v1.yaml").fingerprint != base.fingerprint


def test_bad_schema_files_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.v1.yaml"
    bad.write_text("name: x\nversion: 1\nnegative: no_relation\nlabels:\n  - name: a\n    direction: sideways\n"
                   "    definition: d\n  - name: no_relation\n    definition: none\n    direction: symmetric\n")
    with pytest.raises(SchemaError, match=r"bad.v1.yaml: labels\[0\].direction: 'sideways'"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="unknown schema 'nope'; available: characters.v1, conll04.v1"):
        load_schema("nope")


def test_dialogre_mapping_swaps_inverse_labels(write_jsonl):
    schema = load_schema("characters")
    mapping = load_mapping(mapping_path("dialogre_en", schema), schema)
    text = "Speaker 1: Ross is my dad."
    parents = pair_record("a", text, head="Speaker 1", tail="Ross", relation="per:parents", labels=["per:parents"])
    children = pair_record("b", text, head="Ross", tail="Speaker 1", relation="per:children")
    both = pair_record("c", text, head="Speaker 1", tail="Ross", relation="per:alternate_names",
                       labels=["per:alternate_names", "per:boss", "per:friends", "per:subordinate"])
    dropped = pair_record("d", text, head="Speaker 1", tail="Ross", relation="per:alternate_names")
    unknown = pair_record("e", text, head="Speaker 1", tail="Ross", relation="per:uncle")
    pairs = list(read_pairs(write_jsonl([parents, children, both, dropped]), schema=schema, mapping=mapping))
    # per:parents(x, y): y is x's parent → parent_of(y, x)
    assert (pairs[0].relation, pairs[0].head.text, pairs[0].tail.text) == ("parent_of", "Ross", "Speaker 1")
    assert pairs[0].labels == ("parent_of",)
    assert (pairs[1].relation, pairs[1].head.text) == ("parent_of", "Ross")
    # alternate_names has no target; boss fixes the orientation (swap), subordinate would need the other one.
    assert pairs[2].relation == "employer_of" and pairs[2].head.text == "Ross"
    assert pairs[2].labels == ("employer_of", "friend_of")
    assert [p.id for p in pairs] == ["a", "b", "c"]
    with pytest.raises(DataError, match=r":1: relation: label 'per:uncle' is not in the mapping"):
        list(read_pairs(write_jsonl([unknown], "u.jsonl"), schema=schema, mapping=mapping))


def test_every_mapping_targets_its_schema():
    for name, dataset in (("characters", "dialogre_en"), ("characters", "massey2015"), ("characters", "conan_en"),
                          ("semeval", "semeval2010_task8"), ("conll04", "conll04")):
        schema = load_schema(name)
        mapping = load_mapping(mapping_path(dataset, schema), schema)
        targets = {t[0] for t in mapping.targets.values() if t}
        assert targets <= set(schema.label_names) and targets


def test_head_tail_split_covers_80_percent():
    counts = Counter({"a": 50, "b": 30, "c": 10, "d": 6, "e": 4, "no_relation": 500})
    # a+b = 80 of 100 positives → head reaches the coverage exactly; the rest is tail.
    assert head_tail_split(counts, "no_relation", 0.8, ["a", "b", "c", "d", "e", "f", "no_relation"]) == (
        ["a", "b"], ["c", "d", "e", "f"])
    # 81% needs one more label.
    assert head_tail_split(counts, "no_relation", 0.81)[0] == ["a", "b", "c"]
    tie = Counter({"y": 5, "x": 5})
    assert head_tail_split(tie, "no_relation", 0.5) == (["x"], ["y"])
    with pytest.raises(ValueError):
        head_tail_split(counts, "no_relation", 0)


def test_a_pooled_schema_takes_its_parts_labels_and_training_data(tmp_path):
    general, semeval, conll04 = load_schema("general"), load_schema("semeval"), load_schema("conll04")
    assert general.includes == ("semeval.v1", "conll04.v1")
    assert general.label_names == (*semeval.positive_labels, *conll04.positive_labels, "no_relation")
    assert general.label("Live_In") == conll04.label("Live_In")
    assert general.train_data == f"{semeval.train_data}+{conll04.train_data}"
    # an edit to an included schema is an edit to the pool
    part = tmp_path / "part.v1.yaml"
    part.write_text(conll04.path.read_text())
    pooled = tmp_path / "pool.v1.yaml"
    pooled.write_text(f"name: pool\nversion: 1\nnegative: no_relation\nincludes: [semeval.v1, {part}]\n")
    before = load_schema(pooled).fingerprint
    part.write_text(conll04.path.read_text().replace("lives in, was born in", "lives in"))
    assert load_schema(pooled).fingerprint != before
    twice = tmp_path / "twice.v1.yaml"
    twice.write_text("name: twice\nversion: 1\nnegative: no_relation\nincludes: [conll04.v1, conll04.v1]\n")
    with pytest.raises(SchemaError, match=r"twice.v1.yaml: labels: duplicate names \['Kill'"):
        load_schema(twice)
