"""SIFT descriptors: shapes, dtype, keypoint cap, RootSIFT, resize policy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_sample_image

from clusterlens.exceptions import DataValidationError
from clusterlens.features import resize_for_sift, sift_descriptors

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def china() -> np.ndarray:
    return load_sample_image("china.jpg")  # a real 427x640 photo shipped with sklearn


def test_shapes_dtype_and_cap(china):
    r = sift_descriptors(china, max_keypoints=300)
    assert r.descriptors.dtype == np.uint8 and r.descriptors.shape == (300, 128)
    assert r.keypoints.dtype == np.float32 and r.keypoints.shape == (300, 4)
    assert (r.keypoints[:, :2] >= 0).all() and (r.keypoints[:, :2] <= 1).all()
    small = sift_descriptors(china, max_keypoints=7)
    assert small.descriptors.shape == (7, 128)


def test_matches_opencv_on_the_same_image(china):
    """With no resizing, the descriptors are OpenCV's for the strongest keypoints."""
    gray = cv2.cvtColor(china, cv2.COLOR_RGB2GRAY)
    kps, ref = cv2.SIFT_create().detectAndCompute(gray, None)
    r = sift_descriptors(china, max_keypoints=10_000, max_size=None)
    assert r.descriptors.shape == ref.shape
    np.testing.assert_array_equal(r.descriptors, ref)
    np.testing.assert_allclose(
        r.keypoints[:, 0] * gray.shape[1], [k.pt[0] for k in kps]
    )


def test_rootsift_is_sqrt_of_l1_normalised(china):
    plain = sift_descriptors(china, max_keypoints=50)
    root = sift_descriptors(china, max_keypoints=50, rootsift=True)
    d = plain.descriptors.astype(np.float64)
    expected = np.minimum(np.round(np.sqrt(d / d.sum(1, keepdims=True)) * 512), 255)
    np.testing.assert_array_equal(root.descriptors, expected.astype(np.uint8))


def test_blank_and_tiny_images_give_no_keypoints():
    for img in (np.zeros((64, 64), np.uint8), np.full((6, 5, 3), 200, np.uint8)):
        r = sift_descriptors(img)
        assert r.descriptors.shape == (0, 128) and r.keypoints.shape == (0, 4)


def test_resize_policy():
    img = np.zeros((100, 1000), np.uint8)
    assert resize_for_sift(img, max_size=500).shape == (50, 500)
    assert resize_for_sift(np.zeros((28, 28), np.uint8), min_size=112).shape == (
        112,
        112,
    )
    assert resize_for_sift(img, max_size=None) is img


def test_bad_image():
    with pytest.raises(DataValidationError, match="must be uint8"):
        sift_descriptors(np.zeros((8, 8), np.float32))


@pytest.mark.filterwarnings("ignore::clusterlens.exceptions.DataQualityWarning")
def test_interrupted_extraction_resumes_to_the_same_output(tmp_path, monkeypatch):
    """A crash after the first checkpointed chunk resumes there, bit for bit."""
    import clusterlens.features._sift as sift_mod
    from clusterlens.io import create_workspace
    from clusterlens.pipelines import features as feat

    rng = np.random.default_rng(0)
    imgs = (rng.random((70, 48, 48)) * 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", images=imgs)
    (tmp_path / "ws").mkdir()
    ws = create_workspace(tmp_path / "d.npz", tmp_path / "ws")
    fresh = feat.run_sift_features(ws, tmp_path / "fresh", max_keypoints=20, n_jobs=1)

    real = sift_mod.sift_descriptors
    calls = {"n": 0}

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] > 66:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sift_mod, "sift_descriptors", crashing)
    with pytest.raises(KeyboardInterrupt):
        feat.run_sift_features(ws, tmp_path / "out", max_keypoints=20, n_jobs=1)
    assert not (tmp_path / "out").exists() and (tmp_path / ".out.work").is_dir()
    monkeypatch.setattr(sift_mod, "sift_descriptors", real)
    resumed = feat.run_sift_features(ws, tmp_path / "out", max_keypoints=20, n_jobs=1)
    assert resumed["resumed_from_item"] == 64
    assert not (tmp_path / ".out.work").exists()
    for name in ("descriptors.npy", "offsets.npy", "keypoints.npy"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "out" / name), np.load(tmp_path / "fresh" / name)
        )
    assert fresh["n_descriptors"] == resumed["n_descriptors"]
