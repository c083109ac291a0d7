"""SimCLR adaptation of the CNN backbone: NT-Xent, the views, determinism,
resume, the saved weights and bad input (issue #20, "adaptation when a GPU is
there"). Tiny settings: 32-px images, batches of 8, on the CPU."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clusterlens.deep import (  # noqa: E402
    ContrastiveAdapter,
    ContrastiveViews,
    nt_xent_loss,
)
from clusterlens.exceptions import (  # noqa: E402
    DataValidationError,
    InvalidParameterError,
    NotFittedError,
)
from clusterlens.features import CnnEmbedder, build_efficientnet_lite  # noqa: E402

TINY = dict(image_size=32, epochs=1, batch_size=8, n_threads=1)


def blob_images(n: int, side: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` distinct smooth colour images (random 4x4 colour grids, upsampled)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    t = torch.from_numpy(small).permute(0, 3, 1, 2)
    big = torch.nn.functional.interpolate(t, size=(side, side), mode="bilinear")
    return big.permute(0, 2, 3, 1).round().clamp(0, 255).numpy().astype(np.uint8)


# --------------------------------------------------------------------------- #
# NT-Xent
# --------------------------------------------------------------------------- #
def test_nt_xent_matches_a_hand_loop(global_random_seed):
    g = torch.Generator().manual_seed(global_random_seed)
    z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    tau = 0.3
    z = [v / math.sqrt(float(v @ v)) for v in [*z1, *z2]]
    n2, total = len(z), 0.0
    for i in range(n2):
        j = (i + 5) % n2  # the other view of the same image
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / den)
    got = float(nt_xent_loss(z1, z2, tau))
    assert got == pytest.approx(total / n2, rel=1e-5)


def test_nt_xent_matches_the_logsumexp_formula_and_is_scale_free():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g)
    tau = 0.5
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).double()
    s = z @ z.t() / tau
    s.fill_diagonal_(-math.inf)
    pos = torch.cat([torch.arange(7, 14), torch.arange(7)])
    want = (torch.logsumexp(s, 1) - s[torch.arange(14), pos]).mean()
    assert float(nt_xent_loss(z1, z2, tau)) == pytest.approx(float(want), rel=1e-5)
    # cosine similarities: scaling a projection changes nothing
    assert float(nt_xent_loss(3 * z1, z2 / 7, tau)) == pytest.approx(
        float(want), rel=1e-5
    )


def test_nt_xent_is_lowest_for_matching_views():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(16, 8, generator=g)
    other = torch.randn(16, 8, generator=g)
    assert float(nt_xent_loss(z, z, 0.2)) < float(nt_xent_loss(z, other, 0.2))


def test_nt_xent_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"n_samples >= 2"):
        nt_xent_loss(torch.zeros(1, 4), torch.zeros(1, 4), 0.2)
    with pytest.raises(ValueError, match=r"both have shape"):
        nt_xent_loss(torch.zeros(4, 4), torch.zeros(4, 3), 0.2)


# --------------------------------------------------------------------------- #
# the views
# --------------------------------------------------------------------------- #
def test_views_are_seeded_and_in_range():
    x = torch.from_numpy(blob_images(6, 40)).permute(0, 3, 1, 2).contiguous()
    views = ContrastiveViews(size=24)
    a = views(x, torch.Generator().manual_seed(3))
    b = views(x, torch.Generator().manual_seed(3))
    c = views(x, torch.Generator().manual_seed(4))
    assert a.shape == (6, 3, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_views_grey_and_constant_images():
    x = torch.from_numpy(blob_images(4)).permute(0, 3, 1, 2).contiguous()
    grey = ContrastiveViews(size=32, grey_p=1.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(
        grey[:, 1], grey[:, 2]
    )
    flat = torch.full((3, 3, 32, 32), 90, dtype=torch.uint8)
    plain = ContrastiveViews(size=20, jitter_p=0.0, grey_p=0.0)
    out = plain(flat, torch.Generator().manual_seed(0))
    # any crop, flip and resampling of a constant image is that constant
    assert torch.allclose(out, torch.full_like(out, 90 / 255), atol=1e-6)


# --------------------------------------------------------------------------- #
# the estimator
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def images():
    return blob_images(24)


def test_same_seed_same_weights(images):
    a = ContrastiveAdapter(**TINY, random_state=0).fit(images).state_arrays()
    b = ContrastiveAdapter(**TINY, random_state=0).fit(images).state_arrays()
    c = ContrastiveAdapter(**TINY, random_state=1).fit(images).state_arrays()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_adapted_weights_keep_the_packaged_names_and_change(images):
    model = ContrastiveAdapter(**TINY, random_state=0).fit(images)
    state = model.state_arrays()
    packaged = build_efficientnet_lite().state_dict()
    assert state.keys() == packaged.keys()
    changed = [
        k
        for k in state
        if k.endswith(".weight") and not np.array_equal(state[k], packaged[k].numpy())
    ]
    assert "_conv_stem.weight" in changed and "_conv_head.weight" in changed
    assert not model.model_.training  # the backbone comes back in eval mode
    assert model.history_[0]["steps"] == 3 and model.n_epochs_ == 1


def test_bn_frozen_keeps_the_imagenet_statistics(images):
    """bn="frozen" (the default) never updates the running statistics;
    bn="train" (SimCLR's) replaces them with the views'."""
    packaged = build_efficientnet_lite().state_dict()
    frozen = ContrastiveAdapter(**TINY, random_state=0).fit(images).state_arrays()
    trained = ContrastiveAdapter(**TINY, random_state=0, bn="train").fit(images)
    stats = [k for k in packaged if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 40
    for k in stats:
        np.testing.assert_array_equal(frozen[k], packaged[k].numpy(), err_msg=k)
    moved = trained.state_arrays()
    assert all(not np.array_equal(moved[k], packaged[k].numpy()) for k in stats)


def test_resume_equals_uninterrupted(images, tmp_path):
    straight = ContrastiveAdapter(
        **{**TINY, "epochs": 2}, random_state=0, checkpoint_dir=tmp_path / "a"
    ).fit(images)
    ContrastiveAdapter(**TINY, random_state=0, checkpoint_dir=tmp_path / "b").fit(
        images
    )
    resumed = ContrastiveAdapter(
        **{**TINY, "epochs": 2},
        random_state=0,
        checkpoint_dir=tmp_path / "b",
        resume=True,
    ).fit(images)
    a, b = straight.state_arrays(), resumed.state_arrays()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [h["loss"] for h in resumed.history_] == [
        h["loss"] for h in straight.history_
    ]


def test_resume_refuses_another_runs_checkpoint(images, tmp_path):
    ContrastiveAdapter(**TINY, random_state=0, checkpoint_dir=tmp_path).fit(images)
    other = ContrastiveAdapter(
        **TINY, random_state=0, lr=1e-3, checkpoint_dir=tmp_path, resume=True
    )
    with pytest.raises(DataValidationError, match=r"another adaptation run"):
        other.fit(images)
    with pytest.raises(DataValidationError, match=r"No adaptation checkpoint"):
        ContrastiveAdapter(**TINY, checkpoint_dir=tmp_path / "none", resume=True).fit(
            images
        )


def test_saved_npz_embeds_as_the_model_in_memory(images, tmp_path):
    model = ContrastiveAdapter(**TINY, random_state=0).fit(images)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["format"] == "clusterlens.adapt" and meta["image_size"] == 32
    assert len(meta["loss_per_epoch"]) == len(meta["seconds_per_epoch"]) == 1
    assert meta["device"] == "cpu" and meta["seed"] == 0
    emb = CnnEmbedder(tmp_path / "weights.npz", runtime="torch", n_threads=1)
    assert emb.image_size == 32  # read from model.json beside the weights
    want = model.embed(images)
    got = emb.embed(images)
    assert got.shape == (24, 1280)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    frozen = CnnEmbedder(image_size=32, runtime="torch", n_threads=1).embed(images)
    assert not np.allclose(frozen, want, atol=1e-3)


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime"
)
def test_onnx_cache_follows_the_weights_content(images, tmp_path):
    """An adapted file rewritten in place is exported again, not taken from the
    ONNX cache of its old content."""
    cache = tmp_path / "onnx"
    first = ContrastiveAdapter(**TINY, random_state=0).fit(images)
    first.save(tmp_path / "m")
    a = CnnEmbedder(
        tmp_path / "m" / "weights.npz", runtime="onnx", cache_dir=cache, n_threads=1
    )
    np.testing.assert_allclose(a.embed(images), first.embed(images), atol=1e-3)
    second = ContrastiveAdapter(**TINY, random_state=1).fit(images)
    second.save(tmp_path / "m")
    b = CnnEmbedder(
        tmp_path / "m" / "weights.npz", runtime="onnx", cache_dir=cache, n_threads=1
    )
    assert b.onnx_path != a.onnx_path
    np.testing.assert_allclose(b.embed(images), second.embed(images), atol=1e-3)


def test_loss_falls_on_distinct_images():
    """32 distinct images: after a dozen steps the views of each image are told
    apart from the others' clearly better than at the start (chance: log 31 =
    3.43 for a batch of 16)."""
    X = blob_images(32, seed=5)
    mild = ContrastiveViews(min_scale=0.5, jitter_p=0.0, grey_p=0.0)
    model = ContrastiveAdapter(
        image_size=32, epochs=6, batch_size=16, lr=1e-3, views=mild, random_state=0
    ).fit(X)
    losses = [h["loss"] for h in model.history_]
    assert np.mean(losses[-2:]) < losses[0] - 0.25, losses


# --------------------------------------------------------------------------- #
# bad input
# --------------------------------------------------------------------------- #
def test_fewer_images_than_a_batch(images):
    with pytest.raises(DataValidationError, match=r"24 images, fewer than batch_size"):
        ContrastiveAdapter(**{**TINY, "batch_size": 32}).fit(images)


def test_images_too_small():
    with pytest.raises(DataValidationError, match=r"at least 32x32"):
        ContrastiveAdapter(**TINY).fit(np.zeros((8, 16, 16, 3), np.uint8))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_refused_without_a_gpu(images):
    with pytest.raises(InvalidParameterError, match=r"CUDA is not available"):
        ContrastiveAdapter(**TINY, device="cuda").fit(images)


def test_parameters_checked():
    with pytest.raises(InvalidParameterError, match=r"'backbone' parameter"):
        ContrastiveAdapter("lite9").fit(np.zeros((8, 32, 32, 3), np.uint8))
    with pytest.raises(InvalidParameterError, match=r"'bn' parameter"):
        ContrastiveAdapter(bn="eval").fit(np.zeros((8, 32, 32, 3), np.uint8))
    with pytest.raises(InvalidParameterError, match=r"'temperature' parameter"):
        ContrastiveAdapter(temperature=0).fit(np.zeros((8, 32, 32, 3), np.uint8))
    with pytest.raises(NotFittedError):
        ContrastiveAdapter().embed(np.zeros((2, 32, 32, 3), np.uint8))


def test_bad_npz_weights_named(tmp_path):
    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataValidationError, match=r"weights\.npz"):
        CnnEmbedder(bad, runtime="torch")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataValidationError, match=r"not an EfficientNet-Lite state"):
        CnnEmbedder(tmp_path / "other.npz", runtime="torch")


# --------------------------------------------------------------------------- #
# on a CUDA device: CLUSTERLENS_TEST_DEVICE=cuda pytest -m gpu tests/deep/test_adapt.py
# (skipped elsewhere; no GPU was lent when this was written)
# --------------------------------------------------------------------------- #
needs_cuda = pytest.mark.skipif(
    os.environ.get("CLUSTERLENS_TEST_DEVICE") != "cuda"
    or not torch.cuda.is_available(),
    reason="needs CLUSTERLENS_TEST_DEVICE=cuda and a CUDA device",
)


@pytest.mark.gpu
@needs_cuda
def test_cuda_run_trains_and_its_weights_embed_on_the_cpu(tmp_path):
    """bf16 autocast + channels-last on CUDA, the image cache on the GPU: the
    loss falls as on the CPU, and the saved weights embed in CnnEmbedder."""
    X = blob_images(32, seed=5)
    mild = ContrastiveViews(min_scale=0.5, jitter_p=0.0, grey_p=0.0)
    model = ContrastiveAdapter(
        image_size=32, epochs=6, batch_size=16, lr=1e-3, views=mild, random_state=0,
        device="cuda",
    ).fit(X)  # fmt: skip
    assert model.device_.startswith("cuda") and model.cache_device_.startswith("cuda")
    losses = [h["loss"] for h in model.history_]
    assert np.mean(losses[-2:]) < losses[0] - 0.25, losses
    model.save(tmp_path)
    emb = CnnEmbedder(tmp_path / "weights.npz", runtime="torch", n_threads=2)
    got, want = emb.embed(X), model.embed(X)
    cos = (
        (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    )
    assert cos.min() > 0.999, cos.min()  # CUDA float32 vs CPU float32 kernels
