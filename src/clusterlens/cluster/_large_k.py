# mypy: disable-error-code="assignment,attr-defined,arg-type,index"
"""EXPERIMENTAL prototype: large-k Lloyd over a neighbour graph of the centres.

Private, not exported, not wired into the driver. See
``benchmarks/large_k_prototype.py`` for the measurements that guide the
integration into the engine protocol.

Algorithm ("neighbour-graph Lloyd")
-----------------------------------
After an initial assignment (exact flat pass, or a two-level one), every
iteration

1. builds the graph of each centre's ``m`` nearest centres (exact: faiss
   ``IndexFlatL2`` search of C against C, a chunked GEMM; or HNSW), and
   optionally keeps it for ``graph_every`` iterations;
2. re-assigns each point among the candidates of its current centre only
   (that centre and its ``m`` neighbours): points are sorted by label once,
   and each cluster's block of rows gets one small GEMM
   ``X_c @ C[cand(c)].T`` and an argmax of ``2 x.c - ||c||^2``, with points
   and centres shifted by the centres' mean (float32 precision), exactly as
   the exact numpy engine scores;
3. sums points per cluster with a sparse one-hot product
   (:func:`segment_sums`) and takes the means (empty clusters keep their
   centre).

Per iteration that is ``2 n (m + 1) d`` flops for the assignment instead of
``2 n k d``, plus ``2 k^2 d`` for an exact graph (or HNSW).

A point's new centre is never farther than its old one (its own centre is
always a candidate), so with the mean update the SSE never rises.

Per-point candidates (the default, ``top_r=3``)
----------------------------------------------
Every pass also keeps each point's ``top_r`` best centres (the first pass
exactly, faiss flat k-NN). A later pass scores the points of cluster c
against the union of their kept centres (and c): the runners-up of its
cluster-mates too, ~20 centres per cluster (:func:`assign_topr`). No centre
graph is needed (``m=0``). Rows are kept sorted by label between iterations,
so each re-sort is a nearly sequential copy.

Status (measured, issue #4; ``benchmarks/large_k_prototype.py`` defaults,
n=200k, d=128, k=4,096, 8 iterations from the same random init, 2 cores):
the default (``top_r=3``, one exact first pass, no graph) runs 0.19 s per
iteration against 1.87 s for faiss flat (9.7x; 9.0x on the mean of
iterations 2-8; noisy machine: other runs 4-8x before the label-sorted rows)
and the whole fit in 3.9 s against 16.6 s; SSE +0.57 % above faiss's exact
Lloyd (+0.46 % above clusterlens exact), 2.7 % of points off their exact
nearest centre. ``top_r=4``: +0.43 %, 7.9x. A second exact iteration
(``exact_iters=2``) or an exact refresh every 3-4 iterations
(``refresh_every``) halves the gap (+0.19-0.27 %) but costs 2-3 s per
exact top-r pass: 0.52 s (3.6x) amortised over iterations 2-8 for
``refresh_every=4``, 0.88 s (2.1x) for 3, 0.53 s for ``exact_iters=2``;
below the 5x target. The centre-graph-only
variant (``top_r=0, m=32``) was 5-7x but +3-7 % (20 % of points off):
centre-to-centre neighbours are a poor proxy for a point's neighbours on
isotropic data. The first (exact top-r) pass costs 2.4-3 s, more than a faiss
iteration (faiss k-NN with k=3 vs k=1); ``first="two_level"`` (needs
``m > 0`` here) would be cheaper but was not measured with ``top_r``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.cluster._engines._base import segment_sums

__all__ = [
    "assign_candidates",
    "centroid_graph",
    "exact_assign",
    "large_k_kmeans",
    "two_level_assign",
]

F32 = np.float32


def _scores_matrix(C: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Rows ``2 c`` (k, d) and ``||c||^2`` (k,) in float32, C already shifted."""
    C64 = np.asarray(C, dtype=np.float64)
    return (2.0 * C64).astype(F32), np.einsum("ij,ij->i", C64, C64).astype(F32)


def exact_assign(
    Xs: npt.NDArray[np.float32],
    Cs: npt.NDArray[Any],
    chunk: int = 8192,
    second: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Exact nearest centre of shifted rows (chunked GEMM + argmax).

    If ``second`` is given it receives each row's second-nearest centre.
    """
    C2, cn = _scores_matrix(Cs)
    C2T = np.ascontiguousarray(C2.T)
    n = Xs.shape[0]
    labels = np.empty(n, np.int64)
    best = np.empty(n, F32)
    for a in range(0, n, chunk):
        S = Xs[a : a + chunk] @ C2T
        S -= cn
        j = S.argmax(1)
        labels[a : a + chunk] = j
        best[a : a + chunk] = S[np.arange(S.shape[0]), j]
        if second is not None and S.shape[1] > 1:
            S[np.arange(S.shape[0]), j] = -np.inf
            second[a : a + chunk] = S.argmax(1)
    return labels, best


def centroid_graph(
    Cs: npt.NDArray[Any], m: int, method: str = "flat", hnsw_m: int = 32
) -> npt.NDArray[np.int64]:
    """(k, m + 1) candidate lists: each centre first, then its m nearest centres."""
    import faiss

    k, d = Cs.shape
    m = min(m, k - 1)
    C = np.ascontiguousarray(Cs, dtype=F32)
    if method == "flat":
        index = faiss.IndexFlatL2(d)
    elif method == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m)
        index.hnsw.efConstruction = 40
        index.hnsw.efSearch = max(2 * (m + 1), 32)
    else:
        raise ValueError(method)
    index.add(C)
    _, nbr = index.search(C, m + 1)
    nbr = nbr.astype(np.int64)
    # The centre itself first, then the m nearest others (self moved out of
    # the search results wherever ties or HNSW put it; -1 misses -> self).
    self_ = np.arange(k)[:, None]
    pos = np.where(nbr == self_, m + 1, np.arange(m + 1)[None, :])
    others = np.take_along_axis(nbr, np.argsort(pos, axis=1, kind="stable"), 1)[:, :m]
    others = np.where(others < 0, self_, others)
    out = np.empty((k, m + 1), np.int64)
    out[:, 0] = self_[:, 0]
    out[:, 1:] = others
    return out


def data_neighbours(
    labels: npt.NDArray[np.int64], second: npt.NDArray[np.int64], k: int, r: int
) -> npt.NDArray[np.int64]:
    """(k, r): per cluster, the r centres most often second-nearest to its points.

    Padded with the cluster itself. In high dimension centre-to-centre
    distances concentrate, so the centres nearest to a centre are a poor
    guess of where its points want to go; the points' own runners-up are not.
    """
    code = labels * k + second
    u, cnt = np.unique(code, return_counts=True)
    lab, sec = u // k, u % k
    o = np.lexsort((-cnt, lab))
    lab, sec = lab[o], sec[o]
    first = np.searchsorted(lab, lab, side="left")
    rank = np.arange(lab.size) - first
    keep = rank < r
    out = np.repeat(np.arange(k)[:, None], r, axis=1)
    out[lab[keep], rank[keep]] = sec[keep]
    return out


def _merge(
    cand: npt.NDArray[np.int64], extra: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Candidates ``[cand | extra]`` (duplicates are harmless: same score)."""
    return np.concatenate([cand, extra], axis=1)


def assign_candidates(
    Xs: npt.NDArray[np.float32],
    Cs: npt.NDArray[Any],
    labels: npt.NDArray[np.int64],
    cand: npt.NDArray[np.int64],
    second: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """New labels and best scores, searching only ``cand[labels[i]]`` for row i.

    If ``second`` is given it receives each row's second-best candidate.

    Rows are grouped by current label (one argsort) and gathered in that
    order; one GEMM per cluster against its candidates' rows.
    """
    C2, cn = _scores_matrix(Cs)
    k = Cs.shape[0]
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=k)
    starts = np.zeros(k + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    Xp = Xs[order]  # rows sorted by current label
    new_p = np.empty(labels.shape[0], np.int64)
    best_p = np.empty(labels.shape[0], F32)
    sec_p = None if second is None else np.empty(labels.shape[0], np.int64)
    for c in np.flatnonzero(counts):
        a, b = starts[c], starts[c + 1]
        cc = cand[c]
        S = Xp[a:b] @ C2[cc].T
        S -= cn[cc]
        j = S.argmax(1)
        new_p[a:b] = cc[j]
        best_p[a:b] = S[np.arange(b - a), j]
        if sec_p is not None:
            S[cc[None, :] == cc[j][:, None]] = -np.inf  # duplicates of the best too
            sec_p[a:b] = cc[S.argmax(1)]
    new = np.empty_like(new_p)
    best = np.empty_like(best_p)
    new[order] = new_p
    best[order] = best_p
    if second is not None:
        second[order] = sec_p
    return new, best


def exact_topr(
    Xs: npt.NDArray[np.float32], Cs: npt.NDArray[Any], r: int
) -> npt.NDArray[np.int64]:
    """(n, r) exact nearest centres of shifted rows, nearest first (faiss flat).

    Column 0 is the nearest centre (ties aside, as :func:`exact_assign`).
    """
    import faiss

    index = faiss.IndexFlatL2(Xs.shape[1])
    index.add(np.ascontiguousarray(Cs, dtype=F32))
    _, top = index.search(np.ascontiguousarray(Xs, dtype=F32), min(r, Cs.shape[0]))
    top = top.astype(np.int64)
    if top.shape[1] < r:
        top = np.concatenate([top, np.repeat(top[:, :1], r - top.shape[1], 1)], 1)
    return np.where(top < 0, top[:, :1], top)


def assign_topr(
    Xs: npt.NDArray[np.float32],
    Cs: npt.NDArray[Any],
    labels: npt.NDArray[np.int64],
    top: npt.NDArray[np.int64],
    cand: npt.NDArray[np.int64] | None = None,
    group: int = 1,
    block: int = 256,
    threads: int = 1,
    presorted: bool = False,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per-point candidates, grouped by current label; returns (labels, top).

    Clusters are taken ``group`` at a time (consecutive ids). The candidates
    of a group's points are the union of their own top-r labels from the last
    pass (``top``, (n, r)), of ``cand[c]`` for each cluster c of the group (c
    and its graph neighbours), and of the group's clusters themselves, so
    every point also sees the runners-up of its cluster-mates (and of the
    group's other points). The returned ``top`` holds each row's r best
    candidates (the best first).

    Unions are built per ``block`` clusters in a boolean mask; then one small
    GEMM per group against its union and r argmax passes (cheaper than an
    argpartition or argsort of the short rows). At n=200k, k=4,096 (~50
    points, ~20 candidates per cluster) ``group`` > 1 (more flops, fewer
    Python calls) and ``threads`` > 1 (blocks in a thread pool) measured no
    faster: 0.25 s for group 1, 0.29-0.57 s for 2-16, 0.26-0.28 s with 2
    threads; keeping the rows label-sorted (``presorted``) took it to 0.15 s.

    ``presorted=True`` says the rows are already sorted by ``labels`` (no
    gather): :func:`large_k_kmeans` keeps its rows in label order, which
    makes each iteration's re-sort a nearly sequential copy.
    """
    C2, cn = _scores_matrix(Cs)
    k = Cs.shape[0]
    n, r = top.shape
    g = max(1, int(group))
    block = max(g, block - block % g)
    counts = np.bincount(labels, minlength=k)
    starts = np.zeros(k + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    if presorted:
        order = None
        Xp, Tp, Lp = Xs, top, labels
    else:
        order = np.argsort(labels, kind="stable")
        Xp = Xs[order]  # rows sorted by current label
        Tp = top[order]
        Lp = labels[order]
    new_p = np.empty(n, np.int64)
    top_p = np.empty((n, r), np.int64)

    def run_block(c0: int) -> None:
        c1 = min(k, c0 + block)
        a0, b0 = starts[c0], starts[c1]
        own = np.arange(c0, c1)
        mask = np.zeros(((c1 - c0 + g - 1) // g, k), bool)
        mask[((Lp[a0:b0] - c0) // g)[:, None], Tp[a0:b0]] = True
        mask[(own - c0) // g, own] = True
        if cand is not None:
            mask[((own - c0) // g)[:, None], cand[c0:c1]] = True
        for q in range(mask.shape[0]):
            a, b = starts[c0 + q * g], starts[min(c1, c0 + (q + 1) * g)]
            if a == b:
                continue
            cc = np.flatnonzero(mask[q])
            S = Xp[a:b] @ C2[cc].T
            S -= cn[cc]
            j = S.argmax(1)
            new_p[a:b] = cc[j]
            w = cc.size
            if w <= r:  # fewer candidates than r: repeat
                top_p[a:b] = cc[np.minimum(np.arange(r), w - 1)]
                continue
            # the r best by repeated argmax (cheaper than a partition here)
            t = top_p[a:b]
            t[:, 0] = cc[j]
            rows = np.arange(b - a)
            for p_ in range(1, r):
                S[rows, j] = -np.inf
                j = S.argmax(1)
                t[:, p_] = cc[j]

    blocks = range(0, k, block)
    if threads > 1 and k > block:
        # numpy's GEMM / argmax release the GIL: blocks run side by side
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(run_block, blocks))
    else:
        for c0 in blocks:
            run_block(c0)
    if order is None:
        return new_p, top_p
    new = np.empty(n, np.int64)
    new[order] = new_p
    top_out = np.empty((n, r), np.int64)
    top_out[order] = top_p
    return new, top_out


def two_level_assign(
    Xs: npt.NDArray[np.float32],
    Cs: npt.NDArray[Any],
    n_groups: int | None = None,
    n_probe: int = 4,
    seed: int = 0,
    group_iter: int = 10,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Approximate nearest centre: centres k-means'd into ~sqrt(k) groups.

    Each point goes to its nearest group centre (an n x g GEMM); the points
    of group g are compared with the centres of g and of its ``n_probe - 1``
    nearest groups. Cost ``2 n d (g + n_probe k / g)`` instead of ``2 n d k``.
    """
    k = Cs.shape[0]
    g = n_groups or max(1, round(np.sqrt(k)))
    rng = np.random.default_rng(seed)
    C = np.asarray(Cs, F32)
    G = C[rng.choice(k, g, replace=False)].copy()
    for _ in range(group_iter):  # plain Lloyd on the k centres
        glab, _ = exact_assign(C, G)
        cnt = np.bincount(glab, minlength=g)
        sums = np.zeros((g, C.shape[1]))
        np.add.at(sums, glab, C)
        ok = cnt > 0
        G[ok] = (sums[ok] / cnt[ok, None]).astype(F32)
    glab, _ = exact_assign(C, G)
    members = [np.flatnonzero(glab == j) for j in range(g)]
    gcand = (
        centroid_graph(G, min(n_probe - 1, g - 1))
        if g > 1
        else np.zeros((1, 1), np.int64)
    )
    pg, _ = exact_assign(Xs, G)
    C2, cn = _scores_matrix(C)
    order = np.argsort(pg, kind="stable")
    counts = np.bincount(pg, minlength=g)
    starts = np.zeros(g + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    Xp = Xs[order]
    lab_p = np.empty(Xs.shape[0], np.int64)
    best_p = np.empty(Xs.shape[0], F32)
    for j in np.flatnonzero(counts):
        cc = np.concatenate([members[q] for q in gcand[j]])
        a, b = starts[j], starts[j + 1]
        for a2 in range(a, b, 8192):
            b2 = min(b, a2 + 8192)
            S = Xp[a2:b2] @ C2[cc].T
            S -= cn[cc]
            t = S.argmax(1)
            lab_p[a2:b2] = cc[t]
            best_p[a2:b2] = S[np.arange(b2 - a2), t]
    lab = np.empty_like(lab_p)
    best = np.empty_like(best_p)
    lab[order] = lab_p
    best[order] = best_p
    return lab, best


def large_k_kmeans(
    X: npt.NDArray[Any],
    init: npt.NDArray[Any],
    n_iter: int = 8,
    m: int = 0,
    first: str = "exact",
    graph: str = "flat",
    graph_every: int = 1,
    n_probe: int = 4,
    seed: int = 0,
    r: int = 0,
    top_r: int = 3,
    exact_iters: int = 1,
    refresh_every: int = 0,
) -> dict[str, Any]:
    """Neighbour-graph Lloyd from centres ``init`` for ``n_iter`` iterations.

    Returns a dict with ``centers`` (float64), ``labels`` (the last
    assignment, made against the centres before the last update), and
    ``history`` (per iteration: seconds, graph/assign/update seconds, moved).
    The first iteration's assignment is ``first`` ("exact" or "two_level").
    ``r > 0`` adds to each cluster's candidates the r centres most often
    second-best for its points in the previous pass (:func:`data_neighbours`).

    ``top_r > 0`` (the default, 3) switches to per-point candidates
    (:func:`assign_topr`): every pass keeps each point's ``top_r`` best
    centres, exact passes (:func:`exact_topr`) included, and a cluster's
    points are scored against the union of their kept centres, plus the
    ``m`` graph neighbours of the cluster when ``m > 0`` (default 0: no
    graph). The first ``exact_iters`` iterations, and every
    ``refresh_every``-th one if that is > 0, are exact passes. ``r``,
    ``graph_every`` and ``n_probe`` apply to the other modes; with
    ``top_r > 0`` and ``first="two_level"`` the graph is needed (``m > 0``)
    since no runners-up are known after the first pass.
    """
    if top_r > 0 and first == "two_level" and m <= 0:
        raise ValueError("top_r > 0 with first='two_level' needs m > 0")
    X = np.asarray(X)
    n, d = X.shape
    C = np.asarray(init, np.float64).copy()
    k = C.shape[0]
    shift = C.mean(axis=0)
    Xs = np.subtract(X, shift.astype(F32), dtype=F32)
    Cs = C - shift
    history: list[dict[str, Any]] = []
    labels = None
    cand = None
    top = None
    perm = np.arange(n)
    sec = np.zeros(n, np.int64) if r > 0 else None
    have_sec = False
    for it in range(n_iter):
        t0 = time.perf_counter()
        tg = 0.0
        exact_now = (
            labels is None
            or it < exact_iters
            or (refresh_every > 0 and it % refresh_every == 0)
        )
        if top_r > 0 and exact_now and (labels is not None or first == "exact"):
            top = exact_topr(Xs, Cs, top_r)
            new = top[:, 0].copy()
            moved = n if labels is None else int(np.count_nonzero(new != labels))
        elif top_r > 0 and labels is not None:
            if m > 0 and (cand is None or it % graph_every == 0):
                tg0 = time.perf_counter()
                cand = centroid_graph(Cs, m, graph)
                tg = time.perf_counter() - tg0
            new, top = assign_topr(
                Xs, Cs, labels, top, cand if m > 0 else None, presorted=True
            )
            moved = int(np.count_nonzero(new != labels))
        elif labels is None:
            if first == "exact":
                new, _ = exact_assign(Xs, Cs, second=sec)
            elif first == "two_level":
                new, _ = two_level_assign(Xs, Cs, n_probe=n_probe, seed=seed)
            else:
                raise ValueError(first)
            moved = n
            have_sec = first == "exact"
            if top_r > 0:
                top = np.repeat(new[:, None], top_r, axis=1)
        else:
            if cand is None or it % graph_every == 0:
                tg0 = time.perf_counter()
                cand = centroid_graph(Cs, m, graph)
                tg = time.perf_counter() - tg0
            cur = cand
            if r > 0 and have_sec:
                tg0 = time.perf_counter()
                cur = _merge(cand, data_neighbours(labels, sec, k, r))
                tg += time.perf_counter() - tg0
            new, _ = assign_candidates(Xs, Cs, labels, cur, second=sec)
            moved = int(np.count_nonzero(new != labels))
            have_sec = r > 0
        t1 = time.perf_counter()
        sums = np.zeros((k, d))
        weights = np.zeros(k)
        segment_sums(Xs, new, None, sums, weights)
        ok = weights > 0
        Cs[ok] = sums[ok] / weights[ok, None]
        labels = new
        if top_r > 0:
            # keep the rows in label order (nearly sequential copies from
            # the second iteration on); ``perm`` maps them back
            o = np.argsort(labels, kind="stable")
            Xs = Xs[o]
            perm = perm[o]
            labels = labels[o]
            top = top[o]
        t2 = time.perf_counter()
        history.append(
            {
                "iteration": it,
                "seconds": t2 - t0,
                "graph_s": tg,
                "assign_s": t1 - t0 - tg,
                "update_s": t2 - t1,
                "moved": moved,
                "empty": int(k - ok.sum()),
            }
        )
    if top_r > 0 and labels is not None:
        back = np.empty_like(perm)
        back[perm] = np.arange(n)
        labels, top = labels[back], top[back]
    return {
        "centers": Cs + shift,
        "labels": labels,
        "second": sec,
        "top": top,
        "history": history,
        "shift": shift,
    }
