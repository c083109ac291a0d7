"""IIC training: beats chance, resumes exactly, saves without pickle, checks input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clusterlens.deep import IIC, IICNet, Transforms  # noqa: E402
from clusterlens.exceptions import (  # noqa: E402
    DataValidationError,
    InvalidParameterError,
    NotFittedError,
)
from clusterlens.metrics import clustering_accuracy  # noqa: E402


def shapes(n_per_class: int, seed: int, size: int = 16):
    """(images uint8 (n, size, size), labels) with 4 balanced classes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    c = size / 2 - 0.5
    r = np.hypot(yy - c, xx - c)
    templates = np.stack(
        [
            (np.abs(yy - c) < 1.6) & (np.abs(xx - c) < size * 0.35),  # horizontal bar
            (np.abs(xx - c) < 1.6) & (np.abs(yy - c) < size * 0.35),  # vertical bar
            (np.abs(yy - c) < size * 0.22) & (np.abs(xx - c) < size * 0.22),  # square
            (r > size * 0.2) & (r < size * 0.34),  # ring
        ]
    ).astype(np.float64)
    labels = np.repeat(np.arange(4), n_per_class)
    rng.shuffle(labels)
    imgs = templates[labels]
    shifts = rng.integers(-2, 3, size=(labels.size, 2))
    imgs = np.stack(
        [np.roll(im, tuple(s), axis=(0, 1)) for im, s in zip(imgs, shifts, strict=True)]
    )
    imgs = imgs * rng.uniform(0.6, 1.0, (labels.size, 1, 1))
    imgs += rng.normal(0, 0.08, imgs.shape)
    return (np.clip(imgs, 0, 1) * 255).astype(np.uint8), labels


TF = Transforms(input_size=16, crop_sizes=(0.75, 0.875), eval_crop=1.0, rotation=10.0)


def _small(**kw):
    params = dict(
        n_clusters=4,
        n_clusters_over=8,
        n_heads=2,
        n_repeats=2,
        batch_size=50,
        epochs=2,
        lr=2e-3,
        width=0.25,
        transforms=TF,
        random_state=0,
        n_threads=1,
        device="cpu",
        cluster_head="iic",  # these tests are about the sub-heads
    )
    params.update(kw)
    return IIC(**params)


def test_short_run_beats_chance_clearly():
    X, y = shapes(100, seed=0)
    fast = dict(
        epochs=3, aux_mode="joint", width=0.5, n_heads=5, n_repeats=4, batch_size=25
    )
    model = _small(**fast).fit(X, y)
    acc = clustering_accuracy(y, model.labels_)
    assert acc >= 0.7, f"accuracy {acc:.3f} should be >= 0.7 (chance is 0.25)"
    assert model.history_[-1]["accuracy"] == pytest.approx(acc)
    assert model.history_[-1]["loss"] < model.history_[0]["loss"]


def test_labels_are_only_reported_never_used():
    X, y = shapes(10, seed=6)
    model = _small(epochs=1).fit(X, y)
    again = _small(epochs=1).fit(X)
    for a, b in zip(
        model.net_.state_dict().values(), again.net_.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert model.head_ == again.head_
    assert "accuracy" in model.history_[-1] and "accuracy" not in again.history_[-1]


def test_head_is_lowest_loss_subhead_and_predict_matches_labels():
    X, _ = shapes(20, seed=1)
    model = _small().fit(X)
    last = model.history_[-1]
    assert model.head_ == int(np.argmin(last["head_losses"]))
    proba = model.predict_proba(X)
    assert proba.shape == (80, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    np.testing.assert_allclose(model.proba_, proba, atol=1e-6)


def test_same_seed_same_model_other_seed_differs():
    X, _ = shapes(10, seed=2)
    a = _small(epochs=1).fit(X).net_.state_dict()
    b = _small(epochs=1).fit(X).net_.state_dict()
    c = _small(epochs=1, random_state=1).fit(X).net_.state_dict()
    key = "heads.main.linear.weight"
    assert torch.equal(a[key], b[key])
    assert not torch.equal(a[key], c[key])


@pytest.mark.parametrize("aux_mode", ["alternate", "joint"])
def test_checkpoint_resume_gives_the_same_state(tmp_path, aux_mode):
    X, _ = shapes(16, seed=3)
    full = _small(epochs=2, aux_mode=aux_mode).fit(X)
    ckpt = tmp_path / "ckpt"
    _small(epochs=1, aux_mode=aux_mode, checkpoint_dir=ckpt).fit(X)
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "iic-checkpoint.json",
        "iic-checkpoint.npz",
    ]
    resumed = _small(epochs=2, aux_mode=aux_mode, checkpoint_dir=ckpt, resume=True).fit(
        X
    )
    for (k, a), b in zip(
        full.net_.state_dict().items(), resumed.net_.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in full.history_]
    np.testing.assert_array_equal(resumed.labels_, full.labels_)
    # Other data: refused with a clear message.
    with pytest.raises(DataValidationError, match="other data or other parameters"):
        _small(epochs=3, aux_mode=aux_mode, checkpoint_dir=ckpt, resume=True).fit(
            X[::-1]
        )


def test_resume_without_checkpoint_is_an_error(tmp_path):
    X, _ = shapes(4, seed=0)
    with pytest.raises(DataValidationError, match="No IIC checkpoint"):
        _small(checkpoint_dir=tmp_path, resume=True).fit(X)


def test_save_load_round_trip_without_pickle(tmp_path):
    X, _ = shapes(10, seed=4)
    model = _small(epochs=1).fit(X)
    npz, js = model.save(tmp_path / "model")
    with np.load(npz, allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)
    meta = json.loads(js.read_text())
    assert meta["attributes"]["head"] == model.head_
    loaded = IIC.load(tmp_path / "model", device="cpu")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_rgb_images_with_sobel_and_resnet():
    X, _ = shapes(6, seed=5)
    rgb = np.repeat(X[..., None], 3, axis=3)
    tf = Transforms(
        input_size=16,
        crop_sizes=(0.75,),
        eval_crop=1.0,
        flip=True,
        sobel=True,
        include_rgb=True,
    )
    model = _small(epochs=1, backbone="resnet", transforms=tf, batch_size=12).fit(rgb)
    assert model.net_.trunk.stem[0].in_channels == 5
    assert model.predict(rgb).shape == (24,)


def test_bad_inputs_raise_clear_errors():
    X, _ = shapes(4, seed=0)
    with pytest.raises(InvalidParameterError, match="n_clusters"):
        _small(n_clusters=1).fit(X)
    with pytest.raises(InvalidParameterError, match="n_clusters_over"):
        _small(n_clusters_over=1).fit(X)
    with pytest.raises(DataValidationError, match="empty"):
        _small().fit(np.zeros((0, 16, 16), np.uint8))
    with pytest.raises(DataValidationError, match="shape"):
        _small().fit(np.zeros((10, 16), np.uint8))
    with pytest.raises(DataValidationError, match=r"\[0, 1\]"):
        _small().fit(np.full((10, 16, 16), 3.0))
    with pytest.raises(
        DataValidationError, match="n_samples=3 should be >= n_clusters=4"
    ):
        _small().fit(X[:3])
    with pytest.raises(NotFittedError):
        _small().predict(X)
    model = _small(epochs=1).fit(X)
    with pytest.raises(DataValidationError, match="trained on 16x16"):
        model.predict(np.zeros((2, 20, 20), np.uint8))


def test_network_output_shapes():
    for backbone in ("vgg4", "vgg6", "resnet"):
        net = IICNet(backbone, 1, 24, k=10, k_over=50, n_heads=3, width=0.125)
        x = torch.rand(5, 1, 24, 24)
        assert net(x, "main").shape == (5, 3, 10)
        assert net(x, "over").shape == (5, 3, 50)
        assert torch.allclose(net(x).sum(-1), torch.ones(5, 3))


# --- on a CUDA device: CLUSTERLENS_TEST_DEVICE=cuda pytest -m gpu tests/deep
# (skipped elsewhere; CI has no GPU)
needs_cuda = pytest.mark.skipif(
    os.environ.get("CLUSTERLENS_TEST_DEVICE") != "cuda"
    or not torch.cuda.is_available(),
    reason="needs CLUSTERLENS_TEST_DEVICE=cuda and a CUDA device",
)

GPU_FAST = dict(epochs=3, aux_mode="joint", width=0.5, n_heads=5, n_repeats=4)


@pytest.mark.gpu
@needs_cuda
def test_cuda_run_learns_like_the_cpu_run():
    X, y = shapes(100, seed=0)
    gpu = _small(device="cuda", batch_size=25, **GPU_FAST).fit(X, y)
    assert gpu.device_.startswith("cuda")
    assert next(gpu.net_.parameters()).is_cuda
    acc = clustering_accuracy(y, gpu.labels_)
    assert acc >= 0.7, f"accuracy {acc:.3f} on CUDA should be >= 0.7 (chance 0.25)"
    cpu = _small(device="cpu", batch_size=25, **GPU_FAST).fit(X, y)
    # same seed, same batches and augmentations: the runs differ only by
    # floating-point rounding, so they end close
    assert abs(acc - clustering_accuracy(y, cpu.labels_)) <= 0.15


@pytest.mark.gpu
@needs_cuda
def test_same_seed_same_result_on_cuda():
    """cuDNN's deterministic kernels: the same weights, bit for bit."""
    X, _ = shapes(20, seed=2)
    a = _small(device="cuda", epochs=2).fit(X)
    b = _small(device="cuda", epochs=2).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    for key, wa in a.net_.state_dict().items():
        assert torch.equal(wa, b.net_.state_dict()[key]), key
    assert not torch.backends.cudnn.deterministic  # restored after fit


@pytest.mark.gpu
@needs_cuda
def test_model_trained_on_cuda_loads_and_predicts_on_cpu(tmp_path):
    X, _ = shapes(20, seed=4)
    model = _small(device="cuda", epochs=2).fit(X)
    model.save(tmp_path / "model")
    loaded = IIC.load(tmp_path / "model", device="cpu")
    assert not next(loaded.net_.parameters()).is_cuda
    np.testing.assert_allclose(
        loaded.predict_proba(X), model.predict_proba(X), rtol=1e-3, atol=1e-4
    )
    agree = (loaded.predict(X) == model.predict(X)).mean()
    assert agree >= 0.98, f"CPU and CUDA predictions agree on only {agree:.1%}"
