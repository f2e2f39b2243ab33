"""predict --escalate against a real llama.cpp server (the packaged SmolLM2 GGUF) started by --local-llm:
constrained replies, the cache, the budget stop and resume after a kill, end to end."""
import importlib.util
import json

import pytest
from conftest import pair_record
from fakes import FakeEmbedder, TableScorer

from collab import api, embed, predict, retrieval
from collab.cli import main

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama-cpp-python is not installed (pip install 'collab[server]')")]

TEXTS = ["The fire caused smoke in the kitchen.", "The letter was about the war.",
         "The apples were in a basket.", "The storm caused damage to the roof."]


@pytest.fixture
def setup(write_jsonl, tmp_path, monkeypatch):
    scorer = TableScorer()  # unsure of everything: 0.6 no_relation
    monkeypatch.setattr(api, "scorer_for", lambda config, schema: scorer)
    monkeypatch.setattr(api, "scorer_identity", lambda config, schema: "table-guide-1")
    monkeypatch.setattr(api, "guide_for", lambda config, schema: None)
    monkeypatch.setattr(embed, "SentenceEmbedder", lambda *args, **kwargs: FakeEmbedder())
    monkeypatch.setattr(retrieval, "_spacy", lambda: None)
    head_tail = [("fire", "smoke"), ("letter", "war"), ("apples", "basket"), ("storm", "damage")]
    data = write_jsonl([pair_record(f"p{i}", text=t, head=h, tail=x) for i, (t, (h, x)) in
                        enumerate(zip(TEXTS, head_tail))])
    out = tmp_path / "pred.jsonl"
    args = ["predict", "--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--local-llm", "smollm2", "--escalate", "always", "--privacy", "local", "--llm-retries", "0",
            "--llm-max-tokens", "64", "--llm-prompt-budget", "1024",
            # what is tested is the cache and resume, not latency: a busy CPU can take over a minute a reply
            "--llm-timeout", "600"]
    return {"scorer": scorer, "out": out, "args": args}


def summary(out):
    return json.loads(out.with_name(out.name + ".summary.json").read_text())


def test_a_real_local_llm_answers_within_the_candidates_and_the_cache_makes_a_rerun_free(setup):
    assert main([*setup["args"], "--max-llm-calls", "2"]) == 0
    first = summary(setup["out"])
    records = [json.loads(line) for line in setup["out"].read_text().splitlines()]
    answered = [r for r in records if "llm_budget" not in r["flags"]]
    # two calls: two pairs, or one whose invalid reply was re-asked; every other pair is skipped, not lost
    assert first["escalation"]["calls"] == 2 and 1 <= len(answered) <= 2
    assert first["escalation"]["budget_skipped"] == first["budget"]["refused"] == 4 - len(answered)
    for record in answered:  # the grammar keeps the small model to the candidate labels
        assert record["llm"]["relation"] in record["llm"]["candidates"] or "llm_invalid" in record["flags"]
    assert main(setup["args"]) == 0
    second = summary(setup["out"])
    # the two answered pairs come from the cache; only the two budget-skipped ones are paid for (a reply the
    # small model gets wrong twice adds repair calls, so validity is not asserted)
    e = second["escalation"]
    assert e["budget_skipped"] == 0 and e["llm_valid"] + e["llm_invalid"] == 4
    assert second["cache"]["hits"] >= 2 and e["calls"] >= 2
    paid_first = first["escalation"]["calls"]
    assert second["cache"]["hits"] >= paid_first  # every request paid for in the first run was free here
    audit = [json.loads(line) for line in setup["out"].with_name("pred.jsonl.audit.jsonl").read_text().splitlines()]
    assert all(a["destination"].startswith("http://127.0.0.1:") for a in audit)


def test_a_killed_run_against_the_real_server_resumes_and_repeats_no_paid_call(setup, monkeypatch):
    monkeypatch.setattr(predict, "CHUNK", 2)
    scorer, real = setup["scorer"], setup["scorer"].predict

    def dies_on_second_chunk(pairs, batch_size=8):
        if pairs[0].id == "p2":
            raise KeyboardInterrupt
        return real(pairs, batch_size)

    monkeypatch.setattr(scorer, "predict", dies_on_second_chunk)
    assert main(setup["args"]) == 130
    monkeypatch.setattr(scorer, "predict", real)
    assert main(setup["args"]) == 0
    resumed = summary(setup["out"])
    assert resumed["predicted"] == 2 and resumed["cache"]["hits"] == 0  # p0, p1 kept from the partial file
    assert [json.loads(line)["id"] for line in setup["out"].read_text().splitlines()] == ["p0", "p1", "p2", "p3"]
    # the same run again from scratch (a new output) is answered wholly from the cache
    again = setup["out"].with_name("again.jsonl")
    args = [a if a != str(setup["out"]) else str(again) for a in setup["args"]]
    assert main(args) == 0
    assert summary(again)["escalation"]["calls"] == 0 and summary(again)["cache"]["misses"] == 0
