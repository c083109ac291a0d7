"""Checkpoints: an interrupted fit, resumed, ends as the uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clusterlens.cluster import kmeans
from clusterlens.exceptions import DataValidationError, InvalidParameterError


def _data(seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (30, 8))
    X = centers[rng.integers(30, size=4000)] + rng.normal(0, 1, (4000, 8))
    return X.astype(np.float32)


def test_resume_equals_uninterrupted(tmp_path, global_random_seed):
    X = _data(global_random_seed)
    seed = global_random_seed
    full = kmeans(X, 30, max_iter=40, tol=0, random_state=seed)
    ckpt = tmp_path / "ckpt"
    part = kmeans(X, 30, max_iter=5, tol=0, random_state=seed, checkpoint_dir=ckpt)
    assert part.n_iter == 5
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert meta["iteration"] == 5
    assert [p.name for p in ckpt.glob("*.npz")] == ["checkpoint-000005.npz"]
    done = kmeans(
        X, 30, max_iter=40, tol=0, random_state=seed, checkpoint_dir=ckpt, resume=True
    )
    np.testing.assert_array_equal(done.centers, full.centers)
    np.testing.assert_array_equal(done.labels, full.labels)
    assert done.inertia == full.inertia and done.n_iter == full.n_iter
    assert [h["inertia"] for h in done.history] == [h["inertia"] for h in full.history]


def test_checkpoint_from_other_data_or_params_is_refused(tmp_path):
    X = _data(0)
    ckpt = tmp_path / "c"
    kmeans(X, 30, max_iter=3, random_state=0, checkpoint_dir=ckpt)
    with pytest.raises(DataValidationError, match="fingerprint mismatch"):
        kmeans(X[::-1].copy(), 30, random_state=0, checkpoint_dir=ckpt, resume=True)
    with pytest.raises(DataValidationError, match="fingerprint mismatch"):
        kmeans(X, 31, random_state=0, checkpoint_dir=ckpt, resume=True)


def test_corrupt_or_missing_checkpoint(tmp_path):
    X = _data(1)
    ckpt = tmp_path / "c"
    with pytest.raises(DataValidationError, match="No readable checkpoint"):
        kmeans(X, 30, random_state=0, checkpoint_dir=ckpt, resume=True)
    kmeans(X, 30, max_iter=2, random_state=0, checkpoint_dir=ckpt)
    npz = next(ckpt.glob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataValidationError, match="corrupt"):
        kmeans(X, 30, random_state=0, checkpoint_dir=ckpt, resume=True)


def test_checkpoints_need_a_single_seeded_run(tmp_path):
    X = _data(2)
    with pytest.raises(InvalidParameterError, match="one run"):
        kmeans(X, 5, n_init=3, random_state=0, checkpoint_dir=tmp_path)
    with pytest.raises(InvalidParameterError, match="needs checkpoint_dir"):
        kmeans(X, 5, random_state=0, resume=True)
