"""The one exact Lloyd loop, and its local passes (threads over row chunks).

:func:`exact_loop` owns the iteration, convergence, ``history``, progress
bar, checkpoints and empty-cluster repair; it asks an
:class:`~clusterlens.cluster._backend.ExactPasses` for each pass, wherever
the rows are. :class:`LocalExactPasses` answers in this process.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from clusterlens._config import effective_n_threads, get_config
from clusterlens.cluster._backend import ExactPass, ExactPasses, FarthestRows
from clusterlens.cluster._engines._base import Engine
from clusterlens.exceptions import ConvergenceWarning, DataValidationError
from clusterlens.utils._chunking import gen_batches
from clusterlens.utils._progress import progress

__all__ = [
    "ChunkPlan",
    "LloydResult",
    "LocalExactPasses",
    "assign_chunked",
    "data_stats",
    "exact_loop",
    "lloyd",
    "plan_chunks",
    "relocate_empty",
    "warn_few_clusters",
]

logger = logging.getLogger(__name__)

#: Iterations without a new best loss after which a non-monotone engine stops.
_PATIENCE = 10
#: Incremental engines re-sum every point this often (bounds rounding drift).
_RESUM = 32


@dataclass(frozen=True)
class ChunkPlan:
    """Row chunks of X and the static thread schedule that processes them.

    The rows are split into ``n_threads`` contiguous, equal ranges (balanced
    to one row), each cut into near-equal chunks. Worker ``t`` processes its
    range in order and keeps its own accumulators, which are reduced in
    worker order: the same data, engine and thread count give bit-identical
    sums on every run.
    """

    workers: tuple[tuple[slice, ...], ...]
    rows: int

    @property
    def n_threads(self) -> int:
        return len(self.workers)

    def for_worker(self, t: int) -> tuple[slice, ...]:
        return self.workers[t]


def plan_chunks(
    n_samples: int,
    n_features: int,
    n_clusters: int,
    dtype: np.dtype[Any],
    engine: Engine,
) -> ChunkPlan:
    """Chunk rows from the engine's preference within the memory budget."""
    n_threads = effective_n_threads() if engine.parallel_chunks else 1
    budget = int(get_config()["working_memory"] * 2**20) // n_threads
    rows = max(1, engine.chunk_rows(n_features, n_clusters, dtype, budget))
    n_threads = max(1, min(n_threads, -(-n_samples // rows)))
    bounds = np.linspace(0, n_samples, n_threads + 1).round().astype(int)
    workers = []
    for lo, hi in itertools.pairwise(bounds):
        n_chunks = max(1, -(-(hi - lo) // rows))
        cuts = np.linspace(lo, hi, n_chunks + 1).round().astype(int)
        workers.append(
            tuple(slice(int(a), int(b)) for a, b in itertools.pairwise(cuts))
        )
    return ChunkPlan(tuple(workers), rows)


def data_stats(
    X: npt.NDArray[Any], *, name: str = "X", chunk_rows: int = 8192
) -> tuple[npt.NDArray[np.float64], float]:
    """Mean and mean per-feature variance of X in one chunked pass; checks NaN/inf.

    Chunks are combined with Chan et al.'s pairwise update, so a large offset
    does not cost precision. Raises :class:`DataValidationError` naming the
    first row with NaN or infinity.
    """
    n, d = X.shape
    mean = np.zeros(d)
    m2 = np.zeros(d)
    count = 0
    is_float = np.issubdtype(X.dtype, np.floating)
    for sl in gen_batches(n, chunk_rows):
        c = np.asarray(X[sl], dtype=np.float64)
        if is_float and not np.isfinite(c).all():
            bad = np.flatnonzero(~np.isfinite(c).all(axis=1))
            kind = "NaN" if np.isnan(c).any() else "infinity"
            raise DataValidationError(
                f"Input {name} contains {kind} "
                f"(first at row {sl.start + int(bad[0])}). "
                "Remove or impute those rows before clustering."
            )
        nb = c.shape[0]
        mb = c.mean(axis=0)
        m2b = ((c - mb) ** 2).sum(axis=0)
        delta = mb - mean
        tot = count + nb
        mean += delta * (nb / tot)
        m2 += m2b + delta**2 * (count * nb / tot)
        count = tot
    return mean, float(np.mean(m2 / max(count, 1)))


@dataclass
class _Workspace:
    """Buffers reused across iterations of one fit."""

    labels: npt.NDArray[np.int64]
    prev: npt.NDArray[np.int64]
    dist: npt.NDArray[Any]
    sums: npt.NDArray[np.float64]  # (T, k, d)
    weights: npt.NDArray[np.float64]  # (T, k)


@dataclass
class LloydResult:
    """What one run of :func:`exact_loop` found (internal)."""

    centers: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    distances: npt.NDArray[Any]
    inertia: float
    n_iter: int
    converged: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def _run_pass(
    X: npt.NDArray[Any],
    engine: Engine,
    state: Any,
    plan: ChunkPlan,
    pool: ThreadPoolExecutor | None,
    ws: _Workspace,
    sample_weight: npt.NDArray[np.float64] | None,
    *,
    accumulate: bool,
    delta: bool = False,
) -> tuple[float, int]:
    """One pass over X: labels and distances into ``ws``; sums if ``accumulate``.

    With ``delta`` the per-thread sums receive only the change since
    ``ws.prev`` (points that moved), to be added to running totals.
    Returns the (weighted) inertia and the number of points whose label
    changed with respect to ``ws.prev``.
    """
    if accumulate:
        ws.sums.fill(0.0)
        ws.weights.fill(0.0)

    def work(t: int) -> tuple[float, int]:
        inertia = 0.0
        moved = 0
        sums, weights = ws.sums[t], ws.weights[t]
        for sl in plan.for_worker(t):
            xb = X[sl]
            wb = None if sample_weight is None else sample_weight[sl]
            if accumulate:
                prev = ws.prev[sl] if delta else None
                labels, dist = engine.step(xb, state, wb, sums, weights, prev)
            else:
                labels, dist = engine.assign(xb, state)
            ws.labels[sl] = labels
            ws.dist[sl] = dist
            moved += int(np.count_nonzero(ws.prev[sl] != labels))
            inertia += float(
                np.sum(dist, dtype=np.float64) if wb is None else np.dot(dist, wb)
            )
        return inertia, moved

    if pool is None or plan.n_threads == 1:
        results = [work(0)]
    else:
        results = list(pool.map(work, range(plan.n_threads)))
    inertia = float(sum(r[0] for r in results))
    if not np.isfinite(inertia):
        bad = np.flatnonzero(~np.isfinite(ws.dist))
        row = int(bad[0]) if bad.size else -1
        raise DataValidationError(
            f"Input X contains NaN or infinity (first at row {row}). "
            "Remove or impute those rows before clustering."
        )
    return inertia, int(sum(r[1] for r in results))


def relocate_empty(
    X: npt.NDArray[Any],
    empty: npt.NDArray[np.intp],
    sums: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    dist: npt.NDArray[Any],
    sample_weight: npt.NDArray[np.float64] | None,
) -> int:
    """Re-seed empty clusters at the points farthest from their centres.

    Deterministic: candidates are taken by decreasing distance, ties by
    index. A point is moved only if its cluster keeps other points, so a
    repair never empties another cluster. ``labels`` and ``dist`` of a moved
    point are set to its new cluster and 0. Returns the number repaired.
    """
    n = dist.shape[0]
    q = min(n, 4 * empty.size + 16)
    cand = np.argpartition(-dist, q - 1)[:q] if q < n else np.arange(n)
    cand = cand[np.lexsort((cand, -dist[cand]))]
    repaired = 0
    it = iter(cand.tolist())
    for e in empty.tolist():  # a loop over clusters, not points
        for i in it:
            donor = int(labels[i])
            wi = 1.0 if sample_weight is None else float(sample_weight[i])
            if wi <= 0 or weights[donor] - wi <= 0:
                continue
            xi = np.asarray(X[i], dtype=np.float64)
            sums[donor] -= wi * xi
            weights[donor] -= wi
            sums[e] = wi * xi
            weights[e] = wi
            labels[i] = e
            dist[i] = 0
            repaired += 1
            break
    return repaired


def _repair(
    passes: ExactPasses,
    empty: npt.NDArray[np.intp],
    sums: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
) -> int:
    """Empty clusters take the farthest rows the backend reports (see above).

    Each backend returns at least the ``q`` farthest rows (ties: lower
    index), so :func:`relocate_empty` picks among them exactly as it would
    among all rows.
    """
    q = min(passes.n_samples, 4 * empty.size + 16)
    far = passes.farthest(q)
    before = far.labels.copy()
    repaired = relocate_empty(
        far.rows, empty, sums, weights, far.labels, far.dist, far.weights
    )
    if repaired:
        moved = np.flatnonzero(far.labels != before)
        passes.relabel(far.index[moved], far.labels[moved])
    return repaired


def warn_few_clusters(labels: npt.NDArray[Any], n_clusters: int) -> None:
    """Warn when a fit found fewer distinct clusters than asked."""
    n_distinct = int(np.unique(labels).size)
    if n_distinct < n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({n_distinct}) found smaller than "
            f"n_clusters ({n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=3,
        )


def exact_loop(
    passes: ExactPasses,
    centers_init: npt.NDArray[np.float64],
    *,
    engine: Engine,
    max_iter: int,
    tol: float,
    verbose: int = 0,
    desc: str = "k-means",
    leave: bool = True,
    checkpoint: Any = None,
) -> LloydResult:
    """Lloyd's algorithm, the passes answered by ``passes`` (any backend).

    Parameters
    ----------
    passes : ExactPasses
        The rows, wherever they are (this process, Dask workers).
    centers_init : ndarray of shape (n_clusters, n_features), float64
    engine : Engine
        Its :meth:`~Engine.update` turns the sums into centres.
    max_iter : int
    tol : float
        Absolute tolerance on the squared centre shift summed over clusters.
    verbose : int
        1 shows a progress bar with inertia, moved points and seconds per
        iteration; 2 also logs each iteration at DEBUG.
    checkpoint : Checkpoint, optional
        Written after every iteration (:class:`clusterlens.io._checkpoint.Checkpoint`);
        with ``checkpoint.resume`` the fit continues from it
        (``centers_init`` is then ignored) and ends as the uninterrupted one
        would, bit for bit.

    Notes
    -----
    Each iteration assigns every point to its nearest centre, then moves each
    centre to the mean of its points (Lloyd, 1982). It stops when no label
    changes (strict convergence) or the centre shift is at most ``tol``; then
    a last assignment pass makes labels and inertia match the final centres,
    as scikit-learn's Lloyd does. For squared Euclidean distance the loss
    never rises between iterations; for engines whose update does not
    minimise their loss (``Engine.monotone = False``, e.g. the mean under
    1 - IoU) the best centres seen are returned and the fit stops after
    ``_PATIENCE`` iterations without a new best. With an incremental engine
    a backend may keep running per-cluster sums, updated with the points
    that changed cluster (re-summed every ``_RESUM`` iterations). An empty
    cluster takes the point farthest from its centre
    (:func:`relocate_empty`).
    """
    k, d = centers_init.shape
    centers = np.array(centers_init, dtype=np.float64, order="C")
    history: list[dict[str, Any]] = []
    converged = strict = False
    inertia = np.inf
    n_iter = 0
    best_inertia, best_centers, best_it = np.inf, centers, 0
    # Running per-cluster sums: after a full pass, each iteration only adds
    # the points that changed cluster (few, once the fit settles); a full
    # re-sum every _RESUM iterations bounds the rounding drift.
    origin = centers.mean(axis=0)
    sums = np.zeros((k, d))
    weights = np.zeros(k)
    start = 0
    bar = progress(total=max_iter, desc=desc, verbose=verbose, unit="iter", leave=leave)
    if checkpoint is not None and checkpoint.resume:
        arrays, meta = checkpoint.load()
        checkpoint.check_kind(meta, passes.kind)
        start = int(meta["iteration"])
        centers = np.array(arrays["centers"], dtype=np.float64)
        origin = arrays["origin"].copy()
        if "sums" in arrays:
            sums, weights = arrays["sums"].copy(), arrays["weights"].copy()
        best_inertia = float(meta.get("best_inertia", np.inf))
        best_it = int(meta.get("best_it", 0))
        best_centers = np.array(arrays.get("best_centers", centers), dtype=np.float64)
        history = list(meta.get("history", []))
        passes.restore(arrays, meta)
        n_iter = start
        bar.update(start)
        if meta.get("converged", False):  # nothing left but the final assignment
            converged, max_iter = True, start
    w_total = passes.total_weight
    with passes, ExitStack() as stack:
        stack.callback(bar.close)
        for it in range(start, max_iter):
            t0 = time.perf_counter()
            delta = passes.incremental and it % _RESUM != 0
            p = passes.step(centers, origin, delta=delta)
            inertia = p.inertia
            if inertia < best_inertia:
                best_inertia, best_centers, best_it = inertia, centers, it
            if p.delta:
                sums += p.sums
                weights += p.weights
            else:
                sums, weights = p.sums, p.weights
            # A cluster left by all its points may keep a rounding residue.
            empty = np.flatnonzero(weights <= 1e-12 * w_total)
            repaired = 0
            if empty.size:
                sums[empty] = 0.0
                weights[empty] = 0.0
                repaired = _repair(passes, empty, sums, weights)
            new_centers = engine.update(sums, weights, centers, p.state)
            shift = float(((new_centers - centers) ** 2).sum())
            centers = new_centers
            n_iter = it + 1
            seconds = time.perf_counter() - t0
            # a backend that does not count moved points says only "none" (0)
            # or "some" (-1)
            moved = p.moved if p.moved is not None else (0 if p.unchanged else -1)
            history.append(
                {
                    "iteration": n_iter,
                    "inertia": inertia,
                    "moved": moved,
                    "center_shift": shift,
                    "empty_repaired": repaired,
                    "seconds": seconds,
                }
            )
            bar.set_postfix_str(
                f"inertia={inertia:.5g} moved={moved} {seconds:.2f}s/it", refresh=False
            )
            bar.update(1)
            if verbose >= 2:
                logger.debug("%s iteration %d: %s", desc, n_iter, history[-1])
            if p.unchanged and repaired == 0:
                strict = converged = True
            elif shift <= tol:
                converged = True
            elif not engine.monotone and it - best_it >= _PATIENCE:
                converged = True  # the loss stopped improving: keep the best
            if checkpoint is not None:
                arrays, meta = passes.checkpoint()
                checkpoint.save(
                    passes.kind,
                    {
                        "centers": centers,
                        **arrays,
                        "sums": sums,
                        "weights": weights,
                        "origin": origin,
                        "best_centers": best_centers,
                    },
                    {
                        "iteration": n_iter,
                        "best_inertia": best_inertia,
                        "best_it": best_it,
                        "history": history,
                        "converged": converged,
                        **meta,
                    },
                )
            if converged:
                bar.total = n_iter  # a converged fit shows as complete
                bar.refresh()
                break
            passes.end_iteration()
        # Labels and inertia of the final centres (no update).
        labels, dist, inertia = passes.final(centers, origin, last_pass=strict)
        if not engine.monotone and best_inertia < inertia:
            # The update is not the loss's minimiser (a mean under 1 - IoU), so
            # the loss may have risen: return the best centres seen.
            centers = best_centers
            labels, dist, inertia = passes.final(centers, origin, last_pass=False)
    return LloydResult(
        centers=centers,
        labels=labels,
        distances=dist,
        inertia=float(inertia),
        n_iter=n_iter,
        converged=converged,
        history=history,
    )


class LocalExactPasses(ExactPasses):
    """Exact passes over X in this process: row chunks in threads.

    The rows are cut by :func:`plan_chunks`; each thread keeps its own
    per-cluster sums, reduced in thread order (bit-identical runs). With an
    incremental engine a pass may add only the points that moved.
    """

    def __init__(
        self,
        X: npt.NDArray[Any],
        engine: Engine,
        sample_weight: npt.NDArray[np.float64] | None = None,
        n_clusters: int = 1,
    ) -> None:
        n, d = X.shape
        self.X, self.engine, self.sample_weight = X, engine, sample_weight
        self.n_samples = n
        self.total_weight = float(n if sample_weight is None else sample_weight.sum())
        self.incremental = bool(engine.incremental)
        self.plan = plan_chunks(n, d, n_clusters, X.dtype, engine)
        T = self.plan.n_threads
        self.ws = _Workspace(
            labels=np.zeros(n, dtype=np.int64),
            prev=np.full(n, -1, dtype=np.int64),
            dist=np.zeros(n, dtype=engine.working_dtype(X.dtype)),
            sums=np.zeros((T, n_clusters, d)),
            weights=np.zeros((T, n_clusters)),
        )
        self.pool: ThreadPoolExecutor | None = None
        self._stack = ExitStack()
        self._inertia = np.inf

    def __enter__(self) -> LocalExactPasses:
        if self.plan.n_threads > 1:
            # Threads over chunks, one BLAS thread each (no oversubscription).
            self._stack.enter_context(threadpool_limits(1, user_api="blas"))
            self.pool = self._stack.enter_context(
                ThreadPoolExecutor(self.plan.n_threads)
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()
        self.pool = None

    def _pass(
        self,
        centers: npt.NDArray[np.float64],
        origin: npt.NDArray[np.float64],
        *,
        accumulate: bool,
        delta: bool = False,
    ) -> tuple[Any, float, int]:
        state = self.engine.prepare(centers, self.X.dtype, origin)
        inertia, moved = _run_pass(
            self.X,
            self.engine,
            state,
            self.plan,
            self.pool,
            self.ws,
            self.sample_weight,
            accumulate=accumulate,
            delta=delta,
        )
        return state, inertia, moved

    def step(
        self,
        centers: npt.NDArray[np.float64],
        origin: npt.NDArray[np.float64],
        *,
        delta: bool,
    ) -> ExactPass:
        ws = self.ws
        state, inertia, moved = self._pass(
            centers, origin, accumulate=True, delta=delta
        )
        self._inertia = inertia
        T = self.plan.n_threads
        part_w = ws.weights.sum(axis=0) if T > 1 else ws.weights[0].copy()
        part = self.engine.finalize(
            ws.sums.sum(axis=0) if T > 1 else ws.sums[0].copy(), part_w, state
        )
        return ExactPass(part, part_w, inertia, moved, moved == 0, delta, state)

    def farthest(self, q: int) -> FarthestRows:
        dist = self.ws.dist
        n = dist.shape[0]
        cand = np.argpartition(-dist, q - 1)[:q] if q < n else np.arange(n)
        idx = np.sort(cand).astype(np.int64)
        sw = self.sample_weight
        return FarthestRows(
            index=idx,
            rows=np.asarray(self.X[idx], dtype=np.float64),
            labels=self.ws.labels[idx],
            dist=dist[idx],
            weights=None if sw is None else sw[idx],
        )

    def relabel(self, index: npt.NDArray[np.int64], labels: npt.NDArray[Any]) -> None:
        self.ws.labels[index] = labels
        self.ws.dist[index] = 0

    def end_iteration(self) -> None:
        self.ws.labels, self.ws.prev = self.ws.prev, self.ws.labels

    def final(
        self,
        centers: npt.NDArray[np.float64],
        origin: npt.NDArray[np.float64],
        *,
        last_pass: bool,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any], float]:
        if not last_pass:
            self.end_iteration()
            _, self._inertia, _ = self._pass(centers, origin, accumulate=False)
        return self.ws.labels, self.ws.dist, self._inertia

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"labels": self.ws.labels}, {}

    def restore(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.ws.prev[:] = arrays["labels"]


def lloyd(
    X: npt.NDArray[Any],
    centers_init: npt.NDArray[np.float64],
    *,
    engine: Engine,
    max_iter: int,
    tol: float,
    sample_weight: npt.NDArray[np.float64] | None = None,
    verbose: int = 0,
    desc: str = "k-means",
    leave: bool = True,
    checkpoint: Any = None,
) -> LloydResult:
    """:func:`exact_loop` over X in this process (:class:`LocalExactPasses`)."""
    passes = LocalExactPasses(X, engine, sample_weight, centers_init.shape[0])
    return exact_loop(
        passes,
        centers_init,
        engine=engine,
        max_iter=max_iter,
        tol=tol,
        verbose=verbose,
        desc=desc,
        leave=leave,
        checkpoint=checkpoint,
    )


def assign_chunked(
    X: npt.NDArray[Any],
    centers: npt.NDArray[np.float64],
    engine: Engine,
    *,
    pairwise: bool = False,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Nearest centres (or all distances when ``pairwise``) of X, chunk by chunk."""
    n, d = X.shape
    k = centers.shape[0]
    plan = plan_chunks(n, d, k, X.dtype, engine)
    wdtype = engine.working_dtype(X.dtype)
    state = engine.prepare(centers, X.dtype)
    labels = np.zeros(n, dtype=np.int64)
    out = np.zeros((n, k) if pairwise else n, dtype=wdtype)

    def work(t: int) -> None:
        # NaN/inf rows are reported below, once, as a clear error.
        with np.errstate(invalid="ignore", over="ignore"):
            for sl in plan.for_worker(t):
                if pairwise:
                    out[sl] = engine.pairwise(X[sl], state)
                else:
                    labels[sl], out[sl] = engine.assign(X[sl], state)

    if plan.n_threads == 1:
        work(0)
    else:
        with (
            threadpool_limits(1, user_api="blas"),
            ThreadPoolExecutor(plan.n_threads) as pool,
        ):
            list(pool.map(work, range(plan.n_threads)))
    # NaN or inf in X makes its distances non-finite: one cheap check here
    # instead of a separate pass over X.
    finite = np.isfinite(out) if not pairwise else np.isfinite(out).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DataValidationError(
            f"Input X contains NaN or infinity (first at row {row}). "
            "Remove or impute those rows."
        )
    return labels, out
