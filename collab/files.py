"""Atomic file writes: a crash mid-write leaves the old file (or none), never half of a new one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should read like any file the user writes
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


class PartialJsonl:
    """A JSONL output written record by record to `<path>.partial`, so an interrupted run loses nothing.

    A rerun with the same `key` (a hash of the inputs and settings) keeps the records already written and
    `done` says which ids to skip; another key starts over. `finish` writes `path` atomically, in the
    order given, and removes the partial file.
    """

    def __init__(self, path: str | Path, key: str):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.done: dict[str, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.partial.is_file():
            lines = self.partial.read_text(encoding="utf-8").split("\n")
            if lines[0] == json.dumps({"key": key}):
                for line in lines[1:]:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        break  # the line a crash cut short, and nothing after it
                    self.done[record["id"]] = record
        self._handle = open(self.partial, "w", encoding="utf-8")
        self._handle.write(json.dumps({"key": key}) + "\n")
        for record in self.done.values():
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def add(self, record: dict[str, Any]) -> None:
        self.done[record["id"]] = record
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def finish(self, order: Iterable[str]) -> int:
        self._handle.close()
        lines = [json.dumps(self.done[i], ensure_ascii=False) + "\n" for i in order]
        atomic_write_text(self.path, "".join(lines))
        self.partial.unlink()
        return len(lines)
