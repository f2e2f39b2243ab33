import json
import time

import numpy as np
import pytest
from conftest import pair_record
from fakes import FakeEmbedder

from collab import embed, retrieval
from collab.cli import main
from collab.data import Mention, Pair
from collab.retrieval import Candidate, Retriever, RetrievalError, TriggerMatcher, mark_mentions, simple_tokens
from collab.schema import load_schema

CAUSE, EFFECT_CAUSE = "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"
CONTAINER, TOPIC, ORIGIN = "Content-Container(e1,e2)", "Message-Topic(e1,e2)", "Entity-Origin(e1,e2)"

TRAIN = [
    ("t1", "The fire caused smoke in the kitchen.", "fire", "smoke", CAUSE),
    ("t2", "The earthquake caused a tsunami.", "earthquake", "tsunami", CAUSE),
    ("t3", "The virus caused a fever.", "virus", "fever", CAUSE),
    ("t4", "The flood was caused by heavy rain.", "flood", "rain", EFFECT_CAUSE),
    ("t5", "The letter is about the war.", "letter", "war", TOPIC),
    ("t6", "The apples were in a basket.", "apples", "basket", CONTAINER),
    ("t7", "The man walked past the house.", "man", "house", "no_relation"),
    ("t8", "A child saw a bird.", "child", "bird", "no_relation"),
]


def train_file(write_jsonl, rows=TRAIN, name="train.jsonl", split="train"):
    return write_jsonl([pair_record(i, text, head, tail, label, split=split) for i, text, head, tail, label in rows],
                       name)


def make_pair(text, head, tail, id="q1", relation=None):
    hs, ts = text.index(head), text.index(tail)
    return Pair(id, text, Mention(head, hs, hs + len(head)), Mention(tail, ts, ts + len(tail)), relation)


@pytest.fixture
def semeval():
    return load_schema("semeval")


def retriever(schema, path, cache, embedder=None, **options):
    return Retriever(schema, embedder or FakeEmbedder(), train=str(path), cache_dir=cache,
                     lemmatize=simple_tokens, **options)


def test_mark_mentions_handles_touching_nested_and_identical_spans():
    touching = Pair("a", "abcdef", Mention("abc", 0, 3), Mention("def", 3, 6))
    assert mark_mentions(touching) == "[E1]abc[/E1][E2]def[/E2]"
    nested = Pair("b", "New York City", Mention("New York City", 0, 13), Mention("York", 4, 8))
    assert mark_mentions(nested) == "[E1]New [E2]York[/E2] City[/E1]"
    same_end = Pair("c", "New York City", Mention("City", 9, 13), Mention("New York City", 0, 13))
    assert mark_mentions(same_end) == "[E2]New York [E1]City[/E1][/E2]"
    identical = Pair("d", "Rome", Mention("Rome", 0, 4), Mention("Rome", 0, 4))
    assert mark_mentions(identical) == "[E1][E2]Rome[/E2][/E1]"


def test_index_is_persisted_and_reloaded_without_recomputation(semeval, write_jsonl, tmp_path):
    path, cache = train_file(write_jsonl), tmp_path / "cache"
    first = FakeEmbedder()
    built = retriever(semeval, path, cache, first)
    assert first.calls == 2  # definitions, demonstrations
    again = FakeEmbedder()
    start = time.perf_counter()
    loaded = retriever(semeval, path, cache, again)
    assert time.perf_counter() - start < 1.0
    assert again.calls == 0
    assert not loaded.demo_pairs._built  # opening read no pair's record: a large set opens as fast
    assert loaded.by_label == built.by_label and loaded.by_label[CAUSE] == [0, 1, 2]
    assert [p.id for p in loaded.demo_pairs] == [p.id for p in built.demo_pairs]
    assert loaded.demo_pairs[3] == built.demo_pairs[3] and loaded.definitions.items[0] == built.definitions.items[0]
    assert not [p for p in (cache / "indexes").iterdir() if p.name.startswith(".")]  # no temp folder left


def test_an_index_whose_records_file_was_cut_is_rebuilt(semeval, write_jsonl, tmp_path):
    path, cache = train_file(write_jsonl), tmp_path / "cache"
    retriever(semeval, path, cache)
    (records,) = (cache / "indexes").glob("demonstrations-*/items.jsonl")
    records.write_bytes(records.read_bytes()[:-10])
    again = FakeEmbedder()
    assert [p.id for p in retriever(semeval, path, cache, again).demo_pairs] == [row[0] for row in TRAIN]
    assert again.calls == 1  # the demonstrations, whose records were cut; the definitions were fine


def test_each_training_set_keeps_its_own_index(semeval, write_jsonl, tmp_path):
    cache = tmp_path / "cache"
    first = train_file(write_jsonl)
    other = train_file(write_jsonl, TRAIN[:5], name="other.jsonl")
    retriever(semeval, first, cache)
    assert len(retriever(semeval, other, cache).demo_pairs) == 5
    back = FakeEmbedder()
    assert len(retriever(semeval, first, cache, back).demo_pairs) == 8
    assert back.calls == 0  # switching back to the first set rebuilt nothing
    assert len(list((cache / "indexes").glob("demonstrations-*"))) == 2


def test_stale_fingerprint_rebuilds(semeval, write_jsonl, tmp_path):
    cache = tmp_path / "cache"
    retriever(semeval, train_file(write_jsonl), cache)
    more = TRAIN + [("t9", "The storm caused damage.", "storm", "damage", CAUSE)]
    changed_data = FakeEmbedder()
    assert len(retriever(semeval, train_file(write_jsonl, more), cache, changed_data).demo_pairs) == 9
    assert changed_data.calls == 1  # the definitions were still fresh

    edited = tmp_path / "semeval.v1.yaml"
    edited.write_text(semeval.path.read_text(encoding="utf-8").replace("HEAD brings about", "HEAD causes"),
                      encoding="utf-8")
    changed_schema = FakeEmbedder()
    retriever(load_schema(edited), train_file(write_jsonl, more), cache, changed_schema)
    assert changed_schema.calls == 2

    other_weights = FakeEmbedder("fake-2")
    retriever(semeval, train_file(write_jsonl, more), cache, other_weights)
    assert other_weights.calls == 2


def test_demonstrations_never_from_dev_or_test_nor_the_query(semeval, write_jsonl, tmp_path):
    dev = train_file(write_jsonl, TRAIN[:3], "dev.jsonl", split="dev")
    with pytest.raises(RetrievalError, match="split 'dev'"):
        retriever(semeval, dev, tmp_path / "cache")
    r = retriever(semeval, train_file(write_jsonl), tmp_path / "cache")
    same_text = make_pair(TRAIN[0][1], "fire", "smoke", id="test-1")  # a copy of t1 under another id
    same_id = make_pair("Completely different words here.", "words", "here", id="t2")
    for query, twin in ((same_text, "t1"), (same_id, "t2")):
        (demos,) = r.demonstrations([query], [[CAUSE]], k=8)
        assert twin not in {d.pair.id for d in demos} and len(demos) == len(TRAIN) - 1
        assert all(d.pair.split == "train" for d in demos)
    (candidates,) = r.evidence([same_text])
    cause = next(c for c in candidates if c.label == CAUSE)
    assert "demo:2" in cause.reasons  # t2 and t3 voted; t1, the query itself, did not


def test_balanced_demonstrations_show_each_candidate_label_and_a_negative(semeval, write_jsonl, tmp_path):
    r = retriever(semeval, train_file(write_jsonl), tmp_path / "cache")
    query = make_pair("The storm caused damage and the fire caused smoke.", "storm", "damage")
    (demos,) = r.demonstrations([query], [[CAUSE, CONTAINER, ORIGIN]], k=2)
    labels = [d.pair.relation for d in demos]
    assert CAUSE in labels and CONTAINER in labels and "no_relation" in labels
    assert ORIGIN not in labels  # no training example has it; nothing breaks
    assert labels[0] == CAUSE and demos == sorted(demos, key=lambda d: -d.similarity)


def test_labels_outside_the_pool_are_read_once_for_all_the_pairs_that_need_them(semeval, write_jsonl, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(retrieval, "POOL", 1)  # the pool holds one pair: the other labels are searched outside it
    r = retriever(semeval, train_file(write_jsonl), tmp_path / "cache")
    reads = []
    vectors_of = r.demos.vectors
    monkeypatch.setattr(r.demos, "vectors", lambda ids: reads.append(len(ids)) or vectors_of(ids))
    queries = [make_pair("The storm caused damage.", "storm", "damage", id="q1"),
               make_pair("The fire caused smoke in the kitchen.", "fire", "smoke", id="t1"),  # a training pair
               make_pair("The earthquake caused a tsunami nearby.", "earthquake", "tsunami", id="q3")]
    wanted = [CAUSE, CONTAINER, TOPIC]
    demos = r.demonstrations(queries, [wanted] * 3, k=1)
    vectors = r.encode(queries)
    pools = [{d.pair.relation for d in pool} for pool in r._nearest(queries, vectors, 1)]
    outside = {label for label in wanted + ["no_relation"] for pool in pools if label not in pool}
    assert CONTAINER in outside and TOPIC in outside and len(reads) == len(outside)  # one read a label, not a pair
    for query, vector, shown in zip(queries, vectors, demos):
        assert query.id not in {d.pair.id for d in shown}
        for label in wanted[1:] + ["no_relation"]:
            ids = [i for i, p in enumerate(r.demo_pairs) if p.relation == label and p.id != query.id]
            sims = embed.normalize(vectors_of(ids)) @ vector
            demo = next(d for d in shown if d.pair.relation == label)
            assert demo.pair.id == r.demo_pairs[ids[int(np.argmax(sims))]].id
            assert demo.similarity == pytest.approx(float(sims.max()), abs=1e-6)


def test_nearest_among_reads_in_chunks_and_skips_excluded_ids(monkeypatch):
    monkeypatch.setattr(retrieval, "LABEL_CHUNK", 4)
    rng = np.random.default_rng(0)
    data = embed.normalize(rng.standard_normal((30, 8)).astype(np.float32))
    data[7] = data[3]  # two equal vectors: the first of them wins
    index = retrieval.VectorIndex(retrieval._new_index(8, "flat"), [{}] * 30, "k")
    index.index.add(data)
    ids = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    queries = embed.normalize(np.vstack([data[3], data[11], rng.standard_normal(8)]).astype(np.float32))
    banned = {(1, 11), (1, 13)}  # row 1's own vector, and a duplicate of it
    found = retrieval.nearest_among(index, ids, queries, lambda row, i: (row, i) in banned)
    for row, (best, sim) in enumerate(found):
        allowed = [i for i in ids if (row, i) not in banned]
        sims = data[allowed] @ queries[row]
        assert best == allowed[int(np.argmax(sims))] and sim == pytest.approx(float(sims.max()), abs=1e-6)
    assert found[0][0] == 3
    assert retrieval.nearest_among(index, [11], queries[1:2], lambda row, i: True) == [(None, float("-inf"))]


def test_no_relation_is_always_a_candidate(semeval, write_jsonl, tmp_path):
    r = retriever(semeval, train_file(write_jsonl), tmp_path / "cache")
    query = make_pair("The virus caused a fever.", "virus", "fever", id="q-virus")
    for k in (1, 2, 5):
        (candidates,) = r.candidates([query], k=k, guides=[{CAUSE: 0.9, TOPIC: 0.1}])
        assert len(candidates) <= k and "no_relation" in [c.label for c in candidates]
    (candidates,) = r.candidates([query], k=5, guides=[{CAUSE: 0.9}])
    assert candidates[0].label == CAUSE and "guide:0.90" in candidates[0].reasons
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)


def test_the_cut_gives_agreed_pairs_few_candidates_and_contested_ones_up_to_k(semeval, write_jsonl, tmp_path):
    r = retriever(semeval, train_file(write_jsonl), tmp_path / "cache")
    agreed = [Candidate(CAUSE, 3.0, ()), Candidate(TOPIC, 0.2, ()), Candidate(ORIGIN, 0.1, ()),
              Candidate("no_relation", 0.1, ())]
    assert [c.label for c in r.cut(agreed, k=3, mass=0.7)] == [CAUSE, "no_relation"]
    contested = [Candidate(label, 1.0, ()) for label in (CAUSE, TOPIC, ORIGIN, CONTAINER, "no_relation")]
    assert [c.label for c in r.cut(contested, k=3, mass=0.7)] == [CAUSE, TOPIC, "no_relation"]
    assert [c.label for c in r.cut(agreed, k=3, mass=1.0)] == [CAUSE, TOPIC, "no_relation"]  # mass 1 keeps k
    # a sure no_relation does not crowd out the positive labels: their mass is shared among themselves
    sure_negative = [Candidate("no_relation", 9.0, ())] + contested[:3]
    assert [c.label for c in r.cut(sure_negative, k=4, mass=0.7)] == [CAUSE, TOPIC, ORIGIN, "no_relation"]
    for k, mass in ((0, 0.7), (3, 0.0), (3, 1.5)):
        with pytest.raises(RetrievalError, match="the cut needs"):
            r.cut(agreed, k=k, mass=mass)


@pytest.mark.parametrize("lemmatize", [simple_tokens, retrieval.lemma_tokens], ids=["fallback", "spacy"])
def test_trigger_matching_finds_a_lemmatised_trigger(semeval, lemmatize):
    found, inside, far = TriggerMatcher(semeval, lemmatize)([
        make_pair("Heavy rain was leading to floods in the valley.", "rain", "floods"),
        make_pair("We saw the causing agent and a dog.", "the causing agent", "a dog"),
        make_pair("It caused nothing, and much later we saw a cat near a dog.", "cat", "dog")])
    assert (CAUSE, "lead to") in found
    assert inside == [] and far == []  # triggers count between and just around the mentions, not inside them


def test_hnsw_index_finds_the_same_neighbours_on_a_small_set(semeval, write_jsonl, tmp_path):
    path = train_file(write_jsonl)
    query = [make_pair("The fire caused a fever.", "fire", "fever")]
    flat = retriever(semeval, path, tmp_path / "cache").demonstrations(query, [[]], k=3)
    hnsw = retriever(semeval, path, tmp_path / "cache", index="hnsw").demonstrations(query, [[]], k=3)
    assert [round(d.similarity, 5) for d in flat[0]] == [round(d.similarity, 5) for d in hnsw[0]]
    with pytest.raises(RetrievalError, match="unknown index type"):
        retriever(semeval, path, tmp_path / "cache", index="ivf")


def test_eval_retrieval_prints_recall_json(write_jsonl, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(embed, "SentenceEmbedder", lambda *args, **kwargs: FakeEmbedder())
    monkeypatch.setattr(retrieval, "_spacy", lambda: None)
    train = train_file(write_jsonl)
    data = write_jsonl([pair_record("d1", "The storm caused damage.", "storm", "damage", CAUSE, split="dev"),
                        pair_record("d2", "A dog saw a cat.", "dog", "cat", "no_relation", split="dev")], "dev.jsonl")
    pred = write_jsonl([{"id": "d1", "relation": CAUSE, "distribution": {CAUSE: 0.8}},
                        {"id": "d2", "relation": "no_relation"}], "pred.jsonl")
    assert main(["eval-retrieval", "--data", str(data), "--train", str(train), "--k", "3", "--json",
                 "--guide-pred", str(pred), "--cache-dir", str(tmp_path / "cache")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"candidate_recall", "mean_candidates", "reason_recall", "demo_label_recall"} <= set(result)
    assert set(result["reason_recall"]) == {"definition", "trigger", "demo", "guide"}
    assert result["candidate_recall"] == 1.0 and result["n"] == 2 and result["mean_candidates"] <= 3


@pytest.mark.parametrize("command", [["eval-retrieval"], ["show-prompt", "--id", "d1"]])
def test_commands_that_retrieve_search_with_the_configured_index(command, write_jsonl, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setattr(embed, "SentenceEmbedder", lambda *args, **kwargs: FakeEmbedder())
    monkeypatch.setattr(retrieval, "_spacy", lambda: None)
    data = write_jsonl([pair_record("d1", "The storm caused damage.", "storm", "damage", CAUSE, split="dev")])
    cache = tmp_path / "cache"
    assert main([*command, "--data", str(data), "--train", str(train_file(write_jsonl)), "--index", "hnsw",
                 "--cache-dir", str(cache)]) == 0
    folders = sorted(p.name for p in (cache / "indexes").iterdir())
    assert [name.split("-")[0] for name in folders] == ["definitions", "demonstrations"]
    assert all("-hnsw-" in name for name in folders)


@pytest.mark.model
def test_minilm_embeds_offline_and_retrieves_the_gold_label(semeval, write_jsonl, tmp_path):
    embedder = embed.SentenceEmbedder(threads=1, cache_dir=tmp_path / "cache")
    vectors = embedder.encode([text for _, text, *_ in TRAIN])
    assert vectors.shape == (len(TRAIN), 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert embedder.fingerprint == embed.SentenceEmbedder(cache_dir=tmp_path / "cache").fingerprint
    r = Retriever(semeval, embedder, train=str(train_file(write_jsonl)), cache_dir=tmp_path / "cache")
    queries = [make_pair("The explosion caused a blackout.", "explosion", "blackout", relation=CAUSE),
               make_pair("The message is about the election.", "message", "election", id="q2", relation=TOPIC)]
    for query, candidates in zip(queries, r.candidates(queries, k=5)):
        assert query.relation in [c.label for c in candidates]


def test_the_llm_prompt_defaults_to_the_dev_chosen_cut():
    from collab.config import Config

    assert (Config().llm_candidates, Config().llm_candidate_mass) == (retrieval.CANDIDATES, retrieval.CANDIDATE_MASS)
