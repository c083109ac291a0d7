"""k nearest neighbours of every row, with faiss: exact, or cell-blocked above a size.

One search that label issues, duplicates, outliers and the map share.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.utils._progress import progress

__all__ = ["EXACT_MAX_SAMPLES", "KnnGraph", "knn_graph", "l2_normalize"]

#: Up to this many samples the search is exact (IndexFlatL2).
EXACT_MAX_SAMPLES = 120_000


@dataclass(frozen=True)
class KnnGraph:
    """Each row's nearest other rows, nearest first, and how they were found.

    Attributes
    ----------
    indices : ndarray of shape (n_samples, n_neighbors), int64
        Neighbour rows (the row itself excluded).
    distances : ndarray of shape (n_samples, n_neighbors), float32
        Squared Euclidean distances to them. For L2-normalised rows the cosine
        similarity is ``1 - distances / 2``.
    method : str
        "exact (...)" or "approximate (...)".
    """

    indices: npt.NDArray[np.int64]
    distances: npt.NDArray[np.float32]
    method: str

    @property
    def similarities(self) -> npt.NDArray[np.float32]:
        """Cosine similarities, valid when the searched rows were unit length."""
        return np.clip(1.0 - self.distances / 2.0, -1.0, 1.0).astype(np.float32)


def l2_normalize(X: npt.ArrayLike, *, chunk: int = 65_536) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero), float32, chunk by chunk."""
    A = np.asarray(X)
    out = np.empty(A.shape, dtype=np.float32)
    for lo in range(0, A.shape[0], chunk):
        blk = np.asarray(A[lo : lo + chunk], dtype=np.float32)
        norm = np.linalg.norm(blk, axis=1, keepdims=True)
        out[lo : lo + chunk] = blk / np.maximum(norm, 1e-12)
    return out


def _drop_self(
    idx: npt.NDArray[np.int64], dist: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Remove each row's own index (or, if absent, its last neighbour)."""
    n = idx.shape[0]
    is_self = idx == np.arange(n)[:, None]
    pos = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.arange(k + 1)[None, :] != pos[:, None]
    return idx[keep].reshape(n, k), dist[keep].reshape(n, k)


def _n_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def knn_graph(
    Z: npt.ArrayLike,
    n_neighbors: int,
    *,
    exact_max_samples: int = EXACT_MAX_SAMPLES,
    n_lists: int | None = None,
    n_probe: int = 6,
    seed: int = 0,
    verbose: int = 0,
) -> KnnGraph:
    """The ``n_neighbors`` nearest other rows of every row (L2 distance).

    Up to ``exact_max_samples`` rows an exact ``faiss.IndexFlatL2`` search.
    Above that an approximate, cell-blocked search: ``n_lists`` k-means cells
    (faiss k-means on a seeded sample, default ``sqrt(n)`` cells); all the
    rows of a cell are searched together, exactly, among the rows of the
    ``n_probe`` cells whose centres are nearest the cell's centre (its own
    included). Blocking the queries turns the scan into BLAS products
    (``faiss.knn``), several times cheaper per distance than an inverted-file
    scan query by query, so many more candidates are affordable for the same
    time (about ``n_probe / sqrt(n)`` of the data per row); the cells run on
    all cores, one faiss thread each. Rows whose neighbour list comes back
    short (fewer candidates than neighbours) are padded with their own
    nearest neighbour.

    Cost: exact, ``2 n^2 d`` flops; approximate, about
    ``2 n^2 d n_probe / sqrt(n)``.
    """
    import faiss

    Zc = np.ascontiguousarray(Z, dtype=np.float32)
    if Zc.ndim != 2 or Zc.shape[0] < 2:
        raise DataValidationError(
            f"k-NN search needs at least 2 rows of features; got shape {Zc.shape}."
        )
    n, d = Zc.shape
    k = int(min(n_neighbors, n - 1))
    if n <= exact_max_samples:
        index: Any = faiss.IndexFlatL2(d)
        index.add(Zc)
        dist, idx = index.search(Zc, k + 1)
        idx = idx.astype(np.int64)
        method = "exact (faiss IndexFlatL2)"
    else:
        nlist = int(n_lists or max(16, round(np.sqrt(n))))
        nlist = min(nlist, n)
        probe = int(min(n_probe, nlist))
        dist, idx = _cell_search(Zc, k + 1, nlist, probe, seed, verbose)
        method = (
            f"approximate (faiss k-means cells searched blockwise: {nlist} "
            f"cells, {probe} probed per cell)"
        )
    missing = idx < 0
    if missing.any():
        # Fill short lists with the row's nearest found neighbour (or itself).
        first = np.where(idx[:, 0] >= 0, idx[:, 0], np.arange(n))
        idx = np.where(missing, first[:, None], idx)
        first_d = np.where(idx[:, 0] >= 0, dist[:, 0], 0.0)
        dist = np.where(missing, first_d[:, None], dist)
    ids, dd = _drop_self(idx, np.maximum(dist, 0).astype(np.float32), k)
    return KnnGraph(indices=ids, distances=dd, method=method)


def _probe_cells(
    centres: npt.NDArray[np.float32],
    cell: npt.NDArray[np.int64],
    second: npt.NDArray[np.int64],
    n_probe: int,
) -> npt.NDArray[np.int64]:
    """The cells each cell is searched against: itself, then its borders.

    A cell's neighbours are ranked by how many of its samples have that cell
    as their second-nearest centre (the cells its samples' neighbours spill
    into), ties and the rest by centre distance.
    """
    import faiss

    nlist = centres.shape[0]
    key = np.bincount(
        cell * nlist + np.where(second >= 0, second, cell), minlength=nlist * nlist
    ).astype(np.float64)
    key = key.reshape(nlist, nlist)
    m = int(min(nlist, max(2 * n_probe, 16)))
    _, near = faiss.knn(centres, centres, m)
    rows = np.repeat(np.arange(nlist), m)
    flat_near = near.ravel()
    ok = flat_near >= 0
    # Centre distance only orders cells within one count (bonus < 1).
    key[rows[ok], flat_near[ok]] += 0.5 / (1.0 + np.tile(np.arange(m), nlist)[ok])
    key[np.arange(nlist), np.arange(nlist)] = np.inf
    top = np.argpartition(-key, n_probe - 1, axis=1)[:, :n_probe]
    order = np.argsort(-np.take_along_axis(key, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


def _cell_search(
    Z: npt.NDArray[np.float32],
    kk: int,
    nlist: int,
    n_probe: int,
    seed: int,
    verbose: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """``kk`` nearest candidates of every row among its cell's probed cells."""
    import faiss

    n, d = Z.shape
    rng = np.random.default_rng(seed)
    n_train = min(n, 32 * nlist)
    km = faiss.Kmeans(
        d, nlist, niter=10, seed=int(seed), max_points_per_centroid=32, verbose=False
    )
    km.train(Z[np.sort(rng.choice(n, size=n_train, replace=False))])
    centres = np.ascontiguousarray(km.centroids, dtype=np.float32)
    _, assign = faiss.knn(Z, centres, 2)
    cell = assign[:, 0].astype(np.int64)
    probes = _probe_cells(centres, cell, assign[:, 1].astype(np.int64), n_probe)
    order = np.argsort(cell, kind="stable")
    bounds = np.searchsorted(cell[order], np.arange(nlist + 1))
    Zs = Z[order]  # rows grouped by cell, so each cell is one slice
    out = np.full((n, kk), -1, dtype=np.int64)
    dout = np.full((n, kk), np.inf, dtype=np.float32)

    def one(c: int) -> None:
        lo, hi = bounds[c], bounds[c + 1]
        if hi == lo:
            return
        parts = [slice(bounds[p], bounds[p + 1]) for p in probes[c]]
        cand = np.concatenate([np.arange(sl.start, sl.stop) for sl in parts])
        dd, nn = faiss.knn(Zs[lo:hi], np.concatenate([Zs[sl] for sl in parts]), kk)
        found = np.where(nn >= 0, cand[np.maximum(nn, 0)], -1)
        out[lo:hi] = np.where(found >= 0, order[np.maximum(found, 0)], -1)
        dout[lo:hi] = dd

    workers = _n_workers()
    bar = progress(total=nlist, desc="neighbours", unit="cells", verbose=verbose)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(one, range(nlist)):
                bar.update(1)
    finally:
        faiss.omp_set_num_threads(threads)
        bar.close()
    result = np.empty_like(out)
    result[order] = out
    dres = np.empty_like(dout)
    dres[order] = dout
    return dres, result
