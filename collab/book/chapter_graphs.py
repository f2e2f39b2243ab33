"""One graph per chapter, for readers who follow how ties form and change through a book.

A chapter's graph is built the way the book's is, from that chapter's share of the evidence only: its
characters are those named in the chapter (with the chapter's mention counts), its edges are made (same
settings, family ties included) from the pair mentions whose sentences lie in the chapter. So a relation
the book states once per chapter shows in each of those chapters, and a chapter where two characters only meet
has no edge between them. Files go to `chapters/<NNN>/` in the book's export formats, with `chapters/index.json`
listing every chapter's number, title, counts and folder.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ..files import atomic_write_text
from .graph import build_graph, write_exports
from .pairs import PairMention
from .records import BookText, Character, Characters, Edge


def write_chapter_graphs(text: BookText, characters: Characters, where: list[PairMention],
                         edges_for: Callable[[list[Character], list[PairMention]], list[Edge]],
                         meta: dict[str, Any], out_dir: Path, formats: Iterable[str]) -> list[dict[str, Any]]:
    """Write every chapter's graph under `out_dir/chapters/`; `edges_for(characters, pair sentences)` makes a
    graph's edges as the book's are made (stages.book_edges). Returns the index rows (also written to
    chapters/index.json)."""
    formats = list(formats)
    chapter_of_sentence = {s.index: s.chapter for s in text.sentences}
    mentions = Counter((chapter_of_sentence[m.sentence], m.character) for m in characters.mentions)
    by_chapter: dict[int, list[PairMention]] = {}
    for mention in where:
        by_chapter.setdefault(mention.chapter, []).append(mention)
    index = []
    for chapter in text.chapters:
        named = [replace(c, mentions=mentions[chapter.number, c.id]) for c in characters.characters
                 if mentions[chapter.number, c.id]]
        if not named:
            continue
        edges = edges_for(named, _chapter_meets(by_chapter.get(chapter.number, [])))
        folder = f"chapters/{chapter.number:03d}"
        graph = build_graph(named, edges, {**meta, "chapter": chapter.number, "chapter_title": chapter.title})
        write_exports(graph, out_dir / folder, formats)
        index.append({"chapter": chapter.number, "title": chapter.title, "characters": len(named),
                      "edges": len(edges), "folder": folder})
    atomic_write_text(out_dir / "chapters" / "index.json", json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return index


def _chapter_meets(where: list[PairMention]) -> list[PairMention]:
    """The chapter's pair sentences with `meets` counted in the chapter (of those classified), so that
    `--edge-frequent` is a share of the chapter, not of the book."""
    counts = Counter(frozenset((m.head, m.tail)) for m in where)
    return [replace(m, meets=counts[frozenset((m.head, m.tail))]) for m in where]
