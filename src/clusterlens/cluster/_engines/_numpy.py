"""Exact squared-Euclidean assignment by chunked BLAS GEMM and argmax."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from clusterlens.cluster._engines._base import ENGINES, Engine, segment_sums

__all__ = ["NumpyEngine"]


class _State(NamedTuple):
    caug: npt.NDArray[Any]  # (d + 1, k): rows 2 (c - s)^T, then -||c - s||^2
    shift: npt.NDArray[Any]  # (d,) s, subtracted from points and centres
    shift64: npt.NDArray[np.float64]
    dtype: np.dtype[Any]


@ENGINES.register("numpy")
class NumpyEngine(Engine):
    """Exact nearest centre with one GEMM per chunk: ``argmax(2 x.c - ||c||^2)``.

    Each chunk of rows is copied, once, into a thread-local buffer of the
    working dtype with the centres' mean subtracted (for float32 precision)
    and a trailing column of ones; a single GEMM against the augmented centre
    matrix ``[2 (C - s); -||C - s||^2]`` then gives the score whose row-wise
    argmax is the nearest centre, so no pass over the (m, k) block is spent on
    adding norms. ``||x - s||^2 - max`` is the squared distance.

    Notes
    -----
    Per chunk of m rows: 2 m k (d + 1) flops in the GEMM, O(m k) for the
    argmax and O(m d) for conversion and sums. Tiles are sized so the (m, k)
    score block stays near the L2 cache.
    """

    name = "numpy"

    def chunk_rows(self, n_features: int, n_clusters: int, dtype: np.dtype[Any]) -> int:
        item = self.working_dtype(dtype).itemsize
        # Keep the (rows, k) score block near 2 MiB (L2) but GEMM-efficient.
        return int(np.clip(2**21 // max(1, n_clusters * item), 256, 4096))

    def prepare(self, centers: npt.NDArray[np.float64], dtype: np.dtype[Any]) -> _State:
        dtype = self.working_dtype(dtype)
        shift64 = centers.mean(axis=0)
        cc = centers - shift64
        caug = np.empty((centers.shape[1] + 1, centers.shape[0]), dtype=dtype)
        caug[:-1] = 2.0 * cc.T
        caug[-1] = -np.einsum("ij,ij->i", cc, cc)
        return _State(caug, shift64.astype(dtype), shift64, dtype)

    def _buffers(
        self, m: int, d: int, k: int, dtype: np.dtype[Any]
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        loc = self._local
        buf = getattr(loc, "buf", None)
        if buf is None or buf.shape[0] < m or buf.shape[1] != d + 1 or buf.dtype != dtype:
            loc.buf = buf = np.empty((m, d + 1), dtype=dtype)
        scores = getattr(loc, "scores", None)
        if (
            scores is None
            or scores.shape[0] < m
            or scores.shape[1] != k
            or scores.dtype != dtype
        ):
            loc.scores = scores = np.empty((m, k), dtype=dtype)
        return buf, scores

    def _scores(
        self, X_chunk: npt.NDArray[Any], state: _State
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
        m, d = X_chunk.shape
        k = state.caug.shape[1]
        buf, scores = self._buffers(m, d, k, state.dtype)
        buf = buf[:m]
        xc = buf[:, :d]
        np.subtract(X_chunk, state.shift, out=xc, casting="unsafe")
        buf[:, d] = 1.0
        s = scores[:m]
        np.matmul(buf, state.caug, out=s)
        xx = np.einsum("ij,ij->i", xc, xc)
        return xc, s, xx

    def assign(
        self, X_chunk: npt.NDArray[Any], state: _State
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.floating[Any]]]:
        _, s, xx = self._scores(X_chunk, state)
        labels = s.argmax(axis=1)
        best = np.take_along_axis(s, labels[:, None], axis=1)[:, 0]
        dist = np.subtract(xx, best)
        np.maximum(dist, 0, out=dist)
        return labels, dist

    def pairwise(self, X_chunk: npt.NDArray[Any], state: _State) -> npt.NDArray[Any]:
        _, s, xx = self._scores(X_chunk, state)
        out = xx[:, None] - s
        np.maximum(out, 0, out=out)
        return out

    def step(
        self,
        X_chunk: npt.NDArray[Any],
        state: _State,
        sample_weight: npt.NDArray[np.float64] | None,
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.floating[Any]]]:
        xc, s, xx = self._scores(X_chunk, state)
        labels = s.argmax(axis=1)
        best = np.take_along_axis(s, labels[:, None], axis=1)[:, 0]
        dist = np.subtract(xx, best)
        np.maximum(dist, 0, out=dist)
        # The buffer still holds the shifted chunk: sum it without re-reading X.
        segment_sums(xc, labels, sample_weight, sums, weights)
        return labels, dist

    def accumulate(
        self,
        X_chunk: npt.NDArray[Any],
        labels: npt.NDArray[np.intp],
        sample_weight: npt.NDArray[np.float64] | None,
        state: _State,
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
    ) -> None:
        xc = np.subtract(X_chunk, state.shift, dtype=state.dtype)
        segment_sums(xc, labels, sample_weight, sums, weights)

    def finalize(
        self,
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
        state: _State,
    ) -> npt.NDArray[np.float64]:
        # Sums were of shifted rows: add the shift back once per cluster.
        return sums + weights[:, None] * state.shift64
