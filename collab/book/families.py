"""Family ties that the characters' names state: two characters of one surname who meet are kin.

Novels name their families by surname ("Mr. and Mrs. Weston", "Godfrey Cass" and his father "Squire Cass"),
and a book rarely says in one sentence what every reader knows from the names, so a guide that reads one
sentence at a time misses most of these ties. Here every pair of characters who share a surname and are named
together in some sentence gets a family edge, its tie read from their titles:

- an Aunt or Uncle is a relative;
- "Mrs. John Dashwood" is the wife of "John Dashwood";
- a Mrs. known by the surname alone and a Mr. or officer known by it alone are husband and wife, and so are a
  Lady and a Sir or Lord ("Lady Lucas" and "Sir William Lucas"; Lady Elliot's husband is Sir Walter, not the
  Mr. Elliot of the same book);
- a Mr., Mrs., Lady, Squire, General or Colonel known by the surname alone, or a Sir, is the parent of a
  relative with a given name ("Mrs. Thorpe", "Isabella Thorpe"), since the book calls them by what their
  children call them; a young man is often "Mr. Martin" too, so only the form the book uses most (the
  character's name) counts;
- two given names are siblings; two elders of one sex are relatives.

The other way round, two characters who go by different surnames are not parent and child, nor siblings, unless
one is a Mrs. or Lady who may have married out of the family (`unlikely_kin`, which the edges stage gives
aggregate_edges): the guide reads "her father" in a sentence about someone else's father as such a tie.

The book's own words were tried as a tie-breaker (the family label whose trigger words stand in most of the
pair's sentences) and typed worse on the Massey dev novels: "her father" in a sentence naming two sisters is
someone else's father. Two forms of one given name ("Lizzy" and "Elizabeth Bennet", left apart by the
characters stage) are one person and get no edge, and so may be a bare "Mr. Gargery" or "Master Bates" and a
given-named man of that name (Joe Gargery, Charley Bates). A pair the guide already gave a family edge keeps it.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Callable, Iterable

from ..schema import Schema
from .characters import FORMAL, RANKS, TITLES, given_names, nicknames, parse_name, plain_name
from .pairs import PairMention
from .records import BookText, Character, Edge, Evidence
from .triggers import trigger_patterns

FAMILY = ("parent_of", "sibling_of", "spouse_of", "relative_of")
# A wife's title and her husband's: Sir Walter Elliot's wife is Lady Elliot, Mr. Elliot's Mrs. Elliot.
HUSBANDS = {"Mrs": frozenset({"Mr", *RANKS}), "Madame": frozenset({"Monsieur", "Mr"}),
            "Lady": frozenset({"Sir", "Lord"}), "Dame": frozenset({"Sir"})}
WIVES = frozenset(HUSBANDS)
# Titles a family's father or mother goes by without a given name; a junior officer's rank is not one of them,
# since "Captain Tilney" is the General's son. A Sir is the head of his family with his given name too ("Sir
# Walter Elliot"); a Lord with one is a younger son ("Lord Henry Wotton").
ELDERS = WIVES | {"Mr", "Sir", "Lord", "Monsieur", "Squire", "General", "Colonel"}
KIN_TITLES = frozenset({"Aunt", "Uncle"})
# Russian and Polish women bear the feminine form of the family name in translations too: Natasha Rostova is
# Nikolai Rostov's sister, Anna Karenina Karenin's wife.
SLAVIC_MASCULINE = {"ova": "ov", "eva": "ev", "ina": "in", "skaya": "sky", "tskaya": "tsky", "ska": "ski"}
SLAVIC_FEMININE = re.compile(r"(?<=[a-z]{3})(tskaya|skaya|ova|eva|ina|ska)$")
# How often the tie is right on the Massey dev novels (BENCHMARKS.md, books), measured on the rule as first
# written: 9 of the 12 edges it added between characters the gold dyads name are gold relations; read by hand
# against the novels, 48 of all 66 state the right tie (and 64 join kin: the other two join two names of one
# person).
CONFIDENCE = 0.7


def _forms(character: Character) -> list[tuple[str | None, tuple[str, ...]]]:
    return [parse_name(name) for name in (character.name, *character.aliases)]


def _surnames(character: Character) -> set[str]:
    """Last words of the forms that carry a surname: two words ("Jane Fairfax") or a title and one ("Mr. Weston"),
    unless the title goes before given names too and the word is one ("Lady Catherine" is no Catherine Morland's
    kin)."""
    found = set()
    for title, names in _forms(character):
        last = plain_name(names[-1]) if names and names[-1][0].isupper() else None
        if last and (len(names) > 1 or title and not (TITLES[title][1] and last in given_names())):
            found.add(SLAVIC_FEMININE.sub(lambda m: SLAVIC_MASCULINE[m[1]], last))
    return found


def _given(character: Character) -> str | None:
    """The given name of a full name; not a Mrs.'s, which is her husband's ("Mrs. John Dashwood")."""
    title, names = parse_name(character.name)
    return plain_name(names[0]) if len(names) > 1 and title != "Mrs" else None


def _same_person(a: Character, b: Character) -> bool:
    """Whether the two may be one person the characters stage left apart: two forms of one given name ("Lizzy"
    and "Elizabeth Bennet", "Charley" and "Charles"), or a bare "Mr. Gargery" or "Master Bates" beside a man with a
    given name and no other title, since the stage joins a "Mr." to the one man of that name it fits and leaves it
    alone when two fit (Joe and Joseph Gargery; Charley Bates and Master Charles Bates)."""
    first, second = _given(a), _given(b)
    if first and second:
        return first == second or bool(_spellings(second) & {n for f in _spellings(first)
                                                             for n in nicknames().get(f, ())})
    for mister, other in ((a, b), (b, a)):
        title, names = parse_name(mister.name)
        given_man = other.gender == "m" and _given(other) is not None and parse_name(other.name)[0] in (None, title)
        if title in ("Mr", "Master") and len(names) == 1 and given_man:
            return True
    return False


def _spellings(name: str) -> set[str]:
    """A given name and its other spellings where it ends in -ie, -ey or -y, which the nickname table holds in one
    spelling only: Dickens' Charley Bates is a Charlie, so Master Charles Bates may be him."""
    stem = re.sub(r"(?:ie|ey|y)$", "", name)
    return {name} if stem == name or len(stem) < 3 else {stem + ending for ending in ("ie", "ey", "y")}


def _by_titles(a: Character, b: Character) -> tuple[str, Character, Character]:
    """The tie the two names state."""
    (ta, na), (tb, nb) = parse_name(a.name), parse_name(b.name)
    if {ta, tb} & KIN_TITLES:    # the name the book uses most: Amy March is "Aunt Amy" only to Meg's children
        return "relative_of", a, b
    for (wife_title, wife_names), other in (((ta, na), b), ((tb, nb), a)):
        if wife_title == "Mrs" and len(wife_names) > 1 and any(n == wife_names for _, n in _forms(other)):
            return "spouse_of", a, b
    bare_a, bare_b = len(na) == 1, len(nb) == 1
    for (wife, wife_bare), (husband, husband_bare) in (((ta, bare_a), (tb, bare_b)), ((tb, bare_b), (ta, bare_a))):
        if wife in HUSBANDS and wife_bare and husband in HUSBANDS[wife] and (husband_bare or husband in FORMAL):
            return "spouse_of", a, b
    elder_a = ta in ELDERS and bare_a or ta == "Sir"
    elder_b = tb in ELDERS and bare_b or tb == "Sir"
    if elder_a != elder_b:
        return ("parent_of", a, b) if elder_a else ("parent_of", b, a)
    return ("sibling_of", a, b) if not elder_a else ("relative_of", a, b)


def unlikely_kin(characters: Iterable[Character]) -> Callable[[str, str, str], bool]:
    """Whether the names rule out a guide's parent_of or sibling_of key: both characters go by a surname and the
    surnames differ, and neither is a Mrs. or Lady, who may have married out of her family ("Mrs. Weston",
    Frank Churchill's stepmother)."""
    by_id = {c.id: c for c in characters}
    surnames = {c.id: _surnames(c) for c in by_id.values()}
    married = {c.id for c in by_id.values() if {title for title, _ in _forms(c)} & WIVES}

    def ruled_out(label: str, source: str, target: str) -> bool:
        return (label in ("parent_of", "sibling_of") and bool(surnames.get(source)) and bool(surnames.get(target))
                and not surnames[source] & surnames[target] and not {source, target} & married)
    return ruled_out


def family_edges(book: BookText, characters: Iterable[Character], where: list[PairMention], schema: Schema,
                 guide_edges: list[Edge], *, evidence_per_edge: int = 3) -> list[Edge]:
    """Edges for the kin that share a surname; `guide_edges` are the guide's, whose family pairs are left alone."""
    if not set(FAMILY) <= set(schema.label_names):
        return []
    patterns = trigger_patterns(schema)
    sentences: dict[frozenset[str], list[PairMention]] = defaultdict(list)
    for mention in where:
        sentences[frozenset((mention.head, mention.tail))].append(mention)
    has_family = {frozenset((e.source, e.target)) for e in guide_edges if e.relation in FAMILY}
    people = [c for c in characters if not c.narrator]
    surnames = {c.id: _surnames(c) for c in people}
    edges = []
    for i, a in enumerate(people):
        for b in people[i + 1:]:
            pair = frozenset((a.id, b.id))
            if not (surnames[a.id] & surnames[b.id]) or pair not in sentences or pair in has_family \
                    or _same_person(a, b):
                continue
            mentions = sentences[pair]
            label, head, tail = _by_titles(a, b)
            label, source, target, directed = schema.canonical(label, head.id, tail.id)
            # No guide answer supports the edge (support 0); as evidence, the pair's sentences that word the tie
            # ("his wife") come first.
            worded = patterns.get(label)
            shown = sorted(mentions, key=lambda m: worded is None or worded.search(book.text, m.start, m.end) is None)
            evidence = [Evidence(book.text[m.start:m.end], m.chapter, m.start, m.end, CONFIDENCE)
                        for m in shown[:evidence_per_edge]]
            edges.append(Edge(source, target, label, CONFIDENCE, 0, evidence, {"slm": 0, "llm": 0, "merged": 0},
                              directed, basis="names"))
    return edges
