"""A persistent SQLite cache of LLM replies, so a rerun or a resumed run never pays for the same call twice.

One row per call, keyed by everything that decides the answer (model id, prompt template version, rendered
messages, sampling parameters). Each reply is committed the moment it is stored, so a run killed one instant
after a paid call still finds that reply when it resumes.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from .cache import cache_subdir, content_key

# Bump when the table layout or the stored encoding changes; a file written by newer code is refused rather
# than misread.
SCHEMA_VERSION = 1

FILENAME = "replies.sqlite"

# Another run sharing the file may hold the write lock for a moment; wait for it instead of failing.
BUSY_TIMEOUT_S = 30.0

# SQLite primary result codes that mean "this file is not a usable database" (extended codes share the low byte).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def _canonical(value: Any) -> str:
    """The same data always encodes to the same text, whatever the dict key order, so it can be hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ReplyCache:
    """LLM replies stored in one SQLite file, keyed by `ReplyCache.key(...)`.

    Safe to share between threads of one process (one connection, every statement under a lock) and between
    processes (SQLite file locks, WAL, a busy timeout). `hits` and `misses` count this instance's `get` calls.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        # isolation_level=None: autocommit, so each put is durable when it returns and no implicit transaction
        # is left open holding a lock that would block another process.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def _setup(self) -> None:
        with self._guard():
            conn = self._conn
            # WAL lets one run read while another writes. With WAL, synchronous=NORMAL can lose the last commits
            # on power loss/OS crash but never on a process kill, and a killed run is what this cache guards.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # IMMEDIATE takes the write lock first, so two processes creating the file at once don't race.
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise ValueError(
                        f"LLM reply cache {self.path} has schema version {version}, newer than this code knows "
                        f"({SCHEMA_VERSION}); upgrade collab, or delete the file to start over")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, template TEXT, "
                    "request TEXT, response TEXT, created REAL)")
                if version < SCHEMA_VERSION:
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # some errors already rolled back; a second ROLLBACK would mask them
                    conn.execute("ROLLBACK")
                raise

    @classmethod
    def open(cls, cache_dir: str | Path | None = None) -> ReplyCache:
        """The shared reply cache under the collab cache root (`<cache root>/llm/replies.sqlite`)."""
        return cls(cache_subdir("llm", cache_dir) / FILENAME)

    @staticmethod
    def key(model: str, template: str, messages: list[dict], params: dict) -> str:
        """The cache key of one call.

        `model` is the endpoint's model id, `template` the prompt template version (e.g. "llm/guide.v1@<sha>"),
        `messages` the rendered chat messages and `params` the sampling parameters.
        """
        # The base URL is deliberately not part of the key: the same model served from another URL (a local
        # server, a proxy, another provider) answers the same, and its replies should be reused.
        return content_key(model, template, _canonical(messages), _canonical(params))

    def get(self, *keys: str) -> dict | None:
        """The stored response for the first of `keys` that has one, or None; counts one hit or one miss."""
        with self._guard():
            for key in keys:
                row = self._connection().execute("SELECT response FROM replies WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    self.hits += 1
                    return json.loads(row[0])
            self.misses += 1
            return None

    def put(self, key: str, *, model: str, template: str, request: dict, response: dict) -> None:
        """Store (or replace) the reply for `key`; committed before this returns."""
        row = (key, model, template, _canonical(request), _canonical(response), time.time())
        with self._guard():
            # Autocommit: the INSERT is its own transaction, written to the WAL file before we return; the OS
            # keeps that write even if this process is killed -9 a moment later.
            self._connection().execute(
                "INSERT OR REPLACE INTO replies (key, model, template, request, response, created) "
                "VALUES (?, ?, ?, ?, ?, ?)", row)

    def stats(self) -> dict:
        with self._guard():
            entries = self._connection().execute("SELECT count(*) FROM replies").fetchone()[0]
            return {"hits": self.hits, "misses": self.misses, "entries": entries, "path": str(self.path)}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReplyCache({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"LLM reply cache {self.path} is closed")
        return self._conn

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold the lock for one operation; turn "not a database" errors into one clear ValueError."""
        with self._lock:
            try:
                yield
            except sqlite3.DatabaseError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                    raise ValueError(f"LLM reply cache {self.path} is not a valid SQLite database ({exc}); "
                                     f"delete it to start over") from exc
                raise
