"""The gold sets written for collab (benchmarks/gold/): they load, and they agree with each other."""
from __future__ import annotations

from pathlib import Path

from collab.book.graph_eval import load_gold
from collab.data import read_pairs
from collab.schema import load_schema

GOLD = Path(__file__).resolve().parent.parent / "benchmarks" / "gold"
GRAPH = GOLD / "pride_and_prejudice_ch1-6.json"
PAIRS = GOLD / "pride_and_prejudice_ch1-6.pairs.jsonl"


def _character_of(graph: dict) -> dict[str, str]:
    """Gold character id by every name and alias."""
    return {name: c["id"] for c in graph["characters"] for name in [c["name"], *c["aliases"]]}


def test_the_sentence_pairs_are_schema_valid_and_name_two_gold_characters():
    schema = load_schema("characters")
    character_of = _character_of(load_gold(GRAPH))
    pairs = list(read_pairs(PAIRS, schema=schema, require_label=True))
    assert len({p.id for p in pairs}) == len(pairs) == 65
    for pair in pairs:
        head, tail = character_of[pair.head.text], character_of[pair.tail.text]
        assert head != tail and head in pair.id and tail in pair.id
    positives = [p for p in pairs if p.relation != schema.negative]
    assert len(positives) == 16  # most sentences naming two characters state no relation between them


def test_a_sentence_level_family_tie_is_a_tie_of_the_gold_graph():
    """A sentence may say less than the chapters do (a courtship read as acquaintance), never something else:
    each sibling or spouse stated in a sentence is in the graph."""
    graph = load_gold(GRAPH)
    character_of = _character_of(graph)
    ties = {(frozenset((r["head"], r["tail"])), r["label"]) for r in graph["relations"]}
    family = [p for p in read_pairs(PAIRS, require_label=True) if p.relation in ("sibling_of", "spouse_of")]
    assert family
    for pair in family:
        assert (frozenset((character_of[pair.head.text], character_of[pair.tail.text])), pair.relation) in ties
