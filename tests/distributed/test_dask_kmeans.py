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
