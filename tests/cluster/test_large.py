"""The large-k mode: candidate Lloyd and the two-level index over centres."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from clusterlens.cluster import KMeans, kmeans
from clusterlens.cluster._large import CoarseIndex
from clusterlens.exceptions import DataValidationError, InvalidParameterError


def _mixture(seed, n=12_000, d=32, n_comp=1500, scale=3.0, dtype=np.float32):
    """An isotropic Gaussian mixture: the hard case for candidate search."""
    rng = np.random.default_rng(seed)
    M = rng.normal(0, scale, (n_comp, d))
    X = M[rng.integers(n_comp, size=n)] + rng.normal(0, 1, (n, d))
    return X.astype(dtype)


def _exact_nearest(X, C):
    X = np.asarray(X, np.float64)
    C = np.asarray(C, np.float64)
    d2 = (X**2).sum(1)[:, None] - 2 * X @ C.T + (C**2).sum(1)[None, :]
    return d2.argmin(1), d2.min(1)


def test_planted_clusters_are_recovered(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    k, d = 400, 16
    centers = rng.uniform(-100, 100, (k, d))
    truth = np.repeat(np.arange(k), 25)
    X = (centers[truth] + rng.normal(0, 1, (truth.size, d))).astype(np.float32)
    init = X[np.arange(k) * 25 + rng.integers(25, size=k)]  # one point per cluster
    res = kmeans(X, k, init=init, max_iter=20, mode="large")
    assert res.mode == "large" and res.engine == "large-k"
    assert adjusted_rand_score(truth, res.labels) == 1.0
    np.testing.assert_allclose(
        res.centers, np.array([X[truth == c].mean(0) for c in range(k)]), atol=1e-3
    )


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_sse_within_tolerance_of_exact_lloyd_from_the_same_init(
    global_random_seed, dtype
):
    X = _mixture(global_random_seed)
    if dtype == np.uint8:
        X = np.clip(X * 8 + 128, 0, 255).astype(np.uint8)
    k = 600
    init = X[np.random.default_rng(global_random_seed).choice(len(X), k, False)]
    init = init.astype(np.float64)
    exact = kmeans(X, k, init=init, max_iter=12, tol=0, mode="exact")
    large = kmeans(X, k, init=init, max_iter=12, tol=0, mode="large")
    # stated tolerance (docstring of kmeans): within about 1 % at the defaults
    assert large.inertia <= 1.015 * exact.inertia, large.inertia / exact.inertia
    # inertia and labels match the returned centres
    lab, d2 = _exact_nearest(X, large.centers)
    assert np.mean(lab == large.labels) > 0.97
    assert large.inertia == pytest.approx(float(large.distances.sum()), rel=1e-6)
    assert large.inertia >= d2.sum() * (1 - 1e-6)  # exact search can only be lower


def test_loss_never_rises(global_random_seed):
    X = _mixture(global_random_seed, n=6000)
    res = kmeans(
        X,
        300,
        init="random",
        random_state=global_random_seed,
        max_iter=15,
        tol=0,
        mode="large",
    )
    inertia = [h["inertia"] for h in res.history]
    repaired = [h["empty_repaired"] for h in res.history]
    for i in range(1, len(inertia)):
        if repaired[i - 1] == 0:
            assert inertia[i] <= inertia[i - 1] * (1 + 1e-6), (i, inertia)


def test_same_seed_same_result_and_uint8_kept():
    X = np.clip(_mixture(1, n=5000) * 8 + 128, 0, 255).astype(np.uint8)
    a = kmeans(X, 256, random_state=3, max_iter=6, mode="large")
    b = kmeans(X, 256, random_state=3, max_iter=6, mode="large")
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centers, b.centers)
    assert a.centers.dtype == np.float32


def test_resume_equals_uninterrupted(tmp_path, global_random_seed):
    X = _mixture(global_random_seed, n=5000)
    kw = dict(random_state=global_random_seed, tol=0, mode="large", refresh_every=3)
    full = kmeans(X, 200, max_iter=10, **kw)
    ckpt = tmp_path / "ck"
    kmeans(X, 200, max_iter=4, checkpoint_dir=ckpt, **kw)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert meta["iteration"] == 4 and meta["kind"] == "large"
    done = kmeans(X, 200, max_iter=10, checkpoint_dir=ckpt, resume=True, **kw)
    np.testing.assert_array_equal(done.labels, full.labels)
    np.testing.assert_array_equal(done.centers, full.centers)
    assert [h["inertia"] for h in done.history] == [h["inertia"] for h in full.history]


def test_checkpoint_of_other_mode_or_corrupt_is_refused(tmp_path):
    X = _mixture(0, n=3000)
    ckpt = tmp_path / "ck"
    kmeans(X, 100, random_state=0, max_iter=2, mode="large", checkpoint_dir=ckpt)
    with pytest.raises(DataValidationError, match="fingerprint"):
        kmeans(
            X,
            100,
            random_state=0,
            max_iter=4,
            mode="large",
            n_candidates=5,
            checkpoint_dir=ckpt,
            resume=True,
        )
    with pytest.raises(DataValidationError, match="fingerprint"):
        kmeans(
            X[:-1],
            100,
            random_state=0,
            max_iter=4,
            mode="large",
            checkpoint_dir=ckpt,
            resume=True,
        )
    npz = next(ckpt.glob("checkpoint-*.npz"))
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(DataValidationError, match="corrupt"):
        kmeans(
            X,
            100,
            random_state=0,
            max_iter=4,
            mode="large",
            checkpoint_dir=ckpt,
            resume=True,
        )


def test_mode_auto_threshold_and_bad_combinations():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9000, 2)).astype(np.float32)
    assert kmeans(X, 8, random_state=0, max_iter=3).mode == "exact"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = KMeans(4096, random_state=0, max_iter=2).fit(X)
    assert km.mode_ == "large" and km.engine_ == "large-k"
    assert km.predict(X[:10]).shape == (10,)
    with pytest.raises(InvalidParameterError, match="sample_weight"):
        kmeans(X, 8, mode="large", sample_weight=np.ones(len(X)))
    with pytest.raises(InvalidParameterError, match="engine"):
        kmeans(X, 8, mode="large", engine="faiss")
    with pytest.raises(InvalidParameterError, match="mode"):
        kmeans(X, 8, mode="fast")


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_coarse_index_exact_when_probing_everything(dtype):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (3000, 24)).astype(dtype)
    C = rng.integers(0, 255, (500, 24)).astype(np.float64)
    ref, ref_d2 = _exact_nearest(X, C)
    shift = C.mean(0)
    for g, p in [(1, 1), (20, 20)]:
        index = CoarseIndex(C - shift, shift=shift, n_groups=g, n_probe=p)
        top, d2 = index.search(X, 3)
        assert np.mean(top[:, 0] == ref) > 0.999
        np.testing.assert_allclose(d2, ref_d2, rtol=1e-4, atol=1e-2)
        # the r best, best first
        Xf, Cf = X.astype(np.float64), C
        dd = ((Xf[:, None, :] - Cf[top]) ** 2).sum(-1)
        assert (np.diff(dd, axis=1) >= -1e-3 * dd[:, 1:]).all()
        assert (top[:, 0] != top[:, 1]).all()


def test_coarse_index_agreement_on_real_sift(shared_data):
    with np.load(shared_data / "sift" / "coco128_sift_opencv.npz") as z:
        X = z["descriptors"][:20_000]
    rng = np.random.default_rng(0)
    C = X[rng.choice(len(X), 2048, replace=False)].astype(np.float64)
    ref, _ = _exact_nearest(X, C)
    shift = C.mean(0)
    index = CoarseIndex(C - shift, shift=shift, n_probe=24)  # 24 of 91 groups
    top, _ = index.search(X, 1)
    assert np.mean(top[:, 0] == ref) >= 0.99


def _numpy_twin(monkeypatch):
    """Make the large-k code take its numpy path (as without numba)."""
    import clusterlens.cluster._large as large

    monkeypatch.setattr(large, "_kernels", lambda: None)


def _state_after(X, k, iters, seed):
    """The sorted rows and tables a fit holds after ``iters`` iterations."""
    from clusterlens.cluster._large import Rows as _Rows
    from clusterlens.cluster._large import storage_dtype as _storage_dtype
    from clusterlens.cluster._large_driver import large_k_lloyd

    init = X[np.random.default_rng(seed).choice(len(X), k, False)].astype(np.float64)
    st = {}
    large_k_lloyd(X, init, max_iter=iters, tol=0, on_iteration=lambda s: st.update(s=s))
    s = st["s"]
    rows = _Rows(s.shift, _storage_dtype(X.dtype))
    return s, rows, rows.to_store(X[s.perm])


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("given_codes", [False, True])
def test_candidate_kernel_matches_numpy_twin(
    monkeypatch, global_random_seed, dtype, given_codes
):
    pytest.importorskip("numba")
    from clusterlens.cluster._large import candidate_codes, candidate_pass

    X = _mixture(global_random_seed, n=6000, n_comp=800)
    if dtype == np.uint8:
        X = np.clip(X * 8 + 128, 0, 255).astype(np.uint8)
    k = 300
    s, rows, Xs = _state_after(X, k, 2, global_random_seed)
    codes = candidate_codes(s.labels, s.top, k) if given_codes else None
    out = {}
    for path in ("numba", "numpy"):
        if path == "numpy":
            _numpy_twin(monkeypatch)
        acc = [(np.zeros((k, X.shape[1])), np.zeros(k, np.int64)) for _ in range(2)]
        new, top, d2 = candidate_pass(
            Xs, rows, s.labels, s.top, s.centers, acc, codes=codes
        )
        out[path] = (new, top, d2, acc[0][0] + acc[1][0], acc[0][1] + acc[1][1])
    (n1, t1, d1, S1, c1), (n0, t0, d0, S0, c0) = out["numba"], out["numpy"]
    np.testing.assert_array_equal(n1, n0)
    np.testing.assert_array_equal(t1, t0)
    np.testing.assert_array_equal(c1, c0)
    np.testing.assert_allclose(S1, S0, rtol=1e-12, atol=1e-9)
    # squared distances are 'x.x - best score' in float32 on both paths
    np.testing.assert_allclose(d1, d0, rtol=1e-4, atol=1e-3 * float(d0.mean()))
    # and they are the distances to the new labels' centres
    C = s.centers + s.shift
    ref = ((rows.f32(Xs).astype(np.float64) + s.shift - C[n1]) ** 2).sum(1)
    np.testing.assert_allclose(d1, ref, rtol=1e-3, atol=1e-3 * float(ref.mean()))


@pytest.mark.parametrize("with_extra", [False, True])
def test_index_search_kernel_matches_numpy_twin(
    monkeypatch, global_random_seed, with_extra
):
    pytest.importorskip("numba")
    rng = np.random.default_rng(global_random_seed)
    k, d, m = 900, 24, 5000
    C = rng.normal(0, 3, (k, d))
    F = (C[rng.integers(0, k, m)] + rng.standard_normal((m, d))).astype(np.float32)
    extra = rng.integers(0, k, (m, 3)).astype(np.int32) if with_extra else None
    index = CoarseIndex(C, n_probe=3, seed=global_random_seed)
    ids1, d1 = index.search_f32(F, 3, extra=extra)
    _numpy_twin(monkeypatch)
    ids0, d0 = index.search_f32(F, 3, extra=extra)
    np.testing.assert_array_equal(ids1, ids0)
    np.testing.assert_allclose(d1, d0, rtol=1e-4, atol=1e-3)
    if with_extra:  # a kept centre competes: the best is never worse than it
        kept = ((F[:, None, :] - C[extra].astype(np.float32)) ** 2).sum(2).min(1)
        assert np.all(d1 <= kept * (1 + 1e-4) + 1e-3)


def test_take_rows_is_a_gather(monkeypatch):
    from clusterlens.cluster._large import _take_rows

    rng = np.random.default_rng(0)
    src = rng.integers(0, 255, (1001, 7), dtype=np.uint8)
    idx = rng.permutation(1001)
    spare = np.empty_like(src)
    out = _take_rows(src, idx, spare)
    assert out is spare
    np.testing.assert_array_equal(out, src[idx])
    _numpy_twin(monkeypatch)
    np.testing.assert_array_equal(_take_rows(src, idx, None), src[idx])


def test_whole_fit_same_with_and_without_numba(monkeypatch, global_random_seed):
    pytest.importorskip("numba")
    X = np.clip(_mixture(global_random_seed, n=5000, n_comp=600) * 8 + 128, 0, 255)
    X = X.astype(np.uint8)
    kw = dict(mode="large", max_iter=6, tol=0, random_state=global_random_seed)
    with_numba = kmeans(X, 250, refresh_every=3, **kw)
    _numpy_twin(monkeypatch)
    without = kmeans(X, 250, refresh_every=3, **kw)
    np.testing.assert_array_equal(with_numba.labels, without.labels)
    assert [h["moved"] for h in with_numba.history] == [
        h["moved"] for h in without.history
    ]
    np.testing.assert_allclose(
        with_numba.centers, without.centers, rtol=1e-9, atol=1e-9
    )
    assert with_numba.inertia == pytest.approx(without.inertia, rel=1e-5)
