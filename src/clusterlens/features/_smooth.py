"""k-nearest-neighbour averaging of feature vectors (no labels used)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.utils.validation import check_int

__all__ = ["knn_smooth"]


def knn_smooth(
    X: npt.ArrayLike, rounds: int = 6, n_neighbors: int = 10
) -> npt.NDArray[np.float32]:
    """``rounds`` times, each row becomes the mean of its ``n_neighbors`` nearest rows.

    The neighbours (the row itself included) are found once, exactly, on X
    (faiss flat search when available, else scikit-learn). Averaging pulls
    each item towards the dense part of the manifold it lies on, so k-means
    boundaries follow the data's neighbourhoods instead of cutting through
    them: on MNIST IIC embeddings, 6 rounds of 10 neighbours cut the items a
    300-cluster majority naming gets wrong from about 850 to 610
    (``benchmarks/annotation.py``).

    Cost: one exact k-NN search, ``2 n^2 d`` flops (fine to ~10^5 rows), then
    ``rounds`` gathers of ``n * n_neighbors * d`` values.
    """
    A = np.ascontiguousarray(X, dtype=np.float32)
    if A.ndim != 2 or A.shape[0] < 1:
        raise DataValidationError(
            f"X must be a 2-D array of feature rows; got shape {A.shape}."
        )
    if not np.isfinite(A).all():
        raise DataValidationError("X contains NaN or infinity.")
    rounds = int(check_int(rounds, "rounds", "knn_smooth", low=0) or 0)
    k = min(
        int(check_int(n_neighbors, "n_neighbors", "knn_smooth", low=1) or 1), A.shape[0]
    )
    if rounds == 0 or k == 1:
        return A
    try:
        import faiss

        index = faiss.IndexFlatL2(A.shape[1])
        index.add(A)
        _, nn = index.search(A, k)
    except ImportError:  # pragma: no cover - faiss is a default dependency
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k).fit(A).kneighbors(A)[1]
    for _ in range(rounds):
        A = A[nn].mean(axis=1, dtype=np.float32)
    return A
