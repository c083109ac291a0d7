"""``cluster --method scan|iic`` end to end on a small image folder (#20)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("torch")

from clusterlens.cli.main import cli

FAST = ["--epochs", 8, "--self-label-epochs", 2, "--neighbors", 5, "--quiet"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(r, *needles):
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines[0].startswith("Error"), r.output
    assert len(lines) == 2 and lines[1].startswith("hint:"), r.output
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in r.output


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace of 3 pattern classes x 20 noisy 24-px images, pixel features."""
    root = tmp_path_factory.mktemp("scan-cli")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :24]
    patterns = {
        "hstripes": (yy // 4) % 2,
        "vstripes": (xx // 4) % 2,
        "checks": ((yy // 6) + (xx // 6)) % 2,
    }
    for name, pat in patterns.items():
        (root / "imgs" / name).mkdir(parents=True)
        for i in range(20):
            px = 60 + 130 * pat[..., None] + rng.normal(0, 40, (24, 24, 3))
            Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(
                root / "imgs" / name / f"{i:02d}.png"
            )
    w = root / "ws"
    assert run("ingest", root / "imgs", "--out", w, "--quiet").exit_code == 0
    r = run("features", "pixels", w, "--quiet")
    assert r.exit_code == 0, r.output
    return w


@pytest.mark.parametrize("method", ["scan", "iic"])
def test_cluster_head_writes_the_shared_outputs(ws, tmp_path, method):
    out = tmp_path / method
    r = run(
        "cluster",
        ws,
        "--features",
        "pixels",
        "-k",
        3,
        "--method",
        method,
        "--out",
        out,
        "--seed",
        0,
        "--format",
        "json",
        *FAST,
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["schema"] == "clusterlens.cluster-images/1"
    assert doc["method"] == method and doc["n_clusters"] == 3
    assert doc["accuracy"] >= 0.9, doc
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == [
        "model.json",
        "model.npz",
        "report.html",
        "results.parquet",
        "run.json",
    ]
    t = pq.read_table(out / "results.parquet").to_pydict()
    assert set(t) >= {"index", "item_id", "label", "cluster", "distance", "probability"}
    p = np.asarray(t["probability"])
    np.testing.assert_allclose(np.asarray(t["distance"]), 1.0 - p, rtol=1e-6)
    assert ((p >= 1 / 3 - 1e-6) & (p <= 1.0)).all()
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["parameters"]["method"] == method
    assert json.loads((out / "model.json").read_text())["format"] == "clusterlens.scan"


def test_same_seed_same_clusters_and_overclustering(ws, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        r = run(
            "cluster",
            ws,
            "--features",
            "pixels",
            "-k",
            6,
            "--method",
            "scan",
            "--out",
            out,
            "--seed",
            3,
            "--no-report",
            *FAST,
        )
        assert r.exit_code == 0, r.output
    ta = pq.read_table(a / "results.parquet").to_pydict()
    tb = pq.read_table(b / "results.parquet").to_pydict()
    assert ta["cluster"] == tb["cluster"]
    assert (a / "model.npz").read_bytes() == (b / "model.npz").read_bytes()
    # overclustering: more clusters than classes, each (almost) one class
    cl, lab = np.asarray(ta["cluster"]), np.asarray(ta["label"])
    major = sum(np.bincount(lab[cl == c]).max() for c in np.unique(cl))
    assert major / lab.size >= 0.95


def test_a_saved_head_is_applied_and_checks_the_width(ws, tmp_path):
    first = tmp_path / "first"
    r = run(
        "cluster",
        ws,
        "--features",
        "pixels",
        "-k",
        3,
        "--method",
        "scan",
        "--out",
        first,
        "--seed",
        0,
        "--no-report",
        *FAST,
    )
    assert r.exit_code == 0, r.output
    again = tmp_path / "again"
    r = run(
        "cluster",
        ws,
        "--features",
        "pixels",
        "-k",
        3,
        "--method",
        "scan",
        "--head",
        first,
        "--out",
        again,
        "--no-report",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    c1 = pq.read_table(first / "results.parquet").column("cluster").to_pylist()
    c2 = pq.read_table(again / "results.parquet").column("cluster").to_pylist()
    assert c1 == c2
    # a head fitted on the pixels applied to 5-d features
    other = tmp_path / "narrow.npy"
    np.save(other, np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32))
    bad = tmp_path / "bad"
    r = run(
        "cluster",
        ws,
        "--features",
        other,
        "-k",
        3,
        "--method",
        "scan",
        "--head",
        first,
        "--out",
        bad,
    )
    width = np.load(ws / "features" / "pixels" / "features.npy").shape[1]
    _one_line_error(r, "X has 5 features", f"fitted on {width}-d embeddings")
    assert not bad.exists()
    r = run(
        "cluster",
        ws,
        "--features",
        "pixels",
        "-k",
        4,
        "--method",
        "scan",
        "--head",
        first,
        "--out",
        bad,
    )
    _one_line_error(r, "has 3 clusters, not -k 4")
    assert not bad.exists()


def test_k_larger_than_the_items(ws, tmp_path):
    out = tmp_path / "k"
    r = run(
        "cluster",
        ws,
        "--features",
        "pixels",
        "-k",
        61,
        "--method",
        "scan",
        "--out",
        out,
        *FAST,
    )
    _one_line_error(r, "-k 61 is larger than the number of items (60)")
    assert not out.exists()


def test_head_options_need_a_head_method(ws, tmp_path):
    r = run(
        "cluster",
        ws,
        "--features",
        "pixels",
        "-k",
        3,
        "--epochs",
        3,
        "--out",
        tmp_path / "x",
    )
    assert r.exit_code == 2
    assert "--epochs only apply to --method scan or iic" in r.output


def test_a_view_of_another_shape(ws, tmp_path):
    other = tmp_path / "narrow.npy"
    np.save(other, np.zeros((60, 5), np.float32))
    out = tmp_path / "v"
    r = run(
        "cluster",
        ws,
        "--features",
        "pixels",
        "-k",
        3,
        "--method",
        "scan",
        "--views",
        other,
        "--out",
        out,
        *FAST,
    )
    _one_line_error(r, "has shape (60, 5)", "other embeddings of the same items")
    assert not out.exists()
