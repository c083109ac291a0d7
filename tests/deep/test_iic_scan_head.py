"""IIC with ``cluster_head="scan"``: a SCAN head on the trained trunk's embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.deep.test_iic import _small, shapes  # noqa: E402

from clusterlens.deep import IIC, SCAN  # noqa: E402
from clusterlens.deep._embed import iic_trunk_features  # noqa: E402
from clusterlens.deep._iic import pixel_rows  # noqa: E402
from clusterlens.exceptions import (  # noqa: E402
    DataValidationError,
    InvalidParameterError,
)
from clusterlens.metrics import clustering_accuracy  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return shapes(40, seed=5)


@pytest.fixture(scope="module")
def with_scan(data):
    X, y = data
    return _small(epochs=2, cluster_head="scan").fit(X, y)


def test_the_scan_head_on_the_trunk_predicts(data, with_scan):
    X, y = data
    assert isinstance(with_scan.scan_head_, SCAN)
    T = iic_trunk_features(with_scan, X)
    assert with_scan.scan_head_.n_features_in_ == T.shape[1]
    np.testing.assert_array_equal(with_scan.predict(X), with_scan.labels_)
    np.testing.assert_array_equal(with_scan.labels_, with_scan.scan_head_.predict(T))
    np.testing.assert_allclose(
        with_scan.predict_proba(X), with_scan.scan_head_.predict_proba(T), rtol=1e-6
    )
    # fit keeps the training images' probabilities: no second pass needed
    np.testing.assert_allclose(with_scan.proba_, with_scan.predict_proba(X), atol=1e-6)
    # The IIC part is the same run as with the IIC head (same seed).
    plain = _small(epochs=2).fit(X, y)
    assert plain.scan_head_ is None
    assert [h["loss"] for h in plain.history_] == [
        h["loss"] for h in with_scan.history_
    ]
    # The four planted shapes are found from the trunk's neighbourhoods, where
    # this short run's sub-heads are still near chance (0.25 here).
    head_acc = clustering_accuracy(y, plain.labels_)
    assert clustering_accuracy(y, with_scan.labels_) >= max(0.9, head_acc + 0.3)


def test_same_seed_same_clusters_from_the_scan_head(data, with_scan):
    X, y = data
    again = _small(epochs=2, cluster_head="scan").fit(X, y)
    np.testing.assert_array_equal(again.labels_, with_scan.labels_)
    np.testing.assert_array_equal(again.predict_proba(X), with_scan.predict_proba(X))


def test_model_with_a_scan_head_round_trip_without_pickle(tmp_path, data, with_scan):
    X, _ = data
    npz, js = with_scan.save(tmp_path / "model")
    with np.load(npz, allow_pickle=False) as z:
        assert any(k.startswith("scan/pre/") for k in z.files)
        assert all(z[k].dtype != object for k in z.files)
    loaded = IIC.load(tmp_path / "model", device="cpu")
    assert loaded.cluster_head == "scan" and isinstance(loaded.scan_head_, SCAN)
    np.testing.assert_array_equal(loaded.predict(X), with_scan.labels_)
    np.testing.assert_allclose(loaded.predict_proba(X), with_scan.predict_proba(X))
    # A description that names a SCAN head but lost it is refused.
    meta = json.loads(js.read_text())
    del meta["attributes"]["scan_head"]
    js.write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match="holds no SCAN head"):
        IIC.load(tmp_path / "model", device="cpu")


def test_a_finished_run_resumes_into_the_scan_head(tmp_path, data, with_scan):
    X, y = data
    ckpt = tmp_path / "ckpt"
    plain = _small(epochs=2, checkpoint_dir=ckpt).fit(X, y)
    assert plain.scan_head_ is None
    resumed = _small(
        epochs=2, checkpoint_dir=ckpt, resume=True, cluster_head="scan"
    ).fit(X, y)
    np.testing.assert_array_equal(resumed.labels_, with_scan.labels_)
    np.testing.assert_allclose(resumed.proba_, with_scan.proba_, atol=1e-6)


def test_unknown_cluster_head_is_a_clear_error(data):
    X, _ = data
    with pytest.raises(InvalidParameterError, match="cluster_head"):
        _small(cluster_head="kmeans").fit(X)
    # as many images as clusters: refused before training, not after it
    with pytest.raises(DataValidationError, match="needs more images than clusters"):
        _small(cluster_head="scan").fit(X[:4])


def test_the_scan_head_is_the_default_and_older_files_keep_the_subhead(
    tmp_path, data, with_scan
):
    X, y = data
    assert IIC(4).cluster_head == "scan"
    # left out, the head is the SCAN head: the same run as naming it
    params = _small(epochs=2).get_params()
    del params["cluster_head"]
    default = IIC(**params).fit(X, y)
    assert default.cluster_head == "scan"
    np.testing.assert_array_equal(default.labels_, with_scan.labels_)
    # a model file written before the option (no cluster_head in its
    # parameters) predicts with its sub-head, as it did
    plain = _small(epochs=2).fit(X, y)
    _, js = plain.save(tmp_path / "old")
    meta = json.loads(js.read_text())
    del meta["params"]["cluster_head"], meta["params"]["pixel_neighbors"]
    js.write_text(json.dumps(meta))
    old = IIC.load(tmp_path / "old", device="cpu")
    assert old.cluster_head == "iic" and old.scan_head_ is None
    np.testing.assert_array_equal(old.predict(X), plain.labels_)
    # one with a SCAN head from before pixel_neighbors: its head learnt from
    # the trunk's neighbours only, which its parameters now say
    _, js = with_scan.save(tmp_path / "old-scan")
    meta = json.loads(js.read_text())
    del meta["params"]["pixel_neighbors"]
    js.write_text(json.dumps(meta))
    old = IIC.load(tmp_path / "old-scan", device="cpu")
    assert old.pixel_neighbors == 0 and isinstance(old.scan_head_, SCAN)
    np.testing.assert_array_equal(old.predict(X), with_scan.labels_)


def _reference_neighbors(X, k):
    """Centre, PCA (scikit-learn), L2, exact k-NN without the row itself."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    Z = PCA(min(128, *X.shape)).fit_transform(X.astype(np.float64))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z)[1]
    return idx[:, 1:]


def _overlap(a, b):
    return np.mean([len(set(r) & set(q)) / len(r) for r, q in zip(a, b, strict=True)])


def test_the_scan_head_learns_from_trunk_and_pixel_neighbours(data, with_scan):
    X, _ = data
    nb = with_scan.scan_head_.neighbors_
    p = with_scan.pixel_neighbors
    assert p == 5 and nb.shape == (X.shape[0], 20)
    # the first 15: the trunk's nearest in SCAN's space; the last 5: the
    # images' own (16 px: no shrinking), both against brute force
    T = iic_trunk_features(with_scan, X)
    assert _overlap(nb[:, : 20 - p], _reference_neighbors(T, 20 - p)) >= 0.98
    pixels = X.reshape(len(X), -1) / 255.0
    assert _overlap(nb[:, 20 - p :], _reference_neighbors(pixels, p)) >= 0.98
    # 0 leaves the head to mine the trunk's own 20, as SCAN alone does
    trunk_only = _small(epochs=2, cluster_head="scan", pixel_neighbors=0).fit(X)
    np.testing.assert_array_equal(
        trunk_only.scan_head_.neighbors_,
        SCAN(4, random_state=0).fit(T, neighbors=None).neighbors_,
    )
    with pytest.raises(InvalidParameterError, match="pixel_neighbors"):
        _small(pixel_neighbors=-1).fit(X)


def test_pixel_rows_shrink_by_area_averaging():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 1, 64, 48), dtype=np.uint8)
    rows = pixel_rows(torch.from_numpy(imgs))
    blocks = imgs.reshape(3, 1, 32, 2, 24, 2).mean(axis=(3, 5)) / 255.0
    np.testing.assert_allclose(rows, blocks.reshape(3, -1), atol=1e-6)
    small = rng.integers(0, 256, (2, 3, 20, 12), dtype=np.uint8)
    np.testing.assert_allclose(
        pixel_rows(torch.from_numpy(small)), small.reshape(2, -1) / 255.0, atol=1e-7
    )
