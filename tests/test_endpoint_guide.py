"""The guide served by a completions endpoint (guides.endpoint): the same distributions as scoring locally.

The `model` test serves the packaged SmolLM2 from a small in-test HTTP server that answers completions with
`echo` and `logprobs` the way vLLM does (tokens, their log-probabilities and character offsets), and checks
that the endpoint scorer's distributions equal LabelScorer's on the same model.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from collab.cli import main
from collab.data import Mention, Pair
from guides.endpoint import EndpointError, EndpointScorer
from guides.scoring import LabelScorer

LABELS = ("Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Message-Topic(e1,e2)", "no_relation")


def _pair(pair_id: str, text: str, head: str, tail: str) -> Pair:
    h, t = text.index(head), text.index(tail)
    return Pair(pair_id, text, Mention(head, h, h + len(head)), Mention(tail, t, t + len(tail)))


PAIRS = [_pair("p1", "The fire was caused by a faulty cable.", "fire", "cable"),
         _pair("p2", "The report is about the election.", "report", "election")]


class _Completions:
    """Stands in for openai's client.completions: answers from `score(text, start) -> [(offset, logprob)]`."""

    def __init__(self, answer):
        self.answer, self.completions = answer, self

    def create(self, *, prompt, **_):
        return SimpleNamespace(choices=[SimpleNamespace(index=i, logprobs=self.answer(text))
                                        for i, text in enumerate(prompt)])


def _scorer(tokenizer, answer) -> EndpointScorer:
    return EndpointScorer("http://127.0.0.1:1/v1", "guide", tokenizer, LABELS, template="slm/zero_shot.v1",
                          client=_Completions(answer))


def test_an_endpoint_without_prompt_logprobs_is_refused(smollm2_tokenizer):
    with pytest.raises(EndpointError, match="no prompt log-probabilities"):
        _scorer(smollm2_tokenizer, lambda text: None).label_scores(PAIRS[0])


def test_an_endpoint_that_splits_labels_differently_is_refused(smollm2_tokenizer):
    def one_token_per_character(text):
        return SimpleNamespace(text_offset=list(range(len(text))), token_logprobs=[None] + [-0.1] * (len(text) - 1))

    with pytest.raises(EndpointError, match="splits label 'Cause-Effect"):
        _scorer(smollm2_tokenizer, one_token_per_character).label_scores(PAIRS[0])


def test_privacy_mode_refuses_a_remote_guide_endpoint(write_jsonl, tmp_path, capsys):
    from conftest import pair_record

    data = write_jsonl([pair_record()])
    rc = main(["predict", "--data", str(data), "--out", str(tmp_path / "pred.jsonl"), "--guide", "semeval-smollm2",
               "--guide-url", "http://guides.example.org/v1", "--privacy", "local",
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2 and "refuses the guide endpoint 'http://guides.example.org/v1'" in capsys.readouterr().err
    assert not (tmp_path / "pred.jsonl").exists()


# ------------------------------------------------------------------------------------------ a real model
class _LogprobServer(ThreadingHTTPServer):
    """/v1/completions with echo + logprobs computed by a local causal LM, as vLLM returns them."""

    def __init__(self, model, tokenizer):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.model, self.tokenizer, self.lock = model, tokenizer, threading.Lock()

    def choice(self, index: int, text: str) -> dict:
        import torch

        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        with self.lock, torch.inference_mode():
            logp = torch.log_softmax(self.model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        token_logprobs = [None] + [float(logp[j - 1, ids[j]]) for j in range(1, len(ids))]
        generated = int(logp[-1].argmax())
        tokens = [self.tokenizer.decode([i]) for i in ids + [generated]]
        offsets = [start for start, _ in encoded["offset_mapping"]] + [len(text)]
        return {"index": index, "text": text + tokens[-1], "finish_reason": "length",
                "logprobs": {"tokens": tokens, "token_logprobs": token_logprobs + [float(logp[-1, generated])],
                             "text_offset": offsets, "top_logprobs": None}}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/completions" and body["echo"] and body["logprobs"] is not None
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        reply = json.dumps({"id": "cmpl-test", "object": "text_completion", "created": 0, "model": body["model"],
                            "choices": [self.server.choice(i, p) for i, p in enumerate(prompts)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.mark.model
def test_endpoint_scores_equal_local_scores(model_cache):
    import torch

    from guides.models import load_model

    model, tokenizer = load_model("smollm2", model_cache, device="cpu")
    server = _LogprobServer(model, tokenizer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        remote = EndpointScorer(url, "smollm2", tokenizer, LABELS, template="slm/zero_shot.v1")
        local = LabelScorer(model, tokenizer, LABELS, template="slm/zero_shot.v1")
        assert torch.allclose(remote.label_scores_batch(PAIRS), local.label_scores_batch(PAIRS).double(), atol=2e-3)
        assert [p.relation for p in remote.predict(PAIRS)] == [p.relation for p in local.predict(PAIRS)]
    finally:
        server.shutdown()


def test_the_served_guide_gets_the_key_variable_the_user_named(monkeypatch):
    from collab import api
    from collab.config import Config
    from collab.schema import load_schema
    from guides import guide

    seen = {}
    monkeypatch.setattr(guide, "served_guide", lambda spec, url, config, **_: seen.setdefault("config", config))
    api._scorer.cache_clear()
    try:
        config = Config(schema="semeval", guide="semeval-smollm2-codes", guide_url="http://127.0.0.1:1/v1",
                        guide_served_model="codes", llm_api_key_env="MY_GUIDE_KEY")
        api.scorer_for(config, load_schema("semeval"))
    finally:
        api._scorer.cache_clear()
    assert seen["config"].llm_api_key_env == "MY_GUIDE_KEY" and seen["config"].guide_served_model == "codes"
