"""Outliers: items far from every other item in embedding space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError

__all__ = ["DEFAULT_OUTLIER_Z", "OutlierScores", "outlier_scores"]

#: An item is flagged when its mean distance to its nearest neighbours lies
#: this many robust standard deviations (1.4826 MAD) above the median item's.
DEFAULT_OUTLIER_Z = 3.5


@dataclass(frozen=True)
class OutlierScores:
    """Per-item outlier figures.

    Attributes
    ----------
    score : ndarray of shape (n,), float32
        Mean cosine similarity to the ``n_neighbors`` nearest other items,
        clipped to [0, 1]: lower is more isolated (scores point one way).
    z : ndarray of shape (n,), float32
        Robust z-score of the mean cosine distance (higher is more isolated).
    flag : ndarray of shape (n,), bool
        ``z >= z_threshold``.
    rank : ndarray of shape (n,), int64
        Item indices, most isolated first.
    n_neighbors : int
    z_threshold : float
    """

    score: npt.NDArray[np.float32]
    z: npt.NDArray[np.float32]
    flag: npt.NDArray[np.bool_]
    rank: npt.NDArray[np.int64]
    n_neighbors: int
    z_threshold: float


def outlier_scores(
    similarities: npt.ArrayLike,
    *,
    n_neighbors: int = 5,
    z_threshold: float = DEFAULT_OUTLIER_Z,
    exclude: npt.ArrayLike | None = None,
) -> OutlierScores:
    """Score how isolated each item is from its nearest neighbours.

    Parameters
    ----------
    similarities : array-like of shape (n_samples, k), float
        Cosine similarities to each item's nearest other items, nearest first
        (``KnnGraph.similarities``).
    n_neighbors : int, default=5
        How many of them to average (at most ``k``).
    z_threshold : float, default=DEFAULT_OUTLIER_Z
        Flag items whose robust z-score reaches this.
    exclude : array-like of shape (n_samples, k), bool, optional
        Neighbours to skip (e.g. the item's own duplicates, which would make a
        duplicated outlier look ordinary); the next ones are used instead.

    Returns
    -------
    OutlierScores

    Notes
    -----
    The k-NN distance outlier score (Ramaswamy et al., SIGMOD 2000), averaged
    over ``n_neighbors`` as fastdup's and FiftyOne Brain's uniqueness are; the
    flag uses the median and MAD of the collection itself, so it holds for
    any embedding scale.
    """
    S = np.asarray(similarities, dtype=np.float32)
    if S.ndim != 2 or S.shape[1] < 1:
        raise DataValidationError(
            f"similarities must be 2-D (n_samples, k); got shape {S.shape}."
        )
    k = int(min(max(1, n_neighbors), S.shape[1]))
    if exclude is not None:
        ex = np.asarray(exclude, dtype=bool)
        if ex.shape != S.shape:
            raise DataValidationError(
                f"exclude must have the shape of similarities {S.shape}; got "
                f"{ex.shape}."
            )
        # push excluded neighbours to the end, keep the rest in order
        order = np.argsort(ex, axis=1, kind="stable")
        S = np.take_along_axis(S, order, axis=1)
    mean_sim = S[:, :k].mean(axis=1)
    dist = 1.0 - mean_sim
    med = float(np.median(dist))
    mad = float(np.median(np.abs(dist - med))) * 1.4826
    spread = max(mad, 1e-6)
    z = ((dist - med) / spread).astype(np.float32)
    rank = np.lexsort((np.arange(S.shape[0]), -z)).astype(np.int64)
    return OutlierScores(
        score=np.clip(mean_sim, 0.0, 1.0).astype(np.float32),
        z=z,
        flag=z >= z_threshold,
        rank=rank,
        n_neighbors=k,
        z_threshold=float(z_threshold),
    )
