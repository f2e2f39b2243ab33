"""The scripted fake server behaves like an OpenAI-compatible endpoint for the real `openai` client."""
import json
import time

import openai
import pytest
from fake_llm_server import FakeLLMServer, answer, content, slow, status


@pytest.fixture
def fake_llm():
    with FakeLLMServer() as server:
        yield server


def client(server, **kwargs):
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, api_key="x", **kwargs)


def chat(c, text="hi", **kwargs):
    return c.chat.completions.create(model="fake-llm", messages=[{"role": "user", "content": text}], **kwargs)


def test_content_reply_arrives_and_request_is_recorded(fake_llm):
    fake_llm.add(content("hello", prompt_tokens=7, completion_tokens=3))
    reply = chat(client(fake_llm), "ping", temperature=0)
    assert reply.choices[0].message.content == "hello"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (7, 3, 10)
    assert fake_llm.requests[0]["messages"] == [{"role": "user", "content": "ping"}]
    assert fake_llm.requests[0]["temperature"] == 0
    assert fake_llm.hits["/v1/chat/completions"] == 1


def test_script_then_default_picks_first_candidate_label(fake_llm):
    fake_llm.add(answer("Cause-Effect(e1,e2)", confidence=0.7))
    c = client(fake_llm)
    prompt = "Sentence: ...\nCandidate labels:\n- Entity-Origin(e1,e2)\n- Other\nAnswer in JSON."
    first = json.loads(chat(c, prompt).choices[0].message.content)
    assert first["relation"] == "Cause-Effect(e1,e2)" and first["confidence"] == 0.7
    assert json.loads(chat(c, prompt).choices[0].message.content)["relation"] == "Entity-Origin(e1,e2)"
    assert json.loads(chat(c, "no labels here").choices[0].message.content)["relation"] == "no_relation"
    assert len(fake_llm.requests) == 3


def test_429_raises_without_retries(fake_llm):
    fake_llm.add(status(429, headers={"Retry-After": "1"}))
    with pytest.raises(openai.RateLimitError):
        chat(client(fake_llm))


def test_429_retry_after_is_honoured(fake_llm):
    fake_llm.add(status(429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": "1"}),
                 content("ok"))
    started = time.monotonic()
    reply = chat(client(fake_llm, max_retries=1))
    assert reply.choices[0].message.content == "ok"
    assert time.monotonic() - started >= 0.9
    assert len(fake_llm.requests) == 2


def test_error_statuses_map_to_openai_errors(fake_llm):
    fake_llm.add(status(404, {"error": {"message": "model not found", "type": "invalid_request_error",
                                        "code": "model_not_found"}}),
                 status(500))
    c = client(fake_llm)
    with pytest.raises(openai.NotFoundError, match="model not found"):
        chat(c)
    with pytest.raises(openai.InternalServerError):
        chat(c)


def test_slow_reply_times_out_client(fake_llm):
    fake_llm.add(slow(0.5, content("late")))
    with pytest.raises(openai.APITimeoutError):
        chat(client(fake_llm, timeout=0.1))


def test_models_list(fake_llm):
    assert [m.id for m in client(fake_llm).models.list()] == ["fake-llm"]
    assert fake_llm.hits["/v1/models"] == 1


def test_models_endpoint_can_be_absent_and_unknown_paths_404():
    with FakeLLMServer(models_endpoint=False) as server:
        with pytest.raises(openai.NotFoundError):
            client(server).models.list()
        with pytest.raises(openai.NotFoundError):
            client(server).completions.create(model="fake-llm", prompt="x")
        assert server.requests == []
        assert server.hits["/v1/completions"] == 1
