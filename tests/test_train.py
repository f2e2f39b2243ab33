"""Guide training: batches, answer-only loss, a loss that goes down, resume equal to an uninterrupted run, and
the guide folder's save/load round trip (that one with the packaged SmolLM2, marked `model`)."""
from __future__ import annotations

import json

import pytest
import torch

from collab.config import TrainSettings
from guides.train import (PASS_PAIRS, PASS_TOKENS, Example, add_lora, answer_loss, backward_micro_batch,
                          bucketed_batches, collate, fit_micro_batch, split_for_threads, train_lora)


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         initializer_range=0.3)  # 0.02 would cap |logits| below 1: no loss could fall far
    return LlamaForCausalLM(config).eval()


def examples(n: int = 12) -> list[Example]:
    """Prompts of varied length, each answered by one of two fixed 'labels' chosen by the prompt's first token."""
    out = []
    for i in range(n):
        prompt = [1 + (i % 2)] + [3 + (i * 7 + k) % 40 for k in range(3 + i % 5)]
        answer = [44, 45, 46] if i % 2 else [47, 45]
        out.append(Example(prompt + answer, len(prompt)))
    return out


def test_collate_packs_a_batch_into_one_row_and_targets_only_the_answers():
    batch = collate([Example([5, 6, 7, 8], 2), Example([9, 10, 11], 2)])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2]]  # each example starts at 0
    # Column c predicts the token at c + 1: answers [7, 8] from columns 1-2, [11] from column 5.
    assert batch["keep"].tolist() == [1, 2, 5] and batch["targets"].tolist() == [7, 8, 11]
    assert (batch["tokens"], batch["computed"]) == (7, 7)
    _, second = batch["blocks"].masks
    assert second.tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def _alone(model, batch_examples: list[Example]) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradients with each example run alone through the model's own attention."""
    model.zero_grad()
    total, count = 0.0, 0
    for e in batch_examples:
        ids = torch.tensor([e.ids])
        labels = ids.clone()
        labels[0, :e.n_prompt] = -100
        n = len(e.ids) - e.n_prompt
        loss = model(input_ids=ids, labels=labels).loss * n
        loss.backward()
        total, count = total + loss.item(), count + n
    grads = {n: p.grad.clone() / count for n, p in model.named_parameters() if p.grad is not None}
    return total / count, grads


def test_answer_loss_equals_the_unpadded_per_example_loss():
    model = tiny_llama()
    batch_examples = examples(4)
    with torch.no_grad():
        packed = float(answer_loss(model, collate(batch_examples)))
    assert packed == pytest.approx(_alone(model, batch_examples)[0], rel=1e-5)


def test_an_example_longer_than_a_sliding_attention_window_is_refused():
    model = tiny_llama()
    model.config.sliding_window = 6  # per-example attention would see more than such a layer does
    with pytest.raises(ValueError, match="sliding attention window"):
        answer_loss(model, collate(examples(4)))


PREFIX = [30, 31, 32, 33, 34]


def _prefixed(batch_examples: list[Example]) -> list[Example]:
    return [Example(PREFIX + e.ids, e.n_prompt + len(PREFIX)) for e in batch_examples]


def _loss_and_grads(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = answer_loss(model, batch)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_shared_prefix_runs_once_with_the_same_loss_and_gradients_as_each_example_alone():
    model = tiny_llama()
    attention = model.config._attn_implementation
    data = _prefixed(examples(5))
    shared = collate(data, PREFIX)
    assert shared["blocks"].prefix == len(PREFIX) and shared["input_ids"].shape[1] == sum(len(e.ids) for e in data) - 4 * 5
    assert shared["position_ids"][0, -1] == len(data[-1].ids) - 1  # examples continue the prefix's positions
    assert shared["computed"] == shared["tokens"] - 4 * len(PREFIX)
    loss, grads = _loss_and_grads(model, shared)
    alone_loss, alone_grads = _alone(model, data)
    assert loss == pytest.approx(alone_loss, rel=1e-5)
    assert grads.keys() == alone_grads.keys() and grads
    for name in grads:  # the prefix's weights get the gradient of every example through its keys and values
        torch.testing.assert_close(grads[name], alone_grads[name], rtol=1e-4, atol=1e-5)
    assert model.config._attn_implementation == attention  # switched back: scoring needs its own


def test_a_batch_with_one_example_lacking_the_prefix_is_not_shared():
    data = _prefixed(examples(3)) + examples(1)  # e.g. a long prompt cut from its start
    batch = collate(data, PREFIX)
    assert batch["blocks"].prefix == 0 and batch["input_ids"].shape[1] == sum(len(e.ids) for e in data)
    # A prefix that is the whole prompt leaves no own token to predict the answer's first token from.
    assert collate([Example(PREFIX + [44, 45], len(PREFIX))], PREFIX)["blocks"].prefix == 0


def test_a_micro_batch_run_in_parts_side_by_side_has_the_whole_batchs_loss_and_gradients():
    from guides.scoring import OneTorchThreadPool

    data = _prefixed(examples(8))
    parts = split_for_threads(data, PREFIX, 2)
    assert len(parts) == 2 and sorted(map(id, parts[0] + parts[1])) == sorted(map(id, data))
    loads = [sum(len(e.ids) for e in part) for part in parts]
    assert abs(loads[0] - loads[1]) <= max(len(e.ids) for e in data)
    model = tiny_llama()
    params = list(model.parameters())
    whole = backward_micro_batch(model, params, data, PREFIX, 0.5)
    expected = [p.grad.clone() for p in params]
    with OneTorchThreadPool(2, "test-training") as pool:
        runs = []
        for _ in range(2):
            model.zero_grad(set_to_none=True)
            runs.append((backward_micro_batch(model, params, data, PREFIX, 0.5, pool),
                         [p.grad.clone() for p in params]))
        # one prompt cut from its start: the whole batch shares nothing, the part without it still does
        mixed = data[:7] + examples(1)
        parts = split_for_threads(mixed, PREFIX, 2)
        assert collate(mixed, PREFIX)["blocks"].prefix == 0
        assert sorted(collate(part, PREFIX)["blocks"].prefix for part in parts) == [0, len(PREFIX)]
        ran = sum(collate(part, PREFIX)["computed"] for part in parts)
        assert backward_micro_batch(model, params, mixed, PREFIX, 0.5, pool)["computed"] == ran
    (split, grads), (_, again) = runs
    assert split["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert (split["tokens"], split["computed"]) == (whole["tokens"], whole["computed"])  # the prefix counted once
    for got, want, repeat in zip(grads, expected, again):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
        assert torch.equal(got, repeat)  # summed in a fixed order: the same whichever part finishes first
    assert model.config._attn_implementation != "collab_blocks"


def test_a_micro_batch_stays_whole_where_each_part_would_repeat_a_long_prefix():
    data = _prefixed(examples(8))
    assert len(split_for_threads(data, PREFIX, 2)) == 2
    long_prefix = list(range(3, 23))
    assert len(split_for_threads([Example(long_prefix + e.ids, e.n_prompt + 20) for e in data], long_prefix, 2)) == 1
    assert len(split_for_threads(data[:1], PREFIX, 2)) == 1 and len(split_for_threads(data, PREFIX, 1)) == 1


def test_training_with_a_shared_prefix_lowers_the_loss_and_counts_computed_tokens(tmp_path):
    data = _prefixed(examples())
    result = train_lora(tiny_llama(), data, tmp_path, SETTINGS, data_key="d", prefix=PREFIX,
                        progress=False)
    assert result["tokens"] == SETTINGS.epochs * sum(len(e.ids) for e in data)
    batches = result["micro_steps"]
    assert result["computed_tokens"] == result["tokens"] - batches * (SETTINGS.micro_batch - 1) * len(PREFIX)
    with torch.no_grad():
        before = float(answer_loss(tiny_llama(), collate(data)))
        after = float(answer_loss(result["model"], collate(data, PREFIX)))
    assert after < before * 0.3


def test_batches_cover_every_example_once_and_depend_on_the_seed():
    lengths = [5, 9, 2, 7, 7, 3, 8, 1, 4, 6]
    batches = bucketed_batches(lengths, 3, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert batches == bucketed_batches(lengths, 3, seed=1)
    assert batches != bucketed_batches(lengths, 3, seed=2)


def test_an_unset_micro_batch_is_the_largest_divisor_of_the_batch_whose_pass_fits_the_token_budget():
    prefix = list(range(3, 103))
    short = [Example(prefix + [1] * 40, 139) for _ in range(6)]  # 16 of them pack into 100 + 640 tokens
    assert fit_micro_batch(TrainSettings(batch_size=16), short, prefix).micro_batch == 16
    own = (PASS_TOKENS - 100) // 5  # five fit beside the prefix (counted once), six do not
    long = [Example(prefix + [1] * own, 99 + own)] * 6
    assert fit_micro_batch(TrainSettings(batch_size=10), long, prefix).micro_batch == 5
    assert fit_micro_batch(TrainSettings(batch_size=10), long).micro_batch == 2  # no shared prefix: 100 each
    huge = [Example([1] * (2 * PASS_TOKENS), 10)]
    assert fit_micro_batch(TrainSettings(batch_size=16), huge).micro_batch == 1
    chosen = TrainSettings(batch_size=16, micro_batch=16)
    assert fit_micro_batch(chosen, huge) == chosen


def test_an_unset_batch_is_one_pass_of_at_most_pass_pairs():
    prefix = list(range(3, 103))
    short = [Example(prefix + [1] * 40, 139) for _ in range(6)]
    fitted = fit_micro_batch(TrainSettings(), short, prefix)
    assert (fitted.batch_size, fitted.micro_batch) == (PASS_PAIRS, PASS_PAIRS) == (16, 16)
    own = (PASS_TOKENS - 100) // 5  # five fit beside the prefix: 4 is the largest divisor of 16 under that
    long = [Example(prefix + [1] * own, 99 + own)] * 6
    fitted = fit_micro_batch(TrainSettings(), long, prefix)
    assert (fitted.batch_size, fitted.micro_batch) == (4, 4)
    fitted = fit_micro_batch(TrainSettings(micro_batch=2), short, prefix)
    assert (fitted.batch_size, fitted.micro_batch) == (2, 2)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        TrainSettings(batch_size=0)


def test_training_with_the_micro_batch_unset_packs_whole_batches_of_short_examples(tmp_path):
    settings = TrainSettings(epochs=1, batch_size=4, warmup=0.0, checkpoint_every=1)
    result = train_lora(tiny_llama(), examples(8), tmp_path, settings, data_key="d", progress=False)
    assert result["micro_steps"] == result["optimizer_steps"] == 2


SETTINGS = TrainSettings(epochs=6, lr=1e-2, batch_size=4, micro_batch=2, warmup=0.0, lora_dropout=0.0,
                         checkpoint_every=2)


def test_training_lowers_the_answer_loss(tmp_path):
    data = examples()
    with torch.no_grad():
        before = float(answer_loss(tiny_llama(), collate(data)))
    result = train_lora(tiny_llama(), data, tmp_path, SETTINGS, data_key="d", progress=False)
    with torch.no_grad():
        after = float(answer_loss(result["model"], collate(data)))
    assert result["finished"] and result["optimizer_steps"] == 18
    assert after < before * 0.3


def _lora_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_interrupted_training_resumes_to_the_same_adapter(tmp_path):
    data = examples()
    whole = train_lora(tiny_llama(), data, tmp_path / "a", SETTINGS, data_key="d", progress=False)
    first = train_lora(tiny_llama(), data, tmp_path / "b", SETTINGS, data_key="d", max_steps=7,
                       progress=False)
    assert not first["finished"] and (tmp_path / "b" / "checkpoint" / "state.pt").is_file()
    rest = train_lora(tiny_llama(), data, tmp_path / "b", SETTINGS, data_key="d", progress=False)
    assert rest["finished"] and rest["optimizer_steps"] == whole["optimizer_steps"]
    expected, got = _lora_state(whole["model"]), _lora_state(rest["model"])
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6)


def test_a_failing_training_run_leaves_no_worker_threads_behind(tmp_path, monkeypatch):
    import threading

    import guides.train

    real, calls = guides.train.backward_micro_batch, []

    def fails_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("a batch that fails")
        return real(*args, **kwargs)

    monkeypatch.setattr(guides.train, "backward_micro_batch", fails_on_the_third)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # on a CPU the trainer runs a pool of one-thread workers, one per torch thread
    try:
        with pytest.raises(RuntimeError, match="a batch that fails"):
            train_lora(tiny_llama(), examples(), tmp_path, SETTINGS, data_key="d", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 3
    assert not [t for t in threading.enumerate() if t.name.startswith("guide-training")]


def test_a_checkpoint_from_other_settings_is_refused(tmp_path):
    train_lora(tiny_llama(), examples(), tmp_path, SETTINGS, data_key="d", max_steps=3, progress=False)
    with pytest.raises(ValueError, match="other settings or data"):
        train_lora(tiny_llama(), examples(), tmp_path, SETTINGS, data_key="other", progress=False)


def test_lora_targets_must_exist():
    with pytest.raises(ValueError, match="none of the LoRA target modules"):
        add_lora(tiny_llama(), TrainSettings(targets=("no_such_proj",)))


# ------------------------------------------------------------------------------------------ real model
def _train_small_guide(root, cache, *extra):
    """A guide trained for two steps (batches of 8) on 16 SemEval pairs and calibrated on 6 dev pairs, via the
    CLI."""
    from collab.cli import main
    from collab.datasets import datasets_root

    source = datasets_root() / "semeval2010_task8"
    for name, n in (("train", 16), ("dev", 6)):
        lines = (source / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["train", "--data", str(root / "train.jsonl"), "--dev", str(root / "dev.jsonl"),
                 "--out", str(root / "g"), "--cache-dir", str(cache), "--threads", "2", "--batch-size", "8",
                 *extra]) == 0
    return root


@pytest.fixture(scope="module")
def trained_guide(tmp_path_factory, model_cache):
    return _train_small_guide(tmp_path_factory.mktemp("guide"), model_cache)


@pytest.mark.model
def test_guide_folder_holds_a_plain_peft_adapter_and_its_metadata(trained_guide):
    from peft import PeftConfig

    meta = json.loads((trained_guide / "g" / "guide.json").read_text())
    assert meta["schema"]["name"] == "semeval.v1" and meta["base_model"]["name"] == "smollm2"
    assert meta["train"]["optimizer_steps"] == 2 and 0.01 <= meta["temperature"] <= 100
    assert 0.05 < meta["dev"]["pairs_per_second"] < 1000  # timed over the dev scoring, not since boot
    assert PeftConfig.from_pretrained(str(trained_guide / "g")).r == 16
    assert (trained_guide / "g" / "reliability.png").is_file()
    assert not (trained_guide / "g" / "checkpoint").exists()


@pytest.mark.model
def test_loaded_guide_predicts_a_calibrated_distribution_over_the_schema(trained_guide, model_cache):
    from collab.config import Config
    from collab.data import read_pairs
    from collab.schema import load_schema
    from guides.guide import load_guide

    scorer = load_guide(trained_guide / "g", Config(cache_dir=model_cache))
    meta = json.loads((trained_guide / "g" / "guide.json").read_text())
    assert scorer.temperature == meta["temperature"]
    pair = next(read_pairs(trained_guide / "dev.jsonl"))
    probs = scorer.probabilities(pair)
    assert float(probs.sum()) == pytest.approx(1.0)
    assert scorer.predict_one(pair).relation in load_schema("semeval").label_names


@pytest.mark.model
def test_a_guide_is_refused_for_another_schema(trained_guide, model_cache):
    from collab.config import Config
    from guides.guide import GuideError, load_guide

    with pytest.raises(GuideError, match="trained for schema semeval.v1, not conll04.v1"):
        load_guide(trained_guide / "g", Config(cache_dir=model_cache), expect_schema="conll04")


@pytest.mark.model
def test_rerun_after_training_skips_to_calibration(trained_guide, model_cache):
    from collab.cli import main

    before = (trained_guide / "g" / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(["train", "--data", str(trained_guide / "train.jsonl"), "--dev", str(trained_guide / "dev.jsonl"),
                 "--out", str(trained_guide / "g"), "--cache-dir", str(model_cache),
                 "--threads", "2", "--batch-size", "8"]) == 0
    assert (trained_guide / "g" / "adapter_model.safetensors").stat().st_mtime_ns == before


@pytest.mark.model
def test_head_only_guide_flags_the_long_tail_and_never_answers_it(tmp_path, model_cache):
    from collab.config import Config
    from collab.data import read_pairs
    from collab.datasets import head_tail
    from collab.schema import load_schema
    from guides.guide import LONG_TAIL, load_guide

    root = _train_small_guide(tmp_path, model_cache, "--head-only")
    meta = json.loads((root / "g" / "guide.json").read_text())
    schema = load_schema("semeval")
    head = head_tail(schema, cache_dir=model_cache)["head"]
    assert meta["mode"] == "head_only" and meta["labels"] == [*[n for n in schema.label_names if n in head],
                                                                LONG_TAIL, "no_relation"]
    scorer = load_guide(root / "g", Config(cache_dir=model_cache))
    scorer.temperature = 1e-3  # sharpen: whichever label is on top gets almost all the mass
    for prediction in scorer.predict(list(read_pairs(root / "dev.jsonl"))):
        assert prediction.relation != LONG_TAIL and prediction.relation in meta["labels"]
        assert (LONG_TAIL in prediction.flags) == (next(iter(prediction.distribution)) == LONG_TAIL)


def test_dev_f1_at_calibration_accepts_any_of_a_pairs_gold_labels(tmp_path):
    """A DialogRE pair may hold two relations; the guide's dev F1 counts an answer right when it is any of
    them, as `eval` and the encoder guide's calibration do, so `auto` compares both kinds fairly."""
    import torch

    from collab.data import Mention, Pair
    from guides.guide import calibrate

    class FixedScorer:
        labels = ("friend_of", "colleague_of", "no_relation")

        def iter_label_scores(self, pairs, batch_size):
            return (torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64) for _ in pairs)  # always colleague_of

    ross, joey = Mention("Ross", 0, 4), Mention("Joey", 9, 13)
    dev = [Pair("both", "Ross met Joey.", ross, joey, "friend_of", labels=("friend_of", "colleague_of")),
           Pair("one", "Ross met Joey.", ross, joey, "friend_of")]
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    report = calibrate(FixedScorer(), dev, tmp_path)
    # colleague_of: right on 1 of the 2 pairs it was said for, and the 1 pair that holds it
    assert report["dev"]["per_label_f1"]["colleague_of"] == pytest.approx(2 / 3, abs=1e-3)
    assert report["dev"]["micro_f1"] == pytest.approx(0.5)
