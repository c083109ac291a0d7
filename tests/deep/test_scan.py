"""SCAN / IIC heads on frozen embeddings: the loss, neighbours, planted clusters,
determinism, model files and bad input (issue #20)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.datasets import make_blobs  # noqa: E402

from clusterlens.cluster import KMeans  # noqa: E402
from clusterlens.deep import (  # noqa: E402
    SCAN,
    EmbeddingPreprocessor,
    mine_neighbors,
    scan_loss,
)
from clusterlens.exceptions import (  # noqa: E402
    DataValidationError,
    InvalidParameterError,
    NotFittedError,
)
from clusterlens.metrics import clustering_accuracy  # noqa: E402


def anisotropic_blobs(seed: int, n: int = 900, k: int = 3, dim: int = 8):
    """scikit-learn's 'anisotropically distributed blobs' (where k-means fails),
    rotated into ``dim`` dimensions: elongated clusters with pure neighbours."""
    X2, y = make_blobs(n_samples=n, centers=k, random_state=170 + seed)
    X2 = X2 @ np.array([[0.6, -0.6], [-0.4, 0.8]])
    R = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))[0][:2]
    return (X2 @ R).astype(np.float32), y


FAST = dict(
    n_components=None,
    l2=False,
    epochs=20,
    batch_size=128,
    n_neighbors=10,
    noise=0.0,
    dropout=0.0,
    lr=1e-2,
    n_heads=4,
    hidden=0,
    self_label_epochs=3,
)


# --------------------------------------------------------------------------- #
# the loss
# --------------------------------------------------------------------------- #
def test_scan_loss_by_hand():
    # two rows, two clusters: p = (1, 0) / (0, 1) one-hot-ish, neighbours agree
    big = 30.0
    la = torch.tensor([[big, 0.0], [0.0, big]])
    cons_agree = scan_loss(la, la.clone(), entropy_weight=0.0)[1]
    assert float(cons_agree) == pytest.approx(0.0, abs=1e-9)
    # uniform predictions: <p, q> = 1/2, mean prediction uniform
    u = torch.zeros(4, 2)
    loss, cons, ent = scan_loss(u, u, entropy_weight=5.0)
    assert float(cons) == pytest.approx(math.log(2))
    assert float(ent) == pytest.approx(math.log(2))
    assert float(loss) == pytest.approx(math.log(2) - 5 * math.log(2))
    # per-head axis kept: (n, H, k) -> (H,)
    out = scan_loss(torch.zeros(3, 5, 4), torch.zeros(3, 5, 4))[0]
    assert out.shape == (5,)
    with pytest.raises(ValueError, match="same shape"):
        scan_loss(torch.zeros(3, 4), torch.zeros(2, 4))


def test_scan_loss_gradient_pulls_neighbours_together():
    la = torch.tensor([[2.0, 0.0]], requires_grad=True)
    lb = torch.tensor([[0.0, 2.0]], requires_grad=True)
    before = float(scan_loss(la, lb, entropy_weight=0.0)[1].detach())
    loss = scan_loss(la, lb, entropy_weight=0.0)[0]
    loss.backward()
    with torch.no_grad():
        after = float(
            scan_loss(la - 0.5 * la.grad, lb - 0.5 * lb.grad, entropy_weight=0.0)[1]
        )
    assert after < before


# --------------------------------------------------------------------------- #
# neighbours
# --------------------------------------------------------------------------- #
def test_mine_neighbors_equals_brute_force(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    Z = rng.normal(size=(300, 12)).astype(np.float32)
    got = mine_neighbors(Z, 7)
    d2 = ((Z[:, None, :].astype(np.float64) - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    want = np.argsort(d2, axis=1, kind="stable")[:, :7]
    assert got.shape == (300, 7) and got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_fit_uses_given_neighbours():
    X, _y = anisotropic_blobs(0, n=300)
    nb = mine_neighbors(X, 10)
    a = SCAN(3, random_state=0, **FAST).fit(X)
    b = SCAN(3, random_state=0, **FAST).fit(X, neighbors=nb)
    np.testing.assert_array_equal(a.neighbors_, nb)
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_extra_neighbours_fill_the_last_columns():
    X, _y = anisotropic_blobs(0, n=300)
    nb = mine_neighbors(X, 10)
    extra = np.random.default_rng(0).integers(0, 300, (300, 3))
    m = SCAN(3, random_state=0, **{**FAST, "epochs": 1}).fit(X, extra_neighbors=extra)
    # the first 7 mined in X as without them, the last 3 the given ones
    np.testing.assert_array_equal(m.neighbors_[:, :7], nb[:, :7])
    np.testing.assert_array_equal(m.neighbors_[:, 7:], extra)
    with pytest.raises(InvalidParameterError, match="not both"):
        SCAN(3, **FAST).fit(X, neighbors=nb, extra_neighbors=extra)
    with pytest.raises(DataValidationError, match="at most n_neighbors=10"):
        SCAN(3, **FAST).fit(X, extra_neighbors=np.zeros((300, 11), np.int64))
    with pytest.raises(DataValidationError, match="row indices"):
        SCAN(3, **FAST).fit(X, extra_neighbors=extra + 300)


# --------------------------------------------------------------------------- #
# planted clusters
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("objective", ["scan", "iic"])
def test_recovers_elongated_clusters_where_kmeans_fails(objective):
    accs, km_accs = [], []
    for seed in (0, 2):
        X, y = anisotropic_blobs(seed)
        km = KMeans(3, n_init=10, random_state=0).fit(X)
        model = SCAN(3, objective=objective, random_state=0, **FAST).fit(X, y)
        km_accs.append(clustering_accuracy(y, km.labels_))
        accs.append(clustering_accuracy(y, model.labels_))
    assert max(km_accs) < 0.86, f"k-means should fail here: {km_accs}"
    for acc, km_acc in zip(accs, km_accs, strict=True):
        assert acc >= 0.93, f"{objective} accuracy {acc:.3f} < 0.93"
        assert acc >= km_acc + 0.05, (
            f"{objective} {acc:.3f} not above k-means {km_acc:.3f}"
        )


def test_history_reports_scores_without_training_on_them():
    X, y = anisotropic_blobs(0, n=300)
    a = SCAN(3, random_state=1, **FAST).fit(X, y)
    b = SCAN(3, random_state=1, **FAST).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    stages = [h["stage"] for h in a.history_]
    assert stages == ["scan"] * 20 + ["self-label"] * 3
    assert all("accuracy" in h for h in a.history_)
    assert not any("accuracy" in h for h in b.history_)
    assert 0 <= a.head_ < 4 and a.history_[19]["head"] == a.head_


def test_overclustering_splits_classes_into_pure_clusters():
    X, y = anisotropic_blobs(0, n=600)
    model = SCAN(9, random_state=0, **FAST).fit(X)
    used = np.unique(model.labels_)
    assert used.size >= 6, f"only {used.size} of 9 clusters used"
    # every cluster is (almost) one class: purity of the overclustering
    counts = np.zeros((9, 3))
    np.add.at(counts, (model.labels_, y), 1)
    purity = counts.max(axis=1).sum() / y.size
    assert purity >= 0.95, f"overclustering purity {purity:.3f} < 0.95"


def test_views_are_used_as_augmentations():
    X, y = anisotropic_blobs(0, n=300)
    mirror = X + np.random.default_rng(0).normal(0, 0.05, X.shape).astype(np.float32)
    a = SCAN(3, random_state=0, **FAST).fit(X, views=mirror[None])
    b = SCAN(3, random_state=0, **FAST).fit(X)
    assert clustering_accuracy(y, a.labels_) >= 0.9
    wa = a.net_.state_dict()["linear.weight"]
    wb = b.net_.state_dict()["linear.weight"]
    assert not torch.equal(wa, wb)


# --------------------------------------------------------------------------- #
# determinism, files
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("hidden", [0, 16])
def test_same_seed_same_model(hidden):
    X, _ = anisotropic_blobs(0, n=300)
    params = {**FAST, "hidden": hidden, "epochs": 5, "dropout": 0.1, "noise": 0.3}
    a = SCAN(3, random_state=7, **params).fit(X)
    b = SCAN(3, random_state=7, **params).fit(X)
    c = SCAN(3, random_state=8, **params).fit(X)
    sa, sb, sc = (m.net_.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    np.testing.assert_array_equal(a.labels_, b.labels_)


@pytest.mark.parametrize("hidden", [0, 16])
def test_save_load_round_trip_without_pickle(tmp_path, hidden):
    X, _ = anisotropic_blobs(0, n=300)
    model = SCAN(3, random_state=0, **{**FAST, "hidden": hidden, "epochs": 3}).fit(X)
    npz, js = model.save(tmp_path / "m")
    with np.load(npz, allow_pickle=False) as f:
        assert "pre/components" in f.files
    meta = json.loads(js.read_text())
    assert (
        meta["format"] == "clusterlens.scan"
        and meta["attributes"]["head"] == model.head_
    )
    back = SCAN.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), model.labels_)
    np.testing.assert_allclose(model.proba_, back.predict_proba(X), atol=1e-6)


def test_load_rejects_a_damaged_description(tmp_path):
    X, _ = anisotropic_blobs(0, n=300)
    _, js = SCAN(3, random_state=0, **{**FAST, "epochs": 2}).fit(X).save(tmp_path / "m")
    meta = json.loads(js.read_text())
    meta["attributes"]["head"] = 99
    js.write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match="'head' is 99"):
        SCAN.load(tmp_path / "m")


# --------------------------------------------------------------------------- #
# the preprocessing (PCA + L2)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "n, exact_max",
    [(40, 4096), (400, 4096), (400, 30)],  # Gram, covariance, randomized
)
def test_preprocessing_projects_on_scikit_learns_principal_axes(
    n, exact_max, monkeypatch
):
    from sklearn.decomposition import PCA

    import clusterlens.deep._scan as scan_module

    monkeypatch.setattr(scan_module, "EXACT_PCA_MAX", exact_max)
    monkeypatch.setattr(scan_module, "_ROWS", 64)  # several chunks

    rng = np.random.default_rng(n)
    # a decaying spectrum, so the top axes are well separated
    X = (rng.normal(size=(n, 120)) * np.geomspace(10, 0.1, 120)).astype(np.float32)
    pre = EmbeddingPreprocessor(16, whiten=True, l2=False).fit(X)
    ref = PCA(16, whiten=True, svd_solver="full").fit(X.astype(np.float64))
    # the same axes up to sign, the same variances (so whitening agrees);
    # the randomized finder to within its approximation
    tol = 1e-8 if exact_max > n else 1e-4
    cos = np.abs(np.sum(pre.components_ * ref.components_.T, axis=0))
    np.testing.assert_allclose(cos, 1.0, atol=tol)
    np.testing.assert_allclose(
        pre.scale_, 1.0 / np.sqrt(ref.explained_variance_), rtol=tol
    )
    Z, Zref = pre.transform(X), ref.transform(X.astype(np.float64))
    np.testing.assert_allclose(np.abs(Z), np.abs(Zref), atol=100 * tol + 1e-4)
    # unit rows with l2, and the same rows however the data were ordered
    pre_l2 = EmbeddingPreprocessor(16).fit(X)
    np.testing.assert_allclose(
        np.linalg.norm(pre_l2.transform(X), axis=1), 1.0, rtol=1e-5
    )
    perm = rng.permutation(n)
    again = EmbeddingPreprocessor(16).fit(X[perm])
    np.testing.assert_allclose(again.transform(X), pre_l2.transform(X), atol=1e-5)


# --------------------------------------------------------------------------- #
# bad input
# --------------------------------------------------------------------------- #
def test_head_refuses_embeddings_of_another_width():
    X, _ = anisotropic_blobs(0, n=300)
    model = SCAN(3, random_state=0, **{**FAST, "epochs": 2}).fit(X)
    with pytest.raises(
        DataValidationError, match="X has 5 features, but this SCAN head"
    ):
        model.predict(X[:, :5])


def test_more_clusters_than_items():
    X, _ = anisotropic_blobs(0, n=300)
    with pytest.raises(
        DataValidationError, match="n_samples=8 should be > n_clusters=10"
    ):
        SCAN(10, **FAST).fit(X[:8])


def test_bad_parameters_and_inputs():
    X, y = anisotropic_blobs(0, n=300)
    with pytest.raises(InvalidParameterError, match="'objective' parameter of SCAN"):
        SCAN(3, objective="scna").fit(X)
    with pytest.raises(InvalidParameterError, match="'confidence' parameter"):
        SCAN(3, confidence=1.0).fit(X)
    with pytest.raises(DataValidationError, match="must be 2-D"):
        SCAN(3).fit(X[:, 0])
    bad = X.copy()
    bad[4, 1] = np.nan
    with pytest.raises(DataValidationError, match="NaN or infinity in 1 rows"):
        SCAN(3).fit(bad)
    with pytest.raises(DataValidationError, match="views must have shape"):
        SCAN(3).fit(X, views=X[:, :4])
    with pytest.raises(DataValidationError, match="neighbors must hold row indices"):
        SCAN(3).fit(X, neighbors=np.full((300, 20), 300))
    with pytest.raises(DataValidationError, match="y must have shape"):
        SCAN(3).fit(X, y[:5])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        SCAN(3).predict(X)
