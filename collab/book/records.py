"""The records the book stages pass along. Offsets are character offsets into `BookText.text` (the book after
Gutenberg stripping and newline normalisation), so every evidence span points back into one string."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class BookError(ValueError):
    """A book that cannot be processed (empty, binary, not UTF-8, no characters): one line naming the file."""


@dataclass(frozen=True, slots=True)
class Chapter:
    number: int          # 1-based, in reading order; 0 for text before the first heading
    title: str           # the heading line as written ("CHAPTER IV.", "Chapter 1"); "" for front matter
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Sentence:
    index: int
    start: int
    end: int
    chapter: int         # Chapter.number
    paragraph: int       # paragraph index over the whole book


@dataclass(slots=True)
class BookText:
    path: str
    text: str
    chapters: list[Chapter]
    sentences: list[Sentence]
    stripped: dict[str, Any] = field(default_factory=dict)  # what cleaning removed (Gutenberg header/footer)

    def sentence_text(self, sentence: Sentence) -> str:
        return self.text[sentence.start:sentence.end]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "text": self.text, "stripped": self.stripped,
                "chapters": [asdict(c) for c in self.chapters], "sentences": [asdict(s) for s in self.sentences]}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "BookText":
        return cls(record["path"], record["text"], [Chapter(**c) for c in record["chapters"]],
                   [Sentence(**s) for s in record["sentences"]], record.get("stripped", {}))


@dataclass(frozen=True, slots=True)
class CharacterMention:
    start: int
    end: int
    text: str
    sentence: int        # Sentence.index
    character: str       # Character.id
    kind: str = "name"   # name | title | narrator | pronoun | speaker | perspective ("you" in a perspective section)


@dataclass(slots=True)
class Character:
    id: str
    name: str                         # the most complete, most frequent form ("Elizabeth Bennet")
    aliases: list[str]                # every other surface form seen or given ("Lizzy", "Miss Bennet")
    mentions: int
    gender: str | None = None         # "f" | "m" | None when no cue
    narrator: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Characters:
    characters: list[Character]
    mentions: list[CharacterMention]

    def to_json(self) -> dict[str, Any]:
        return {"characters": [c.to_json() for c in self.characters],
                "mentions": [asdict(m) for m in self.mentions]}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "Characters":
        return cls([Character(**c) for c in record["characters"]],
                   [CharacterMention(**m) for m in record["mentions"]])


@dataclass(frozen=True, slots=True)
class Evidence:
    text: str
    chapter: int
    start: int
    end: int
    confidence: float


@dataclass(slots=True)
class Edge:
    """One typed relation between two characters. For directed labels `source` is HEAD ("source is <relation>
    of target"); for symmetric labels source < target by id, so each pair is stored once."""

    source: str
    target: str
    relation: str
    confidence: float
    support: int
    evidence: list[Evidence]
    routes: dict[str, int]            # {"slm": n, "llm": n, "merged": n}
    directed: bool = False
    basis: str = "guide"              # "guide": the sentences' predictions; "names": a shared surname (families.py)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "Edge":
        record = dict(record)
        record["evidence"] = [Evidence(**e) for e in record["evidence"]]
        return cls(**record)
