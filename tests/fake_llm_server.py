"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for fast, offline tests of LLM clients.

    with FakeLLMServer([answer("Cause-Effect(e1,e2)"), status(429, headers={"Retry-After": "1"})]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")

Each POST /v1/chat/completions consumes the next scripted reply; once the script is used up, `server.default`
(a callable: request dict -> reply) answers. Only the standard library is used, so the helper works wherever
the tests run.
"""
from __future__ import annotations

import collections
import json
import re
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"


# ------------------------------------------------------------------------------------------------ reply kinds
@dataclass(frozen=True)
class Content:
    """A normal 200 chat completion whose message content is `text`."""
    text: str
    prompt_tokens: int = 10
    completion_tokens: int = 5


@dataclass(frozen=True)
class Status:
    """An error response: `code` with an optional JSON `body` and extra `headers`."""
    code: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Slow:
    """Sleep `seconds`, then send `reply` (for timeout tests)."""
    seconds: float
    reply: Reply


Reply = Content | Status | Slow


def content(text: str, prompt_tokens: int = 10, completion_tokens: int = 5) -> Content:
    return Content(text, prompt_tokens, completion_tokens)


def answer(relation: str, confidence: float = 0.9, evidence: str = "...", **kwargs) -> Content:
    """A chat completion whose content is the JSON answer the prompts ask for."""
    return content(json.dumps({"relation": relation, "confidence": confidence, "evidence": evidence}), **kwargs)


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Status:
    return Status(code, body, dict(headers or {}))


def slow(seconds: float, reply: Reply) -> Slow:
    return Slow(seconds, reply)


# "- label" or "- label: its definition" (labels may hold a colon, as in per:spouse, but not ": ")
_LABEL_LINE = re.compile(r"^\s*-\s+(\S.*?)(?::\s.*)?\s*$")


def first_candidate_label(request: dict) -> str | None:
    """The first "- label" line after "Candidate labels:" in the last user message, if any."""
    users = [m for m in request.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    text = users[-1].get("content") if users else None
    if isinstance(text, list):  # content parts
        text = "\n".join(p.get("text", "") for p in text if isinstance(p, dict))
    if not isinstance(text, str) or "Candidate labels:" not in text:
        return None
    for line in text.split("Candidate labels:", 1)[1].splitlines():
        match = _LABEL_LINE.match(line)
        if match:
            return match.group(1)
    return None


def default_reply(request: dict) -> Reply:
    return answer(first_candidate_label(request) or "no_relation")


# ----------------------------------------------------------------------------------------------------- server
class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow() reply or an idle keep-alive connection must not block stop()

    def handle_error(self, request, client_address):
        # A client that gave up (timeout tests) closes the socket under a slow() reply; that is expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _QuietUnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    """The same HTTP handler over a unix socket (client addresses are '' there, so they are never logged)."""
    daemon_threads = True
    handle_error = _QuietHTTPServer.handle_error


class FakeLLMServer:
    """Serves scripted replies on a free loopback port (or `unix_socket`) in a daemon thread."""

    def __init__(self, replies: list[Reply] | None = None, *, model: str = "fake-llm", models_endpoint: bool = True,
                 unix_socket: str | None = None):
        self.unix_socket = unix_socket
        self.replies: list[Reply] = list(replies or [])
        self.model = model
        self.models_endpoint = models_endpoint
        self.default: Callable[[dict], Reply] = default_reply
        self.requests: list[dict] = []
        self.hits: collections.Counter[str] = collections.Counter()
        self.base_url = ""
        # Handlers run on the server's worker threads, concurrently with the test thread.
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> Self:
        if self._httpd is not None:
            return self
        if self.unix_socket:
            self._httpd = _QuietUnixHTTPServer(str(self.unix_socket), _handler_for(self))
            self.base_url = f"unix://{self.unix_socket}"
        else:
            self._httpd = _QuietHTTPServer(("127.0.0.1", 0), _handler_for(self))
            self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        # A short poll interval: shutdown() waits up to one interval, and every test stops a server.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-llm-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- scripting
    def add(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def _next_reply(self, request: dict) -> Reply:
        with self._lock:
            self.requests.append(request)
            scripted = self.replies.pop(0) if self.replies else None
        return scripted if scripted is not None else self.default(request)

    def _completion(self, reply: Content) -> dict:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                      "total_tokens": reply.prompt_tokens + reply.completion_tokens},
        }


def _handler_for(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the openai client's httpx pool expects

        def log_message(self, format, *args):
            pass

        def _count(self) -> str:
            path = self.path.split("?", 1)[0]
            with server._lock:
                server.hits[path] += 1
            return path

        def _send(self, code: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
            self.send_response(code)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _not_found(self) -> None:
            self._send(404, {"error": {"message": f"no route {self.command} {self.path}",
                                       "type": "invalid_request_error", "code": "not_found"}})

        def do_GET(self):
            if self._count() == MODELS_PATH and server.models_endpoint:
                self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
            else:
                self._not_found()

        def do_POST(self):
            path = self._count()
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if path != CHAT_PATH:
                self._not_found()
                return
            try:
                request = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
                return
            self._reply(server._next_reply(request))

        def _reply(self, reply: Reply) -> None:
            while isinstance(reply, Slow):
                time.sleep(reply.seconds)
                reply = reply.reply
            if isinstance(reply, Status):
                self._send(reply.code, reply.body, reply.headers)
            elif isinstance(reply, Content):
                self._send(200, server._completion(reply))
            else:
                raise TypeError(f"not a scripted reply: {reply!r}")

    return Handler
