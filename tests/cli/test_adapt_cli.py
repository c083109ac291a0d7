"""``clusterlens adapt`` end to end on a tiny folder, then ``features cnn
--weights`` with the adapted backbone; and its bad input (issue #20)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

torch = pytest.importorskip("torch")

from clusterlens.cli.main import cli  # noqa: E402

TINY = ["--epochs", 1, "--batch-size", 8, "--image-size", 64, "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(r, *needles):
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines[-2].startswith("Error"), r.output
    assert lines[-1].startswith("hint:"), r.output
    for n in needles:
        assert n in lines[-2], lines[-2]
    assert "Traceback" not in r.output


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace of 20 distinct 40x48 colour images in two folders."""
    root = tmp_path_factory.mktemp("adapt-cli")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "imgs" / c).mkdir(parents=True)
        for i in range(10):
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((40, 48), Image.Resampling.BILINEAR)
            img.save(root / "imgs" / c / f"{i:02d}.png")
    w = root / "ws"
    assert run("ingest", root / "imgs", "--out", w, "--quiet").exit_code == 0
    return w


def test_adapt_then_embed_with_the_adapted_weights(ws, tmp_path):
    out = tmp_path / "adapted"
    r = run("adapt", ws, *TINY, "--out", out, "--seed", 0, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["schema"] == "clusterlens.adapt/1"
    assert doc["n_trained"] == 20 and doc["epochs"] == 1 and doc["steps"] == 2
    assert doc["device"] == "cpu" and np.isfinite(doc["loss_last"])
    assert {p.name for p in out.iterdir()} >= {"weights.npz", "model.json", "run.json"}
    meta = json.loads((out / "model.json").read_text())
    assert meta["image_size"] == 64 and meta["seed"] == 0
    assert len(meta["loss_per_epoch"]) == 1 and meta["device"] == "cpu"
    # a checkpoint per epoch beside the output, for --resume
    assert (tmp_path / "adapted-checkpoint" / "adapt-checkpoint.npz").is_file()

    feats = tmp_path / "cnn-adapted"
    r = run(
        "features", "cnn", ws, "--weights", out / "weights.npz", "--runtime",
        "torch", "--out", feats, "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    X = np.load(feats / "features.npy")
    assert X.shape == (20, 1280) and np.isfinite(X).all()
    params = json.loads((feats / "run.json").read_text())["parameters"]
    assert params["image_size"] == 64  # the adaptation's, from model.json

    # resuming the finished run (same options) trains nothing more
    r = run(
        "adapt", ws, *TINY, "--out", out, "--seed", 0, "--resume", "--overwrite",
        "--format", "json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["loss_last"] == doc["loss_last"]


def test_default_output_is_inside_the_workspace(ws):
    r = run("adapt", ws, *TINY, "--quiet")
    assert r.exit_code == 0, r.output
    assert (ws / "models" / "adapt-lite0" / "weights.npz").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_refused_without_a_gpu(ws, tmp_path):
    r = run("adapt", ws, "--device", "cuda", "--out", tmp_path / "x")
    _one_line_error(r, "--device 'cuda'", "CUDA is not available", "--device cpu")
    assert not (tmp_path / "x").exists()


def test_fewer_images_than_a_batch(ws, tmp_path):
    r = run("adapt", ws, "--device", "cpu", "--batch-size", 64, "--out", tmp_path / "x")
    _one_line_error(r, "has 20 images", "--batch-size 64", "--batch-size 20")
    assert not (tmp_path / "x").exists()


def test_resume_refuses_another_runs_checkpoint(ws, tmp_path):
    out = tmp_path / "a"
    assert run("adapt", ws, *TINY, "--out", out, "--quiet").exit_code == 0
    r = run("adapt", ws, *TINY, "--lr", 1e-3, "--out", out, "--resume", "--overwrite")
    _one_line_error(r, "another adaptation run", "without --resume")
    r = run("adapt", ws, *TINY, "--out", tmp_path / "b", "--resume")
    _one_line_error(r, "No adaptation checkpoint")
    assert not (tmp_path / "b").exists()
