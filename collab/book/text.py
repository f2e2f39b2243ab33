"""Book text, the first book stage: read a plain-text novel, strip the Project Gutenberg wrapper, and find its
chapters, paragraphs and sentences as character offsets into one normalised string.

Everything here is rule-based and single-pass so that a 1 MB novel splits in a fraction of a second; the rules
are tuned on 19th-century Gutenberg prose (hard-wrapped lines, `--` dashes, straight or curly quotes), and a text
with one paragraph a line splits as its hard-wrapped copy would.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import BookError, BookText, Chapter, Sentence

# Later stages (NER, relation prompts) need bounded input; semicolon chains in older prose run far past this.
MAX_SENTENCE_CHARS = 1000

# Upper- and lower-case Latin letters, accented ones included ("Ántonia", "Łucja"), for the patterns that read
# capitalised names; Python's re has no letter-case classes.
UPPER = "".join(c for c in map(chr, range(0x250)) if c.isupper())
LOWER = "".join(c for c in map(chr, range(0x250)) if c.islower() and c not in "ªµº")

# Markers must open their own line; the header ends at the last start marker (old texts have both the
# `*END*THE SMALL PRINT!` line and a `*** START OF` line), the footer begins at the first end marker.
_HEADER_END = re.compile(
    r"^[ \t]*(?:\*{3}[ \t]*START OF (?:THE|THIS) PROJECT GUTENBERG\b|\*[ \t]*END[ \t]*\*[ \t]*THE SMALL PRINT\b).*$",
    re.I | re.M)
# "End of ... Project Gutenberg" is plain prose, so it only counts at the start of a paragraph.
_FOOTER_START = re.compile(
    r"^[ \t]*\*{3}[ \t]*END OF (?:THE|THIS) PROJECT GUTENBERG\b"
    r"|(?:\A|\n[ \t]*\n)[ \t]*End of (?:the )?Project Gutenberg\b", re.I | re.M)
_LINE_BREAKS = re.compile(r"(?:[ \t]*\n)*")
_BLANK_LINES = re.compile(r"[ \t]*\n(?:[ \t]*\n)+")
_NEWLINES = re.compile(r"(?:[ \t]*\n)+")
# Gutenberg wraps its lines at about 70 characters and leaves a blank line between paragraphs; many other texts
# (exports of ebooks and word processors, CONAN's stories) put each paragraph on one long line, with or without a
# blank line between. A book with at least _LONG_SHARE of its non-blank lines longer than _LONG_LINE characters is
# of that second kind, and there every line break ends a paragraph.
_LONG_LINE, _LONG_SHARE = 120, 0.1

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Bytes that never occur in text (everything below 0x20 but tab, newline, form feed, carriage return; and DEL).
_TEXT_BYTES = bytes([9, 10, 12, 13, 27]) + bytes(range(32, 127)) + bytes(range(128, 256))
_SNIFF_BYTES = 65536

# A heading may carry Markdown's marks ("## Chapter 1"), as texts exported from notes and ebook tools do.
_MARKDOWN = r"(?:#{1,6}[ \t]+)?"
_HEADING = re.compile(
    _MARKDOWN + r"(?P<key>chapter|chap\.|stave|letter|volume|vol\.|book|part)\s+"
    r"(?P<num>(?:the\s+)?[^\W_]+(?:-[^\W_]+)?)(?:\s*(?:[.:—–]|--)\s*.*)?", re.I)
_KEY_ONLY = re.compile(_MARKDOWN + r"(?:chapter|stave)", re.I)  # "CHAPTER" with its number on the next line
# A numeral alone ("IV.") or before a title in capitals ("IV. THE MEETING", "4.—THE MEETING"): heading lines of
# books that number their chapters without the word. A title in lower case is more often a numbered list's item.
_BARE_NUMBER = re.compile(_MARKDOWN + r"(?P<num>[IVXLCDM]+|\d{1,3})"
                          r"(?:\.?|(?:\.[ \t]*(?:—|–|--)?|[ \t]*(?:—|–|--|:))[ \t]*[\"'“‘(_]*[A-Z][^\na-z]{0,60})")
_ROMAN = re.compile(r"(?=[MDCLXVI])M{0,4}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})", re.I)
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_NUMBER_WORDS = frozenset("""
    one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen
    eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred
    first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth
    fifteenth sixteenth seventeenth eighteenth nineteenth twentieth thirtieth fortieth fiftieth sixtieth
    seventieth eightieth ninetieth hundredth last""".split())
# Bracketed editorial matter of transcribed editions: picture captions, footnotes, sidenotes, transcriber's notes.
# A caption repeats a line of the story and a footnote is the editor's, so neither makes sentences; a caption that
# is a heading ("[Illustration: CHAPTER I.]", from editions that printed headings on plates) is kept as one.
_NOTE = re.compile(r"\[(?:illustration|footnote|sidenote|transcriber['’]?s? note)\b[:.]?", re.I)
_BRACKET = re.compile(r"[\[\]]")
_NOTE_CAPTION_TRIM = " \t\n_:"
_MAX_NOTE_CHARS = 5000
# Front matter written about the book rather than in it: a preface or an introduction names the characters beside
# critics and kings ("Ahab" in Jane Eyre's preface). Before the first of several chapters, a line with such a
# heading makes all the text up to that chapter front matter, which gets no sentences. A prologue is the story.
_FRONT_MATTER = re.compile(r"^[ \t#_*]*(?:the\s+)?(?:(?:author|editor|translator|transcriber)['’]?s\s+)?"
                           r"(?:preface|introduction|foreword|dedication|contents|notes?|advertisement|memoir|"
                           r"biographical\s+notice)\b[^\n]{0,60}$", re.I | re.M)
_CHAPTER_KEYS = ("chapter", "chap.", "stave", "letter")  # letters are the chapters of epistolary novels
_MAX_HEADING_LINE = 80
_MAX_TITLE_LINE = 60

# A sentence end: an ellipsis, a run of . ! ? (or a dash, which only ends a sentence before a closing quote),
# then closing quotes or brackets, then whitespace. Whether it really ends a sentence is decided in Python.
_END = re.compile(r"(\.(?:[ \t]?\.){2,}|[.!?…]+|--+|—+)([\"'”’»)\]_*]*)\s+")
_OPENERS = "\"'“‘«([_"
_QUOTES = "\"'”’»"
_ABBREVIATIONS = frozenset(
    "mr mrs messrs ms mme mlle dr st col capt gen lt lieut sgt maj rev prof hon gov jr sr mt ft vol viz vs cf ch pp"
    .split())
# `"Is it?" I asked.` and `"Good!" Holmes cried.`: the quote is one sentence with its speech tag.
_SPEECH_TAG = re.compile(
    rf"[\"'“‘«(_]*(?:I|[{UPPER}][{LOWER}]+)\s+(?:said|asked|cried|answered|replied|returned|remarked|murmured|"
    r"whispered|exclaimed|protested|suggested|observed|continued|added|inquired|enquired|ejaculated|shouted|called|"
    r"repeated|interrupted|rejoined|retorted|demanded|responded|began|resumed|pursued|urged|gasped|sighed|laughed|"
    r"groaned|faltered|stammered|muttered|declared|insisted|explained|persisted|echoed|screamed|sobbed|thought)\b")
_WORD_CHAR = re.compile(r"[^\W_]")


def strip_gutenberg(text: str) -> tuple[str, dict[str, Any]]:
    """Remove a Project Gutenberg header and licence footer; the record says how many characters each took."""
    footer = _FOOTER_START.search(text)
    limit = footer.start() if footer else len(text)
    header_end = max((m.end() for m in _HEADER_END.finditer(text, 0, limit)), default=None)
    if header_end is None and footer is None:
        return text, {}
    start = _LINE_BREAKS.match(text, header_end, limit).end() if header_end is not None else 0
    stripped: dict[str, Any] = {}
    if header_end is not None:
        stripped["gutenberg_header"] = start
    end = limit
    if footer is not None:
        while end > start and text[end - 1].isspace():
            end -= 1
        stripped["gutenberg_footer"] = len(text) - end
    return text[start:end], stripped


def read_book(path: str | Path) -> BookText:
    """Read a plain-text book (UTF-8, any newline convention), strip Gutenberg matter, split it."""
    data = Path(path).read_bytes()
    text, stripped = strip_gutenberg(_normalise_newlines(_decode(data, str(path))))
    if not text.strip():
        raise BookError(f"{path}: empty book")
    return split_book(text, str(path), stripped)


def split_book(text: str, path: str = "<text>", stripped: dict[str, Any] | None = None) -> BookText:
    """Chapters, paragraphs and sentences of a cleaned book; newlines are normalised first, offsets index that."""
    text = _normalise_newlines(text)
    kept = _outside_notes(text)
    blocks = _classify(text, kept)
    chapter_numbers: dict[int, int] = {}
    chapters: list[Chapter] = []
    heads = [i for i, block in enumerate(blocks) if block.kind == "chapter"]
    starts = [_chapter_start(blocks, i) for i in heads]
    first = starts[0] if starts else len(text)
    front_matter = first if len(starts) >= 2 and _FRONT_MATTER.search(text, 0, first) else 0
    if any(text[start:min(end, first)].strip() for start, end in kept if start < first):
        chapters.append(Chapter(0, "", 0, first))
    elif starts:
        starts[0] = 0  # chapters tile the text, leading blank lines included
    for number, (i, start) in enumerate(zip(heads, starts), 1):
        chapter_numbers[i] = number
        chapters.append(Chapter(number, blocks[i].title, start, starts[number] if number < len(starts) else len(text)))

    sentences: list[Sentence] = []
    chapter, paragraph = 0, -1
    for i, block in enumerate(blocks):
        if block.kind == "chapter":
            chapter = chapter_numbers[i]
        elif block.kind == "text" and block.start >= front_matter:
            spans = _sentence_spans(text, block.start, block.end)
            if spans and not (block.continued and sentences):
                paragraph += 1
            sentences += [Sentence(index, s, e, chapter, paragraph)
                          for index, (s, e) in enumerate(spans, len(sentences))]
    return BookText(path, text, chapters, sentences, dict(stripped or {}))


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _decode(data: bytes, path: str) -> str:
    if data.startswith(_UTF16_BOMS):  # Windows "Unicode" text: its NUL bytes do not make it binary
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise BookError(f"{path}: not valid UTF-16 text (bytes at offset {error.start})") from None
        if "\0" in text:
            raise BookError(f"{path}: binary file, not a plain-text book")
        return text
    sample = data[:_SNIFF_BYTES]
    if b"\0" in data or len(sample.translate(None, _TEXT_BYTES)) > 0.3 * len(sample):
        raise BookError(f"{path}: binary file, not a plain-text book")
    bom = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as error:
        # Older Gutenberg files and Windows editors write one byte a letter (ISO-8859-1, Windows-1252). A file
        # with no UTF-8 letter of more than one byte is one of those; one with some is damaged UTF-8, and
        # guessing there would garble every letter that is right.
        if not bom and not _UTF8_MULTIBYTE.search(data):
            try:
                return data.decode("cp1252")
            except UnicodeDecodeError:  # the five bytes Windows-1252 leaves undefined
                return data.decode("latin-1")
        offset = bom + error.start
        raise BookError(f"{path}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset})") from None


# --- chapters -------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Block:
    """A paragraph (see `_paragraph_breaks`), or the heading part of one."""

    start: int
    end: int
    kind: str               # text | chapter | volume | number (bare numeral) | other (a heading but no chapter)
    title: str = ""
    value: int = 0          # a bare numeral's value
    subtitled: bool = False
    continued: bool = False  # the rest of the previous block's paragraph, after a note inside it


def _paragraph_breaks(text: str) -> re.Pattern:
    """What separates this book's paragraphs: blank lines, or (one paragraph a line) every line break."""
    lines = [line for line in text.split("\n") if line.strip()]
    long = sum(len(line) > _LONG_LINE for line in lines)
    return _NEWLINES if lines and long >= _LONG_SHARE * len(lines) else _BLANK_LINES


def _classify(text: str, kept: list[tuple[int, int]]) -> list[_Block]:
    """The blocks of `text` within the `kept` stretches (see `_outside_notes`)."""
    blocks: list[_Block] = []
    starts = [start for start, _ in kept]
    position = 0
    for separator in [*_paragraph_breaks(text).finditer(text), None]:
        end = separator.start() if separator else len(text)
        i = max(bisect.bisect_right(starts, position) - 1, 0)
        first = len(blocks)
        while i < len(kept) and kept[i][0] < end:
            start, stop = max(position, kept[i][0]), min(end, kept[i][1])
            if start < stop:
                _add_block(text, start, stop, blocks)
            i += 1
        for before, block in zip(blocks[first:], blocks[first + 1:]):
            block.continued = before.kind == block.kind == "text"
        position = separator.end() if separator else end
    _keep_numeral_sequence(blocks)
    blocks = _absorb_subtitles(text, blocks)
    _drop_contents_entries(text, blocks)
    # Bare numerals are chapters only in a book without chapter headings (elsewhere they number sections), and
    # a book divided only into parts has its parts as chapters.
    has_chapters = any(block.kind == "chapter" for block in blocks)
    has_numerals = any(block.kind == "number" for block in blocks)
    for block in blocks:
        if block.kind == "number":
            block.kind = "other" if has_chapters else "chapter"
        elif block.kind == "volume" and not (has_chapters or has_numerals):
            block.kind = "chapter"
    return blocks


def _outside_notes(text: str) -> list[tuple[int, int]]:
    """The stretches of `text` outside bracketed notes, with the captions that are headings, in order."""
    kept: list[tuple[int, int]] = []
    position = 0
    for note in _NOTE.finditer(text):
        if note.start() < position:
            continue
        depth = 0
        # Brackets nest: "[Illustration: ... [_Copyright 1894_]]". An unclosed note is text.
        for bracket in _BRACKET.finditer(text, note.start(), note.start() + _MAX_NOTE_CHARS):
            depth += 1 if bracket.group() == "[" else -1
            if depth == 0:
                break
        if depth:
            continue
        kept.append((position, note.start()))
        caption_start, caption_end = note.end(), bracket.start()
        while caption_start < caption_end and text[caption_start] in _NOTE_CAPTION_TRIM:
            caption_start += 1
        while caption_end > caption_start and text[caption_end - 1] in _NOTE_CAPTION_TRIM:
            caption_end -= 1
        if caption_end - caption_start <= _MAX_HEADING_LINE and _looks_like_heading(text, caption_start, caption_end):
            kept.append((caption_start, caption_end))
        position = bracket.end()
    kept.append((position, len(text)))
    return [(start, end) for start, end in kept if start < end]


def _add_block(text: str, start: int, end: int, blocks: list[_Block]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end:
        return
    first_end = text.find("\n", start, end)
    first_end = end if first_end < 0 else first_end
    if first_end - start > _MAX_HEADING_LINE or not _looks_like_heading(text, start, first_end):
        blocks.append(_Block(start, end, "text"))
        return
    lines = _line_spans(text, start, end)
    i = 0
    while i < len(lines):
        found = _heading(text, lines, i)
        if found is None:
            break
        kind, used, value = found
        head_start, head_end = lines[i][0], lines[i + used - 1][1]
        i += used
        rest = i
        while rest < len(lines) and _heading(text, lines, rest) is None:
            rest += 1
        subtitle = lines[i:rest]
        subtitled = bool(subtitle) and _is_subtitle(text, subtitle)
        if subtitled:
            head_end, i = subtitle[-1][1], rest
        blocks.append(_Block(head_start, head_end, kind, " ".join(text[head_start:head_end].split()).lstrip("# "),
                             value, subtitled))
        if subtitle and not subtitled:
            break
    if i < len(lines):
        blocks.append(_Block(lines[i][0], end, "text"))


def _line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    while start < end:
        line_end = text.find("\n", start, end)
        line_end = end if line_end < 0 else line_end
        s, e = start, line_end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            spans.append((s, e))
        start = line_end + 1
    return spans


def _looks_like_heading(text: str, start: int, end: int) -> bool:
    return bool(_HEADING.fullmatch(text, start, end) or _KEY_ONLY.fullmatch(text, start, end)
                or _BARE_NUMBER.fullmatch(text, start, end))


def _heading(text: str, lines: list[tuple[int, int]], i: int) -> tuple[str, int, int] | None:
    """(kind, lines used, numeral value) when line i opens a heading."""
    start, end = lines[i]
    if end - start > _MAX_HEADING_LINE:
        return None
    used = 1
    if _KEY_ONLY.fullmatch(text, start, end) and i + 1 < len(lines):
        end, used = lines[i + 1][1], 2
    match = _HEADING.fullmatch(text, start, end)
    if match and _is_number(match["num"]):
        return ("chapter" if match["key"].lower() in _CHAPTER_KEYS else "volume"), used, 0
    match = _BARE_NUMBER.fullmatch(text, *lines[i])
    if match:
        value = _numeral_value(match["num"])
        if value:
            return "number", 1, value
    return None


def _is_number(token: str) -> bool:
    token = token.lower().split()[-1]  # "the first" → "first"
    return bool(token.isdigit() or _ROMAN.fullmatch(token)
                or all(word in _NUMBER_WORDS for word in token.split("-")))


def _numeral_value(token: str) -> int:
    if token.isdigit():
        return int(token)
    if not _ROMAN.fullmatch(token):
        return 0
    values = [_ROMAN_VALUES[c] for c in token]
    return sum(-v if v < nxt else v for v, nxt in zip(values, values[1:] + [0]))


def _is_subtitle(text: str, lines: list[tuple[int, int]]) -> bool:
    """Title lines under a heading in the same block: one short line, or up to three capitalised ones."""
    if len(lines) == 1 and lines[0][1] - lines[0][0] <= _MAX_TITLE_LINE:
        return True
    return len(lines) <= 3 and all(e - s <= _MAX_HEADING_LINE and _is_capitals(text[s:e]) for s, e in lines)


def _is_capitals(line: str) -> bool:
    return any(c.isalpha() for c in line) and not any(c.islower() for c in line)


def _keep_numeral_sequence(blocks: list[_Block]) -> None:
    """A bare numeral is a heading only as part of a run I, II, III... (restarting at I per volume)."""
    previous, accepted = 0, []
    for block in blocks:
        if block.kind == "number":
            if block.value in (previous + 1, 1):
                previous = block.value
                accepted.append(block)
            else:
                block.kind = "text"
    if len(accepted) < 3:
        for block in accepted:
            block.kind = "text"


def _absorb_subtitles(text: str, blocks: list[_Block]) -> list[_Block]:
    """`CHAPTER ONE` / blank / `PLAYING PILGRIMS` / blank / text: a one-line capitalised block between a heading
    and more text is the heading's title."""
    merged: list[_Block] = []
    for i, block in enumerate(blocks):
        previous = merged[-1] if merged else None
        line = text[block.start:block.end]
        if (previous is not None and previous.kind != "text" and not previous.subtitled and block.kind == "text"
                and i + 1 < len(blocks) and len(line) <= _MAX_TITLE_LINE and "\n" not in line
                and _is_capitals(line)):
            previous.end, previous.subtitled = block.end, True
            previous.title = f"{previous.title} {line}"
        else:
            merged.append(block)
    return merged


def _drop_contents_entries(text: str, blocks: list[_Block]) -> None:
    """A table of contents is a run of headings with no body between them: only a heading followed by text (or,
    for a volume, by a kept chapter) opens a chapter. Dropped entries stay out of the sentences as `other`."""
    for i in range(len(blocks) - 1, -1, -1):
        block = blocks[i]
        if block.kind == "text":
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        if following is None:
            kept = False
        elif block.kind == "volume":
            kept = following.kind != "other"
        elif block.kind == "chapter" and following.kind == "number":  # sections numbered I, II... under it
            kept = True
        else:
            after = blocks[i + 2] if i + 2 < len(blocks) else None
            kept = following.kind == "text" and not (
                after is not None and after.kind != "text" and _is_title_line(text, following))
        if not kept:
            block.kind = "other"


def _is_title_line(text: str, block: _Block) -> bool:
    """A contents entry's title on its own line: short, one line, no sentence punctuation at its end."""
    line = text[block.start:block.end]
    return len(line) <= _MAX_TITLE_LINE and "\n" not in line and line.rstrip("_*\"'”’)")[-1:] not in ".!?"


def _chapter_start(blocks: list[_Block], i: int) -> int:
    """A chapter opens at its heading, or at the VOLUME/PART headings right above it."""
    while i > 0 and blocks[i - 1].kind == "volume":
        i -= 1
    return blocks[i].start


# --- sentences ------------------------------------------------------------------------------------------------

def _sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    for match in _END.finditer(text, start, end):
        if _ends_sentence(text, match, end):
            spans.extend(_bounded(text, start, match.end(2)))
            start = match.end()
    spans.extend(_bounded(text, start, end))
    return [(s, e) for s, e in spans if _WORD_CHAR.search(text, s, e)]


def _ends_sentence(text: str, match: re.Match[str], end: int) -> bool:
    mark, closing = match[1], match[2]
    nxt = match.end()
    while nxt < end and text[nxt] in _OPENERS:
        nxt += 1
    if nxt >= end or not text[nxt].isupper():
        return False
    if mark == ".":
        return not _is_abbreviation(text, match.start())
    quoted = any(c in _QUOTES for c in closing)
    if mark[0] in "-—" and not quoted:
        return False
    return not (quoted and _SPEECH_TAG.match(text, match.end(), end))


def _is_abbreviation(text: str, period: int) -> bool:
    """Mr. / Dr. / St., an initial (`J. H. Watson`; not `I`), or a dotted form (`M.D.`, `i.e.`)."""
    start = period
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
        start -= 1
    word = text[start:period]
    return (word.lower() in _ABBREVIATIONS or "." in word
            or (len(word) == 1 and word.isupper() and word != "I"))


def _bounded(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Trim a sentence, cutting one over MAX_SENTENCE_CHARS at its last `;` or `:` (else whitespace) in reach."""
    spans = []
    while True:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end - start <= MAX_SENTENCE_CHARS:
            if start < end:
                spans.append((start, end))
            return spans
        limit = start + MAX_SENTENCE_CHARS
        cut = max(text.rfind(";", start, limit), text.rfind(":", start, limit)) + 1
        if cut <= start:
            cut = max(text.rfind(" ", start, limit), text.rfind("\n", start, limit))
        if cut <= start:
            cut = limit
        piece_end = cut
        while text[piece_end - 1].isspace():
            piece_end -= 1
        spans.append((start, piece_end))
        start = cut
