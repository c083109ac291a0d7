"""Initial centres: greedy k-means++ (on a sample) and random rows."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from clusterlens.cluster._engines._base import Engine
from clusterlens.exceptions import DataValidationError
from clusterlens.typing import SeedLike
from clusterlens.utils.validation import check_random_state

__all__ = ["kmeans_plusplus", "random_rows"]

logger = logging.getLogger(__name__)


def _take_rows(
    X: npt.NDArray[Any], idx: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """Rows ``idx`` of X as float64, reading a memmap in file order."""
    order = np.argsort(idx, kind="stable")
    rows = np.asarray(X[idx[order]], dtype=np.float64)
    out = np.empty_like(rows)
    out[order] = rows
    return out


def random_rows(
    X: npt.NDArray[Any],
    n_clusters: int,
    *,
    sample_weight: npt.NDArray[np.float64] | None = None,
    random_state: SeedLike = None,
) -> npt.NDArray[np.float64]:
    """``n_clusters`` distinct rows of X chosen at random (weighted if asked)."""
    rng = check_random_state(random_state)
    p = None if sample_weight is None else sample_weight / sample_weight.sum()
    idx = rng.choice(X.shape[0], size=n_clusters, replace=False, p=p)
    return _take_rows(X, np.asarray(idx, dtype=np.intp))


def kmeans_plusplus(
    X: npt.NDArray[Any],
    n_clusters: int,
    *,
    sample_weight: npt.NDArray[np.float64] | None = None,
    n_local_trials: int | None = None,
    sample_size: int | None = None,
    random_state: SeedLike = None,
    engine: Engine | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, 2007).

    Parameters
    ----------
    X : {array-like, memmap} of shape (n_samples, n_features)
    n_clusters : int
        Number of centres to pick.
    sample_weight : ndarray of shape (n_samples,), default=None
    n_local_trials : int, default=None
        Candidates tried per centre; ``2 + int(log(n_clusters))`` when None
        (the greedy variant scikit-learn uses).
    sample_size : int, default=None
        Seed on a uniform random sample of this many rows (all rows when
        None or larger than n_samples). Each new centre costs
        O(sample_size * n_local_trials * n_features).
    random_state : int, Generator or None, default=None
    engine : Engine, default=None
        Whose distance to seed with: points are drawn with probability
        proportional to their distance to the nearest chosen centre, as the
        engine measures it (squared Euclidean when None, 1 - IoU for the
        anchor-box engine).

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float64
    indices : ndarray of shape (n_clusters,), int64
        Row indices of the chosen centres in X.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
    >>> centers, idx = kmeans_plusplus(X, 2, random_state=0)
    >>> sorted(np.round(centers[:, 0]).tolist())
    [0.0, 10.0]
    """
    X = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if X.ndim != 2:
        raise DataValidationError(
            f"X must be 2-D of shape (n_samples, n_features); got shape {X.shape}."
        )
    n = X.shape[0]
    if n_clusters > n:
        raise DataValidationError(
            f"n_samples={n} should be >= n_clusters={n_clusters}."
        )
    rng = check_random_state(random_state)
    if sample_size is not None and sample_size < n:
        sample = np.sort(
            rng.choice(n, size=max(sample_size, n_clusters), replace=False)
        )
    else:
        sample = np.arange(n)
    Xs = np.asarray(X[sample], dtype=np.float64)
    ws = (
        np.ones(Xs.shape[0])
        if sample_weight is None
        else np.asarray(sample_weight, dtype=np.float64)[sample]
    )
    m = Xs.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    if engine is None or engine.metric == "sqeuclidean":
        Xs -= Xs.mean(axis=0)  # distances are shift-invariant; centring helps
        xx = np.einsum("ij,ij->i", Xs, Xs)

        def sqdist(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
            c = Xs[rows]
            d2 = xx[None, :] + np.einsum("ij,ij->i", c, c)[:, None] - 2.0 * (c @ Xs.T)
            return np.maximum(d2, 0, out=d2)

    else:
        eng = engine

        def sqdist(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
            state = eng.prepare(Xs[rows], Xs.dtype)
            return np.asarray(eng.pairwise(Xs, state), dtype=np.float64).T

    # Each centre costs one (n_local_trials x m x d) product: below
    # _ONE_THREAD_MACS multiply-adds, BLAS threads cost more to wake than they
    # save (596 x 1280, 17 centres, 3 seedings on 2 cores: 0.27-1.0 s with two
    # threads, 0.07-0.10 s with one; more on a loaded machine).
    small = n_local_trials * m * Xs.shape[1] < _ONE_THREAD_MACS
    with threadpool_limits(1, user_api="blas") if small else contextlib.nullcontext():
        return _greedy(X, Xs, ws, sample, n_clusters, n_local_trials, rng, sqdist)


#: Below this many multiply-adds per candidate batch, seeding runs BLAS on one
#: thread.
_ONE_THREAD_MACS = 1 << 24


def _greedy(
    X: npt.NDArray[Any],
    Xs: npt.NDArray[np.float64],
    ws: npt.NDArray[np.float64],
    sample: npt.NDArray[np.intp],
    n_clusters: int,
    n_local_trials: int,
    rng: np.random.Generator,
    sqdist: Any,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The greedy k-means++ loop of :func:`kmeans_plusplus`."""
    m = Xs.shape[0]
    chosen = np.empty(n_clusters, dtype=np.intp)
    wsum = ws.sum()
    chosen[0] = rng.choice(m, p=ws / wsum) if wsum > 0 else rng.integers(m)
    closest = sqdist(chosen[:1])[0]
    pot = float(closest @ ws)
    for c in range(1, n_clusters):  # a loop over centres, vectorised over points
        cum = np.cumsum(closest * ws)
        vals = rng.uniform(size=n_local_trials) * cum[-1]
        cand = np.minimum(np.searchsorted(cum, vals), m - 1)
        d_cand = sqdist(cand)
        np.minimum(closest, d_cand, out=d_cand)
        pots = d_cand @ ws
        best = int(np.argmin(pots))
        pot = float(pots[best])
        closest = d_cand[best]
        chosen[c] = cand[best]
    logger.debug("k-means++ picked %d centres, potential %.6g", n_clusters, pot)
    idx = sample[chosen].astype(np.int64)
    return _take_rows(X, idx.astype(np.intp)), idx
