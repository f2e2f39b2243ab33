"""Character pairs co-mentioned in a sentence (or a small window of sentences), as Pair records to classify.

A pair's text is the sentence (or window) alone, with mention offsets relative to it, so the guide sees the
same kind of input it was trained on. The pair id carries where it came from: `s<first sentence>:<a>|<b>`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..data import Mention, Pair
from .records import BookText, Characters, CharacterMention


@dataclass(frozen=True, slots=True)
class PairMention:
    """Where a Pair came from in the book: the two characters and the book offsets of the text it shows."""

    id: str
    head: str            # Character.id of pair.head
    tail: str            # Character.id of pair.tail
    sentence: int        # index of the window's first sentence
    chapter: int
    start: int           # book offsets of pair.text
    end: int
    meets: int           # windows naming this character pair in the whole book, before max_pair_mentions


def _evenly(items: list, limit: int) -> list:
    """At most `limit` items spread over the whole list, so a capped pair keeps evidence from every part
    of the book, not only its first chapters."""
    if limit <= 0 or len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def book_pairs(book: BookText, characters: Characters, *, window: int = 0,
               max_pair_mentions: int = 0) -> tuple[list[Pair], list[PairMention]]:
    """One Pair per pair of distinct characters per sentence window, head = the character mentioned first.

    `window` = 0 pairs characters of the same sentence; w > 0 also pairs characters up to w sentences apart
    within one paragraph (a window is reported once, at its first sentence). `max_pair_mentions` > 0 keeps
    at most that many windows per character pair, spread evenly over the book: the cost of the relation
    stage then grows with the number of pairs, not with how often two main characters meet.
    """
    by_sentence: dict[int, list[CharacterMention]] = defaultdict(list)
    for mention in characters.mentions:
        by_sentence[mention.sentence].append(mention)
    sentences = book.sentences
    found: dict[tuple[str, str], list[tuple[int, int, CharacterMention, CharacterMention]]] = defaultdict(list)
    for first in sorted(by_sentence):
        last = first
        while (last + 1 < len(sentences) and last + 1 - first <= window
               and sentences[last + 1].paragraph == sentences[first].paragraph):
            last += 1
        firsts: dict[str, CharacterMention] = {}
        for index in range(first, last + 1):
            for mention in sorted(by_sentence.get(index, ()), key=lambda m: m.start):
                firsts.setdefault(mention.character, mention)
        ordered = sorted(firsts.values(), key=lambda m: m.start)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1:]:
                # A wider window repeats the pairs of the sentences inside it; report each pair at the window
                # starting where its first mention is, so nothing is counted twice.
                if a.sentence != first:
                    continue
                key = (min(a.character, b.character), max(a.character, b.character))
                found[key].append((first, last, a, b))
    pairs: list[Pair] = []
    where: list[PairMention] = []
    for key in sorted(found):
        for first, last, a, b in _evenly(found[key], max_pair_mentions):
            start, end = sentences[first].start, sentences[last].end
            text = book.text[start:end]
            pair_id = f"s{first}:{key[0]}|{key[1]}"
            pairs.append(Pair(id=pair_id, text=text,
                              head=Mention(a.text, a.start - start, a.end - start, "PER"),
                              tail=Mention(b.text, b.start - start, b.end - start, "PER")))
            where.append(PairMention(pair_id, a.character, b.character, first, sentences[first].chapter,
                                     start, end, len(found[key])))
    return pairs, where
