"""The large model: one interface (`LLM.answer`), two backends.

* `OpenAIChatLLM` talks to any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp's server, Ollama) with
  the `openai` package: temperature 0 and a fixed seed by default, the reply constrained by a JSON schema
  where the endpoint takes one (`json_mode` auto falls back to JSON mode, then to plain text, when the
  endpoint rejects the format), validated always, and repaired a bounded number of times. A reply that
  stays invalid falls back to the small model's answer, marked: a run never crashes on a bad reply.
  Retries with backoff are the `openai` client's own; they honour 429 and Retry-After.
* `SimulatedLLM` is right with probability p on each pair it is asked (else a random other candidate): it
  shows, without a strong local model, where escalation starts to pay.

Only an unreachable endpoint, a rejected key or an unknown model stop a run (`LLMError`), since every
later pair would fail the same way; what was finished is kept and a rerun resumes.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence
from urllib.parse import urlsplit

from .data import Pair
from .metrics import normalise_label

Messages = list[dict[str, str]]
JSON_MODES = ("auto", "schema", "object", "none")
REQUEST_FAILED = "request failed"  # the start of LLMReply.error when no reply came (timeout, server error)
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|$)", re.S | re.I)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


class LLMError(RuntimeError):
    """The endpoint cannot serve this run at all (unreachable, key rejected, unknown model)."""


class ReplyError(ValueError):
    """One reply that does not follow the required format; the message is sent back as the repair request."""


@dataclass
class LLMRequest:
    pair: Pair
    messages: Messages
    labels: list[str]   # the allowed answers: candidates and the negative label
    negative: str
    template: str       # template id and version, e.g. llm/guide.v1@<sha12>: part of the cache key


@dataclass
class LLMReply:
    relation: str | None  # None: no valid answer (see error)
    confidence: float = 0.0
    evidence: str = ""
    error: str | None = None
    requests: int = 0     # requests made for this pair, cached ones included (repairs add to it)
    calls: int = 0        # requests that reached the endpoint
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    raw: str = ""

    @property
    def valid(self) -> bool:
        return self.relation is not None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "valid": self.valid}


class LLM(Protocol):
    name: str

    async def answer(self, request: LLMRequest) -> LLMReply: ...


# ------------------------------------------------------------------------------------------------ replies
def strip_reasoning(text: str) -> str:
    """The reply without <think> blocks (an unclosed one runs to the end) and without a code fence."""
    return _FENCE.sub("", _THINK.sub("", text).strip()).strip()


def _first_object(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        raise ReplyError("the reply holds no JSON object")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise ReplyError(f"the reply is not valid JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise ReplyError("the reply's JSON is not an object")
    return value


def parse_reply(text: str, labels: Sequence[str]) -> tuple[str, float, str]:
    """(relation, confidence, evidence) from a reply, or ReplyError saying what is wrong with it.

    A relation is matched exactly, then ignoring case, spacing and surrounding quotes; anything else is
    outside the candidates and is sent back rather than guessed at."""
    value = _first_object(strip_reasoning(text))
    relation = value.get("relation")
    if not isinstance(relation, str) or not relation.strip():
        raise ReplyError('the reply has no "relation" string')
    if relation not in labels:
        by_form = {normalise_label(label): label for label in labels}
        if normalise_label(relation) not in by_form:
            raise ReplyError(f"relation {relation!r} is not one of the allowed labels: {', '.join(labels)}")
        relation = by_form[normalise_label(relation)]
    confidence = value.get("confidence")
    if isinstance(confidence, str):
        try:
            confidence = float(confidence)
        except ValueError:
            pass
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not 0 <= confidence <= 1:
        raise ReplyError(f'"confidence" must be a number from 0 to 1, got {confidence!r}')
    evidence = value.get("evidence", "")
    return relation, float(confidence), evidence if isinstance(evidence, str) else str(evidence)


def repair_message(error: str, labels: Sequence[str]) -> str:
    return (f"That reply cannot be used: {error}. Reply again with only one JSON object "
            f'{{"relation": ..., "confidence": ..., "evidence": ...}}, where relation is exactly one of: '
            f"{', '.join(labels)}.")


def reply_schema(labels: Sequence[str]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["relation", "confidence", "evidence"],
            "properties": {"relation": {"type": "string", "enum": list(labels)},
                           "confidence": {"type": "number"}, "evidence": {"type": "string"}}}


def response_format(mode: str, labels: Sequence[str]) -> dict[str, Any] | None:
    """The request's response_format: OpenAI's json_schema (vLLM and llama.cpp take it too), plain JSON mode
    with a schema (llama-cpp-python's own form, ignored where unknown), or none."""
    if mode == "schema":
        return {"type": "json_schema", "json_schema": {"name": "relation", "strict": True,
                                                       "schema": reply_schema(labels)}}
    if mode == "object":
        return {"type": "json_object", "schema": reply_schema(labels)}
    return None


# ------------------------------------------------------------------------------------------------ prices
@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""
    input: float = 0.0
    output: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


# ------------------------------------------------------------------------------------------------ backends
@dataclass
class OpenAISettings:
    base_url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.0
    seed: int | None = 13
    max_tokens: int = 128
    timeout: float = 60.0
    retries: int = 3
    repairs: int = 2
    json_mode: str = "auto"
    price: Price = field(default_factory=Price)
    trust_env: bool = True  # False: ignore proxy variables (privacy mode: no proxy may carry a request away)

    def __post_init__(self) -> None:
        if self.json_mode not in JSON_MODES:
            raise ValueError(f"llm_json {self.json_mode!r}: choose one of {', '.join(JSON_MODES)}")


class OpenAIChatLLM:
    """An OpenAI-compatible chat endpoint. `cache` (collab.llm_cache.ReplyCache) answers repeated requests
    for free; `audit` (collab.privacy.AuditLog) records each request; `budget` (collab.escalation.Budget)
    reserves the cost of every request that would reach the endpoint, and may refuse it."""

    def __init__(self, settings: OpenAISettings, *, cache: Any = None, audit: Any = None, budget: Any = None):
        import httpx
        import openai

        self.settings = settings
        self.name = settings.model
        self.cache, self.audit, self.budget = cache, audit, budget
        self._openai = openai
        base_url, transport = settings.base_url, None
        if urlsplit(base_url).scheme in ("unix", "http+unix"):
            # unix:///path/to.sock: the server's OpenAI routes (/v1/...) over that socket
            transport = httpx.AsyncHTTPTransport(uds=urlsplit(base_url).path)
            base_url = "http://localhost/v1"
        http_client = httpx.AsyncClient(transport=transport, trust_env=settings.trust_env,
                                        timeout=settings.timeout)
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=settings.api_key or "not-needed",
                                          timeout=settings.timeout, max_retries=settings.retries,
                                          http_client=http_client)
        # auto starts with the strictest format and steps down, once per client, when the endpoint rejects it
        self._formats = ["schema", "object", "none"] if settings.json_mode == "auto" else [settings.json_mode]
        self._format_found = len(self._formats) == 1
        self._probe = asyncio.Lock()

    async def check(self) -> None:
        """Fail early and clearly when the endpoint is down or does not serve the model."""
        openai = self._openai
        try:
            page = await self._client.models.list()
        except openai.APIConnectionError as e:
            raise LLMError(f"cannot reach the LLM endpoint {self.settings.base_url}: {e.__cause__ or e}; is the "
                           "server running?") from None
        except openai.AuthenticationError:
            raise LLMError(f"the LLM endpoint {self.settings.base_url} rejected the API key") from None
        except openai.APIStatusError:
            return  # some servers do not list models; the first request will tell
        served = [m.id for m in page.data]
        if served and self.settings.model not in served:
            raise LLMError(f"model {self.settings.model!r} is not served at {self.settings.base_url}; it serves: "
                           f"{', '.join(served[:10])}")

    async def close(self) -> None:
        await self._client.close()

    def _params(self, labels: Sequence[str], mode: str) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {"temperature": s.temperature, "max_tokens": s.max_tokens}
        if s.seed is not None:
            params["seed"] = s.seed
        fmt = response_format(mode, labels)
        if fmt:
            params["response_format"] = fmt
        return params

    def _cached(self, request: LLMRequest, messages: Messages) -> dict[str, Any] | None:
        """A stored reply under any format auto may still pick, best first: a rerun's client has not yet
        learnt which format the endpoint takes, and must not pay again for what the last run stored."""
        if not self.cache:
            return None
        return self.cache.get(*(self.cache.key(self.name, request.template, messages,
                                               self._params(request.labels, mode)) for mode in self._formats))

    async def _send(self, labels: Sequence[str], messages: Messages) -> tuple[Any, dict[str, Any]]:
        """One completion, stepping down the formats auto allows when the endpoint rejects one."""
        openai = self._openai
        while True:
            mode = self._formats[0]
            params = self._params(labels, mode)
            try:
                return await self._client.chat.completions.create(model=self.name, messages=messages,
                                                                  **params), params
            except openai.APIStatusError as e:
                # llama-cpp-python answers an OpenAI json_schema format with a 500, others with a 400 or 422
                if "response_format" not in params or len(self._formats) < 2 or not _about_format(e) \
                        or isinstance(e, (openai.NotFoundError, openai.AuthenticationError)):
                    raise
                if self._formats[0] == mode:
                    self._formats.pop(0)

    async def _complete(self, request: LLMRequest, messages: Messages, reply: LLMReply) -> tuple[str, str]:
        """(content, finish_reason) of one request, from the cache where it has it."""
        openai = self._openai
        stored = self._cached(request, messages)
        if stored is not None:
            reply.requests += 1
            self._audit(request, cached=True)
            return stored["content"], stored["finish_reason"]
        reserved = self.budget.reserve(messages) if self.budget is not None else 0.0
        if reserved is None:
            raise BudgetExhausted()
        self._audit(request, cached=False)
        try:
            # until auto has found a format the endpoint takes, one request probes while the rest wait
            async with self._probe if not self._format_found else contextlib.nullcontext():
                result, params = await self._send(request.labels, messages)
                self._format_found = True
        except openai.NotFoundError as e:
            raise LLMError(f"the LLM endpoint {self.settings.base_url} does not serve model {self.name!r}: "
                           f"{_message(e)}") from None
        except openai.AuthenticationError:
            raise LLMError(f"the LLM endpoint {self.settings.base_url} rejected the API key") from None
        except openai.APITimeoutError:
            raise  # a timed-out request may still be billed: its reservation stays spent
        except openai.APIConnectionError as e:
            raise LLMError(f"lost the LLM endpoint {self.settings.base_url}: {e.__cause__ or e}") from None
        usage = result.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        cost = self.settings.price.cost(prompt_tokens, completion_tokens)
        self._settle(reserved, cost)
        reply.requests += 1
        reply.calls += 1
        reply.prompt_tokens += prompt_tokens
        reply.completion_tokens += completion_tokens
        reply.cost += cost
        choice = result.choices[0]
        content, finish = choice.message.content or "", choice.finish_reason or "stop"
        if self.cache:
            self.cache.put(self.cache.key(self.name, request.template, messages, params), model=self.name,
                           template=request.template, request={"messages": messages, **params},
                           response={"content": content, "finish_reason": finish,
                                     "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}})
        return content, finish

    def _audit(self, request: LLMRequest, *, cached: bool) -> None:
        if self.audit:
            self.audit.record(destination=self.settings.base_url, model=self.name, pair_id=request.pair.id,
                              cached=cached)

    def _settle(self, reserved: float, cost: float) -> None:
        if self.budget is not None:
            self.budget.settle(reserved, cost)

    async def answer(self, request: LLMRequest) -> LLMReply:
        openai = self._openai
        reply = LLMReply(relation=None)
        messages = list(request.messages)
        for attempt in range(self.settings.repairs + 1):
            try:
                content, finish = await self._complete(request, messages, reply)
            except BudgetExhausted:
                reply.error = "budget"
                return reply
            except (openai.APITimeoutError, openai.APIStatusError) as e:
                reply.error = f"{REQUEST_FAILED}: {_message(e)}"
                return reply
            reply.raw = content
            try:
                if finish == "length":
                    raise ReplyError(f"the reply was cut off at {self.settings.max_tokens} tokens")
                reply.relation, reply.confidence, reply.evidence = parse_reply(content, request.labels)
                reply.error = None
                return reply
            except ReplyError as e:
                reply.error = f"invalid reply: {e}"
                messages = [*messages, {"role": "assistant", "content": content},
                            {"role": "user", "content": repair_message(str(e), request.labels)}]
        return reply


class BudgetExhausted(Exception):
    """The budget refused a request that would have reached the endpoint."""


def _message(error: Exception) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(error).splitlines()[0]


def _about_format(error: Exception) -> bool:
    text = _message(error).lower()
    return any(word in text for word in ("response_format", "json_schema", "json schema", "json_object", "format"))


class SimulatedLLM:
    """Right with probability `accuracy` (the gold label, when it is among the allowed answers), else a
    uniformly random other allowed label. Deterministic per pair id and seed, so sweeps are repeatable."""

    def __init__(self, accuracy: float, seed: int = 13):
        if not 0 <= accuracy <= 1:
            raise ValueError(f"simulated LLM accuracy {accuracy} is not between 0 and 1")
        self.accuracy, self.seed = accuracy, seed
        self.name = f"simulated-{accuracy:g}"

    async def answer(self, request: LLMRequest) -> LLMReply:
        rng = random.Random(f"{self.seed}:{request.pair.id}")
        gold = request.pair.relation
        wrong = [label for label in request.labels if label != gold]
        if gold in request.labels and rng.random() < self.accuracy or not wrong:
            relation = gold if gold in request.labels else request.negative
        else:
            relation = rng.choice(wrong)
        return LLMReply(relation=relation, confidence=self.accuracy, requests=1, calls=1)
