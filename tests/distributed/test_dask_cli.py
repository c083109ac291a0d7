"""``--backend dask`` / ``--scheduler`` on the k-means and vocabulary commands."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip(
    "distributed", reason="the Dask backend needs dask[distributed] (the [dist] extra)"
)
from click.testing import CliRunner

from clusterlens.cli.main import cli
from clusterlens.distributed import dask_client
from clusterlens.io import write_bvecs


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def address():
    with dask_client(n_workers=2, threads_per_worker=1) as c:
        yield c.scheduler_info()["address"]


@pytest.fixture(scope="module")
def sift(tmp_path_factory):
    rng = np.random.default_rng(0)
    C = rng.integers(0, 200, size=(80, 32))
    X = np.clip(C[rng.integers(0, 80, 9000)] + rng.normal(0, 6, (9000, 32)), 0, 255)
    path = tmp_path_factory.mktemp("dcli") / "sift.bvecs"
    write_bvecs(path, X.astype(np.uint8))
    return path


def _json(r):
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.parametrize("mode", ["exact", "large"])
def test_kmeans_on_a_scheduler_equals_local(address, sift, tmp_path, mode):
    common = [sift, "-k", 64, "--mode", mode, "--max-iter", 6, "--seed", 3]
    a = _json(run("kmeans", *common, "--out", tmp_path / "a", "--format", "json"))
    b = _json(
        run(
            "kmeans",
            *common,
            "--scheduler",
            address,
            "--out",
            tmp_path / "b",
            "--format",
            "json",
        )
    )
    assert b["engine"].startswith("dask:") and b["backend"] == "dask"
    assert a["backend"] == "local" and a["mode"] == b["mode"] == mode
    assert b["inertia"] == pytest.approx(a["inertia"], rel=1e-6)
    la = pq.read_table(tmp_path / "a" / "assignments.parquet")["cluster"].to_numpy()
    lb = pq.read_table(tmp_path / "b" / "assignments.parquet")["cluster"].to_numpy()
    np.testing.assert_array_equal(la, lb)
    run_json = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run_json["parameters"]["scheduler"] == address


@pytest.mark.parametrize("extra", [[], ["--sample", 5000]])
def test_vocab_on_a_scheduler_equals_local(address, sift, tmp_path, extra):
    """Whole-file fit, and a sampled fit whose rows the workers quantize."""
    common = [sift, "-k", 48, "--max-iter", 5, "--seed", 1, "--format", "json", *extra]
    a = _json(run("vocab", *common, "--out", tmp_path / "a"))
    b = _json(
        run(
            "vocab",
            *common,
            "--backend",
            "dask",
            "--scheduler",
            address,
            "--out",
            tmp_path / "b",
        )
    )
    assert b["fit_inertia"] == pytest.approx(a["fit_inertia"], rel=1e-6)
    wa = pq.read_table(tmp_path / "a" / "assignments.parquet")["word"].to_numpy()
    wb = pq.read_table(tmp_path / "b" / "assignments.parquet")["word"].to_numpy()
    np.testing.assert_array_equal(wa, wb)
    run_json = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run_json["parameters"]["backend"] == "dask"
    assert b["quantized_on"] == "dask" and a["quantized_on"] == "local"


def test_unreachable_scheduler_one_line_no_output(sift, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "clusterlens.cli.main",
            "kmeans",
            str(sift),
            "-k",
            "4",
            "--scheduler",
            address,
            "--out",
            str(tmp_path / "km"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert time.perf_counter() - t0 < 60
    assert "Traceback" not in r.stderr
    assert f"Cannot reach the Dask scheduler at '{address}'" in r.stderr
    assert not (tmp_path / "km").exists()  # nothing written


def test_scheduler_with_local_backend_is_refused(sift, tmp_path):
    r = run(
        "kmeans",
        sift,
        "-k",
        4,
        "--backend",
        "local",
        "--scheduler",
        "tcp://127.0.0.1:1",
        "--out",
        tmp_path / "km",
    )
    assert r.exit_code != 0 and "--scheduler needs --backend dask" in r.output


def test_cluster_workspace_on_a_scheduler_equals_local(address, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    src = tmp_path / "imgs"
    for cls, level in (("dark", 50), ("mid", 128), ("bright", 205)):
        (src / cls).mkdir(parents=True)
        for i in range(10):
            img = np.clip(level + rng.normal(0, 25, (12, 12)), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(src / cls / f"{i}.png")
    ws = tmp_path / "ws"
    assert run("ingest", src, "--out", ws, "-q").exit_code == 0
    assert run("features", "pixels", ws, "--size", 12, "-q").exit_code == 0
    common = ["cluster", ws, "--features", "pixels", "-k", 3, "--format", "json"]
    a = _json(run(*common, "--out", tmp_path / "a"))
    b = _json(run(*common, "--scheduler", address, "--out", tmp_path / "b"))
    assert a["backend"] == "local" and b["backend"] == "dask"
    assert b["inertia"] == pytest.approx(a["inertia"], rel=1e-6)
    assert b["accuracy"] == a["accuracy"] == 1.0
