"""Named stages that declare what they need and produce, cached per book so a rerun resumes.

A stage's cache key hashes its name, its version, the settings it reads and the keys of the stages it needs,
so a changed book, setting or model invalidates exactly the stages downstream of the change. Outputs are
JSON files written atomically under `<book dir>/stages/`; `rerun_from` recomputes a stage and every stage
after it whatever the cache holds.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .cache import content_key
from .files import atomic_write_text


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]
    version: int
    run: Callable[..., Any]                    # run(ctx, **needed outputs) -> output
    settings: Callable[[Any], Any]             # the part of the context that decides the output (JSON-able)
    dump: Callable[[Any], Any] = lambda x: x   # output -> JSON-able
    load: Callable[[Any], Any] = lambda x: x   # JSON-able -> output


class Pipeline:
    def __init__(self, stages: list[Stage]):
        names = [s.name for s in stages]
        for stage in stages:
            missing = [n for n in stage.needs if n not in names[:names.index(stage.name)]]
            if missing:
                raise ValueError(f"stage {stage.name} needs {missing}, which no earlier stage produces")
        self.stages = stages

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def run(self, ctx: Any, folder: Path, *, rerun_from: str | None = None,
            on_stage: Callable[[str, str], None] | None = None) -> tuple[dict[str, Any], dict[str, dict]]:
        """Run every stage for one book; returns the outputs and, per stage, its key, seconds and whether the
        cache answered. `on_stage(name, "cached"|"run")` reports progress."""
        if rerun_from is not None and rerun_from not in self.names:
            raise ValueError(f"--rerun-from {rerun_from}: no such stage; stages: {', '.join(self.names)}")
        forced = self.names[self.names.index(rerun_from):] if rerun_from else []
        outputs: dict[str, Any] = {}
        keys: dict[str, str] = {}
        report: dict[str, dict] = {}
        for stage in self.stages:
            keys[stage.name] = content_key(stage.name, str(stage.version),
                                           json.dumps(stage.settings(ctx), sort_keys=True, default=str),
                                           *(keys[n] for n in stage.needs))
            path = folder / "stages" / f"{stage.name}.json"
            start = time.perf_counter()
            cached = None if stage.name in forced else _read_cached(path, keys[stage.name])
            if cached is not None:
                outputs[stage.name] = stage.load(cached)
            else:
                if on_stage:
                    on_stage(stage.name, "run")
                outputs[stage.name] = stage.run(ctx, **{n: outputs[n] for n in stage.needs})
                atomic_write_text(path, json.dumps({"key": keys[stage.name], "data": stage.dump(outputs[stage.name])},
                                                   ensure_ascii=False))
            report[stage.name] = {"key": keys[stage.name][:16], "cached": cached is not None,
                                  "seconds": round(time.perf_counter() - start, 2)}
        return outputs, report


def _read_cached(path: Path, key: str) -> Any | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record["data"] if isinstance(record, dict) and record.get("key") == key else None
