"""IIC self-labelling: confident targets only, chosen sub-head only, resumable."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.deep.test_iic import _small, shapes  # noqa: E402

from clusterlens.deep import IIC  # noqa: E402
from clusterlens.exceptions import InvalidParameterError  # noqa: E402
from clusterlens.metrics import clustering_accuracy  # noqa: E402


def _model(**kw):
    """test_iic's small model, with three sub-heads and smaller batches."""
    return _small(**{"n_heads": 3, "batch_size": 25, **kw})


def _state(model):
    return {k: v.clone() for k, v in model.net_.state_dict().items()}


def test_self_labelling_trains_only_the_chosen_subhead_and_the_trunk():
    X, y = shapes(40, seed=0)
    base = _model(epochs=2).fit(X)
    model = _model(epochs=2, self_label_epochs=2, confidence=0.5).fit(X, y)
    assert model.head_ == base.head_  # frozen at the last IIC epoch
    np.testing.assert_allclose(model.proba_, model.predict_proba(X), atol=1e-6)
    before, after = _state(base), _state(model)
    k, h = 4, model.head_
    w0, w1 = before["heads.main.linear.weight"], after["heads.main.linear.weight"]
    rows = torch.zeros(w0.shape[0], dtype=torch.bool)
    rows[h * k : (h + 1) * k] = True
    assert not torch.equal(w0[rows], w1[rows])  # the chosen sub-head learnt
    assert torch.equal(w0[~rows], w1[~rows])  # the others did not move
    for key in before:  # the auxiliary head is not trained either
        if key.startswith("heads.over"):
            assert torch.equal(before[key], after[key]), key
    assert any(
        not torch.equal(before[key], after[key])
        for key in before
        if key.startswith("trunk") and after[key].is_floating_point()
    )
    phases = [e.get("phase", "iic") for e in model.history_]
    assert phases == ["iic", "iic", "self-label", "self-label"]
    assert model.n_epochs_ == 4
    last = model.history_[-1]
    assert 0 < last["confident_share"] <= 1 and last["self_label_loss"] > 0
    assert last["accuracy"] == pytest.approx(clustering_accuracy(y, model.labels_))
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_no_confident_image_leaves_the_network_unchanged(caplog):
    X, _ = shapes(10, seed=1)
    base = _model(epochs=1).fit(X)
    with caplog.at_level(logging.WARNING, logger="clusterlens.deep._iic"):
        model = _model(epochs=1, self_label_epochs=1, confidence=1 - 1e-12).fit(X)
    for (key, a), b in zip(_state(base).items(), _state(model).values(), strict=True):
        assert torch.equal(a, b), key
    entry = model.history_[-1]
    assert entry["confident_share"] == 0 and entry["self_label_loss"] is None
    assert "no image above confidence" in caplog.text


def test_self_labelling_keeps_the_clusters_and_its_targets_grow():
    """No collapse into fewer clusters (what this step did at the full
    learning rate, or without the entropy term), accuracy kept, and more
    images above the confidence."""
    X, y = shapes(100, seed=0)
    fast = dict(
        epochs=1, aux_mode="joint", width=0.5, n_heads=5, n_repeats=4, batch_size=25
    )
    iic = _model(**fast).fit(X, y)
    selfl = _model(**fast, self_label_epochs=3, confidence=0.99).fit(X, y)
    a0 = clustering_accuracy(y, iic.labels_)
    a1 = clustering_accuracy(y, selfl.labels_)
    assert a1 >= a0 - 0.05, (a0, a1)  # the collapse took it to chance (0.26)
    used = [e["n_clusters_used"] for e in selfl.history_]
    assert min(used) >= used[0], used
    shares = [e["confident_share"] for e in selfl.history_[1:]]
    assert shares[-1] > shares[0], shares


def test_same_seed_same_result_and_resume_into_self_labelling(tmp_path):
    X, _ = shapes(16, seed=3)
    full = _model(epochs=2, self_label_epochs=2, confidence=0.5).fit(X)
    again = _model(epochs=2, self_label_epochs=2, confidence=0.5).fit(X)
    for (key, a), b in zip(_state(full).items(), _state(again).values(), strict=True):
        assert torch.equal(a, b), key
    # a finished IIC run, resumed with self-labelling epochs added
    ckpt = tmp_path / "ckpt"
    _model(epochs=2, checkpoint_dir=ckpt).fit(X)
    part = _model(
        epochs=2, self_label_epochs=1, confidence=0.5, checkpoint_dir=ckpt, resume=True
    ).fit(X)
    assert [e.get("phase", "iic") for e in part.history_][-1] == "self-label"
    resumed = _model(
        epochs=2, self_label_epochs=2, confidence=0.5, checkpoint_dir=ckpt, resume=True
    ).fit(X)
    for (key, a), b in zip(_state(full).items(), _state(resumed).values(), strict=True):
        assert torch.equal(a, b), key
    assert [e.get("self_label_loss") for e in resumed.history_] == [
        e.get("self_label_loss") for e in full.history_
    ]
    # self-labelling began after epoch 2: more IIC epochs cannot come before it
    with pytest.raises(InvalidParameterError, match="started self-labelling"):
        _model(
            epochs=3,
            self_label_epochs=2,
            confidence=0.5,
            checkpoint_dir=ckpt,
            resume=True,
        ).fit(X)


def test_saved_model_keeps_the_settings(tmp_path):
    X, _ = shapes(10, seed=4)
    model = _model(epochs=1, self_label_epochs=1, confidence=0.6).fit(X)
    _, js = model.save(tmp_path / "m")
    params = json.loads(js.read_text())["params"]
    assert params["self_label_epochs"] == 1 and params["confidence"] == 0.6
    loaded = IIC.load(tmp_path / "m", device="cpu")
    assert loaded.self_label_epochs == 1 and loaded.confidence == 0.6
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"self_label_epochs": -1}, "self_label_epochs"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
    ],
)
def test_bad_values_are_clear_errors(kw, needle):
    X, _ = shapes(4, seed=0)
    with pytest.raises(InvalidParameterError, match=needle):
        _model(**kw).fit(X)
