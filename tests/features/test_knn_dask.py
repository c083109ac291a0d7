"""The shared k-NN search (``knn_graph``) on a 2-worker Dask LocalCluster against
the local backend: equal graphs in both modes, a killed worker, bad rows, and
``explore`` / the views with ``--backend dask`` (issue #18, "Scale")."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip(
    "distributed", reason="the Dask backend needs dask[distributed] (the [dist] extra)"
)

from clusterlens._config import config_context
from clusterlens.distributed import dask_client
from clusterlens.exceptions import DataValidationError
from clusterlens.features._knn import knn_graph


@pytest.fixture(scope="module")
def client():
    with dask_client(n_workers=2, threads_per_worker=1) as c:
        yield c


@pytest.fixture
def on_dask(client):
    """Library calls in the block run on the fixture's cluster (as --scheduler)."""
    with config_context(backend="dask", scheduler=client.scheduler_info()["address"]):
        yield client


def _mixture(n: int, d: int, seed: int) -> np.ndarray:
    """Unnormalised rows around 40 directions, with an exact duplicate (a tie)."""
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(40, d))
    X = C[rng.integers(0, 40, n)] + rng.normal(scale=0.4, size=(n, d))
    X *= rng.uniform(0.5, 3.0, size=(n, 1))  # lengths that normalising removes
    X[7] = X[3]
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def npy(tmp_path_factory):
    X = _mixture(9_000, 24, 0)
    path = tmp_path_factory.mktemp("knn") / "X.npy"
    np.save(path, X)
    return path, X


def _same(g, ref):
    np.testing.assert_array_equal(g.indices, ref.indices)
    # the same faiss calls on the same rows: equal up to float rounding
    np.testing.assert_allclose(g.distances, ref.distances, rtol=0, atol=1e-6)
    assert g.method == ref.method
    assert g.backend == "dask" and ref.backend == "local"


@pytest.mark.parametrize("normalize", [True, False])
def test_exact_dask_equals_local(npy, on_dask, normalize):
    path, X = npy
    ref = knn_graph(X, 10, normalize=normalize, backend="local")
    assert ref.method.startswith("exact")
    # a .npy path, its memmap (the workers open the file) and an in-memory copy
    mm = np.load(path, mmap_mode="r")
    for Z in (path, mm, X.copy()):
        _same(knn_graph(Z, 10, normalize=normalize, shard_rows=3_000), ref)


@pytest.mark.parametrize("seed", [0, 3])
def test_approximate_dask_equals_local_same_seed(npy, on_dask, seed):
    path, X = npy
    kw = {"exact_max_samples": 2_000, "seed": seed, "normalize": True}
    ref = knn_graph(X, 8, backend="local", **kw)
    assert ref.method.startswith("approximate")
    _same(knn_graph(path, 8, shard_rows=1_000, **kw), ref)
    _same(
        knn_graph(X, 8, n_lists=20, n_probe=3, **kw),
        knn_graph(X, 8, n_lists=20, n_probe=3, backend="local", **kw),
    )


def test_approximate_recall_against_exact(npy, on_dask):
    """The cell search is a good approximation (recall@8 >= 0.95) on Dask too."""
    path, X = npy
    exact = knn_graph(X, 8, normalize=True, backend="local")
    approx = knn_graph(path, 8, normalize=True, exact_max_samples=2_000)
    hits = (approx.indices[:, :, None] == exact.indices[:, None, :]).any(-1).mean()
    assert hits >= 0.95, f"recall@8 {hits:.3f} < 0.95"


def test_nan_row_is_refused_naming_the_row(on_dask, tmp_path):
    X = _mixture(500, 8, 1)
    X[123, 2] = np.nan
    np.save(tmp_path / "bad.npy", X)
    with pytest.raises(DataValidationError, match=r"NaN or infinity.*first at row 123"):
        knn_graph(tmp_path / "bad.npy", 5, normalize=True)
    with pytest.raises(DataValidationError, match="NaN or infinity"):
        knn_graph(X, 5, normalize=True, backend="local")


def test_killed_worker_mid_search_gives_undisturbed_result(client, tmp_path):
    """SIGKILL one worker process during the search: its (pure) tasks rerun."""
    X = _mixture(40_000, 32, 2)
    np.save(tmp_path / "X.npy", X)
    address = client.scheduler_info()["address"]
    kw = {"normalize": True, "shard_rows": 1}  # one block of rows per task
    with config_context(backend="dask", scheduler=address):
        t0 = time.perf_counter()
        ref = knn_graph(tmp_path / "X.npy", 10, **kw)
        undisturbed = time.perf_counter() - t0
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    out: dict[str, object] = {}

    def run() -> None:
        try:  # (the configuration is per thread)
            with config_context(backend="dask", scheduler=address):
                out["res"] = knn_graph(tmp_path / "X.npy", 10, **kw)
        except BaseException as e:  # reported below
            out["err"] = e

    th = threading.Thread(target=run)
    th.start()
    time.sleep(undisturbed / 3)
    assert th.is_alive()  # the kill lands in the middle of the search
    os.kill(victim, signal.SIGKILL)
    th.join(timeout=180)
    assert not th.is_alive()
    assert "err" not in out, out.get("err")
    np.testing.assert_array_equal(out["res"].indices, ref.indices)
    np.testing.assert_allclose(out["res"].distances, ref.distances, atol=1e-6)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert victim not in client.run(os.getpid).values()


# --------------------------------------------------------------------------- #
# The pipeline and the CLI
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """14 small images in two classes, two of them copies."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny") / "photos"
    rng = np.random.default_rng(0)
    for i in range(12):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, size=(6, 6, 3))
        img = np.kron(base, np.ones((8, 8, 1))).astype(np.uint8)
        Image.fromarray(img).save(cls / f"img{i:02d}.png")
    shutil.copy(root / "a" / "img01.png", root / "a" / "copy01.png")
    shutil.copy(root / "b" / "img02.png", root / "b" / "copy02.png")
    return root


def run(*args):
    from clusterlens.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def _graph(ws):
    with np.load(ws / "neighbors" / "neighbors.npz") as z:
        return z["indices"], z["distances"]


def _params(ws, rel):
    return json.loads((ws / rel / "run.json").read_text())["parameters"]


@pytest.fixture(scope="module")
def local_ws(tiny_folder):
    pytest.importorskip("torch")
    ws = tiny_folder.parent / "ws-local"
    r = run("explore", tiny_folder, "--out", ws, "--image-size", 32, "-q")
    assert r.exit_code == 0, r.output
    return ws


def test_explore_on_a_scheduler_gives_the_local_neighbors(
    tiny_folder, local_ws, client, tmp_path
):
    ws = tmp_path / "ws"
    address = client.scheduler_info()["address"]
    r = run(
        "explore",
        tiny_folder,
        "--out",
        ws,
        "--image-size",
        32,
        "--scheduler",
        address,
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.output
    assert _params(ws, "features/cnn")["backend"] == "dask"
    assert _params(ws, "neighbors")["backend"] == "dask"
    assert _params(local_ws, "neighbors")["backend"] == "local"
    idx, dist = _graph(ws)
    ref_idx, ref_dist = _graph(local_ws)
    # the CNN on the workers equals the local one up to float rounding
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-5)


def test_view_with_backend_dask_recomputes_the_same_graph(local_ws, tmp_path):
    """Same embeddings: the neighbour search on Dask writes the local arrays."""
    ws = tmp_path / "ws"
    shutil.copytree(local_ws, ws)
    shutil.rmtree(ws / "neighbors")
    # no scheduler: a LocalCluster is started and closed by the command
    r = run("duplicates", ws, "--backend", "dask", "-q")
    assert r.exit_code == 0, r.output
    assert _params(ws, "neighbors")["backend"] == "dask"
    (idx, dist), (ref_idx, ref_dist) = _graph(ws), _graph(local_ws)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=0, atol=1e-6)


def test_scheduler_with_local_backend_is_refused(local_ws):
    r = run("map", local_ws, "--backend", "local", "--scheduler", "tcp://h:1")
    assert r.exit_code == 2 and "--scheduler needs --backend dask" in r.output
