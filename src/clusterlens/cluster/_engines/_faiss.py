"""Exact squared-Euclidean assignment through faiss's brute-force search."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from clusterlens.cluster._engines._base import ENGINES, Engine
from clusterlens.utils._optional import import_optional

__all__ = ["FaissEngine"]


class _State(NamedTuple):
    centers32: npt.NDArray[np.float32]


@ENGINES.register("faiss")
class FaissEngine(Engine):
    """Nearest centre with ``faiss.knn`` (float32, faiss's own threads).

    faiss computes in float32 whatever the input dtype, and parallelises one
    chunk internally with OpenMP, so the driver runs chunks one at a time.
    """

    name = "faiss"
    incremental = True
    parallel_chunks = False

    def __init__(self) -> None:
        super().__init__()
        self._faiss = import_optional("faiss", extra="faiss", feature="engine='faiss'")

    def working_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        return np.dtype(np.float32)

    def chunk_rows(
        self, n_features: int, n_clusters: int, dtype: np.dtype[Any], budget: int
    ) -> int:
        per_row = (n_features + n_clusters) * 4 + 64
        return int(max(1, min(16384, budget // per_row)))

    def prepare(
        self,
        centers: npt.NDArray[np.float64],
        dtype: np.dtype[Any],
        origin: npt.NDArray[np.float64] | None = None,
    ) -> _State:
        return _State(np.ascontiguousarray(centers, dtype=np.float32))

    def assign(
        self, X_chunk: npt.NDArray[Any], state: _State
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.floating[Any]]]:
        x = np.ascontiguousarray(X_chunk, dtype=np.float32)
        dist, idx = self._faiss.knn(x, state.centers32, 1)
        return idx[:, 0].astype(np.intp), np.maximum(dist[:, 0], 0)

    def pairwise(self, X_chunk: npt.NDArray[Any], state: _State) -> npt.NDArray[Any]:
        x = np.ascontiguousarray(X_chunk, dtype=np.float32)
        out = self._faiss.pairwise_distances(x, state.centers32)
        return np.maximum(out, 0)
