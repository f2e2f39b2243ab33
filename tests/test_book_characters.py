from __future__ import annotations

import json

import pytest

from collab.book import characters
from collab.book.records import BookError, BookText, Chapter, Sentence


@pytest.fixture(scope="module")
def nlp():
    return characters.load_nlp()


def make_book(*paragraphs: str | list[str]) -> BookText:
    """A BookText from paragraphs, each one sentence or a list of sentences, joined by spaces / blank lines."""
    text, sentences = "", []
    for p, paragraph in enumerate(paragraphs):
        if p:
            text += "\n\n"
        for i, sentence in enumerate([paragraph] if isinstance(paragraph, str) else paragraph):
            if i:
                text += " "
            sentences.append(Sentence(len(sentences), len(text), len(text) + len(sentence), 1, p))
            text += sentence
    return BookText("test.txt", text, [Chapter(1, "", 0, len(text))], sentences)


def find(book: BookText, nlp, **options):
    found = characters.find_characters(book, nlp=nlp, **options)
    return found, {c.id: c for c in found.characters}


def every_name(found) -> set[str]:
    return {c.name for c in found.characters} | {a for c in found.characters for a in c.aliases}


def style_of(book: BookText) -> characters.QuoteMarks:
    return characters.quote_style(book.text, characters._paragraphs(book.sentences))


def by_alias(found, surface: str):
    hits = [c for c in found.characters if surface == c.name or surface in c.aliases]
    assert len(hits) == 1, (surface, [(c.name, c.aliases) for c in found.characters])
    return hits[0]


BENNETS = make_book(
    "Mr. Bennet was sitting in the library when Mrs. Bennet came in.",
    ["Mrs. Bennet said that the ball would be a fine one.", "Mr Bennet did not answer her."],
    "It was late when Mr. Bennet went up to bed, and Mrs. Bennet had long been asleep.",
)


def test_titles_are_part_of_the_mention_and_mr_never_merges_with_mrs(nlp):
    found, by_id = find(BENNETS, nlp)
    mr, mrs = by_alias(found, "Mr. Bennet"), by_alias(found, "Mrs. Bennet")
    assert mr.id != mrs.id and (mr.gender, mrs.gender) == ("m", "f")
    assert "Mr Bennet" in mr.aliases                     # with and without the full stop: one character
    assert mr.mentions == 3 and mrs.mentions == 3
    texts = {m.text for m in found.mentions}
    assert texts == {"Mr. Bennet", "Mrs. Bennet", "Mr Bennet"}
    assert {m.kind for m in found.mentions} == {"title"}
    assert mr.id == "mr-bennet"


def test_offsets_point_into_the_book_and_mentions_are_sorted(nlp):
    book = make_book(
        ["Elizabeth Bennet walked to Netherfield.", "Mr. Darcy watched Elizabeth from the window."],
        ["\"I am tired,\" said Elizabeth.", "Mr. Darcy bowed."],
    )
    found, _ = find(book, nlp)
    assert found.mentions == sorted(found.mentions, key=lambda m: m.start)
    for m in found.mentions:
        sentence = book.sentences[m.sentence]
        assert book.text[m.start:m.end] == m.text
        assert sentence.start <= m.start < m.end <= sentence.end


def test_first_name_and_nickname_join_the_full_name(nlp):
    book = make_book(
        "Elizabeth Bennet was the second daughter of the family, and Elizabeth Bennet was clever.",
        ["Everyone agreed that Elizabeth was clever.", "Her father called her Lizzy when he was pleased."],
        "\"Come here, Lizzy,\" said her father, and Elizabeth came.",
    )
    found, _ = find(book, nlp)
    elizabeth = by_alias(found, "Elizabeth Bennet")
    assert elizabeth.name == "Elizabeth Bennet" and elizabeth.id == "elizabeth-bennet"
    assert {"Elizabeth", "Lizzy"} <= set(elizabeth.aliases)


def test_surname_attaches_only_when_one_character_fits(nlp):
    one = make_book(
        "Fitzwilliam Darcy was a proud man, and Fitzwilliam Darcy knew it.",
        "Everyone at the ball looked at Mr. Darcy, and Mr. Darcy looked at no one.",
    )
    found, _ = find(one, nlp)
    assert "Mr. Darcy" in by_alias(found, "Fitzwilliam Darcy").aliases

    two = make_book(
        "Miss Jane Bennet was the eldest, and Miss Jane Bennet was kind.",
        "Miss Lydia Bennet was the youngest, and Miss Lydia Bennet was loud.",
        "At the ball Miss Bennet danced twice, and Miss Bennet was admired.",
    )
    found, _ = find(two, nlp)
    miss = by_alias(found, "Miss Bennet")
    assert miss.name == "Miss Bennet" and miss.aliases == [] and miss.gender == "f"
    assert by_alias(found, "Miss Jane Bennet").id != by_alias(found, "Miss Lydia Bennet").id


def test_a_mrs_and_a_miss_of_one_name_stay_two_women(nlp):
    book = make_book(
        "Fanny Price came to the great house, and Fanny Price was shy.",
        "Everyone said that Miss Price was quiet, and Miss Price sat down.",
        "At home Mrs. Price wrote a letter, and Mrs. Price sighed.",
    )
    found, _ = find(book, nlp)
    assert "Miss Price" in by_alias(found, "Fanny Price").aliases
    assert by_alias(found, "Mrs. Price").aliases == []


def test_a_french_title_and_its_english_one_are_one_person(nlp):
    book = make_book(
        "Madame Charpentier kept the house, and Madame Charpentier let rooms.",
        "Mrs. Charpentier blushed, and Mrs. Charpentier wept.",
        "Monsieur Poirot bowed, and later Mr. Poirot smiled.",
        "Mr. Poirot left before Mrs. Poirot came, and Mrs. Poirot stayed.",
    )
    found, _ = find(book, nlp)
    assert by_alias(found, "Madame Charpentier") is by_alias(found, "Mrs. Charpentier")
    assert by_alias(found, "Monsieur Poirot") is by_alias(found, "Mr. Poirot") is not by_alias(found, "Mrs. Poirot")


def test_french_titles_before_given_names_and_papa_before_a_surname(nlp):
    book = make_book(
        "Hercule Poirot came to Styles, and Hercule Poirot looked about him.",
        "\"Papa Poirot knows, Papa Poirot sees,\" said Poirot, and Poirot smiled at Monsieur Poirot's old friend.",
        "Lawrence Cavendish and Cynthia Murdoch were there, and Lawrence Cavendish spoke to Cynthia Murdoch.",
        "\"Monsieur Lawrence, Mademoiselle Cynthia,\" said Poirot, bowing to Monsieur Lawrence and Mademoiselle "
        "Cynthia.",
    )
    found, _ = find(book, nlp)
    # "Papa Poirot" was a full name of its own, which left "Poirot" and "Monsieur Poirot" two characters to join.
    poirot = by_alias(found, "Hercule Poirot")
    assert {"Poirot", "Monsieur Poirot"} <= set(poirot.aliases) and "Papa Poirot" not in poirot.aliases
    assert "Monsieur Lawrence" in by_alias(found, "Lawrence Cavendish").aliases
    assert "Mademoiselle Cynthia" in by_alias(found, "Cynthia Murdoch").aliases


def test_a_familys_mother_and_aunt_are_not_its_daughter(nlp):
    book = make_book(
        "Jo March sat by the fire, and Jo March was writing a story.",
        "Then Mrs. March came in from the cold, and Mrs. March kissed her.",
        "Aunt March sent a note the next day, and Aunt March wanted a companion.",
        "Amy Dorrit sat by the window, and Amy Dorrit drew a picture.",
        "Years later the children ran to Aunt Amy, and Aunt Amy laughed.",
        "Mrs. Jane Smith called in the evening, and Mrs. Jane Smith brought a cake.",
        "Mrs. Smith stayed to tea, and Mrs. Smith talked of the war.",
    )
    found, _ = find(book, nlp)
    jo = by_alias(found, "Jo March")
    assert by_alias(found, "Mrs. March").id != jo.id and by_alias(found, "Aunt March").id != jo.id
    assert by_alias(found, "Mrs. March").id != by_alias(found, "Aunt March").id
    assert "Mrs. Smith" in by_alias(found, "Mrs. Jane Smith").aliases  # her full name carries the title
    assert "Aunt Amy" in by_alias(found, "Amy Dorrit").aliases  # a first name: her, as an aunt


def test_officers_are_not_the_mr_of_their_family_nor_of_another_rank(nlp):
    book = make_book(
        "Henry Tilney danced with Catherine, and Henry Tilney talked of muslin.",
        ["Mr. Tilney was very agreeable, and Mr. Tilney made her laugh.", "Mr. Tilney smiled."],
        "General Tilney was a stern father, and General Tilney liked dinner early.",
        "Captain Tilney was the elder son, and Captain Tilney flirted with Isabella.",
        "Frederick Wentworth came back rich, and Frederick Wentworth was proud.",
        "Captain Wentworth would not look at Anne, and Captain Wentworth left the room.",
    )
    found, _ = find(book, nlp)
    henry = by_alias(found, "Henry Tilney")  # the most frequent title of his surname is taken first
    assert "Mr. Tilney" in henry.aliases
    general, captain = by_alias(found, "General Tilney"), by_alias(found, "Captain Tilney")
    assert len({henry.id, general.id, captain.id}) == 3
    assert "Captain Wentworth" in by_alias(found, "Frederick Wentworth").aliases  # no Mr. of his to clash with


def test_min_mentions_drops_characters_with_their_mentions(nlp):
    book = make_book(
        "Mr. Collins arrived on Monday, and Mr. Collins talked all evening.",
        "Only once did Mr. Wickham call.",
    )
    found, by_id = find(book, nlp)
    assert set(by_id) == {"mr-collins"}
    assert {m.character for m in found.mentions} == {"mr-collins"}
    found, by_id = find(book, nlp, min_mentions=1)
    assert set(by_id) == {"mr-collins", "mr-wickham"}
    with pytest.raises(BookError, match="test.txt: no characters"):
        find(book, nlp, min_mentions=5)


def test_user_aliases_override_the_clustering(nlp):
    book = make_book(
        "Mr. Bennet was sitting in the library.",
        ["Mrs. Bennet came in and spoke to the old man.", "But the old man did not answer Mrs. Bennet."],
    )
    aliases = {"Thomas Bennet": ["Mr. Bennet", "the old man"], "Mrs. Bennet": []}
    found, by_id = find(book, nlp, aliases=aliases)
    thomas = by_id["thomas-bennet"]
    assert thomas.name == "Thomas Bennet" and thomas.aliases == ["Mr. Bennet", "the old man"]
    assert thomas.mentions == 3                         # "the old man" is found although no model tags it
    assert by_id["mrs-bennet"].mentions == 2
    assert {m.text for m in found.mentions if m.character == "thomas-bennet"} == {"Mr. Bennet", "the old man"}


def test_load_aliases_reads_json_and_yaml_and_names_the_file_on_bad_content(tmp_path):
    good = {"Elizabeth Bennet": ["Lizzy", "Eliza"]}
    (tmp_path / "a.json").write_text(json.dumps(good), encoding="utf-8")
    (tmp_path / "a.yaml").write_text("Elizabeth Bennet:\n  - Lizzy\n  - Eliza\n", encoding="utf-8")
    assert characters.load_aliases(tmp_path / "a.json") == good
    assert characters.load_aliases(tmp_path / "a.yaml") == good
    bad = {"b.json": "{not json", "c.yaml": "- just\n- a list\n", "d.yaml": "Jane: Lizzy\n",
           "e.yaml": "Jane: [Lizzy]\nElizabeth: [Lizzy]\n"}
    for name, content in bad.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(BookError) as error:
            characters.load_aliases(tmp_path / name)
        message = str(error.value)
        assert message.startswith(str(tmp_path / name)) and "\n" not in message
    with pytest.raises(BookError, match="missing.json"):
        characters.load_aliases(tmp_path / "missing.json")


FIRST_PERSON = make_book(
    ["My aunt Mrs. Reed kept me in the red room all night.", "I was ten years old then."],
    ["\"You are a wicked child,\" said Mrs. Reed.", "I did not answer her."],
    ["The servants whispered in the hall.", "In the morning I heard Mrs. Reed on the stairs."],
)
THIRD_PERSON = make_book(
    ["Mrs. Reed kept Jane in the red room all night.", "Jane was ten years old then."],
    ["\"I will not stay here,\" said Jane.", "Mrs. Reed did not answer her."],
)


def test_first_person_narrator(nlp):
    found, by_id = find(FIRST_PERSON, nlp)
    narrator = by_id["narrator"]
    assert narrator.narrator and narrator.name == "Narrator"
    narrated = [m for m in found.mentions if m.kind == "narrator"]
    # One per sentence with I/me/my outside quotations: not the sentence whose only "I"-word is quoted.
    assert [m.sentence for m in narrated] == [0, 1, 3, 5]
    assert [m.text for m in narrated] == ["My", "I", "I", "I"]
    assert narrator.mentions == len(narrated)


def test_narrator_takes_the_name_they_are_addressed_by(nlp):
    book = make_book(
        ["I had known Sherlock Holmes for years.", "\"Watson, look at this,\" said Holmes."],
        ["\"Well, Watson?\" asked Holmes.", "I said nothing."],
        ["\"You see, Watson, it is simple,\" said Holmes.", "I nodded."],
        ["\"Come, Watson!\" cried Holmes.", "I followed him."],
        ["\"Thank you, Watson,\" said Holmes.", "I smiled at my friend."],
    )
    found, by_id = find(book, nlp)
    assert by_id["narrator"].name == "Watson" and by_id["narrator"].narrator
    assert not any(c.name == "Watson" for c in found.characters if not c.narrator)
    assert {m.character for m in found.mentions if m.text == "Watson"} == {"narrator"}


def test_you_in_a_perspective_section_is_that_sections_character(nlp):
    book = make_book(
        "=== Character perspective: Jue Ming ===",
        ["You met Ling Xiao at the inn.", "Ling Xiao poured you some tea.", "\"Do you know Jue Ming?\" you asked."],
        "=== Character perspective: Ling Xiao ===",
        ["You saw Jue Ming at the inn.", "Jue Ming smiled at you.", "The rain kept falling."],
    )
    found, by_id = find(book, nlp, min_mentions=1)
    jue, ling = by_alias(found, "Jue Ming"), by_alias(found, "Ling Xiao")
    you = [(m.sentence, m.character) for m in found.mentions if m.kind == "perspective"]
    # one per sentence with "you" outside quotations, for the character whose section it is
    assert you == [(1, jue.id), (2, jue.id), (3, jue.id), (5, ling.id), (6, ling.id)]
    assert {jue.id, ling.id} <= set(by_id)


def test_a_perspective_character_too_rarely_named_still_gets_a_node(nlp):
    book = make_book("=== Character perspective: Zi Su ===", ["You met Ling Xiao.", "Ling Xiao greeted you."])
    found, by_id = find(book, nlp, min_mentions=2)   # "Zi Su" is named once, in the heading
    zi = by_alias(found, "Zi Su")
    assert [m.sentence for m in found.mentions if m.character == zi.id] == [1, 2] and zi.mentions == 2


def test_third_person_book_has_no_narrator(nlp):
    found, by_id = find(THIRD_PERSON, nlp)
    assert "narrator" not in by_id
    assert not any(m.kind == "narrator" for m in found.mentions)


def single_quoted(opening: str, closing: str) -> BookText:
    """A third-person book whose speech is in single marks, with apostrophes that look like them."""
    return make_book(
        ["Mrs. Reed kept Jane in the red room all night.", "Jane was ten years old then."],
        [f"{opening}I will not stay here,{closing} said Jane.",
         f"{opening}I don{closing}t care what you say.{closing}"],
        [f"{opening}I am your aunt,{closing} said Mrs. Reed.", "Jane looked at the maids' door."],
    )


@pytest.mark.parametrize("opening,closing", [("‘", "’"), ("'", "'")])
def test_a_book_quoting_with_single_marks_has_its_quotations_found(nlp, opening, closing):
    book = single_quoted(opening, closing)
    assert style_of(book) is characters.SINGLE_QUOTES
    found, by_id = find(book, nlp)
    # Read with double marks only, the quoted I's made a first-person narrator of a third-person book.
    assert "narrator" not in by_id
    jane = by_alias(found, "Jane")
    assert [(m.character, m.sentence) for m in found.mentions if m.kind == "speaker"] == [(jane.id, 3)]


def test_a_book_quoting_with_guillemets_has_its_quotations_found(nlp):
    book = single_quoted("«", "»")
    assert style_of(book) is characters.DOUBLE_QUOTES
    found, by_id = find(book, nlp)
    assert "narrator" not in by_id
    jane = by_alias(found, "Jane")
    assert [(m.character, m.sentence) for m in found.mentions if m.kind == "speaker"] == [(jane.id, 3)]


@pytest.mark.parametrize("dash", ["—", "--", "– "])
def test_a_book_opening_speech_with_a_dash_has_its_speech_and_speakers_found(nlp, dash):
    book = make_book(
        ["Mrs. Reed kept Jane in the red room all night.", "Jane was ten years old then."],
        [f"{dash}I will not stay here, said Jane.", "I don't care what you say."],
        [f"{dash}I am your aunt, Mrs. Reed said.", "You will stay."],
        "Jane looked at the door, and Mrs. Reed went out.",
    )
    assert style_of(book) is characters.DASH_QUOTES
    found, by_id = find(book, nlp)
    # Read as narration, the speeches' I's made a first-person narrator of a third-person book.
    assert "narrator" not in by_id
    jane, reed = by_alias(found, "Jane"), by_alias(found, "Mrs. Reed")
    # A speaker on each sentence of a speech that does not name them: the tag names them in the first.
    assert [(m.character, m.sentence) for m in found.mentions if m.kind == "speaker"] == [(jane.id, 3),
                                                                                            (reed.id, 5)]


def test_apostrophes_do_not_make_a_double_quoted_book_single_quoted(nlp):
    book = make_book("'Tis the season, and Jane's aunt was at home.", "\"I will not stay,\" said Jane.",
                     "\"Nor I,\" said Mrs. Reed.")
    assert style_of(book) is characters.DOUBLE_QUOTES


def quoted_texts(book: BookText) -> list[str]:
    paragraphs = characters._paragraphs(book.sentences)
    marks = characters.quote_style(book.text, paragraphs)
    return [book.text[s:e] for s, e in characters._quote_ranges(book.text, paragraphs, marks)]


def test_a_quotation_three_deep_takes_the_outer_marks_and_does_not_close_the_outer_one(nlp):
    account = ["“‘He came back drunk.", "“You are of age,” he said to her.",
               "I screamed, and my son Arthur came in.’”"]
    book = make_book(["I met Gregson at the station.", "He told me what the widow said."], account,
                     "I thanked him.", ["“A fine story,” said Holmes.", "I agreed with him."])
    assert quoted_texts(book)[0] == " ".join(account)
    found, _ = find(book, nlp, min_mentions=1)
    # The witness's "I screamed" is hers, not the narrator's; read as closed at "of age,”" it was his.
    assert [m.sentence for m in found.mentions if m.kind == "narrator"] == [0, 1, 5, 7]


def test_a_quotation_three_deep_in_a_book_quoting_with_single_marks():
    account = "‘“He came back drunk. ‘You are of age,’ he said to her. I screamed.”’ Then Gregson stopped."
    book = make_book("‘I met Gregson,’ said Holmes.", account, "‘Go on,’ said Holmes.")
    assert style_of(book) is characters.SINGLE_QUOTES
    assert quoted_texts(book)[1] == account[:account.index(" Then")]


def test_an_opening_mark_after_a_missing_close_starts_no_nested_quotation():
    book = make_book("“Come here, said he. “Now.” Jane went to him.", "“Yes,” she said.")
    assert quoted_texts(book) == ["“Come here, said he. “Now.”", "“Yes,”"]


def test_speaker_of_a_quotation_is_co_mentioned_with_the_names_inside_it(nlp):
    book = make_book(
        ["Elizabeth Bennet and Jane Bennet were at home.", "Elizabeth Bennet sat with Jane Bennet."],
        "It was raining, and Elizabeth watched the road.",
        ["Elizabeth said, \"Come quickly.", "Jane is ill.\""],
    )
    found, _ = find(book, nlp)
    elizabeth = by_alias(found, "Elizabeth Bennet")
    speakers = [m for m in found.mentions if m.kind == "speaker"]
    assert [(m.character, m.sentence) for m in speakers] == [(elizabeth.id, 4)]
    sentence = book.sentences[4]
    assert sentence.start <= speakers[0].start < speakers[0].end <= sentence.end
    assert speakers[0].text == "is ill"                 # the quotation without the other name in it


def test_exclamations_are_not_characters(nlp):
    book = make_book(
        ["\"Good God!\" cried Mr. Bennet.", "\"Good heavens, Mr. Bennet!\" said his wife."],
        "\"Oh, Lord,\" sighed Mr. Bennet.",
    )
    found, _ = find(book, nlp)
    names = every_name(found)
    assert names == {"Mr. Bennet"}


def test_places_and_families_are_not_characters(nlp):
    book = make_book(
        "Mr. Bennet drove to Meryton with Kitty, and Kitty talked all the way to Meryton.",
        "In Meryton they met the Lucases, and at Meryton the Lucases asked after Kitty.",
    )
    found, _ = find(book, nlp)
    names = every_name(found)
    assert "Meryton" not in names and "Lucases" not in names and "Kitty" in names


def test_the_plural_of_a_name_ending_in_e_is_a_family(nlp):
    book = make_book(
        "Lucy Steele came with Miss Steele, and Lucy Steele smiled at Elinor.",
        "Elinor disliked the Miss Steeles, though the Miss Steeles were civil, and Miss Steele talked.",
        "Elinor left the Miss Steeles with Lucy Steele.",
    )
    found, _ = find(book, nlp)
    names = every_name(found)
    assert "Miss Steeles" not in names and "Lucy Steele" in names


def test_accented_names_are_found_and_matched_like_unaccented_ones(nlp):
    # spaCy's small model tags "Ántonia Shimerda" a place; the name tables know "elizabeth", not "élizabeth".
    book = make_book(
        "Ántonia Shimerda came to the farm with her brother Ambrosch in the spring.",
        ["Grandmother said that Ántonia Shimerda was a bright girl.", "Ántonia laughed at that."],
        "Élizabeth Bénnet met Ántonia at the church door, and Lizzy kissed her.",
        ["Lizzy was fond of the girl.", "Ántonia told Élizabeth Bénnet about the snow."],
    )
    found, _ = find(book, nlp)
    assert by_alias(found, "Ántonia Shimerda").mentions == 2
    elizabeth = by_alias(found, "Élizabeth Bénnet")
    assert "Lizzy" in elizabeth.aliases and elizabeth.gender == "f"
    assert all(m.text == book.text[m.start:m.end] for m in found.mentions)       # offsets into the accented text


def test_a_titled_full_names_given_name_is_found_alone_and_continental_names_carry_a_gender(nlp):
    # spaCy reads "Thérèse" as an organisation: only "Madame Thérèse Dufresne" (by the title pattern) gave it away.
    book = make_book(
        "Madame Thérèse Dufresne lived in the Rue Saint-Honoré with her brother.",
        ["Agnès brought the letter on a tray, and Thérèse read it aloud.", "Thérèse laughed."],
        ["Étienne Dufresne came home late, and Étienne was tired.",
         "Mademoiselle Dufresne, said the servant, was too kind."],
        "Étienne Dufresne said nothing to Thérèse.",
    )
    found, _ = find(book, nlp)
    assert by_alias(found, "Thérèse").mentions == 3
    etienne = by_alias(found, "Étienne Dufresne")
    # "Étienne" is a man's name, so the Mademoiselle of his family is not him.
    assert etienne.gender == "m" and "Mademoiselle Dufresne" not in etienne.aliases


def test_a_titled_surname_no_other_form_ends_with_is_found_alone(nlp):
    # Great Expectations: spaCy tags none of the bare "Jaggers", which can only be Mr. Jaggers.
    book = make_book(
        "Mr. Jaggers came into the room with his hands in his pockets.",
        ["“My name,” he said, “is Jaggers, and I am a lawyer in London.”", "Pip looked at him."],
        ["Mr. Jaggers washed his hands.", "“Jaggers would do it if it was to be done,” said the man."],
        "There was only one Jaggers, and people would have no other.",
    )
    found, _ = find(book, nlp)
    assert by_alias(found, "Mr. Jaggers").mentions == 5


def test_characters_known_only_by_a_role_are_characters_and_places_are_not(nlp):
    book = make_book(
        ["Alice sat down beside the Hatter on the Embankment.", "\"Have some wine,\" said the Hatter."],
        ["Alice looked at the Hatter, and then along the Embankment.", "The Hatter was silent."],
        ["Then the Hatter spoke to Alice about the Embankment.", "Alice walked down the Embankment alone."],
        ["She thought of the Hatter and of the Embankment.", "The General Tilney came by."],
        ["Later the Hatter laughed at the Embankment, and General Tilney frowned at the General.",
         "\"No,\" said the General.", "Alice saw the General and the General saw her."],
        "Alice went home, and the General too.",
    )
    found, _ = find(book, nlp)
    assert by_alias(found, "the Hatter").mentions == 7
    names = every_name(found)
    # "the Embankment" never speaks; "the General" of a book with a General Tilney is him, not a role of its own.
    assert not {"the Embankment", "the General"} & names
    doctor = [f"\"Not tonight,\" said the Doctor to Utterson, who thanked the Doctor for the {i} time."
              for i in range(6)]
    found, _ = find(make_book("Dr. Jekyll sat with Utterson.", *doctor, "Dr. Jekyll went up."), nlp)
    assert "the Doctor" not in {c.name for c in found.characters}     # Dr. Jekyll's other name


def test_names_in_central_european_letters_are_whole_names(nlp):
    # Letters beyond Latin-1 (š, Č, Ł) once cut "Tomáš" to "Tomá" and left "Łucja" out of "Łucja Nowak".
    book = make_book(
        "Tomáš Čapek came to the farm with his sister Łucja Nowak in the spring.",
        ["Grandmother said that Tomáš Čapek was a bright boy.", "Łucja Nowak laughed at that."],
        "Mr. Čapek met Łucja at the church door.",
        ["Łucja was fond of the boy.", "Čapek told her about the snow."],
    )
    found, _ = find(book, nlp)
    assert set(by_alias(found, "Tomáš Čapek").aliases) == {"Mr. Čapek", "Čapek"}
    assert by_alias(found, "Łucja Nowak").aliases == ["Łucja"]
    assert {c.name for c in found.characters} == {"Tomáš Čapek", "Łucja Nowak"}


def test_pronoun_resolution_is_off_unless_asked(nlp):
    book = make_book(
        ["Mr. Bennet was in the library.", "He was reading."],
        ["Mrs. Bennet came in.", "She was cross."],
    )
    found, _ = find(book, nlp, min_mentions=1)
    assert not any(m.kind == "pronoun" for m in found.mentions)
    found, _ = find(book, nlp, resolve_pronouns=True, min_mentions=1)
    pronouns = {(m.text, m.character) for m in found.mentions if m.kind == "pronoun"}
    assert pronouns == {("He", "mr-bennet"), ("She", "mrs-bennet")}


def test_a_people_named_in_the_plural_is_not_a_character(nlp):
    book = make_book(
        "“We are the Mormons,” answered his companions, and John Ferrier looked at them.",
        "The two young Mormons stared at John Ferrier in amazement.",
        "“On, on to Zion!” cried the crowd of Mormons, and John Ferrier followed the Mormons.",
        "The young Mormons were not long in following John Ferrier.",
    )
    found, _ = find(book, nlp)
    names = every_name(found)
    assert "John Ferrier" in names and "Mormons" not in names
    # Nor is one of that people, called by it: "the Mormon" is whichever Mormon the scene has.
    spoken = [f"“Be quick,” said the Mormon to John Ferrier, and the Mormon {verb}."
              for verb in ("left", "waited", "rode off", "frowned", "sat down")]
    book = make_book(*book.text.split("\n\n"), *spoken)
    found, _ = find(book, nlp)
    names = every_name(found)
    assert "John Ferrier" in names and not {"the Mormon", "The Mormon", "Mormon"} & names


def test_a_wife_called_by_her_husbands_name_is_not_him(nlp):
    book = make_book(
        "Charles Musgrove went out shooting, and Mrs. Charles Musgrove stayed at home with Anne.",
        "Charles Musgrove came back late; Mrs. Charles Musgrove had been ill all day, she said.",
        "Anne thought Charles Musgrove kind to her sister.",
    )
    found, _ = find(book, nlp)
    husband = by_alias(found, "Charles Musgrove")
    assert "Mrs. Charles Musgrove" not in husband.aliases and husband.gender == "m"


def test_ner_processes_find_the_same_characters_and_start_only_with_texts_to_share(nlp):
    class Spy:
        """The real pipeline, recording how many processes each pipe call asked for."""
        def __init__(self):
            self.processes = []

        def pipe(self, texts, **options):
            self.processes.append(options.get("n_process", 1))
            return nlp.pipe(texts, **options)

    scenes = ["Mr. Collins spoke to Elizabeth Bennet about the rectory.",
              "Elizabeth Bennet laughed at Mr. Collins.", "Jane Bennet wrote to Mr. Bingley from town.",
              "Mr. Bingley answered Jane Bennet at once."]
    # more paragraphs than one NER batch, so a second process has a batch of its own
    book = make_book(*(scenes[i % len(scenes)] for i in range(characters.NER_BATCH + 40)))
    spy = Spy()
    alone = characters.find_characters(book, nlp=spy, processes=1)
    shared = characters.find_characters(book, nlp=spy, processes=4)
    assert spy.processes == [1, 2]
    assert shared.characters == alone.characters and shared.mentions == alone.mentions
    assert {c.name for c in shared.characters} >= {"Mr. Collins", "Elizabeth Bennet", "Jane Bennet", "Mr. Bingley"}
    characters.find_characters(make_book(*scenes), nlp=spy, processes=4)
    assert spy.processes[-1] == 1


def test_ner_runs_in_one_process_where_processes_cannot_share_a_queue(nlp, monkeypatch, capsys):
    class Spy:
        def __init__(self):
            self.processes = []

        def pipe(self, texts, **options):
            self.processes.append(options.get("n_process", 1))
            return nlp.pipe(texts, **{**options, "n_process": 1})

    def no_semaphores():
        raise OSError(38, "Function not implemented")  # what SemLock raises without /dev/shm

    scenes = ["Mr. Collins spoke to Elizabeth Bennet about the rectory.", "Elizabeth Bennet laughed at Mr. Collins."]
    book = make_book(*(scenes[i % 2] for i in range(characters.NER_BATCH + 40)))
    spy = Spy()
    monkeypatch.setattr(characters.multiprocessing, "Queue", no_semaphores)
    found = characters.find_characters(book, nlp=spy, processes=2)
    assert spy.processes == [1]
    assert "worker processes are unavailable" in capsys.readouterr().err
    assert {c.name for c in found.characters} >= {"Mr. Collins", "Elizabeth Bennet"}
