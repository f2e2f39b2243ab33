"""`predict --escalate` end to end with a table guide, a fake embedder and the scripted fake endpoint:
routing, merge, resume, budget, dry run, privacy and the offline `merge` command."""
import json
import socket

import pytest
from conftest import pair_record
from fake_llm_server import FakeLLMServer, answer, content
from fakes import FakeEmbedder, TableScorer

from collab import api, embed, predict, retrieval
from collab.cli import main

CAUSE, TOPIC = "Cause-Effect(e1,e2)", "Message-Topic(e1,e2)"
HEAD = "Entity-Destination(e1,e2)"  # a head label: answers with a long-tail label, like CAUSE, are escalated
SURE = {HEAD: 0.9, "no_relation": 0.1}
UNSURE = {"no_relation": 0.5, CAUSE: 0.3, TOPIC: 0.2}


@pytest.fixture
def setup(write_jsonl, tmp_path, monkeypatch):
    """Six pairs: p0, p2, p4 the guide is sure of, p1, p3, p5 not."""
    scorer = TableScorer({f"p{i}": (SURE if i % 2 == 0 else UNSURE) for i in range(6)})
    monkeypatch.setattr(api, "scorer_for", lambda config, schema: scorer)
    monkeypatch.setattr(api, "scorer_identity", lambda config, schema: "table-guide-1")
    monkeypatch.setattr(api, "guide_for", lambda config, schema: None)  # no dev profile unless a test makes one
    monkeypatch.setattr(embed, "SentenceEmbedder", lambda *args, **kwargs: FakeEmbedder())
    monkeypatch.setattr(retrieval, "_spacy", lambda: None)
    data = write_jsonl([pair_record(f"p{i}", text=f"The fire number {i} caused smoke.") for i in range(6)])
    out = tmp_path / "pred.jsonl"
    base = ["predict", "--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    return {"scorer": scorer, "data": data, "out": out, "base": base, "tmp": tmp_path}


def run(setup, server, *flags):
    return main([*setup["base"], "--llm-base-url", server.base_url, "--llm-model", server.model, *flags])


def records(path):
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_unsure_pairs_are_escalated_and_merged_with_both_answers_kept(setup, capsys):
    with FakeLLMServer([answer(CAUSE, 0.8)] * 3) as server:
        assert run(setup, server, "--escalate", "auto", "--escalate-threshold", "0.6", "--merge", "llm") == 0
    out = records(setup["out"])
    assert [r["route"] for r in out.values()] == ["slm", "llm"] * 3
    assert out["p1"]["relation"] == CAUSE and out["p1"]["slm"]["relation"] == "no_relation"
    assert out["p1"]["llm"]["relation"] == CAUSE and "confidence<0.6" in out["p1"]["flags"]
    assert out["p0"]["relation"] == HEAD and out["p0"]["llm"] is None
    # the prompt carried the guide's answer, and the reply was constrained to the candidates
    user = server.requests[0]["messages"][-1]["content"]
    assert "Small model's answer: no_relation (confidence 0.50)" in user
    summary = json.loads(setup["out"].with_name("pred.jsonl.summary.json").read_text())
    assert summary["escalation"]["escalated"] == 3 and summary["escalation"]["calls"] == 3
    assert "escalated 3 of 6" in capsys.readouterr().out


def test_auto_tunes_the_threshold_on_dev_and_saves_it_beside_the_guide(setup, monkeypatch, tmp_path):
    guide = tmp_path / "guide"
    guide.mkdir()
    (guide / "encoder.json").write_text("{}")
    monkeypatch.setattr(api, "guide_for", lambda config, schema: str(guide))
    # every dev pair gets the default 0.6 / 0.4 distribution: escalating half of dev puts the cut at 0.6
    with FakeLLMServer() as server:
        assert run(setup, server, "--escalate", "auto", "--escalate-rate", "0.5") == 0
    profile = json.loads((guide / "escalation.json").read_text())
    assert profile["dev"] == "semeval:dev" and profile["n"] == 800
    assert [r["route"] != "slm" for r in records(setup["out"]).values()] == [False, True] * 3


def test_invalid_replies_keep_the_guides_answer_marked(setup):
    with FakeLLMServer([content("not json")] * 9) as server:
        assert run(setup, server, "--escalate", "always", "--llm-repairs", "0", "--merge", "llm") == 0
    out = records(setup["out"])
    assert len(server.requests) == 6
    assert all(r["route"] == "slm" and "llm_invalid" in r["flags"] and r["llm"]["valid"] is False
               for r in out.values())
    assert out["p1"]["relation"] == "no_relation"


def test_a_killed_run_resumes_without_losing_a_pair_or_repeating_a_call(setup, monkeypatch):
    monkeypatch.setattr(predict, "CHUNK", 2)
    scorer = setup["scorer"]
    real = scorer.predict

    def dies_on_third_chunk(pairs, batch_size=8):
        if pairs[0].id == "p4":
            raise KeyboardInterrupt
        return real(pairs, batch_size)

    with FakeLLMServer() as server:
        monkeypatch.setattr(scorer, "predict", dies_on_third_chunk)
        assert run(setup, server, "--escalate", "always") == 130
        assert len(server.requests) == 4 and not setup["out"].exists()
        monkeypatch.setattr(scorer, "predict", real)
        scorer.seen.clear()
        assert run(setup, server, "--escalate", "always") == 0
        assert len(server.requests) == 6
    assert scorer.seen[:2] == ["p4", "p5"]  # then the demonstrations' answers
    assert list(records(setup["out"])) == [f"p{i}" for i in range(6)]


def test_the_budget_stops_escalation_exactly_and_a_bigger_one_resumes(setup):
    with FakeLLMServer() as server:
        assert run(setup, server, "--escalate", "always", "--max-llm-calls", "2") == 0
        out = records(setup["out"])
        assert sum("llm_budget" in r["flags"] for r in out.values()) == 4 and len(server.requests) == 2
        summary = json.loads(setup["out"].with_name("pred.jsonl.summary.json").read_text())
        assert summary["escalation"]["budget_skipped"] == 4 and summary["budget"]["refused"] == 4
        assert run(setup, server, "--escalate", "always", "--max-llm-calls", "10") == 0
        assert len(server.requests) == 6  # the two paid replies came from the cache
    assert not any("llm_budget" in r["flags"] for r in records(setup["out"]).values())


def test_a_dry_run_counts_and_sends_nothing(setup, capsys, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("fake-llm: {input: 2.0, output: 8.0}\n")
    with FakeLLMServer() as server:
        assert run(setup, server, "--escalate", "auto", "--escalate-threshold", "0.6", "--prices", str(prices),
                   "--dry-run") == 0
        assert server.hits.total() == 0
    printed = capsys.readouterr().out
    assert "3 of 6 pairs would be escalated" in printed and "nothing sent" in printed
    assert not setup["out"].exists()


def test_privacy_local_refuses_a_remote_endpoint_with_zero_connection_attempts(setup, monkeypatch, capsys):
    attempts = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: (attempts.append(address),
                                                                          real_connect(sock, address))[1])
    code = main([*setup["base"], "--escalate", "always", "--privacy", "local",
                 "--llm-base-url", "https://api.example.com/v1"])
    assert code == 2 and attempts == []
    assert "privacy mode local refuses the LLM endpoint 'https://api.example.com/v1'" in capsys.readouterr().err


def test_privacy_local_works_with_a_loopback_endpoint_and_audits_every_request(setup):
    with FakeLLMServer() as server:
        assert run(setup, server, "--escalate", "always", "--privacy", "local") == 0
    audit = [json.loads(line) for line in setup["out"].with_name("pred.jsonl.audit.jsonl").read_text().splitlines()]
    assert len(audit) == 6 and {a["destination"] for a in audit} == {server.base_url}
    assert socket.getaddrinfo.__name__ == "getaddrinfo"  # the guard is gone after the run


def test_offline_merge_reproduces_an_online_run(setup, tmp_path):
    with FakeLLMServer() as server:
        server.default = lambda request: answer(CAUSE, 0.35)
        assert run(setup, server, "--escalate", "always", "--merge", "llm") == 0
        online = tmp_path / "weighted.jsonl"
        assert main([*setup["base"][:3], "--out", str(online), "--cache-dir", str(tmp_path / "cache"),
                     "--llm-base-url", server.base_url, "--llm-model", server.model, "--escalate", "always",
                     "--merge", "weighted"]) == 0
    offline = tmp_path / "offline.jsonl"
    assert main(["merge", "--pred", str(setup["out"]), "--out", str(offline), "--merge", "weighted",
                 "--guide", "none"]) == 0
    got, want = records(offline), records(online)
    assert {k: r["relation"] for k, r in got.items()} == {k: r["relation"] for k, r in want.items()}
    # weighted: 0.35 on cause beats the guide's no_relation (0.5) where the guide gave cause 0.3, not its 0.9 head
    assert got["p1"]["relation"] == CAUSE and got["p0"]["relation"] == HEAD


def test_without_a_guide_the_llm_answers_alone(setup, monkeypatch):
    def no_scorer(config, schema):
        raise AssertionError("no guide should be loaded with --guide none")

    monkeypatch.setattr(api, "scorer_for", no_scorer)
    with FakeLLMServer() as server:
        server.default = lambda request: answer(CAUSE, 0.6)
        assert run(setup, server, "--guide", "none", "--escalate", "always") == 0
    out = records(setup["out"])
    assert len(server.requests) == 6
    assert all(r["relation"] == CAUSE and r["route"] == "llm" and r["slm"] is None for r in out.values())
    assert "Small model's answer: not available" in server.requests[0]["messages"][-1]["content"]


def test_a_failed_request_keeps_the_guides_answer_and_a_rerun_asks_again(setup):
    from fake_llm_server import status

    with FakeLLMServer([status(500)]) as server:
        flags = ["--escalate", "always", "--llm-retries", "0", "--llm-concurrency", "1"]
        assert run(setup, server, *flags) == 0
        first = records(setup["out"])
        assert "llm_error" in first["p0"]["flags"] and first["p0"]["route"] == "slm"
        assert sum("llm_error" in r["flags"] for r in first.values()) == 1
        assert run(setup, server, *flags) == 0
        assert len(server.requests) == 6 + 1  # the rerun asks p0 again; the five others come from the cache
    again = records(setup["out"])
    assert not any("llm_error" in r["flags"] for r in again.values())


def test_a_pair_too_long_for_the_prompt_budget_keeps_the_guides_answer(setup):
    with FakeLLMServer() as server:
        assert run(setup, server, "--escalate", "always", "--llm-prompt-budget", "50") == 0
    out = records(setup["out"])
    assert not server.requests
    assert all("llm_prompt_too_long" in r["flags"] and r["route"] == "slm" for r in out.values())
