"""#23 part 2: the noise estimate behind the flags, and the prior-corrected ranking."""

from __future__ import annotations

import numpy as np
import pytest

from clusterlens.exceptions import DataQualityWarning
from clusterlens.label_issues import (
    combine_scores,
    confident_joint,
    find_label_issues,
    prior_corrected,
)
from clusterlens.label_issues._find import _noise_counts


def test_given_first_keeps_a_confident_given_label_on_the_diagonal():
    """By hand: the thresholds (mean self-confidence) are 0.35, 0.40, 0.75."""
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array(
        [[0.40, 0.45, 0.15], [0.30, 0.10, 0.60], [0.10, 0.50, 0.40],
         [0.20, 0.30, 0.50], [0.10, 0.10, 0.80], [0.10, 0.20, 0.70]]
    )  # fmt: skip
    # sample 0: its label 0 passes (0.40 >= 0.35) and so does 1 (0.45 >= 0.40)
    joint, flag, guess = confident_joint(y, p)
    assert guess.tolist() == [1, -1, 1, -1, 2, -1]  # cleanlab: the arg-max
    assert flag.tolist() == [True] + [False] * 5
    joint, flag, guess = confident_joint(y, p, given_first=True)
    assert guess.tolist() == [0, -1, 1, -1, 2, -1] and not flag.any()
    assert joint.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_given_first_matches_cleanlab_when_no_given_label_passes(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    y = rng.integers(0, 4, size=200)
    y[:4] = np.arange(4)
    p = rng.dirichlet(np.full(4, 0.5), size=200)
    j0, f0, g0 = confident_joint(y, p)
    j1, f1, g1 = confident_joint(y, p, given_first=True)
    own = p[np.arange(200), y] >= confident_joint_thresholds(y, p) - 1e-6
    assert (g1[own] == y[own]).all()
    np.testing.assert_array_equal(g1[~own], g0[~own])
    # the given-first joint moves mass onto the diagonal, never off it
    assert np.trace(j1) >= np.trace(j0) and f1.sum() <= f0.sum()


def confident_joint_thresholds(y, p):
    from clusterlens.label_issues import confident_thresholds

    return confident_thresholds(y, p)[y]


def test_prior_corrected():
    p = np.array([[0.6, 0.4], [0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    y = np.array([0, 0, 0, 1])  # priors 0.75, 0.25
    np.testing.assert_allclose(prior_corrected(y, p, 0.0), p)
    full = prior_corrected(y, p, 1.0)
    ref = p / np.array([0.75, 0.25])
    np.testing.assert_allclose(full, ref / ref.sum(1, keepdims=True))
    half = prior_corrected(y, p, 0.5)
    ref = p / np.sqrt([0.75, 0.25])
    np.testing.assert_allclose(half, ref / ref.sum(1, keepdims=True))
    # balanced classes: nothing changes
    yb = np.array([0, 1, 0, 1])
    np.testing.assert_allclose(prior_corrected(yb, p, 0.5), p)


def test_prior_correction_ranks_a_rare_class_by_fit_not_by_rarity():
    """Every sample's own class is 3x as likely as the other (before the
    prior): the classifier's posteriors blame the rare class's labels, the
    prior-corrected ones see every label alike, the square root half-way."""
    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    like = np.where(np.arange(2)[None, :] == y[:, None], 3.0, 1.0)
    post = like * np.array([0.9, 0.1])
    post /= post.sum(1, keepdims=True)
    own = np.arange(100), y
    sc0 = post[own]
    assert sc0[y == 1].max() < 0.3 < 0.9 < sc0[y == 0].min()
    np.testing.assert_allclose(prior_corrected(y, post, 1.0)[own], 0.75)
    sc5 = prior_corrected(y, post, 0.5)[own]
    assert sc0[y == 1].max() < sc5[y == 1].min() < sc5[y == 0].max() < sc0[y == 0].min()
    q0, _ = combine_scores(y, post, None, None, knn_weight=0)
    _, p5 = combine_scores(y, post, None, None, knn_weight=0, prior_exponent=0.5)
    np.testing.assert_allclose(p5, prior_corrected(y, post, 0.5))
    assert q0[y == 1].max() < q0[y == 0].min()


def test_noise_counts_need_both_views_and_enough_samples():
    y = np.array([0] * 6 + [1] * 6 + [2] * 2)
    p = np.full((14, 3), 0.05)
    p[np.arange(14), y] = 0.9
    p[0] = [0.05, 0.9, 0.05]  # sample 0: looks like class 1
    p[1] = [0.05, 0.9, 0.05]  # sample 1: as well
    p[12] = [0.9, 0.05, 0.05]  # a member of the 2-sample class looks like 0
    p /= p.sum(1, keepdims=True)
    predicted = p.argmax(1)
    vote = predicted.copy()
    vote[1] = 0  # its neighbours agree with its label
    n = _noise_counts(y, p, predicted, vote, min_class_size=3)
    assert n.tolist() == [1, 0, 0]
    n = _noise_counts(y, p, predicted, predicted, min_class_size=1)
    assert n[0] == 2 and n[2] >= 1


def test_no_flag_in_a_class_smaller_than_the_folds():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(5, 6))
    y = np.r_[np.repeat([0, 1, 2], 60), [3, 3], [4, 4, 4]]
    X = centres[y] + rng.normal(size=(y.size, 6))
    with pytest.warns(DataQualityWarning, match="none of them is flagged"):
        res = find_label_issues(X.astype(np.float32), y, n_folds=5, random_state=0)
    assert not res.is_label_issue[y >= 3].any()
    assert res.is_label_issue.mean() <= res.info["estimated_noise_rate"] + 1e-12


@pytest.mark.parametrize("frac", [0.1, 0.3])
def test_estimate_tracks_planted_uniform_noise(frac):
    """Separable classes: the estimate is near the planted rate."""
    rng = np.random.default_rng(1)
    k, n = 5, 1000
    centres = rng.normal(0, 6, size=(k, 8))
    y = rng.integers(0, k, size=n)
    X = (centres[y] + rng.normal(size=(n, 8))).astype(np.float32)
    noisy = y.copy()
    idx = rng.choice(n, size=int(frac * n), replace=False)
    noisy[idx] = (y[idx] + rng.integers(1, k, size=idx.size)) % k
    res = find_label_issues(X, noisy, n_folds=5, random_state=0)
    assert abs(res.info["estimated_noise_rate"] - frac) < 0.05
    f = res.is_label_issue
    assert (f & (noisy != y)).sum() / f.sum() > 0.9  # flags are mostly real
