"""Tests for clusterlens.metrics._clustering (accuracy, purity, NMI, ARI)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.metrics import (
    adjusted_rand,
    cluster_summary,
    clustering_accuracy,
    contingency_matrix,
    evaluate_clustering,
    normalized_mutual_info,
    purity,
)

SEEDS = range(6)


def _brute_force_accuracy(labels_true, labels_pred, n_classes, n_clusters):
    """Best one-to-one accuracy by trying every injective cluster/class map."""
    n = labels_true.shape[0]
    best = 0
    if n_clusters <= n_classes:
        # Every injective map cluster -> class.
        for image in itertools.permutations(range(n_classes), n_clusters):
            mapped = np.asarray(image)[labels_pred]
            best = max(best, int(np.sum(mapped == labels_true)))
    else:
        # Every injective map class -> cluster; unmatched clusters are wrong.
        for image in itertools.permutations(range(n_clusters), n_classes):
            mapped = np.asarray(image)[labels_true]
            best = max(best, int(np.sum(mapped == labels_pred)))
    return best / n


def _random_labels(seed, n_samples, n_classes, n_clusters):
    """Random labels using every class and every cluster at least once."""
    rng = np.random.default_rng(seed)
    true = np.concatenate(
        [np.arange(n_classes), rng.integers(0, n_classes, n_samples - n_classes)]
    )
    pred = np.concatenate(
        [np.arange(n_clusters), rng.integers(0, n_clusters, n_samples - n_clusters)]
    )
    return rng.permutation(true), rng.permutation(pred)


# --- contingency matrix ------------------------------------------------------


def test_contingency_matrix_toy_case_by_hand():
    matrix, classes, clusters = contingency_matrix(
        [0, 0, 1, 1, 1, 2], [5, 3, 3, 3, 5, 5]
    )
    # rows = classes 0, 1, 2; columns = clusters 3, 5
    np.testing.assert_array_equal(matrix, [[1, 1], [2, 1], [0, 1]])
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(classes, [0, 1, 2])
    np.testing.assert_array_equal(clusters, [3, 5])


@pytest.mark.parametrize("seed", SEEDS)
def test_contingency_matrix_sums_to_n_samples_and_matches_counts(seed):
    true, pred = _random_labels(seed, 200, 4, 6)
    matrix, classes, clusters = contingency_matrix(true, pred)
    assert matrix.shape == (4, 6)
    assert matrix.sum() == 200
    expected = np.array(
        [[np.sum((true == c) & (pred == k)) for k in clusters] for c in classes]
    )
    np.testing.assert_array_equal(matrix, expected)


# --- Hungarian accuracy ------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("n_classes", "n_clusters"), [(4, 4), (4, 3), (3, 5), (2, 2)])
def test_hungarian_accuracy_matches_brute_force(seed, n_classes, n_clusters):
    true, pred = _random_labels(seed, 40, n_classes, n_clusters)
    expected = _brute_force_accuracy(true, pred, n_classes, n_clusters)
    got = clustering_accuracy(true, pred, method="hungarian")
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_is_one_for_a_permuted_relabelling(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 7, 300)
    relabel = rng.permutation(7) + 100  # new ids, shuffled
    pred = relabel[true]
    for method in ("auto", "hungarian", "majority"):
        assert clustering_accuracy(true, pred, method=method) == 1.0
    assert purity(true, pred) == 1.0


# --- majority accuracy and purity by hand ------------------------------------


def test_majority_and_hungarian_accuracy_toy_case_by_hand():
    true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    pred = [0, 0, 1, 1, 1, 2, 2, 3, 3]
    # cluster 0 -> {0, 0}: majority 0 (2); cluster 1 -> {0, 1, 1}: majority 1 (2);
    # clusters 2 and 3 -> {2, 2}: majority 2 (2 + 2). Majority: 8 / 9.
    assert clustering_accuracy(true, pred, method="majority") == pytest.approx(8 / 9)
    # One-to-one: class 2 can take only one of clusters 2, 3. Hungarian: 6 / 9.
    assert clustering_accuracy(true, pred, method="hungarian") == pytest.approx(6 / 9)
    # 4 clusters > 3 classes, so "auto" is "majority".
    assert clustering_accuracy(true, pred) == pytest.approx(8 / 9)


def test_auto_uses_hungarian_when_fewer_clusters_than_classes():
    true = [0, 0, 1, 1, 2, 2]
    pred = [0, 0, 0, 0, 1, 1]
    # Hungarian: cluster 0 -> class 0 or 1 (2), cluster 1 -> class 2 (2): 4 / 6.
    assert clustering_accuracy(true, pred) == pytest.approx(4 / 6)
    assert clustering_accuracy(true, pred, method="hungarian") == pytest.approx(4 / 6)


def test_purity_toy_case_by_hand():
    true = ["a", "a", "a", "b", "b", "c", "c", "c"]
    pred = [1, 1, 2, 2, 2, 2, 3, 3]
    # cluster 1: {a, a} -> 2; cluster 2: {a, b, b, c} -> 2; cluster 3: {c, c} -> 2
    assert purity(true, pred) == pytest.approx(6 / 8)


def test_cluster_summary_toy_case_by_hand():
    true = ["a", "a", "a", "b", "b", "c", "c", "c"]
    pred = [1, 1, 2, 2, 2, 2, 3, 3]
    summary = cluster_summary(true, pred)
    assert set(summary) == {"cluster", "size", "majority_label", "purity"}
    np.testing.assert_array_equal(summary["cluster"], [1, 2, 3])
    np.testing.assert_array_equal(summary["size"], [2, 4, 2])
    np.testing.assert_array_equal(summary["majority_label"], ["a", "b", "c"])
    np.testing.assert_allclose(summary["purity"], [1.0, 0.5, 1.0])
    # The size-weighted mean of per-cluster purity is the overall purity.
    weighted = np.sum(summary["purity"] * summary["size"]) / len(true)
    assert weighted == pytest.approx(purity(true, pred))


def test_cluster_summary_breaks_ties_towards_smallest_class():
    summary = cluster_summary([3, 1, 2, 2], [0, 0, 1, 1])
    np.testing.assert_array_equal(summary["majority_label"], [1, 2])
    np.testing.assert_allclose(summary["purity"], [0.5, 1.0])


# --- wrappers and the combined report ----------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_nmi_and_ari_equal_sklearn(seed):
    true, pred = _random_labels(seed, 150, 5, 4)
    assert normalized_mutual_info(true, pred) == pytest.approx(
        normalized_mutual_info_score(true, pred)
    )
    assert normalized_mutual_info(true, pred, average_method="max") == pytest.approx(
        normalized_mutual_info_score(true, pred, average_method="max")
    )
    assert adjusted_rand(true, pred) == pytest.approx(adjusted_rand_score(true, pred))


@pytest.mark.parametrize("seed", SEEDS)
def test_evaluate_clustering_agrees_with_individual_metrics(seed):
    true, pred = _random_labels(seed, 120, 3, 5)
    scores = evaluate_clustering(true, pred)
    expected_keys = {"accuracy", "nmi", "ari", "purity", "n_clusters", "n_classes"}
    assert set(scores) == expected_keys
    assert scores["accuracy"] == clustering_accuracy(true, pred)
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(true, pred))
    assert scores["ari"] == pytest.approx(adjusted_rand_score(true, pred))
    assert scores["purity"] == purity(true, pred)
    assert scores["n_clusters"] == 5
    assert scores["n_classes"] == 3
    assert all(isinstance(v, int | float) for v in scores.values())


def test_string_labels_work_and_match_integer_encoding():
    names = np.array(["cat", "dog", "bird", "fish"])
    rng = np.random.default_rng(0)
    true_idx = rng.integers(0, 4, 80)
    pred_idx = rng.integers(0, 3, 80)
    true_str = names[true_idx]
    pred_str = np.array(["k0", "k1", "k2"])[pred_idx]
    assert clustering_accuracy(true_str, pred_str) == pytest.approx(
        clustering_accuracy(true_idx, pred_idx)
    )
    assert purity(true_str, pred_str) == pytest.approx(purity(true_idx, pred_idx))
    assert evaluate_clustering(list(true_str), list(pred_str))["n_classes"] == 4
    _, classes, clusters = contingency_matrix(true_str, pred_str)
    assert classes.tolist() == ["bird", "cat", "dog", "fish"]
    assert clusters.tolist() == ["k0", "k1", "k2"]


def test_single_sample_and_single_cluster():
    assert clustering_accuracy([4], ["x"]) == 1.0
    assert purity([0, 1, 1, 2], [0, 0, 0, 0]) == pytest.approx(0.5)
    assert clustering_accuracy([0, 1, 1, 2], [0, 0, 0, 0]) == pytest.approx(0.5)


def test_inputs_are_not_modified_and_read_only_input_is_accepted():
    true = np.array([0, 0, 1, 1, 2])
    pred = np.array([1, 1, 0, 0, 0])
    true.setflags(write=False)
    pred.setflags(write=False)
    evaluate_clustering(true, pred)
    np.testing.assert_array_equal(true, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(pred, [1, 1, 0, 0, 0])


# --- errors ------------------------------------------------------------------

ALL_METRICS = [
    contingency_matrix,
    clustering_accuracy,
    purity,
    cluster_summary,
    normalized_mutual_info,
    adjusted_rand,
    evaluate_clustering,
]


@pytest.mark.parametrize("func", ALL_METRICS)
def test_length_mismatch_names_both_lengths(func):
    with pytest.raises(
        DataValidationError,
        match=r"same length; got len\(labels_true\)=3 and len\(labels_pred\)=2",
    ):
        func([0, 1, 1], [0, 1])


@pytest.mark.parametrize("func", ALL_METRICS)
def test_empty_input_raises(func):
    with pytest.raises(DataValidationError, match="must be non-empty; got 0 samples"):
        func([], [])


@pytest.mark.parametrize("func", ALL_METRICS)
def test_2d_input_raises(func):
    with pytest.raises(
        DataValidationError, match=r"labels_pred must be 1-D .* got shape \(2, 2\)"
    ):
        func([0, 1, 0, 1], [[0, 1], [0, 1]])
    with pytest.raises(
        DataValidationError, match=r"labels_true must be 1-D .* got shape \(\)"
    ):
        func(3, [0])


def test_nan_labels_raise():
    with pytest.raises(
        DataValidationError, match=r"labels_true must not contain NaN .*index 1"
    ):
        clustering_accuracy([0.0, np.nan, 1.0], [0, 1, 1])


def test_unsortable_mixed_labels_raise():
    mixed = np.array([1, "a", None], dtype=object)
    with pytest.raises(DataValidationError, match="labels_pred must hold labels"):
        purity([0, 1, 1], mixed)


def test_unknown_accuracy_method_suggests_close_match():
    with pytest.raises(
        InvalidParameterError,
        match=r"'method' parameter of clustering_accuracy .* Did you mean 'hungarian'",
    ):
        clustering_accuracy([0, 1], [0, 1], method="hungarain")


def test_errors_are_value_errors():
    with pytest.raises(ValueError, match="same length"):
        clustering_accuracy([0], [0, 1])


# --- properties --------------------------------------------------------------


@st.composite
def _label_pairs(draw):
    n = draw(st.integers(min_value=1, max_value=60))
    n_classes = draw(st.integers(min_value=1, max_value=6))
    n_clusters = draw(st.integers(min_value=1, max_value=8))
    true = draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n))
    pred = draw(st.lists(st.integers(0, n_clusters - 1), min_size=n, max_size=n))
    return np.asarray(true), np.asarray(pred)


@settings(deadline=None, max_examples=200)
@given(_label_pairs())
def test_accuracy_and_purity_in_unit_interval_and_hungarian_below_purity(pair):
    true, pred = pair
    acc_h = clustering_accuracy(true, pred, method="hungarian")
    acc_m = clustering_accuracy(true, pred, method="majority")
    acc_a = clustering_accuracy(true, pred)
    pur = purity(true, pred)
    for value in (acc_h, acc_m, acc_a, pur):
        assert 0.0 <= value <= 1.0
    assert acc_h <= pur + 1e-12
    assert acc_m == pytest.approx(pur)
    assert acc_h <= acc_a + 1e-12
    summary = cluster_summary(true, pred)
    assert np.all((summary["purity"] > 0) & (summary["purity"] <= 1))
    assert summary["size"].sum() == true.shape[0]


@settings(deadline=None, max_examples=100)
@given(_label_pairs(), st.randoms(use_true_random=False))
def test_metrics_invariant_to_sample_permutation(pair, rnd):
    true, pred = pair
    order = np.arange(true.shape[0])
    rnd.shuffle(order)
    before = evaluate_clustering(true, pred)
    after = evaluate_clustering(true[order], pred[order])
    for key, value in before.items():
        assert after[key] == pytest.approx(value, abs=1e-12), key
