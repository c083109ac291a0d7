"""The VAE baseline: training, determinism, persistence, planted clusters, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
from click.testing import CliRunner

from clusterlens.cli.main import cli
from clusterlens.cluster import KMeans
from clusterlens.exceptions import DataValidationError
from clusterlens.features import VaeModel, fit_vae
from clusterlens.metrics import adjusted_rand


def _blobs(n: int = 450, d: int = 64, seed: int = 0):
    """Noisy copies of 3 random binary 8x8 'images'."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((3, d)) < 0.35).astype(np.float32)
    y = rng.integers(0, 3, n)
    X = np.clip(protos[y] + rng.normal(0, 0.15, (n, d)), 0, 1).astype(np.float32)
    return X, y


def test_trains_and_recovers_planted_clusters():
    X, y = _blobs()
    m = fit_vae(X, latent=4, hidden=(64, 32), epochs=15, batch_size=64)
    losses = [h["loss"] for h in m.history]
    assert len(losses) == 15 and losses[-1] < 0.8 * losses[0]
    Z = m.transform(X)
    assert Z.shape == (450, 4) and Z.dtype == np.float32
    pred = KMeans(3, n_init=5, random_state=0).fit(Z).labels_
    assert adjusted_rand(y, pred) > 0.95


def test_same_seed_same_features_and_round_trip(tmp_path):
    X, _ = _blobs(200)
    kw = {"latent": 3, "hidden": (32,), "epochs": 3, "random_state": 7}
    a, b = fit_vae(X, **kw), fit_vae(X, **kw)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    c = fit_vae(X, **{**kw, "random_state": 8})
    assert not np.array_equal(a.transform(X), c.transform(X))
    a.save(tmp_path / "m")
    back = VaeModel.load(tmp_path / "m")
    np.testing.assert_array_equal(back.transform(X), a.transform(X))
    assert back.history == a.history and back.hidden == (32,)
    with pytest.raises(DataValidationError, match="not a VAE"):
        (tmp_path / "x.json").write_text(json.dumps({"format": "other"}))
        np.savez(tmp_path / "x.npz", w=np.zeros(1))
        VaeModel.load(tmp_path / "x")


def test_bad_input():
    X, _ = _blobs(50)
    with pytest.raises(DataValidationError, match=r"pixels in \[0, 1\]"):
        fit_vae(X * 255, epochs=1)
    Xn = X.copy()
    Xn[3, 3] = np.nan
    with pytest.raises(DataValidationError, match="NaN"):
        fit_vae(Xn, epochs=1)
    m = fit_vae(X, latent=2, hidden=(8,), epochs=1)
    with pytest.raises(DataValidationError, match="trained on 64"):
        m.transform(X[:, :10])


def test_cli_vae_then_cluster(tmp_path):
    from PIL import Image

    src = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for cls, on in (("dark", 40), ("bright", 215)):
        (src / cls).mkdir(parents=True)
        for i in range(12):
            img = np.clip(on + rng.normal(0, 20, (16, 16)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(src / cls / f"{i}.png")
    ws = tmp_path / "ws"
    run = CliRunner().invoke
    assert run(cli, ["ingest", str(src), "--out", str(ws), "-q"]).exit_code == 0
    r = run(
        cli,
        [
            "features",
            "vae",
            str(ws),
            "--size",
            "16",
            "--latent",
            "2",
            "--epochs",
            "15",
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["dim"] == 2 and info["n_items"] == 24
    assert np.load(ws / "features" / "vae" / "features.npy").shape == (24, 2)
    assert (ws / "features" / "vae" / "vae.npz").exists()
    r = run(
        cli,
        ["cluster", str(ws), "--features", "vae", "-k", "2", "--format", "json"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accuracy"] == 1.0  # dark vs bright
