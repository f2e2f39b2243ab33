"""Family edges from shared surnames (collab/book/families.py), on hand-built pair sentences (no models)."""
from __future__ import annotations

import pytest

from collab.book.families import family_edges
from collab.book.pairs import PairMention
from collab.book.records import BookText, Chapter, Character, Edge, Sentence
from collab.schema import load_schema

SCHEMA = load_schema("characters")


def people(*names: str | tuple[str, list[str]]) -> list[Character]:
    out = []
    for entry in names:
        name, aliases = entry if isinstance(entry, tuple) else (entry, [])
        out.append(Character(name.lower().replace(".", "").replace(" ", "-"), name, aliases, 5))
    return out


def meet(characters: list[Character], *sentences: tuple[str, str, str]) -> tuple[BookText, list[PairMention]]:
    """A book of the given sentences, each naming the pair (first name, second name) it is given with."""
    ids = {c.name: c.id for c in characters}
    text, where, sentence_rows = "", [], []
    for i, (sentence, first, second) in enumerate(sentences):
        start = len(text)
        text += sentence + " "
        sentence_rows.append(Sentence(i, start, start + len(sentence), 1, i))
        where.append(PairMention(f"s{i}", ids[first], ids[second], i, 1, start, start + len(sentence), 1))
    return BookText("fixture.txt", text, [Chapter(1, "Chapter 1", 0, len(text))], sentence_rows), where


def ties(characters: list[Character], *sentences: tuple[str, str, str], guide: list[Edge] = ()) -> set:
    book, where = meet(characters, *sentences)
    return {(e.source, e.relation, e.target) for e in family_edges(book, characters, where, SCHEMA, list(guide))}


@pytest.mark.parametrize("names, expected", [
    (("Mr. Weston", "Mrs. Weston"), ("mr-weston", "spouse_of", "mrs-weston")),
    (("Sir William Lucas", "Lady Lucas"), ("lady-lucas", "spouse_of", "sir-william-lucas")),
    (("Colonel Campbell", "Mrs. Campbell"), ("colonel-campbell", "spouse_of", "mrs-campbell")),
    (("Mrs. John Dashwood", ("John Dashwood", ["Mr. Dashwood"])), ("john-dashwood", "spouse_of", "mrs-john-dashwood")),
    (("Mrs. Thorpe", "Isabella Thorpe"), ("mrs-thorpe", "parent_of", "isabella-thorpe")),
    (("Elinor Dashwood", "Mrs. Dashwood"), ("mrs-dashwood", "parent_of", "elinor-dashwood")),   # either order
    (("General Tilney", "Eleanor Tilney"), ("general-tilney", "parent_of", "eleanor-tilney")),
    (("Captain Tilney", "Eleanor Tilney"), ("captain-tilney", "sibling_of", "eleanor-tilney")),  # a son's rank
    (("Catherine Morland", "James Morland"), ("catherine-morland", "sibling_of", "james-morland")),
    (("Aunt March", "Jo March"), ("aunt-march", "relative_of", "jo-march")),
    (("Sir Walter Elliot", "Anne Elliot"), ("sir-walter-elliot", "parent_of", "anne-elliot")),
    (("Lady Elliot", "Mr Elliot"), ("lady-elliot", "relative_of", "mr-elliot")),        # a Lady's husband is a Sir
    (("Sir Walter Elliot", "Mr Elliot"), ("mr-elliot", "relative_of", "sir-walter-elliot")),
])
def test_the_titles_say_which_tie(names, expected):
    characters = people(*names)
    a, b = characters
    assert ties(characters, (f"{a.name} spoke to {b.name}.", a.name, b.name)) == {expected}


def test_a_young_man_called_mr_is_no_husband_of_the_mrs():
    # "Mr. Martin" is Robert Martin's other name; Mrs. Martin is his mother, not his wife.
    characters = people(("Robert Martin", ["Mr. Martin"]), "Mrs. Martin")
    assert ties(characters, ("Robert Martin walked with Mrs. Martin.", "Robert Martin", "Mrs. Martin")) == \
        {("mrs-martin", "parent_of", "robert-martin")}


def test_kin_must_meet_and_share_a_surname():
    characters = people("Mr. Weston", "Mrs. Weston", "Jane Fairfax", "Mr. Knightley")
    assert ties(characters, ("Jane Fairfax saw Mr. Knightley.", "Jane Fairfax", "Mr. Knightley")) == set()
    # A title that also goes before given names: "Lady Catherine" has no surname, "Lady Lucas" has one.
    characters = people("Lady Catherine", "Catherine Morland", "Lady Lucas", "Maria Lucas")
    assert ties(characters, ("Lady Catherine met Catherine Morland.", "Lady Catherine", "Catherine Morland"),
                ("Lady Lucas met Maria Lucas.", "Lady Lucas", "Maria Lucas")) == \
        {("lady-lucas", "parent_of", "maria-lucas")}


def test_two_forms_of_one_given_name_are_one_person_not_brothers():
    characters = people("Lizzy Bennet", "Elizabeth Bennet")   # a nickname the characters stage left apart
    assert ties(characters, ("Lizzy Bennet, or Elizabeth Bennet, ran.", "Lizzy Bennet", "Elizabeth Bennet")) == set()


def test_a_guide_family_edge_stands_and_a_narrator_has_no_surname():
    characters = people("Mr. Weston", "Mrs. Weston")
    guide = [Edge("mr-weston", "mrs-weston", "sibling_of", 0.9, 1, [], {"slm": 1, "llm": 0, "merged": 0})]
    sentence = ("Mr. Weston and Mrs. Weston were married.", "Mr. Weston", "Mrs. Weston")
    assert ties(characters, sentence, guide=guide) == set()
    friends = [Edge("mr-weston", "mrs-weston", "friend_of", 0.9, 1, [], {"slm": 1, "llm": 0, "merged": 0})]
    assert ties(characters, sentence, guide=friends) == {("mr-weston", "spouse_of", "mrs-weston")}
    characters[0].narrator = True
    assert ties(characters, sentence) == set()


def test_edges_carry_their_basis_and_the_sentences_that_word_the_tie_first():
    characters = people("Mr. Weston", "Mrs. Weston")
    book, where = meet(characters, ("Mr. Weston bowed to Mrs. Weston.", "Mr. Weston", "Mrs. Weston"),
                       ("Mrs. Weston, his wife, smiled at Mr. Weston.", "Mrs. Weston", "Mr. Weston"))
    [edge] = family_edges(book, characters, where, SCHEMA, [])
    assert edge.basis == "names" and edge.support == 0 and not edge.directed
    assert [e.text for e in edge.evidence] == ["Mrs. Weston, his wife, smiled at Mr. Weston.",
                                               "Mr. Weston bowed to Mrs. Weston."]
    assert family_edges(book, characters, where, load_schema("semeval"), []) == []   # no family labels there


def test_different_surnames_rule_out_parent_and_sibling_unless_a_wife_married_in():
    from collab.book.families import unlikely_kin

    ruled_out = unlikely_kin(people("Emma Woodhouse", "Harriet Smith", "Mrs. Weston", "Frank Churchill", "Elinor"))
    assert ruled_out("parent_of", "emma-woodhouse", "harriet-smith")
    assert ruled_out("sibling_of", "harriet-smith", "emma-woodhouse")
    assert not ruled_out("friend_of", "emma-woodhouse", "harriet-smith")
    assert not ruled_out("relative_of", "emma-woodhouse", "harriet-smith")        # cousins, aunts, in-laws
    assert not ruled_out("parent_of", "mrs-weston", "frank-churchill")            # a stepmother
    assert not ruled_out("sibling_of", "elinor", "emma-woodhouse")                # no surname known


def test_a_ruled_out_key_gives_way_to_the_pairs_next_best():
    from collab.book.edges import aggregate_edges

    characters = people("Emma Woodhouse", "Harriet Smith")
    book, where = meet(characters, *[("Emma Woodhouse met Harriet Smith and her father.", "Emma Woodhouse",
                                      "Harriet Smith")] * 3)
    predictions = [{"id": m.id, "relation": "parent_of", "confidence": 0.6,
                    "distribution": {"parent_of": 0.6, "friend_of": 0.3, "no_relation": 0.1}} for m in where]
    plain = aggregate_edges(book, where, predictions, SCHEMA, threshold=0.25, frequent=0.5)
    assert [(e.source, e.relation, e.target) for e in plain] == [("emma-woodhouse", "parent_of", "harriet-smith")]
    vetoed = aggregate_edges(book, where, predictions, SCHEMA, threshold=0.25, frequent=0.5,
                             ruled_out=lambda label, source, target: label == "parent_of")
    assert [(e.source, e.relation, e.target) for e in vetoed] == [("emma-woodhouse", "friend_of", "harriet-smith")]


def test_a_russian_womans_surname_is_her_familys():
    from collab.book.families import unlikely_kin

    characters = people("Natasha Rostova", "Nikolai Rostov", "Anna Karenina", "Alexei Karenin", "Pierre Bezukhov")
    ruled_out = unlikely_kin(characters)
    assert not ruled_out("sibling_of", "natasha-rostova", "nikolai-rostov")
    assert ruled_out("sibling_of", "natasha-rostova", "pierre-bezukhov")
    # Kin, at least: two given names cannot tell a wife from a sister.
    assert {(s, t) for s, _, t in ties(characters, ("Anna Karenina looked at Alexei Karenin.", "Anna Karenina",
                                                     "Alexei Karenin"))} == {("alexei-karenin", "anna-karenina")}


def test_a_bare_mr_beside_a_given_named_man_of_that_name_may_be_him():
    characters = people("Mr. Gargery", "Joe Gargery", "Mrs. Joe Gargery")
    characters[1].gender = "m"
    assert ties(characters, ("Mr. Gargery, that is Joe Gargery, came in.", "Mr. Gargery", "Joe Gargery"),
                ("Joe Gargery kissed Mrs. Joe Gargery.", "Joe Gargery", "Mrs. Joe Gargery")) == \
        {("joe-gargery", "spouse_of", "mrs-joe-gargery")}


def test_a_boy_called_master_and_two_spellings_of_one_nickname_may_be_one_person():
    characters = people("Master Bates", "Charley Bates", "Master Charles Bates")
    characters[1].gender = characters[2].gender = "m"
    assert ties(characters, ("Master Bates, that is Charley Bates, laughed.", "Master Bates", "Charley Bates"),
                ("Charley Bates, or Master Charles Bates, laughed.", "Charley Bates", "Master Charles Bates"),
                ("Master Bates, or Master Charles Bates, laughed.", "Master Bates", "Master Charles Bates")) == set()


def test_a_schema_whose_family_labels_have_no_trigger_words_still_gets_edges(tmp_path):
    import yaml

    raw = yaml.safe_load(open(SCHEMA.path, encoding="utf-8"))
    for label in raw["labels"]:
        label["triggers"] = []
    path = tmp_path / "bare.v1.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    characters = people("Mr. Weston", "Mrs. Weston")
    book, where = meet(characters, ("Mr. Weston bowed to Mrs. Weston.", "Mr. Weston", "Mrs. Weston"))
    [edge] = family_edges(book, characters, where, load_schema(str(path)), [])
    assert edge.relation == "spouse_of" and edge.evidence[0].text == "Mr. Weston bowed to Mrs. Weston."


def test_an_aunt_is_one_by_the_name_the_book_uses_most():
    characters = people(("Amy March", ["Amy", "Aunt Amy"]), "Mrs. March")
    assert ties(characters, ("Amy March kissed Mrs. March.", "Amy March", "Mrs. March")) == \
        {("mrs-march", "parent_of", "amy-march")}
