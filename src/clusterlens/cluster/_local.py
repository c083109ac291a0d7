"""The local backend: every pass of a k-means fit in this process, in threads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.cluster._backend import (
    Backend,
    ExactPasses,
    LargeKPasses,
    Session,
    register_backend,
)
from clusterlens.cluster._driver import LocalExactPasses, data_stats
from clusterlens.cluster._large import LocalLargeKPasses

__all__ = ["LocalBackend", "LocalSession"]


class LocalSession(Session):
    """X (an array or a memmap) read by this process, a chunk at a time."""

    def __init__(self, X: npt.NDArray[Any]) -> None:
        self.X = X

    def mean_var(self) -> float:
        _, mean_var = data_stats(self.X)  # also rejects NaN/inf, naming the row
        return mean_var

    def exact(
        self,
        engine: Any,
        sample_weight: npt.NDArray[np.float64] | None,
        n_clusters: int,
    ) -> ExactPasses:
        return LocalExactPasses(self.X, engine, sample_weight, n_clusters)

    def large(self, shift: npt.NDArray[np.float64]) -> LargeKPasses:
        return LocalLargeKPasses(self.X, shift)


@register_backend("local")
class LocalBackend(Backend):
    """This process: row chunks in threads (``n_threads`` of the config)."""

    name = "local"

    @contextlib.contextmanager
    def session(self, source: Any, X: npt.NDArray[Any]) -> Iterator[Session]:
        yield LocalSession(X)
