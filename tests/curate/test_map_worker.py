"""``explore`` draws the map in a worker process: the same map as in-process,
the stage's errors come back as themselves, and a lost worker costs nothing
but time (the map is then made in the explore process)."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clusterlens.exceptions import DataValidationError
from clusterlens.pipelines import _map_worker
from clusterlens.pipelines._map_worker import MapWorker, WorkerLost

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


def test_the_worker_draws_the_map_made_in_process(folder, tmp_path, monkeypatch):
    import clusterlens.pipelines.curate as cv
    from clusterlens.io import open_workspace

    run_map = cv.run_map

    def not_here(*a, **k):
        raise AssertionError("the map was made in the explore process")

    monkeypatch.setattr(cv, "run_map", not_here)
    s = _explore(folder, tmp_path / "ws")
    assert s["stages"]["map"]["method"] == "umap"
    here = tmp_path / "here"
    here.mkdir()
    run_map(open_workspace(tmp_path / "ws"), here, random_state=0)
    t = pq.read_table(here / "map.parquet").to_pydict()
    assert np.array_equal(_xy(tmp_path / "ws"), np.c_[t["x"], t["y"]])


def test_a_lost_worker_costs_only_time(folder, tmp_path, monkeypatch):
    _explore(folder, tmp_path / "ok")
    # a worker that dies at once: explore makes the same map itself
    monkeypatch.setattr(
        MapWorker,
        "_command",
        staticmethod(lambda: [sys.executable, "-c", "import sys; sys.exit(3)"]),
    )
    s = _explore(folder, tmp_path / "lost")
    assert s["stages"]["map"]["method"] == "umap"
    assert np.array_equal(_xy(tmp_path / "lost"), _xy(tmp_path / "ok"))


def test_the_stage_error_comes_back_as_itself(tmp_path):
    w = MapWorker()
    w.submit(str(tmp_path / "no-such-workspace"), 0, None, None)
    with pytest.raises(DataValidationError, match="no-such-workspace"):
        w.result()


def test_a_worker_that_cannot_start_says_so(monkeypatch):
    monkeypatch.setattr(
        MapWorker, "_command", staticmethod(lambda: ["/nonexistent/python"])
    )
    w = MapWorker()
    w.submit("ws", 0, None, None)
    with pytest.raises(WorkerLost, match="did not start"):
        w.result()


def test_the_worker_runs_the_callers_clusterlens():
    env = _map_worker._child_env()
    assert env["OMP_NUM_THREADS"] == "1"
    assert all(p in env["PYTHONPATH"].split(":") for p in sys.path if p)
