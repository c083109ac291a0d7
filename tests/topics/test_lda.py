"""LDA over visual words: determinism, divergences, top words, spatial cells."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy
from sklearn.decomposition import LatentDirichletAllocation

from clusterlens.exceptions import DataValidationError
from clusterlens.topics import aggregate_cells, fit_lda, symmetric_kl, top_words


def _corpus(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three topics on disjoint word blocks; documents draw from one each."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 20)
    X = np.zeros((60, 30))
    for i, t in enumerate(y):
        X[i] = np.bincount(rng.integers(10 * t, 10 * t + 10, 40), minlength=30)
    return X, y


def test_lda_is_deterministic_and_recovers_topics(global_random_seed):
    X, y = _corpus(global_random_seed)
    a = fit_lda(X, 3, max_iter=30, random_state=global_random_seed)
    b = fit_lda(X, 3, max_iter=30, random_state=global_random_seed)
    np.testing.assert_array_equal(a.doc_topic, b.doc_topic)
    np.testing.assert_array_equal(a.topic_word, b.topic_word)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, a.doc_topic.argmax(1)) > 0.95
    np.testing.assert_allclose(a.doc_topic.sum(1), 1.0)
    np.testing.assert_allclose(a.topic_word.sum(1), 1.0)


def test_lda_equals_sklearn_with_the_same_seed():
    X, _ = _corpus(1)
    r = fit_lda(X, 3, max_iter=10, random_state=5)
    ref = LatentDirichletAllocation(
        3, learning_method="online", max_iter=10, random_state=r.seed
    ).fit(X)
    np.testing.assert_allclose(r.doc_topic, ref.transform(X), rtol=1e-6, atol=1e-9)


def test_symmetric_kl_matches_scipy():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(8), size=4)
    D = symmetric_kl(P, eps=0.0)
    for a in range(4):
        for b in range(4):
            ref = entropy(P[a], P[b]) + entropy(P[b], P[a])
            assert D[a, b] == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_top_words_order():
    tw = top_words([[0.1, 0.5, 0.4], [0.7, 0.1, 0.2]], 2)
    np.testing.assert_array_equal(tw, [[1, 2], [0, 2]])


def test_aggregate_cells_weights_by_words():
    dt = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])
    agg = aggregate_cells(dt, [3, 1, 0, 0], [0, 0, 1, 1], 2)
    np.testing.assert_allclose(agg, [[0.75, 0.25], [0.5, 0.5]])


def test_empty_corpus_is_a_clear_error():
    with pytest.raises(DataValidationError, match="Every document is empty"):
        fit_lda(np.zeros((4, 5)), 2)
