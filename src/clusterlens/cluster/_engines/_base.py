"""The Engine protocol that every k-means variant plugs into the driver with."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from clusterlens.utils._registry import Registry

__all__ = ["ENGINES", "Engine", "delta_sums", "get_engine", "segment_sums"]

ENGINES: Registry[type[Engine]] = Registry("engine", "clusterlens.engines")


def segment_sums(
    Xc: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.integer[Any]],
    sample_weight: npt.NDArray[np.float64] | None,
    sums: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
) -> None:
    """Add the (weighted) rows of ``Xc`` to ``sums[labels]`` and weights to ``weights``.

    One sparse product ``onehot(labels).T @ Xc`` per chunk: O(m d) for m rows,
    in scipy's C loop (``np.add.at`` on rows was 7-60x slower here, a sort and
    ``np.add.reduceat`` 4-8x). The product runs in float64 whatever the dtype
    of ``Xc``, so the sums do not depend (beyond float64 rounding) on how the
    rows were cut into chunks or threads. When k is large next to m, the
    one-hot matrix spans only the clusters present in the chunk, so a chunk
    never costs O(k d).
    """
    import scipy.sparse as sp

    m = labels.shape[0]
    if m == 0:
        return
    k = sums.shape[0]
    if Xc.shape[1] <= 4:
        # A few columns (box sizes): one weighted bincount per column is
        # cheaper than building a sparse matrix.
        for j in range(Xc.shape[1]):
            col = Xc[:, j] if sample_weight is None else Xc[:, j] * sample_weight
            sums[:, j] += np.bincount(labels, weights=col, minlength=k)
        weights += np.bincount(labels, weights=sample_weight, minlength=k)
        return
    data = np.ones(m) if sample_weight is None else sample_weight
    indptr = np.arange(m + 1)
    if k <= 4 * m:
        onehot = sp.csr_matrix((data, labels, indptr), shape=(m, k))
        sums += onehot.T @ Xc
        weights += np.bincount(labels, weights=sample_weight, minlength=k)
    else:
        present, inv = np.unique(labels, return_inverse=True)
        onehot = sp.csr_matrix((data, inv, indptr), shape=(m, present.size))
        sums[present] += onehot.T @ Xc
        weights[present] += np.bincount(
            inv, weights=sample_weight, minlength=present.size
        )


def delta_sums(
    add: Any,
    rows: npt.NDArray[Any],
    new: npt.NDArray[np.integer[Any]],
    old: npt.NDArray[np.integer[Any]],
    sample_weight: npt.NDArray[np.float64] | None,
) -> None:
    """Move ``rows`` from clusters ``old`` (-1: none) to ``new`` through ``add``.

    ``add(rows, labels, weights)`` accumulates weighted rows; removal is an
    addition with negated weights.
    """
    w = np.ones(rows.shape[0]) if sample_weight is None else sample_weight
    add(rows, new, w)
    had = old >= 0
    if had.any():
        add(rows[had], old[had], -w[had])


class Engine(ABC):
    """How points are compared with centres and how centres are re-estimated.

    The k-means driver (:func:`clusterlens.cluster._driver.exact_loop`, the
    one exact Lloyd loop, with the local passes of
    :class:`clusterlens.cluster._driver.LocalExactPasses`) owns the loop,
    convergence, empty-cluster repair, history and progress; an engine only
    answers, one chunk of rows at a time:

    - :meth:`prepare` — per-iteration state derived from the centres;
    - :meth:`step` — labels and distances of a chunk, plus its contribution
      to the per-cluster sums (accumulated into the caller's float64 buffers);
    - :meth:`finalize` and :meth:`update` — turn the sums into new centres.

    Other distances (1 - IoU for anchor boxes, ...) subclass this and keep the
    same driver. Engines are stateless between calls except for thread-local
    scratch buffers, so one engine object may serve several threads.
    """

    name: ClassVar[str]
    #: What :meth:`assign` returns as distance ("sqeuclidean", "1-iou", ...).
    metric: ClassVar[str] = "sqeuclidean"
    #: True if :meth:`update` minimises the loss given the labels (the mean for
    #: squared Euclidean), so the loss never rises; if False the driver keeps
    #: the best centres seen.
    monotone: ClassVar[bool] = True
    #: True if :meth:`accumulate` adds plain (weighted) sums, so that moving a
    #: point between clusters can be applied as a delta: the driver then keeps
    #: running sums and passes only the points that changed cluster. Opt-in,
    #: since an engine that collects rows for another update must see them all.
    incremental: ClassVar[bool] = False
    #: True if several chunks may run at once in threads (BLAS limited to 1).
    parallel_chunks: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None) and not isinstance(
            cls.__dict__.get("name"), str
        ):
            raise TypeError(f"Engine subclass {cls.__name__} must define a str `name`.")

    def __init__(self) -> None:
        self._local = threading.local()

    @classmethod
    def supports(cls, params: Mapping[str, Any]) -> bool:
        """Whether this engine can run a fit with ``params`` (dtype, metric...)."""
        return True

    def working_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """The float dtype chunks of ``dtype`` are computed in.

        Small integers (uint8 SIFT, uint16) and float16/float32 work in
        float32, which holds them exactly; everything else in float64.
        """
        dtype = np.dtype(dtype)
        if dtype == np.float32 or dtype == np.float16:
            return np.dtype(np.float32)
        if dtype.kind in "ui" and dtype.itemsize <= 2:
            return np.dtype(np.float32)
        return np.dtype(np.float64)

    def chunk_rows(
        self, n_features: int, n_clusters: int, dtype: np.dtype[Any], budget: int
    ) -> int:
        """Rows per chunk so one thread's scratch memory fits ``budget`` bytes.

        The default assumes an (m, k) distance block plus a converted chunk.
        """
        item = self.working_dtype(dtype).itemsize
        per_row = (n_features + n_clusters + 2) * item + 64
        return int(max(1, min(4096, budget // per_row)))

    @abstractmethod
    def prepare(
        self,
        centers: npt.NDArray[np.float64],
        dtype: np.dtype[Any],
        origin: npt.NDArray[np.float64] | None = None,
    ) -> Any:
        """Per-iteration state from ``centers`` for data of ``dtype`` (read-only).

        ``origin``, when given, is a point fixed for the whole fit that an
        engine may shift the data by (sums of shifted rows stay comparable
        across iterations).
        """

    @abstractmethod
    def assign(
        self, X_chunk: npt.NDArray[Any], state: Any
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.floating[Any]]]:
        """Nearest centre of each row and its distance (squared for Euclidean)."""

    @abstractmethod
    def pairwise(self, X_chunk: npt.NDArray[Any], state: Any) -> npt.NDArray[Any]:
        """Distances from each row to every centre, shape (m, k)."""

    def accumulate(
        self,
        X_chunk: npt.NDArray[Any],
        labels: npt.NDArray[np.intp],
        sample_weight: npt.NDArray[np.float64] | None,
        state: Any,
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
    ) -> None:
        """Add this chunk's per-cluster sums and weights into the buffers."""
        Xc = np.array(X_chunk, dtype=self.working_dtype(X_chunk.dtype), order="C")
        segment_sums(Xc, labels, sample_weight, sums, weights)

    def step(
        self,
        X_chunk: npt.NDArray[Any],
        state: Any,
        sample_weight: npt.NDArray[np.float64] | None,
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
        prev: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.floating[Any]]]:
        """One E-step and partial M-step on a chunk; returns labels and distances.

        Without ``prev`` the chunk's per-cluster sums are added; with ``prev``
        (the labels of the previous iteration, -1 for none) only the change:
        each point whose label moved is added to its new cluster and removed
        from its old one.
        """
        labels, dist = self.assign(X_chunk, state)
        if prev is None:
            self.accumulate(X_chunk, labels, sample_weight, state, sums, weights)
            return labels, dist
        moved = np.flatnonzero(prev != labels)
        if moved.size:
            rows = np.asarray(X_chunk[moved])
            delta_sums(
                lambda xs, lab, w: self.accumulate(xs, lab, w, state, sums, weights),
                rows,
                labels[moved],
                prev[moved],
                None if sample_weight is None else sample_weight[moved],
            )
        return labels, dist

    def finalize(
        self,
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
        state: Any,
    ) -> npt.NDArray[np.float64]:
        """Turn accumulated sums into plain sums of rows (undo any shift)."""
        return sums

    def update(
        self,
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
        old_centers: npt.NDArray[np.float64],
        state: Any,
    ) -> npt.NDArray[np.float64]:
        """New centres from per-cluster sums; empty clusters keep their centre.

        The default is the (weighted) mean. An engine whose update is not a
        mean (a median for k-medians or anchor boxes) collects what it needs
        in :meth:`accumulate` into ``state``, which is fresh each iteration.
        """
        new = old_centers.copy()
        nz = weights > 0
        new[nz] = sums[nz] / weights[nz, None]
        return new


def get_engine(engine: str | Engine, params: Mapping[str, Any] | None = None) -> Engine:
    """Resolve ``engine`` (a name, ``"auto"`` or an Engine instance) to an Engine.

    ``"auto"`` picks the first registered engine, in order of measured speed
    (numpy's chunked GEMM first), that supports ``params``.
    """
    if isinstance(engine, Engine):
        return engine
    params = params or {}
    if engine == "auto":
        for name in ENGINES.available():
            cls = ENGINES.get(name)
            if cls.supports(params):
                return cls()
    cls = ENGINES.get(str(engine), extra_names=("auto",))
    if not cls.supports(params):
        raise ValueError(
            f"Engine {engine!r} does not support these parameters: {params}."
        )
    return cls()
