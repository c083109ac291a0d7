"""Coreset sensitivity (importance) of each sample for logistic regression."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

__all__ = ["class_leverage", "coreset_importance"]


def class_leverage(
    Zw: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    n_classes: int,
    *,
    ridge: float = 1e-3,
) -> npt.NDArray[np.float64]:
    """Statistical leverage of each sample within its own class.

    For the rows ``A_c`` of class ``c`` (the first ``min(d, n_c // 10)``
    whitened PCA axes plus a constant column)
    ``h_i = a_i^T (A_c^T A_c + ridge * n_c * I)^{-1} a_i``: the l2-sensitivity
    of the linear scores over that class. Cost ``O(n d^2)``, one Cholesky
    factorisation per class.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _class_leverage(Zw, labels, n_classes, ridge)


def _class_leverage(
    Zw: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    n_classes: int,
    ridge: float,
) -> npt.NDArray[np.float64]:
    from scipy.linalg import solve_triangular

    n, d = Zw.shape
    out = np.empty(n, dtype=np.float64)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_classes + 1))
    for c in range(n_classes):
        rows = order[bounds[c] : bounds[c + 1]]
        if rows.size == 0:
            continue
        # At most n_c / 10 leading axes: with more axes than samples every
        # leverage is ~1 and says nothing.
        dc = int(min(d, max(1, rows.size // 10)))
        A = np.empty((rows.size, dc + 1), dtype=np.float64)
        A[:, :dc] = Zw[rows, :dc]
        A[:, dc] = 1.0
        G = A.T @ A
        G[np.diag_indices_from(G)] += ridge * rows.size
        L = np.linalg.cholesky(G)
        B = solve_triangular(L, A.T, lower=True)  # (d+1, n_c)
        out[rows] = np.einsum("ij,ij->j", B, B)
    return out


def coreset_importance(
    leverage: npt.NDArray[np.float64],
    self_conf: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    n_classes: int,
    *,
    eps: float = 1e-6,
) -> npt.NDArray[np.float64]:
    """Sensitivity upper bound per sample, relative to its class's mean (1).

    Within each class ``c`` (``n_c`` samples) the sensitivity of sample ``i``
    for the logistic loss is bounded by the sum of three terms, as in the
    coreset constructions for logistic regression (Munteanu et al., NeurIPS
    2018; Tolochinsky & Feldman 2018): its share of the class leverage, its
    share of the class loss ``-log p_{y_i}`` under the fitted model, and the
    uniform ``1 / n_c``::

        s_i = h_i / sum_c h + l_i / sum_c l + 1 / n_c

    Returned as ``n_c * s_i / 3`` so that 1 is the class average; larger
    means the sample matters more to the model (often a wrong label, a
    crowded box or an unusual view).
    """
    loss = -np.log(np.clip(self_conf, eps, 1.0))
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    lev_sum = np.bincount(labels, weights=leverage, minlength=n_classes)
    loss_sum = np.bincount(labels, weights=loss, minlength=n_classes)
    lev_share = leverage / np.maximum(lev_sum[labels], 1e-300)
    loss_share = np.where(
        loss_sum[labels] > 0, loss / np.maximum(loss_sum[labels], 1e-300), 0.0
    )
    s = lev_share + loss_share + 1.0 / counts[labels]
    return counts[labels] * s / 3.0
