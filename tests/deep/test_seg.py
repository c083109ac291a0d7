"""IIC segmentation: the loss, the inverted transformation, a planted texture
pair, determinism, resume and the model files (issue #21)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clusterlens.deep import (  # noqa: E402
    IIC,
    IICSegmenter,
    SegTransforms,
    apply_geometry,
    invert_geometry,
    random_geometry,
    segmentation_step_loss,
)
from clusterlens.exceptions import DataValidationError, InvalidParameterError  # noqa: E402
from clusterlens.metrics import (  # noqa: E402
    SegmentationConfusion,
    parse_class_table,
    segmentation_scores,
)


def _direct_loss(z, zt, mask, T):
    """Paper eq. 5 by loops: per displacement, the joint of each pixel u of z
    with pixel u + t of zt over the masked pixels; -I averaged over t."""
    z, zt, mask = (a.double().numpy() for a in (z, zt, mask))
    n, k, h, w = z.shape
    z = z * mask
    zt = zt * mask
    out = []
    for dy in range(-T, T + 1):
        for dx in range(-T, T + 1):
            P = np.zeros((k, k))
            for b in range(n):
                for y in range(h):
                    for x in range(w):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w:
                            P += np.outer(z[b, :, y, x], zt[b, :, yy, xx])
            P /= P.sum()
            P = (P + P.T) / 2
            pi, pj = P.sum(1, keepdims=True), P.sum(0, keepdims=True)
            out.append(-(P * (np.log(P) - np.log(pi) - np.log(pj))).sum())
    return float(np.mean(out))


def test_segmentation_loss_equals_direct_computation(global_random_seed):
    g = torch.Generator().manual_seed(global_random_seed)
    n, heads, k, h, w, T = 2, 2, 3, 5, 4, 1
    z = torch.softmax(torch.randn(n, heads, k, h, w, generator=g), dim=2)
    zt = torch.softmax(torch.randn(n, heads, k, h, w, generator=g), dim=2)
    mask = (torch.rand(n, 1, h, w, generator=g) > 0.3).float()
    total, per_head = segmentation_step_loss(z, zt, mask, half_window=T)
    direct = [_direct_loss(z[:, i], zt[:, i], mask, T) for i in range(heads)]
    np.testing.assert_allclose(per_head.numpy(), direct, rtol=1e-5)
    np.testing.assert_allclose(float(total), np.mean(direct), rtol=1e-5)


def test_flip_is_inverted_pixel_for_pixel(global_random_seed):
    g = torch.Generator().manual_seed(global_random_seed)
    x = torch.rand(6, 4, 12, 20, generator=g)
    theta = random_geometry(6, g, crop_min=1.0, flip=True)
    xt = apply_geometry(x, theta)
    flipped = theta[:, 0, 0] < 0
    assert flipped.any() and (~flipped).any()
    torch.testing.assert_close(xt[flipped], x[flipped].flip(-1), rtol=0, atol=1e-5)
    back, mask = invert_geometry(xt, theta)
    assert bool((mask == 1).all())
    torch.testing.assert_close(back, x, rtol=0, atol=1e-5)


def test_crop_and_scale_are_inverted_on_the_output_grid(global_random_seed):
    """A network output at a quarter of the input's resolution: the second
    view's output, mapped back, equals the first's at every pixel both saw
    (a linear ramp, which bilinear resampling reproduces exactly)."""
    g = torch.Generator().manual_seed(global_random_seed)
    n, h, w = 5, 24, 32
    yy, xx = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
    ramp = torch.stack([yy, xx, 0.3 * yy + 0.7 * xx])[None].repeat(n, 1, 1, 1)
    theta = random_geometry(n, g, crop_min=0.5, flip=True)
    view2 = apply_geometry(ramp, theta)  # what the second view holds
    back, mask = invert_geometry(view2, theta)
    # off the crop's edge and the frame's (where border clamping, not the
    # transformation, decides the ramp's values)
    inner = torch.nn.functional.max_pool2d(1 - mask, 3, 1, 1) == 0
    inner[..., :2, :] = inner[..., -2:, :] = False
    inner[..., :2] = inner[..., -2:] = False
    assert inner.sum() > 0
    diff = (back - ramp).abs() * inner
    assert float(diff.max()) < 1e-4
    # the seen area is the crop's: s^2 of the frame
    s = theta[:, 1, 1]
    np.testing.assert_allclose(
        mask.mean(dim=(1, 2, 3)).numpy(), (s * s).numpy(), atol=2.5 / h
    )
    # at the output resolution (stride 4) the same map applies
    small = torch.nn.functional.avg_pool2d(ramp, 4)
    back_s, mask_s = invert_geometry(apply_geometry(small, theta), theta)
    inner_s = torch.nn.functional.max_pool2d(1 - mask_s, 3, 1, 1) == 0
    inner_s[..., :1, :] = inner_s[..., -1:, :] = False
    inner_s[..., :1] = inner_s[..., -1:] = False
    assert float(((back_s - small).abs() * inner_s).max()) < 1e-4


def two_textures(n: int, seed: int, size: int = 48):
    """Images split by a random line into two textures; the true split maps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    imgs, maps = [], []
    for _ in range(n):
        a = rng.uniform(0, 2 * np.pi)
        off = rng.uniform(-0.2, 0.2) * size
        side = (np.cos(a) * (xx - size / 2) + np.sin(a) * (yy - size / 2)) > off
        stripes = 0.5 + 0.4 * np.sin(xx * 1.6 + rng.uniform(0, 6))
        dots = rng.uniform(0.2, 0.9, (size, size))
        tex_a = np.stack([0.85 * stripes, 0.35 * stripes, 0.25 + 0 * stripes], -1)
        tex_b = np.stack([0.2 * dots, 0.45 * dots, 0.9 * dots], -1)
        img = np.where(side[..., None], tex_b, tex_a)
        img = img * rng.uniform(0.7, 1.1) + rng.normal(0, 0.03, img.shape)
        imgs.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
        maps.append(side.astype(np.int64))
    return np.stack(imgs), np.stack(maps)


FAST = {
    "n_clusters_over": 4,
    "n_heads": 2,
    "width": 0.25,
    "image_size": (48, 48),
    "batch_size": 8,
    "half_window": 1,
}


def test_planted_two_texture_image_is_segmented():
    X, maps = two_textures(16, seed=0, size=32)
    params = {**FAST, "image_size": (32, 32), "batch_size": 4}
    model = IICSegmenter(2, epochs=10, lr=3e-3, random_state=0, **params).fit(X)
    pred = model.predict(X)
    assert pred.shape == maps.shape
    table = parse_class_table("a=0; b=1")
    conf = SegmentationConfusion(table, 2)
    for p, m in zip(pred, maps, strict=True):
        conf.add(m, p, "planted map")
    acc = segmentation_scores(conf.matrix)["accuracy"]
    assert acc >= 0.9, f"pixel accuracy {acc:.3f} < 0.9 on two planted textures"


def test_same_seed_same_model_other_seed_differs():
    X, _ = two_textures(16, seed=1)
    a = IICSegmenter(2, epochs=2, random_state=3, **FAST).fit(X)
    b = IICSegmenter(2, epochs=2, random_state=3, **FAST).fit(X)
    c = IICSegmenter(2, epochs=2, random_state=4, **FAST).fit(X)
    for (name, va), vb in zip(
        a.net_.state_dict().items(), b.net_.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), name
    assert a.history_[-1]["loss"] == b.history_[-1]["loss"]
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


@pytest.mark.parametrize("features", ["rgb", "cnn"])
def test_resume_equals_uninterrupted(tmp_path, features):
    X, _ = two_textures(16, seed=2)
    params = {**FAST, "features": features}
    if features == "cnn":
        params["image_size"] = (32, 48)
    full = IICSegmenter(2, epochs=3, random_state=5, **params).fit(X)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    IICSegmenter(2, epochs=1, random_state=5, checkpoint_dir=ckpt, **params).fit(X)
    resumed = IICSegmenter(
        2, epochs=3, random_state=5, checkpoint_dir=ckpt, resume=True, **params
    ).fit(X)
    for (name, va), vb in zip(
        full.net_.state_dict().items(), resumed.net_.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), name
    assert [h["loss"] for h in full.history_] == [h["loss"] for h in resumed.history_]
    # a checkpoint of other data is refused
    X2, _ = two_textures(16, seed=9)
    with pytest.raises(DataValidationError, match="other data or other parameters"):
        IICSegmenter(
            2, epochs=3, random_state=5, checkpoint_dir=ckpt, resume=True, **params
        ).fit(X2)


def test_save_load_and_the_other_kind_of_model(tmp_path):
    X, _ = two_textures(8, seed=3)
    seg = IICSegmenter(2, epochs=1, random_state=0, **FAST).fit(X)
    seg.save(tmp_path / "seg")
    back = IICSegmenter.load(tmp_path / "seg", device="cpu")
    np.testing.assert_array_equal(back.predict_proba(X), seg.predict_proba(X))
    assert back.image_size_ == (48, 48) and back.head_ == seg.head_
    with pytest.raises(DataValidationError, match="iic-seg-predict"):
        IIC.load(tmp_path / "seg", device="cpu")
    grey = np.random.default_rng(0).integers(0, 255, (20, 16, 16), dtype=np.uint8)
    clf = IIC(2, n_clusters_over=0, n_heads=1, epochs=1, width=0.25, random_state=0)
    clf.fit(grey).save(tmp_path / "clf")
    with pytest.raises(
        DataValidationError, match=r"image-classification model.*iic-predict"
    ):
        IICSegmenter.load(tmp_path / "clf", device="cpu")


def test_pixel_mask_limits_the_objective_to_the_kept_pixels():
    X, maps = two_textures(8, seed=6)
    none = np.zeros(maps.shape, dtype=bool)
    none[:, :, :24] = True  # the left half only
    a = IICSegmenter(2, epochs=1, random_state=0, **FAST).fit(X, pixel_mask=none)
    b = IICSegmenter(2, epochs=1, random_state=0, **FAST).fit(X)
    assert a.history_[0]["loss"] != b.history_[0]["loss"]
    with pytest.raises(DataValidationError, match="pixel_mask must be a bool array"):
        IICSegmenter(2, **FAST).fit(X, pixel_mask=maps)


def test_bad_parameters_and_input():
    X, _ = two_textures(4, seed=4)
    with pytest.raises(InvalidParameterError, match="multiples of 16"):
        IICSegmenter(2, image_size=(50, 48)).fit(X)
    with pytest.raises(InvalidParameterError, match="Sobel input applies"):
        IICSegmenter(2, features="cnn", transforms=SegTransforms(sobel=True)).fit(X)
    with pytest.raises(DataValidationError, match="uint8 RGB images"):
        IICSegmenter(2, **FAST).fit(X[..., 0])
    with pytest.raises(InvalidParameterError, match="features"):
        IICSegmenter(2, features="vgg").fit(X)


def test_sobel_input_and_cnn_trunk_shapes():
    X, _ = two_textures(4, seed=5, size=32)
    m = IICSegmenter(
        2, epochs=1, transforms=SegTransforms(sobel=True), random_state=0, **FAST
    ).fit(X)
    assert m.net_.trunk[0].in_channels == 5
    assert m.predict(X, size=(20, 30)).shape == (4, 20, 30)
    cnn = IICSegmenter(
        2, features="cnn", image_size=(32, 48), epochs=1, batch_size=4, random_state=0
    ).fit(X)
    p = cnn.predict_proba(X)
    assert p.shape == (4, 2, 32, 32)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # the ImageNet weights stay frozen
    frozen = [q for q in cnn.net_.frozen.parameters()]
    assert frozen and not any(q.requires_grad for q in frozen)
