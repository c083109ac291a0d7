"""IIC presets (the authors' MNIST setup), per-sub-head history, head restarts."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

# The shapes data set of test_iic (4 classes of 16x16 images).
from tests.deep.test_iic import shapes  # noqa: E402

from clusterlens.deep import IIC, PRESETS, Transforms, get_preset  # noqa: E402
from clusterlens.exceptions import InvalidParameterError  # noqa: E402
from clusterlens.metrics import clustering_accuracy  # noqa: E402

TF = Transforms(input_size=16, crop_sizes=(0.75, 0.875), eval_crop=1.0, rotation=10.0)


def _tiny(**kw):
    params = dict(
        n_clusters=4,
        n_clusters_over=0,
        n_heads=4,
        n_repeats=2,
        batch_size=40,
        epochs=2,
        width=0.25,
        transforms=TF,
        random_state=0,
        n_threads=1,
        device="cpu",
        cluster_head="iic",  # these tests are about the sub-heads
    )
    params.update(kw)
    return IIC(**params)


def test_ji2019_preset_sets_the_authors_values():
    """Issue #21: the preset is the authors' MNIST run as their code has it."""
    X, _ = shapes(12, seed=0)
    # width overridden only to keep the test fast; everything else from the preset
    model = IIC(4, preset="ji2019-mnist", width=0.25, epochs=1, random_state=0)
    model.set_params(n_threads=1, device="cpu").fit(X)
    assert model.settings_ == {
        "n_clusters_over": 0,
        "n_heads": 5,
        "n_repeats": 5,
        "batch_size": 140,
        "lr": 1e-4,
        "width": 0.25,
        "kernel_size": 5,
    }
    assert model.get_params()["n_heads"] is None  # parameters are not mutated
    conv = model.net_.trunk.body[0]
    assert conv.kernel_size == (5, 5) and conv.padding == (2, 2)
    assert set(model.net_.heads) == {"main"}  # no overclustering head
    assert model.net_.heads["main"].n_heads == 5
    tf = model.transforms_
    assert (tf.rotation, tf.rotation_p, tf.first_random_p) == (25.0, 0.5, 0.5)
    assert tf.rotate_image and not tf.flip
    # 16x16 grey: the MNIST crop fractions 16/20/24 of 28, centred 20 of 28
    np.testing.assert_allclose(tf.crop_sizes, (16 / 28, 20 / 28, 24 / 28))
    assert tf.eval_crop == pytest.approx(20 / 28)
    opt_lr = PRESETS["ji2019-mnist"].params["lr"]
    assert opt_lr == 1e-4


def test_explicit_arguments_override_the_preset():
    X, _ = shapes(12, seed=0)
    model = IIC(
        4,
        preset="ji2019-mnist",
        width=0.25,
        n_heads=7,
        kernel_size=3,
        n_clusters_over=6,
        batch_size=20,
        epochs=1,
        random_state=0,
        n_threads=1,
        device="cpu",
    ).fit(X)
    s = model.settings_
    assert (s["n_heads"], s["kernel_size"], s["n_clusters_over"]) == (7, 3, 6)
    assert (s["batch_size"], s["n_repeats"], s["lr"]) == (20, 5, 1e-4)
    assert model.net_.trunk.body[0].kernel_size == (3, 3)
    assert model.net_.heads["over"].k == 6
    assert len(model.history_[-1]["head_losses"]) == 7
    # no preset: the library's own defaults
    plain = IIC(4)
    plain._validate_params()
    assert plain._settings() == {
        "n_clusters_over": 50,
        "n_heads": 5,
        "n_repeats": 4,
        "batch_size": 32,
        "lr": 2e-3,
        "width": 0.25,
        "kernel_size": 3,
    }


def test_every_subhead_loss_and_accuracy_is_logged_and_lowest_loss_predicts():
    X, y = shapes(25, seed=1)
    model = _tiny(n_heads=6, epochs=2).fit(X, y)
    for h in model.history_:
        assert len(h["head_losses"]) == len(h["head_accuracies"]) == 6
        assert all(0.0 <= a <= 1.0 for a in h["head_accuracies"])
        assert h["head"] == int(np.argmin(h["head_losses"]))
        assert h["loss"] == min(h["head_losses"])
    last = model.history_[-1]
    assert model.head_ == int(np.argmin(last["head_losses"]))
    # the logged accuracy of the chosen sub-head is that of labels_, and of
    # predict (the clean view through that sub-head)
    acc = clustering_accuracy(y, model.labels_)
    assert last["head_accuracies"][model.head_] == pytest.approx(acc)
    assert last["accuracy"] == pytest.approx(acc)
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_head_restarts_reinit_the_worst_subheads_but_never_the_chosen():
    X, y = shapes(25, seed=2)
    r = 2
    model = _tiny(n_heads=5, head_restarts=r, epochs=3).fit(X, y)
    hist = model.history_
    for e, h in enumerate(hist):
        previous = set(hist[e - 1]["restarted"]) if e else set()
        eligible = [i for i in range(5) if i != h["head"] and i not in previous]
        worst = sorted(eligible, key=lambda i: -h["head_losses"][i])[:r]
        assert h["restarted"] == worst
    # the restart really happened: the weights of a restarted sub-head differ
    # from the same run without restarts after epoch 1 (trunk identical then)
    one = _tiny(n_heads=5, head_restarts=r, epochs=2).fit(X)
    ref = _tiny(n_heads=5, head_restarts=0, epochs=1).fit(X)
    assert one.history_[0]["head_losses"] == ref.history_[0]["head_losses"]


def test_restarted_heads_get_new_weights():
    X, _ = shapes(10, seed=3)
    a = _tiny(n_heads=4, head_restarts=1, epochs=2).fit(X)
    b = _tiny(n_heads=4, head_restarts=0, epochs=2).fit(X)
    i = a.history_[0]["restarted"][0]
    wa = a.net_.heads["main"].linear.weight.view(4, 4, -1)
    wb = b.net_.heads["main"].linear.weight.view(4, 4, -1)
    # a restarted head trained one epoch from a fresh init is far from the
    # one trained two epochs without a restart
    assert not torch.allclose(wa[i], wb[i], atol=1e-3)


def test_same_seed_same_run_with_preset_and_restarts():
    X, y = shapes(10, seed=4)
    kw = dict(preset="ji2019-mnist", width=0.25, batch_size=20, n_heads=4)
    a = _tiny(head_restarts=1, transforms=None, **kw).fit(X, y)
    b = _tiny(head_restarts=1, transforms=None, **kw).fit(X, y)
    c = _tiny(head_restarts=1, transforms=None, random_state=1, **kw).fit(X, y)
    for (k, va), vb in zip(
        a.net_.state_dict().items(), b.net_.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), k
    assert a.history_ == [
        {**h, "seconds": a.history_[i]["seconds"]} for i, h in enumerate(b.history_)
    ]
    key = "heads.main.linear.weight"
    assert not torch.equal(a.net_.state_dict()[key], c.net_.state_dict()[key])


def test_authors_first_view_and_rotation_probability():
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 255, (64, 1, 28, 28), dtype=np.uint8))
    base = Transforms(input_size=24, eval_crop=20 / 28)
    # no randomness asked: the first view is the centred one
    assert torch.equal(base.first(x, g), base.clean(x))
    half = Transforms(input_size=24, eval_crop=20 / 28, first_random_p=0.5)
    moved = (half.first(x, g) != half.clean(x)).flatten(1).any(dim=1)
    assert 16 <= int(moved.sum()) <= 48  # about half of 64
    # rotation_p=0 with whole-image crops and no jitter: the identity view
    still = Transforms(
        input_size=28,
        crop_sizes=(1.0,),
        eval_crop=1.0,
        rotation=25.0,
        rotation_p=0.0,
        brightness=0.0,
        contrast=0.0,
    )
    torch.testing.assert_close(still.random(x, g), still.clean(x))
    turned = Transforms(**{**still.to_dict(), "rotation_p": 0.5, "crop_sizes": (1.0,)})
    changed = (turned.random(x, g) - turned.clean(x)).abs().flatten(1).amax(dim=1)
    n_rot = int((changed > 1e-4).sum())
    assert 16 <= n_rot <= 48, n_rot
    # settings survive the JSON round trip (old files without them load too)
    assert Transforms.from_dict(half.to_dict()) == half
    old = {k: v for k, v in base.to_dict().items() if k != "first_random_p"}
    assert Transforms.from_dict(old).first_random_p == 0.0


def test_unknown_preset_and_bad_values_are_clear_errors():
    X, _ = shapes(4, seed=0)
    with pytest.raises(
        InvalidParameterError, match=r"Unknown preset 'ji2019-mnsit'.*Did you mean"
    ):
        _tiny(preset="ji2019-mnsit").fit(X)
    with pytest.raises(InvalidParameterError, match="Available: ji2019-mnist"):
        get_preset("cifar")
    with pytest.raises(InvalidParameterError, match=r"head_restarts.*< n_heads=4"):
        _tiny(head_restarts=4).fit(X)
    with pytest.raises(InvalidParameterError, match=r"kernel_size.*odd"):
        _tiny(kernel_size=4).fit(X)
    with pytest.raises(InvalidParameterError, match="resnet"):
        _tiny(kernel_size=5, backbone="resnet").fit(X)


def test_resume_with_head_restarts_equals_one_run(tmp_path):
    X, _ = shapes(10, seed=5)
    full = _tiny(n_heads=4, head_restarts=1, epochs=2).fit(X)
    ckpt = tmp_path / "ckpt"
    _tiny(n_heads=4, head_restarts=1, epochs=1, checkpoint_dir=ckpt).fit(X)
    resumed = _tiny(
        n_heads=4, head_restarts=1, epochs=2, checkpoint_dir=ckpt, resume=True
    ).fit(X)
    for (k, a), b in zip(
        full.net_.state_dict().items(), resumed.net_.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k
    assert [h["restarted"] for h in resumed.history_] == [
        h["restarted"] for h in full.history_
    ]
