"""Other distances and updates plug into the same driver through an Engine."""

from __future__ import annotations

import numpy as np
import pytest

from clusterlens.cluster import Engine, kmeans
from clusterlens.cluster._engines._base import ENGINES, get_engine
from clusterlens.exceptions import InvalidParameterError


class L1MedianEngine(Engine):
    """k-medians: L1 distance, coordinate-wise median update (test-only)."""

    name = "l1-median-test"
    parallel_chunks = False

    def prepare(self, centers, dtype, origin=None):
        return {"centers": centers, "rows": [], "labels": []}

    def pairwise(self, X_chunk, state):
        return np.abs(X_chunk[:, None, :] - state["centers"][None]).sum(axis=-1)

    def assign(self, X_chunk, state):
        d = self.pairwise(X_chunk, state)
        labels = d.argmin(axis=1)
        return labels, d[np.arange(len(labels)), labels]

    def accumulate(self, X_chunk, labels, sample_weight, state, sums, weights):
        state["rows"].append(np.asarray(X_chunk, dtype=np.float64))
        state["labels"].append(labels)
        weights += np.bincount(labels, minlength=weights.shape[0])

    def update(self, sums, weights, old_centers, state):
        X = np.vstack(state["rows"])
        labels = np.concatenate(state["labels"])
        new = old_centers.copy()
        for c in np.flatnonzero(weights > 0):  # a loop over clusters
            new[c] = np.median(X[labels == c], axis=0)
        return new


def test_custom_engine_runs_k_medians_through_the_driver(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = centers[rng.integers(3, size=600)] + rng.laplace(0, 1, (600, 2))
    res = kmeans(X, 3, init=X[:3].copy(), engine=L1MedianEngine(), tol=0)
    assert res.engine == "l1-median-test"
    inertia = [h["inertia"] for h in res.history]
    assert np.all(np.diff(inertia) <= 1e-9)
    # At convergence: every point is L1-nearest its centre, each centre a median.
    d = np.abs(X[:, None, :] - res.centers[None]).sum(-1)
    np.testing.assert_array_equal(res.labels, d.argmin(1))
    for c in range(3):
        np.testing.assert_allclose(
            res.centers[c], np.median(X[res.labels == c], axis=0)
        )
    np.testing.assert_allclose(res.inertia, d.min(1).sum())


def test_engine_registry_and_subclass_contract():
    assert ENGINES.available()[:2] == ["numpy", "faiss"]
    with pytest.raises(InvalidParameterError, match="Did you mean 'numpy'"):
        get_engine("nunpy")
    with pytest.raises(TypeError, match="must define a str `name`"):

        class Nameless(L1MedianEngine.__mro__[1]):  # Engine itself
            def prepare(self, centers, dtype, origin=None): ...
            def assign(self, X_chunk, state): ...
            def pairwise(self, X_chunk, state): ...
