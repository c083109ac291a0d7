"""Neighbour disagreement: labels of the k nearest neighbours, found with faiss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clusterlens.features._knn import EXACT_MAX_SAMPLES, knn_graph

__all__ = ["NeighborLabels", "neighbor_labels"]


@dataclass(frozen=True)
class NeighborLabels:
    """Neighbour indices (self excluded) and how they were found."""

    indices: npt.NDArray[np.int64]
    method: str


def neighbor_labels(
    Z: npt.NDArray[np.float32],
    n_neighbors: int,
    *,
    exact_max_samples: int = EXACT_MAX_SAMPLES,
    n_lists: int | None = None,
    n_probe: int = 6,
    seed: int = 0,
    verbose: int = 0,
) -> NeighborLabels:
    """The ``n_neighbors`` nearest other samples of every sample (L2 distance).

    :func:`clusterlens.features._knn.knn_graph` (exact up to
    ``exact_max_samples``, cell-blocked above), indices only.
    """
    g = knn_graph(
        Z,
        n_neighbors,
        exact_max_samples=exact_max_samples,
        n_lists=n_lists,
        n_probe=n_probe,
        seed=seed,
        verbose=verbose,
    )
    return NeighborLabels(indices=g.indices, method=g.method)


def neighbor_class_counts(
    nbr: npt.NDArray[np.int64], labels: npt.NDArray[np.int64], n_classes: int
) -> npt.NDArray[np.float64]:
    """``counts[i, c]``: how many of sample ``i``'s neighbours carry label ``c``."""
    n = nbr.shape[0]
    flat = (np.arange(n)[:, None] * n_classes + labels[nbr]).ravel()
    return (
        np.bincount(flat, minlength=n * n_classes)
        .reshape(n, n_classes)
        .astype(np.float64)
    )
