"""The command line as a user runs it: outputs, JSON, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterlens.cli.main import cli
from clusterlens.io import write_bvecs, write_fvecs, write_oxford_bin


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 0.3, (100, 8)) for c in (0, 5, 10)]).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path


def test_kmeans_writes_every_output(tmp_path, data):
    out = tmp_path / "km"
    r = run("kmeans", data, "-k", 3, "--out", out, "--seed", 1)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        ".clusterlens-output.json",
        "assignments.parquet",
        "model.json",
        "model.npz",
        "run.json",
    ]
    table = pq.read_table(out / "assignments.parquet")
    assert table.column_names == ["index", "cluster", "distance"]
    assert table.num_rows == 300
    assert len(set(table["cluster"].to_pylist())) == 3
    info = json.loads((out / "run.json").read_text())
    assert info["schema"] == "clusterlens.kmeans/1"
    assert info["seed"] == 1 and info["parameters"]["n_clusters"] == 3
    assert {"numpy", "python", "clusterlens"} <= set(info["versions"])
    assert len(info["history"]) == info["results"]["n_iter"]
    from clusterlens.cluster import KMeans

    km = KMeans.load(out / "model")
    np.testing.assert_array_equal(km.labels_, table["cluster"].to_numpy())


def test_kmeans_json_output_and_same_seed_same_result(tmp_path, data):
    outs = []
    for name in ("a", "b"):
        r = run("kmeans", data, "-k", 3, "--out", tmp_path / name, "--format", "json")
        assert r.exit_code == 0, r.output
        payload = json.loads(r.stdout)
        assert payload["schema"] == "clusterlens.kmeans/1"
        outs.append(payload)
    assert outs[0]["inertia"] == outs[1]["inertia"]
    a = np.load(tmp_path / "a" / "model.npz")["cluster_centers_"]
    b = np.load(tmp_path / "b" / "model.npz")["cluster_centers_"]
    np.testing.assert_array_equal(a, b)


def test_kmeans_reads_descriptor_formats(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (200, 128), dtype=np.uint8)
    write_bvecs(tmp_path / "x.bvecs", X)
    write_fvecs(tmp_path / "x.fvecs", X.astype(np.float32))
    write_oxford_bin(tmp_path / "x.bin", X)
    inertias = []
    for name in ("x.bvecs", "x.fvecs", "x.bin"):
        r = run(
            "kmeans",
            tmp_path / name,
            "-k",
            4,
            "--out",
            tmp_path / f"o-{name}",
            "--format",
            "json",
            "--init",
            "random",
            "--n-init",
            1,
        )
        assert r.exit_code == 0, r.output
        inertias.append(json.loads(r.stdout)["inertia"])
    np.testing.assert_allclose(inertias, inertias[0], rtol=1e-6)


def test_init_from_npy_file(tmp_path, data):
    X = np.load(data)
    np.save(tmp_path / "c.npy", X[[0, 100, 200]])
    r = run(
        "kmeans", data, "-k", 3, "--init", tmp_path / "c.npy", "--out", tmp_path / "o"
    )
    assert r.exit_code == 0, r.output


def _bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    cases = {}
    (tmp_path / "empty.npy").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.npy", "empty")
    np.save(tmp_path / "oned.npy", rng.standard_normal(50))
    cases["1-D"] = (tmp_path / "oned.npy", "2-D")
    write_fvecs(tmp_path / "t.fvecs", rng.standard_normal((10, 16)).astype(np.float32))
    raw = (tmp_path / "t.fvecs").read_bytes()
    (tmp_path / "t.fvecs").write_bytes(raw[:-7])
    cases["truncated fvecs"] = (tmp_path / "t.fvecs", "truncated")
    (tmp_path / "t.bin").write_bytes(bytes(128 * 5 + 3))
    cases["truncated bin"] = (tmp_path / "t.bin", "128")
    X = rng.standard_normal((50, 4))
    X[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", X)
    cases["NaN"] = (tmp_path / "nan.npy", "NaN")
    X[7, 1] = np.inf
    np.save(tmp_path / "inf.npy", X)
    cases["inf"] = (tmp_path / "inf.npy", "infinity")
    return cases


@pytest.mark.parametrize(
    "case", ["empty", "1-D", "truncated fvecs", "truncated bin", "NaN", "inf"]
)
def test_bad_data_one_clear_message_no_output(tmp_path, case):
    path, match = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    r = run("kmeans", path, "-k", 2, "--out", out)
    assert r.exit_code == 1, r.output
    assert match in r.stderr
    assert "Traceback" not in r.output
    assert r.stderr.count("\n") == 2 and "CLUSTERLENS_DEBUG" in r.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_k_out_of_range(tmp_path, data):
    r = run("kmeans", data, "-k", 0, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "-k" in r.stderr
    r = run("kmeans", data, "-k", 301, "--out", tmp_path / "o")
    assert r.exit_code == 1 and "larger than the number of rows" in r.stderr
    assert not (tmp_path / "o").exists()


def test_unreadable_path(tmp_path):
    r = run("kmeans", tmp_path / "missing.npy", "-k", 2, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "does not exist" in r.stderr
    r = run("kmeans", tmp_path, "-k", 2, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "is a directory" in r.stderr


def test_existing_output_needs_overwrite(tmp_path, data):
    out = tmp_path / "o"
    assert run("kmeans", data, "-k", 2, "--out", out).exit_code == 0
    before = (out / "run.json").read_text()
    r = run("kmeans", data, "-k", 3, "--out", out)
    assert r.exit_code == 1 and "--overwrite" in r.stderr
    assert (out / "run.json").read_text() == before
    r = run("kmeans", data, "-k", 3, "--out", out, "--overwrite")
    assert r.exit_code == 0
    assert json.loads((out / "run.json").read_text())["parameters"]["n_clusters"] == 3


def test_debug_env_gives_traceback(tmp_path, monkeypatch):
    (tmp_path / "e.npy").write_bytes(b"")
    monkeypatch.setenv("CLUSTERLENS_DEBUG", "1")
    r = run("kmeans", tmp_path / "e.npy", "-k", 2, "--out", tmp_path / "o")
    assert r.exit_code != 0 and r.exception is not None


@pytest.mark.parametrize("command", [[], ["kmeans"], ["demo"], ["anchors"], ["vocab"]])
def test_help_shows_a_working_example(command):
    r = run(*command, "--help")
    assert r.exit_code == 0
    assert "Examples:" in r.output and "clusterlens " in r.output.split("Examples:")[1]


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.clusters = 0
        self.imgs = 0

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if tag == "section" and "cluster" in cls.split():
            self.clusters += 1
        if tag == "img":
            self.imgs += 1


def test_demo_runs_and_report_parses(tmp_path):
    out = tmp_path / "demo"
    r = run("demo", "--digits", "--out", out, "--format", "json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["schema"] == "clusterlens.demo/1"
    assert payload["accuracy"] > 0.6 and payload["nmi"] > 0.6
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        ".clusterlens-output.json",
        "assignments.parquet",
        "model.json",
        "model.npz",
        "report.html",
        "run.json",
    ]
    html = (out / "report.html").read_text()
    parser = _Sections()
    parser.feed(html)
    assert parser.clusters == 10 and parser.imgs > 100
    assert "http://" not in html and "https://" not in html
    table = pq.read_table(out / "assignments.parquet")
    assert {"index", "item_id", "label", "cluster", "distance"} <= set(
        table.column_names
    )


def test_console_script_entry_point(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "clusterlens.cli.main", "--version"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "clusterlens" in r.stdout


def test_kmeans_on_real_sift_descriptors(tmp_path, shared_data):
    """The 103,311 real OpenCV SIFT descriptors of the COCO sample (uint8 npz)."""
    path = shared_data / "sift" / "coco128_sift_opencv.npz"
    out = tmp_path / "sift"
    r = run("kmeans", path, "-k", 64, "--max-iter", 5, "--out", out, "--format", "json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["n_samples"] == 103311 and payload["dtype"] == "uint8"
    clusters = pq.read_table(out / "assignments.parquet")["cluster"].to_numpy()
    assert len(np.unique(clusters)) == 64


def test_npz_with_several_arrays_needs_a_key(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", a=rng.standard_normal((20, 3)), b=np.zeros((4, 2)))
    r = run("kmeans", tmp_path / "a.npz", "-k", 2, "--out", tmp_path / "o")
    assert r.exit_code == 1 and "--key" in r.stderr
    r = run(
        "kmeans", tmp_path / "a.npz", "-k", 2, "--key", "a", "--out", tmp_path / "o"
    )
    assert r.exit_code == 0, r.output


def test_checkpoint_and_resume_from_cli(tmp_path, data):
    ckpt = tmp_path / "ckpt"
    part = run(
        "kmeans",
        data,
        "-k",
        3,
        "--max-iter",
        1,
        "--checkpoint",
        ckpt,
        "--out",
        tmp_path / "a",
        "--format",
        "json",
    )
    assert part.exit_code == 0, part.output
    assert (ckpt / "checkpoint.json").is_file()
    done = run(
        "kmeans",
        data,
        "-k",
        3,
        "--checkpoint",
        ckpt,
        "--resume",
        "--out",
        tmp_path / "b",
        "--format",
        "json",
    )
    full = run("kmeans", data, "-k", 3, "--out", tmp_path / "c", "--format", "json")
    assert done.exit_code == 0 and full.exit_code == 0
    assert json.loads(done.stdout)["inertia"] == json.loads(full.stdout)["inertia"]
    other = run(
        "kmeans",
        data,
        "-k",
        4,
        "--checkpoint",
        ckpt,
        "--resume",
        "--out",
        tmp_path / "d",
    )
    assert other.exit_code == 1 and "fingerprint" in other.stderr
    assert not (tmp_path / "d").exists()


def test_kmeans_large_mode_is_recorded(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (3000, 16)).astype(np.uint8)
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "km"
    args = ["kmeans", str(tmp_path / "x.npy"), "-k", "300", "--max-iter", "4"]
    r = CliRunner().invoke(cli, [*args, "--mode", "large", "--out", str(out)])
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    assert run["parameters"]["mode"] == "large"
    assert run["results"]["mode"] == "large" and run["results"]["engine"] == "large-k"
    labels = pq.read_table(out / "assignments.parquet")["cluster"].to_numpy()
    assert labels.shape == (3000,) and labels.max() < 300
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "ex")])
    assert json.loads((tmp_path / "ex" / "run.json").read_text())["results"][
        "mode"
    ] == ("exact")
