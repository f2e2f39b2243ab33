"""The LLM client against the scripted fake endpoint: validation, repair, fallback, retries, cache, budget."""
import asyncio
import time

import pytest
from fake_llm_server import FakeLLMServer, answer, content, slow, status

from collab.data import Mention, Pair
from collab.escalation import Budget
from collab.llm import (LLMError, LLMRequest, OpenAIChatLLM, OpenAISettings, Price, ReplyError, SimulatedLLM,
                        parse_reply, strip_reasoning)
from collab.llm_cache import ReplyCache

LABELS = ["Cause-Effect(e1,e2)", "Message-Topic(e1,e2)", "no_relation"]
PAIR = Pair("p1", "The fire caused smoke.", Mention("fire", 4, 8), Mention("smoke", 16, 21), "Cause-Effect(e1,e2)")


def request(pair=PAIR, text="Which relation?"):
    return LLMRequest(pair, [{"role": "user", "content": text}], LABELS, "no_relation", "llm/guide.v1@test")


def ask(server, *requests, cache=None, budget=None, **settings):
    settings = {"retries": 0, "timeout": 5, **settings}
    llm = OpenAIChatLLM(OpenAISettings(server.base_url, server.model, **settings), cache=cache, budget=budget)

    async def run():
        try:
            return [await llm.answer(r) for r in requests]
        finally:
            await llm.close()

    return asyncio.run(run())


@pytest.mark.parametrize("text, expected", [
    ('{"relation": "Cause-Effect(e1,e2)", "confidence": 0.8, "evidence": "caused"}', "Cause-Effect(e1,e2)"),
    ('<think>maybe topic?</think>\n```json\n{"relation": "no_relation", "confidence": 1}\n```', "no_relation"),
    ('Sure! {"relation": " cause-effect(E1,E2) ", "confidence": "0.5"} hope that helps', "Cause-Effect(e1,e2)"),
])
def test_parse_reply_accepts_what_it_can_read_unambiguously(text, expected):
    assert parse_reply(text, LABELS)[0] == expected


@pytest.mark.parametrize("text, message", [
    ("Cause-Effect(e1,e2)", "no JSON object"),
    ('{"relation": "Cause-Effect(e1,e2)", "confidence": 0.9', "not valid JSON"),
    ('{"relation": "Entity-Origin(e1,e2)", "confidence": 0.9}', "not one of the allowed labels"),
    ('{"relation": "no_relation", "confidence": 85}', "from 0 to 1"),
    ('{"confidence": 0.3}', 'no "relation"'),
])
def test_parse_reply_names_what_is_wrong(text, message):
    with pytest.raises(ReplyError, match=message):
        parse_reply(text, LABELS)


def test_an_unclosed_think_block_is_dropped_whole():
    assert strip_reasoning('<think>{"relation": "x"} and on') == ""


def test_a_valid_reply_with_usage_and_the_json_schema_sent():
    with FakeLLMServer([answer("Message-Topic(e1,e2)", 0.7, prompt_tokens=40, completion_tokens=9)]) as server:
        (reply,) = ask(server, request(), price=Price(input=1.0, output=2.0))
    assert (reply.relation, reply.confidence, reply.valid) == ("Message-Topic(e1,e2)", 0.7, True)
    assert (reply.calls, reply.prompt_tokens, reply.completion_tokens) == (1, 40, 9)
    assert reply.cost == pytest.approx((40 * 1.0 + 9 * 2.0) / 1e6)
    sent = server.requests[0]
    assert sent["temperature"] == 0 and sent["seed"] == 13
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["relation"]["enum"] == LABELS


def test_an_invalid_reply_is_repaired_with_a_message_that_says_why():
    with FakeLLMServer([content("I think it is causal."), answer("Entity-Origin(e1,e2)"),
                        answer("Cause-Effect(e1,e2)")]) as server:
        (reply,) = ask(server, request(), repairs=2)
    assert reply.relation == "Cause-Effect(e1,e2)" and reply.requests == 3
    last = server.requests[2]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[1]["content"] == "I think it is causal." and "no JSON object" in last[2]["content"]
    assert "Entity-Origin" in last[3]["content"]
    assert "not one of the allowed labels" in last[4]["content"] and "no_relation" in last[4]["content"]


def test_a_reply_that_stays_invalid_falls_back_marked_and_never_raises():
    with FakeLLMServer([content("nope")] * 3) as server:
        (reply,) = ask(server, request(), repairs=1)
    assert not reply.valid and reply.relation is None and reply.requests == 2
    assert "no JSON object" in reply.error and len(server.requests) == 2


def test_a_server_error_for_one_pair_is_a_marked_fallback():
    with FakeLLMServer([status(500), answer("no_relation")]) as server:
        first, second = ask(server, request(), request(text="another"))
    assert not first.valid and "request failed" in first.error
    assert second.relation == "no_relation"


def test_429_is_retried_after_the_servers_retry_after():
    with FakeLLMServer([status(429, headers={"Retry-After": "1"}), answer("no_relation")]) as server:
        start = time.monotonic()
        (reply,) = ask(server, request(), retries=2)
    assert reply.relation == "no_relation" and time.monotonic() - start >= 0.9
    assert server.hits["/v1/chat/completions"] == 2


def test_a_slow_endpoint_times_out_into_a_fallback():
    with FakeLLMServer([slow(3, answer("no_relation"))]) as server:
        (reply,) = ask(server, request(), timeout=0.5)
    assert not reply.valid and "request failed" in reply.error


def test_format_falls_back_when_the_endpoint_rejects_json_schema():
    rejected = status(400, {"error": {"message": "response_format type json_schema is not supported"}})
    with FakeLLMServer([rejected, answer("no_relation"), answer("no_relation")]) as server:
        first, second = ask(server, request(), request(text="b"))
    assert first.valid and second.valid
    formats = [r.get("response_format", {}).get("type") for r in server.requests]
    assert formats == ["json_schema", "json_object", "json_object"]


def test_unknown_model_and_unreachable_endpoint_stop_the_run_clearly():
    with FakeLLMServer(model="served-model") as server:
        llm = OpenAIChatLLM(OpenAISettings(server.base_url, "other-model", retries=0))
        with pytest.raises(LLMError, match="'other-model' is not served.*served-model"):
            asyncio.run(llm.check())
        url = server.base_url
    llm = OpenAIChatLLM(OpenAISettings(url, "served-model", retries=0, timeout=2))
    with pytest.raises(LLMError, match="cannot reach the LLM endpoint"):
        asyncio.run(llm.check())
    with FakeLLMServer([status(404, {"error": {"message": "model not found"}})]) as server:
        with pytest.raises(LLMError, match="does not serve model"):
            ask(server, request())


def test_the_cache_answers_a_repeated_request_without_a_call(tmp_path):
    cache = ReplyCache(tmp_path / "replies.sqlite")
    with FakeLLMServer([answer("Message-Topic(e1,e2)")]) as server:
        (first,) = ask(server, request(), cache=cache)
        (again,) = ask(server, request(), cache=cache)
        (other,) = ask(server, request(text="a different prompt"), cache=cache)
    assert first.calls == 1 and again.calls == 0 and again.relation == "Message-Topic(e1,e2)"
    assert other.calls == 1 and len(server.requests) == 2
    assert cache.stats()["hits"] == 1


def test_the_budget_stops_requests_exactly_and_cache_hits_stay_free(tmp_path):
    cache = ReplyCache(tmp_path / "replies.sqlite")
    budget = Budget(max_calls=2)
    with FakeLLMServer() as server:
        replies = ask(server, *(request(text=f"q{i}") for i in range(4)), cache=cache, budget=budget)
        assert [r.valid for r in replies] == [True, True, False, False]
        assert [r.error for r in replies[2:]] == ["budget", "budget"]
        (cached,) = ask(server, request(text="q0"), cache=cache, budget=budget)
    assert cached.valid and len(server.requests) == 2 and budget.refused == 2


def test_the_cost_budget_reserves_the_worst_case_and_settles_to_the_real_cost():
    price = Price(input=1e6, output=1e6)  # a dollar a token makes the arithmetic visible
    budget = Budget(max_cost=200.0, price=price, max_tokens=10, count_tokens=lambda messages: 90)
    with FakeLLMServer([answer("no_relation", prompt_tokens=50, completion_tokens=5)] * 3) as server:
        replies = ask(server, *(request(text=f"q{i}") for i in range(3)), budget=budget, price=price)
    # each request reserves 100 (90 estimated + 10 out) and costs 55: 55, then 110, then 110 + 100 > 200 is refused
    assert [r.valid for r in replies] == [True, True, False]
    assert budget.spent == pytest.approx(110.0)


def test_the_simulated_llm_is_right_at_its_rate_and_repeatable():
    pairs = [Pair(f"p{i}", PAIR.text, PAIR.head, PAIR.tail, "Cause-Effect(e1,e2)") for i in range(2000)]

    def run(accuracy):
        llm = SimulatedLLM(accuracy)
        return [asyncio.run(llm.answer(request(pair))).relation for pair in pairs]

    answers = run(0.7)
    right = sum(a == "Cause-Effect(e1,e2)" for a in answers) / len(answers)
    assert 0.66 < right < 0.74 and answers == run(0.7)
    assert set(answers) == set(LABELS)


def test_format_falls_back_on_llama_cpps_500_for_json_schema():
    rejected = status(500, {"error": {"message": "Input should be 'text' or 'json_object'"}})
    with FakeLLMServer([rejected, answer("no_relation")]) as server:
        (reply,) = ask(server, request())
    assert reply.valid
    assert [r.get("response_format", {}).get("type") for r in server.requests] == ["json_schema", "json_object"]
