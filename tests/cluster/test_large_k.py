"""Fast tests of the experimental neighbour-graph large-k prototype."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from clusterlens.cluster._large_k import (
    assign_candidates,
    centroid_graph,
    exact_assign,
    large_k_kmeans,
    two_level_assign,
)


def _sse(X, C):
    s = C.mean(0)
    Xs = (X - s).astype(np.float32)
    _lab, best = exact_assign(Xs, C - s)
    return float(
        np.maximum(np.einsum("ij,ij->i", Xs, Xs, dtype=np.float64) - best, 0).sum()
    )


def _lloyd(X, C0, n_iter):
    C = C0.astype(np.float64).copy()
    for _ in range(n_iter):
        s = C.mean(0)
        lab, _ = exact_assign((X - s).astype(np.float32), C - s)
        cnt = np.bincount(lab, minlength=len(C))
        sums = np.zeros_like(C)
        np.add.at(sums, lab, X)
        ok = cnt > 0
        C[ok] = sums[ok] / cnt[ok, None]
    return C


@pytest.mark.parametrize("first", ["exact", "two_level"])
def test_recovers_planted_blobs(first):
    rng = np.random.default_rng(0)
    k, d, per = 64, 16, 40
    centers = rng.standard_normal((k, d)) * 20
    truth = np.repeat(np.arange(k), per)
    X = (centers[truth] + rng.standard_normal((k * per, d))).astype(np.float32)
    # Init: one point of every blob (random init would leave blobs split/merged
    # for any Lloyd, exact or not); shuffled order.
    C0 = X[rng.permutation(k) * per + rng.integers(per, size=k)]
    r = large_k_kmeans(X, C0, n_iter=5, m=8, first=first)
    lab = r["labels"]
    assert lab.min() >= 0 and lab.max() < k
    # Each found cluster is exactly one planted blob.
    pairs = set(zip(lab.tolist(), truth.tolist(), strict=False))
    assert len(pairs) == k
    assert np.allclose(
        np.sort(r["centers"], axis=0), np.sort(centers, axis=0), atol=0.6
    )


@pytest.mark.parametrize("first", ["exact", "two_level"])
def test_sse_close_to_exact_lloyd_on_random_data(first):
    rng = np.random.default_rng(1)
    n, d, k = 8000, 16, 256
    X = rng.standard_normal((n, d)).astype(np.float32)
    C0 = X[rng.choice(n, k, replace=False)]
    r = large_k_kmeans(X, C0, n_iter=6, m=32, first=first)
    ref = _lloyd(X, C0, 6)
    assert _sse(X, r["centers"]) <= 1.03 * _sse(X, ref)
    assert r["labels"].min() >= 0 and r["labels"].max() < k
    # SSE of the prototype's own assignment never rises between iterations
    assert all(h["moved"] >= 0 for h in r["history"])


def test_candidates_include_self_and_m_others():
    rng = np.random.default_rng(2)
    C = rng.standard_normal((300, 8))
    C[5] = C[6]  # a duplicate: self must still come first
    cand = centroid_graph(C, 10)
    assert cand.shape == (300, 11)
    assert (cand[:, 0] == np.arange(300)).all()
    assert not (cand[:, 1:] == np.arange(300)[:, None]).any()
    assert cand.min() >= 0 and cand.max() < 300


def test_candidate_assignment_never_worse_and_exact_with_all_candidates():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3000, 8)).astype(np.float32)
    C = rng.standard_normal((50, 8))
    old = rng.integers(50, size=3000)
    full = np.array([np.r_[c, np.delete(np.arange(50), c)] for c in range(50)])
    lab, _ = assign_candidates(X, C, old, full)
    ex, _ = exact_assign(X, C)
    assert np.mean(lab == ex) > 0.999
    lab8, _ = assign_candidates(X, C, old, centroid_graph(C, 8))
    d_old = ((X - C[old]) ** 2).sum(1)
    d_new = ((X - C[lab8]) ** 2).sum(1)
    assert (d_new <= d_old + 1e-4).all()


def test_two_level_mostly_exact():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((5000, 16)).astype(np.float32)
    C = X[rng.choice(5000, 400, replace=False)].astype(np.float64)
    lab, _ = two_level_assign(X, C, n_probe=6)
    ex, _ = exact_assign(X, C)
    assert lab.min() >= 0 and lab.max() < 400
    assert np.mean(lab == ex) > 0.7


def test_assign_topr_keeps_best_first_and_is_exact_with_all_candidates():
    from clusterlens.cluster._large_k import assign_topr, exact_topr

    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 8)).astype(np.float32)
    C = rng.standard_normal((50, 8))
    old = rng.integers(50, size=3000)
    top0 = np.repeat(old[:, None], 3, axis=1)
    full = np.repeat(np.arange(50)[None, :], 50, axis=0)
    lab, top = assign_topr(X, C, old, top0, full)
    ex = exact_topr(X, C, 3)
    assert top.shape == (3000, 3)
    assert (top[:, 0] == lab).all()
    assert np.mean(lab == ex[:, 0]) > 0.999
    assert np.mean(top[:, 1] == ex[:, 1]) > 0.99
    # Own label only (top = old label): nobody moves; with the exact top-r
    # as candidates every point reaches its exact nearest centre.
    lab_self, _ = assign_topr(X, C, old, top0)
    assert (lab_self == old).all()
    lab_ex, _ = assign_topr(X, C, old, ex)
    assert np.mean(lab_ex == ex[:, 0]) > 0.999


def test_topr_default_sse_close_to_exact_lloyd():
    rng = np.random.default_rng(6)
    n, d, k = 8000, 16, 256
    X = rng.standard_normal((n, d)).astype(np.float32)
    C0 = X[rng.choice(n, k, replace=False)]
    r = large_k_kmeans(X, C0, n_iter=6)
    ref = _sse(X, _lloyd(X, C0, 6))
    # Small, structureless data is the hard case (measured +1.8 %); at the
    # benchmark's size the default is within 1 %.
    assert _sse(X, r["centers"]) <= 1.025 * ref
    r2 = large_k_kmeans(X, C0, n_iter=6, top_r=4, exact_iters=2)
    assert _sse(X, r2["centers"]) <= 1.01 * ref
    assert r["top"].shape == (n, 3)
    assert (r["top"][:, 0] == r["labels"]).all()
