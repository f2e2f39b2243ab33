"""The guidance prompt builder: what a rendered prompt shows, the token budget, leaks, and show-prompt."""
from __future__ import annotations

import argparse
import json
import re

import pytest
from conftest import pair_record
from fakes import FakeEmbedder

from collab import embed, retrieval
from collab.config import add_config_flags, config_from_args
from collab.data import DataError, Mention, Pair
from collab.prompt_builder import (MESSAGE_OVERHEAD, PROMPT_OVERHEAD, BudgetError, Shot, add_show_prompt_arguments,
                                   build_prompt, cmd_show_prompt, estimate_tokens, tokenizer_counter)
from collab.prompts import PromptError
from collab.retrieval import Candidate, Demonstration, RetrievalError, mark_mentions
from collab.schema import load_schema

CAUSE, EFFECT_CAUSE = "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"
TOPIC, CONTAINER, ORIGIN = "Message-Topic(e1,e2)", "Content-Container(e1,e2)", "Entity-Origin(e1,e2)"
TRAIN = [
    ("t1", "The fire caused smoke in the kitchen.", "fire", "smoke", CAUSE),
    ("t2", "The earthquake caused a tsunami.", "earthquake", "tsunami", CAUSE),
    ("t3", "The flood was caused by heavy rain.", "flood", "rain", EFFECT_CAUSE),
    ("t4", "The letter is about the war.", "letter", "war", TOPIC),
    ("t5", "The apples were in a basket.", "apples", "basket", CONTAINER),
    ("t6", "The man walked past the house.", "man", "house", "no_relation"),
]


def make_pair(id, text, head, tail, relation=None, split=None):
    hs, ts = text.index(head), text.index(tail)
    return Pair(id, text, Mention(head, hs, hs + len(head)), Mention(tail, ts, ts + len(tail)), relation, split=split)


QUERY = make_pair("q1", "The storm caused damage to the roof.", "storm", "damage")
DEMOS = [make_pair(i, text, head, tail, label, split="train") for i, text, head, tail, label in TRAIN]
CANDIDATES = [Candidate(CAUSE, 1.2, ("guide:0.70",)), Candidate(TOPIC, 0.6, ()), Candidate(CONTAINER, 0.4, ()),
              Candidate(EFFECT_CAUSE, 0.3, ()), Candidate("no_relation", 0.1, ("always",))]
SLM = {CAUSE: 0.7, EFFECT_CAUSE: 0.2, "no_relation": 0.1}


@pytest.fixture
def semeval():
    return load_schema("semeval")


def build(schema, **options):
    arguments = {"template": "llm/guide.v1", "schema": schema, "candidates": CANDIDATES,
                 "demonstrations": [Shot(DEMOS[0], {TOPIC: 0.55, CAUSE: 0.4}), Demonstration(DEMOS[3], 0.5),
                                    Demonstration(DEMOS[4], 0.4), Demonstration(DEMOS[5], 0.3)],
                 "slm": SLM, **options}
    return build_prompt(QUERY, **arguments)


def user_text(built):
    return built.prompt.messages[-1]["content"]


def test_guide_prompt_shows_sentence_answer_definitions_demonstrations_and_format(semeval):
    built = build(semeval)
    system, user = built.prompt.messages[0]["content"], user_text(built)
    assert [m["role"] for m in built.prompt.messages] == ["system", "user"]
    assert "The [E1]storm[/E1] caused [E2]damage[/E2] to the roof." in user
    assert '"relation"' in system and '"confidence"' in system and '"evidence"' in system
    assert "no_relation" in system
    assert f"Small model's answer: {CAUSE} (confidence 0.70); runner-up: {EFFECT_CAUSE} (0.20)" in user
    for label in built.kept["definitions"]:
        assert f"- {label}: {semeval.label(label).definition}" in user
    assert "Trigger words: cause, causes, caused" in user
    # the demonstration with a known small-model answer shows it before the gold answer; the others show none
    assert (f"{mark_mentions(DEMOS[0])}\nSmall model's answer: {TOPIC} (confidence 0.55)\n"
            f"Correct answer: {CAUSE}") in user
    assert f"{mark_mentions(DEMOS[3])}\nCorrect answer: {TOPIC}" in user
    assert user.count("Small model's answer") == 2
    assert user.index("Sentence:") < user.index("Candidate labels") < user.index("Solved examples")
    assert built.kept["demonstrations"] == ["t1", "t4", "t5", "t6"] and built.dropped == {
        "demonstrations": 0, "definitions": []}


def test_small_model_answer_and_negative_label_are_always_allowed(semeval):
    built = build(semeval, candidates=[TOPIC], slm={ORIGIN: 0.6, TOPIC: 0.3})
    assert built.kept["labels"] == [TOPIC, ORIGIN, "no_relation"]
    assert f"- {ORIGIN}: {semeval.label(ORIGIN).definition}" in user_text(built)
    no_answer = build(semeval, slm=None)
    assert "Small model's answer: not available" in user_text(no_answer) and no_answer.slm is None
    with pytest.raises(PromptError, match="not labels of schema"):
        build(semeval, candidates=["Made-Up(e1,e2)"])


def test_k_shot_prompt_gives_demonstrations_as_earlier_turns(semeval):
    built = build(semeval, template="slm/k_shot.v1")
    assert [m["role"] for m in built.prompt.messages] == ["system"] + ["user", "assistant"] * 4 + ["user"]
    assert [m["content"] for m in built.prompt.messages[2:-1:2]] == [CAUSE, TOPIC, CONTAINER, "no_relation"]
    assert built.prompt.messages[1]["content"].startswith(f"Sentence: {DEMOS[0].text}\nEntity 1: fire")
    assert user_text(built) == f"Sentence: {QUERY.text}\nEntity 1: storm\nEntity 2: damage\nRelation:"


def test_building_is_deterministic(semeval):
    budget = build(semeval).tokens - 1
    first, second = build(semeval, budget=budget), build(semeval, budget=budget)
    assert first == second and first.dropped["demonstrations"] == 1
    assert json.dumps(first.to_json()) == json.dumps(second.to_json())
    assert first.to_json()["messages"] == first.prompt.messages and first.to_json()["token_count"] == "estimate"


def test_budget_drops_demonstrations_first_then_the_lowest_ranked_definitions(semeval):
    full = build(semeval)
    assert full.tokens == estimate_tokens(full.prompt.messages)
    one_less = build(semeval, budget=full.tokens - 1)
    assert one_less.kept["demonstrations"] == ["t1", "t4", "t5"]  # the least similar went first
    assert one_less.dropped == {"demonstrations": 1, "definitions": []} and one_less.tokens < full.tokens
    seen_definition_drops = set()
    for budget in range(full.tokens, 250, -25):
        try:
            built = build(semeval, budget=budget)
        except BudgetError:
            break
        assert built.tokens <= budget
        user = user_text(built)
        assert mark_mentions(QUERY) in user
        dropped = built.dropped["definitions"]
        if dropped:
            assert built.dropped["demonstrations"] == 4 and "Solved examples" not in user
        # lowest-ranked first, never the small model's top answer nor the negative label
        assert dropped == [EFFECT_CAUSE, CONTAINER, TOPIC][:len(dropped)]
        assert CAUSE in built.kept["definitions"] and "no_relation" in built.kept["definitions"]
        for label in dropped:  # still allowed by name, without its definition
            assert semeval.label(label).definition not in user
            assert label in user.split("also allowed")[1]
        seen_definition_drops.add(len(dropped))
    else:
        pytest.fail("no budget was too small")
    assert seen_definition_drops >= {0, 3}


def test_impossible_budget_is_a_clear_error(semeval):
    with pytest.raises(BudgetError, match=r"pair 'q1' needs \d+ tokens .* budget is 50"):
        build(semeval, budget=50)


def test_builder_refuses_dev_test_demonstrations_and_the_query_itself(semeval):
    dev = make_pair("d9", "The heat caused a drought.", "heat", "drought", CAUSE, split="dev")
    with pytest.raises(PromptError, match="split 'dev'"):
        build(semeval, demonstrations=[Demonstration(dev, 0.9)])
    twin = make_pair("t99", QUERY.text, "storm", "damage", CAUSE, split="train")
    with pytest.raises(PromptError, match="is the query"):
        build(semeval, demonstrations=[Demonstration(twin, 1.0)])


def test_tokenizer_counter_uses_the_chat_template_when_there_is_one():
    class WordTokenizer:
        chat_template = None

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": text.split()}

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return " ".join(f"<{m['role']}> {m['content']} <end>" for m in messages) + " <assistant>"

    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three"}]
    tokenizer = WordTokenizer()
    assert tokenizer_counter(tokenizer)(messages) == 5 + 2 * MESSAGE_OVERHEAD + PROMPT_OVERHEAD
    tokenizer.chat_template = "set"
    assert tokenizer_counter(tokenizer)(messages) == 10


# ------------------------------------------------------------------------------------------------ show-prompt
@pytest.fixture
def files(write_jsonl, monkeypatch):
    monkeypatch.setattr(embed, "SentenceEmbedder", lambda *args, **kwargs: FakeEmbedder())
    monkeypatch.setattr(retrieval, "_spacy", lambda: None)
    train = write_jsonl([pair_record(*row, split="train") for row in TRAIN], "train.jsonl")
    # d1 is t1's sentence and mentions under a dev id; d2 is a dev sentence close to both
    dev = write_jsonl([pair_record("d1", TRAIN[0][1], "fire", "smoke", CAUSE, split="dev"),
                       pair_record("d2", "The fire caused smoke and ash in the hall.", "fire", "ash", CAUSE,
                                   split="dev"),
                       pair_record("d3", "The storm caused damage.", "storm", "damage", None, split="test")],
                      "dev.jsonl")
    pred = write_jsonl([{"id": "d3", "relation": CAUSE, "distribution": {CAUSE: 0.8, TOPIC: 0.1}},
                        {"id": "t2", "relation": EFFECT_CAUSE, "distribution": {EFFECT_CAUSE: 0.6}}], "pred.jsonl")
    return {"train": str(train), "dev": str(dev), "pred": str(pred)}


def show_prompt(argv, capsys):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, ["shared", "schema", "cache_dir", "batch_size", "threads", "skip_invalid"])
    add_show_prompt_arguments(parser)
    args = parser.parse_args(argv)
    cmd_show_prompt(args, config_from_args(args))
    return capsys.readouterr().out


def test_show_prompt_prints_the_messages_and_metadata(files, tmp_path, capsys):
    common = ["--data", files["dev"], "--train", files["train"], "--cache-dir", str(tmp_path / "cache")]
    out = show_prompt([*common, "--id", "d3", "--guide-pred", files["pred"], "--k", "3"], capsys)
    assert out.startswith("=== system ===\n") and "\n=== user ===\n" in out
    assert "Sentence: The [E1]storm[/E1] caused [E2]damage[/E2]." in out
    assert f"Small model's answer: {CAUSE} (confidence 0.80); runner-up: {TOPIC} (0.10)" in out
    # t2's answer comes from the same prediction file; the other demonstrations have none
    assert out.count("Small model's answer") == 2
    assert f"{mark_mentions(DEMOS[1])}\nSmall model's answer: {EFFECT_CAUSE} (confidence 0.60)" in out
    last = out.rstrip().splitlines()[-1]
    assert re.fullmatch(r"-- llm/guide\.v1: \d+ tokens \(estimated\) no budget; dropped 0 demonstrations, "
                        r"definitions: none", last)

    full = json.loads(show_prompt([*common, "--id", "d3", "--json", "--demos", "2"], capsys))
    assert len(full["kept"]["demonstrations"]) == 2 and full["slm"] is None
    tight = json.loads(show_prompt([*common, "--id", "d3", "--json", "--budget", str(full["tokens"] - 1)], capsys))
    assert tight["tokens"] < full["tokens"] and tight["dropped"]["demonstrations"] >= 1 and tight["budget"] == (
        full["tokens"] - 1)


def test_show_prompt_never_shows_dev_or_test_pairs_nor_the_query(files, tmp_path, capsys):
    common = ["--data", files["dev"], "--train", files["train"], "--cache-dir", str(tmp_path / "cache"), "--json"]
    dev_only = {"d2": "The fire caused smoke and ash in the hall.", "d3": "The storm caused damage."}
    for pair_id in ("d1", "d2", "d3"):
        built = json.loads(show_prompt([*common, "--id", pair_id, "--demos", "6"], capsys))
        text = "\n".join(m["content"] for m in built["messages"])
        assert built["kept"]["demonstrations"] and set(built["kept"]["demonstrations"]) <= {t[0] for t in TRAIN}
        question = next(line for line in text.splitlines() if line.startswith("Sentence: "))
        assert text.count(question.removeprefix("Sentence: ")) == 1  # never again as an example
        for other_id, other in dev_only.items():
            if other_id != pair_id:
                assert other not in text, f"{other_id} leaked into the prompt for {pair_id}"
    d1 = json.loads(show_prompt([*common, "--id", "d1"], capsys))
    assert "t1" not in d1["kept"]["demonstrations"]  # t1 is d1's sentence and mentions under a train id
    with pytest.raises(RetrievalError, match="split 'dev'"):
        show_prompt(["--data", files["dev"], "--train", files["dev"], "--cache-dir", str(tmp_path / "cache2"),
                     "--id", "d1"], capsys)


def test_show_prompt_names_an_unknown_id_and_a_missing_prediction(files, tmp_path, capsys):
    common = ["--data", files["dev"], "--train", files["train"], "--cache-dir", str(tmp_path / "cache")]
    with pytest.raises(DataError, match=r"no pair with id 'nope' among 3 pairs; ids: d1, d2, d3"):
        show_prompt([*common, "--id", "nope"], capsys)
    with pytest.raises(DataError, match="no prediction for pair 'd1'"):
        show_prompt([*common, "--id", "d1", "--guide-pred", files["pred"]], capsys)


@pytest.mark.model
def test_estimate_never_undercounts_smollm2(semeval, smollm2_tokenizer):
    real = tokenizer_counter(smollm2_tokenizer)
    for template in ("llm/guide.v1", "slm/k_shot.v1"):
        for options in ({}, {"demonstrations": [], "slm": None}):
            messages = build(semeval, template=template, **options).prompt.messages
            assert estimate_tokens(messages) >= real(messages) > 0
    texts = [mark_mentions(p) for p in DEMOS] + [
        CAUSE, "[E1]New [E2]York[/E2] City[/E1]", "Elected in 1986 , re - elected in 1993 , 1997 .",
        '{"relation": "no_relation", "confidence": 0.93, "evidence": "caused by"}', '"Meyer Wolfshiem?',
        "Zürich café naïve", "  spaced   out\n\n\nlines", user_text(build(semeval))]
    empty = estimate_tokens([{"role": "user", "content": ""}])
    for text in texts:  # the text alone, without the overheads that would hide an undercount
        real_text = len(smollm2_tokenizer(text, add_special_tokens=False)["input_ids"])
        assert estimate_tokens([{"role": "user", "content": text}]) - empty >= real_text, text
