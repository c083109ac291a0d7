"""LDA topics over visual-word counts (scikit-learn's online LDA), divergences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from clusterlens.exceptions import DataValidationError
from clusterlens.typing import SeedLike
from clusterlens.utils.validation import check_int, check_options, check_random_state

__all__ = [
    "LdaResult",
    "aggregate_cells",
    "fit_lda",
    "symmetric_kl",
    "top_words",
]

_METHODS: tuple[str, ...] = ("online", "batch")


@dataclass(frozen=True)
class LdaResult:
    """A fitted topic model.

    Attributes
    ----------
    doc_topic : ndarray of shape (n_docs, n_topics)
        Topic distribution of each document (rows sum to 1; uniform for an
        empty document).
    topic_word : ndarray of shape (n_topics, n_words)
        Word distribution of each topic (rows sum to 1).
    perplexity : float
        Perplexity of the fitted documents (lower is better).
    n_iter : int
        Passes over the documents.
    seed : int
        The integer seed handed to scikit-learn.
    """

    doc_topic: npt.NDArray[np.float64]
    topic_word: npt.NDArray[np.float64]
    perplexity: float
    n_iter: int
    seed: int


def fit_lda(
    counts: sp.spmatrix | npt.ArrayLike,
    n_topics: int,
    *,
    learning_method: str = "online",
    max_iter: int = 20,
    batch_size: int = 128,
    doc_topic_prior: float | None = None,
    topic_word_prior: float | None = None,
    random_state: SeedLike = None,
) -> LdaResult:
    """Fit Latent Dirichlet Allocation on word counts.

    Parameters
    ----------
    counts : sparse matrix or array of shape (n_docs, n_words)
        Non-negative word counts (documents: images, or spatial cells).
    n_topics : int
    learning_method : {"online", "batch"}, default="online"
        "online" is mini-batch variational Bayes (Hoffman et al., 2010), the
        scalable choice; "batch" uses every document at each step.
    max_iter : int, default=20
        Passes over the documents.
    batch_size : int, default=128
        Documents per online update.
    doc_topic_prior, topic_word_prior : float, default=None
        Dirichlet priors; None means ``1 / n_topics`` (scikit-learn's default).
    random_state : int, Generator or None, default=None
        The same seed gives the same topics.

    Returns
    -------
    result : LdaResult

    Notes
    -----
    Blei, Ng & Jordan, "Latent Dirichlet Allocation", JMLR 2003; the reference
    project fits it on visual words. Cost per pass is O(nnz * n_topics).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[5, 0, 0, 1], [4, 1, 0, 0], [0, 0, 6, 2], [0, 1, 5, 3]])
    >>> r = fit_lda(X, 2, max_iter=50, random_state=0)
    >>> bool(r.doc_topic.argmax(1)[0] != r.doc_topic.argmax(1)[2])
    True
    """
    from sklearn.decomposition import LatentDirichletAllocation

    n_topics = check_int(n_topics, "n_topics", "fit_lda", low=1)
    learning_method = check_options(
        learning_method, "learning_method", "fit_lda", _METHODS
    )
    max_iter = check_int(max_iter, "max_iter", "fit_lda", low=1)
    batch_size = check_int(batch_size, "batch_size", "fit_lda", low=1)
    X = sp.csr_matrix(counts, dtype=np.float64)
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise DataValidationError(f"counts must be non-empty; got shape {X.shape}.")
    if X.nnz and X.data.min() < 0:
        raise DataValidationError("counts must be non-negative word counts.")
    if X.nnz == 0:
        raise DataValidationError(
            "Every document is empty (no visual word at all); LDA has nothing to fit. "
            "Check the SIFT features (tiny images give no keypoints: use --min-size)."
        )
    seed = int(check_random_state(random_state).integers(0, 2**31 - 1))
    lda = LatentDirichletAllocation(
        n_components=n_topics,
        learning_method=learning_method,
        max_iter=max_iter,
        batch_size=batch_size,
        doc_topic_prior=doc_topic_prior,
        topic_word_prior=topic_word_prior,
        random_state=seed,
        n_jobs=None,
    )
    doc_topic = lda.fit_transform(X)
    topic_word = lda.components_ / lda.components_.sum(axis=1, keepdims=True)
    empty = np.diff(X.indptr) == 0
    doc_topic[empty] = 1.0 / n_topics
    return LdaResult(
        doc_topic=np.asarray(doc_topic, dtype=np.float64),
        topic_word=np.asarray(topic_word, dtype=np.float64),
        perplexity=float(lda.perplexity(X)),
        n_iter=int(lda.n_iter_),
        seed=seed,
    )


def symmetric_kl(
    topic_word: npt.ArrayLike, *, eps: float = 1e-12
) -> npt.NDArray[np.float64]:
    """Symmetric Kullback-Leibler divergence between every pair of topics.

    ``D[a, b] = KL(p_a || p_b) + KL(p_b || p_a)`` over the topics' word
    distributions (the reference project's measure of how distinct topics are);
    ``eps`` keeps zero probabilities finite.

    Examples
    --------
    >>> D = symmetric_kl([[0.5, 0.5], [0.9, 0.1]])
    >>> float(D[0, 0]), round(float(D[0, 1]), 4) == round(float(D[1, 0]), 4)
    (0.0, True)
    """
    P = np.asarray(topic_word, dtype=np.float64)
    if P.ndim != 2:
        raise DataValidationError(f"topic_word must be 2-D; got shape {P.shape}.")
    P = P + eps
    P /= P.sum(axis=1, keepdims=True)
    logP = np.log(P)
    # KL(a||b) = sum_w P_a (log P_a - log P_b)
    ent = (P * logP).sum(axis=1)
    cross = P @ logP.T  # [a, b] = sum_w P_a log P_b
    kl = ent[:, None] - cross
    D = kl + kl.T
    np.fill_diagonal(D, 0.0)
    return np.maximum(D, 0.0)


def top_words(topic_word: npt.ArrayLike, n: int = 10) -> npt.NDArray[np.int64]:
    """Ids of the ``n`` most probable words of each topic, most probable first."""
    P = np.asarray(topic_word)
    n = min(check_int(n, "n", "top_words", low=1), P.shape[1])
    idx = np.argpartition(-P, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(P, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1).astype(np.int64)


def aggregate_cells(
    doc_topic: npt.ArrayLike,
    cell_weight: npt.ArrayLike,
    item: npt.ArrayLike,
    n_items: int,
) -> Any:
    """Image topic distributions from spatial-cell documents.

    Each cell's topic distribution is weighted by its number of words and
    summed per image, then normalised; an image without words gets uniform.
    """
    T = np.asarray(doc_topic, dtype=np.float64)
    w = np.asarray(cell_weight, dtype=np.float64).reshape(-1)
    it = np.asarray(item, dtype=np.int64).reshape(-1)
    agg = sp.csr_matrix((w, (it, np.arange(it.shape[0]))), shape=(n_items, T.shape[0]))
    out = np.asarray(agg @ T)
    s = out.sum(axis=1, keepdims=True)
    out = np.where(s > 0, out / np.where(s > 0, s, 1.0), 1.0 / T.shape[1])
    return out
