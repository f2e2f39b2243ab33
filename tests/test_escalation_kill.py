"""kill -9 in the middle of `predict --escalate` and start again: no finished pair is lost and no answered
LLM call is paid twice. The run is a real subprocess (shipped guide, real embedder); the endpoint is the fake
server, which holds the fourth request until the process is dead."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import pair_record
from fake_llm_server import FakeLLMServer, answer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [("The fire caused smoke in the kitchen.", "fire", "smoke"), ("The letter was about the war.", "letter", "war"),
         ("The apples were in a basket.", "apples", "basket"), ("The storm damaged the roof.", "storm", "roof"),
         ("The author wrote a novel.", "author", "novel"), ("The wheel is part of the car.", "wheel", "car")]


def test_kill_9_mid_run_loses_nothing_and_pays_nothing_twice(write_jsonl, tmp_path, model_cache):
    data = write_jsonl([pair_record(f"p{i}", text=t, head=h, tail=x) for i, (t, h, x) in enumerate(TEXTS)])
    out = tmp_path / "pred.jsonl"
    held, release = threading.Event(), threading.Event()
    seen = []

    def reply(request):
        seen.append(json.dumps(request["messages"], sort_keys=True))
        if len(seen) == 4 and not release.is_set():
            held.set()
            release.wait(30)  # the client is killed while this request is in flight
        return answer("no_relation", 0.8)

    with FakeLLMServer() as server:
        server.default = reply
        command = [sys.executable, str(ROOT / "run_pipeline.py"), "predict", "--data", str(data), "--out", str(out),
                   "--guide", "semeval-minilm", "--escalate", "always", "--llm-concurrency", "1", "--llm-demos", "1",
                   "--llm-base-url", server.base_url, "--llm-model", server.model, "--threads", "2"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLLAB_CACHE_DIR": str(model_cache)}
        first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert held.wait(900), first.communicate()[1].decode()[-2000:]
        first.kill()
        first.wait()
        release.set()
        finished_before_kill = [json.loads(line)["id"] for line in
                                out.with_name("pred.jsonl.partial").read_text().splitlines()[1:]]
        assert not out.exists()
        rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [f"p{i}" for i in range(6)]
    # six pairs, one request each, plus the one in flight at the kill: no answered request was sent twice
    assert len(seen) == 7 and len(set(seen)) == 6
    summary = json.loads(out.with_name("pred.jsonl.summary.json").read_text())
    assert summary["predicted"] == 6 - len(finished_before_kill)
    assert summary["cache"]["hits"] == 3 - len(finished_before_kill)  # answered before the kill, not yet written
