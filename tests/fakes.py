"""Stand-ins shared by the tests: an embedder with no model and a guide that answers from a table."""
import hashlib
import re

import numpy as np

from collab.data import Prediction


class FakeEmbedder:
    """A hashed bag of words: texts sharing words are near. Counts its calls so tests can see rebuilds."""

    name = "fake"

    def __init__(self, fingerprint="fake-1", dim=64):
        self.fingerprint, self.dim, self.calls = fingerprint, dim, 0

    def encode(self, texts):
        self.calls += 1
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                vectors[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1
        return vectors


class TableScorer:
    """A guide whose distribution per pair id comes from a table (default: `default`); records what it saw."""

    def __init__(self, table=None, default=None):
        self.table = table or {}
        self.default = default or {"no_relation": 0.6, "Cause-Effect(e1,e2)": 0.4}
        self.seen = []

    def predict(self, pairs, batch_size=8):
        out = []
        for pair in pairs:
            self.seen.append(pair.id)
            dist = dict(sorted(self.table.get(pair.id, self.default).items(), key=lambda kv: -kv[1]))
            (top, p), *rest = dist.items()
            margin = p - (rest[0][1] if rest else 0.0)
            out.append(Prediction(id=pair.id, relation=top, confidence=p, margin=margin, distribution=dist,
                                  slm={"relation": top, "confidence": p}))
        return out

    def iter_predict(self, pairs, batch_size=8):
        yield from self.predict(list(pairs), batch_size)
