import json

import pytest
from conftest import pair_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.data import DataError, LoadStats, Prediction, read_pairs, read_predictions
from collab.data import write_jsonl as save_jsonl
from collab.schema import load_schema


def test_reads_a_valid_file(write_jsonl):
    path = write_jsonl([pair_record("a"), pair_record("b", relation="no_relation")])
    pairs = list(read_pairs(path, schema=load_schema("semeval")))
    assert [p.id for p in pairs] == ["a", "b"]
    assert pairs[0].head.text == "fire" and pairs[0].text[pairs[0].tail.start:pairs[0].tail.end] == "smoke"
    assert pairs[0].gold_labels == ("Cause-Effect(e1,e2)",)


@pytest.mark.parametrize("line, field", [
    ("{not json", "(line)"),
    ("[1, 2]", "(line)"),
    (json.dumps({k: v for k, v in pair_record().items() if k != "text"}), "text"),
    (json.dumps({k: v for k, v in pair_record().items() if k != "head"}), "head"),
    (json.dumps(pair_record() | {"head": {"text": "fire", "start": 0, "end": 4}}), "head.text"),
    (json.dumps(pair_record() | {"tail": {"text": "smoke", "start": 16, "end": 99}}), "tail.start"),
    (json.dumps(pair_record() | {"head": {"text": "fire", "start": "4", "end": 8}}), "head.start"),
    (json.dumps(pair_record() | {"relation": ""}), "relation"),
    (json.dumps(pair_record() | {"labels": "x"}), "labels"),
])
def test_bad_line_names_file_line_and_field(write_jsonl, line, field):
    path = write_jsonl([pair_record("ok"), line])
    with pytest.raises(DataError) as info:
        list(read_pairs(path))
    error = info.value
    assert (error.path, error.line, error.field) == (str(path), 2, field)
    assert str(error).startswith(f"{path}:2: {field}: ")
    assert "\n" not in str(error)


def test_unknown_label_for_schema(write_jsonl):
    path = write_jsonl([pair_record(relation="Sibling-Of(e1,e2)")])
    with pytest.raises(DataError, match=r":1: relation: unknown label 'Sibling-Of\(e1,e2\)' for schema semeval.v1"):
        list(read_pairs(path, schema=load_schema("semeval")))


def test_duplicate_id_and_missing_label(write_jsonl):
    with pytest.raises(DataError, match=r":2: id: duplicate id 'a'"):
        list(read_pairs(write_jsonl([pair_record("a"), pair_record("a")])))
    record = {k: v for k, v in pair_record().items() if k != "relation"}
    assert list(read_pairs(write_jsonl([record])))[0].relation is None  # unlabelled input is fine
    with pytest.raises(DataError, match=r":1: relation: missing"):
        list(read_pairs(write_jsonl([record], "gold.jsonl"), require_label=True))


def test_skip_invalid_counts_and_keeps_the_rest(write_jsonl):
    path = write_jsonl([pair_record("a"), "{broken", "", pair_record("b", relation="Nope"), pair_record("c")])
    stats = LoadStats()
    pairs = list(read_pairs(path, schema=load_schema("semeval"), skip_invalid=True, stats=stats))
    assert [p.id for p in pairs] == ["a", "c"]
    assert (stats.read, stats.kept, stats.skipped) == (4, 2, 2)
    assert stats.first_errors[0].startswith(f"{path}:2: (line): invalid JSON")


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(pair_record()).encode() + b"\n" + b'{"id": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin1.jsonl:2: \(line\): not UTF-8"):
        list(read_pairs(path))
    with pytest.raises(DataError, match=r"nowhere.jsonl:0: \(file\)"):
        list(read_pairs(tmp_path / "nowhere.jsonl"))


def test_predictions_round_trip_and_errors(tmp_path):
    out = tmp_path / "pred.jsonl"
    preds = [Prediction("a", "no_relation", 0.9, 0.8, {"no_relation": 0.9, "x": 0.1})]
    assert save_jsonl(out, preds) == 1
    assert list(read_predictions(out))[0]["distribution"] == {"no_relation": 0.9, "x": 0.1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "relation": "x", "route": "oracle"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: route: 'oracle' is not one of slm, llm, merged"):
        list(read_predictions(bad))
    bad.write_text('{"id": "a", "relation": "x"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: \(line\): must be a JSON object"):
        list(read_predictions(bad))
    bad.write_text('{"id": "a", "relation": "x"}\n{"id": "b"\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: \(line\): invalid JSON"):
        list(read_predictions(bad))


# Fuzzing: whatever a line holds, the loader either yields a Pair or raises DataError, nothing else.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)
mentions = st.fixed_dictionaries({"text": st.text(max_size=6) | st.integers(), "start": json_values,
                                  "end": st.integers(-2, 40) | json_values}, optional={"type": json_values})
records = st.fixed_dictionaries(
    {}, optional={"id": st.text(max_size=5) | json_values, "text": st.text(max_size=30) | json_values,
                  "head": mentions | json_values, "tail": mentions | json_values,
                  "relation": st.sampled_from(["Cause-Effect(e1,e2)", "no_relation", "bogus", ""]) | json_values,
                  "labels": json_values, "split": json_values, "source": json_values})
lines = records.map(json.dumps) | st.text(max_size=40) | st.binary(max_size=30).map(lambda b: b.decode("latin-1"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, min_size=1, max_size=4), st.booleans())
def test_fuzzed_lines_only_raise_data_error(tmp_path, content, with_schema):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in content) + "\n",
                    encoding="utf-8", errors="surrogatepass")
    schema = load_schema("semeval") if with_schema else None
    try:
        for pair in read_pairs(path, schema=schema):
            assert pair.text[pair.head.start:pair.head.end] == pair.head.text
    except DataError as e:
        assert str(e).startswith(f"{path}:")
    stats = LoadStats()
    kept = list(read_pairs(path, schema=schema, skip_invalid=True, stats=stats)) if _is_utf8(path) else []
    assert len(kept) == stats.kept <= stats.read


def _is_utf8(path):
    try:
        path.read_bytes().decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
