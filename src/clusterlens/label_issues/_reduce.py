"""Streaming PCA for label-issue scoring: two chunked passes over X, any size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from clusterlens.exceptions import DataValidationError
from clusterlens.utils._chunking import gen_batches, get_chunk_n_rows
from clusterlens.utils._progress import progress

__all__ = ["Projection", "streaming_pca"]


@dataclass(frozen=True)
class Projection:
    """The principal subspace of ``X`` and ``X`` projected on it.

    Attributes
    ----------
    Z : ndarray of shape (n_samples, n_components), float32
        Centred coordinates on the principal axes (largest variance first).
    variances : ndarray of shape (n_components,)
        Variance along each axis (eigenvalues of the covariance).
    explained : float
        Share of the total variance the axes keep.
    mean : ndarray of shape (n_features,)
    components : ndarray of shape (n_components, n_features)
    """

    Z: npt.NDArray[np.float32]
    variances: npt.NDArray[np.float64]
    explained: float
    mean: npt.NDArray[np.float64]
    components: npt.NDArray[np.float64]

    def whitened(self, eps: float = 1e-6) -> npt.NDArray[np.float32]:
        """``Z`` with unit variance per axis (axes of ~zero variance are zeroed)."""
        v = self.variances
        keep = v > eps * max(float(v.max()), 1e-300)
        scale = np.zeros_like(v)
        np.divide(1.0, np.sqrt(v), out=scale, where=keep)
        return (self.Z * scale.astype(np.float32)).astype(np.float32, copy=False)


def _bad_row(chunk: npt.NDArray[np.floating], start: int) -> int:
    return start + int(np.argmax(~np.isfinite(chunk).all(axis=1)))


#: Rows the covariance is estimated from at most (a seeded sample above it).
PCA_MAX_SAMPLES = 131_072


def _check_finite_block(
    block: npt.NDArray[np.floating], X: Any, start: int, name: str, work: Any
) -> None:
    """Raise if ``block`` (a product of rows of X) has a non-finite value."""
    if np.isfinite(block).all():
        return
    chunk = np.asarray(X[start : start + block.shape[0]], dtype=work)
    if not np.isfinite(chunk).all():
        raise DataValidationError(
            f"{name} has NaN or infinite values (first in row "
            f"{_bad_row(chunk, start)}); replace or drop these rows "
            "before ranking label issues."
        )
    raise DataValidationError(
        f"{name} has values too large for {np.dtype(work).name} arithmetic "
        f"(rows {start}-{start + block.shape[0] - 1}); rescale the features."
    )


def streaming_pca(
    X: Any,
    n_components: int,
    *,
    max_samples: int | None = PCA_MAX_SAMPLES,
    seed: int = 0,
    verbose: int = 0,
    name: str = "features",
) -> Projection:
    """Project ``X`` on its top principal axes, reading it in row chunks.

    Pass 1 accumulates the column sums and the Gram matrix ``X^T X`` one
    chunk at a time (float32 GEMM per chunk, float64 accumulation; numpy's
    ``A.T @ A`` runs BLAS ``syrk``, half the flops of a general product) over
    at most ``max_samples`` rows (a seeded uniform sample of the rows when
    there are more: the ``d x d`` covariance is estimated as well from 10^5
    rows as from 10^6, at a fraction of the ``n d^2`` flops); the covariance
    is eigendecomposed in float64. Pass 2 multiplies every chunk by the top
    ``n_components`` axes. Memory: one chunk, the ``d x d`` Gram and the
    ``n x n_components`` output. A NaN or infinity in a row makes its
    projected row non-finite (``inf * 0`` is NaN), so checking the small
    projected chunks covers every row without an extra pass over X.

    Raises
    ------
    DataValidationError
        If ``X`` has a NaN or infinite value (the message names the first row).
    """
    n, d = X.shape
    r = int(min(n_components, d, n))
    work_dtype = np.float64 if X.dtype == np.float64 else np.float32
    if n < d:
        return _dual_pca(np.asarray(X, dtype=np.float64), r, name)
    rows = get_chunk_n_rows(d * 4 * 3, max_n_rows=65536)
    rows = max(rows, 1024)
    gram = np.zeros((d, d), dtype=np.float64)
    total = np.zeros(d, dtype=np.float64)
    sample: npt.NDArray[np.int64] | None = None
    m = n
    if max_samples is not None and n > max_samples:
        m = int(max_samples)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=m, replace=False))
    bar = progress(total=m + n, desc="PCA", unit="rows", verbose=verbose)
    for sl in gen_batches(m, rows):
        chunk: Any = np.asarray(
            X[sl] if sample is None else X[sample[sl]], dtype=work_dtype
        )
        g = chunk.T @ chunk
        if not np.all(np.isfinite(np.diagonal(g))):
            bar.close()
            rows_of = np.arange(sl.start, sl.stop) if sample is None else sample[sl]
            bad = ~np.isfinite(chunk).all(axis=1)
            if bad.any():
                raise DataValidationError(
                    f"{name} has NaN or infinite values (first in row "
                    f"{int(rows_of[np.argmax(bad)])}); replace or drop these "
                    "rows before ranking label issues."
                )
            raise DataValidationError(
                f"{name} has values too large to square in {work_dtype.__name__} "
                f"(rows {int(rows_of[0])}-{int(rows_of[-1])}); rescale the features."
            )
        gram += g
        total += np.ones(chunk.shape[0], dtype=work_dtype) @ chunk
        bar.update(chunk.shape[0])
    mean = total / m
    cov = gram / m - np.outer(mean, mean)
    cov = (cov + cov.T) / 2.0
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    evals = np.maximum(evals[order], 0.0)
    evecs = evecs[:, order]
    # Fix each axis's sign (largest |loading| positive) so runs are reproducible.
    signs = np.sign(evecs[np.argmax(np.abs(evecs), axis=0), np.arange(d)])
    evecs = evecs * np.where(signs == 0, 1.0, signs)
    V = np.ascontiguousarray(evecs[:, :r])
    Vw = V.astype(work_dtype)
    shift = (mean @ V).astype(np.float32)
    Z = np.empty((n, r), dtype=np.float32)
    for sl in gen_batches(n, rows):
        chunk = np.asarray(X[sl], dtype=work_dtype)
        block = chunk @ Vw
        if not np.isfinite(block).all():
            bar.close()
            _check_finite_block(block, X, sl.start, name, work_dtype)
        np.subtract(block, shift, out=Z[sl], casting="unsafe")
        bar.update(chunk.shape[0])
    bar.close()
    tot_var = float(evals.sum())
    explained = float(evals[:r].sum() / tot_var) if tot_var > 0 else 1.0
    return Projection(
        Z=Z,
        variances=evals[:r].copy(),
        explained=explained,
        mean=mean,
        components=V.T.copy(),
    )


def _dual_pca(X: npt.NDArray[np.float64], r: int, name: str) -> Projection:
    """Fewer rows than columns: an in-memory SVD (cheaper than the d x d Gram)."""
    if not np.all(np.isfinite(X)):
        raise DataValidationError(
            f"{name} has NaN or infinite values (first in row {_bad_row(X, 0)}); "
            "replace or drop these rows before ranking label issues."
        )
    n = X.shape[0]
    mean = X.mean(axis=0)
    Xc = X - mean
    with threadpool_limits(limits=1, user_api="blas"):
        K = Xc @ Xc.T
        evals_k, U = np.linalg.eigh((K + K.T) / 2)
        order = np.argsort(evals_k)[::-1][:r]
        S = np.sqrt(np.maximum(evals_k[order], 0.0))
        U = U[:, order]
        Vt = (U.T @ Xc) / np.where(S > 0, S, 1.0)[:, None]
    signs = np.sign(Vt[np.arange(Vt.shape[0]), np.argmax(np.abs(Vt), axis=1)])
    signs = np.where(signs == 0, 1.0, signs)
    U, Vt = U * signs, Vt * signs[:, None]
    evals = S**2 / n
    tot = float(np.sum(Xc * Xc) / n)
    return Projection(
        Z=(U[:, :r] * S[:r]).astype(np.float32),
        variances=evals[:r].copy(),
        explained=float(evals[:r].sum() / tot) if tot > 0 else 1.0,
        mean=mean,
        components=Vt[:r].copy(),
    )
