"""IIC trunk features: what every head reads, for over-clustering."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clusterlens.deep import IIC, Transforms  # noqa: E402
from clusterlens.deep._embed import iic_trunk_features  # noqa: E402
from clusterlens.exceptions import (  # noqa: E402
    DataValidationError,
    InvalidParameterError,
    NotFittedError,
)


def _images(n: int, seed: int, size: int = 16):
    """Bars (horizontal / vertical) with noise, uint8, and their kind."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
    c = size // 2
    X[y == 0, c - 1 : c + 2, 3:-3] = 230
    X[y == 1, 3:-3, c - 1 : c + 2] = 230
    return X, y


@pytest.fixture(scope="module")
def model():
    X, _ = _images(60, seed=0)
    tf = Transforms(input_size=16, crop_sizes=(0.75, 1.0), eval_crop=1.0, rotation=5.0)
    return IIC(
        2,
        n_clusters_over=4,
        n_heads=2,
        n_repeats=1,
        batch_size=30,
        epochs=1,
        transforms=tf,
        random_state=0,
        n_threads=1,
        device="cpu",
        cluster_head="iic",  # the sub-heads are compared with the trunk's output
    ).fit(X)


def test_heads_of_the_trunk_features_are_predict_proba(model):
    X, _ = _images(50, seed=1)
    F = iic_trunk_features(model, X, batch_size=7)  # several batches
    assert F.dtype == np.float32
    assert F.shape == (50, model.net_.trunk.out_features(16))
    with torch.no_grad():
        p = model.net_.heads["main"](torch.from_numpy(F))[:, model.head_].numpy()
    np.testing.assert_allclose(p, model.predict_proba(X), rtol=1e-4, atol=1e-6)
    # deterministic, batch size does not matter, model left in training mode
    np.testing.assert_allclose(F, iic_trunk_features(model, X), rtol=1e-5, atol=1e-6)
    assert model.net_.training


def test_saved_and_loaded_model_gives_the_same_features(model, tmp_path):
    X, _ = _images(20, seed=2)
    model.save(tmp_path / "m")
    again = IIC.load(tmp_path / "m", device="cpu")
    np.testing.assert_allclose(
        iic_trunk_features(again, X),
        iic_trunk_features(model, X),
        rtol=1e-5,
        atol=1e-6,
    )


def test_bad_input(model):
    X, _ = _images(5, seed=3)
    with pytest.raises(NotFittedError):
        iic_trunk_features(IIC(2), X)
    with pytest.raises(InvalidParameterError, match="fitted clusterlens IIC"):
        iic_trunk_features("model", X)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="batch_size"):
        iic_trunk_features(model, X, batch_size=0)
    with pytest.raises(DataValidationError, match="Resize"):
        iic_trunk_features(model, _images(5, seed=3, size=20)[0])
