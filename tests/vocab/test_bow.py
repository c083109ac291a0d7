"""Bags of visual words: quantization, counts, tf-idf against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer

from clusterlens.exceptions import DataValidationError
from clusterlens.vocab import (
    VisualVocabulary,
    bow_counts,
    spatial_cells,
    tfidf_transform,
)


@pytest.fixture
def real_sift(shared_data):
    """Real OpenCV SIFT descriptors of the first 12 COCO sample photos."""
    d = np.load(shared_data / "sift" / "coco128_sift_opencv.npz")
    keep = d["image_index"] < 12
    return d["descriptors"][keep], d["image_index"][keep]


def test_quantization_equals_brute_force_nearest_centroid(
    real_sift, global_random_seed
):
    X, _ = real_sift
    rng = np.random.default_rng(global_random_seed)
    centers = X[rng.choice(X.shape[0], 64, replace=False)].astype(np.float32)
    centers += rng.normal(0, 3, centers.shape).astype(np.float32)  # break exact ties
    words = VisualVocabulary.from_centers(centers).transform(X)
    d2 = (
        (X.astype(np.float64)[:, None, :] - centers[None].astype(np.float64)) ** 2
    ).sum(-1)
    np.testing.assert_array_equal(words, d2.argmin(1))


def test_counts_per_image_match_bincount(real_sift):
    X, image = real_sift
    rng = np.random.default_rng(0)
    words = rng.integers(0, 50, X.shape[0])
    offsets = np.concatenate([[0], np.cumsum(np.bincount(image, minlength=12))])
    C = bow_counts(words, offsets, 50)
    assert C.shape == (12, 50) and sp.isspmatrix_csr(C)
    for i in (0, 5, 11):
        np.testing.assert_array_equal(
            C[i].toarray().ravel(), np.bincount(words[image == i], minlength=50)
        )


def test_tfidf_equals_sklearn(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    C = rng.poisson(0.4, size=(30, 40)).astype(np.float64)
    C[[3, 17]] = 0  # images without keypoints keep an empty histogram
    C[:, 5] = 0  # a word nobody uses
    for sublinear in (False, True):
        ref = TfidfTransformer(sublinear_tf=sublinear).fit_transform(C).toarray()
        ours = tfidf_transform(sp.csr_matrix(C), sublinear_tf=sublinear).toarray()
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)
    assert not ours[3].any()


def test_spatial_cells_sum_to_image_counts():
    words = np.array([0, 1, 1, 2, 0])
    offsets = np.array([0, 3, 3, 5])
    xy = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.2, 0.7], [0.6, 0.6]])
    cells, item = spatial_cells(words, offsets, xy, 3, 2)
    assert cells.shape == (12, 3)
    np.testing.assert_array_equal(item, np.repeat([0, 1, 2], 4))
    summed = np.add.reduceat(cells.toarray(), [0, 4, 8], axis=0)
    np.testing.assert_array_equal(summed, bow_counts(words, offsets, 3).toarray())
    # item 0: word 0 top-left, word 1 top-right, word 1 bottom-right
    np.testing.assert_array_equal(
        cells[0:4].toarray(), [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 0]]
    )


def test_bad_offsets_and_words():
    with pytest.raises(DataValidationError, match="offsets must be non-decreasing"):
        bow_counts([0, 1], [0, 3], 2)
    with pytest.raises(DataValidationError, match=r"words must lie in \[0, 2\)"):
        bow_counts([0, 5], [0, 2], 2)


def test_wrong_dimension_vocabulary_is_a_clear_error():
    vocab = VisualVocabulary.from_centers(np.zeros((4, 64), np.float32))
    with pytest.raises(DataValidationError, match="128 dimensions but the vocabulary"):
        vocab.transform(np.zeros((3, 128), np.uint8))
