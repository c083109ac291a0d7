"""find_label_issues: every score, the combined ranking and the flagged set."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import (
    DataQualityWarning,
    DataValidationError,
    InvalidParameterError,
)
from clusterlens.io._descriptors import as_matrix
from clusterlens.label_issues._confident import (
    confident_joint,
    estimate_issue_counts,
    joint_counts,
    normalized_margin,
    self_confidence,
)
from clusterlens.label_issues._coreset import class_leverage, coreset_importance
from clusterlens.label_issues._logreg import cross_val_pred_probs
from clusterlens.label_issues._neighbors import neighbor_class_counts, neighbor_labels
from clusterlens.label_issues._reduce import PCA_MAX_SAMPLES, streaming_pca
from clusterlens.label_issues._select import (
    log_loss,
    select_knn_weight,
    select_softmax,
)
from clusterlens.label_issues._validation import (
    check_pred_probs,
    check_weight,
    encode_labels,
)
from clusterlens.typing import ArrayLike, PathLike, SeedLike
from clusterlens.utils._names import arg_name
from clusterlens.utils.validation import check_int, check_random_state, check_real

__all__ = [
    "SCORE_COLUMNS",
    "LabelIssues",
    "combine_scores",
    "find_label_issues",
    "most_confused_class",
    "prior_corrected",
    "rank_label_issues",
]

logger = logging.getLogger(__name__)
_OWNER = "find_label_issues"

#: The per-sample columns of a :class:`LabelIssues`, with their meaning.
SCORE_COLUMNS: dict[str, str] = {
    "self_confidence": "out-of-sample predicted probability of the given label, in "
    "[0, 1]; lower = more suspicious (cleanlab's self_confidence)",
    "normalized_margin": "(p[given] - max other p + 1) / 2, in [0, 1]; lower = more "
    "suspicious (cleanlab's normalized_margin)",
    "confident_joint_flag": "True when the sample is off the diagonal of the "
    "confident joint: another class is confidently predicted (cleanlab's "
    "filter_by='confident_learning')",
    "predicted_label": "arg-max of the out-of-sample pred_probs",
    "leverage": "statistical leverage of the whitened features within the given "
    "class (ridge 1e-3); higher = more unusual for its class",
    "coreset_importance": "coreset sensitivity for logistic regression within the "
    "given class (leverage share + loss share + 1/n_c), 1 = class mean; higher = "
    "more important / suspicious",
    "neighbor_disagreement": "share of the k nearest neighbours (faiss, PCA "
    "space) with another label, in [0, 1]; higher = more suspicious",
    "label_quality": "combined score in [0, 1]: the mean of the percentile ranks "
    "of self-confidence and normalized margin of the blend of pred_probs and "
    "neighbour label frequencies with the square root of the class prior "
    "divided out (optionally mixed with the within-class importance "
    "percentile); lower = more suspicious",
    "suggested_label": "arg-max of the blended, prior-corrected probabilities: "
    "the label a relabeller is offered",
    "is_label_issue": "flagged: per given class, as many samples as confident "
    "learning estimates are mislabelled (the off-diagonal row mass of the "
    "calibrated confident joint of the blended probabilities, where a sample "
    "counts off the diagonal only if its given label misses its class's "
    "threshold and the blend and the neighbours alone both put another label "
    "first; none in a class with fewer samples than folds; at most half the "
    "class), the lowest label_quality first, less those whose suggested label "
    "is the given one; the flagged share is at most the estimated noise rate",
    "issue_rank": "rank by label_quality, 1 = most likely wrong",
    "class_rank": "rank by label_quality within the given class, 1 = most likely "
    "wrong in its class",
}

#: Weights of the combination when given as numbers (``knn_weight="auto"``,
#: the default of :func:`find_label_issues`, picks the neighbour weight by
#: held-out log-loss instead).
DEFAULT_KNN_WEIGHT = 0.75
DEFAULT_IMPORTANCE_WEIGHT = 0.0
#: Exponent of the class prior divided out before ranking (see
#: :func:`prior_corrected`).
DEFAULT_PRIOR_EXPONENT = 0.5
#: Confident learning needs most of each class's given labels right (a
#: dominant diagonal of the noise matrix); a class estimated to be mostly
#: wrong is one the classifier cannot learn, so at most this share of a class
#: is flagged.
MAX_CLASS_NOISE = 0.5


@dataclass(frozen=True)
class LabelIssues:
    """Scores of every sample; see :data:`SCORE_COLUMNS` for each field.

    Attributes
    ----------
    labels : ndarray of shape (n_samples,), int64
        Given labels encoded as indices into ``classes``.
    classes : ndarray of shape (n_classes,)
        The sorted distinct given labels.
    pred_probs : ndarray of shape (n_samples, n_classes)
        Out-of-sample probabilities used (cross-validated or supplied).
    confident_joint : ndarray of shape (n_classes, n_classes)
        Counts ``[given, guessed true]`` (cleanlab's uncalibrated joint).
    neighbor_indices : ndarray of shape (n_samples, n_neighbors)
        The neighbours behind ``neighbor_disagreement`` (self excluded).
    info : dict
        How the scores were computed: PCA components and explained variance,
        neighbour search method, folds, L-BFGS iterations, seconds per stage.
    """

    labels: npt.NDArray[np.int64]
    classes: npt.NDArray[Any]
    pred_probs: npt.NDArray[np.floating]
    self_confidence: npt.NDArray[np.float64]
    normalized_margin: npt.NDArray[np.float64]
    confident_joint_flag: npt.NDArray[np.bool_]
    predicted_label: npt.NDArray[np.int64]
    leverage: npt.NDArray[np.float64]
    coreset_importance: npt.NDArray[np.float64]
    neighbor_disagreement: npt.NDArray[np.float64]
    label_quality: npt.NDArray[np.float64]
    suggested_label: npt.NDArray[np.int64]
    is_label_issue: npt.NDArray[np.bool_]
    issue_rank: npt.NDArray[np.int64]
    class_rank: npt.NDArray[np.int64]
    confident_joint: npt.NDArray[np.int64]
    neighbor_indices: npt.NDArray[np.int64]
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def ranked(self) -> npt.NDArray[np.int64]:
        """Sample indices, most likely wrong first."""
        return np.argsort(self.issue_rank, kind="stable").astype(np.int64)

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """One column per score, for :func:`clusterlens.io.write_results`."""
        return {name: getattr(self, name) for name in SCORE_COLUMNS}


def _rank(score: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """1-based rank, lowest score first, ties by index."""
    order = np.argsort(score, kind="stable")
    rank = np.empty(score.shape[0], dtype=np.int64)
    rank[order] = np.arange(1, score.shape[0] + 1)
    return rank


def _class_rank(
    score: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    order = np.lexsort((np.arange(score.shape[0]), score, labels))
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(score.shape[0], dtype=np.int64)
    rank[order] = np.arange(score.shape[0]) - starts + 1
    return rank


def _class_percentile(
    values: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Percentile of ``values`` within each class, in [0, 1] (1 = largest)."""
    n = values.shape[0]
    rank = _class_rank(values, labels)  # 1 = smallest
    counts = np.bincount(labels)[labels].astype(np.float64)
    return np.where(counts > 1, (rank - 1) / np.maximum(counts - 1, 1), 0.5)[:n]


def _percentile(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rank of each value in [0, 1] (0 = smallest; ties share their mean rank)."""
    from scipy.stats import rankdata

    n = values.shape[0]
    return (rankdata(values) - 1.0) / max(n - 1, 1)


def neighbor_probs(
    labels: npt.NDArray[np.int64], neighbor_counts: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Neighbour label frequencies smoothed by the class priors.

    ``q_c = (count_c + prior_c) / (k + 1)``: leave-one-out class
    probabilities (a sample is not its own neighbour), rows sum to 1.
    """
    k = neighbor_counts.shape[1]
    prior = np.bincount(labels, minlength=k) / labels.shape[0]
    kk = neighbor_counts.sum(axis=1, keepdims=True)
    return np.asarray((neighbor_counts + prior) / (kk + 1.0), dtype=np.float64)


def prior_corrected(
    labels: npt.NDArray[np.int64],
    probs: npt.NDArray[np.float64],
    exponent: float,
) -> npt.NDArray[np.float64]:
    """``p_c / prior_c ** exponent``, rows renormalised to sum 1.

    ``prior_c`` is the share of the samples labelled ``c``. A classifier's
    probabilities carry the class prior: a rare class gets a low probability
    even for its own typical samples, so ranking by them blames the label
    for the class being rare. Dividing by the prior (``exponent=1``) leaves
    the likelihood ratio ``p(x | c) / p(x)``, which says how typical ``x`` is
    of ``c`` whatever ``c``'s frequency; but the classes with a handful of
    samples, where the classifier learnt little, then get huge factors. The
    square root (``exponent=0.5``) halves the prior's log-weight. On a set
    with balanced classes it changes nothing.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.6, 0.4], [0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    >>> prior_corrected(np.array([0, 0, 0, 1]), p, 1.0).round(2)[0].tolist()
    [0.33, 0.67]
    """
    if exponent == 0:
        return probs
    k = probs.shape[1]
    prior = np.bincount(labels, minlength=k) / labels.shape[0]
    out = probs / np.maximum(prior, 1.0 / labels.shape[0]) ** exponent
    out /= out.sum(axis=1, keepdims=True)
    return np.asarray(out, dtype=np.float64)


def combine_scores(
    labels: npt.NDArray[np.int64],
    pred_probs: npt.NDArray[np.floating],
    neighbor_counts: npt.NDArray[np.float64] | None,
    importance: npt.NDArray[np.float64] | None,
    *,
    knn_weight: float = DEFAULT_KNN_WEIGHT,
    importance_weight: float = DEFAULT_IMPORTANCE_WEIGHT,
    prior_exponent: float = 0.0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The combined ``label_quality`` (lower = more suspicious) and blended probs.

    ``p = (1 - knn_weight) * pred_probs + knn_weight * q`` where ``q`` is
    :func:`neighbor_probs`; ``p'`` = :func:`prior_corrected` ``(p,
    prior_exponent)``; then ``s`` = the mean of the percentile ranks of
    ``self_confidence(p')`` and ``normalized_margin(p')`` (a Borda count of
    cleanlab's two rankings: self-confidence finds labels far from every
    prediction, the margin labels beaten by one near class), and
    ``label_quality = (1 - importance_weight) * s + importance_weight *
    (1 - importance percentile within the class)``. Returns
    ``label_quality`` and ``p'``.
    """
    p = np.asarray(pred_probs, dtype=np.float64)
    if neighbor_counts is not None and knn_weight > 0:
        q = neighbor_probs(labels, neighbor_counts)
        p = (1.0 - knn_weight) * p + knn_weight * q
    p = prior_corrected(labels, p, prior_exponent)
    quality = 0.5 * (
        _percentile(self_confidence(labels, p))
        + _percentile(normalized_margin(labels, p))
    )
    if importance is not None and importance_weight > 0:
        pct = _class_percentile(importance, labels)
        quality = (1.0 - importance_weight) * quality + importance_weight * (1 - pct)
    return quality, p


def most_confused_class(
    labels: npt.NDArray[np.int64],
    predicted: npt.NDArray[np.int64],
    n_classes: int,
    *,
    min_count: int = 10,
) -> tuple[int, int, float]:
    """The notebook's choice of a class to clean, from the confusion matrix.

    The confusion matrix (rows: given label, columns: predicted, each row
    normalised to sum 1) with its diagonal zeroed; its largest entry
    ``(true, pred)`` says class ``true`` is most often predicted as ``pred``;
    ``pred`` is returned as the class of interest, with ``true`` and the rate.
    Classes with fewer than ``min_count`` samples are left out (a rate over
    one or two samples says little) unless every class is that small.
    """
    raw = np.bincount(labels * n_classes + predicted, minlength=n_classes**2)
    cm = raw.reshape(n_classes, n_classes).astype(np.float64)
    cm /= np.maximum(cm.sum(axis=1, keepdims=True), 1.0)
    np.fill_diagonal(cm, 0.0)
    counts = np.bincount(labels, minlength=n_classes)
    small = counts < min_count
    if not small.all():
        cm[small, :] = -1.0
        cm[:, small] = -1.0
    t, p = np.unravel_index(int(np.argmax(cm)), cm.shape)
    return int(p), int(t), float(cm[t, p])


def _check_varying(proj: Any, n: int) -> None:
    """Raise if every row of the features is the same (up to float rounding)."""
    Z = proj.Z
    spread = float(np.abs(Z - Z[:1]).max()) if Z.size else 0.0
    scale = max(1.0, float(np.abs(proj.mean).max()))
    if spread <= 1e-6 * scale:
        raise DataValidationError(
            f"{arg_name('features')} are constant: all {n} rows are the same, so "
            "nothing tells the classes apart. Check that this is the feature "
            "matrix you meant (not, e.g., an all-zero array or a failed export)."
        )


def _noise_counts(
    labels: npt.NDArray[np.int64],
    blend: npt.NDArray[np.float64],
    predicted: npt.NDArray[np.int64],
    neighbor_vote: npt.NDArray[np.int64],
    *,
    min_class_size: int,
) -> npt.NDArray[np.int64]:
    """Confident learning's estimate of the mislabelled samples of each class.

    :func:`estimate_issue_counts` of the confident joint of the blended
    probabilities, where a sample counts off the diagonal only with evidence
    against its given label from every side:

    - its given label does not reach its class's confident threshold
      (``confident_joint(given_first=True)``);
    - the model (``predicted``, the arg-max of the blend of the
      cross-validated pred_probs and the neighbour labels) and its
      neighbours alone (``neighbor_vote``, their most frequent label) both
      put another label first: the neighbours see the sample's own
      surroundings, the blend also the classifier's boundaries; one of them
      alone disagreeing is mostly its confusion of two classes, not a wrong
      label.

    A class with fewer than ``min_class_size`` samples (the folds) gets 0:
    the cross-validated model saw at most ``count - 1`` examples of it, so
    its samples look unlike their class whatever their label.
    """
    k = blend.shape[1]
    _, _, guess = confident_joint(labels, blend, given_first=True)
    agree = (predicted != labels) & (neighbor_vote != labels)
    guess = np.where(agree | (guess < 0), guess, labels)
    n_est = estimate_issue_counts(labels, joint_counts(labels, guess, k))
    small = np.bincount(labels, minlength=k) < min_class_size
    return np.where(small, 0, n_est).astype(np.int64)


def find_label_issues(
    X: ArrayLike | PathLike,
    labels: ArrayLike,
    *,
    pred_probs: ArrayLike | None = None,
    n_components: int = 256,
    pca_max_samples: int | None = PCA_MAX_SAMPLES,
    n_folds: int = 5,
    max_train_samples: int | None = 100_000,
    max_iter: int = 200,
    alpha: float | str = "auto",
    whiten: bool | str = "auto",
    n_neighbors: int = 10,
    knn_components: int = 64,
    knn_weight: float | str = "auto",
    importance_weight: float = DEFAULT_IMPORTANCE_WEIGHT,
    prior_exponent: float = DEFAULT_PRIOR_EXPONENT,
    random_state: SeedLike = None,
    verbose: int = 0,
) -> LabelIssues:
    """Score every sample by how likely its label is wrong, and rank them.

    Three families of scores, then a combined ranking:

    1. **Confident learning** from out-of-sample ``pred_probs`` (stratified
       ``n_folds`` cross-validated multinomial logistic regression on the
       PCA features, whitened or not and with the L2 penalty that predicts
       held-out labels best, or the ``pred_probs`` you pass): self-confidence,
       normalised margin and the confident-joint flag, defined as in cleanlab.
    2. **Coreset importance**: the sensitivity of each sample for logistic
       regression within its class (leverage share + loss share + uniform).
    3. **Neighbour disagreement**: the share of the ``n_neighbors`` nearest
       neighbours (faiss; exact up to 120,000 samples, cell-blocked above)
       in the top ``knn_components`` PCA axes that carry another label.

    Parameters
    ----------
    X : {array-like, memmap, str, os.PathLike} of shape (n_samples, n_features)
        Features; a ``.npy`` path is memory-mapped and read in chunks, so X
        may be larger than memory.
    labels : array-like of shape (n_samples,)
        Given labels (ints or strings), at least two classes.
    pred_probs : array-like of shape (n_samples, n_classes), default=None
        Out-of-sample probabilities, columns in the sorted order of the
        classes. ``None`` computes them by cross-validation.
    n_components : int, default=256
        PCA axes kept (streaming PCA, two passes over X).
    pca_max_samples : int or None, default=131_072
        Rows the PCA covariance is estimated from at most (a seeded sample;
        every row is still projected). ``None`` uses every row.
    n_folds : int, default=5
        Cross-validation folds.
    max_train_samples : int or None, default=100_000
        Rows each fold's model is fit on at most (a seeded random subset).
    max_iter : int, default=200
        L-BFGS iterations per fold at most (started from the LDA solution).
    alpha : float or "auto", default="auto"
        L2 penalty of the logistic regression. "auto" picks it from
        ``1e-3, 1e-2, 1e-1`` with ``whiten``, by the log-loss of
        3-fold cross-validated probabilities on at most 20,000 rows.
    whiten : bool or "auto", default="auto"
        Fit on whitened PCA features (every axis unit variance) or on the PCA
        features scaled to a mean variance of 1 per axis. "auto" picks with ``alpha``.
    n_neighbors : int, default=10
        Neighbours per sample.
    knn_components : int, default=64
        PCA axes the neighbour search uses.
    knn_weight : float in [0, 1] or "auto", default="auto"
        Weight of the neighbour label frequencies in the blended
        probabilities (see :func:`combine_scores`); "auto" picks it from
        ``0, 0.25, 0.5, 0.75`` by the log-loss of the blend on the given
        labels (both parts are out-of-sample).
    importance_weight : float in [0, 1], default=0
        Weight of the within-class coreset importance in ``label_quality``.
    prior_exponent : float in [0, 1], default=0.5
        How much of the class prior is divided out of the blended
        probabilities before ranking (:func:`prior_corrected`): 0 ranks by
        the probabilities as they are, 1 by the likelihood ratio. Changes
        nothing when the classes are equally frequent.
    random_state : int, Generator or None
        Seed of the PCA row sample, the folds, the subsets and the
        neighbour cells.
    verbose : int, default=0
        Progress bars when > 0.

    Returns
    -------
    result : LabelIssues

    Raises
    ------
    DataValidationError
        If features and labels differ in length, there is one class only,
        features are not finite, or ``pred_probs`` is malformed (wrong
        shape, rows not summing to 1).
    InvalidParameterError
        If a parameter is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (50, 5)), rng.normal(4, 1, (50, 5))]
    >>> y = np.repeat([0, 1], 50); y[3] = 1
    >>> res = find_label_issues(X, y, n_folds=3, random_state=0)
    >>> int(res.ranked()[0])
    3
    """
    n_components = check_int(n_components, "n_components", _OWNER, low=1)
    pca_max_samples = check_int(
        pca_max_samples, "pca_max_samples", _OWNER, low=2, allow_none=True
    )
    n_folds = check_int(n_folds, "n_folds", _OWNER, low=2)
    max_train_samples = check_int(
        max_train_samples, "max_train_samples", _OWNER, low=10, allow_none=True
    )
    max_iter = check_int(max_iter, "max_iter", _OWNER, low=1)
    auto_alpha = isinstance(alpha, str) and alpha == "auto"
    if not auto_alpha:
        alpha = check_real(alpha, "alpha", _OWNER, low=0.0)
    auto_whiten = isinstance(whiten, str) and whiten == "auto"
    if not auto_whiten and not isinstance(whiten, bool | np.bool_):
        raise InvalidParameterError(
            f"The 'whiten' parameter of {_OWNER} must be True, False or 'auto'. "
            f"Got {whiten!r} instead."
        )
    n_neighbors = check_int(n_neighbors, "n_neighbors", _OWNER, low=1)
    knn_components = check_int(knn_components, "knn_components", _OWNER, low=1)
    auto_knn = isinstance(knn_weight, str) and knn_weight == "auto"
    if not auto_knn:
        knn_weight = check_weight(knn_weight, "knn_weight", _OWNER)
    importance_weight = check_weight(importance_weight, "importance_weight", _OWNER)
    prior_exponent = check_weight(prior_exponent, "prior_exponent", _OWNER)
    rng = check_random_state(random_state)

    Xm = as_matrix(X, name="features")
    n = Xm.shape[0]
    y, classes = encode_labels(labels, n)
    k = classes.size
    if n < 3:
        raise DataValidationError(f"features has {n} rows; at least 3 are needed.")
    probs: npt.NDArray[np.floating] | None = (
        None if pred_probs is None else check_pred_probs(pred_probs, n, k)
    )
    counts = np.bincount(y, minlength=k)
    if probs is None and counts.min() < n_folds:
        # As scikit-learn's StratifiedKFold: allowed, with a warning. Such a
        # sample's fold model may never have seen its class.
        warnings.warn(
            f"{int((counts < n_folds).sum())} classes have fewer samples than the "
            f"{n_folds} cross-validation folds (the smallest, class "
            f"{classes[np.argmin(counts)]!s}, has {int(counts.min())}); their "
            "samples score as suspicious because the model has few or no other "
            "examples of them, and none of them is flagged.",
            DataQualityWarning,
            stacklevel=2,
        )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    proj = streaming_pca(
        Xm,
        n_components,
        max_samples=pca_max_samples,
        seed=int(rng.integers(2**31 - 1)),
        verbose=verbose,
        name="features",
    )
    timings["pca_seconds"] = time.perf_counter() - t0
    _check_varying(proj, n)
    Zw = proj.whitened()

    iters: list[int] = []
    choice = None
    use_white = False
    alpha_ = 0.0
    if probs is None:
        t = time.perf_counter()
        # The PCA features as they are, scaled to a mean variance of 1 per
        # axis (as the whitened ones), so one penalty grid fits both.
        total = max(float(proj.variances.sum()), 1e-30)
        Zs = proj.Z * np.float32(np.sqrt(proj.Z.shape[1] / total))
        if auto_alpha:
            choice = select_softmax(
                Zs,
                Zw,
                y,
                k,
                whiten=None if auto_whiten else bool(whiten),
                max_iter=max_iter,
                rng=rng,
            )
            alpha_, use_white = choice.alpha, choice.whiten
        else:
            alpha_ = float(alpha)
            use_white = True if auto_whiten else bool(whiten)
        timings["model_selection_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        probs, iters = cross_val_pred_probs(
            Zw if use_white else Zs,
            y,
            k,
            n_folds=n_folds,
            max_train_samples=max_train_samples,
            alpha=alpha_,
            max_iter=max_iter,
            rng=rng,
            verbose=verbose,
        )
        timings["cross_validation_seconds"] = time.perf_counter() - t

    assert probs is not None
    t = time.perf_counter()
    sc = self_confidence(y, probs)
    nm = normalized_margin(y, probs)
    joint, cj_flag, _ = confident_joint(y, probs)
    predicted = np.asarray(probs).argmax(axis=1).astype(np.int64)
    timings["confident_learning_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    lev = class_leverage(Zw, y, k)
    importance = coreset_importance(lev, sc, y, k)
    timings["coreset_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    kz = proj.Z[:, : min(knn_components, proj.Z.shape[1])]
    nb = neighbor_labels(
        kz, n_neighbors, seed=int(rng.integers(2**31 - 1)), verbose=verbose
    )
    nb_counts = neighbor_class_counts(nb.indices, y, k)
    disagreement = 1.0 - nb_counts[np.arange(n), y] / nb.indices.shape[1]
    timings["neighbors_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    knn_losses: dict[float, float] = {}
    if auto_knn:
        knn_weight, knn_losses = select_knn_weight(
            y, probs, neighbor_probs(y, nb_counts)
        )
    quality, ranked_probs = combine_scores(
        y,
        probs,
        nb_counts,
        importance,
        knn_weight=float(knn_weight),
        importance_weight=importance_weight,
        prior_exponent=prior_exponent,
    )
    _, blend = combine_scores(y, probs, nb_counts, None, knn_weight=float(knn_weight))
    n_est = _noise_counts(
        y,
        blend,
        blend.argmax(axis=1),
        neighbor_probs(y, nb_counts).argmax(axis=1),
        min_class_size=n_folds if pred_probs is None else 1,
    )
    issue_rank = _rank(quality)
    class_rank = _class_rank(quality, y)
    n_flag = np.minimum(n_est, np.floor(MAX_CLASS_NOISE * counts).astype(np.int64))
    suggested = ranked_probs.argmax(axis=1).astype(np.int64)
    is_issue = (class_rank <= n_flag[y]) & (suggested != y)
    timings["combine_seconds"] = time.perf_counter() - t
    info = {
        "n_samples": n,
        "n_features": int(Xm.shape[1]),
        "n_classes": k,
        "pca_components": int(proj.Z.shape[1]),
        "pca_explained_variance": proj.explained,
        "pred_probs": "supplied" if pred_probs is not None else "cross-validated",
        "n_folds": n_folds if pred_probs is None else None,
        "alpha": alpha_ if pred_probs is None else None,
        "whiten": bool(use_white) if pred_probs is None else None,
        "model_selection": None
        if choice is None
        else [{"whiten": w, "alpha": a, "log_loss": ll} for w, a, ll in choice.table],
        "knn_weight_log_loss": knn_losses,
        "pred_probs_log_loss": log_loss(y, probs),
        "lbfgs_iterations": iters,
        "neighbor_search": nb.method,
        "n_neighbors": int(nb.indices.shape[1]),
        "knn_components": int(kz.shape[1]),
        "knn_weight": float(knn_weight),
        "importance_weight": importance_weight,
        "prior_exponent": prior_exponent,
        "cross_validated_accuracy": float(np.mean(predicted == y)),
        "estimated_noise_rate": float(n_est.sum() / n),
        "n_flagged": int(is_issue.sum()),
        "flag_rate": float(is_issue.mean()),
        "timings": timings,
    }
    logger.info("Scored %d samples: %s", n, info)
    return LabelIssues(
        labels=y,
        classes=classes,
        pred_probs=probs,
        self_confidence=sc,
        normalized_margin=nm,
        confident_joint_flag=cj_flag,
        predicted_label=predicted,
        leverage=lev,
        coreset_importance=importance,
        neighbor_disagreement=disagreement,
        label_quality=quality,
        suggested_label=suggested,
        is_label_issue=is_issue,
        issue_rank=issue_rank,
        class_rank=class_rank,
        confident_joint=joint,
        neighbor_indices=nb.indices,
        info=info,
    )


def rank_label_issues(
    X: ArrayLike | PathLike, labels: ArrayLike, **kwargs: Any
) -> npt.NDArray[np.int64]:
    """Sample indices, most likely mislabelled first (int64).

    Same parameters as :func:`find_label_issues`.
    """
    return find_label_issues(X, labels, **kwargs).ranked()
