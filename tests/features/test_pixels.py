"""Pixel features and PCA against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from clusterlens.exceptions import DataValidationError
from clusterlens.features import PcaModel, fit_pca, pixel_features


def test_pixel_features_scale():
    imgs = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    X = pixel_features(imgs)
    assert X.dtype == np.float32 and X.shape == (2, 6)
    np.testing.assert_allclose(X[1], np.arange(6, 12) / 255)


def test_pca_matches_sklearn_and_round_trips(tmp_path, global_random_seed):
    X = load_digits().data.astype(np.float32)
    model = fit_pca(X, 10, random_state=global_random_seed)
    Z = model.transform(X)
    ref = PCA(10, svd_solver="full").fit_transform(X)
    # components agree up to sign
    signs = np.sign((Z * ref).sum(0))
    np.testing.assert_allclose(Z * signs, ref, rtol=1e-3, atol=1e-3)
    model.save(tmp_path / "pca")
    again = PcaModel.load(tmp_path / "pca")
    np.testing.assert_array_equal(again.transform(X), Z)
    white = fit_pca(X, 5, whiten=True, random_state=0).transform(X)
    np.testing.assert_allclose(white.var(0, ddof=1), 1.0, rtol=1e-3)


def test_pca_too_many_components():
    with pytest.raises(DataValidationError, match="n_components=9 must be <="):
        fit_pca(np.zeros((8, 4)), 9)
