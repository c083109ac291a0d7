"""numba kernels of the large-k mode (private; callers validate, nothing here does).

Imported only when numba is installed (the ``[numba]`` extra); every kernel
has a numpy twin in :mod:`clusterlens.cluster._large` that gives the same
labels, and the tests compare the two.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# Reassociation lets LLVM vectorise the float reductions; no nnan/ninf flags:
# the top-r tables start at -inf.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@nb.njit(nogil=True, cache=True, fastmath=_FAST)
def candidate_clusters(
    Xs,
    shift,
    shifted,
    starts,
    c0,
    c1,
    top,
    cptr,
    cids,
    C2,
    cn,
    new,
    top_new,
    d2,
    sums,
    counts,
    seen,
):  # pragma: no cover - compiled; the numpy twin is covered, and so is this output
    """One candidate pass over clusters ``c0..c1`` of rows sorted by label.

    Rows ``starts[c]:starts[c+1]`` of ``Xs`` (uint8, or float32 already
    shifted when ``shifted``) have label c. They are scored against c's
    candidates as ``2 x.c - ||c||^2`` (``C2`` holds ``2 c``, float32):
    from ``cids[cptr[c]:cptr[c+1]]`` (sorted ids) when ``cptr`` has k + 1
    entries, else the sorted union of the rows' ``top`` entries and c itself
    (``seen`` is a k-long scratch array, filled with -1). Writes each row's
    ``r`` best candidates (best first, ties to the lower id; the last one
    repeated when there are fewer than r), its new label, its squared
    distance (clamped at 0), and adds the row (float64) to ``sums``/``counts``
    under its new label.
    """
    d = Xs.shape[1]
    r = top.shape[1]
    k = C2.shape[0]
    given = cptr.shape[0] == k + 1
    buf = np.empty(0, np.int64)
    bv = np.empty(r, np.float32)
    bi = np.empty(r, np.int64)
    for c in range(c0, c1):
        a = starts[c]
        b = starts[c + 1]
        m = b - a
        if m == 0:
            continue
        # the cluster's candidates, sorted
        if given:
            cand = cids[cptr[c] : cptr[c + 1]]
        else:
            if buf.shape[0] < m * r + 1:
                buf = np.empty(2 * (m * r + 1), np.int64)
            w = 0
            seen[c] = c
            buf[w] = c
            w += 1
            for i in range(a, b):
                for q in range(r):
                    j = top[i, q]
                    if seen[j] != c:
                        seen[j] = c
                        buf[w] = j
                        w += 1
            cand = np.sort(buf[:w])
            for q in range(w):  # reset the scratch marks
                seen[cand[q]] = -1
        W = cand.shape[0]
        F = np.empty((m, d), np.float32)
        for i in range(m):
            for j in range(d):
                if shifted:
                    F[i, j] = Xs[a + i, j]
                else:
                    F[i, j] = np.float32(Xs[a + i, j]) - shift[j]
        Cb = np.empty((W, d), np.float32)
        for q in range(W):
            Cb[q, :] = C2[cand[q], :]
        S = np.dot(F, Cb.T)
        for i in range(m):
            for q in range(r):
                bv[q] = -np.inf
                bi[q] = -1
            for q in range(W):
                v = S[i, q] - cn[cand[q]]
                if v > bv[r - 1]:
                    p = r - 1
                    while p > 0 and bv[p - 1] < v:
                        bv[p] = bv[p - 1]
                        bi[p] = bi[p - 1]
                        p -= 1
                    bv[p] = v
                    bi[p] = cand[q]
            for q in range(W, r):
                bi[q] = bi[q - 1]
            row = a + i
            lab = bi[0]
            xx = np.float32(0.0)
            for j in range(d):
                xx += F[i, j] * F[i, j]
            e = xx - bv[0]
            d2[row] = e if e > 0 else np.float32(0.0)
            new[row] = lab
            for q in range(r):
                top_new[row, q] = bi[q]
            counts[lab] += 1
            for j in range(d):
                sums[lab, j] += F[i, j]


@nb.njit(nogil=True, cache=True)
def take_rows(src, idx, dst, lo, hi):  # pragma: no cover - compiled
    """``dst[lo:hi] = src[idx[lo:hi]]`` for 2-D arrays (one thread's share)."""
    for i in range(lo, hi):
        dst[i, :] = src[idx[i], :]


@nb.njit(nogil=True, cache=True, fastmath=_FAST)
def group_top_r(S, cn, cc, pair, vals, ids):  # pragma: no cover - compiled
    """Rows ``pair`` of ``vals``/``ids`` = the r best of ``S - cn`` per row.

    ``cc`` are the ids of S's columns (ascending); ties go to the lower id;
    with fewer than r columns the last id repeats and its value is -inf, as
    :func:`clusterlens.cluster._large._top_r` does.
    """
    m, w = S.shape
    r = vals.shape[1]
    for i in range(m):
        row = pair[i]
        for q in range(r):
            vals[row, q] = -np.inf
            ids[row, q] = -1
        for q in range(w):
            v = S[i, q] - cn[q]
            if v > vals[row, r - 1]:
                p = r - 1
                while p > 0 and vals[row, p - 1] < v:
                    vals[row, p] = vals[row, p - 1]
                    ids[row, p] = ids[row, p - 1]
                    p -= 1
                vals[row, p] = v
                ids[row, p] = cc[q]
        for q in range(w, r):
            ids[row, q] = ids[row, q - 1]


@nb.njit(nogil=True, cache=True, fastmath=_FAST)
def merge_probes(vals, ids, F, ex, C2, cn, out_ids, d2, lo, hi):  # pragma: no cover
    """Rows lo..hi: the r best over a row's probes and its extra centres.

    ``vals``/``ids`` (m, p*r) are the per-probe winners; ``ex`` (m, e), when
    it has columns, holds centres each row also keeps competing with (scored
    here as ``2 x.c - ||c||^2`` from ``C2 = 2 c``; one already among the
    probe winners counts once). Order: value descending, then id ascending.
    Writes ``out_ids`` (m, r) and the squared distance to the best, clamped
    at 0.
    """
    w = vals.shape[1]
    e = ex.shape[1]
    r = out_ids.shape[1]
    d = F.shape[1]
    bv = np.empty(r, np.float32)
    bi = np.empty(r, np.int64)
    for i in range(lo, hi):
        for q in range(r):
            bv[q] = -np.inf
            bi[q] = -1
        for q in range(w + e):
            if q < w:
                v = vals[i, q]
                j = ids[i, q]
            else:
                j = ex[i, q - w]
                dup = False
                for t in range(w):
                    if ids[i, t] == j:
                        dup = True
                if dup:
                    continue
                s = np.float32(0.0)
                for t in range(d):
                    s += C2[j, t] * F[i, t]
                v = s - cn[j]
            last = bv[r - 1]
            if v > last or (v == last and v > -np.inf and j < bi[r - 1]):
                p = r - 1
                while p > 0 and (bv[p - 1] < v or (bv[p - 1] == v and bi[p - 1] > j)):
                    bv[p] = bv[p - 1]
                    bi[p] = bi[p - 1]
                    p -= 1
                bv[p] = v
                bi[p] = j
        if bi[0] < 0:  # no candidate at all (empty groups only)
            bi[0] = 0
        for q in range(1, r):
            if bi[q] < 0:
                bi[q] = bi[q - 1]
        xx = np.float32(0.0)
        for t in range(d):
            xx += F[i, t] * F[i, t]
        dd = xx - bv[0]
        d2[i] = dd if dd > 0 else np.float32(0.0)
        for q in range(r):
            out_ids[i, q] = bi[q]
