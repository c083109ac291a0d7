"""Choosing the pred_probs model and the neighbour blend by held-out log-loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clusterlens.label_issues._logreg import cross_val_pred_probs

__all__ = [
    "ALPHAS",
    "KNN_WEIGHTS",
    "ModelChoice",
    "log_loss",
    "select_knn_weight",
    "select_softmax",
]

#: L2 penalties tried, on whitened and unwhitened features both (each
#: scaled to a mean variance of 1 per axis, so the same grid fits both).
ALPHAS: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
#: Neighbour weights of the blend tried.
KNN_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
#: Rows the model choice is made on at most (a seeded sample).
SELECT_MAX_SAMPLES = 20_000
#: Folds of the model choice (the final pred_probs use ``n_folds``).
SELECT_FOLDS = 3


@dataclass(frozen=True)
class ModelChoice:
    """The features (whitened or not) and L2 penalty with the lowest log-loss."""

    whiten: bool
    alpha: float
    table: tuple[tuple[bool, float, float], ...]  # (whiten, alpha, log-loss)


def log_loss(labels: npt.NDArray[np.int64], probs: npt.NDArray[np.floating]) -> float:
    """Mean ``-log p[label]`` (probabilities floored at 1e-12).

    Examples
    --------
    >>> import numpy as np
    >>> round(log_loss(np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]])), 4)
    0.6931
    """
    p = np.asarray(probs, dtype=np.float64)[np.arange(labels.shape[0]), labels]
    return float(-np.mean(np.log(np.maximum(p, 1e-12))))


def select_softmax(
    Z: npt.NDArray[np.float32],
    Zw: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    n_classes: int,
    *,
    alphas: tuple[float, ...] = ALPHAS,
    whiten: bool | None = None,
    max_iter: int,
    rng: np.random.Generator,
    max_samples: int = SELECT_MAX_SAMPLES,
    n_folds: int = SELECT_FOLDS,
) -> ModelChoice:
    """Pick features and L2 penalty of the pred_probs model by held-out log-loss.

    Candidates: the PCA features ``Z`` scaled to a mean variance of 1 per axis (the
    embedding's own geometry, which suits CNN embeddings whose small axes
    are noise) and the whitened ``Zw`` (every axis equal, which suits raw
    pixels), each with every penalty of ``alphas``; ``whiten`` fixes the
    first choice. Each candidate's ``n_folds`` cross-validated
    probabilities are scored by their log-loss on the given labels, on at
    most ``max_samples`` rows (a seeded stratified-enough random sample);
    the lowest wins (as ``LogisticRegressionCV`` picks ``C``).
    """
    n = labels.shape[0]
    rows = np.arange(n)
    if n > max_samples:
        rows = np.sort(rng.choice(n, size=max_samples, replace=False))
    y = labels[rows]
    seed = int(rng.integers(2**31 - 1))
    options = (False, True) if whiten is None else (bool(whiten),)
    table = []
    for w in options:
        F = np.ascontiguousarray((Zw if w else Z)[rows])
        for a in alphas:
            probs, _ = cross_val_pred_probs(
                F,
                y,
                n_classes,
                n_folds=n_folds,
                max_train_samples=None,
                alpha=a,
                max_iter=max_iter,
                rng=np.random.default_rng(seed),
            )
            table.append((w, float(a), log_loss(y, probs)))
    best = min(table, key=lambda t: t[2])
    return ModelChoice(whiten=best[0], alpha=best[1], table=tuple(table))


def select_knn_weight(
    labels: npt.NDArray[np.int64],
    pred_probs: npt.NDArray[np.floating],
    neighbor_probs: npt.NDArray[np.float64],
    weights: tuple[float, ...] = KNN_WEIGHTS,
) -> tuple[float, dict[float, float]]:
    """The weight ``w`` of ``(1 - w) * pred_probs + w * neighbor_probs``.

    Both are out-of-sample (cross-validated and leave-one-out), so the log-loss
    of each blend on the given labels says how well it predicts a label it has
    not seen; the lowest wins. Returns the weight and every weight's log-loss.
    """
    p = np.asarray(pred_probs, dtype=np.float64)
    losses = {
        float(w): log_loss(labels, (1.0 - w) * p + w * neighbor_probs) for w in weights
    }
    return min(losses, key=lambda w: losses[w]), losses
