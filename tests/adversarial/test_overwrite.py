"""Issue #17 A: --overwrite never deletes a user's files (inputs, workspaces,
folders clusterlens did not write); each case names both paths and exits != 0."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from clusterlens.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with its SHA-256."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(r, *paths):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert "Error (output exists)" in r.output
    for p in paths:
        assert str(Path(p).absolute()) in r.output or str(p) in r.output, r.output


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "proj" / "photos"
    for i, cls in enumerate(["cat", "dog"]):
        (src / cls).mkdir(parents=True)
        for j in range(3):
            rgb = (40 * i + 10 * j, 90, 200 - 30 * j)
            Image.new("RGB", (24, 24), rgb).save(src / cls / f"{j}.png")
    return src


def test_ingest_into_a_folder_holding_the_source_deletes_nothing(photos, tmp_path):
    proj = photos.parent
    (proj / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    r = run("ingest", photos, "--out", proj, "--overwrite")
    refused(r, proj, photos)
    assert snapshot(tmp_path) == before
    # the folder itself, or one inside it, are refused too
    refused(run("ingest", photos, "--out", photos, "--overwrite"), photos)
    assert snapshot(tmp_path) == before


def test_ingest_overwrite_replaces_its_own_workspace(photos, tmp_path):
    ws = tmp_path / "ws"
    assert run("ingest", photos, "--out", ws, "-q").exit_code == 0
    assert run("features", "pixels", ws, "--size", 8, "-q").exit_code == 0
    r = run("ingest", photos, "--out", ws, "--overwrite", "-q")
    assert r.exit_code == 0, r.output
    assert not (ws / "features").exists()
    # a workspace inside the source folder is never replaced
    inner = photos / "ws"
    assert run("ingest", photos, "--out", inner, "-q").exit_code == 0
    before = snapshot(photos)
    refused(run("ingest", photos, "--out", inner, "--overwrite"), inner, photos)
    assert snapshot(photos) == before


def test_kmeans_into_the_inputs_folder_deletes_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    x = np.random.default_rng(0).random((30, 4), dtype=np.float32)
    np.save(data / "x.npy", x)
    (data / "unrelated.csv").write_text("a,b\n1,2\n")
    before = snapshot(data)
    r = run("kmeans", data / "x.npy", "-k", 3, "--out", data, "--overwrite")
    refused(r, data, data / "x.npy")
    assert snapshot(data) == before
    # a folder of the user's that does not hold the input: still not ours
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep")
    r = run("kmeans", data / "x.npy", "-k", 3, "--out", other, "--overwrite")
    refused(r, other)
    assert "not written by clusterlens" in r.output
    assert (other / "keep.txt").read_text() == "keep"
    # its own earlier output is replaced, of course
    km = tmp_path / "km"
    assert run("kmeans", data / "x.npy", "-k", 3, "--out", km, "-q").exit_code == 0
    r = run("kmeans", data / "x.npy", "-k", 2, "--out", km, "--overwrite", "-q")
    assert r.exit_code == 0, r.output
    # ... but not by another command
    r = run("vocab", data / "x.npy", "-k", 2, "--out", km, "--overwrite")
    refused(r, km)
    assert "'kmeans' output" in r.output


def test_stages_never_replace_the_workspace(photos, tmp_path):
    ws = tmp_path / "ws"
    assert run("ingest", photos, "--out", ws, "-q").exit_code == 0
    assert run("features", "pixels", ws, "--size", 8, "-q").exit_code == 0
    assert run("cluster", ws, "--features", "pixels", "-k", 2, "-q").exit_code == 0
    before = snapshot(tmp_path)
    for args in (
        ("features", "pixels", ws, "--out", ws, "--overwrite"),
        ("features", "pixels", ws, "--out", ws / "features", "--overwrite"),
        ("features", "sift", ws, "--out", ws, "--overwrite"),
        ("export", ws, "--format", "csv", "--out", ws, "--overwrite"),
        ("cluster", ws, "--features", "pixels", "-k", 2, "--out", ws, "--overwrite"),
        ("features", "pixels", ws, "--out", photos.parent, "--overwrite"),
    ):
        refused(run(*args), args[args.index("--out") + 1])
        assert snapshot(tmp_path) == before, args
    # a stage replaces its own folder inside the workspace
    r = run("features", "pixels", ws, "--size", 6, "--overwrite", "-q")
    assert r.exit_code == 0, r.output
    # but not another stage's
    r = run(
        "features", "pixels", ws, "--out", ws / "clusters" / "pixels", "--overwrite"
    )
    refused(r, ws / "clusters" / "pixels")


def test_sigterm_removes_the_staging_folder(tmp_path):
    """A terminated run leaves no .partial folder and no output."""
    x = np.random.default_rng(0).random((200_000, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    exe = Path(sys.executable).with_name("clusterlens")
    proc = subprocess.Popen(
        [
            str(exe),
            "kmeans",
            str(tmp_path / "x.npy"),
            "-k",
            "256",
            "--max-iter",
            "300",
            "--out",
            str(tmp_path / "km"),
            "--quiet",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not list(tmp_path.glob(".km.partial-*")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".km.partial-*")), "the run never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err and "Interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
