"""Confident learning scores from out-of-sample predicted probabilities."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "confident_joint",
    "confident_thresholds",
    "estimate_issue_counts",
    "joint_counts",
    "normalized_margin",
    "self_confidence",
]

#: cleanlab's ``CONFIDENT_THRESHOLDS_LOWER_BOUND`` and fuzzy comparison.
_THRESHOLD_FLOOR = 2e-6
_FUZZ = 1e-6


def self_confidence(
    labels: npt.NDArray[np.int64], pred_probs: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """Predicted probability of each sample's given label, in [0, 1].

    Lower means more likely mislabelled. Same definition as
    ``cleanlab.rank.get_label_quality_scores(method="self_confidence")``.

    Examples
    --------
    >>> import numpy as np
    >>> self_confidence(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
    array([0.9, 0.2])
    """
    p = np.asarray(pred_probs, dtype=np.float64)
    return p[np.arange(p.shape[0]), labels]


def normalized_margin(
    labels: npt.NDArray[np.int64], pred_probs: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """``(p[label] - max_{k != label} p[k] + 1) / 2``, in [0, 1].

    Lower means more likely mislabelled. Same definition as
    ``cleanlab.rank.get_label_quality_scores(method="normalized_margin")``.

    Examples
    --------
    >>> import numpy as np
    >>> normalized_margin(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
    array([0.9, 0.2])
    """
    p = np.asarray(pred_probs, dtype=np.float64)
    rows = np.arange(p.shape[0])
    own = p[rows, labels]
    other = p.copy()
    other[rows, labels] = -np.inf
    return (own - other.max(axis=1) + 1.0) / 2.0


def confident_thresholds(
    labels: npt.NDArray[np.int64], pred_probs: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """Per class ``k``: the mean ``p[k]`` over samples labelled ``k``.

    A class without samples gets 2 (no probability reaches it), as in
    cleanlab; thresholds are floored at 2e-6.
    """
    p = np.asarray(pred_probs, dtype=np.float64)
    k = p.shape[1]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.bincount(labels, weights=p[np.arange(p.shape[0]), labels], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(counts > 0, sums / np.maximum(counts, 1.0), 2.0)
    return np.maximum(t, _THRESHOLD_FLOOR)


def confident_joint(
    labels: npt.NDArray[np.int64],
    pred_probs: npt.NDArray[np.floating],
    *,
    given_first: bool = False,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """The confident joint of given and guessed true labels (Northcutt et al.).

    A sample is counted when some class ``j`` has ``p[j] >= t_j`` (its
    confident threshold); its guessed true label is that class, or the arg-max
    of ``p`` when several classes pass. It is flagged when counted with a
    guess different from its given label (an off-diagonal entry), which is
    cleanlab's ``filter_by="confident_learning"``.

    With ``given_first``, a sample whose given label passes its own class's
    threshold is counted on the diagonal even when another class passes too
    and has the larger probability: the model is as confident in the given
    label as it is, on average, for that class's own samples, so the sample
    is no evidence of a wrong label, only of two classes the model confuses.
    This keeps the confusion of a weak classifier between similar classes
    out of the noise estimate (:func:`estimate_issue_counts`); a wrong label
    rarely reaches its given class's threshold.

    Returns
    -------
    joint : ndarray of shape (n_classes, n_classes)
        ``joint[given, guessed]`` counts (diagonal clipped at 1 as cleanlab).
    flag : ndarray of shape (n_samples,), dtype bool
        Off-diagonal membership.
    guess : ndarray of shape (n_samples,)
        Guessed true label; -1 where no class is confident.
    """
    p = np.asarray(pred_probs, dtype=np.float64)
    k = p.shape[1]
    passes = p >= confident_thresholds(labels, p) - _FUZZ
    n_pass = passes.sum(axis=1)
    guess = np.where(n_pass > 1, p.argmax(axis=1), passes.argmax(axis=1))
    guess = np.where(n_pass > 0, guess, -1).astype(np.int64)
    if given_first:
        guess = np.where(passes[np.arange(p.shape[0]), labels], labels, guess)
    joint = joint_counts(labels, guess, k)
    flag = (guess >= 0) & (guess != labels)
    return joint, flag, guess


def joint_counts(
    labels: npt.NDArray[np.int64], guess: npt.NDArray[np.int64], n_classes: int
) -> npt.NDArray[np.int64]:
    """``joint[given, guessed]`` counts of the samples with a guess (>= 0).

    The diagonal is clipped at 1, as cleanlab's confident joint.
    """
    k = n_classes
    counted = guess >= 0
    joint = np.bincount(labels[counted] * k + guess[counted], minlength=k * k)
    joint = joint.reshape(k, k)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    return joint.astype(np.int64)


def estimate_issue_counts(
    labels: npt.NDArray[np.int64],
    joint: npt.NDArray[np.int64],
    *,
    min_examples_per_class: int = 1,
) -> npt.NDArray[np.int64]:
    """Confident learning's estimate of the mislabelled samples of each class.

    Each row of the confident ``joint`` is calibrated to the number of
    samples given that label (the confident joint only counts samples some
    class is confident about); the off-diagonal mass of row ``i`` is then the
    estimated number of samples labelled ``i`` whose true label is another
    (cleanlab's ``calibrate_confident_joint`` and
    ``num_label_issues(estimation_method="off_diagonal_calibrated")``, per
    class). At most ``count_i - min_examples_per_class`` per class, as
    cleanlab's ``find_label_issues``.

    Returns
    -------
    counts : ndarray of shape (n_classes,), int64
        Summed over classes and divided by ``n_samples``: the estimated noise
        rate.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([0] * 6 + [1] * 4)
    >>> joint = np.array([[4, 1], [0, 2]])  # 3 of the 10 samples not counted
    >>> estimate_issue_counts(labels, joint).tolist()
    [1, 0]
    """
    k = joint.shape[0]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    rows = np.maximum(joint.sum(axis=1), 1).astype(np.float64)
    calibrated = joint / rows[:, None] * counts[:, None]
    off = counts - calibrated.diagonal()
    est = np.floor(off + 0.5).astype(np.int64)
    cap = np.maximum(counts.astype(np.int64) - min_examples_per_class, 0)
    return np.clip(est, 0, cap)
