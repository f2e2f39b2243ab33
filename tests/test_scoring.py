"""LabelScorer: label distributions from scored continuations, with prompt-KV reuse equal to the naive path.

Tests marked `model` use the packaged SmolLM2 (converted once per session into the same cache folder as
test_models.py; COLLAB_TEST_CACHE_DIR keeps it between runs).
"""
from __future__ import annotations


import pytest

from collab.data import Mention, Pair
from guides.scoring import LabelScorer

SEMEVAL = (
    "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Instrument-Agency(e1,e2)", "Instrument-Agency(e2,e1)",
    "Product-Producer(e1,e2)", "Product-Producer(e2,e1)", "Content-Container(e1,e2)", "Content-Container(e2,e1)",
    "Entity-Origin(e1,e2)", "Entity-Origin(e2,e1)", "Entity-Destination(e1,e2)", "Entity-Destination(e2,e1)",
    "Component-Whole(e1,e2)", "Component-Whole(e2,e1)", "Member-Collection(e1,e2)", "Member-Collection(e2,e1)",
    "Message-Topic(e1,e2)", "Message-Topic(e2,e1)", "no_relation",
)
# A few labels of different token lengths, two of them a prefix of another, so padding and masking matter.
MIXED = ("Cause", "Cause-Effect(e1,e2)", "A", "A B", "no_relation", "Member-Collection(e2,e1)")


def _pair(pair_id: str, text: str, head: str, tail: str, relation: str | None = None) -> Pair:
    h, t = text.index(head), text.index(tail)
    return Pair(pair_id, text, Mention(head, h, h + len(head)), Mention(tail, t, t + len(tail)), relation)


PAIRS = [
    _pair("p1", "The fire was caused by a faulty cable in the basement.", "fire", "cable", "Cause-Effect(e2,e1)"),
    _pair("p2", "The letters were put into a small wooden box.", "letters", "box", "Entity-Destination(e1,e2)"),
    _pair("p3", "A flock of geese flew over the lake.", "flock", "geese", "Member-Collection(e2,e1)"),
]


@pytest.fixture(scope="module")
def smollm2(model_cache):
    from guides.models import load_model

    return load_model("smollm2", model_cache, device="cpu")


@pytest.fixture(scope="module")
def smollm2_f64(model_cache):
    """The same weights in float64: the KV-reuse path must then match the naive path to rounding error."""
    import torch

    from guides.models import load_model

    return load_model("smollm2", model_cache, device="cpu", dtype=torch.float64)


# ------------------------------------------------------------------------------------------ fast tests
def test_label_set_is_validated():
    with pytest.raises(ValueError, match="at least one label"):
        LabelScorer(None, None, [])
    with pytest.raises(ValueError, match="duplicate labels: A"):
        LabelScorer(None, None, ["A", "B", "A"])
    with pytest.raises(ValueError, match="non-empty"):
        LabelScorer(None, None, ["A", " "])


# ------------------------------------------------------------------------------------- real SmolLM2
@pytest.mark.model
def test_distribution_sums_to_one_over_the_labels(smollm2):
    scorer = LabelScorer(*smollm2, SEMEVAL)
    dist = scorer.distribution(PAIRS[0])
    assert set(dist) <= set(SEMEVAL) and len(dist) == len(SEMEVAL)
    assert sum(dist.values()) == pytest.approx(1.0, abs=1e-6)
    assert all(0.0 <= p <= 1.0 for p in dist.values())


@pytest.mark.model
def test_predictions_stay_inside_the_label_set(smollm2):
    scorer = LabelScorer(*smollm2, SEMEVAL, template="slm/schema_enum.v1")
    predictions = scorer.predict(iter(PAIRS))
    assert [p.id for p in predictions] == [p.id for p in PAIRS]
    for prediction in predictions:
        assert prediction.relation in SEMEVAL
        assert prediction.route == "slm"
        assert prediction.slm == {"relation": prediction.relation, "confidence": prediction.confidence}
        probs = list(prediction.distribution.values())
        assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0)
        assert set(prediction.distribution) == set(SEMEVAL)
        assert next(iter(prediction.distribution)) == prediction.relation
        assert prediction.confidence == pytest.approx(probs[0])
        assert prediction.margin == pytest.approx(probs[0] - probs[1]) and prediction.margin >= 0


@pytest.mark.model
def test_kv_reuse_equals_the_naive_path(smollm2_f64):
    """Exactness of the batched, padded, prefix-cached path: float64 leaves only rounding error."""
    tree = LabelScorer(*smollm2_f64, MIXED)
    padded = LabelScorer(*smollm2_f64, MIXED, tree=False)
    assert tree.tree and not padded.tree
    for pair in PAIRS[:2]:
        naive = tree.naive_label_scores(pair)
        assert (tree.label_scores(pair) - naive).abs().max().item() < 1e-4
        assert (padded.label_scores(pair) - naive).abs().max().item() < 1e-4


@pytest.mark.model
def test_label_codes_score_every_label_in_the_prompt_pass_and_equal_the_naive_path(smollm2_f64):
    """With single-token label codes nothing is fed after the prompt, and the scores are still exact."""
    scorer = LabelScorer(*smollm2_f64, SEMEVAL, template="slm/guide_codes.v1")
    assert scorer.answers()[:3] == ["A", "B", "C"] and all(len(c) == 1 for c in scorer.continuations)
    assert len({c[0] for c in scorer.continuations}) == len(SEMEVAL) and scorer._tries[0].n_nodes == 0
    batched = scorer.label_scores_batch(PAIRS)
    for row, pair in zip(batched, PAIRS):
        assert (row - scorer.naive_label_scores(pair)).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="codes at most 52 labels"):
        LabelScorer(*smollm2_f64, [f"label {i}" for i in range(53)], template="slm/guide_codes.v1")


@pytest.mark.model
def test_kv_reuse_matches_the_naive_path_in_fp32(smollm2):
    """In fp32 the two paths differ by float noise only (~2e-4 on scores around -50); the softmax is unaffected."""
    import torch

    scorer = LabelScorer(*smollm2, MIXED)
    for pair in PAIRS[:2]:
        fast, naive = scorer.label_scores(pair), scorer.naive_label_scores(pair)
        assert torch.allclose(fast, naive, rtol=2e-5, atol=1e-3)
        assert (torch.softmax(fast.double(), 0) - torch.softmax(naive.double(), 0)).abs().max().item() < 1e-4


@pytest.mark.model
def test_prefix_cache_chunking_and_repeat_calls_agree(smollm2):
    import torch

    model, tokenizer = smollm2
    reference = LabelScorer(model, tokenizer, MIXED, reuse_prefix=False, tree=False)
    variants = [LabelScorer(model, tokenizer, MIXED),  # prefix cache + trie
                LabelScorer(model, tokenizer, MIXED, tree=False),  # prefix cache + padded batch
                LabelScorer(model, tokenizer, MIXED, label_batch=2),  # three tries, the prompt cache copied
                LabelScorer(model, tokenizer, MIXED, label_batch=4, tree=False)]
    cached = variants[0]
    assert len(cached.shared_prefix) >= 8 and reference.shared_prefix == []
    assert len(variants[2]._tries) == 3
    for pair in PAIRS[:2]:
        expected = reference.label_scores(pair)
        for variant in variants:
            assert torch.allclose(variant.label_scores(pair), expected, atol=1e-3)
    assert torch.equal(cached.label_scores(PAIRS[0]), cached.label_scores(PAIRS[0]))  # deterministic


@pytest.mark.model
def test_a_label_that_prefixes_another_is_not_favoured(smollm2):
    model, tokenizer = smollm2
    scorer = LabelScorer(model, tokenizer, ["A", "A B"])
    short, long = scorer.continuations
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert short[-1] == end_of_turn and long[-1] == end_of_turn
    assert long[:len(short)] != short  # "A" + end-of-turn is not a prefix of "A B" + end-of-turn
    dist = scorer.distribution(PAIRS[2])
    assert set(dist) == {"A", "A B"} and sum(dist.values()) == pytest.approx(1.0)
    assert scorer.predict([PAIRS[2]])[0].relation in {"A", "A B"}


@pytest.mark.model
def test_training_mode_is_restored(smollm2):
    model, tokenizer = smollm2
    scorer = LabelScorer(model, tokenizer, ["A", "A B"])
    model.train()
    try:
        first = scorer.label_scores(PAIRS[0])
        assert model.training
        assert scorer.label_scores(PAIRS[0]).tolist() == first.tolist()  # no dropout while scoring
    finally:
        model.eval()


@pytest.mark.model
def test_prefix_cache_follows_weight_updates(smollm2):
    import torch

    model, tokenizer = smollm2
    scorer = LabelScorer(model, tokenizer, ["A", "A B"])
    before = scorer.label_scores(PAIRS[0])
    weight = model.model.layers[0].self_attn.q_proj.weight
    original = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(1.5)  # an in-place update, as an optimizer step makes
        changed = scorer.label_scores(PAIRS[0])
        fresh = LabelScorer(model, tokenizer, ["A", "A B"], reuse_prefix=False).label_scores(PAIRS[0])
        assert not torch.allclose(changed, before) and torch.allclose(changed, fresh, atol=1e-3)
    finally:
        with torch.no_grad():
            weight.copy_(original)
    assert torch.allclose(scorer.label_scores(PAIRS[0]), before, atol=1e-5)


# ------------------------------------------------------------- batched scoring on a tiny random model
def _tiny_model(tokenizer, attention: str):
    """SmolLM2's tokenizer over a tiny random Llama: the batching logic runs in seconds, in float64."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.2, attn_implementation=attention)
    return LlamaForCausalLM(config).double().eval()


@pytest.mark.model
def test_the_lm_head_reads_a_contiguous_input_and_gives_the_same_logits(smollm2_tokenizer):
    """The kept columns reach the head as one contiguous block (one matrix product, not one per row)."""
    import torch

    from guides.models import contiguous_head_input

    model = _tiny_model(smollm2_tokenizer, "sdpa")
    ids = torch.randint(0, 1000, (3, 9))
    seen = []
    model.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    before = model(input_ids=ids, logits_to_keep=2).logits
    contiguous_head_input(model)
    after = model(input_ids=ids, logits_to_keep=2).logits
    assert seen == [False, True]
    torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)


LONGER = _pair("p4", "After the long meeting, the committee members finally sent the signed report to the "
                     "regional office by courier.", "report", "office", "Entity-Destination(e1,e2)")


@pytest.mark.model
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_batched_scores_equal_one_pair_at_a_time(smollm2_tokenizer, attention):
    import torch

    model = _tiny_model(smollm2_tokenizer, attention)
    scorer = LabelScorer(model, smollm2_tokenizer, SEMEVAL)
    assert scorer.tree and scorer.shared_prefix
    pairs = [PAIRS[0], LONGER, PAIRS[2], PAIRS[1]]  # unlike lengths: rows get different left padding
    batched = scorer.label_scores_batch(pairs)
    for row, pair in enumerate(pairs):
        torch.testing.assert_close(batched[row], scorer.naive_label_scores(pair), rtol=1e-7, atol=1e-9)


SHARED = "Anna told her brother Ben that their mother Clara would visit the old house."
SHARED_PAIRS = [_pair("s1", SHARED, "Anna", "Ben"), _pair("s2", SHARED, "Ben", "Clara"),
                _pair("s3", SHARED, "Anna", "Clara"), _pair("s4", SHARED, "Clara", "house")]


@pytest.mark.model
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("labels", [SEMEVAL, MIXED], ids=["semeval", "mixed"])
def test_pairs_sharing_a_sentence_score_as_if_alone(smollm2_tokenizer, attention, labels):
    """Pairs of one sentence share a row (the sentence runs once); mixed with other pairs and in any order,
    each still gets exactly the one-pair scores."""
    import torch

    from guides.scoring import _Rows

    model = _tiny_model(smollm2_tokenizer, attention)
    scorer = LabelScorer(model, smollm2_tokenizer, labels)
    pairs = [SHARED_PAIRS[0], PAIRS[0], SHARED_PAIRS[1], LONGER, SHARED_PAIRS[2], SHARED_PAIRS[3]]
    k = len(scorer.shared_prefix)
    rows = _Rows([scorer.prompt_ids(p)[k:] for p in pairs], [p.text for p in pairs], k)
    assert rows.n == 3 and rows.blocks == 4        # the four SHARED pairs are one row
    batched = scorer.label_scores_batch(pairs)
    for row, pair in enumerate(pairs):
        torch.testing.assert_close(batched[row], scorer.naive_label_scores(pair), rtol=1e-7, atol=1e-9)


@pytest.mark.model
def test_label_codes_pairs_sharing_a_sentence_score_as_if_alone(smollm2_tokenizer):
    import torch

    scorer = LabelScorer(_tiny_model(smollm2_tokenizer, "sdpa"), smollm2_tokenizer, SEMEVAL,
                         template="slm/guide_codes.v1")
    pairs = [*SHARED_PAIRS, PAIRS[1]]
    batched = scorer.label_scores_batch(pairs)
    for row, pair in enumerate(pairs):
        torch.testing.assert_close(batched[row], scorer.naive_label_scores(pair), rtol=1e-7, atol=1e-9)


@pytest.mark.model
def test_predictions_keep_input_order_whatever_the_batching(smollm2_tokenizer):
    model = _tiny_model(smollm2_tokenizer, "sdpa")
    scorer = LabelScorer(model, smollm2_tokenizer, SEMEVAL, temperature=2.0)
    pairs = [PAIRS[0], LONGER, PAIRS[2], PAIRS[1], LONGER]
    one = [p.distribution for p in scorer.predict(pairs, batch_size=1)]
    three = scorer.predict(pairs, batch_size=3)
    assert [p.id for p in three] == [p.id for p in pairs]
    for a, b in zip(one, three):
        assert a.keys() == b.distribution.keys()
        assert all(abs(a[k] - b.distribution[k]) < 1e-9 for k in a)


@pytest.mark.model
def test_raw_scores_for_calibration_are_in_input_order_and_untempered(smollm2_tokenizer, monkeypatch):
    """Dev scoring for calibration batches as prediction does (rows shared, windows), yet gives each pair its
    own scores, before the temperature."""
    import torch

    import guides.scoring as scoring

    monkeypatch.setattr(scoring, "WINDOW_BATCHES", 1)  # windows of 2 pairs: a sentence's rows span two
    scorer = LabelScorer(_tiny_model(smollm2_tokenizer, "sdpa"), smollm2_tokenizer, SEMEVAL, temperature=3.0)
    pairs = [SHARED_PAIRS[0], LONGER, SHARED_PAIRS[1], PAIRS[0], SHARED_PAIRS[2]]
    scores = list(scorer.iter_label_scores(pairs, batch_size=2))
    assert len(scores) == len(pairs)
    for got, pair in zip(scores, pairs):
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, scorer.naive_label_scores(pair), rtol=1e-7, atol=1e-9)


def _assert_same_predictions(alone, together):
    """The same labels and every probability within 1e-12: batches run side by side against one at a time."""
    for a, b in zip(alone, together):
        assert a.relation == b.relation
        assert all(abs(a.distribution[k] - b.distribution[k]) < 1e-12 for k in a.distribution)


@pytest.mark.model
def test_batches_scored_side_by_side_on_one_thread_each_give_the_same_answers(smollm2_tokenizer):
    """On a CPU, batches run at once on worker threads of one torch thread each: they really overlap, the
    caller keeps its thread count, and every pair gets the scores of batches run one at a time."""
    import threading

    import torch

    model = _tiny_model(smollm2_tokenizer, "sdpa")
    pairs = [PAIRS[0], LONGER, SHARED_PAIRS[0], PAIRS[2], SHARED_PAIRS[1], PAIRS[1], LONGER]
    alone = LabelScorer(model, smollm2_tokenizer, SEMEVAL, workers=1).predict(pairs, batch_size=1)
    scorer = LabelScorer(model, smollm2_tokenizer, SEMEVAL, workers=3)
    overlap, lock, seen, score = threading.Barrier(2, timeout=30), threading.Lock(), [], scorer.label_scores_batch

    def watched(batch, prompts=None):
        with lock:
            seen.append((threading.get_ident(), torch.get_num_threads()))
            first_two = len(seen) <= 2
        if first_two:
            overlap.wait()  # the first two batches must be running at the same time, or this times out
        return score(batch, prompts)

    scorer.label_scores_batch = watched
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        together = scorer.predict(pairs, batch_size=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == len({p.text for p in pairs}) and len({ident for ident, _ in seen}) > 1  # a batch a text
    assert {count for _, count in seen} == {1}
    assert [p.id for p in together] == [p.id for p in pairs]
    _assert_same_predictions(alone, together)


@pytest.mark.model
def test_workers_get_the_next_windows_batches_before_a_window_is_handed_out(smollm2_tokenizer, monkeypatch):
    """With one pair a window, the first window's batch waits until the second window's batch has started: it
    can only start if the second window was queued before the first one's scores were awaited. The answers are
    those of one batch at a time, and a caller that stops early gets training mode back with nothing left
    running."""
    import threading

    import guides.scoring as scoring

    monkeypatch.setattr(scoring, "WINDOW_BATCHES", 1)
    model = _tiny_model(smollm2_tokenizer, "sdpa")
    pairs = [PAIRS[0], PAIRS[1], LONGER, PAIRS[2]]
    alone = LabelScorer(model, smollm2_tokenizer, SEMEVAL, workers=1).predict(pairs, batch_size=1)
    scorer = LabelScorer(model, smollm2_tokenizer, SEMEVAL, workers=2)
    second_started, running, score = threading.Event(), [], scorer.label_scores_batch

    def watched(batch, prompts=None):
        running.append(batch[0].id)
        if batch[0].id == pairs[1].id:
            second_started.set()
        if batch[0].id == pairs[0].id:
            assert second_started.wait(timeout=30), "the second window was not queued before the first was awaited"
        try:
            return score(batch, prompts)
        finally:
            running.remove(batch[0].id)

    scorer.label_scores_batch = watched
    together = scorer.predict(pairs, batch_size=1)
    assert [p.id for p in together] == [p.id for p in pairs]
    _assert_same_predictions(alone, together)

    model.train()
    stream = scorer.iter_predict(pairs, batch_size=1)
    assert next(stream).id == pairs[0].id
    stream.close()
    assert model.training and running == []


@pytest.mark.model
def test_the_prompt_pass_runs_the_lm_head_only_for_the_labels_first_tokens(smollm2_tokenizer):
    """The scores are normalised over the labels, so the whole vocabulary's normaliser is not needed: the LM head
    is not run over the whole vocabulary, and the scores are still the naive path's. A head the scorer cannot
    take rows from (here one of its own class) runs whole, with the same scores."""
    import torch

    model = _tiny_model(smollm2_tokenizer, "sdpa")
    calls = []
    model.lm_head.register_forward_hook(lambda module, inputs, output: calls.append(output.shape))
    for template, labels in (("slm/guide_codes.v1", SEMEVAL), ("slm/zero_shot.v1", MIXED)):
        scorer = LabelScorer(model, smollm2_tokenizer, labels, template=template)
        assert scorer._label_head is not None
        calls.clear()
        batched = scorer.label_scores_batch(PAIRS)
        vocabulary = model.lm_head.out_features
        assert all(shape[-1] == vocabulary for shape in calls)
        assert len(calls) == (0 if template == "slm/guide_codes.v1" else 1)  # only the label trie's pass
        for row, pair in zip(batched, PAIRS):
            torch.testing.assert_close(row, scorer.naive_label_scores(pair), rtol=1e-9, atol=1e-9)
            assert torch.logsumexp(row, dim=0).item() == pytest.approx(0.0, abs=1e-12)

    class ScaledHead(torch.nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    scaled = ScaledHead(model.lm_head.in_features, model.lm_head.out_features, bias=False, dtype=torch.float64)
    scaled.weight = model.lm_head.weight
    model.lm_head = scaled
    scorer = LabelScorer(model, smollm2_tokenizer, SEMEVAL, template="slm/guide_codes.v1")
    assert scorer._label_head is None
    for row, pair in zip(scorer.label_scores_batch(PAIRS), PAIRS):
        torch.testing.assert_close(row, scorer.naive_label_scores(pair), rtol=1e-9, atol=1e-9)


@pytest.mark.model
def test_the_mlps_skip_the_prompt_pass_padding(smollm2_tokenizer):
    """Rows of unlike length are left-padded to one width; in the prompt pass each layer's MLP runs on the real
    tokens alone, and the scores are still the one-pair path's. Outside the scorer's pass the MLPs see every token."""
    import torch

    model = _tiny_model(smollm2_tokenizer, "sdpa")
    seen = []
    model.model.layers[1].mlp.register_forward_hook(lambda module, args, output: seen.append(tuple(args[0].shape)))
    pairs = [PAIRS[0], LONGER, PAIRS[2]]
    for template, labels in (("slm/guide_codes.v1", SEMEVAL), ("slm/zero_shot.v1", MIXED)):
        scorer = LabelScorer(model, smollm2_tokenizer, labels, template=template)
        rests = [len(scorer.prompt_ids(p)) - len(scorer.shared_prefix) for p in pairs]
        seen.clear()
        batched = scorer.label_scores_batch(pairs)
        assert (1, sum(rests), 32) in seen  # the real tokens of the three rows, and nothing else
        assert (len(pairs), max(rests), 32) not in seen  # the padded batch never reaches the MLP
        for row, pair in zip(batched, pairs):
            torch.testing.assert_close(row, scorer.naive_label_scores(pair), rtol=1e-9, atol=1e-9)
    seen.clear()
    model(input_ids=torch.randint(0, 1000, (2, 5)))
    assert seen == [(2, 5, 32)]


@pytest.mark.model
def test_a_windows_batches_go_to_the_workers_longest_first(smollm2_tokenizer):
    """The last batches of a run are then its shortest, so a worker that runs out of batches waits little."""
    from concurrent.futures import Future

    scorer = LabelScorer(_tiny_model(smollm2_tokenizer, "sdpa"), smollm2_tokenizer, SEMEVAL)
    pairs = [PAIRS[0], LONGER, PAIRS[2], SHARED_PAIRS[0], PAIRS[1], SHARED_PAIRS[1]]
    submitted = []

    def record(score, batch, prompts):
        submitted.append(sum(len(ids) for ids in prompts))
        return Future()

    jobs = scorer._window_jobs(pairs, 1, record)
    assert len(jobs) == len({p.text for p in pairs})  # the shared sentence's two pairs are one batch
    assert submitted == sorted(submitted, reverse=True) and submitted[0] > submitted[-1]


def test_workers_must_be_at_least_one():
    with pytest.raises(ValueError, match="workers must be at least 1"):
        LabelScorer(None, None, ["A"], workers=0)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be positive"):
        LabelScorer(None, None, ["A"], temperature=0)


@pytest.mark.model
def test_a_prompt_over_the_model_context_is_a_clear_error(smollm2_tokenizer):
    model = _tiny_model(smollm2_tokenizer, "sdpa")
    scorer = LabelScorer(model, smollm2_tokenizer, SEMEVAL)
    longest_label = max(len(c) for c in scorer.continuations)
    short, long = (len(scorer.prompt_ids(p)) + longest_label for p in (PAIRS[0], LONGER))
    assert short < long
    model.config.max_position_embeddings = short  # the short pair just fits, the long one does not
    scorer.predict([PAIRS[0]])
    with pytest.raises(ValueError, match=f"pair p4: its prompt is .* tokens and the model reads at most {short}"):
        scorer.predict([PAIRS[0], LONGER])


def test_a_never_final_label_must_be_a_label():
    with pytest.raises(ValueError, match="never_final label 'long_tail' is not among the labels"):
        LabelScorer(None, None, ["A", "B"], never_final="long_tail")


@pytest.mark.model
def test_a_k_shot_template_shows_retrieved_training_pairs_before_the_question(smollm2_tokenizer, tmp_path,
                                                                             write_jsonl):
    from conftest import pair_record
    from fakes import FakeEmbedder

    from collab.retrieval import Retriever, demonstration_picker
    from collab.schema import load_schema

    train = write_jsonl([pair_record("t1", "The fire caused smoke in the hall.", "fire", "smoke", split="train"),
                         pair_record("t2", "The letter is about the war.", "letter", "war", "Message-Topic(e1,e2)",
                                     split="train"),
                         pair_record("t3", "The man walked past the house.", "man", "house", "no_relation",
                                     split="train")], "train.jsonl")
    retriever = Retriever(load_schema("semeval"), FakeEmbedder(), train=str(train), cache_dir=tmp_path)
    model = _tiny_model(smollm2_tokenizer, "sdpa")
    with pytest.raises(ValueError, match="shows solved examples"):
        LabelScorer(model, smollm2_tokenizer, SEMEVAL, template="slm/k_shot.v1")
    scorer = LabelScorer(model, smollm2_tokenizer, SEMEVAL, template="slm/k_shot.v1",
                         demonstrations=demonstration_picker(retriever, 2))
    query = _pair("q", "The fire caused smoke in the hall.", "fire", "smoke")  # t1's twin under another id
    messages = scorer.render(query).messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    shown = [m["content"] for m in messages if m["role"] == "assistant"]
    assert "no_relation" in shown and "Cause-Effect(e1,e2)" not in shown  # never the query itself
    prediction = scorer.predict([query])[0]
    assert prediction.relation in SEMEVAL


def test_a_sentences_pairs_are_sorted_by_the_length_of_the_row_they_share():
    from guides.scoring import _row_length

    # the common part once, then each prompt's own rest; a lone prompt is its own length
    assert _row_length([[1, 2, 3, 4], [1, 2, 5]]) == 2 + 2 + 1
    assert _row_length([[7, 8, 9]]) == 3
    assert _row_length([[1, 9], [2, 9]]) == 0 + 2 + 2


def test_a_rows_pairs_stay_in_one_batch():
    from guides.scoring import _batches

    rows = ["a", "b", "b", "b", "c", "d", "d", "e"]  # pairs 1-3 share a sentence, as do 5-6
    batches = list(_batches(list(range(len(rows))), rows, batch_size=2))
    assert batches == [[0, 1, 2, 3], [4, 5, 6], [7]]  # a batch outgrows 2 pairs only to keep a row whole
    assert sorted(i for b in batches for i in b) == list(range(len(rows)))
    assert list(_batches([0, 1, 2], ["x", "y", "z"], batch_size=2)) == [[0, 1], [2]]


@pytest.mark.model
def test_a_k_shot_prompt_retrieves_each_pairs_examples_once(smollm2_tokenizer):
    shown = []

    def picker(pair):  # a retrieval round trip per call in real use: embedding, search, balancing
        shown.append(pair.id)
        return [PAIRS[0]]

    scorer = LabelScorer(_tiny_model(smollm2_tokenizer, "sdpa"), smollm2_tokenizer, SEMEVAL,
                         template="slm/k_shot.v1", demonstrations=picker)
    predictions = scorer.predict(PAIRS[1:], batch_size=2)
    assert [p.id for p in predictions] == ["p2", "p3"]
    assert sorted(shown) == ["p2", "p3"]


@pytest.mark.model
def test_a_k_shot_codes_prompt_shows_each_example_answered_with_its_code(smollm2_tokenizer):
    labels = ("Cause-Effect(e2,e1)", "Entity-Destination(e1,e2)", "long_tail", "no_relation")
    scorer = LabelScorer(_tiny_model(smollm2_tokenizer, "sdpa"), smollm2_tokenizer, labels,
                         template="slm/k_shot_codes.v1", never_final="long_tail",
                         demonstrations=lambda pair: [PAIRS[1], PAIRS[2]])
    messages = scorer.render(PAIRS[0]).messages
    # Entity-Destination is the second label (B); Member-Collection is outside the set, so a tail example (C)
    assert [m["content"] for m in messages if m["role"] == "assistant"] == ["B", "C"]
    assert "wooden box" in messages[1]["content"] and "faulty cable" in messages[-1]["content"]
    assert scorer.predict([PAIRS[0]])[0].relation in labels
    without_tail = LabelScorer(None, smollm2_tokenizer, labels[:2], template="slm/k_shot_codes.v1",
                               demonstrations=lambda pair: [PAIRS[2]])
    with pytest.raises(ValueError, match="'Member-Collection\\(e2,e1\\)' is not among the guide's labels"):
        without_tail.render(PAIRS[0])
