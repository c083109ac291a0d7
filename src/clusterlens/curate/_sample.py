"""A small sample that covers the collection: k-center greedy on the embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.features._knn import l2_normalize

__all__ = ["CoverageSample", "select_sample"]


@dataclass(frozen=True)
class CoverageSample:
    """The chosen items, in the order they were picked.

    Attributes
    ----------
    indices : ndarray of shape (budget,), int64
        Item indices; the first ones cover the most.
    radius : ndarray of shape (budget,), float32
        After each pick, the largest cosine distance from any eligible item
        to its nearest picked item (how well the sample covers so far).
    covered_by : ndarray of shape (n_samples,), int64
        For every item, the position in ``indices`` of its nearest pick (-1
        for ineligible items).
    """

    indices: npt.NDArray[np.int64]
    radius: npt.NDArray[np.float32]
    covered_by: npt.NDArray[np.int64]


def select_sample(
    Z: npt.ArrayLike,
    budget: int,
    *,
    eligible: npt.ArrayLike | None = None,
    chunk: int = 65_536,
) -> CoverageSample:
    """Pick ``budget`` items so that every item is close to a picked one.

    Greedy k-center (Gonzalez 1985; the core-set of Sener and Savarese,
    ICLR 2018): start from the item nearest the mean embedding, then
    repeatedly pick the eligible item farthest (cosine distance) from
    everything picked so far. This covers every well-separated group before
    it takes a second item from any, and is deterministic (ties to the lowest
    index), so it needs no seed.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Embeddings (normalised here).
    budget : int
        How many items to pick, at most the number of eligible items.
    eligible : array-like of shape (n_samples,), bool, optional
        Items that may be picked and must be covered (e.g. not a redundant
        duplicate, not junk).

    Returns
    -------
    CoverageSample

    Notes
    -----
    Cost: ``budget`` passes of ``n_samples x n_features`` multiply-adds
    (chunked, so memory stays ``O(n_samples)``). A 2-approximation of the
    minimum covering radius.
    """
    E = l2_normalize(Z)
    n = E.shape[0]
    ok = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, bool)
    if ok.shape != (n,):
        raise DataValidationError(
            f"eligible must have one entry per item ({n}); got shape {ok.shape}."
        )
    n_ok = int(ok.sum())
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise InvalidParameterError(
            f"The budget must be an int; got {type(budget).__name__}."
        )
    if budget < 1 or budget > n_ok:
        raise InvalidParameterError(
            f"The budget must be between 1 and the {n_ok:,} items that may be "
            f"picked (duplicates and junk are left out); got {budget}."
        )
    idx_ok = np.flatnonzero(ok)
    Eo = E[idx_ok]
    mean = Eo.mean(axis=0)
    first = int(np.argmax(Eo @ mean))
    best = np.full(idx_ok.size, np.inf, dtype=np.float32)  # distance to picks
    owner = np.full(idx_ok.size, -1, dtype=np.int64)
    picks = np.empty(budget, dtype=np.int64)
    radius = np.empty(budget, dtype=np.float32)
    cur = first
    for t in range(budget):
        picks[t] = cur
        for lo in range(0, idx_ok.size, chunk):
            d = 1.0 - Eo[lo : lo + chunk] @ Eo[cur]
            closer = d < best[lo : lo + chunk]
            best[lo : lo + chunk] = np.where(closer, d, best[lo : lo + chunk])
            owner[lo : lo + chunk] = np.where(closer, t, owner[lo : lo + chunk])
        best[cur] = -1.0  # picked: never again
        cur = int(np.argmax(best))
        radius[t] = max(0.0, float(best[cur]))
    covered_by = np.full(n, -1, dtype=np.int64)
    covered_by[idx_ok] = owner
    return CoverageSample(indices=idx_ok[picks], radius=radius, covered_by=covered_by)
