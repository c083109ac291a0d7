"""Neighbour disagreement: labels of the k nearest neighbours, found with faiss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["NeighborLabels", "neighbor_labels"]

#: Up to this many samples the search is exact (IndexFlatL2).
EXACT_MAX_SAMPLES = 120_000


@dataclass(frozen=True)
class NeighborLabels:
    """Neighbour indices (self excluded) and how they were found."""

    indices: npt.NDArray[np.int64]
    method: str


def _drop_self(idx: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    """Remove each row's own index (or, if absent, its last neighbour)."""
    n = idx.shape[0]
    is_self = idx == np.arange(n)[:, None]
    pos = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.arange(k + 1)[None, :] != pos[:, None]
    return idx[keep].reshape(n, k)


def neighbor_labels(
    Z: npt.NDArray[np.float32],
    n_neighbors: int,
    *,
    exact_max_samples: int = EXACT_MAX_SAMPLES,
    n_lists: int | None = None,
    n_probe: int = 8,
    seed: int = 0,
) -> NeighborLabels:
    """The ``n_neighbors`` nearest other samples of every sample (L2 distance).

    Up to ``exact_max_samples`` samples an exact ``faiss.IndexFlatL2``
    search; above that an inverted-file index (``IndexIVFFlat``, ``n_lists``
    k-means cells trained on a seeded sample, ``n_probe`` cells visited per
    query), which is approximate: exact all-pairs search at 10^6 samples is
    out of reach on a laptop. Rows whose neighbour list comes back short (an
    IVF cell too small) are padded with their own last neighbour.
    """
    import faiss

    Zc = np.ascontiguousarray(Z, dtype=np.float32)
    n, d = Zc.shape
    index: Any
    k = int(min(n_neighbors, n - 1))
    if n <= exact_max_samples:
        index = faiss.IndexFlatL2(d)
        method = "exact (faiss IndexFlatL2)"
    else:
        nlist = n_lists or int(min(65536, max(256, 4 * np.sqrt(n))))
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist)
        index.cp.seed = int(seed)
        rng = np.random.default_rng(seed)
        n_train = min(n, 40 * nlist)
        index.train(Zc[np.sort(rng.choice(n, size=n_train, replace=False))])
        index.nprobe = int(n_probe)
        method = f"approximate (faiss IndexIVFFlat, {nlist} lists, nprobe {n_probe})"
    index.add(Zc)
    _, idx = index.search(Zc, k + 1)
    idx = idx.astype(np.int64)
    missing = idx < 0
    if missing.any():
        # Fill short lists with the row's nearest found neighbour (or itself).
        first = np.where(idx[:, 0] >= 0, idx[:, 0], np.arange(n))
        idx = np.where(missing, first[:, None], idx)
    return NeighborLabels(indices=_drop_self(idx, k), method=method)


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
