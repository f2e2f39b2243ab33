"""benchmarks/ann_index.py: the synthetic vectors follow the real set they are fitted to, and the figures are
counted against exact search."""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("ann_index",
                                               Path(__file__).resolve().parent.parent / "benchmarks" / "ann_index.py")
ann = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ann)


def _two_clusters(rng, n=400, dim=16):
    """Unit vectors around two directions, three quarters of them around the first."""
    centres = np.eye(dim, dtype=np.float32)[:2] * 4
    which = (rng.random(n) < 0.25).astype(int)
    return ann.normalize(centres[which] + rng.standard_normal((n, dim)).astype(np.float32) * 0.3)


def test_the_fitted_mixture_draws_each_cluster_as_often_as_the_real_set_holds_it():
    rng = np.random.default_rng(0)
    real = _two_clusters(rng)
    drawn = ann.sampler(real, real.shape[1], clusters=2, seed=0)(2000, rng)
    assert drawn.shape == (2000, 16) and np.allclose(np.linalg.norm(drawn, axis=1), 1, atol=1e-5)
    nearer_first = float(np.mean(drawn[:, 0] > drawn[:, 1]))
    assert 0.70 < nearer_first < 0.80
    one_gaussian = ann.sampler(real, real.shape[1], clusters=1, seed=0)(2000, rng)
    # no clusters: the draws spread between the two directions instead of sitting near either
    assert np.median(np.abs(one_gaussian[:, 0] - one_gaussian[:, 1])) < np.median(np.abs(drawn[:, 0] - drawn[:, 1]))


def test_exact_search_scores_full_recall_and_an_index_that_misses_neighbours_does_not():
    import faiss

    rng = np.random.default_rng(1)
    draw = ann.sampler(None, 16, clusters=1, seed=0)
    vectors, queries = draw(800, rng), draw(20, rng)
    truth = {k: ann.exact_top(vectors, queries, k) for k in ann.DEPTHS}
    (row,) = ann.measure("flat", ann._new_index(16, "flat"), vectors, queries, truth, [("", 0, lambda _: None)])
    assert all(row[f"recall@{k}"] == 1.0 and row[f"similarity_kept@{k}"] == 1.0 for k in ann.DEPTHS)
    quantizer = faiss.IndexFlatIP(16)
    ivf = faiss.IndexIVFFlat(quantizer, 16, 4, faiss.METRIC_INNER_PRODUCT)  # one list of 4 probed: misses many
    (row,) = ann.measure("ivf", ivf, vectors, queries, truth, [("nprobe", 1, lambda v: setattr(ivf, "nprobe", v))])
    assert row["nprobe"] == 1 and row["recall@28"] < 0.8 and row["similarity_kept@28"] < 1.0
