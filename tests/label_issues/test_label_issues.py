"""Label-issue scores: cleanlab equivalence, planted flips, chunking, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from clusterlens._config import config_context
from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.label_issues import (
    class_leverage,
    confident_joint,
    find_label_issues,
    most_confused_class,
    normalized_margin,
    prior_corrected,
    rank_label_issues,
    self_confidence,
    streaming_pca,
)
from clusterlens.label_issues._logreg import fit_softmax, predict_proba
from clusterlens.label_issues._neighbors import neighbor_labels


def _probs(rng, n=400, k=5):
    p = rng.dirichlet(np.full(k, 0.6), size=n)
    labels = rng.integers(0, k, size=n)
    labels[:k] = np.arange(k)  # every class present
    return labels, p


@pytest.fixture(scope="module")
def digits_flipped():
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.choice(y.size, size=180, replace=False)
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, 10, size=idx.size)) % 10
    return X.astype(np.float32), noisy, noisy != y


@pytest.fixture(scope="module")
def digits_result(digits_flipped):
    X, noisy, _ = digits_flipped
    return find_label_issues(X, noisy, random_state=0)


# --------------------------------------------------------------------------- #
# Same definitions as cleanlab
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("method", ["self_confidence", "normalized_margin"])
def test_scores_match_cleanlab(global_random_seed, method):
    from cleanlab.rank import get_label_quality_scores

    labels, p = _probs(np.random.default_rng(global_random_seed))
    ours = (self_confidence if method == "self_confidence" else normalized_margin)(
        labels, p
    )
    ref = get_label_quality_scores(labels, p, method=method, adjust_pred_probs=False)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_confident_joint_matches_cleanlab(global_random_seed):
    from cleanlab.count import compute_confident_joint

    labels, p = _probs(np.random.default_rng(global_random_seed), n=600, k=6)
    joint, flag, guess = confident_joint(labels, p)
    ref_joint, ref_idx = compute_confident_joint(
        labels, p, calibrate=False, return_indices_of_off_diagonals=True
    )
    np.testing.assert_array_equal(joint, ref_joint)
    np.testing.assert_array_equal(np.flatnonzero(flag), np.sort(ref_idx))
    assert (guess[flag] != labels[flag]).all()


def test_scores_toy_by_hand():
    labels = np.array([0, 1, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(self_confidence(labels, p), [0.7, 0.3, 0.6])
    np.testing.assert_allclose(normalized_margin(labels, p), [0.75, 0.35, 0.7])


def test_most_confused_class_by_hand():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    pred = labels.copy()
    pred[:4] = 2  # 40 % of class 0 predicted as 2
    pred[10:12] = 0  # 20 % of class 1 predicted as 0
    interest, true, rate = most_confused_class(labels, pred, 3)
    assert (interest, true) == (2, 0) and rate == pytest.approx(0.4)


# --------------------------------------------------------------------------- #
# Pieces against references
# --------------------------------------------------------------------------- #
def test_class_leverage_matches_formula():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 4)).astype(np.float32)
    labels = np.repeat([0, 1], 150)
    lev = class_leverage(Z, labels, 2, ridge=1e-3)
    A = np.c_[Z[labels == 1].astype(np.float64), np.ones(150)]
    G = A.T @ A + 1e-3 * 150 * np.eye(5)
    ref = np.einsum("ij,ji->i", A, np.linalg.solve(G, A.T))
    np.testing.assert_allclose(lev[labels == 1], ref, rtol=1e-8)
    assert lev.min() > 0 and lev.max() < 1


def test_softmax_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    Z = streaming_pca(X.astype(np.float32), 20).whitened()
    alpha = 1e-2
    model = fit_softmax(Z, y, 10, alpha=alpha, max_iter=500)
    ref = LogisticRegression(C=1 / (alpha * y.size), max_iter=2000, tol=1e-8)
    ref.fit(Z.astype(np.float64), y)
    p_ours = predict_proba(model, Z).astype(np.float64)
    p_ref = ref.predict_proba(Z.astype(np.float64))
    ll = lambda p: -np.mean(np.log(p[np.arange(y.size), y]))  # noqa: E731
    assert abs(ll(p_ours) - ll(p_ref)) < 1e-3
    assert np.abs(p_ours - p_ref).max() < 0.02


def test_softmax_makes_no_subnormal_probabilities():
    """Confident logits would give float32 subnormals (exp(< -87)), which make
    the next GEMM ~60x slower; the probabilities stay 0 or normal, and the
    fit on well-separated data still matches scikit-learn's."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    Z = (rng.normal(size=(200, 8)) + 40.0 * np.eye(4, 8)[y]).astype(np.float32)
    alpha = 1e-4
    model = fit_softmax(Z, y, 4, alpha=alpha, max_iter=500)
    p = predict_proba(model, Z)
    tiny = np.finfo(np.float32).tiny
    assert p.min() < 1e-30  # the logits are confident enough to underflow
    assert not np.any((p > 0) & (p < tiny))
    ref = LogisticRegression(C=1 / (alpha * y.size), max_iter=5000, tol=1e-10)
    ref.fit(Z.astype(np.float64), y)
    assert (p.argmax(1) == ref.predict(Z.astype(np.float64))).all()


def test_streaming_pca_matches_sklearn_and_chunking():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    X = (rng.normal(size=(3001, 12)) * np.arange(1, 13)).astype(np.float32)
    full = streaming_pca(X, 5)
    with config_context(working_memory=0.05):  # ~1,000-row chunks, odd end
        chunked = streaming_pca(X, 5)
    ref = PCA(5).fit(X.astype(np.float64))
    np.testing.assert_allclose(full.variances, ref.explained_variance_, rtol=1e-3)
    np.testing.assert_allclose(
        np.abs(full.components), np.abs(ref.components_), atol=1e-3
    )
    np.testing.assert_allclose(chunked.Z, full.Z, rtol=1e-4, atol=1e-3)
    w = full.whitened()
    np.testing.assert_allclose(w.var(axis=0), 1.0, rtol=1e-3)


@pytest.mark.parametrize(
    "n, d, n_probe", [(5000, 8, 30), (20000, 32, 6)], ids=["8d-uniform", "32d-blobs"]
)
def test_cell_neighbors_recall_against_exact(n, d, n_probe):
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(n, d)).astype(np.float32)
    if d > 8:  # clustered, as PCA features of labelled data are
        Z += 3 * rng.normal(size=(40, d)).astype(np.float32)[rng.integers(0, 40, n)]
    exact = neighbor_labels(Z, 10).indices
    approx = neighbor_labels(Z, 10, exact_max_samples=0, n_probe=n_probe, seed=0)
    assert "approximate" in approx.method
    hits = (exact[:, :, None] == approx.indices[:, None, :]).any(axis=2).mean()
    assert hits >= 0.9, f"cell-search recall {hits:.3f} < 0.9"
    assert not (exact == np.arange(n)[:, None]).any()  # self excluded
    assert not (approx.indices == np.arange(n)[:, None]).any()
    again = neighbor_labels(Z, 10, exact_max_samples=0, n_probe=n_probe, seed=0)
    np.testing.assert_array_equal(again.indices, approx.indices)


# --------------------------------------------------------------------------- #
# Planted flips, determinism, input variety
# --------------------------------------------------------------------------- #
def test_planted_flips_rank_high(digits_flipped, digits_result):
    _, noisy, flipped = digits_flipped
    res = digits_result
    auc = roc_auc_score(flipped, -res.label_quality)
    assert auc > 0.98, f"combined AUROC {auc:.4f} <= 0.98"
    assert roc_auc_score(flipped, -res.self_confidence) > 0.95
    assert roc_auc_score(flipped, res.neighbor_disagreement) > 0.95
    assert roc_auc_score(flipped, res.coreset_importance) > 0.9
    top = res.ranked()[: flipped.sum()]
    assert flipped[top].mean() > 0.9
    # The flagged set finds at least as many flips as cleanlab's, more precisely.
    from cleanlab.filter import find_label_issues as cl_find

    cl = cl_find(noisy, res.pred_probs, n_jobs=1)
    hits, cl_hits = (res.is_label_issue & flipped).sum(), (cl & flipped).sum()
    assert hits >= cl_hits > 0.8 * flipped.sum()
    assert hits / res.is_label_issue.sum() >= cl_hits / cl.sum()
    np.testing.assert_array_equal(np.sort(res.issue_rank), np.arange(1, len(res) + 1))


def test_combined_beats_cleanlab_on_same_pred_probs(digits_flipped, digits_result):
    from cleanlab.rank import get_label_quality_scores

    _, noisy, flipped = digits_flipped
    ref = get_label_quality_scores(noisy, digits_result.pred_probs)
    assert roc_auc_score(flipped, -digits_result.label_quality) >= roc_auc_score(
        flipped, -ref
    )


def test_deterministic_with_seed(digits_flipped, digits_result):
    X, noisy, _ = digits_flipped
    again = find_label_issues(X, noisy, random_state=0)
    for name, col in digits_result.columns().items():
        np.testing.assert_array_equal(col, again.columns()[name], err_msg=name)


def test_npy_memmap_and_string_labels(tmp_path):
    rng = np.random.default_rng(4)
    X = np.r_[rng.normal(0, 1, (60, 6)), rng.normal(5, 1, (60, 6))].astype(np.float32)
    names = np.array(["cat"] * 60 + ["dog"] * 60)
    names[7] = "dog"
    path = tmp_path / "X.npy"
    np.save(path, X)
    res = find_label_issues(str(path), names, n_folds=3, random_state=0)
    assert res.classes.tolist() == ["cat", "dog"]
    assert res.ranked()[0] == 7
    assert rank_label_issues(X, names, n_folds=3, random_state=0)[0] == 7


def test_supplied_pred_probs_used_as_given():
    labels, p = _probs(np.random.default_rng(5), n=200, k=4)
    X = np.random.default_rng(5).normal(size=(200, 3))
    res = find_label_issues(
        X, labels, pred_probs=p, knn_weight=0.0, prior_exponent=0.0, random_state=0
    )
    from scipy.stats import rankdata

    ranks = rankdata(normalized_margin(labels, p)) + rankdata(
        self_confidence(labels, p)
    )
    np.testing.assert_allclose(res.label_quality, (ranks - 2) / (2 * 199))
    # the default divides the square root of the class prior out first
    res = find_label_issues(X, labels, pred_probs=p, knn_weight=0.0, random_state=0)
    pc = prior_corrected(labels, p, 0.5)
    ranks = rankdata(normalized_margin(labels, pc)) + rankdata(
        self_confidence(labels, pc)
    )
    np.testing.assert_allclose(res.label_quality, (ranks - 2) / (2 * 199))
    np.testing.assert_array_equal(res.pred_probs, p)
    assert res.info["pred_probs"] == "supplied"


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def test_errors():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(50, 4))
    y = np.repeat([0, 1], 25)
    with pytest.raises(DataValidationError, match="49 entries but the features"):
        find_label_issues(X, y[:49])
    with pytest.raises(DataValidationError, match="one class only"):
        find_label_issues(X, np.zeros(50, dtype=int))
    Xn = X.copy()
    Xn[17, 2] = np.nan
    with pytest.raises(DataValidationError, match=r"NaN or infinite values .* row 17"):
        find_label_issues(Xn, y)
    bad = np.full((50, 2), 0.6)
    with pytest.raises(DataValidationError, match="rows must sum to 1"):
        find_label_issues(X, y, pred_probs=bad)
    with pytest.raises(DataValidationError, match=r"shape \(50, 3\)"):
        find_label_issues(X, y, pred_probs=np.full((50, 3), 1 / 3))
    with pytest.raises(InvalidParameterError, match="knn_weight"):
        find_label_issues(X, y, knn_weight=2.0)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, 1e4])
def test_constant_features_are_a_data_error_not_linalgerror(value):
    """Issue #17 row 31: all-constant features raised numpy's LinAlgError."""
    X = np.full((60, 5), value, dtype=np.float32)
    y = np.repeat([0, 1, 2], 20)
    with pytest.raises(DataValidationError, match="features are constant"):
        find_label_issues(X, y, random_state=0)


def test_nearly_constant_features_with_an_offset_still_rank():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    X = 1000.0 + rng.normal(scale=0.5, size=(60, 5)) + y[:, None]
    res = find_label_issues(X.astype(np.float32), y, random_state=0)
    assert len(res) == 60


# --------------------------------------------------------------------------- #
# The flagged set: confident learning's noise-rate estimate (issue #23)
# --------------------------------------------------------------------------- #
def test_estimate_issue_counts_matches_cleanlab_calibrated_joint(global_random_seed):
    """Per class: the off-diagonal mass of cleanlab's calibrated confident joint."""
    from cleanlab.count import calibrate_confident_joint, compute_confident_joint

    from clusterlens.label_issues import estimate_issue_counts

    labels, p = _probs(np.random.default_rng(global_random_seed), n=600, k=6)
    joint, _, _ = confident_joint(labels, p)
    ours = estimate_issue_counts(labels, joint, min_examples_per_class=0)
    cal = calibrate_confident_joint(compute_confident_joint(labels, p), labels)
    ref = cal.sum(axis=1) - cal.diagonal()
    # cleanlab rounds each row preserving its total; we round the off-diagonal
    # sum: at most one sample apart per class.
    assert np.abs(ours - ref).max() <= 1, (ours, ref)
    assert abs(int(ours.sum()) - int(ref.sum())) <= 3


def test_estimate_issue_counts_by_hand_and_cap():
    from clusterlens.label_issues import estimate_issue_counts

    labels = np.array([0] * 6 + [1] * 4)
    # row 0: 4 counted as 0, 1 as 1 -> calibrated to 6 samples: 1.2 off
    # row 1: every counted sample guessed 0 -> all 4 off, capped at 4 - 1
    joint = np.array([[4, 1], [2, 1]])
    assert estimate_issue_counts(labels, joint).tolist() == [1, 3]
    assert estimate_issue_counts(labels, joint, min_examples_per_class=0).tolist() == [
        1,
        3,
    ]
    joint = np.array([[4, 1], [3, 0]])
    assert estimate_issue_counts(labels, joint, min_examples_per_class=0).tolist() == [
        1,
        4,
    ]
    assert estimate_issue_counts(labels, joint).tolist() == [1, 3]


def test_flagged_share_is_the_estimated_noise_rate(digits_flipped, digits_result):
    """#23: the flagged set keeps the share confident learning estimates."""
    res = digits_result
    n = len(res)
    est = res.info["estimated_noise_rate"]
    assert res.is_label_issue.sum() == round(est * n)
    assert res.info["flag_rate"] == pytest.approx(res.is_label_issue.mean())
    # 10 % planted: the estimate is near it, not a multiple of it
    assert 0.07 <= est <= 0.15, est
    # flagged = the worst label_quality of each class
    for c in range(10):
        members = np.flatnonzero(res.labels == c)
        worst = members[np.argsort(res.label_quality[members], kind="stable")]
        m = int(res.is_label_issue[members].sum())
        assert res.is_label_issue[worst[:m]].all()


@pytest.mark.parametrize("frac", [0.0, 0.2])
def test_flagged_share_follows_the_noise_on_separable_classes(global_random_seed, frac):
    """Clean separable data flags (almost) nothing; 20 % flips flag about 20 %."""
    rng = np.random.default_rng(global_random_seed)
    k, per = 4, 150
    centres = rng.normal(0, 6, size=(k, 8))
    y = np.repeat(np.arange(k), per)
    X = centres[y] + rng.normal(size=(y.size, 8))
    noisy = y.copy()
    idx = rng.choice(y.size, size=round(frac * y.size), replace=False)
    noisy[idx] = (y[idx] + rng.integers(1, k, size=idx.size)) % k
    res = find_label_issues(X, noisy, n_folds=3, random_state=0)
    share = res.is_label_issue.mean()
    assert abs(share - frac) <= 0.04, f"flagged share {share:.3f} vs {frac} flipped"
