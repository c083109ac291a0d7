"""Exact k-means on a 2-worker Dask LocalCluster against the local backend."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip(
    "distributed", reason="the Dask backend needs dask[distributed] (the [dist] extra)"
)

from clusterlens.cluster import kmeans
from clusterlens.distributed import dask_client, dask_kmeans
from clusterlens.exceptions import (
    BackendError,
    DataValidationError,
    MissingDependencyError,
)
from clusterlens.io import write_bvecs


@pytest.fixture(scope="module")
def client():
    with dask_client(n_workers=2, threads_per_worker=1) as c:
        yield c


def _blobs(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=30.0, size=(6, d))
    return (centres[rng.integers(0, 6, n)] + rng.normal(scale=8.0, size=(n, d))).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def npy_file(tmp_path_factory):
    X = _blobs(4000, 12, 0)
    path = tmp_path_factory.mktemp("dask") / "X.npy"
    np.save(path, X)
    return path, X


def _check_same(res, ref):
    np.testing.assert_array_equal(res.labels, ref.labels)
    assert res.inertia == pytest.approx(ref.inertia, rel=1e-9)
    np.testing.assert_allclose(res.centers, ref.centers, rtol=1e-6, atol=1e-4)
    assert res.n_iter == ref.n_iter
    assert res.converged == ref.converged


def test_memmap_equals_local_backend(client, npy_file):
    path, X = npy_file
    rng = np.random.default_rng(1)
    C0 = X[rng.choice(len(X), 7, replace=False)].astype(np.float64)
    ref = kmeans(X, 7, init=C0, mode="exact", tol=1e-5, max_iter=40)
    res = dask_kmeans(
        path, 7, init=C0, tol=1e-5, max_iter=40, client=client, shard_rows=900
    )
    assert ref.n_iter > 2  # a real fit, not a one-step convergence
    _check_same(res, ref)
    assert res.engine == "dask:numpy"
    np.testing.assert_allclose(res.distances, ref.distances, rtol=1e-5, atol=1e-3)


def test_kmeanspp_seed_and_max_iter_stop_equal_local(client, npy_file):
    path, X = npy_file
    kw = {"init": "k-means++", "random_state": 3, "tol": 0.0, "max_iter": 6}
    ref = kmeans(X, 12, n_init=1, mode="exact", **kw)
    res = dask_kmeans(path, 12, client=client, **kw)
    assert not ref.converged and ref.n_iter == 6
    _check_same(res, ref)


def test_uint8_bvecs_equal_local(client, tmp_path):
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, size=(3000, 32), dtype=np.uint8)
    write_bvecs(tmp_path / "X.bvecs", X)
    C0 = X[:9].astype(np.float64)
    ref = kmeans(X, 9, init=C0, mode="exact", tol=0.0, max_iter=15)
    res = dask_kmeans(
        tmp_path / "X.bvecs",
        9,
        init=C0,
        tol=0.0,
        max_iter=15,
        client=client,
        shard_rows=1100,
    )
    _check_same(res, ref)


def test_empty_cluster_repaired_like_local(client, npy_file):
    path, X = npy_file
    C0 = X[:6].astype(np.float64)
    # Far from every point: empty after the first assignment. (Not much farther:
    # float32 chunks are shifted by the initial centres' mean, and a huge shift
    # costs precision in both backends, differently.)
    C0[4] = 400.0
    C0[5] = -400.0
    ref = kmeans(X, 6, init=C0, mode="exact", tol=1e-6, max_iter=30)
    assert ref.history[0]["empty_repaired"] == 2
    res = dask_kmeans(
        path, 6, init=C0, tol=1e-6, max_iter=30, client=client, shard_rows=700
    )
    assert res.history[0]["empty_repaired"] == 2
    _check_same(res, ref)


def test_deterministic_and_array_equals_file(client, npy_file):
    path, X = npy_file
    C0 = X[10:18].astype(np.float64)
    a = dask_kmeans(
        path, 8, init=C0, tol=0.0, max_iter=10, client=client, shard_rows=500
    )
    b = dask_kmeans(
        path, 8, init=C0, tol=0.0, max_iter=10, client=client, shard_rows=500
    )
    c = dask_kmeans(X, 8, init=C0, tol=0.0, max_iter=10, client=client, shard_rows=500)
    for other in (b, c):
        np.testing.assert_array_equal(a.centers, other.centers)  # bit for bit
        np.testing.assert_array_equal(a.labels, other.labels)
        assert a.inertia == other.inertia
        assert [h["inertia"] for h in a.history] == [
            h["inertia"] for h in other.history
        ]


def test_bad_init_shape(client, npy_file):
    path, _ = npy_file
    with pytest.raises(DataValidationError, match=r"init has shape \(3, 12\)"):
        dask_kmeans(path, 4, init=np.zeros((3, 12)), client=client)


def test_unreachable_scheduler_fails_fast_naming_address():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with pytest.raises(
        BackendError, match=f"Cannot reach the Dask scheduler at '{address}'"
    ):
        dask_kmeans(np.zeros((10, 2)), 2, init="random", scheduler=address, timeout=1.0)
    assert time.perf_counter() - t0 < 15


def test_killed_worker_mid_fit_gives_undisturbed_result(client, tmp_path):
    """SIGKILL one worker process during a fit: Dask reruns its (pure) tasks."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40_000, 32)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    C0 = X[:24].astype(np.float64)
    kw = {"init": C0, "tol": 0.0, "max_iter": 25, "client": client, "shard_rows": 2500}
    t0 = time.perf_counter()
    ref = dask_kmeans(tmp_path / "X.npy", 24, **kw)
    undisturbed = time.perf_counter() - t0
    assert ref.n_iter == 25  # long enough to be interrupted

    pids = client.run(os.getpid)  # worker address -> process id
    victim = sorted(pids.values())[0]
    out: dict[str, object] = {}

    def fit() -> None:
        try:
            out["res"] = dask_kmeans(tmp_path / "X.npy", 24, **kw)
        except BaseException as e:  # reported below
            out["err"] = e

    th = threading.Thread(target=fit)
    th.start()
    time.sleep(undisturbed / 3)
    assert th.is_alive()  # the kill lands in the middle of the fit
    os.kill(victim, signal.SIGKILL)
    th.join(timeout=120)
    assert not th.is_alive()
    assert "err" not in out, out.get("err")
    res = out["res"]
    np.testing.assert_array_equal(res.centers, ref.centers)  # bit for bit
    np.testing.assert_array_equal(res.labels, ref.labels)
    assert res.inertia == ref.inertia and res.n_iter == ref.n_iter
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert victim not in client.run(os.getpid).values()


def test_missing_distributed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    with (
        pytest.raises(MissingDependencyError, match=r"clusterlens\[dist\]"),
        dask_client(),
    ):
        pass


def test_client_choice_current_then_address(client, npy_file):
    import distributed

    address = client.scheduler_info()["address"]
    with dask_client(scheduler=address, timeout=5) as c:  # an explicit address
        assert c is not client and c.scheduler_info()["address"] == address
        assert c.status == "running"
    assert c.status == "closed"  # made here, closed here
    with distributed.Client(address) as current:  # the current client is used
        with dask_client() as c:
            assert c is current
        path, X = npy_file
        C0 = X[:3].astype(np.float64)
        res = dask_kmeans(path, 3, init=C0, max_iter=5)
        ref = kmeans(X, 3, init=C0, mode="exact", max_iter=5)
        np.testing.assert_array_equal(res.labels, ref.labels)
        assert current.status == "running"  # not closed by the fit


def test_nan_rows_rejected_naming_the_shard(client, tmp_path):
    X = _blobs(300, 4, 5)
    X[250, 2] = np.nan
    np.save(tmp_path / "nan.npy", X)
    with pytest.raises(DataValidationError, match=r"X\[200:300\] contains NaN.*row 50"):
        dask_kmeans(tmp_path / "nan.npy", 3, init=X[:3], client=client, shard_rows=100)


# --------------------------------------------------------------------------- #
# Large-k mode, the estimator and config, checkpoints
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def many_blobs(tmp_path_factory):
    rng = np.random.default_rng(0)
    C = rng.normal(scale=10, size=(300, 16))
    X = (C[rng.integers(0, 300, 12_000)] + rng.normal(size=(12_000, 16))).astype(
        np.float32
    )
    path = tmp_path_factory.mktemp("dask_large") / "X.npy"
    np.save(path, X)
    return path, X


@pytest.mark.parametrize("refresh_every", [0, 2])
def test_large_k_equals_local_backend(client, many_blobs, refresh_every):
    path, X = many_blobs
    kw = {
        "mode": "large",
        "init": "random",
        "random_state": 1,
        "max_iter": 7,
        "tol": 0.0,
        "refresh_every": refresh_every,
    }
    ref = kmeans(X, 200, **kw)
    res = dask_kmeans(path, 200, client=client, shard_rows=3500, **kw)
    assert res.engine == "dask:large-k" and res.mode == "large"
    # every pass moved the same points and repaired the same empty clusters
    assert [h["moved"] for h in res.history] == [h["moved"] for h in ref.history]
    assert [h["pass"] for h in res.history] == [h["pass"] for h in ref.history]
    assert [h["empty_repaired"] for h in res.history] == [
        h["empty_repaired"] for h in ref.history
    ]
    assert sum(h["empty_repaired"] for h in ref.history) > 0  # the repair ran
    np.testing.assert_array_equal(res.labels, ref.labels)
    assert res.inertia == pytest.approx(ref.inertia, rel=1e-6)
    np.testing.assert_allclose(res.centers, ref.centers, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(res.distances, ref.distances, rtol=1e-4, atol=1e-3)


def test_estimator_and_config_backend(client, many_blobs):
    from clusterlens import config_context
    from clusterlens.cluster import KMeans

    path, X = many_blobs
    kw = {"n_clusters": 20, "random_state": 2, "max_iter": 6, "tol": 0.0}
    ref = KMeans(**kw).fit(X)
    with client.as_current():  # the fixture's client, not a new LocalCluster
        a = KMeans(backend="dask", **kw).fit(path)
    with client.as_current(), config_context(backend="dask"):
        b = KMeans(**kw).fit(np.load(path, mmap_mode="r"))  # workers open the file
    for est in (a, b):
        assert est.engine_.startswith("dask:")
        np.testing.assert_array_equal(est.labels_, ref.labels_)
        assert est.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
        np.testing.assert_array_equal(est.predict(X[:50]), ref.predict(X[:50]))


@pytest.mark.parametrize("mode", ["exact", "large"])
def test_checkpoint_resume_equals_uninterrupted(client, many_blobs, tmp_path, mode):
    path, _ = many_blobs
    k = 60 if mode == "exact" else 200
    kw = {
        "mode": mode,
        "init": "random",
        "n_init": 1,
        "random_state": 5,
        "tol": 0.0,
        "refresh_every": 3,
        "client": client,
        "shard_rows": 5000,
    }
    ref = dask_kmeans(path, k, max_iter=7, **kw)
    ck = tmp_path / "ck"
    first = dask_kmeans(path, k, max_iter=3, checkpoint_dir=ck, **kw)
    assert first.n_iter == 3 and (ck / "checkpoint.json").exists()
    if mode == "large":  # the shards' states, written by the workers
        assert len(list(ck.glob("dask-parts-000003/part-*.npz"))) == 3
    res = dask_kmeans(path, k, max_iter=7, checkpoint_dir=ck, resume=True, **kw)
    assert res.n_iter == 7
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_array_equal(res.centers, ref.centers)
    assert [h["inertia"] for h in res.history] == [h["inertia"] for h in ref.history]
    # a local fit cannot continue the Dask checkpoint (other parameters)
    with pytest.raises(DataValidationError, match="fingerprint"):
        kmeans(
            path,
            k,
            max_iter=7,
            checkpoint_dir=ck,
            resume=True,
            **{key: v for key, v in kw.items() if key not in ("client", "shard_rows")},
        )


def test_corrupt_checkpoint_part_is_refused(client, many_blobs, tmp_path):
    path, _ = many_blobs
    kw = {"mode": "large", "init": "random", "random_state": 5, "tol": 0.0}
    ck = tmp_path / "ck"
    dask_kmeans(path, 100, max_iter=2, checkpoint_dir=ck, client=client, **kw)
    part = next(ck.glob("dask-parts-*/part-*.npz"))
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(DataValidationError, match="corrupt"):
        dask_kmeans(
            path, 100, max_iter=4, checkpoint_dir=ck, resume=True, client=client, **kw
        )


def test_killed_worker_mid_large_k_fit(client, tmp_path):
    """SIGKILL a worker in a large-k fit: the lost shard states are rebuilt."""
    rng = np.random.default_rng(7)
    C = rng.normal(scale=6, size=(500, 24))
    X = (C[rng.integers(0, 500, 60_000)] + rng.normal(size=(60_000, 24))).astype(
        np.float32
    )
    np.save(tmp_path / "X.npy", X)
    kw = {
        "mode": "large",
        "init": "random",
        "random_state": 3,
        "tol": 0.0,
        "max_iter": 14,
        "refresh_every": 5,
        "client": client,
        "shard_rows": 7500,
    }
    t0 = time.perf_counter()
    ref = dask_kmeans(tmp_path / "X.npy", 400, **kw)
    undisturbed = time.perf_counter() - t0
    victim = sorted(client.run(os.getpid).values())[0]
    out: dict[str, object] = {}

    def fit() -> None:
        try:
            out["res"] = dask_kmeans(tmp_path / "X.npy", 400, **kw)
        except BaseException as e:  # reported below
            out["err"] = e

    th = threading.Thread(target=fit)
    th.start()
    time.sleep(undisturbed / 2)
    assert th.is_alive()
    os.kill(victim, signal.SIGKILL)
    th.join(timeout=180)
    assert not th.is_alive()
    assert "err" not in out, out.get("err")
    res = out["res"]
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_array_equal(res.centers, ref.centers)
    assert res.inertia == ref.inertia
    client.wait_for_workers(2, timeout=60)
