"""`run_pipeline.py books` end to end on a small invented book, with a fake relation scorer (spaCy is real)."""
from __future__ import annotations

import json
import re

import networkx as nx
import pytest

from collab import api, cli
from collab.data import Prediction

BOOK = """\
CHAPTER I.

Mr. Henry Dashwood lived at Norland Park with his wife, Mrs. Dashwood. Henry Dashwood loved his
daughter Marianne Dashwood dearly. Marianne Dashwood was the sister of Elinor Dashwood.

Elinor Dashwood and Marianne Dashwood walked to the village. Mr. Henry Dashwood stayed at home with
Mrs. Dashwood.

CHAPTER II.

Edward Ferrars came to Norland. Edward Ferrars became a friend of Elinor Dashwood at once. Elinor Dashwood and
Edward Ferrars talked of books, and Marianne Dashwood laughed at Edward Ferrars.

Mrs. Dashwood welcomed Edward Ferrars. Marianne Dashwood and Elinor Dashwood sat with Mrs. Dashwood.
"""

FAMILY = {"parent_of", "spouse_of", "sibling_of"}


class FakeScorer:
    """Answers by keywords in the sentence, with a confident distribution; can die after n pairs."""

    def __init__(self, die_after=None):
        self.seen, self.die_after = [], die_after

    def iter_predict(self, pairs, batch_size=8):
        for pair in pairs:
            if self.die_after is not None and len(self.seen) >= self.die_after:
                raise KeyboardInterrupt
            self.seen.append(pair.id)
            text = pair.text.lower()
            label = ("spouse_of" if "wife" in text else "parent_of" if "daughter" in text
                     else "sibling_of" if "sister" in text else "friend_of" if "friend" in text else "no_relation")
            yield Prediction(pair.id, label, 0.9, 0.8, {label: 0.9, "acquaintance_of": 0.1})

    def predict(self, pairs, batch_size=8):
        return list(self.iter_predict(pairs, batch_size))


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "norland.txt"
    path.write_text(BOOK, encoding="utf-8")
    return path


def run_books(argv, scorer, monkeypatch):
    monkeypatch.setattr(api, "scorer_for", lambda config, schema: scorer)
    monkeypatch.setattr(api, "scorer_identity", lambda config, schema: "fake-scorer-1")
    return cli.main(["books", *argv])


def test_books_writes_a_graph_with_typed_edges_evidence_and_a_manifest(book, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert run_books([str(book), "--out", str(out), "--min-mentions", "2", "--exports", "json,graphml,gexf,csv",
                      "--edge-threshold", "0.25", "--chapter-graphs"],
                     FakeScorer(), monkeypatch) == 0
    folder = out / "norland"
    data = json.loads((folder / "graph.json").read_text())
    names = {n["name"] for n in data["nodes"]}
    assert {"Elinor Dashwood", "Marianne Dashwood", "Edward Ferrars"} <= names
    assert "Henry Dashwood" in " ".join(names) and "Mrs. Dashwood" in names   # Mr. and Mrs. kept apart
    by_name = {n["id"]: n["name"] for n in data["nodes"]}
    relations = {(by_name[link["source"]], link["relation"], by_name[link["target"]]) for link in data["links"]}
    assert any(r == "sibling_of" and {s, t} == {"Elinor Dashwood", "Marianne Dashwood"} for s, r, t in relations)
    assert any(r == "friend_of" and {s, t} == {"Edward Ferrars", "Elinor Dashwood"} for s, r, t in relations)
    text = book.read_text(encoding="utf-8")
    # The names alone make Mrs. Dashwood the sisters' mother; the fake guide never says so.
    assert {(by_name[l["source"]], l["relation"], by_name[l["target"]]) for l in data["links"]
            if l["basis"] == "names"} >= {("Mrs. Dashwood", "parent_of", "Elinor Dashwood"),
                                          ("Mrs. Dashwood", "parent_of", "Marianne Dashwood")}
    for link in data["links"]:
        assert 0 < link["confidence"] <= 1 and (link["support"] >= 1 or link["basis"] == "names")
        for evidence in link["evidence"]:
            assert evidence["chapter"] in (1, 2)
            assert text[evidence["start"]:evidence["end"]] == evidence["text"]
    assert nx.read_graphml(folder / "graph.graphml").number_of_nodes() == len(data["nodes"])
    manifest = json.loads((folder / "run.json").read_text())
    assert manifest["counts"]["chapters"] == 2 and manifest["counts"]["edges"] == len(data["links"])
    assert manifest["models"]["relation_scorer"] == "fake-scorer-1" and "torch" in manifest["versions"]
    assert set(manifest["stages"]) == {"text", "characters", "pairs", "relations", "edges", "graph"}
    printed = capsys.readouterr().out
    assert "top characters" in printed and re.search(r"--sibling_of--> .*top answer in [1-9]\d* sentences?\)", printed)
    assert re.search(r"mrs-dashwood --parent_of--> .*from the names: one family name\)", printed)
    # Per-chapter graphs: the friendship is only stated in chapter II, the sisters named in both.
    index = json.loads((folder / "chapters" / "index.json").read_text())
    assert [row["chapter"] for row in index] == [1, 2] and manifest["counts"]["chapter_graphs"] == 2
    per_chapter = [{r for _, _, r in nx.node_link_graph(json.loads((folder / row["folder"] / "graph.json").read_text()),
                                                        edges="links").edges(data="relation")} for row in index]
    assert "friend_of" not in per_chapter[0] and "friend_of" in per_chapter[1]
    assert (folder / "chapters" / "002" / "graph.graphml").is_file()


def test_a_rerun_recomputes_nothing_and_a_killed_run_resumes(book, tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = [str(book), "--out", str(out), "--min-mentions", "2", "--exports", "json"]
    dying = FakeScorer(die_after=2)
    assert run_books(args, dying, monkeypatch) == 130
    assert (out / "norland" / "stages" / "relations.jsonl.partial").is_file()
    resumed = FakeScorer()
    assert run_books(args, resumed, monkeypatch) == 0
    assert not set(dying.seen) & set(resumed.seen)          # nothing classified twice
    again = FakeScorer()
    assert run_books(args, again, monkeypatch) == 0
    assert again.seen == []
    manifest = json.loads((out / "norland" / "run.json").read_text())
    assert all(manifest["stages"][s]["cached"] for s in ("text", "characters", "pairs", "relations", "edges"))
    rerun = FakeScorer()
    assert run_books([*args, "--rerun-from", "relations"], rerun, monkeypatch) == 0
    assert len(rerun.seen) == len(dying.seen) + len(resumed.seen)


def test_a_bad_book_is_reported_and_the_others_still_run(book, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n", encoding="utf-8")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    out = tmp_path / "out"
    assert run_books([str(empty), str(binary), str(book), "--out", str(out), "--min-mentions", "2",
                      "--exports", "json"], FakeScorer(), monkeypatch) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [b["book"] for b in summary["books"]] == [str(book)]
    assert {f["book"] for f in summary["failed"]} == {str(empty), str(binary)}
    err = capsys.readouterr().err
    assert "empty.txt" in err and "binary.txt" in err


def test_no_book_at_all_is_an_error(tmp_path, monkeypatch, capsys):
    assert run_books([str(tmp_path / "missing.txt"), "--out", str(tmp_path)], FakeScorer(), monkeypatch) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_folders_and_globs_expand_and_a_book_named_twice_runs_once(book, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run_books([str(tmp_path), str(tmp_path / "*.txt"), str(book), "--out", str(out), "--min-mentions", "2",
                      "--exports", "json"], FakeScorer(), monkeypatch) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [b["book"] for b in summary["books"]] == [str(book)]


def test_books_in_privacy_mode_run_under_the_network_guard(book, tmp_path, monkeypatch):
    import socket

    class GuardedScorer(FakeScorer):
        def iter_predict(self, pairs, batch_size=8):
            assert socket.getaddrinfo.__name__ == "guarded_getaddrinfo", "scoring ran without the guard"
            yield from super().iter_predict(pairs, batch_size)

    scorer = GuardedScorer()
    assert run_books([str(book), "--out", str(tmp_path / "out"), "--min-mentions", "2", "--exports", "json",
                      "--privacy", "local"], scorer, monkeypatch) == 0
    assert scorer.seen and socket.getaddrinfo.__name__ == "getaddrinfo"


def test_books_escalate_unsure_pair_sentences_and_count_routes_on_the_edges(book, tmp_path, monkeypatch, capsys):
    from fake_llm_server import FakeLLMServer
    from fakes import FakeEmbedder

    from collab import embed, retrieval

    monkeypatch.setattr(embed, "SentenceEmbedder", lambda *args, **kwargs: FakeEmbedder())
    monkeypatch.setattr(retrieval, "_spacy", lambda: None)
    monkeypatch.setattr(api, "guide_for", lambda config, schema: None)
    out = tmp_path / "out"
    args = [str(book), "--out", str(out), "--min-mentions", "2", "--exports", "json", "--edge-threshold", "0.25",
            "--no-edge-triggers", "--cache-dir", str(tmp_path / "cache"), "--escalate", "auto",
            "--escalate-threshold", "0.95", "--merge", "llm"]
    with FakeLLMServer() as server:             # answers each prompt's first candidate label
        scorer = FakeScorer()
        assert run_books([*args, "--llm-base-url", server.base_url, "--llm-model", server.model], scorer,
                         monkeypatch) == 0
        asked = len(server.requests)
    stage = out / "norland" / "stages" / "relations.jsonl"
    relations = [json.loads(line) for line in stage.read_text().splitlines()]
    # every pair sentence was below the threshold; the guide also answered the demonstrations' pairs
    assert len(relations) == asked > 0 and {r["id"] for r in relations} <= set(scorer.seen)
    assert {r["route"] for r in relations} <= {"llm", "merged"}   # merged: the LLM agreed with the guide
    assert all(r["llm"]["relation"] == r["relation"] and r["slm"]["confidence"] == 0.9 for r in relations)
    links = json.loads((out / "norland" / "graph.json").read_text())["links"]
    assert links and all(link["routes"]["llm"] + link["routes"]["merged"] == link["support"] for link in links)
    assert "escalated" in capsys.readouterr().err
    with FakeLLMServer() as server:             # a rerun asks nothing again: the relations stage is cached
        assert run_books([*args, "--llm-base-url", server.base_url, "--llm-model", server.model], FakeScorer(),
                         monkeypatch) == 0
        assert server.requests == []


def test_pronoun_mentions_are_on_by_default_and_switching_them_recomputes_from_the_characters_stage(
        tmp_path, monkeypatch):
    book = tmp_path / "ferrars.txt"
    book.write_text("CHAPTER I.\n\nMr. Edward Ferrars came to Norland. He soon met Elinor Dashwood there. "
                    "Mr. Edward Ferrars liked Elinor Dashwood. Elinor Dashwood liked Mr. Edward Ferrars too. "
                    "He talked with Elinor Dashwood of books.\n", encoding="utf-8")
    out = tmp_path / "out"
    args = [str(book), "--out", str(out), "--min-mentions", "2", "--exports", "json"]

    def pronoun_mentions():
        stage = json.loads((out / "ferrars" / "stages" / "characters.json").read_text())["data"]
        return [m for m in stage["mentions"] if m["kind"] == "pronoun"]

    assert run_books([*args, "--no-pronouns"], FakeScorer(), monkeypatch) == 0
    assert pronoun_mentions() == []
    assert run_books(args, FakeScorer(), monkeypatch) == 0
    assert [m["text"] for m in pronoun_mentions()] == ["He", "He"]
    manifest = json.loads((out / "ferrars" / "run.json").read_text())
    assert not manifest["stages"]["characters"]["cached"]
