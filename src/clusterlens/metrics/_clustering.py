"""External clustering metrics: accuracy, purity, NMI and ARI against known labels."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from clusterlens.exceptions import DataValidationError
from clusterlens.utils.validation import check_options

__all__ = [
    "adjusted_rand",
    "cluster_summary",
    "clustering_accuracy",
    "contingency_matrix",
    "evaluate_clustering",
    "normalized_mutual_info",
    "purity",
]

logger = logging.getLogger(__name__)

_ACCURACY_METHODS = ("auto", "hungarian", "majority")


def _check_labels(
    labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Validate a pair of label vectors and return them as 1-D arrays."""
    arrays = []
    for name, labels in (("labels_true", labels_true), ("labels_pred", labels_pred)):
        arr = np.asarray(labels)
        if arr.ndim != 1:
            raise DataValidationError(
                f"{name} must be 1-D of shape (n_samples,); got shape {arr.shape}. "
                f"Use np.ravel({name}) to flatten it."
            )
        if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(
            arr.dtype, np.complexfloating
        ):
            bad = ~np.isfinite(arr)
            if bad.any():
                raise DataValidationError(
                    f"{name} must not contain NaN or infinity; {int(bad.sum())} "
                    f"entries do (first at index {int(np.argmax(bad))}). Drop those "
                    "samples or give them a label of their own."
                )
        arrays.append(arr)
    true, pred = arrays
    if true.shape[0] != pred.shape[0]:
        raise DataValidationError(
            "labels_true and labels_pred must have the same length; got "
            f"len(labels_true)={true.shape[0]} and len(labels_pred)={pred.shape[0]}."
        )
    if true.shape[0] == 0:
        raise DataValidationError(
            "labels_true and labels_pred must be non-empty; got 0 samples."
        )
    return true, pred


def _unique_inverse(
    labels: npt.NDArray[Any], name: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.intp]]:
    """Sorted unique labels and the index of each sample's label among them."""
    try:
        uniques, inverse = np.unique(labels, return_inverse=True)
    except TypeError as e:
        raise DataValidationError(
            f"{name} must hold labels of one comparable type (all ints or all "
            f"strings); got an array of dtype {labels.dtype} that cannot be sorted. "
            f"Convert it with np.asarray({name}, dtype=str)."
        ) from e
    return uniques, inverse.reshape(-1)


def _contingency(
    labels_true: npt.NDArray[Any], labels_pred: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[Any]]:
    """Contingency matrix of already validated labels (no checks)."""
    classes, class_idx = _unique_inverse(labels_true, "labels_true")
    clusters, cluster_idx = _unique_inverse(labels_pred, "labels_pred")
    n_classes, n_clusters = classes.shape[0], clusters.shape[0]
    flat = class_idx.astype(np.int64) * n_clusters + cluster_idx
    matrix = np.bincount(flat, minlength=n_classes * n_clusters)
    return matrix.reshape(n_classes, n_clusters).astype(np.int64), classes, clusters


def _accuracy_from_contingency(matrix: npt.NDArray[np.int64], method: str) -> float:
    """Accuracy of a resolved ``method`` ("hungarian" or "majority")."""
    n_samples = matrix.sum()
    if method == "hungarian":
        rows, cols = linear_sum_assignment(matrix, maximize=True)
        correct = matrix[rows, cols].sum()
    else:
        correct = matrix.max(axis=0).sum()
    return float(correct / n_samples)


def contingency_matrix(
    labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[Any]]:
    """Count the samples of each class that fall in each cluster.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels (ints or strings).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels to evaluate (ints or strings).

    Returns
    -------
    matrix : ndarray of shape (n_classes, n_clusters), dtype=int64
        ``matrix[i, j]`` is the number of samples of class ``classes[i]`` in
        cluster ``clusters[j]``.
    classes : ndarray of shape (n_classes,)
        Sorted distinct values of ``labels_true``.
    clusters : ndarray of shape (n_clusters,)
        Sorted distinct values of ``labels_pred``.

    Raises
    ------
    DataValidationError
        If either input is not 1-D, they differ in length, they are empty,
        or a float label is NaN or infinite.

    See Also
    --------
    cluster_summary : Size, majority class and purity of each cluster.

    Notes
    -----
    Runs in O(n_samples log n_samples) time (sorting in :func:`numpy.unique`)
    plus O(n_classes * n_clusters) memory for the dense matrix.

    Examples
    --------
    >>> from clusterlens.metrics import contingency_matrix
    >>> matrix, classes, clusters = contingency_matrix(
    ...     ["cat", "cat", "dog", "dog"], [0, 1, 1, 1]
    ... )
    >>> matrix
    array([[1, 1],
           [0, 2]])
    >>> classes.tolist(), clusters.tolist()
    (['cat', 'dog'], [0, 1])
    """
    true, pred = _check_labels(labels_true, labels_pred)
    return _contingency(true, pred)


def clustering_accuracy(
    labels_true: npt.ArrayLike,
    labels_pred: npt.ArrayLike,
    *,
    method: Literal["auto", "hungarian", "majority"] = "auto",
) -> float:
    """Fraction of samples whose cluster maps to their class under the best mapping.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels (ints or strings).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels to evaluate (ints or strings).
    method : {"auto", "hungarian", "majority"}, default="auto"
        How clusters are mapped to classes:

        - "hungarian": the best one-to-one mapping of clusters to classes
          (optimal assignment on the contingency matrix); when there are more
          clusters than classes, the unmatched clusters count as wrong.
        - "majority": each cluster is mapped to its majority class, so several
          clusters may share a class (many-to-one); this equals :func:`purity`.
        - "auto": "hungarian" when ``n_clusters <= n_classes``, else "majority".

    Returns
    -------
    accuracy : float
        Accuracy in [0, 1]; 1 means the clustering equals the classes up to
        relabelling (for "hungarian").

    Raises
    ------
    DataValidationError
        If either input is not 1-D, they differ in length, or they are empty.
    InvalidParameterError
        If ``method`` is not one of the options above.

    See Also
    --------
    purity : Many-to-one accuracy.
    normalized_mutual_info : An information-theoretic score.

    Notes
    -----
    "hungarian" solves a rectangular linear assignment problem with
    :func:`scipy.optimize.linear_sum_assignment` in
    O(n_classes * n_clusters * min(n_classes, n_clusters)) time [1]_ [2]_;
    "majority" is O(n_classes * n_clusters). Building the contingency matrix
    costs O(n_samples log n_samples).

    References
    ----------
    .. [1] H. W. Kuhn, "The Hungarian method for the assignment problem",
       Naval Research Logistics Quarterly, 2(1-2), 83-97, 1955.
    .. [2] D. F. Crouse, "On implementing 2D rectangular assignment
       algorithms", IEEE Trans. Aerospace and Electronic Systems, 52(4),
       1679-1696, 2016.

    Examples
    --------
    >>> from clusterlens.metrics import clustering_accuracy
    >>> clustering_accuracy([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 2, 2])
    1.0
    >>> clustering_accuracy([0, 0, 0, 1], [0, 1, 2, 2], method="hungarian")
    0.5
    >>> clustering_accuracy([0, 0, 0, 1], [0, 1, 2, 2], method="majority")
    0.75
    """
    checked = check_options(method, "method", "clustering_accuracy", _ACCURACY_METHODS)
    true, pred = _check_labels(labels_true, labels_pred)
    matrix, _, _ = _contingency(true, pred)
    if checked == "auto":
        n_classes, n_clusters = matrix.shape
        checked = "hungarian" if n_clusters <= n_classes else "majority"
    return _accuracy_from_contingency(matrix, checked)


def purity(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> float:
    """Fraction of samples that belong to the majority class of their cluster.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels (ints or strings).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels to evaluate (ints or strings).

    Returns
    -------
    purity : float
        ``sum_j max_i matrix[i, j] / n_samples``, in (0, 1]. It reaches 1 with
        one cluster per sample, so compare it only across equal ``n_clusters``.

    Raises
    ------
    DataValidationError
        If either input is not 1-D, they differ in length, or they are empty.

    See Also
    --------
    clustering_accuracy : One-to-one (Hungarian) accuracy.
    cluster_summary : Per-cluster purity.

    Notes
    -----
    O(n_samples log n_samples) for the contingency matrix, then
    O(n_classes * n_clusters). See Manning, Raghavan and Schütze,
    "Introduction to Information Retrieval", section 16.3, 2008.

    Examples
    --------
    >>> from clusterlens.metrics import purity
    >>> purity([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1])
    0.8333333333333334
    """
    true, pred = _check_labels(labels_true, labels_pred)
    matrix, _, _ = _contingency(true, pred)
    return float(matrix.max(axis=0).sum() / matrix.sum())


def cluster_summary(
    labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike
) -> dict[str, npt.NDArray[Any]]:
    """Size, majority class and purity of each cluster.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels (ints or strings).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels to evaluate (ints or strings).

    Returns
    -------
    summary : dict of str to ndarray of shape (n_clusters,)
        One entry per cluster, in sorted cluster order:

        - ``"cluster"``: the cluster id (same dtype as ``labels_pred``);
        - ``"size"``: the number of samples in it (int64);
        - ``"majority_label"``: its most frequent class; ties go to the
          smallest class in sorted order;
        - ``"purity"``: majority count / size (float64, in (0, 1]).

    Raises
    ------
    DataValidationError
        If either input is not 1-D, they differ in length, or they are empty.

    See Also
    --------
    purity : The size-weighted mean of the per-cluster purities.

    Notes
    -----
    O(n_samples log n_samples) for the contingency matrix, then
    O(n_classes * n_clusters).

    Examples
    --------
    >>> from clusterlens.metrics import cluster_summary
    >>> s = cluster_summary(["a", "a", "b", "b", "b"], [7, 7, 7, 3, 3])
    >>> s["cluster"].tolist(), s["size"].tolist()
    ([3, 7], [2, 3])
    >>> s["majority_label"].tolist()
    ['b', 'a']
    >>> s["purity"].round(3).tolist()
    [1.0, 0.667]
    """
    true, pred = _check_labels(labels_true, labels_pred)
    matrix, classes, clusters = _contingency(true, pred)
    size = matrix.sum(axis=0)
    return {
        "cluster": clusters,
        "size": size.astype(np.int64),
        "majority_label": classes[matrix.argmax(axis=0)],
        "purity": matrix.max(axis=0) / size.astype(np.float64),
    }


def normalized_mutual_info(
    labels_true: npt.ArrayLike,
    labels_pred: npt.ArrayLike,
    *,
    average_method: Literal["min", "geometric", "arithmetic", "max"] = "arithmetic",
) -> float:
    """Compute the normalized mutual information between classes and clusters.

    A thin wrapper of :func:`sklearn.metrics.normalized_mutual_info_score`
    that adds clusterlens input checks.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels (ints or strings).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels to evaluate (ints or strings).
    average_method : {"min", "geometric", "arithmetic", "max"}, \
default="arithmetic"
        How the two entropies are averaged in the denominator, as in
        scikit-learn.

    Returns
    -------
    nmi : float
        Score in [0, 1]; 1 means identical partitions up to relabelling.

    Raises
    ------
    DataValidationError
        If either input is not 1-D, they differ in length, or they are empty.

    See Also
    --------
    adjusted_rand : A chance-adjusted pair-counting score.

    Notes
    -----
    O(n_samples log n_samples + n_classes * n_clusters). See Vinh, Epps and
    Bailey, "Information theoretic measures for clusterings comparison",
    JMLR 11, 2837-2854, 2010.

    Examples
    --------
    >>> from clusterlens.metrics import normalized_mutual_info
    >>> normalized_mutual_info([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    true, pred = _check_labels(labels_true, labels_pred)
    return float(
        normalized_mutual_info_score(true, pred, average_method=average_method)
    )


def adjusted_rand(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> float:
    """Compute the adjusted Rand index between classes and clusters.

    A thin wrapper of :func:`sklearn.metrics.adjusted_rand_score` that adds
    clusterlens input checks.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels (ints or strings).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels to evaluate (ints or strings).

    Returns
    -------
    ari : float
        Score in [-0.5, 1]; 1 means identical partitions up to relabelling
        and about 0 means a random labelling.

    Raises
    ------
    DataValidationError
        If either input is not 1-D, they differ in length, or they are empty.

    See Also
    --------
    normalized_mutual_info : An information-theoretic score.

    Notes
    -----
    O(n_samples log n_samples + n_classes * n_clusters). See Hubert and
    Arabie, "Comparing partitions", Journal of Classification 2, 193-218,
    1985.

    Examples
    --------
    >>> from clusterlens.metrics import adjusted_rand
    >>> adjusted_rand(["x", "x", "y", "y"], [5, 5, 9, 9])
    1.0
    """
    true, pred = _check_labels(labels_true, labels_pred)
    return float(adjusted_rand_score(true, pred))


def evaluate_clustering(
    labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike
) -> dict[str, float]:
    """Compute all external clustering metrics at once.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth class labels (ints or strings).
    labels_pred : array-like of shape (n_samples,)
        Cluster labels to evaluate (ints or strings).

    Returns
    -------
    scores : dict of str to float
        ``"accuracy"`` (:func:`clustering_accuracy` with ``method="auto"``),
        ``"nmi"``, ``"ari"``, ``"purity"``, and the counts ``"n_clusters"``
        and ``"n_classes"`` (as ints).

    Raises
    ------
    DataValidationError
        If either input is not 1-D, they differ in length, or they are empty.

    See Also
    --------
    clustering_accuracy, normalized_mutual_info, adjusted_rand, purity

    Notes
    -----
    The labels are validated and the contingency matrix is built once.

    Examples
    --------
    >>> from clusterlens.metrics import evaluate_clustering
    >>> scores = evaluate_clustering([0, 0, 1, 1], [1, 1, 0, 0])
    >>> scores["accuracy"], scores["purity"], scores["n_clusters"]
    (1.0, 1.0, 2)
    """
    true, pred = _check_labels(labels_true, labels_pred)
    matrix, _, _ = _contingency(true, pred)
    n_classes, n_clusters = matrix.shape
    method = "hungarian" if n_clusters <= n_classes else "majority"
    return {
        "accuracy": _accuracy_from_contingency(matrix, method),
        "nmi": float(normalized_mutual_info_score(true, pred)),
        "ari": float(adjusted_rand_score(true, pred)),
        "purity": float(matrix.max(axis=0).sum() / matrix.sum()),
        "n_clusters": int(n_clusters),
        "n_classes": int(n_classes),
    }
