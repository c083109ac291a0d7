"""Large-k Lloyd: each point is compared with a few candidate centres, not all k.

Algorithm
---------
*Two-level index* (:class:`CoarseIndex`). The k centres are grouped by a
small k-means into ``g ~ sqrt(k)`` groups. A point goes to its nearest group
centre (an ``n x g`` GEMM) and is compared with the centres of that group's
``n_probe`` nearest groups: ``2 d (g + n_probe k / g)`` flops per point
instead of ``2 d k``. Points are processed group by group, so each group's
candidate centres are gathered once and scored with one GEMM per block of
points. This is the first assignment of a fit, an optional periodic refresh,
and the fast quantizer of :class:`~clusterlens.vocab.VisualVocabulary`.

*Candidate passes* (:func:`candidate_pass`). Every pass keeps each point's
``r`` best centres (``top``). The next pass scores the points of cluster c
against the union of the kept centres of all c's points (c's own included):
a point also sees the runners-up of its cluster-mates, ~20-40 centres per
cluster, and its own centre is always a candidate, so no point gets farther
from its centre and, with the mean update, the SSE never rises. Rows are
kept sorted by label in a private copy (uint8 stays uint8), so a cluster's
points are one contiguous block, and re-sorting after a pass is a nearly
sequential copy. Per-cluster sums are taken inside the pass from the block
that is already in cache (float64, sorted runs + ``np.add.reduceat``).

Cost per candidate pass: ``2 n d c`` flops with c the candidates per
cluster (~20-40) plus O(n d) bookkeeping; the index pass costs
``2 n d (g + n_probe k / g)``. See ``benchmarks/vocab.py`` for the measured
speed and the SSE against exact Lloyd from the same initial centres.

Precision: rows and centres are shifted by the mean of the initial centres
and scored in float32 as ``2 x.c - ||c||^2``, as the exact numpy engine does.

Kernels: with numba installed (the ``[numba]`` extra) the per-cluster loop of
a candidate pass, the per-row top-r selections of the index and the row
re-sort after a pass run as compiled kernels (:mod:`._kernels`): the numpy
versions spend most of their time in Python overhead around 16,384 tiny
GEMMs, not in flops. Both paths give the same labels and top-r tables (the
tests compare them); at 1 M x 16,384 a candidate pass went from ~2 s to
~0.6 s and the re-sort from ~1.3 s to ~0.2 s.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.cluster._backend import FarthestStored, LargeKPasses, LargePass

__all__ = [
    "CHUNK",
    "CoarseIndex",
    "LocalLargeKPasses",
    "Rows",
    "candidate_codes",
    "candidate_pass",
    "farthest_entries",
    "sorted_sums",
    "storage_dtype",
]

logger = logging.getLogger(__name__)

F32 = np.float32
_SUB = 512  # rows per scoring block (keeps the score matrix in cache)
CHUNK = 1 << 18  # rows per chunk when streaming X from its source


def storage_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Small integers stay as they are (uint8 SIFT), anything else float32."""
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2:
        return np.dtype(dtype)
    return np.dtype(F32)


class Rows:
    """Conversion of stored rows to shifted float32 blocks."""

    def __init__(self, shift: npt.NDArray[np.float64], store: np.dtype[Any]) -> None:
        self.shift = shift.astype(F32)
        self.store = store
        self.shifted = store == np.dtype(F32)  # float rows are stored shifted

    def to_store(self, block: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self.shifted:
            return np.subtract(block, self.shift, dtype=F32)
        return np.asarray(block, dtype=self.store)

    def f32(self, block: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if self.shifted:
            return np.asarray(block, dtype=F32)
        return np.subtract(block, self.shift, dtype=F32)


def _scores(Cs: npt.NDArray[np.float64]) -> tuple[npt.NDArray[F32], npt.NDArray[F32]]:
    """``2 c`` rows (k, d) and ``||c||^2`` (k,), float32, of shifted centres."""
    return (2.0 * Cs).astype(F32), np.einsum("ij,ij->i", Cs, Cs).astype(F32)


def _top_r(
    S: npt.NDArray[F32],
    cc: npt.NDArray[np.int64],
    r: int,
    out: npt.NDArray[Any],
    values: bool = False,
) -> npt.NDArray[F32]:
    """Write the ``r`` best candidates of each row of S (best first) into out.

    Returns the best score of each row, or with ``values`` the (m, r) scores
    of the r best (-inf where a row has fewer than r candidates). ``r``
    repeated argmax passes: cheaper than a partition for the short rows
    here. S is overwritten.
    """
    rows = np.arange(S.shape[0])
    j = S.argmax(1)
    best = S[rows, j].copy()
    out[:, 0] = cc[j]
    vals = None
    if values:
        vals = np.full((S.shape[0], r), -np.inf, F32)
        vals[:, 0] = best
    w = cc.size
    for p in range(1, r):
        if p >= w:  # fewer candidates than r: repeat the last
            out[:, p] = out[:, p - 1]
            continue
        S[rows, j] = -np.inf
        j = S.argmax(1)
        out[:, p] = cc[j]
        if vals is not None:
            vals[:, p] = S[rows, j]
    return best if vals is None else vals


def _add_sums(
    F: npt.NDArray[F32],
    lab: npt.NDArray[Any],
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
) -> None:
    """sums[l] += rows of F with label l (float64); counts[l] += their number."""
    o = np.argsort(lab, kind="stable")
    ls = lab[o]
    starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
    u = ls[starts]
    sums[u] += np.add.reduceat(F[o].astype(np.float64), starts, axis=0)
    counts[u] += np.diff(np.r_[starts, ls.size])


def _split(weights: npt.NDArray[np.int64], T: int) -> list[tuple[int, int]]:
    """T contiguous ranges of tasks with about equal total weight (rows)."""
    m = weights.size
    if T <= 1 or m <= 1:
        return [(0, m)]
    cum = np.cumsum(weights)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, T) / T, side="right")
    b = np.r_[0, np.clip(cuts, 0, m), m]
    return [(int(x), int(y)) for x, y in itertools.pairwise(b) if y > x]


def _in_threads(
    ranges: list[tuple[int, int]], work: Callable[[int, int, int], None]
) -> None:
    """``work(t, lo, hi)`` for each range, in threads with one BLAS thread each.

    Each range is a fixed, contiguous set of tasks and each thread writes its
    own accumulators, so results do not depend on scheduling.
    """
    if len(ranges) == 1:
        work(0, *ranges[0])
        return
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(len(ranges)) as ex:
        futures = [ex.submit(work, t, lo, hi) for t, (lo, hi) in enumerate(ranges)]
        for f in futures:
            f.result()


def _n_threads() -> int:
    from clusterlens._config import effective_n_threads

    return max(1, effective_n_threads())


class CoarseIndex:
    """Two-level search over centres: each point probes its nearest groups.

    The centres are grouped by a small k-means; a point is compared with the
    centres of its ``n_probe`` nearest groups (by group centre), like an
    inverted-file index whose database is the centres. The work is grouped
    by group, not by point: every group scores all the points that probe it
    with one GEMM against its centres, then each point keeps the best of its
    probes. ``n_groups=1`` is an exact search (one group holding every
    centre).

    Parameters
    ----------
    centers : ndarray of shape (k, d), float64, shifted by ``shift``
    shift : ndarray of shape (d,), optional
        What was subtracted from the centres (rows given to :meth:`search`
        are shifted the same way); zeros when None.
    n_groups : int, optional
        Groups of centres; ``round(sqrt(k))`` when None.
    n_probe : int, default=16
        Groups each point is compared with.
    seed : int, default=0
        Seed of the grouping k-means.
    """

    def __init__(
        self,
        centers: npt.NDArray[np.float64],
        *,
        shift: npt.NDArray[np.float64] | None = None,
        n_groups: int | None = None,
        n_probe: int = 16,
        seed: int = 0,
    ) -> None:
        from clusterlens.cluster._driver import assign_chunked
        from clusterlens.cluster._engines import get_engine

        k, d = centers.shape
        self.k = k
        self.shift = np.zeros(d) if shift is None else np.asarray(shift, np.float64)
        g = max(1, min(k, n_groups or round(math.sqrt(k))))
        self.n_groups = g
        self.n_probe = max(1, min(n_probe, g))
        if g == 1:
            glab = np.zeros(k, np.int64)
            G = centers.mean(axis=0, keepdims=True)
        else:
            G = _group_centres(centers.astype(F32), g, seed)
            glab, _ = assign_chunked(centers, G, get_engine("numpy"))
        self.G2, self.gn = _scores(G)
        self.G2T = np.ascontiguousarray(self.G2.T)
        C2, cn = _scores(centers)
        self.C2, self.cnf = C2, cn
        order = np.argsort(glab, kind="stable")
        starts = np.zeros(g + 1, np.int64)
        np.cumsum(np.bincount(glab, minlength=g), out=starts[1:])
        self.members = [order[starts[h] : starts[h + 1]] for h in range(g)]
        self.C2T = [np.ascontiguousarray(C2[m].T) for m in self.members]
        self.cn = [cn[m] for m in self.members]

    def probes(self, F: npt.NDArray[F32]) -> npt.NDArray[np.int64]:
        """(m, n_probe) nearest groups of shifted float32 rows (any order).

        Blocks of rows small enough for the score matrix to stay in cache,
        split over threads; the few best by repeated argmax.
        """
        m = F.shape[0]
        p, g = self.n_probe, self.n_groups
        if p >= g:
            return np.broadcast_to(np.arange(g), (m, g)).copy()
        out = np.empty((m, p), np.int64)
        bs = 2048
        cuts = np.r_[np.arange(0, m, bs), m]

        def work(t: int, lo: int, hi: int) -> None:
            for i in range(lo, hi):
                a, b = cuts[i], cuts[i + 1]
                S = F[a:b] @ self.G2T
                S -= self.gn
                rows = np.arange(b - a)
                for q in range(p):
                    j = S.argmax(1)
                    out[a:b, q] = j
                    S[rows, j] = -np.inf

        _in_threads(_split(np.diff(cuts), _n_threads()), work)
        return out

    def search_f32(
        self,
        F: npt.NDArray[F32],
        r: int,
        n_threads: int | None = None,
        extra: npt.NDArray[Any] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[F32]]:
        """(m, r) best centres (best first) and squared distances of rows F.

        ``extra`` (m, e) adds centres every row is also compared with (a
        refresh keeps each point's current candidates, so it never loses
        one).
        """
        m = F.shape[0]
        pr = self.probes(F)
        p = pr.shape[1]
        rr = r
        flat = pr.ravel()
        o = np.argsort(flat, kind="stable")  # (row, slot) pairs grouped by group
        bounds = np.searchsorted(flat[o], np.arange(self.n_groups + 1))
        vals = np.full((m * p, rr), -np.inf, F32)  # row (point, slot) pairs
        ids = np.zeros((m * p, rr), np.int64)
        sizes = np.diff(bounds) * np.array([c.size for c in self.cn])
        T = n_threads or _n_threads()
        ranges = _split(sizes.astype(np.int64), T)
        kernels = _kernels()

        def work(t: int, lo: int, hi: int) -> None:
            for h in range(lo, hi):
                a, b = int(bounds[h]), int(bounds[h + 1])
                if a == b or self.cn[h].size == 0:
                    continue
                cc = self.members[h]
                step = max(_SUB, (1 << 21) // (4 * cc.size))  # S of ~2 MB
                for s in range(a, b, step):
                    e = min(b, s + step)
                    pair = o[s:e]
                    S = F[pair // p] @ self.C2T[h]
                    if kernels is not None:
                        kernels.group_top_r(S, self.cn[h], cc, pair, vals, ids)
                        continue
                    S -= self.cn[h]
                    top = np.empty((e - s, rr), np.int64)
                    vals[pair] = _top_r(S, cc, rr, top, values=True)
                    ids[pair] = top

        _in_threads(ranges, work)
        vals = vals.reshape(m, p * rr)
        ids = ids.reshape(m, p * rr)
        if kernels is not None:
            ex = np.zeros((m, 0), np.int64) if extra is None else extra
            ex = np.ascontiguousarray(ex, np.int64)
            best = np.empty((m, r), np.int64)
            d2 = np.empty(m, F32)
            cuts = np.linspace(0, m, T + 1).astype(np.int64)
            _in_threads(
                [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a],
                lambda t, lo, hi: kernels.merge_probes(
                    vals, ids, F, ex, self.C2, self.cnf, best, d2, lo, hi
                ),
            )
            return best, d2
        if extra is not None:
            ex = np.asarray(extra, np.int64)
            ev = np.empty(ex.shape, F32)
            for a in range(0, m, 16384):  # small gathers of candidate rows
                sl = slice(a, a + 16384)
                ev[sl] = np.einsum("ijk,ik->ij", self.C2[ex[sl]], F[sl])
            ev -= self.cnf[ex]
            for j in range(ex.shape[1]):  # a centre found twice counts once
                ev[(ids == ex[:, j : j + 1]).any(axis=1), j] = -np.inf
            vals = np.concatenate([vals, ev], axis=1)
            ids = np.concatenate([ids, ex], axis=1)
        # best r over the row's probes (ties: lowest centre id, also at the
        # r-th place, so no argpartition: uint8 rows do tie exactly)
        if ids.shape[1] > 1:
            pick = np.lexsort((ids, -vals), axis=1)[:, :r]
            ids = np.take_along_axis(ids, pick, 1)
            vals = np.take_along_axis(vals, pick, 1)
        best_ids, best_vals = ids[:, :r], vals[:, :r]
        d2 = np.einsum("ij,ij->i", F, F) - best_vals[:, 0]
        np.maximum(d2, 0, out=d2)
        return best_ids, d2

    def search(
        self, X: npt.NDArray[Any], r: int = 1
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[F32]]:
        """(n, r) best candidate centres of rows X and squared distances.

        X is in the original (unshifted) space; it is read ``CHUNK`` rows at
        a time (a memmap is never copied whole).
        """
        n = X.shape[0]
        top = np.empty((n, r), np.int64)
        d2 = np.empty(n, F32)
        shift = self.shift.astype(F32)
        for a in range(0, n, CHUNK):
            F = np.subtract(np.asarray(X[a : a + CHUNK]), shift, dtype=F32)
            top[a : a + CHUNK], d2[a : a + CHUNK] = self.search_f32(F, r)
        return top, d2


def _group_centres(C: npt.NDArray[F32], g: int, seed: int) -> npt.NDArray[np.float64]:
    """Centres of ``g`` groups of the rows of C: a short exact k-means.

    What ``kmeans(C, g, init="random", n_init=1, max_iter=10,
    random_state=seed, engine="numpy", mode="exact")`` returns, run on the
    exact driver directly (the large-k mode is itself reached from
    :func:`~clusterlens.cluster.kmeans`).
    """
    from clusterlens.cluster._driver import data_stats, lloyd, warn_few_clusters
    from clusterlens.cluster._engines import get_engine
    from clusterlens.cluster._init import random_rows
    from clusterlens.utils.validation import check_random_state

    engine = get_engine("numpy")
    run_seed = check_random_state(seed).integers(0, 2**63 - 1, size=1)[0]
    centers0 = random_rows(C, g, random_state=int(run_seed))
    _, mean_var = data_stats(C)
    res = lloyd(C, centers0, engine=engine, max_iter=10, tol=1e-4 * mean_var)
    warn_few_clusters(res.labels, g)
    return res.centers.astype(engine.working_dtype(C.dtype)).astype(np.float64)


def _kernels() -> Any:
    """The numba kernels module, or None without numba (the numpy twins run)."""
    try:
        from clusterlens.cluster import _kernels as kernels
    except ImportError:
        return None
    return kernels


def candidate_pass(
    Xs: npt.NDArray[Any],
    rows: Rows,
    labels: npt.NDArray[Any],
    top: npt.NDArray[Any],
    Cs: npt.NDArray[np.float64],
    acc: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]],
    block: int = 256,
    codes: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[F32]]:
    """One assignment over rows sorted by label, against per-cluster candidates.

    Returns new labels, new top-r table and squared distances (same row
    order); adds the rows to the (sums, counts) of ``acc`` under their new
    labels, one pair per thread (blocks of clusters split evenly by rows).
    ``codes`` (sorted ``cluster * k + candidate``, see :func:`candidate_codes`)
    gives the candidates of every cluster; by default they are those of the
    rows given here (a sharded fit passes the union over all its shards).
    Runs the numba kernel when numba is installed, else the numpy loop; both
    give the same labels.
    """
    kernels = _kernels()
    if kernels is None:
        return _candidate_pass_numpy(Xs, rows, labels, top, Cs, acc, block, codes)
    C2, cn = _scores(Cs)
    k = Cs.shape[0]
    n, r = top.shape
    sizes = np.bincount(labels, minlength=k)
    starts = np.zeros(k + 1, np.int64)
    np.cumsum(sizes, out=starts[1:])
    if codes is None:
        cptr = cids = np.zeros(0, np.int64)
    else:
        cptr = np.searchsorted(codes, np.arange(k + 1, dtype=np.int64) * k)
        cids = codes - np.repeat(np.arange(k, dtype=np.int64) * k, np.diff(cptr))
    new = np.empty(n, np.int32)
    top_new = np.empty((n, r), np.int32)
    d2 = np.empty(n, F32)
    top = np.ascontiguousarray(top)

    def work(t: int, lo: int, hi: int) -> None:
        sums, counts = acc[t]
        seen = np.full(k, -1, np.int64)
        kernels.candidate_clusters(
            Xs, rows.shift, rows.shifted, starts, lo, hi, top, cptr, cids,
            C2, cn, new, top_new, d2, sums, counts, seen,
        )  # fmt: skip

    _in_threads(_split(sizes, len(acc)), work)
    return new, top_new, d2


def _candidate_pass_numpy(
    Xs: npt.NDArray[Any],
    rows: Rows,
    labels: npt.NDArray[Any],
    top: npt.NDArray[Any],
    Cs: npt.NDArray[np.float64],
    acc: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]],
    block: int = 256,
    codes: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[F32]]:
    """:func:`candidate_pass` in numpy: a Python loop over clusters."""
    C2, cn = _scores(Cs)
    k = Cs.shape[0]
    n, r = top.shape
    starts = np.zeros(k + 1, np.int64)
    np.cumsum(np.bincount(labels, minlength=k), out=starts[1:])
    new = np.empty(n, np.int32)
    top_new = np.empty((n, r), np.int32)
    d2 = np.empty(n, F32)
    blocks = np.arange(0, k, block)
    ranges = _split(np.diff(starts[np.r_[blocks, k]]), len(acc))

    def work(t: int, lo: int, hi: int) -> None:
        sums, counts = acc[t]
        for c0 in blocks[lo:hi]:
            c1 = min(k, c0 + block)
            a0, b0 = starts[c0], starts[c1]
            if a0 == b0:
                continue
            F = rows.f32(Xs[a0:b0])
            xx = np.einsum("ij,ij->i", F, F)
            # per cluster, the union of its rows' kept candidates and itself
            own = np.arange(c0, c1, dtype=np.int64)
            if codes is None:
                lab = labels[a0:b0].astype(np.int64)
                cb = np.unique(
                    np.concatenate(
                        [(lab[:, None] * k + top[a0:b0]).ravel(), own * k + own]
                    )
                )
            else:
                cb = codes[
                    np.searchsorted(codes, c0 * k) : np.searchsorted(codes, c1 * k)
                ]
            cut = np.searchsorted(cb, np.arange(c0, c1 + 1, dtype=np.int64) * k)
            for q in np.flatnonzero(starts[c0 + 1 : c1 + 1] > starts[c0:c1]):
                a, b = starts[c0 + q] - a0, starts[c0 + q + 1] - a0
                cc = cb[cut[q] : cut[q + 1]] - (c0 + q) * k
                S = F[a:b] @ C2[cc].T
                S -= cn[cc]
                best = _top_r(S, cc, r, top_new[a0 + a : a0 + b])
                d2[a0 + a : a0 + b] = xx[a:b] - best
            new[a0:b0] = top_new[a0:b0, 0]
            _add_sums(F, new[a0:b0], sums, counts)

    _in_threads(ranges, work)
    np.maximum(d2, 0, out=d2)
    return new, top_new, d2


def candidate_codes(
    labels: npt.NDArray[Any], top: npt.NDArray[Any], k: int
) -> npt.NDArray[np.int64]:
    """Sorted unique ``cluster * k + candidate`` of rows (and every cluster itself).

    The candidates a :func:`candidate_pass` scores for each cluster; the union
    of the codes of several shards is the codes of their rows together.
    """
    own = np.arange(k, dtype=np.int64)
    return np.unique(
        np.concatenate(
            [(labels.astype(np.int64)[:, None] * k + top).ravel(), own * k + own]
        )
    )


def _index_pass(
    X: npt.NDArray[Any],
    rows: Rows,
    index: CoarseIndex,
    r: int,
    stored: bool,
    keep: npt.NDArray[Any] | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[F32]]:
    """Labels, top-r table and squared distances of every row of X (its order).

    X is the input (``stored=False``) or rows already in storage form;
    ``keep`` (n, r) are centres each row also keeps competing with.
    """
    n = X.shape[0]
    conv = (lambda b: b) if stored else rows.to_store
    top = np.empty((n, r), np.int32)
    d2 = np.empty(n, F32)
    for a in range(0, n, CHUNK):
        F = rows.f32(conv(np.asarray(X[a : a + CHUNK])))
        ex = None if keep is None else keep[a : a + CHUNK]
        top[a : a + CHUNK], d2[a : a + CHUNK] = index.search_f32(F, r, extra=ex)
    return top[:, 0].copy(), top, d2


def sorted_sums(
    Xs: npt.NDArray[Any],
    rows: Rows,
    labels: npt.NDArray[Any],
    acc: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]],
) -> None:
    """Per-cluster sums of stored rows sorted by label, in threads."""
    n = Xs.shape[0]
    cuts = np.arange(0, n + _SUB * 16, _SUB * 16).clip(max=n)
    cuts = np.unique(cuts)
    ranges = _split(np.diff(cuts), len(acc))

    def work(t: int, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            a, b = cuts[i], cuts[i + 1]
            _add_sums(rows.f32(Xs[a:b]), labels[a:b], *acc[t])

    _in_threads(ranges, work)


def _take_rows(
    src: npt.NDArray[Any], idx: npt.NDArray[np.int64], out: npt.NDArray[Any] | None
) -> npt.NDArray[Any]:
    """``src[idx]``: with numba, written into ``out`` (reused when it fits) in threads.

    The gather after a pass is random access for every row that moved, so it
    is latency-bound and gains from a second thread. Without numba it is a
    plain ``src[idx]`` (a new array; ``out`` is not used).
    """
    kernels = _kernels()
    if kernels is None:
        return src[idx]
    if out is None or out.shape != src.shape or out.dtype != src.dtype:
        out = np.empty_like(src)
    bounds = np.linspace(0, idx.size, _n_threads() + 1).astype(np.int64)
    ranges = [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
    _in_threads(ranges, lambda t, lo, hi: kernels.take_rows(src, idx, out, lo, hi))
    return out


def _release_pages(X: npt.NDArray[Any]) -> None:
    """Let the OS drop a memory map's cached pages from this process's RSS."""
    import mmap

    mm = getattr(X, "_mmap", None)
    if mm is None:
        base = getattr(X, "base", None)
        mm = base if isinstance(base, mmap.mmap) else getattr(base, "_mmap", None)
    if isinstance(mm, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # not supported here: only memory is at stake
            pass


def farthest_entries(d2: npt.NDArray[F32], m: int) -> npt.NDArray[np.int64]:
    """Indices of the m largest entries of d2, largest first (ties: lowest index)."""
    m = min(m, d2.size)
    part = np.argpartition(-d2, m - 1)[:m] if m < d2.size else np.arange(d2.size)
    return part[np.lexsort((part, -d2[part]))]


class LocalLargeKPasses(LargeKPasses):
    """Large-k passes over X in this process.

    The first pass (through the index) copies X into ``Xs``, its rows sorted
    by label in storage form (uint8 stays uint8, floats are shifted float32);
    after every pass the rows are re-sorted (a nearly sequential copy), so a
    cluster's rows are one block. Per-cluster sums are taken in threads, one
    accumulator each, reduced in thread order.
    """

    def __init__(self, X: npt.NDArray[Any], shift: npt.NDArray[np.float64]) -> None:
        self.X = X
        self.n, self.d = X.shape
        self.shift = shift
        self.rows = Rows(shift, storage_dtype(X.dtype))
        self.T = _n_threads()
        self.Xs: Any = None
        self.perm: Any = None
        self.labels: Any = None  # of the sorted rows
        self.top: Any = None
        self.spare: Any = None  # the second buffer re-sorted rows are written into
        # the last pass: labels, top-r and distances of ``Xs``' rows
        self.new: Any = None
        self.d2: Any = None

    @property
    def assigned(self) -> bool:
        return self.Xs is not None

    def _acc(self, k: int) -> list[tuple[Any, Any]]:
        return [(np.zeros((k, self.d)), np.zeros(k, np.int64)) for _ in range(self.T)]

    def _summary(self, acc: list[tuple[Any, Any]], moved: int) -> LargePass:
        sums, counts = acc[0]
        for s_, c_ in acc[1:]:
            sums += s_
            counts += c_
        return LargePass(sums, counts, float(self.d2.sum(dtype=np.float64)), moved)

    def index_pass(self, index: Any, r: int) -> LargePass:
        X, rows, n = self.X, self.rows, self.n
        first = self.Xs is None
        acc = self._acc(index.k)
        new, top, d2 = _index_pass(
            X if first else self.Xs,
            rows,
            index,
            r,
            stored=not first,
            keep=None if first else self.top,
        )
        o = np.argsort(new, kind="stable")
        if first:
            self.perm, moved = o, n
            Xs = np.empty((n, self.d), rows.store)
            for a in range(0, n, CHUNK):  # gather a chunk at a time
                Xs[a : a + CHUNK] = rows.to_store(
                    np.asarray(X[np.sort(o[a : a + CHUNK])])
                )[np.argsort(np.argsort(o[a : a + CHUNK]))]
            self.Xs = Xs
            _release_pages(X)  # the sorted copy is all we read now
        else:
            moved = int(np.count_nonzero(self.labels != new))
            self.Xs, self.spare = _take_rows(self.Xs, o, self.spare), self.Xs
            self.perm = self.perm[o]
        self.new, self.top, self.d2 = new[o], top[o], d2[o]
        sorted_sums(self.Xs, rows, self.new, acc)
        return self._summary(acc, moved)

    def candidate_pass(self, Cs: npt.NDArray[np.float64]) -> LargePass:
        acc = self._acc(Cs.shape[0])
        self.new, self.top, self.d2 = candidate_pass(
            self.Xs, self.rows, self.labels, self.top, Cs, acc
        )
        return self._summary(acc, int(np.count_nonzero(self.new != self.labels)))

    def farthest(self, m: int) -> FarthestStored:
        far = farthest_entries(self.d2, m)
        return FarthestStored(
            key=far,
            dist=self.d2[far],
            rows=self.rows.f32(self.Xs[far]).astype(np.float64),
            where=far,
        )

    def seed(self, where: Any, clusters: npt.NDArray[np.intp]) -> None:
        self.top[where, -1] = clusters

    def end_iteration(self) -> None:
        # keep rows sorted by label (a nearly sequential copy)
        o = np.argsort(self.new, kind="stable")
        self.Xs, self.spare = _take_rows(self.Xs, o, self.spare), self.Xs
        self.perm, self.labels = self.perm[o], self.new[o]
        self.top, self.d2 = self.top[o], self.d2[o]

    def final(
        self, Cs: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], float]:
        acc = self._acc(Cs.shape[0])
        final, _, d2 = candidate_pass(
            self.Xs, self.rows, self.labels, self.top, Cs, acc
        )
        labels = np.empty(self.n, np.int64)
        labels[self.perm] = final
        dist = np.empty(self.n, F32)
        dist[self.perm] = d2
        return labels, dist, float(d2.sum(dtype=np.float64))

    def checkpoint(
        self, directory: Path, iteration: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"labels": self.labels, "top": self.top, "perm": self.perm}, {}

    def restore(
        self, directory: Path, arrays: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        X, rows = self.X, self.rows
        perm = arrays["perm"]
        Xs = np.empty((self.n, self.d), rows.store)
        for a in range(0, self.n, CHUNK):
            Xs[a : a + CHUNK] = rows.to_store(np.asarray(X[perm[a : a + CHUNK]]))
        _release_pages(X)
        self.Xs, self.perm = Xs, perm
        self.labels, self.top = arrays["labels"], arrays["top"]
