"""benchmarks/possessed_triggers.py: it counts the cases the rule blocks in a books run and scores a judged sample
both ways (blocked where the sentence does not state the relation, counted where it does)."""
import importlib.util
import json
from dataclasses import asdict
from pathlib import Path

from test_book_triggers import make_book

from collab.book.pairs import book_pairs

_spec = importlib.util.spec_from_file_location(
    "possessed_triggers", Path(__file__).resolve().parent.parent / "benchmarks" / "possessed_triggers.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def write_run(folder: Path, sentences: list[str]) -> Path:
    """A book run's stage files, as the books command writes them, with a guide that answers sibling_of."""
    book, characters = make_book(sentences, narrator=True)
    _, where = book_pairs(book, characters)
    stages = folder / "stages"
    stages.mkdir(parents=True)
    for name, data in (("text", book.to_json()), ("characters", characters.to_json()),
                       ("pairs", {"where": [asdict(w) for w in where]})):
        (stages / f"{name}.json").write_text(json.dumps({"key": "k", "data": data}), encoding="utf-8")
    (stages / "relations.jsonl").write_text("".join(
        json.dumps({"id": w.id, "distribution": {"sibling_of": 0.7, "no_relation": 0.3}}) + "\n" for w in where),
        encoding="utf-8")
    return folder


def test_the_benchmark_counts_blocked_cases_and_scores_a_judged_sample(tmp_path, monkeypatch, capsys):
    run = write_run(tmp_path / "run" / "book", ["Ben looked at my sister.", "My sister, Anna, came in with Ben."])
    # blocked: Ben and the narrator in both sentences, and Anna and Ben in the second; Anna and the narrator count
    cases = bench.blocked_cases(run, bench.load_schema("characters"))
    assert sorted((c["head"], c["tail"]) for c in cases) == [("Anna", "Ben"), ("Ben", "Narrator"), ("Narrator", "Ben")]
    judged = tmp_path / "judged.jsonl"
    anna_ben = next(c for c in cases if c["head"] == "Anna")
    counted = {**anna_ben, "head": "Narrator", "tail": "Anna"}  # "My sister, Anna": the rule lets it count
    judged.write_text("".join(json.dumps(row) + "\n" for row in [
        {**cases[0], "states": False},   # still blocked and not stated: right
        {**anna_ben, "states": True},    # still blocked but stated: wrong
        {**counted, "states": True},     # counted by the rule and stated: right
    ]), encoding="utf-8")
    monkeypatch.setattr("sys.argv", ["possessed_triggers.py", "--run", str(tmp_path / "run"), "--judged", str(judged)])
    bench.main()
    result = json.loads(capsys.readouterr().out)
    assert result["blocked"] == 3 and result["per_book"] == {"book": 3}
    assert result["judged"] == {"cases": 3, "still_blocked": 2, "rule_right": 2}
