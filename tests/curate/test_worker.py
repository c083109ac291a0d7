"""``explore`` makes the map and the clusters in a worker process: the same
results as in-process, a stage's errors come back as themselves, and a lost
worker costs nothing but time (the stages are then made in the explore
process)."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clusterlens.exceptions import DataValidationError
from clusterlens.pipelines import _worker
from clusterlens.pipelines._worker import StageWorker, WorkerLost

pytest.importorskip("umap")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """36 images in three colour families (enough items for UMAP)."""
    root = tmp_path_factory.mktemp("mapw") / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(36):
        base = np.zeros((48, 48, 3), np.uint8)
        base[..., i % 3] = 160
        img = np.clip(base + rng.integers(0, 90, (48, 48, 3)), 0, 255)
        Image.fromarray(img.astype(np.uint8)).save(root / f"img_{i:02d}.png")
    return root


def _explore(folder, out):
    from clusterlens.pipelines.explore import run_explore

    return run_explore(folder, out, image_size=64, n_clusters=3)


def _xy(ws):
    t = pq.read_table(ws / "map" / "map.parquet").to_pydict()
    return np.c_[t["x"], t["y"]]


def _labels(ws):
    return pq.read_table(ws / "clusters" / "cnn" / "results.parquet").to_pydict()


def test_the_worker_makes_what_explore_would_make(folder, tmp_path, monkeypatch):
    import clusterlens.pipelines.cluster_images as ci
    import clusterlens.pipelines.curate as cv
    from clusterlens.io import open_workspace

    run_map, run_clusters = cv.run_map, ci.run_cluster_images

    def not_here(*a, **k):
        raise AssertionError("made in the explore process, not in the worker")

    monkeypatch.setattr(cv, "run_map", not_here)
    monkeypatch.setattr(ci, "run_cluster_images", not_here)
    s = _explore(folder, tmp_path / "ws")
    assert s["stages"]["map"]["method"] == "umap"
    assert s["stages"]["clusters"]["n_clusters"] == 3
    ws = open_workspace(tmp_path / "ws")
    here = tmp_path / "here"
    here.mkdir()
    (here / "map").mkdir()
    run_map(ws, here / "map", random_state=0)
    t = pq.read_table(here / "map" / "map.parquet").to_pydict()
    assert np.array_equal(_xy(tmp_path / "ws"), np.c_[t["x"], t["y"]])
    (here / "clusters").mkdir()
    run_clusters(
        ws,
        here / "clusters",
        features="cnn",
        n_clusters=3,
        n_init=3,
        l2_normalize=True,
        random_state=0,
    )
    got = pq.read_table(here / "clusters" / "results.parquet").to_pydict()
    assert got["cluster"] == _labels(tmp_path / "ws")["cluster"]


def test_a_lost_worker_costs_only_time(folder, tmp_path, monkeypatch):
    _explore(folder, tmp_path / "ok")
    # a worker that dies at once: explore makes the same map itself
    monkeypatch.setattr(
        StageWorker,
        "_command",
        staticmethod(lambda: [sys.executable, "-c", "import sys; sys.exit(3)"]),
    )
    s = _explore(folder, tmp_path / "lost")
    assert s["stages"]["map"]["method"] == "umap"
    assert np.array_equal(_xy(tmp_path / "lost"), _xy(tmp_path / "ok"))
    assert _labels(tmp_path / "lost") == _labels(tmp_path / "ok")


def test_the_stage_error_comes_back_as_itself(tmp_path):
    w = StageWorker()
    w.submit(str(tmp_path / "no-such-workspace"), {"map": {}, "clusters": {}})
    for job in ("clusters", "map"):
        with pytest.raises(DataValidationError, match="no-such-workspace"):
            w.result(job)
    w.close()


def test_a_worker_that_cannot_start_says_so(monkeypatch):
    monkeypatch.setattr(
        StageWorker, "_command", staticmethod(lambda: ["/nonexistent/python"])
    )
    w = StageWorker()
    w.submit("ws", {"map": {}})
    with pytest.raises(WorkerLost, match="did not start"):
        w.result("map")


def test_the_worker_runs_the_callers_clusterlens():
    env = _worker._child_env()
    assert env["OMP_NUM_THREADS"] == "1"
    assert all(p in env["PYTHONPATH"].split(":") for p in sys.path if p)


def test_a_stopped_run_stops_the_worker_and_makes_nothing_here(
    folder, tmp_path, monkeypatch
):
    import clusterlens.pipelines.cluster_images as ci
    import clusterlens.pipelines.curate as cv

    made_here = []
    monkeypatch.setattr(cv, "run_map", lambda *a, **k: made_here.append("map"))
    monkeypatch.setattr(
        ci, "run_cluster_images", lambda *a, **k: made_here.append("clusters")
    )
    started = []
    real_init = StageWorker.__init__

    def init(self):
        real_init(self)
        started.append(self)

    monkeypatch.setattr(StageWorker, "__init__", init)

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cv, "run_duplicates", stop)
    with pytest.raises(KeyboardInterrupt):
        _explore(folder, tmp_path / "ws")
    (w,) = started
    assert w.closed and w._proc is None
    import time

    time.sleep(1.0)  # the lost answers must not start the stages here
    assert made_here == []
