"""Book pairs, edge aggregation and the cached stage runner, on hand-built books (no models)."""
from __future__ import annotations

import json

import pytest

from collab.book.edges import aggregate_edges
from collab.book.pairs import book_pairs
from collab.book.records import BookText, Chapter, Character, CharacterMention, Characters, Sentence
from collab.pipeline import Pipeline, Stage
from collab.schema import load_schema

SENTENCES = [
    "Anna met Ben at the ball.",          # 0: anna, ben
    "Ben smiled.",                        # 1: ben
    "Carl, Anna and Ben walked home.",    # 2: carl, anna, ben
    "Anna laughed.",                      # 3: anna   (new paragraph)
    "Carl was Anna's father.",            # 4: carl, anna
]
PARAGRAPH = [0, 0, 0, 1, 1]
NAMES = {"Anna": "anna", "Ben": "ben", "Carl": "carl"}


def make_book() -> tuple[BookText, Characters]:
    text, sentences, mentions = "", [], []
    for i, sentence in enumerate(SENTENCES):
        start = len(text)
        text += sentence + " "
        sentences.append(Sentence(i, start, start + len(sentence), 1, PARAGRAPH[i]))
        for name, cid in NAMES.items():
            at = sentence.find(name)
            if at >= 0:
                mentions.append(CharacterMention(start + at, start + at + len(name), name, i, cid))
    mentions.sort(key=lambda m: m.start)
    book = BookText("fixture.txt", text, [Chapter(1, "Chapter 1", 0, len(text))], sentences)
    counts = {cid: sum(m.character == cid for m in mentions) for cid in NAMES.values()}
    characters = [Character(cid, name, [], counts[cid]) for name, cid in NAMES.items()]
    return book, Characters(characters, mentions)


def test_sentence_pairs_have_the_right_characters_offsets_and_order():
    book, characters = make_book()
    pairs, where = book_pairs(book, characters)
    found = sorted((w.sentence, w.head, w.tail) for w in where)
    assert found == [(0, "anna", "ben"), (2, "anna", "ben"), (2, "carl", "anna"), (2, "carl", "ben"),
                     (4, "carl", "anna")]
    # a cap on the sentences classified per pair leaves how often the pair meets as it was
    _, capped = book_pairs(book, characters, max_pair_mentions=1)
    assert sorted((w.head, w.tail, w.meets) for w in capped) == [("anna", "ben", 2), ("carl", "anna", 2),
                                                                 ("carl", "ben", 1)]
    for pair, w in zip(pairs, where):
        assert pair.text == book.text[w.start:w.end] == SENTENCES[w.sentence]
        assert pair.text[pair.head.start:pair.head.end] == pair.head.text
        assert pair.text[pair.tail.start:pair.tail.end] == pair.tail.text
        assert pair.head.start < pair.tail.start  # head is the character mentioned first
    assert len({p.id for p in pairs}) == len(pairs)


def test_window_pairs_across_sentences_but_not_across_paragraphs():
    book, characters = make_book()
    _, where = book_pairs(book, characters, window=1)
    spans = {(w.sentence, w.head, w.tail) for w in where}
    assert (1, "ben", "carl") in spans          # Ben (s1) and Carl (s2) are one sentence apart, same paragraph
    assert not any(w.sentence == 2 and w.head == "ben" and w.tail == "anna" for w in where)
    # s2 (paragraph 0) and s3 (paragraph 1) are never joined
    assert all(not (w.sentence == 2 and w.end > book.sentences[2].end) for w in where)


def test_max_pair_mentions_keeps_evidence_spread_over_the_book():
    book, characters = make_book()
    _, where = book_pairs(book, characters, max_pair_mentions=1)
    per_pair = {}
    for w in where:
        per_pair.setdefault(tuple(sorted((w.head, w.tail))), []).append(w.sentence)
    assert all(len(v) == 1 for v in per_pair.values())
    assert set(per_pair) == {("anna", "ben"), ("anna", "carl"), ("ben", "carl")}


def prediction(pair_id, relation, confidence, distribution):
    return {"id": pair_id, "relation": relation, "confidence": confidence, "distribution": distribution,
            "route": "slm"}


def test_edges_fold_inverses_order_symmetric_labels_and_average_the_strongest_mentions():
    schema = load_schema("characters")
    book, characters = make_book()
    _, where = book_pairs(book, characters)
    by_sentence = {(w.sentence, w.head, w.tail): w.id for w in where}
    preds = [
        # Anna/Ben: friends twice (once each order is impossible here, but both mentions agree)
        prediction(by_sentence[(0, "anna", "ben")], "friend_of", 0.8, {"friend_of": 0.8, "no_relation": 0.2}),
        prediction(by_sentence[(2, "anna", "ben")], "friend_of", 0.6, {"friend_of": 0.6, "enemy_of": 0.4}),
        # Carl/Anna: parent_of with Carl first, once; the other mention says nothing
        prediction(by_sentence[(4, "carl", "anna")], "parent_of", 0.9, {"parent_of": 0.9, "no_relation": 0.1}),
        prediction(by_sentence[(2, "carl", "anna")], "no_relation", 0.7, {"no_relation": 0.7, "parent_of": 0.3}),
        # Carl/Ben: weak
        prediction(by_sentence[(2, "carl", "ben")], "enemy_of", 0.35, {"enemy_of": 0.35, "no_relation": 0.3}),
    ]
    edges = {(e.source, e.relation, e.target): e for e in aggregate_edges(book, where, preds, schema, threshold=0.3)}
    friend = edges[("anna", "friend_of", "ben")]
    assert friend.confidence == pytest.approx(0.7) and friend.support == 2 and not friend.directed
    assert friend.evidence[0].text == SENTENCES[0]           # the most confident sentence first
    assert book.text[friend.evidence[0].start:friend.evidence[0].end] == friend.evidence[0].text
    parent = edges[("carl", "parent_of", "anna")]
    assert parent.directed and parent.support == 1 and parent.confidence == pytest.approx(0.6)
    assert ("anna", "enemy_of", "ben") not in edges           # (0.4 + 0) / 2 = 0.2 < 0.3, never a top answer
    assert edges[("ben", "enemy_of", "carl")].routes == {"slm": 1, "llm": 0, "merged": 0}


def test_canonical_folds_an_inverse_label_into_its_forward_label():
    schema = load_schema("characters")
    assert schema.canonical("child_of", "anna", "carl") == ("parent_of", "carl", "anna", True)
    assert schema.canonical("parent_of", "carl", "anna") == ("parent_of", "carl", "anna", True)
    assert schema.canonical("sibling_of", "zed", "amy") == ("sibling_of", "amy", "zed", False)


class Counter:
    def __init__(self):
        self.calls = []


def make_pipeline(counter, settings):
    def stage(name):
        def run(ctx, **needs):
            counter.calls.append(name)
            return {"name": name, "inputs": sorted(needs), "setting": settings.get(name)}
        return run
    return Pipeline([
        Stage("a", (), 1, stage("a"), lambda ctx: settings.get("a")),
        Stage("b", ("a",), 1, stage("b"), lambda ctx: settings.get("b")),
        Stage("c", ("b",), 1, stage("c"), lambda ctx: settings.get("c")),
    ])


def test_stages_are_cached_invalidated_downstream_and_rerun_from_a_stage(tmp_path):
    counter, settings = Counter(), {"a": 1, "b": 1, "c": 1}
    outputs, report = make_pipeline(counter, settings).run(None, tmp_path)
    assert counter.calls == ["a", "b", "c"] and outputs["c"]["inputs"] == ["b"]
    assert not any(r["cached"] for r in report.values())
    counter.calls.clear()
    _, report = make_pipeline(counter, settings).run(None, tmp_path)
    assert counter.calls == [] and all(r["cached"] for r in report.values())
    settings["b"] = 2                                   # a changed setting invalidates b and everything after it
    make_pipeline(counter, settings).run(None, tmp_path)
    assert counter.calls == ["b", "c"]
    counter.calls.clear()
    make_pipeline(counter, settings).run(None, tmp_path, rerun_from="c")
    assert counter.calls == ["c"]
    with pytest.raises(ValueError, match="no such stage"):
        make_pipeline(counter, settings).run(None, tmp_path, rerun_from="zz")
    stored = json.loads((tmp_path / "stages" / "b.json").read_text())
    assert stored["data"]["setting"] == 2


def test_a_stage_needing_a_later_stage_is_refused():
    with pytest.raises(ValueError, match="needs"):
        Pipeline([Stage("a", ("b",), 1, lambda ctx, b: b, lambda ctx: None), Stage("b", (), 1, lambda ctx: 1,
                                                                                  lambda ctx: None)])


def test_trigger_gating_keeps_only_relations_a_sentence_states_in_words():
    schema = load_schema("characters")
    book, characters = make_book()
    _, where = book_pairs(book, characters)
    by_sentence = {(w.sentence, w.head, w.tail): w.id for w in where}
    preds = [
        prediction(by_sentence[(0, "anna", "ben")], "friend_of", 0.9, {"friend_of": 0.9, "acquaintance_of": 0.1}),
        prediction(by_sentence[(4, "carl", "anna")], "parent_of", 0.9, {"parent_of": 0.9, "no_relation": 0.1}),
    ]
    plain = {(e.source, e.relation, e.target) for e in aggregate_edges(book, where, preds, schema, threshold=0.1)}
    assert ("anna", "friend_of", "ben") in plain
    gated = {(e.source, e.relation, e.target): e
             for e in aggregate_edges(book, where, preds, schema, threshold=0.1, triggers=True)}
    assert ("anna", "friend_of", "ben") not in gated              # "met" is no friend_of trigger
    assert ("carl", "parent_of", "anna") in gated                 # "father" is a parent_of trigger
    # acquaintance_of ("met") is only a runner-up: counted as probability, but never a top answer, so no edge
    assert ("anna", "acquaintance_of", "ben") not in gated


def test_a_frequent_pair_keeps_its_best_relation_under_the_threshold():
    schema = load_schema("characters")
    book, characters = make_book()
    _, where = book_pairs(book, characters)
    by_sentence = {(w.sentence, w.head, w.tail): w.id for w in where}
    preds = [  # Anna/Ben meet twice, each time a weak guess; Carl/Ben once
        prediction(by_sentence[(0, "anna", "ben")], "friend_of", 0.3, {"friend_of": 0.3, "enemy_of": 0.2}),
        prediction(by_sentence[(2, "anna", "ben")], "enemy_of", 0.25, {"enemy_of": 0.25, "friend_of": 0.2}),
        prediction(by_sentence[(2, "carl", "ben")], "enemy_of", 0.2, {"enemy_of": 0.2}),
    ]
    assert aggregate_edges(book, where, preds, schema, threshold=0.5) == []
    # the book's 5 pair sentences: Anna/Ben 2, Carl/Anna 2 (not classified here), Carl/Ben 1
    assert aggregate_edges(book, where, preds, schema, threshold=0.5, frequent=0.5) == []  # 2 of 5 < 50%
    edges = aggregate_edges(book, where, preds, schema, threshold=0.5, frequent=0.4)
    assert [(e.source, e.relation, e.target) for e in edges] == [("anna", "friend_of", "ben")]  # (0.3 + 0.2) / 2
    assert edges[0].confidence == pytest.approx(0.25) and edges[0].support == 1


def test_a_frequent_pair_may_take_a_relation_no_sentence_answered_first():
    schema = load_schema("characters")
    book, characters = make_book()
    _, where = book_pairs(book, characters)
    by_sentence = {(w.sentence, w.head, w.tail): w.id for w in where}
    preds = [  # every Anna/Ben sentence answers "no relation" first and friend_of second
        prediction(by_sentence[(0, "anna", "ben")], "no_relation", 0.6, {"no_relation": 0.6, "friend_of": 0.3}),
        prediction(by_sentence[(2, "anna", "ben")], "no_relation", 0.5, {"no_relation": 0.5, "friend_of": 0.4,
                                                                         "enemy_of": 0.1}),
    ]
    assert aggregate_edges(book, where, preds, schema, threshold=0.2) == []  # no top answer, so no plain edge
    edges = aggregate_edges(book, where, preds, schema, threshold=0.5, frequent=0.4)
    assert [(e.source, e.relation, e.target) for e in edges] == [("anna", "friend_of", "ben")]
    edge = edges[0]
    assert edge.confidence == pytest.approx(0.35) and edge.support == 0
    # the evidence is the sentences that rated friend_of highest, best first
    assert [(e.text, e.confidence) for e in edge.evidence] == [(SENTENCES[2], 0.4), (SENTENCES[0], 0.3)]
    assert edge.routes == {"slm": 0, "llm": 0, "merged": 0}  # routes count supporting mentions: none here


def test_a_mention_rates_only_its_five_most_probable_labels():
    schema = load_schema("characters")
    book, characters = make_book()
    _, where = book_pairs(book, characters)
    by_sentence = {(w.sentence, w.head, w.tail): w.id for w in where}

    def edges_with_parent_of_ranked(rank: int) -> list[tuple]:
        # Carl/Anna meet in 2 of the book's 5 pair sentences; only sentence 4 states a relation in words
        # ("father", a parent_of trigger), and the guide ranks parent_of `rank`-th of its whole distribution
        others = ["no_relation", "enemy_of", "friend_of", "sibling_of", "spouse_of"]
        ranked = others[:rank - 1] + ["parent_of"] + others[rank - 1:]
        whole = {label: p for label, p in zip(ranked, (0.5, 0.2, 0.1, 0.08, 0.07, 0.05))}
        preds = [prediction(by_sentence[(s, "carl", "anna")], "no_relation", 0.5, dict(reversed(whole.items())))
                 for s in (2, 4)]  # listed least probable first: the rank is by probability, not by order
        return [(e.source, e.relation, e.target)
                for e in aggregate_edges(book, where, preds, schema, threshold=0.5, triggers=True, frequent=0.4)]

    assert edges_with_parent_of_ranked(5) == [("carl", "parent_of", "anna")]
    assert edges_with_parent_of_ranked(6) == []


def test_chapter_graphs_hold_only_each_chapters_characters_and_evidence(tmp_path):
    from dataclasses import replace

    from collab.book.chapter_graphs import write_chapter_graphs
    from collab.book.graph import read_graph_json

    book, characters = make_book()
    # Sentences 3 and 4 (the second paragraph) become chapter 2.
    cut = book.sentences[3].start
    book.chapters = [Chapter(1, "Chapter 1", 0, cut), Chapter(2, "Chapter 2", cut, len(book.text))]
    book.sentences = [replace(s, chapter=1 if s.index < 3 else 2) for s in book.sentences]
    _, where = book_pairs(book, characters)
    by_sentence = {(w.sentence, w.head, w.tail): w.id for w in where}
    preds = [prediction(by_sentence[(0, "anna", "ben")], "friend_of", 0.8, {"friend_of": 0.8}),
             prediction(by_sentence[(2, "anna", "ben")], "no_relation", 0.9, {"no_relation": 0.9}),
             prediction(by_sentence[(2, "carl", "anna")], "no_relation", 0.9, {"no_relation": 0.9}),
             prediction(by_sentence[(2, "carl", "ben")], "no_relation", 0.9, {"no_relation": 0.9}),
             prediction(by_sentence[(4, "carl", "anna")], "parent_of", 0.9, {"parent_of": 0.9})]
    schema = load_schema("characters")
    def edges_for(named, sentences):
        return aggregate_edges(book, sentences, preds, schema, threshold=0.3)

    index = write_chapter_graphs(book, characters, where, edges_for, {"book": "fixture.txt"}, tmp_path,
                                 ["json", "csv"])
    assert [(row["chapter"], row["characters"], row["edges"]) for row in index] == [(1, 3, 1), (2, 2, 1)]
    assert json.loads((tmp_path / "chapters" / "index.json").read_text()) == index
    first, second = (read_graph_json(tmp_path / row["folder"] / "graph.json") for row in index)
    assert {(u, k, v) for u, v, k in first.edges(keys=True)} == {("anna", "friend_of", "ben")}
    assert {(u, k, v) for u, v, k in second.edges(keys=True)} == {("carl", "parent_of", "anna")}
    assert dict(second.nodes(data="mentions")) == {"anna": 2, "carl": 1}   # this chapter's mentions only
    assert second.graph["chapter"] == 2 and (tmp_path / "chapters" / "002" / "edges.csv").is_file()
