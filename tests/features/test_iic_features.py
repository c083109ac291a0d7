"""k-NN smoothing, and `clusterlens features iic` (a trained IIC's embeddings)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.neighbors import NearestNeighbors

from clusterlens.cli.main import cli
from clusterlens.exceptions import DataValidationError
from clusterlens.features import fit_pca, knn_smooth


def test_knn_smooth_matches_a_reference_average():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    nn = NearestNeighbors(n_neighbors=7).fit(X).kneighbors(X)[1]
    expected = X[nn].mean(axis=1)
    np.testing.assert_allclose(knn_smooth(X, 1, 7), expected, rtol=1e-5, atol=1e-6)
    two = knn_smooth(X, 2, 7)
    np.testing.assert_allclose(two, expected[nn].mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(knn_smooth(X, 0, 7), X)
    whole = knn_smooth(X, 1, 300)  # every row's neighbours are all rows
    np.testing.assert_allclose(whole, np.broadcast_to(X.mean(0), X.shape), atol=1e-5)


def test_knn_smooth_bad_input():
    with pytest.raises(DataValidationError, match="NaN"):
        knn_smooth(np.array([[0.0, np.nan], [1.0, 2.0]]), 1, 2)
    with pytest.raises(DataValidationError, match="2-D"):
        knn_smooth(np.zeros(4), 1, 2)


def test_cli_features_iic_equals_the_library(tmp_path):
    pytest.importorskip("torch")
    from PIL import Image

    from clusterlens.deep import IIC, Transforms
    from clusterlens.deep._embed import iic_trunk_features

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    X = rng.integers(0, 40, (40, 16, 16)).astype(np.uint8)
    X[y == 0, 7:10, 3:-3] = 230
    X[y == 1, 3:-3, 7:10] = 230
    src = tmp_path / "imgs"
    for i, (img, lab) in enumerate(zip(X, y, strict=True)):
        (src / f"c{lab}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(src / f"c{lab}" / f"{i:03d}.png")
    tf = Transforms(input_size=16, crop_sizes=(0.75, 1.0), eval_crop=1.0, rotation=5.0)
    model = IIC(
        2,
        n_clusters_over=4,
        n_heads=2,
        n_repeats=1,
        batch_size=20,
        epochs=1,
        transforms=tf,
        random_state=0,
        n_threads=1,
        device="cpu",
    ).fit(X)
    model.save(tmp_path / "iic")
    ws = tmp_path / "ws"
    run = CliRunner().invoke
    assert run(cli, ["ingest", str(src), "--out", str(ws), "-q"]).exit_code == 0
    r = run(
        cli,
        [
            "features",
            "iic",
            str(ws),
            "--model",
            str(tmp_path / "iic"),
            "--pca",
            "4",
            "--smooth",
            "1",
            "--neighbors",
            "3",
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["dim"] == 4
    got = np.load(ws / "features" / "iic" / "features.npy")
    # the same pipeline by hand, in the workspace's item order
    items = json.loads((ws / "features" / "iic" / "run.json").read_text())
    assert items["parameters"]["smooth"] == 1
    import pyarrow.parquet as pq

    ids = pq.read_table(ws / "items.parquet")["item_id"].to_pylist()
    order = [int(s.split("/")[-1][:3]) for s in ids]
    T = iic_trunk_features(IIC.load(tmp_path / "iic", device="cpu"), X[order])
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    Z = fit_pca(T, 4, random_state=0).transform(T)
    np.testing.assert_allclose(got, knn_smooth(Z, 1, 3), rtol=1e-4, atol=1e-4)
    r = run(
        cli,
        [
            "features",
            "iic",
            str(ws),
            "--model",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert r.exit_code != 0 and "Traceback" not in r.output
