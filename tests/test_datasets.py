import re
import subprocess
import sys

import pytest

from collab import datasets
from collab.schema import load_schema


def test_counts_agree_with_the_shared_validator():
    root = datasets.datasets_root()
    out = subprocess.run([sys.executable, str(root / "validate.py")], capture_output=True, text=True).stdout
    expected = {}
    for line in out.splitlines():
        m = re.match(r"(\S+\.jsonl): (\d+) ok, (\d+) bad, (\d+) labels, splits (.*)$", line)
        if m:
            expected[m[1]] = (int(m[2]), int(m[3]), int(m[4]), m[5])
    assert len(expected) >= 20
    ours = {str(p.relative_to(root)): datasets.count_file(p) for p in datasets.re_files()}
    assert {k: (v["ok"], v["bad"], v["labels"], str(v["splits"])) for k, v in ours.items()} == expected


def test_shared_root_env_override_and_clear_error(tmp_path, monkeypatch):
    (tmp_path / "datasets").mkdir()
    monkeypatch.setenv("COLLAB_SHARED", str(tmp_path))
    assert datasets.shared_root() == tmp_path.resolve()
    monkeypatch.setenv("COLLAB_SHARED", str(tmp_path / "missing"))
    with pytest.raises(datasets.SharedMissing, match="set COLLAB_SHARED"):
        datasets.shared_root()


def test_specs_resolve_to_files_schema_and_mapping():
    source = datasets.resolve("dialogre:test")
    assert source.path.name == "test.jsonl" and source.schema == "characters"
    pairs = list(source.read(require_label=True))
    labels = {label for p in pairs for label in p.gold_labels}
    assert labels <= set(load_schema("characters").label_names)
    assert 0 < len(pairs) < 1072  # pairs whose labels have no characters target are dropped
    with pytest.raises(FileNotFoundError, match="semeval has: dev, test, train"):
        datasets.resolve("semeval:validation")


def test_head_tail_is_cached_and_reported(tmp_path):
    schema = load_schema("semeval")
    first = datasets.head_tail(schema, cache_dir=tmp_path)
    assert set(first["head"]).isdisjoint(first["tail"])
    assert set(first["head"]) | set(first["tail"]) == set(schema.positive_labels)
    counts = first["counts"]
    covered = sum(counts[l] for l in first["head"]) / sum(n for l, n in counts.items() if l != "no_relation")
    assert covered >= 0.8
    assert list((tmp_path / "splits").glob("semeval.v1-*.json"))
    assert datasets.head_tail(schema, cache_dir=tmp_path) == first


def test_a_written_sample_is_seeded_mapped_and_readable_without_a_mapping(tmp_path):
    schema = load_schema("characters")
    first = datasets.write_sample("dialogre:dev", schema, 20, tmp_path / "a.jsonl")
    again = datasets.write_sample("dialogre:dev", schema, 20, tmp_path / "b.jsonl")
    assert first.read_text() == again.read_text()
    pairs = list(datasets.resolve(first).read(schema=schema, require_label=True))
    assert len(pairs) == 20 and len({p.id for p in pairs}) == 20
    assert {p.relation for p in pairs} <= set(schema.label_names)   # DialogRE labels already mapped
    other = datasets.write_sample("dialogre:dev", schema, 20, tmp_path / "c.jsonl", seed=14)
    assert other.read_text() != first.read_text()


def test_a_pooled_spec_reads_its_parts_in_turn_and_counts_them_together():
    general = load_schema("general")
    assert datasets.split_spec(general, "dev") == "semeval:dev+conll04:dev_all_pairs"
    pooled = datasets.resolve(datasets.split_spec(general, "dev"))
    parts = [datasets.resolve("semeval:dev"), datasets.resolve("conll04:dev_all_pairs")]
    pairs = list(pooled.read(schema=general, require_label=True))
    assert [p.id for p in pairs] == [p.id for part in parts for p in part.read()]
    assert pooled.sha256() not in {part.sha256() for part in parts}
    counts, _ = datasets.train_label_counts(general)
    semeval, _ = datasets.train_label_counts(load_schema("semeval"))
    conll04, _ = datasets.train_label_counts(load_schema("conll04"))
    assert counts == semeval + conll04
    split = datasets.head_tail(general)
    assert set(split["head"]) | set(split["tail"]) == set(general.positive_labels)
