from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collab.book.records import BookError, BookText
from collab.book.text import MAX_SENTENCE_CHARS, read_book, split_book, strip_gutenberg
from collab.datasets import SharedMissing, shared_root

BODY = "CHAPTER I\n\nIt was a dark night. Mr. Holmes smiled.\n\nCHAPTER II\n\nThe end came soon."

HEADER = ("The Project Gutenberg EBook of A Dark Night, by Someone\n\n"
          "This eBook is for the use of anyone anywhere at no cost.\n\n"
          "*** START OF THIS PROJECT GUTENBERG EBOOK A DARK NIGHT ***\n\n\n\n")
FOOTER = ("\n\n\n\nEnd of the Project Gutenberg EBook of A Dark Night, by Someone\n\n"
          "*** END OF THIS PROJECT GUTENBERG EBOOK A DARK NIGHT ***\n\n"
          "***** This file should be named 1234.txt *****\n\nSection 1. General Terms of Use\n")


def sentences(text: str) -> list[str]:
    book = split_book(text)
    return [book.sentence_text(s) for s in book.sentences]


def titles(book: BookText) -> list[tuple[int, str]]:
    return [(c.number, c.title) for c in book.chapters]


# --- Gutenberg wrapper ---------------------------------------------------------------------------------------

def test_strip_gutenberg_removes_header_and_licence_footer():
    text = HEADER + BODY + FOOTER
    cleaned, removed = strip_gutenberg(text)
    assert cleaned == BODY
    assert removed == {"gutenberg_header": len(HEADER), "gutenberg_footer": len(FOOTER)}


def test_strip_gutenberg_old_small_print_variant_and_lowercase_markers():
    header = ("**The Project Gutenberg Etext of Emma**\n\n**Welcome To The World of Free Plain Vanilla Etexts**\n\n"
              "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n")
    footer = "\n\nEnd of Project Gutenberg's Emma, by Jane Austen\n"
    assert strip_gutenberg(header + BODY + footer)[0] == BODY
    lower = "*** start of the project gutenberg ebook emma ***\n" + BODY + "\n*** end of the project gutenberg ebook"
    assert strip_gutenberg(lower)[0] == BODY


def test_strip_gutenberg_small_print_in_the_footer_does_not_eat_the_book():
    footer = ("\n\nEnd of Project Gutenberg's Emma\n\n***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\n"
              "Why is this \"Small Print!\" statement here?\n\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*END*\n")
    cleaned, removed = strip_gutenberg(BODY + footer)
    assert cleaned == BODY
    assert removed == {"gutenberg_footer": len(footer)}


def test_strip_gutenberg_leaves_text_without_markers_unchanged():
    mentions = ("The Project Gutenberg edition was read aloud.\n\nProject Gutenberg's founder spoke, and at the\n"
                "end of Project Gutenberg talk we left.\n\nShe wrote *** START OF THE PROJECT GUTENBERG EBOOK *** "
                "on the board,\nand *** END OF THE PROJECT GUTENBERG EBOOK *** under it.\n")
    for text in (mentions, BODY, ""):
        assert strip_gutenberg(text) == (text, {})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    "*** START OF THE PROJECT GUTENBERG EBOOK X ***", "*** END OF THIS PROJECT GUTENBERG EBOOK X ***",
    "End of Project Gutenberg's X", "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*END*", "Project Gutenberg",
    "Body text.", " ", "\n", "\n\n"]), max_size=30))
def test_strip_gutenberg_returns_a_slice_and_counts_what_it_removed(pieces):
    text = "".join(pieces)
    cleaned, removed = strip_gutenberg(text)
    head = removed.get("gutenberg_header", 0)
    assert text[head:head + len(cleaned)] == cleaned
    assert head + len(cleaned) + removed.get("gutenberg_footer", 0) == len(text)


# --- reading -------------------------------------------------------------------------------------------------

def test_read_book_normalises_crlf_and_bom_and_strips_gutenberg(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + BODY + FOOTER).replace("\n", "\r\n").encode("utf-8"))
    book = read_book(path)
    assert book.text == BODY
    assert book.path == str(path)
    assert set(book.stripped) == {"gutenberg_header", "gutenberg_footer"}
    assert [c.title for c in book.chapters] == ["CHAPTER I", "CHAPTER II"]
    assert [book.sentence_text(s) for s in book.sentences] == [
        "It was a dark night.", "Mr. Holmes smiled.", "The end came soon."]


def test_read_book_normalises_bare_cr(tmp_path):
    path = tmp_path / "mac.txt"
    path.write_bytes(b"Chapter 1\r\rShe came.\rHe went.\r")
    book = read_book(path)
    assert "\r" not in book.text
    assert [book.sentence_text(s) for s in book.sentences] == ["She came.", "He went."]


def test_read_book_reads_utf16_with_bom(tmp_path):
    path = tmp_path / "unicode.txt"
    path.write_bytes("Chapter 1\r\n\r\nShe came.".encode("utf-16"))
    assert [s.start for s in read_book(path).sentences] == [len("Chapter 1\n\n")]


@pytest.mark.parametrize("data", [b"CHAPTER 1\n\nText\x00\x01\x02 here.", bytes(range(1, 32)) * 100],
                         ids=["nul-bytes", "control-bytes"])
def test_read_book_rejects_binary_files(tmp_path, data):
    path = tmp_path / "image.png"
    path.write_bytes(data)
    with pytest.raises(BookError, match=rf"^{re.escape(str(path))}: binary file, not a plain-text book$"):
        read_book(path)


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_read_book_reads_one_byte_encodings(tmp_path, encoding):
    path = tmp_path / "old.txt"
    text = "Chapter 1\n\nThe café was shut, said Hélène." + ("\u201cNo.\u201d" if encoding == "cp1252" else "")
    path.write_bytes(text.encode(encoding))
    assert read_book(path).text == text


def test_read_book_rejects_damaged_utf8_with_the_byte_offset(tmp_path):
    path = tmp_path / "damaged.txt"
    path.write_bytes("Chapter 1\n\nThe café was shut.".encode("utf-8") + b" Caf\xe9.")
    with pytest.raises(BookError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(byte 0xe9 at offset 34\)$"):
        read_book(path)
    path.write_bytes(b"\xef\xbb\xbfab\xff")  # a byte-order mark says UTF-8; the offset counts it
    with pytest.raises(BookError, match="at offset 5"):
        read_book(path)


@pytest.mark.parametrize("content", ["", "  \n\n\t\n", HEADER + FOOTER], ids=["empty", "whitespace", "licence-only"])
def test_read_book_rejects_empty_books(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BookError, match=rf"^{re.escape(str(path))}: empty book$"):
        read_book(path)


# --- chapters ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("heading", [
    "CHAPTER I", "CHAPTER IV.", "Chapter 1", "Chapter XII. The Return", "CHAPTER THE FIRST", "Chapter One",
    "CHAPTER TWENTY-ONE", "CHAPTER XXXVIII--CONCLUSION", "Chapter 9. The Light upon the Moor [Second Report]",
    "Chapter I: The Bertolini", "chap. iv", "   CHAPTER 3   ", "LETTER IV", "Letter 2",
])
def test_chapter_heading_styles(heading):
    book = split_book(f"Front matter.\n\n{heading}\n\nIt began here.\n\n{heading}\n\nAnd went on.")
    assert titles(book) == [(0, ""), (1, heading.strip()), (2, heading.strip())]
    assert sentences(f"{heading}\n\nIt began here.") == ["It began here."]


@pytest.mark.parametrize("heading", ["# Chapter 1", "## CHAPTER IV. The Return", "#### Chapter the First"])
def test_markdown_headings_are_chapters_titled_without_their_marks(heading):
    book = split_book(f"Front matter.\n\n{heading}\n\nIt began here.\n\n{heading}\n\nAnd went on.")
    assert titles(book) == [(0, ""), (1, heading.lstrip("# ")), (2, heading.lstrip("# "))]


@pytest.mark.parametrize("line", [
    "Part of the house was dark.", "Book two of the series was dull", "Chapter and verse", "CHAPTER",
    "Chapter 3 of the book was long", "IV is a number", "Volume: loud",
])
def test_lines_that_only_look_like_headings_are_text(line):
    book = split_book(f"It began here.\n\n{line}\n\nAnd went on.")
    assert titles(book) == [(0, "")]
    assert len(book.sentences) == 3


def test_volumes_are_not_chapters_and_numbering_runs_across_them():
    text = ("EMMA\n\nBy Jane Austen\n\nVOLUME I\n\nCHAPTER I\n\nOne.\n\nCHAPTER II\n\nTwo.\n\n"
            "VOLUME II\n\nCHAPTER I\n\nThree.\n\nBOOK THE THIRD\n\nPART ONE\n\nCHAPTER I\n\nFour.")
    book = split_book(text)
    assert titles(book) == [(0, ""), (1, "CHAPTER I"), (2, "CHAPTER II"), (3, "CHAPTER I"), (4, "CHAPTER I")]
    # A chapter opens at the volume headings right above it, so the previous chapter ends before them.
    assert book.text[book.chapters[3].start:].startswith("VOLUME II\n\nCHAPTER I")
    assert book.text[book.chapters[2].start:book.chapters[2].end].rstrip().endswith("Two.")
    assert book.text[book.chapters[4].start:].startswith("BOOK THE THIRD")
    assert [(book.sentence_text(s), s.chapter) for s in book.sentences] == [
        ("EMMA", 0), ("By Jane Austen", 0), ("One.", 1), ("Two.", 2), ("Three.", 3), ("Four.", 4)]


def test_chapters_tile_the_text():
    book = split_book("Title page\n\nCHAPTER 1\n\nOne day.\n\nCHAPTER 2\n\nNext day.\n")
    assert [(c.start, c.end) for c in book.chapters] == [
        (0, book.text.index("CHAPTER 1")), (book.text.index("CHAPTER 1"), book.text.index("CHAPTER 2")),
        (book.text.index("CHAPTER 2"), len(book.text))]
    assert titles(split_book("CHAPTER 1\n\nA.")) == [(1, "CHAPTER 1")]
    assert titles(split_book("No headings at all. None.")) == [(0, "")]


def test_bare_roman_numerals_are_chapters_when_the_book_uses_them():
    book = split_book("Title\n\nI.\n\nOne.\n\nII.\n\nTwo.\n\nIII\n\nThree.\n\nXII\n\nStray.")
    assert titles(book) == [(0, ""), (1, "I."), (2, "II."), (3, "III")]
    assert [book.sentence_text(s) for s in book.sentences] == ["Title", "One.", "Two.", "Three.", "XII", "Stray."]
    # Two numerals are no sequence; and under CHAPTER headings numerals number sections, never chapters.
    assert titles(split_book("I\n\nOne.\n\nII\n\nTwo.")) == [(0, "")]
    sections = split_book("CHAPTER 1\n\nI\n\nOne.\n\nII\n\nTwo.\n\nIII\n\nThree.\n\nCHAPTER 2\n\nFour.")
    assert titles(sections) == [(1, "CHAPTER 1"), (2, "CHAPTER 2")]
    assert [sections.sentence_text(s) for s in sections.sentences] == ["One.", "Two.", "Three.", "Four."]


def test_numerals_before_a_title_in_capitals_are_chapters_and_numbered_lists_are_text():
    book = split_book("I. A SCANDAL IN BOHEMIA\n\nTo Holmes she is the woman.\n\nII.—THE RED-HEADED LEAGUE\n\n"
                      "I had called.\n\nIII: A CASE OF IDENTITY\n\nMy dear fellow.")
    assert titles(book) == [(1, "I. A SCANDAL IN BOHEMIA"), (2, "II.—THE RED-HEADED LEAGUE"),
                            (3, "III: A CASE OF IDENTITY")]
    assert len(book.sentences) == 3
    listed = split_book("He made a list.\n\n1. Knowledge of Literature.\n\n2. Philosophy.\n\n3. Astronomy.\n\n"
                        "I went home.")
    assert titles(listed) == [(0, "")] and "Philosophy." in [listed.sentence_text(s) for s in listed.sentences]


def test_heading_subtitles_belong_to_the_heading_not_the_sentences():
    same_block = split_book("CHAPTER I.\nMR. SHERLOCK HOLMES.\n\nIn the year 1878 I took my degree.")
    assert titles(same_block) == [(1, "CHAPTER I. MR. SHERLOCK HOLMES.")]
    next_block = split_book("CHAPTER ONE\n\nPLAYING PILGRIMS\n\n\"Christmas won't be Christmas,\" grumbled Jo.")
    assert titles(next_block) == [(1, "CHAPTER ONE PLAYING PILGRIMS")]
    for book in (same_block, next_block):
        assert len(book.sentences) == 1 and book.sentences[0].start > book.text.index("\n\n")
    number_below = split_book("CHAPTER\n      7\n\nText.")
    assert titles(number_below) == [(1, "CHAPTER 7")]


def test_parts_are_chapters_in_a_book_without_chapters():
    book = split_book("DAISY MILLER\n\nPART I\n\nAt Vevey.\n\nPART II\n\nIn Rome.")
    assert titles(book) == [(0, ""), (1, "PART I"), (2, "PART II")]


def test_table_of_contents_is_not_read_as_chapters():
    toc = "CONTENTS\n\nCHAPTER I. The Start\n\nCHAPTER II. The End\n\n"
    body = "CHAPTER I. The Start\n\nIt began.\n\nCHAPTER II. The End\n\nIt ended."
    book = split_book(toc + body)
    assert titles(book) == [(0, ""), (1, "CHAPTER I. The Start"), (2, "CHAPTER II. The End")]
    assert book.chapters[1].start == len(toc)
    assert [book.sentence_text(s) for s in book.sentences] == ["It began.", "It ended."]   # contents: front matter
    # One-block contents, and contents whose titles stand on their own lines.
    one_block = split_book("CHAPTER I. The Start\nCHAPTER II. The End\n\n" + body)
    assert titles(one_block) == titles(book)
    separate = split_book("CHAPTER ONE\n\nPlaying Pilgrims\n\nCHAPTER TWO\n\nA Merry Christmas\n\n"
                          "VOLUME I\n\nCHAPTER ONE\n\nPLAYING PILGRIMS\n\nJo spoke.\n\nCHAPTER TWO\n\nMeg woke.")
    assert titles(separate) == [(0, ""), (1, "CHAPTER ONE PLAYING PILGRIMS"), (2, "CHAPTER TWO")]


def test_captions_and_footnotes_make_no_sentences_and_a_captioned_heading_is_a_chapter():
    book = split_book(
        "[Illustration: _CHAPTER I._]\n\nIt is a truth universally acknowledged.\n\n"
        "[Illustration: “He came down to see the place”\n\n[_Copyright 1894 by George Allen._]]\n\n"
        "Mr. Bennet replied that he had not.[Footnote: Or did not, then.] Mrs. Bennet sighed.\n\n"
        "[Footnote 1: Netherfield is a house\nin Hertfordshire.]\n\n[Illustration]\n\n"
        "CHAPTER II.\n\nMr. Bennet was among the earliest [of those] who waited.")
    assert titles(book) == [(1, "CHAPTER I."), (2, "CHAPTER II.")]
    assert [(book.sentence_text(s), s.paragraph) for s in book.sentences] == [
        ("It is a truth universally acknowledged.", 0), ("Mr. Bennet replied that he had not.", 1),
        ("Mrs. Bennet sighed.", 1),                     # a footnote inside a paragraph does not end it
        ("Mr. Bennet was among the earliest [of those] who waited.", 2)]


@pytest.mark.parametrize("heading", ["PREFACE", "INTRODUCTION TO THE SECOND EDITION", "The Author's Preface",
                                     "ADVERTISEMENT BY THE AUTHORESS", "BIOGRAPHICAL NOTICE OF ELLIS AND ACTON BELL"])
def test_a_preface_or_introduction_before_the_chapters_makes_no_sentences(heading):
    book = split_book(f"JANE EYRE\n\nBY CURRER BELL\n\n{heading}\n\nAs Ahab said to Micaiah, so say I.\n\n"
                      "CHAPTER I\n\nThere was no walk.\n\nCHAPTER II\n\nI resisted.")
    assert titles(book) == [(0, ""), (1, "CHAPTER I"), (2, "CHAPTER II")]
    assert [book.sentence_text(s) for s in book.sentences] == ["There was no walk.", "I resisted."]
    # A prologue is part of the story, and a book of one chapter keeps what comes before it.
    prologue = split_book("PROLOGUE\n\nAhab was king.\n\nCHAPTER I\n\nThere was no walk.\n\nCHAPTER II\n\nNo.")
    assert "Ahab was king." in [prologue.sentence_text(s) for s in prologue.sentences]
    one = split_book(f"{heading}\n\nAhab was king.\n\nCHAPTER I\n\nThere was no walk.")
    assert "Ahab was king." in [one.sentence_text(s) for s in one.sentences]


# --- sentences -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Mr. Darcy bowed. Mrs. Bennet smiled at Dr. Jones and St. Clair, Col. Forster, Capt. Carter and Messrs. "
     "Hill. Then they left.",
     ["Mr. Darcy bowed.", "Mrs. Bennet smiled at Dr. Jones and St. Clair, Col. Forster, Capt. Carter and Messrs. "
      "Hill.", "Then they left."]),
    ("Mr Darcy bowed. Mr Elliot had not. MR. HOLMES came.",
     ["Mr Darcy bowed.", "Mr Elliot had not.", "MR. HOLMES came."]),
    ("I met J. H. Watson, M.D. there. He was kind.", ["I met J. H. Watson, M.D. there.", "He was kind."]),
    ('"Come," said I. "Let us go."', ['"Come," said I.', '"Let us go."']),
    ('"Oh!" said she. "Is it?" I asked. "Good!" Holmes cried. Then we left.',
     ['"Oh!" said she.', '"Is it?" I asked.', '"Good!" Holmes cried.', "Then we left."]),
    ('"Oh!" Ántonia cried. "Stop!" Łucja sighed. Then we left.',      # accented speakers too
     ['"Oh!" Ántonia cried.', '"Stop!" Łucja sighed.', "Then we left."]),
    ("“What is it?” asked Sherlock Holmes. “Nothing!” “Good.”",
     ["“What is it?” asked Sherlock Holmes.", "“Nothing!”", "“Good.”"]),
    ("Oh! how happy she was. Oh! How sad he was!", ["Oh! how happy she was.", "Oh!", "How sad he was!"]),
    ("I waited... and waited. Nobody came... Then the bell rang.",
     ["I waited... and waited.", "Nobody came...", "Then the bell rang."]),
    ("He said . . . and stopped. She went on…", ["He said . . . and stopped.", "She went on…"]),
    ('He said "Go." She went. (It was late.) They slept.', ['He said "Go."', "She went.", "(It was late.)",
                                                           "They slept."]),
    ("Her father was Richard--and he had never been handsome. He was poor.",
     ["Her father was Richard--and he had never been handsome.", "He was poor."]),
    ('"But I thought--" She stopped. "I was going to--" said he.', ['"But I thought--"', "She stopped.",
                                                                    '"I was going to--" said he.']),
    ("It cost 5s. and 3d. in 1878. No. 5 was let.", ["It cost 5s. and 3d. in 1878.", "No. 5 was let."]),
    ("A sentence that runs\nacross two lines. And one\nmore.", ["A sentence that runs\nacross two lines.",
                                                               "And one\nmore."]),
    ("No final stop here\n\nNext paragraph\n\n* * * * *\n\nLast.", ["No final stop here", "Next paragraph", "Last."]),
])
def test_sentence_splitting(text, expected):
    assert sentences(text) == expected


def test_sentence_offsets_paragraphs_and_chapters():
    text = ("Front.\n\nCHAPTER 1\n\n  First one.  Second\none!\n\n\"Third?\" asked he.\n\n"
            "CHAPTER 2\n\nFourth.   \n\n")
    book = split_book(text)
    assert [(book.sentence_text(s), s.index, s.chapter, s.paragraph) for s in book.sentences] == [
        ("Front.", 0, 0, 0), ("First one.", 1, 1, 1), ("Second\none!", 2, 1, 1), ('"Third?" asked he.', 3, 1, 2),
        ("Fourth.", 4, 2, 3)]
    for s in book.sentences:
        assert book.text[s.start:s.end] == book.sentence_text(s)
        chapter = book.chapters[s.chapter]
        assert chapter.number == s.chapter and chapter.start <= s.start < s.end <= chapter.end


def test_a_book_with_one_paragraph_a_line_splits_like_its_hard_wrapped_copy():
    paragraphs = ["CHAPTER I", "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy "
                  "disposition, seemed to unite some of the best blessings of existence. She had lived nearly "
                  "twenty-one years in the world with very little to distress or vex her.",
                  '"Poor Miss Taylor!" said Mr. Woodhouse. "I wish she were here again."',
                  "CHAPTER II", "Mr. Weston was a native of Highbury, and born of a respectable family, which for "
                  "the last two or three generations had been rising into gentility and property."]
    one_a_line = split_book("\n".join(paragraphs) + "\n")
    wrapped = split_book("\n\n".join(re.sub(r"(.{1,70})(?: |$)", "\\1\n", p).strip() for p in paragraphs))
    for book in (one_a_line, wrapped):
        assert [c.title for c in book.chapters] == ["CHAPTER I", "CHAPTER II"]
    shape = [[(s.chapter, s.paragraph, " ".join(book.sentence_text(s).split())) for s in book.sentences]
             for book in (one_a_line, wrapped)]
    assert shape[0] == shape[1] and len({p for _, p, _ in shape[0]}) == 3


def test_long_sentences_are_cut_at_semicolons_then_whitespace():
    clause = "she had walked a long way through the wet fields and over the stiles to the village"
    text = "; ".join([clause] * 40) + "."
    pieces = sentences(text)
    assert len(pieces) > 3 and all(len(p) <= MAX_SENTENCE_CHARS for p in pieces)
    assert all(p.endswith(";") for p in pieces[:-1]) and pieces[-1].endswith(".")
    assert re.sub(r"\s", "", "".join(pieces)) == re.sub(r"\s", "", text)
    unpunctuated = " ".join(["word"] * 600)
    pieces = sentences(unpunctuated)
    assert all(len(p) <= MAX_SENTENCE_CHARS for p in pieces) and " ".join(pieces) == unpunctuated


def test_split_book_normalises_newlines_and_round_trips_through_json():
    book = split_book("CHAPTER 1\r\n\r\nShe came.\r\nHe went.", "x.txt", {"gutenberg_header": 3})
    assert book.text == "CHAPTER 1\n\nShe came.\nHe went."
    again = BookText.from_json(json.loads(json.dumps(book.to_json())))
    assert again == book and again.stripped == {"gutenberg_header": 3}


PIECES = ["Mr.", "Mr", "J.", "word", "Word", "I", ".", "!", "?", "...", "--", ";", ",", '"', "“", "”", "(", ")",
          " ", "  ", "\n", "\n\n", "\r\n", "CHAPTER I", "VOLUME II", "IV.", "* * *", "\u00e9t\u00e9", "x" * 300,
          "[Illustration: ", "[Footnote 1: ", "[", "]"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_split_book_invariants_on_any_text(pieces):
    book = split_book("".join(pieces))
    numbers = [c.number for c in book.chapters if c.number]
    assert numbers == list(range(1, len(numbers) + 1))
    if book.chapters:
        assert book.chapters[0].start == 0 and book.chapters[-1].end == len(book.text)
        assert all(a.end == b.start for a, b in zip(book.chapters, book.chapters[1:]))
    by_number = {c.number: c for c in book.chapters}
    end = paragraph = 0
    for index, s in enumerate(book.sentences):
        sentence = book.text[s.start:s.end]
        assert s.index == index and end <= s.start < s.end and sentence == sentence.strip()
        assert s.paragraph in (paragraph, paragraph + 1) if index else s.paragraph == 0
        paragraph = s.paragraph
        assert len(sentence) <= MAX_SENTENCE_CHARS
        assert by_number[s.chapter].start <= s.start and s.end <= by_number[s.chapter].end
        end = s.end


# --- the shared novels ---------------------------------------------------------------------------------------

# Counted from the files' own headings (CHAPTER/Chapter lines; Emma restarts at I in each of its 3 volumes, A Study
# in Scarlet in each of its 2 parts; Jane Eyre's last is "CHAPTER XXXVIII--CONCLUSION").
NOVEL_CHAPTERS = {
    "a_study_in_scarlet": 14, "emma": 55, "great_expectations": 59, "jane_eyre": 38, "little_women": 47,
    "northanger_abbey": 31, "persuasion": 24, "pride_and_prejudice": 61, "sense_and_sensibility": 50,
    "silas_marner": 21, "the_hound_of_the_baskervilles": 15, "the_picture_of_dorian_gray": 20,
}

# (novel, a piece of the sentence, the whole sentence): abbreviations, `Mr` without a stop, initials, quotes.
WHOLE_SENTENCES = [
    ("pride_and_prejudice", "My dear Mr. Bennet,\" said",
     '"My dear Mr. Bennet," said his lady to him one day, "have you heard that\nNetherfield Park is let at last?"'),
    ("pride_and_prejudice", "his friend Mr. Darcy soon",
     "His brother-in-law, Mr. Hurst, merely\nlooked the gentleman; but his friend Mr. Darcy soon drew the attention\n"
     "of the room by his fine, tall person, handsome features, noble mien, and\nthe report which was in general "
     "circulation within five minutes\nafter his entrance, of his having ten thousand a year."),
    ("persuasion", "Mr Elliot had attempted",
     "Mr Elliot had attempted no apology, and shewn himself as\nunsolicitous of being longer noticed by the family, "
     "as Sir Walter\nconsidered him unworthy of it:  all acquaintance between them had\nceased."),
    ("a_study_in_scarlet", "And who was the first", "“And who was the first?” I asked."),
    ("a_study_in_scarlet", "J. H. is", "There were\nno papers or memoranda in the murdered man’s pocket, except a "
     "single\ntelegram, dated from Cleveland about a month ago, and containing the\nwords, ‘J. H. is in Europe.’"),
    ("the_hound_of_the_baskervilles", "M.R.C.S., from",
     "“To James Mortimer, M.R.C.S., from his friends of the\nC.C.H.,” was engraved upon it, with the date "
     "“1884.”"),
    ("great_expectations", "Mrs. Joe Gargery",
     "I give Pirrip as my father’s family name, on the authority of his\ntombstone and my sister,--Mrs. Joe Gargery, "
     "who married the blacksmith."),
    ("emma", "Mr. Woodhouse’s family",
     "Sixteen years had Miss Taylor been in Mr. Woodhouse’s family, less as a\ngoverness than a friend, very fond of "
     "both daughters, but particularly\nof Emma."),
]


@pytest.fixture(scope="module")
def novels():
    try:
        folder = shared_root() / "datasets" / "novels"
    except SharedMissing:
        pytest.skip("shared data folder not found")
    return {name: read_book(folder / f"{name}.txt") for name in NOVEL_CHAPTERS}


@pytest.mark.parametrize("name", sorted(NOVEL_CHAPTERS))
def test_novel_chapters_and_sentences(novels, name):
    book = novels[name]
    numbered = [c for c in book.chapters if c.number]
    assert len(numbered) == NOVEL_CHAPTERS[name]
    assert [c.number for c in numbered] == list(range(1, len(numbered) + 1))
    assert all(c.title.lower().startswith("chapter") for c in numbered)
    assert "\r" not in book.text and not book.text.startswith("\ufeff")
    headings = {c.title for c in book.chapters}
    assert len(book.sentences) > 1000
    previous = None
    for s in book.sentences:
        sentence = book.text[s.start:s.end]
        assert sentence and sentence == sentence.strip() and len(sentence) <= MAX_SENTENCE_CHARS
        chapter = book.chapters[s.chapter] if book.chapters[0].number == 0 else book.chapters[s.chapter - 1]
        assert chapter.start <= s.start and s.end <= chapter.end
        assert sentence not in headings
        if previous is not None:
            assert previous.end <= s.start and previous.paragraph <= s.paragraph <= previous.paragraph + 1
        previous = s


def test_largest_novel_splits_well_under_two_seconds(novels):
    text = max((book.text for book in novels.values()), key=len)  # about 1 MB; measured ~0.2 s on 2 shared cores
    start = time.perf_counter()
    split_book(text)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("name, anchor, whole", WHOLE_SENTENCES, ids=[f"{n}:{a[:16]}" for n, a, _ in WHOLE_SENTENCES])
def test_novel_sentences_not_split(novels, name, anchor, whole):
    book = novels[name]
    found = [book.sentence_text(s) for s in book.sentences if anchor in book.sentence_text(s)]
    assert found[0] == whole
