"""Excerpts of long texts around a pair's mentions (collab/excerpt.py) and their use in guide prompts."""
from __future__ import annotations

import pytest

from collab.data import Mention, Pair
from collab.excerpt import GAP, excerpt


def _pair(text: str, head: str, tail: str, head_at: int = 0, tail_at: int = 0) -> Pair:
    """A pair whose mentions are the `head_at`-th and `tail_at`-th occurrences of `head` and `tail`."""
    def nth(name: str, n: int) -> Mention:
        start = -1
        for _ in range(n + 1):
            start = text.index(name, start + 1)
        return Mention(name, start, start + len(name), "PER")
    return Pair("d1", text, nth(head, head_at), nth(tail, tail_at), "friend_of")


def _mentions_hold(pair: Pair) -> None:
    assert pair.text[pair.head.start:pair.head.end] == pair.head.text
    assert pair.text[pair.tail.start:pair.tail.end] == pair.tail.text


FILLER = [f"Speaker 3: Line {i} is about the weather and nothing else at all." for i in range(40)]
DIALOGUE = "\n".join(FILLER[:10] + ["Speaker 1: Hi, I am Monica, and this is my friend Rachel."]
                     + FILLER[10:13] + ["Speaker 2: Rachel here. Monica and I go way back."]
                     + FILLER[13:30] + ["Speaker 1: Monica again, just checking."] + FILLER[30:])


def test_a_short_text_is_left_as_it_is():
    pair = _pair("Monica met Rachel.", "Monica", "Rachel")
    assert excerpt(pair, 1000) is pair


def test_a_dialogue_keeps_the_nearest_lines_a_line_naming_the_pair_counting_as_nearer():
    pair = _pair(DIALOGUE, "Monica", "Rachel")
    assert len(pair.text) > 2500
    cut = excerpt(pair, 250)
    _mentions_hold(cut)
    assert cut.text.startswith(f"{GAP} Speaker 3: Line 9 ") and cut.text.endswith(GAP)
    # the annotated line and one line either side; then the line naming both, four lines on, before the
    # two lines of weather between them (each half as far away), for which 250 characters leave no room
    assert "Line 10 " in cut.text and "Line 11 " not in cut.text and "Line 12 " not in cut.text
    assert f"{GAP} Speaker 2: Rachel here" in cut.text
    assert "Monica again" not in cut.text and len(cut.text) <= 250 + 3 * (len(GAP) + 1)
    assert excerpt(pair, 250) == cut  # the same input always gives the same excerpt


def test_mentions_far_apart_both_stay_with_their_offsets_moved():
    pair = _pair(DIALOGUE, "Monica", "Rachel", head_at=2, tail_at=1)  # "Monica again" and "Rachel here"
    cut = excerpt(pair, 300)
    _mentions_hold(cut)
    assert cut.text[cut.head.start:].startswith("Monica again")
    assert cut.text[cut.tail.start:].startswith("Rachel here")


def test_one_long_sentence_is_cut_around_each_mention():
    text = "Alice " + "walked on and on " * 100 + "until she met Bob at the far end of the road."
    pair = _pair(text, "Alice", "Bob")
    cut = excerpt(pair, 120)
    _mentions_hold(cut)
    assert len(cut.text) <= 120 + 2 * (len(GAP) + 1)
    assert cut.text.startswith("Alice") and GAP in cut.text


def test_sentences_of_one_paragraph_are_the_segments_and_a_title_split_does_not_lose_a_mention():
    sentences = [f"The rain fell on day {i} without any change." for i in range(30)]
    text = " ".join(sentences[:12] + ["Then Mr. Darcy spoke to Elizabeth."] + sentences[12:])
    pair = _pair(text, "Mr. Darcy", "Elizabeth")
    cut = excerpt(pair, 150)
    _mentions_hold(cut)
    assert "Then Mr. Darcy spoke to Elizabeth." in cut.text
    assert "day 11 " in cut.text and "day 12 " in cut.text and "day 0 " not in cut.text
    assert cut.text.startswith(GAP) and cut.text.endswith(GAP)


@pytest.mark.model
@pytest.mark.parametrize("template", ["slm/guide_codes", "slm/schema_enum"])
def test_a_text_chars_template_renders_the_excerpt_and_a_short_pair_as_v1(smollm2_tokenizer, template):
    from guides.scoring import LabelScorer

    labels = ["friend_of", "no_relation"]
    v1, v2 = (LabelScorer(None, smollm2_tokenizer, labels, template=f"{template}.v{n}") for n in (1, 2))
    short = _pair("Monica met Rachel.", "Monica", "Rachel")
    assert v1.prompt_ids(short) == v2.prompt_ids(short)
    long = _pair(DIALOGUE, "Monica", "Rachel")
    user = v2.render(long).messages[-1]["content"]
    assert excerpt(long, 1000).text in user and "Line 0 " not in user
    assert len(v2.prompt_ids(long)) < len(v1.prompt_ids(long)) / 2


@pytest.mark.model
def test_k_shot_v2_cuts_the_examples_shorter_than_the_pair_and_short_texts_render_as_v1(smollm2_tokenizer):
    from guides.scoring import LabelScorer

    def scorer(version: int, shown: list[Pair]) -> LabelScorer:
        return LabelScorer(None, smollm2_tokenizer, ["friend_of", "no_relation"],
                           template=f"slm/k_shot_codes.v{version}", demonstrations=lambda pair: shown)

    short, long = _pair("Ross met Joey.", "Ross", "Joey"), _pair(DIALOGUE, "Monica", "Rachel")
    assert scorer(1, [short]).prompt_ids(short) == scorer(2, [short]).prompt_ids(short)
    v1, v2 = scorer(1, [long, short]), scorer(2, [long, short])
    messages = v2.render(long).messages
    example, own = messages[1]["content"], messages[-1]["content"]
    assert excerpt(long, 200).text in example and excerpt(long, 1000).text not in example
    assert excerpt(long, 1000).text in own
    assert len(v2.prompt_ids(long)) < len(v1.prompt_ids(long))
