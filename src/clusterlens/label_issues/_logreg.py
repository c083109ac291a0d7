"""Multinomial logistic regression on whitened features, and k-fold pred_probs."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from clusterlens.utils._progress import progress

__all__ = ["cross_val_pred_probs", "fit_softmax", "predict_proba", "stratified_folds"]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SoftmaxModel:
    """Weights ``coef`` (n_features, n_classes) and ``intercept`` (n_classes,)."""

    coef: npt.NDArray[np.float64]
    intercept: npt.NDArray[np.float64]
    n_iter: int
    loss: float


def _softmax_inplace(logits: F32) -> None:
    logits -= logits.max(axis=1, keepdims=True)
    np.maximum(logits, np.float32(-80.0), out=logits)  # see fit_softmax
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)


def predict_proba(model: SoftmaxModel, Z: F32, batch: int = 65536) -> F32:
    """Class probabilities for the rows of ``Z``, float32."""
    W = model.coef.astype(np.float32)
    b = model.intercept.astype(np.float32)
    out = np.empty((Z.shape[0], W.shape[1]), dtype=np.float32)
    for start in range(0, Z.shape[0], batch):
        block = Z[start : start + batch] @ W
        block += b
        _softmax_inplace(block)
        out[start : start + batch] = block
    return out


def _lda_init(
    Z: F32, y: npt.NDArray[np.int64], k: int, shrink: float = 0.5
) -> npt.NDArray[np.float64]:
    """Linear discriminant weights as a starting point (shrunk covariance)."""
    n, d = Z.shape
    from scipy.sparse import csr_matrix

    counts = np.bincount(y, minlength=k).astype(np.float64)
    onehot = csr_matrix((np.ones(n, dtype=np.float32), (y, np.arange(n))), shape=(k, n))
    means = np.asarray(onehot @ Z, dtype=np.float64) / np.maximum(counts, 1.0)[:, None]
    # Within-class scatter = E[z z^T] - sum_k pi_k mu_k mu_k^T.
    sw = (Z.T @ Z).astype(np.float64) / n - (means.T * counts) @ means / n
    sw = (sw + sw.T) / 2
    level = np.trace(sw) / d
    if not level > 0:  # no within-class spread at all: fall back to the identity
        level = 1.0
    sw = (1 - shrink) * sw + shrink * np.eye(d) * level
    W = np.linalg.solve(sw, means.T)  # (d, k)
    # A class absent from the training rows gets a tiny prior, not log(0).
    prior = np.maximum(counts, 0.5) / counts.sum()
    b = -0.5 * np.einsum("dk,kd->k", W, means) + np.log(prior)
    return np.vstack([W, b[None, :]])


def fit_softmax(
    Z: F32,
    y: npt.NDArray[np.int64],
    n_classes: int,
    *,
    alpha: float = 1e-3,
    max_iter: int = 60,
) -> SoftmaxModel:
    """Fit L2-regularised multinomial logistic regression with L-BFGS.

    Minimises ``mean_i -log p_{y_i}(z_i) + alpha / 2 * ||W||^2`` (intercept
    not penalised), started from the shrunk LDA solution, for at most
    ``max_iter`` L-BFGS iterations. Logits and gradients use float32 GEMMs;
    the objective is summed in float64.
    """
    from scipy.optimize import minimize

    n, d = Z.shape
    k = n_classes
    cols = np.arange(n)
    # Class-major layout: logits are (k, n), so the per-sample max and sum run
    # over the leading axis (k contiguous SIMD passes over n floats) instead
    # of k-wide rows, which is what made the float32 softmax as slow as the
    # two GEMMs.
    Zt = np.ascontiguousarray(np.asarray(Z, dtype=np.float32).T)  # (d, n)
    ones = np.ones(n, dtype=np.float32)

    def fun(w: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        Wf = w.reshape(d + 1, k)
        logits = Wf[:d].T.astype(np.float32) @ Zt  # (k, n)
        logits += Wf[d].astype(np.float32)[:, None]
        top = logits.max(axis=0)
        logits -= top
        own = logits[y, cols]
        # exp(< -87) is a float32 subnormal, and a GEMM over subnormals runs
        # ~60x slower (measured: 4.5 ms against 0.07 ms for the gradient's
        # product at n=211, d=256, k=50); below e^-80 a class's probability
        # is nothing to the loss or the gradient
        np.maximum(logits, np.float32(-80.0), out=logits)
        np.exp(logits, out=logits)
        s = logits.sum(axis=0)
        loss = np.sum(np.log(s), dtype=np.float64) - np.sum(own, dtype=np.float64)
        loss = float(loss) / n
        logits *= 1.0 / s
        logits[y, cols] -= 1.0
        grad = np.empty((d + 1, k), dtype=np.float64)
        grad[:d] = (Zt @ logits.T) / n
        grad[d] = (logits @ ones) / n
        grad[:d] += alpha * Wf[:d]
        loss += 0.5 * alpha * float(np.sum(Wf[:d] ** 2))
        return loss, grad.ravel()

    # Small problems run single-threaded: threaded BLAS on tiny operations
    # (the L-BFGS updates, small GEMMs) only spins, worse on a busy machine.
    limit = None if n * d * k > 2e8 else 1
    with threadpool_limits(limits=limit, user_api="blas"):
        w0 = _lda_init(Zt.T, y, k).ravel()
        res = minimize(
            fun, w0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
        )
    W = res.x.reshape(d + 1, k)
    return SoftmaxModel(
        coef=W[:d].copy(), intercept=W[d].copy(), n_iter=int(res.nit), loss=res.fun
    )


def stratified_folds(
    labels: npt.NDArray[np.int64], n_folds: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Fold id per sample; each class is spread evenly over the folds."""
    n = labels.shape[0]
    perm = rng.permutation(n)
    order = perm[np.argsort(labels[perm], kind="stable")]
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    pos = np.arange(n) - starts
    # Rotate each class's first fold so small classes do not all start at fold 0.
    offset = rng.integers(0, n_folds, size=int(labels.max()) + 1)
    folds = np.empty(n, dtype=np.int64)
    folds[order] = (pos + offset[sorted_labels]) % n_folds
    return folds


def cross_val_pred_probs(
    Z: F32,
    labels: npt.NDArray[np.int64],
    n_classes: int,
    *,
    n_folds: int = 5,
    max_train_samples: int | None = 100_000,
    alpha: float = 1e-3,
    max_iter: int = 60,
    rng: np.random.Generator,
    verbose: int = 0,
) -> tuple[F32, list[int]]:
    """Out-of-sample class probabilities by stratified k-fold cross-validation.

    Each fold's model is fit on the other folds (at most
    ``max_train_samples`` rows of them, drawn at random) and predicts the
    fold. Returns the probabilities and the L-BFGS iterations per fold.
    """
    n = Z.shape[0]
    folds = stratified_folds(labels, n_folds, rng)
    out = np.empty((n, n_classes), dtype=np.float32)
    # Every random draw happens here, in fold order, so the result does not
    # depend on which thread fits which fold.
    splits = []
    for f in range(n_folds):
        test = np.flatnonzero(folds == f)
        train = np.flatnonzero(folds != f)
        if max_train_samples is not None and train.size > max_train_samples:
            train = np.sort(rng.choice(train, size=max_train_samples, replace=False))
        splits.append((train, test))

    def one(split: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]) -> int:
        train, test = split
        model = fit_softmax(
            Z[train], labels[train], n_classes, alpha=alpha, max_iter=max_iter
        )
        out[test] = predict_proba(model, Z[test])
        return model.n_iter

    # Folds run side by side, one BLAS thread each: the per-iteration
    # products are too small for threaded BLAS to pay (its threads spin,
    # worst on a busy machine), whole folds in parallel use every core.
    workers = max(1, min(n_folds, os.cpu_count() or 1))
    bar = progress(total=n_folds, desc="cross-validation", verbose=verbose)
    iters: list[int] = []
    with threadpool_limits(limits=1, user_api="blas"):
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for it in pool.map(one, splits):
                iters.append(it)
                bar.update(1)
    bar.close()
    return out, iters
