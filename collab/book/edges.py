"""Mention-level predictions → edge-level relations between characters.

How scores combine: every pair mention gives a distribution over the schema's labels for (head, tail). Each
label is first put in canonical form (Schema.canonical): an inverse label (child_of) becomes its forward label
with the two characters swapped, and a symmetric label is ordered by character id, so "A parent_of B" said in either
order lands on the same key. A relation is a lasting fact that a book states a few times among many
sentences where the two merely meet, so an edge's confidence is the mean of its key's TOP_K highest
probabilities over the pair's mentions (fewer when the pair has fewer; a mention that does not consider the
key gives 0): two or three clear statements make an edge, however many neutral sentences surround them, and
one stray guess among many mentions does not. `support` counts the mentions whose top answer was that key.
A pair keeps every key whose confidence reaches `threshold` and which is the top answer of at least one
mention, so a pair may carry several relations (spouse_of and enemy_of); its evidence is those mentions.

With `triggers` on, a sentence counts for a label only when it contains one of the label's trigger words
from the schema ("sister" for sibling_of): most sentences naming two characters state no relation, and a
guide trained on data with few negatives reads one into them anyway. Given the characters' mentions, a
possessed trigger ("my sister", "Mr. Wopsle's great-aunt") counts only for its possessor and the person it
names, and one used as a name or an address ("Mother", "Yes, father,") only for the one it calls; a possessed
trigger of a directed label also orders the pair ("Emma ... her father, Mr. Woodhouse": he is the parent, whichever
the sentence names first; triggers.py).

With `frequent` r > 0, a pair named together in at least that share of the book's pair sentences that kept no
relation keeps its most confident one anyway: characters who meet that often are related somehow (what a
co-occurrence graph assumes), and the guide's best answer is the best guess of how. A share, not a count,
so that one setting suits a short story and a long novel (a count chosen on novels keeps almost nothing of a
story). Here every key counts, top answer of a mention or not: a pair whose sentences each put "no relation"
first and friend_of second still has one relation the guide rates highest over them all (on Massey dev this
raised pair F1 from 0.278 to 0.297 and typed F1 from 0.129 to 0.134 over top answers only). Such an edge has
support 0, so no route counts (they count supporting mentions), and as evidence the sentences that rated it
highest.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..schema import Schema
from .pairs import PairMention
from .records import BookText, Characters, Edge, Evidence
from .triggers import TriggerWords

ROUTES = ("slm", "llm", "merged")
TOP_K = 3
# A mention rates only its five most probable labels: the thresholds above were tuned on Massey dev when guides
# stored their top five, and further down a guide's ranking a trigger word alone would let the frequent rule
# type a pair with a label the guide all but ruled out.
MENTION_LABELS = 5


@dataclass(slots=True)
class _Acc:
    considered: list[tuple[float, PairMention]] = field(default_factory=list)  # every mention that rated the key
    support: int = 0
    routes: Counter = field(default_factory=Counter)
    evidence: list[tuple[float, PairMention]] = field(default_factory=list)


def _pair(a: str, b: str) -> tuple[str, str]:
    """A character pair in one order, whichever way it was mentioned."""
    return (a, b) if a <= b else (b, a)


def aggregate_edges(book: BookText, where: list[PairMention], predictions: Iterable[dict[str, Any]],
                    schema: Schema, *, threshold: float = 0.3, triggers: bool = False, frequent: float = 0.0,
                    evidence_per_edge: int = 3, ruled_out: Callable[[str, str, str], bool] | None = None,
                    characters: Characters | None = None, words: TriggerWords | None = None) -> list[Edge]:
    """Edges from the prediction records (one per PairMention, matched by id). A (label, source, target) key
    that `ruled_out` rejects never becomes an edge, and a pair's other keys compete without it. The book's
    `characters` let the trigger words tell whose relation a possessed trigger is; `words`, the book's trigger
    words made once already (each chapter's graph uses the book's), stands for both."""
    by_id = {p["id"]: p for p in predictions}
    if triggers and words is None:
        words = TriggerWords(book, schema, characters)
    elif not triggers:
        words = None

    def reading(label: str, mention: PairMention) -> tuple[str, str] | None:
        return (mention.head, mention.tail) if words is None else words.reading(label, mention)

    acc: dict[tuple[str, str, str, bool], _Acc] = defaultdict(_Acc)
    pair_mentions: Counter = Counter()
    for mention in where:
        pred = by_id.get(mention.id)
        if pred is None:
            continue
        pair_mentions[_pair(mention.head, mention.tail)] += 1
        distribution = pred.get("distribution") or {pred["relation"]: pred["confidence"]}
        ranked = sorted(distribution.items(), key=lambda item: -item[1])[:MENTION_LABELS]
        for label, probability in ranked:
            if label == schema.negative or label == "long_tail" or not (pair := reading(label, mention)):
                continue
            acc[schema.canonical(label, *pair)].considered.append((probability, mention))
        if pred["relation"] in (schema.negative, "long_tail") or not (pair := reading(pred["relation"], mention)):
            continue
        top = acc[schema.canonical(pred["relation"], *pair)]
        top.support += 1
        top.routes[pred.get("route", "slm")] += 1
        top.evidence.append((pred["confidence"], mention))
    scored = []
    for key, a in acc.items():
        if ruled_out is not None and ruled_out(*key[:3]):
            continue
        mentions = pair_mentions[_pair(*key[1:3])]
        top_probabilities = sorted((p for p, _ in a.considered), reverse=True)[:TOP_K]
        scored.append((sum(top_probabilities) / min(TOP_K, mentions), key, a))
    kept = [item for item in scored if item[2].support and item[0] >= threshold]
    if frequent > 0:
        linked = {_pair(*key[1:3]) for _, key, _ in kept}
        # shares of all the book's pair windows, counted before max_pair_mentions capped the classified ones
        meets = meetings(where)
        often = frequent * sum(meets.values())
        best: dict[tuple[str, str], tuple] = {}
        for item in scored:
            pair = _pair(*item[1][1:3])
            if pair not in linked and meets[pair] >= often and item[0] > best.get(pair, (-1,))[0]:
                best[pair] = item
        kept += best.values()
    edges = []
    for confidence, (label, source, target, directed), a in kept:
        top = sorted(a.evidence or a.considered, key=lambda e: (-e[0], e[1].start))[:evidence_per_edge]
        evidence = [Evidence(book.text[m.start:m.end], m.chapter, m.start, m.end, round(p, 4)) for p, m in top]
        edges.append(Edge(source, target, label, round(confidence, 4), a.support, evidence,
                          {route: a.routes.get(route, 0) for route in ROUTES}, directed))
    return sorted(edges, key=edge_order)


def edge_order(edge: Edge) -> tuple:
    """Most confident first, then by characters and label, so output files are stable."""
    return -edge.confidence, edge.source, edge.target, edge.relation


def cooccurrence_edges(where: list[PairMention], *, min_support: int = 1) -> list[tuple[str, str, int]]:
    """The Renard-style baseline: an untyped edge for every pair co-mentioned at least `min_support` times."""
    return sorted((a, b, n) for (a, b), n in meetings(where).items() if n >= min_support)


def meetings(where: list[PairMention]) -> dict[tuple[str, str], int]:
    """How many sentence windows of the whole book name each character pair (before max_pair_mentions)."""
    return {_pair(m.head, m.tail): m.meets for m in where}
