"""The plain-torch transformations: shapes, ranges, determinism, Sobel."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clusterlens.deep import Transforms, default_transforms, sobel  # noqa: E402


def test_clean_view_is_a_centred_rescaled_crop():
    img = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    img[0, 0, 4:24, 4:24] = 255  # a centred 20x20 square fills the crop
    tf = Transforms(input_size=24, eval_crop=20 / 28)
    out = tf.clean(img)
    assert out.shape == (1, 1, 24, 24)
    assert out[0, 0, 2:22, 2:22].min() > 0.99
    full = Transforms(input_size=28, eval_crop=1.0).clean(img)
    np.testing.assert_allclose(full.numpy(), img.float().numpy() / 255, atol=1e-6)


def test_random_views_are_seeded_and_in_range(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    imgs = torch.from_numpy(rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8))
    tf = default_transforms(32, 32, 3, sobel=False)
    a = tf.random(imgs, torch.Generator().manual_seed(1))
    b = tf.random(imgs, torch.Generator().manual_seed(1))
    c = tf.random(imgs, torch.Generator().manual_seed(2))
    assert a.shape == (6, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_flip_only_transformation_mirrors_the_image():
    img = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8) / 64
    tf = Transforms(
        input_size=8,
        crop_sizes=(1.0,),
        rotation=0.0,
        flip=True,
        brightness=0,
        contrast=0,
    )
    seen = set()
    for seed in range(8):
        out = tf.random(img, torch.Generator().manual_seed(seed))
        if torch.allclose(out, img, atol=1e-6):
            seen.add("same")
        elif torch.allclose(out, img.flip(3), atol=1e-6):
            seen.add("flipped")
    assert seen == {"same", "flipped"}


def test_sobel_responds_to_edges_only():
    img = torch.zeros(1, 1, 8, 8)
    img[..., 4:] = 1.0  # a vertical edge
    e = sobel(img)
    assert e.shape == (1, 2, 8, 8)
    assert e[0, 0, :, 3:5].abs().min() > 0  # horizontal gradient at the edge
    assert e[0, 0, :, :2].abs().max() == 0 and e[0, 1].abs().max() == 0
    rgb = Transforms(input_size=8, eval_crop=1.0, sobel=True, include_rgb=True)
    assert rgb.clean(torch.zeros(2, 3, 8, 8)).shape == (2, 5, 8, 8)
    assert rgb.out_channels(3) == 5 and rgb.out_channels(1) == 2


def test_default_transforms_follow_the_paper():
    grey = default_transforms(28, 28, 1)
    assert grey.input_size == 24 and not grey.flip and not grey.sobel
    assert sorted(round(c * 28) for c in grey.crop_sizes) == [16, 20, 24]
    rgb = default_transforms(32, 32, 3)
    assert rgb.flip and rgb.sobel and rgb.input_size == 32
    assert Transforms.from_dict(grey.to_dict()) == grey
