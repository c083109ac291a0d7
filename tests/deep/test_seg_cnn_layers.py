"""The "cnn" segmentation trunk's frozen maps of several depths: shapes,
norms, determinism, a reference computation, and the models written before
``cnn_layers`` existed (issue #21)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from clusterlens.deep import (  # noqa: E402
    DEFAULT_CNN_LAYERS,
    LEGACY_CNN_LAYERS,
    CnnFeatureMaps,
    IICSegmenter,
)
from clusterlens.exceptions import DataValidationError, InvalidParameterError  # noqa: E402
from clusterlens.features._effnet import (  # noqa: E402
    INPUT_MEAN,
    INPUT_STD,
    build_efficientnet_lite,
)


def _images(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.uniform(0, 1, (n, 3, h, w)).astype(np.float32))


def _reference_maps(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Lite0 run block by block: the last block of each stride, and the head."""
    net = build_efficientnet_lite(None)
    mean = torch.tensor(INPUT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(INPUT_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        y = F.relu6(net._bn0(net._conv_stem((x - mean) / std)))
        out, stride = {}, 2
        for block in net._blocks:
            y = block(y)
            stride *= int(block._depthwise_conv.stride[0])
            out[f"s{stride}"] = y
        out["head"] = F.relu6(net._bn1(net._conv_head(y)))
    return out


def test_default_maps_shapes_norms_and_reference():
    x = _images(2, 64, 96, seed=0)
    m = CnnFeatureMaps()
    assert m.layers == DEFAULT_CNN_LAYERS == ("s8", "s16", "head")
    maps = m.maps(x)
    assert [tuple(t.shape) for t in maps] == [
        (2, 40, 8, 12),
        (2, 112, 4, 6),
        (2, 1280, 2, 3),
    ]
    ref = _reference_maps(x)
    for name, got in zip(m.layers, maps, strict=True):
        want = F.normalize(ref[name], dim=1)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        norms = got.norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4), name
    stacked = m(x)
    assert stacked.shape == (2, 40 + 112 + 1280, 8, 12) == (2, m.out_channels, 8, 12)
    assert torch.isfinite(stacked).all()
    # the stride-8 map passes unchanged; the head is upsampled bilinearly
    torch.testing.assert_close(stacked[:, :40], maps[0])
    up = F.interpolate(maps[2], size=(8, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(stacked[:, 152:], up)


def test_maps_are_deterministic_and_per_image():
    x = _images(3, 32, 48, seed=1)
    m = CnnFeatureMaps(("s8", "s32", "head"))
    a, b = m(x), m(x)
    assert torch.equal(a, b)
    one = m(x[1:2])
    torch.testing.assert_close(one[0], a[1], rtol=1e-4, atol=1e-5)
    assert m.channels == (40, 320, 1280) and m.stride == 8
    assert CnnFeatureMaps(("s16", "head")).stride == 16


@pytest.mark.parametrize("layers", [("s4",), (), ("s8", "s8"), "s8,bogus", 3], ids=str)
def test_unknown_layers_are_one_clear_error(layers):
    with pytest.raises(InvalidParameterError, match="'cnn_layers' parameter"):
        IICSegmenter(2, features="cnn", cnn_layers=layers)._validate_params()


def test_bad_backbone_is_one_clear_error():
    with pytest.raises(InvalidParameterError, match="backbone"):
        IICSegmenter(2, features="cnn", backbone="lite9")._validate_params()


def _textures(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.empty((n, 32, 48, 3), np.uint8)
    img[:, :16] = (120, 170, 230)
    img[:, 16:] = (90, 80, 70)
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


FAST = {
    "features": "cnn",
    "image_size": (32, 48),
    "n_clusters_over": 0,
    "n_heads": 1,
    "batch_size": 4,
    "half_window": 1,
}


def test_default_trunk_projects_the_head_and_round_trips(tmp_path):
    X = _textures(8, seed=2)
    seg = IICSegmenter(
        2, epochs=1, random_state=0, cnn_layers=DEFAULT_CNN_LAYERS, **FAST
    ).fit(X)
    assert seg.net_.project["head"].in_channels == 1280
    assert seg.net_.trunk[0].in_channels == 40 + 112 + 96
    seg.save(tmp_path / "seg")
    params = json.loads((tmp_path / "seg.json").read_text())["params"]
    assert params["cnn_layers"] == ["s8", "s16", "head"]
    back = IICSegmenter.load(tmp_path / "seg", device="cpu")
    assert back.net_.frozen.layers == DEFAULT_CNN_LAYERS
    np.testing.assert_array_equal(back.predict_proba(X), seg.predict_proba(X))


def test_models_and_checkpoints_of_the_old_trunk(tmp_path):
    """IIC's default trunk is the one of before ``cnn_layers``: written
    exactly as then (no ``cnn_layers`` in its parameters), it loads and
    resumes; asked for other maps, an old checkpoint is refused with the fix
    named."""
    X = _textures(8, seed=3)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    old = {**FAST}  # the default
    assert IICSegmenter(2, **old)._cnn_layers() == LEGACY_CNN_LAYERS
    seg = IICSegmenter(2, epochs=1, random_state=0, checkpoint_dir=ckpt, **old)
    seg.fit(X)
    assert len(seg.net_.project) == 0
    assert seg.net_.trunk[0].in_channels == 40 + 112
    seg.save(tmp_path / "seg")
    params = json.loads((tmp_path / "seg.json").read_text())["params"]
    assert "cnn_layers" not in params and "backbone" not in params
    back = IICSegmenter.load(tmp_path / "seg", device="cpu")
    assert back.net_.frozen.layers == LEGACY_CNN_LAYERS
    np.testing.assert_array_equal(back.predict_proba(X), seg.predict_proba(X))
    with pytest.raises(
        DataValidationError,
        match=r"stride-16 maps only.*not on s8,s16,head.*--cnn-layers s8,s16",
    ):
        IICSegmenter(
            2,
            epochs=2,
            random_state=0,
            checkpoint_dir=ckpt,
            resume=True,
            cnn_layers=DEFAULT_CNN_LAYERS,
            **FAST,
        ).fit(X)
    resumed = IICSegmenter(
        2, epochs=2, random_state=0, checkpoint_dir=ckpt, resume=True, **old
    ).fit(X)
    assert len(resumed.history_) == 2


def test_pixel_kmeans_upsampled_scores_equal_upsampled_features():
    """Upsampling the distance maps gives the argmin of the upsampled
    features (|x|^2 is the same for every centre; the rest is linear)."""
    from clusterlens.pipelines.iic_seg import _pixel_features, _PixelKMeans

    img = _textures(1, seed=4)[0]
    rng = np.random.default_rng(0)
    km = _PixelKMeans(np.zeros((0, 0), np.float32), "cnn", (32, 48))
    f = _pixel_features(img[None], "cnn", n_threads=1, cnn=km._model())
    km.centers = rng.normal(0, 0.05, (4, f.shape[1])).astype(np.float32)
    size = (45, 70)
    got = km.predict(img, size, n_threads=1)[0]
    up = F.interpolate(f, size=size, mode="bilinear", align_corners=False)[0]
    x = up.reshape(up.shape[0], -1).T
    c = torch.from_numpy(km.centers)
    d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    want = d.argmin(1).reshape(size).numpy()
    assert (got == want).mean() > 0.999


def test_merge_centres_is_wards_cut_numbered_by_first_centre():
    """Two planted groups of centres (a small one far from two large ones)
    merge into two segments, each centre counted once; the ids follow the
    first centre of each group, and equal scipy's Ward partition."""
    from scipy.cluster.hierarchy import fcluster, linkage

    from clusterlens.pipelines.iic_seg import merge_centres

    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (4, 5)) + 10.0
    b = rng.normal(0, 0.1, (3, 5))
    C = np.vstack([b[:1], a, b[1:]]).astype(np.float32)
    got = merge_centres(C, 2)
    np.testing.assert_array_equal(got, [0, 1, 1, 1, 1, 0, 0])
    ref = fcluster(linkage(C.astype(np.float64), "ward"), 2, "maxclust")
    same = ref[:, None] == ref[None, :]
    np.testing.assert_array_equal(got[:, None] == got[None, :], same)
    assert merge_centres(C, 7).tolist() == list(range(7))


def test_over_clustered_kmeans_saves_loads_and_refuses_a_bad_merge(tmp_path):
    """k_over > k: k_over centres, k segments, the same masks after save and
    load; a merge table that does not fit the centres is a data error."""
    from clusterlens.pipelines.iic_seg import _PixelKMeans

    imgs = _textures(3, seed=1)
    km = _PixelKMeans.fit(imgs, 2, "rgb", (32, 48), 0, 1, k_over=5)
    assert km.centers.shape[0] == 5 and km.n_clusters == 2
    assert sorted(set(km.merge.tolist())) == [0, 1]
    mask = km.predict(imgs[0], (32, 48), 1)[0]
    # the two planted colours: each spread over several centres, merged back
    top = mask[0, 0]
    assert (mask[:16] == top).mean() > 0.95 and (mask[16:] != top).mean() > 0.95
    km.save(tmp_path / "m")
    back = _PixelKMeans.load(tmp_path / "m")
    np.testing.assert_array_equal(back.merge, km.merge)
    np.testing.assert_array_equal(back.predict(imgs[0], (32, 48), 1)[0], mask)
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["params"]["k_over"] == 5 and meta["attributes"]["n_clusters"] == 2
    bad = _PixelKMeans(km.centers, "rgb", (32, 48), merge=km.merge[:3])
    bad.save(tmp_path / "bad")
    with pytest.raises(DataValidationError, match="merge table"):
        _PixelKMeans.load(tmp_path / "bad")
