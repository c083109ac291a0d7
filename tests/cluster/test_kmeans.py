"""The exact k-means engine: correctness against scikit-learn and properties."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from clusterlens import config_context
from clusterlens.cluster import KMeans, kmeans, kmeans_plusplus
from clusterlens.exceptions import (
    ConvergenceWarning,
    DataValidationError,
    InvalidParameterError,
    NotFittedError,
)


def _blobs(seed, n=3000, d=12, k=8, dtype=np.float64, std=1.0, box=10.0):
    X, y = make_blobs(
        n,
        n_features=d,
        centers=k,
        cluster_std=std,
        center_box=(-box, box),
        random_state=seed,
    )
    return X.astype(dtype), y


def _init(X, k, seed):
    rng = np.random.default_rng(seed)
    return X[rng.choice(len(X), k, replace=False)].astype(np.float64)


def test_kmeans_results_by_hand():
    """scikit-learn's hand-computed toy case: 4 weighted points, 2 centres."""
    X = np.array([[0, 0], [0.5, 0], [0.5, 1], [1, 1]], dtype=np.float64)
    w = [3, 1, 1, 3]
    init = np.array([[0, 0], [1, 1]], dtype=np.float64)
    km = KMeans(2, init=init, n_init=1).fit(X, sample_weight=w)
    np.testing.assert_array_equal(km.labels_, [0, 0, 1, 1])
    np.testing.assert_allclose(km.inertia_, 0.375)
    np.testing.assert_allclose(km.cluster_centers_, [[0.125, 0], [0.875, 1]])
    assert km.n_iter_ == 2
    assert km.labels_.dtype == np.int64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_matches_sklearn_lloyd(global_random_seed, dtype):
    X, _ = _blobs(global_random_seed, dtype=dtype, std=3.0)
    C0 = _init(X, 8, global_random_seed)
    ours = KMeans(8, init=C0, max_iter=50, tol=1e-6).fit(X)
    ref = SKKMeans(
        8, init=C0.astype(dtype), n_init=1, max_iter=50, tol=1e-6, algorithm="lloyd"
    ).fit(X)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=rtol)
    np.testing.assert_allclose(
        ours.cluster_centers_,
        ref.cluster_centers_,
        rtol=rtol,
        atol=1e-4 if dtype == np.float32 else 1e-9,
    )
    assert ours.n_iter_ == ref.n_iter_
    assert ours.cluster_centers_.dtype == dtype


def test_inertia_never_rises(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    X = rng.standard_normal((4000, 16)).astype(np.float32)
    km = KMeans(
        40, init="random", n_init=1, max_iter=60, tol=0, random_state=global_random_seed
    ).fit(X)
    inertia = np.array([h["inertia"] for h in km.history_])
    assert len(inertia) >= 3
    assert np.all(np.diff(inertia) <= 1e-6 * inertia[:-1]), inertia
    assert km.inertia_ <= inertia[-1] * (1 + 1e-6)
    assert {"iteration", "inertia", "moved", "seconds"} <= set(km.history_[0])


def test_planted_blobs_recovered(global_random_seed):
    X, y = _blobs(global_random_seed, n=2000, k=6, std=0.5)
    km = KMeans(6, n_init=3, random_state=global_random_seed).fit(X)
    assert adjusted_rand_score(y, km.labels_) == pytest.approx(1.0)


def test_uint8_gives_result_of_float_copy(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    centers = rng.integers(0, 200, size=(10, 32))
    X8 = np.clip(
        centers[rng.integers(10, size=3000)] + rng.integers(-20, 20, (3000, 32)), 0, 255
    ).astype(np.uint8)
    C0 = _init(X8, 10, global_random_seed)
    a = KMeans(10, init=C0).fit(X8)
    b = KMeans(10, init=C0).fit(X8.astype(np.float32))
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-6)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-6)
    assert a.cluster_centers_.dtype == np.float32


def test_readonly_memmap_and_npy_path(tmp_path, global_random_seed):
    X, _ = _blobs(global_random_seed, dtype=np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    assert not mm.flags.writeable
    C0 = _init(X, 8, global_random_seed)
    ref = KMeans(8, init=C0).fit(X)
    for data in (mm, path, str(path)):
        km = KMeans(8, init=C0).fit(data)
        np.testing.assert_array_equal(km.labels_, ref.labels_)
        np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-6)
    np.testing.assert_array_equal(ref.predict(path), ref.labels_)


@pytest.mark.parametrize("working_memory", [0.01, 0.05, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_memory_budget_reproduces_unchunked(
    global_random_seed, working_memory, dtype
):
    X, _ = _blobs(global_random_seed, n=2777, dtype=dtype, box=50.0)
    C0 = _init(X, 8, global_random_seed)
    ref = KMeans(8, init=C0).fit(X)
    with config_context(working_memory=working_memory):
        km = KMeans(8, init=C0).fit(X)
        pred = km.predict(X)
    if dtype == np.float64:
        np.testing.assert_array_equal(km.labels_, ref.labels_)
        np.testing.assert_array_equal(pred, ref.labels_)
    else:
        # BLAS may round a tiny tile's dot products differently by one float32
        # ulp, which can flip a point lying on a tie between two centres.
        assert np.mean(km.labels_ == ref.labels_) >= 0.999
        assert np.mean(pred == km.labels_) >= 0.999
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=rtol)
    np.testing.assert_allclose(
        km.cluster_centers_,
        ref.cluster_centers_,
        atol=1e-3 if dtype == np.float32 else 1e-8,
    )


def test_thread_count_does_not_change_result(global_random_seed):
    # Well-separated blobs: no point sits near a tie, where float32 rounding of
    # differently ordered sums may legitimately flip a label.
    X, _ = _blobs(global_random_seed, n=20000, dtype=np.float32, box=50.0)
    C0 = _init(X, 8, global_random_seed)
    with config_context(n_threads=1):
        a = KMeans(8, init=C0).fit(X)
    with config_context(n_threads=2, working_memory=1):
        b = KMeans(8, init=C0).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-5)


def test_same_seed_is_bit_identical(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    X = rng.standard_normal((5000, 8)).astype(np.float32)
    runs = [
        KMeans(20, n_init=2, random_state=global_random_seed).fit(X) for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].cluster_centers_, runs[1].cluster_centers_)
    np.testing.assert_array_equal(runs[0].labels_, runs[1].labels_)
    assert runs[0].inertia_ == runs[1].inertia_
    other = KMeans(20, n_init=2, random_state=global_random_seed + 1).fit(X)
    assert not np.array_equal(other.cluster_centers_, runs[0].cluster_centers_)


def test_faiss_engine_matches_numpy(global_random_seed):
    X, _ = _blobs(global_random_seed, dtype=np.float32, std=2.0, box=50.0)
    C0 = _init(X, 8, global_random_seed)
    a = KMeans(8, init=C0, engine="numpy").fit(X)
    b = KMeans(8, init=C0, engine="faiss").fit(X)
    assert b.engine_ == "faiss" and a.engine_ == "numpy"
    # faiss computes ||x||^2 + ||c||^2 - 2 x.c in float32 without centring, so a
    # point on a near-tie may go the other way: agreement, not identity.
    assert adjusted_rand_score(a.labels_, b.labels_) >= 0.995
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-4)


def test_auto_engine_is_recorded():
    X, _ = _blobs(0, n=300)
    km = KMeans(3, random_state=0).fit(X)
    assert km.engine_ == "numpy"


def test_empty_cluster_is_repaired_deterministically():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (200, 2)), rng.normal(10, 1, (200, 2))])
    init = np.array([[0.0, 0.0], [10.0, 10.0], [1e6, 1e6]])  # the third gets no point
    a = KMeans(3, init=init).fit(X)
    b = KMeans(3, init=init).fit(X)
    assert a.history_[0]["empty_repaired"] == 1
    assert np.bincount(a.labels_, minlength=3).min() > 0
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert np.all(np.abs(a.cluster_centers_) < 100)


def test_transform_and_score_match_sklearn(global_random_seed):
    X, _ = _blobs(global_random_seed, n=500)
    C0 = _init(X, 8, global_random_seed)
    ours = KMeans(8, init=C0).fit(X)
    ref = SKKMeans(8, init=C0, n_init=1, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(
        ours.transform(X), ref.transform(X), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(ours.score(X), ref.score(X), rtol=1e-8)
    np.testing.assert_array_equal(ours.fit_predict(X), ref.labels_)


def test_n_samples_equal_n_clusters_and_constant_feature():
    X = np.array([[0, 1, 5], [1, 1, 5], [2, 1, 5], [9, 1, 5]], dtype=np.float64)
    km = KMeans(4, random_state=0).fit(X)
    assert km.inertia_ == pytest.approx(0.0)
    assert sorted(km.labels_.tolist()) == [0, 1, 2, 3]


def test_duplicate_points_warn():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    with pytest.warns(ConvergenceWarning, match="distinct clusters \\(2\\)"):
        KMeans(3, random_state=0).fit(X)


def test_save_load_round_trip(tmp_path, global_random_seed):
    X, _ = _blobs(global_random_seed, n=500, dtype=np.float32)
    km = KMeans(5, random_state=global_random_seed).fit(X)
    km.save(tmp_path / "model")
    assert (tmp_path / "model.npz").is_file() and (tmp_path / "model.json").is_file()
    back = KMeans.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(back.cluster_centers_, km.cluster_centers_)
    np.testing.assert_array_equal(back.labels_, km.labels_)
    np.testing.assert_array_equal(back.predict(X), km.predict(X))
    assert back.inertia_ == km.inertia_ and back.n_iter_ == km.n_iter_
    assert back.history_ == json.loads(json.dumps(km.history_))
    assert back.get_params() == km.get_params()
    with np.load(tmp_path / "model.npz", allow_pickle=False) as z:  # no pickle inside
        assert set(z.files) == {"cluster_centers_", "labels_"}


def test_load_tolerates_newer_fields_and_rejects_newer_format(tmp_path):
    X, _ = _blobs(0, n=200)
    KMeans(3, init=X[:3], n_init=1).fit(X).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["attributes"]["something_new_"] = [1, 2]
    meta["params"]["future_param"] = 3
    (tmp_path / "m.json").write_text(json.dumps(meta))
    back = KMeans.load(tmp_path / "m")
    np.testing.assert_array_equal(back.init, X[:3])
    meta["format_version"] = 99
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match="newer clusterlens"):
        KMeans.load(tmp_path / "m")
    with pytest.raises(DataValidationError, match="not found"):
        KMeans.load(tmp_path / "nothing")


def test_kmeans_plusplus_picks_one_point_per_blob(global_random_seed):
    X, y = _blobs(global_random_seed, n=600, k=5, std=0.3)
    centers, idx = kmeans_plusplus(X, 5, random_state=global_random_seed)
    np.testing.assert_array_equal(centers, X[idx])
    assert len(set(y[idx].tolist())) == 5


def test_functional_twin_returns_frozen_result():
    X, _ = _blobs(0, n=300, k=3)
    res = kmeans(X, 3, random_state=0)
    with pytest.raises(AttributeError):
        res.inertia = 0  # type: ignore[misc]
    assert res.labels.shape == (300,) and res.centers.shape == (3, 12)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"n_clusters": 0},
            InvalidParameterError,
            "'n_clusters' parameter of kmeans must be an int in the range \\[1, inf\\)",
        ),
        (
            {"n_clusters": 500},
            DataValidationError,
            "n_samples=100 should be >= n_clusters=500",
        ),
        ({"n_clusters": 3, "max_iter": 0}, InvalidParameterError, "'max_iter'"),
        ({"n_clusters": 3, "tol": -1.0}, InvalidParameterError, "'tol'"),
        (
            {"n_clusters": 3, "init": "kmeans++"},
            InvalidParameterError,
            "Did you mean 'k-means\\+\\+'",
        ),
        (
            {"n_clusters": 3, "init": np.zeros((2, 4))},
            DataValidationError,
            "init has shape \\(2, 4\\)",
        ),
        (
            {"n_clusters": 3, "engine": "fiass"},
            InvalidParameterError,
            "Did you mean 'faiss'",
        ),
        (
            {"n_clusters": 3, "sample_weight": -np.ones(100)},
            DataValidationError,
            "non-negative",
        ),
        ({"n_clusters": 3, "n_init": 0}, InvalidParameterError, "'n_init'"),
    ],
)
def test_wrong_params(kwargs, exc, match):
    X = np.random.default_rng(0).standard_normal((100, 4))
    with pytest.raises(exc, match=match):
        kmeans(X, **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_rejected_naming_the_row(bad):
    X = np.random.default_rng(0).standard_normal((100, 4))
    X[37, 2] = bad
    with pytest.raises(DataValidationError, match="row 37"):
        KMeans(3).fit(X)


def test_shape_errors_and_not_fitted():
    with pytest.raises(ValueError, match="2D array"):
        KMeans(2).fit(np.zeros(10))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        KMeans(2).predict(np.zeros((3, 2)))
    km = KMeans(2, random_state=0).fit(
        np.random.default_rng(0).standard_normal((20, 3))
    )
    with pytest.raises(ValueError, match="3 features"):
        km.predict(np.zeros((2, 4)))


def test_explicit_init_with_n_init_warns():
    X = np.random.default_rng(0).standard_normal((50, 2))
    with pytest.warns(RuntimeWarning, match="performing only one init"):
        KMeans(2, init=X[:2], n_init=5).fit(X)


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(8, 60),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_properties(n, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    km = KMeans(k, random_state=seed, n_init=1, max_iter=300, tol=0).fit(X)
    assert km.labels_.min() >= 0 and km.labels_.max() < k
    if km.converged_:
        np.testing.assert_array_equal(km.predict(X), km.labels_)
    perm = rng.permutation(n)
    kp = KMeans(k, init=km.cluster_centers_, n_init=1).fit(X[perm])
    # Same centres on permuted rows: same partition (up to relabelling).
    assert adjusted_rand_score(km.labels_[perm], kp.labels_) == pytest.approx(1.0)
