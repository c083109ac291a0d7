"""IIC's ``student_epochs``: a fresh network learns the clusters' confident
images and predicts (the last step of SCAN, on a new network)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.deep.test_iic import _small, shapes  # noqa: E402

from clusterlens.deep import IIC  # noqa: E402
from clusterlens.deep._student import (  # noqa: E402
    StudentNet,
    _augment,
    fit_student,
    student_input,
)
from clusterlens.exceptions import (  # noqa: E402
    DataValidationError,
    InvalidParameterError,
)
from clusterlens.metrics import clustering_accuracy  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _fewer_steps():
    """40 batches an epoch instead of 100 keeps these tests quick; the
    schedule and everything else are the real ones."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("clusterlens.deep._student.MIN_STEPS", 40)
        yield


@pytest.fixture(scope="module")
def data():
    return shapes(40, seed=5)


@pytest.fixture(scope="module")
def with_student(data):
    X, y = data
    return _small(epochs=2, cluster_head="scan", student_epochs=2).fit(X, y)


def test_the_student_fixes_the_doubtful_images_from_the_sure_ones(data):
    X, y = data
    rng = np.random.default_rng(0)
    # a clustering sure of three quarters of the images (right about them)
    # and wrong about every other one
    confident = rng.random(y.size) < 0.75
    targets = np.where(confident, y, (y + 1 + rng.integers(0, 3, y.size)) % 4)
    assert clustering_accuracy(y, targets) < 0.8
    net, proba, history = fit_student(
        torch.from_numpy(X[:, None]),
        targets,
        confident,
        4,
        2,
        generator=torch.Generator().manual_seed(0),
        labels_true=y,
    )
    assert isinstance(net, StudentNet) and proba.shape == (y.size, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    pred = proba.argmax(axis=1)
    assert (pred[~confident] == y[~confident]).mean() >= 0.9
    assert clustering_accuracy(y, pred) >= 0.95
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["accuracy"] == pytest.approx(clustering_accuracy(y, pred))
    assert history[-1]["agreement"] == pytest.approx((pred == targets).mean())


def test_student_input_shrinks_by_area_averaging():
    rng = np.random.default_rng(1)
    big = torch.from_numpy(rng.integers(0, 256, (3, 3, 64, 48), dtype=np.uint8))
    x = student_input(big)
    assert x.shape == (3, 3, 32, 24)
    blocks = big.double().div(255).reshape(3, 3, 32, 2, 24, 2).mean(dim=(3, 5))
    np.testing.assert_allclose(x.numpy(), blocks.numpy(), atol=1e-6)
    torch.testing.assert_close(student_input(big, chunk=2), x)  # chunked: the same
    small = torch.from_numpy(rng.integers(0, 256, (2, 1, 28, 28), dtype=np.uint8))
    np.testing.assert_allclose(student_input(small).numpy() * 255, small.numpy())


def test_augmentation_moves_the_image_but_keeps_it():
    """Each view is the image turned by at most 10 degrees, scaled by at most
    10 % and shifted by at most 1/14 of the side: close to the image, never
    equal to it, and flipped only when asked."""
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a vertical bar in the middle
    views = _augment(x, torch.Generator().manual_seed(0), flip=False)
    assert views.shape == x.shape
    changed = (views - x).abs().flatten(1).sum(1)
    assert (changed > 0).all()
    # most of the bar's mass stays where it was
    overlap = (views * x).flatten(1).sum(1) / x.flatten(1).sum(1)
    assert overlap.min() > 0.3 and overlap.mean() > 0.6
    same = _augment(x, torch.Generator().manual_seed(0), flip=False)
    torch.testing.assert_close(views, same)
    # an asymmetric image: flips show up as mirrored mass, only with flip=True
    y = torch.zeros(256, 1, 28, 28)
    y[:, :, 4:24, 2:9] = 1.0  # a bar at the left edge
    left = (slice(None), 0, slice(None), slice(0, 14))
    kept = _augment(y, torch.Generator().manual_seed(1), flip=False)
    mirrored = _augment(y, torch.Generator().manual_seed(1), flip=True)
    share = kept[left].sum((1, 2)) / kept.sum((1, 2, 3))
    share_m = mirrored[left].sum((1, 2)) / mirrored.sum((1, 2, 3))
    assert (share > 0.9).all()
    assert 0.3 < (share_m < 0.1).float().mean() < 0.7


def test_iic_with_a_student_predicts_with_it(data, with_student):
    X, y = data
    m = with_student
    assert isinstance(m.student_, StudentNet)
    assert [h["epoch"] for h in m.student_history_] == [1, 2]
    np.testing.assert_allclose(m.proba_, m.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(m.labels_, m.predict(X))
    # the student learnt the SCAN head's clusters (same numbering)
    scan_labels = m.scan_head_.labels_
    assert (m.labels_ == scan_labels).mean() >= 0.9
    assert clustering_accuracy(y, m.labels_) >= 0.9
    # the IIC part and the SCAN head are the same run as without a student
    plain = _small(epochs=2, cluster_head="scan").fit(X, y)
    np.testing.assert_array_equal(plain.labels_, scan_labels)
    assert plain.student_ is None and plain.student_history_ == []


def test_model_with_a_student_round_trip_without_pickle(tmp_path, data, with_student):
    X, _ = data
    npz, js = with_student.save(tmp_path / "model")
    with np.load(npz, allow_pickle=False) as z:
        assert any(k.startswith("student/") for k in z.files)
    loaded = IIC.load(tmp_path / "model", device="cpu")
    assert loaded.student_epochs == 2 and isinstance(loaded.student_, StudentNet)
    assert loaded.student_history_ == with_student.student_history_
    np.testing.assert_allclose(
        loaded.predict_proba(X), with_student.predict_proba(X), atol=1e-6
    )
    # a model file from before the option has no student and predicts as it did
    plain = _small(epochs=2, cluster_head="scan").fit(X)
    _, js_old = plain.save(tmp_path / "old")
    meta = json.loads(js_old.read_text())
    del meta["params"]["student_epochs"]
    js_old.write_text(json.dumps(meta))
    old = IIC.load(tmp_path / "old", device="cpu")
    assert old.student_epochs == 0 and old.student_ is None
    np.testing.assert_array_equal(old.predict(X), plain.labels_)
    # a student that does not fit the model is refused with the file named
    meta = json.loads(js.read_text())
    meta["attributes"]["student"]["params"]["k"] = 7
    js.write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match=r"student\.k"):
        IIC.load(tmp_path / "model", device="cpu")


def test_a_finished_run_resumes_into_the_student(tmp_path, data, with_student):
    """Resumed into the student, a finished run gives what the uninterrupted
    run gave: the student is a function of the images, the clusters and the
    seed (no other randomness)."""
    X, y = data
    ckpt = tmp_path / "ckpt"
    _small(epochs=2, checkpoint_dir=ckpt, cluster_head="scan").fit(X, y)
    resumed = _small(
        epochs=2,
        checkpoint_dir=ckpt,
        resume=True,
        cluster_head="scan",
        student_epochs=2,
    ).fit(X, y)
    np.testing.assert_allclose(resumed.proba_, with_student.proba_, atol=1e-6)


def test_no_confident_image_keeps_the_clusters_and_says_so(data, caplog):
    X, y = data
    with caplog.at_level(logging.WARNING, logger="clusterlens.deep._iic"):
        m = _small(epochs=1, student_epochs=1, confidence=0.999999).fit(X, y)
    assert m.student_ is None
    assert "too few to learn from" in caplog.text
    plain = _small(epochs=1).fit(X, y)
    np.testing.assert_array_equal(m.labels_, plain.labels_)


def test_bad_student_epochs_is_a_clear_error(data):
    X, _ = data
    with pytest.raises(InvalidParameterError, match="student_epochs"):
        _small(student_epochs=-1).fit(X)
