"""The backend seam: where the passes of the one Lloyd loop run.

The drivers (:func:`~clusterlens.cluster._driver.exact_loop` and
:func:`~clusterlens.cluster._large_driver.large_k_loop`) own the iteration,
convergence, history, progress bar, checkpoints and empty-cluster repair,
once per mode. A backend only answers the per-pass questions, wherever the
rows live: assign them and reduce the per-cluster sums, the statistics of
the data, the rows farthest from their centres (for a repair), the final
assignment. faiss's ``contrib/clustering.py`` is the model: a
``DatasetAssign`` (``assign_to``, ``get_subset``) feeds one ``kmeans`` loop,
whether the data is in memory, memory-mapped or on a GPU.

:class:`Backend` is the public protocol. ``"local"`` (this process, threads
over chunks: :mod:`clusterlens.cluster._local`) ships here; ``"dask"``
(:mod:`clusterlens.distributed`) registers itself with
:func:`register_backend` when its package is imported, so ``clusterlens.cluster``
never imports ``clusterlens.distributed``. A backend object may also be passed
as ``kmeans(..., backend=...)``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from clusterlens._config import resolve_backend
from clusterlens.utils._registry import Registry

__all__ = [
    "Backend",
    "ExactPass",
    "ExactPasses",
    "FarthestRows",
    "FarthestStored",
    "LargeKPasses",
    "LargePass",
    "Session",
    "get_backend",
    "register_backend",
]

#: Backends shipped with clusterlens that register themselves on import of
#: their module (looked up by name on first use, like the lazy re-exports of
#: ``clusterlens/__init__.py``; this is not an import of those modules here).
_BUILTIN = {
    "local": "clusterlens.cluster._local",
    "dask": "clusterlens.distributed",
}
BACKENDS: Registry[Callable[[], Backend]] = Registry("backend")


def register_backend(name: str) -> Callable[[Any], Any]:
    """Class decorator: ``kmeans(..., backend=name)`` runs on ``cls()``."""
    return BACKENDS.register(name)


def get_backend(backend: str | Backend | None) -> Backend:
    """A :class:`Backend` object for ``backend`` (a name, None or a Backend)."""
    if isinstance(backend, Backend):
        return backend
    name = resolve_backend(backend)
    if name not in BACKENDS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    return BACKENDS.get(name)()


# --------------------------------------------------------------------------- #
# Exact Lloyd
# --------------------------------------------------------------------------- #
@dataclass
class ExactPass:
    """What one assignment pass of exact Lloyd found.

    ``sums`` and ``weights`` are plain per-cluster (weighted) sums of rows,
    float64; with ``delta`` they are the change since the previous pass (the
    points that moved), to add to the running totals. ``moved`` is the
    number of points whose label changed, None where the backend does not
    count them; ``unchanged`` says that no label changed. ``state`` is the
    engine's per-iteration state, for :meth:`Engine.update`.
    """

    sums: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]
    inertia: float
    moved: int | None
    unchanged: bool
    delta: bool = False
    state: Any = None


@dataclass
class FarthestRows:
    """Rows farthest from their centres: candidates for an empty cluster.

    ``index`` holds their row numbers (ascending), ``rows`` the rows as
    float64, ``labels``, ``dist`` and ``weights`` (None: all 1) theirs.
    """

    index: npt.NDArray[np.int64]
    rows: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    dist: npt.NDArray[Any]
    weights: npt.NDArray[np.float64] | None = None


class ExactPasses(ABC):
    """The per-pass questions of exact Lloyd, over data held by a backend."""

    #: Checkpoint kind (a resume must find the same).
    kind: ClassVar[str] = "exact"
    n_samples: int
    #: Sum of the sample weights (``n_samples`` without weights).
    total_weight: float
    #: Whether :meth:`step` can return the change of the sums (``delta``).
    incremental: bool = False

    def __enter__(self) -> ExactPasses:
        """Held for the whole run (a local backend starts its threads here)."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """The run is over."""
        return None

    @abstractmethod
    def step(
        self,
        centers: npt.NDArray[np.float64],
        origin: npt.NDArray[np.float64],
        *,
        delta: bool,
    ) -> ExactPass:
        """Assign every row to ``centers`` and reduce the per-cluster sums."""

    @abstractmethod
    def farthest(self, q: int) -> FarthestRows:
        """The ``q`` rows of the last pass farthest from their centres."""

    def relabel(self, index: npt.NDArray[np.int64], labels: npt.NDArray[Any]) -> None:
        """Rows ``index`` were moved to ``labels`` by the empty-cluster repair."""
        return None

    def end_iteration(self) -> None:
        """This iteration's labels become the previous ones."""
        return None

    @abstractmethod
    def final(
        self,
        centers: npt.NDArray[np.float64],
        origin: npt.NDArray[np.float64],
        *,
        last_pass: bool,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any], float]:
        """Labels, distances and inertia of ``centers``.

        ``last_pass`` says that the last :meth:`step` was run with these
        centres' labels (no label changed), so its answer may be reused.
        """

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Arrays and JSON fields of this backend's state, for a checkpoint."""
        return {}, {}

    def restore(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """Continue from a checkpoint's arrays and fields (see :meth:`checkpoint`)."""
        return None


# --------------------------------------------------------------------------- #
# Large-k Lloyd
# --------------------------------------------------------------------------- #
@dataclass
class LargePass:
    """What one pass of large-k Lloyd found: int counts, float64 sums."""

    sums: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]
    inertia: float
    moved: int


@dataclass
class FarthestStored:
    """The rows of a large-k fit farthest from their centres.

    Picked by decreasing ``dist``, ties by ``key``; ``rows`` are shifted,
    float64; ``where`` is the backend's handle of each (see
    :meth:`LargeKPasses.seed`).
    """

    key: npt.NDArray[np.int64]
    dist: npt.NDArray[Any]
    rows: npt.NDArray[np.float64]
    where: Any


class LargeKPasses(ABC):
    """The per-pass questions of large-k Lloyd, over data held by a backend.

    Rows are compared with the centres through a two-level index (an index
    pass) or with the kept candidates of their cluster (a candidate pass);
    see :mod:`clusterlens.cluster._large`. Centres are shifted by ``shift``.
    """

    kind: ClassVar[str] = "large"

    @property
    @abstractmethod
    def assigned(self) -> bool:
        """Whether the rows have been assigned once (else: an index pass)."""

    @abstractmethod
    def index_pass(self, index: Any, r: int) -> LargePass:
        """Assign through ``index`` (a CoarseIndex), keeping ``r`` candidates."""

    @abstractmethod
    def candidate_pass(self, Cs: npt.NDArray[np.float64]) -> LargePass:
        """Assign each row among its cluster's candidates."""

    @abstractmethod
    def farthest(self, m: int) -> FarthestStored:
        """At least the ``m`` rows of the last pass farthest from their centres."""

    @abstractmethod
    def seed(self, where: Any, clusters: npt.NDArray[np.intp]) -> None:
        """Make ``clusters`` (re-seeded at rows ``where``) their candidates."""

    def end_iteration(self) -> None:
        """After the update (the local backend re-sorts its rows here)."""
        return None

    @abstractmethod
    def final(
        self, Cs: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], float]:
        """Labels, squared distances (input order) and inertia of ``Cs``."""

    @abstractmethod
    def checkpoint(
        self, directory: Path, iteration: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Arrays and JSON fields of the state (may write files in ``directory``)."""

    def checkpoint_written(self, directory: Path) -> None:
        """The checkpoint naming :meth:`checkpoint`'s files is written."""
        return None

    @abstractmethod
    def restore(
        self, directory: Path, arrays: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        """Continue from a checkpoint."""


# --------------------------------------------------------------------------- #
# Backends
# --------------------------------------------------------------------------- #
class Session(ABC):
    """X as a backend holds it for one fit (see :meth:`Backend.session`)."""

    @abstractmethod
    def mean_var(self) -> float:
        """Mean per-feature variance of X; rejects NaN/inf naming the row."""

    @abstractmethod
    def exact(
        self,
        engine: Any,
        sample_weight: npt.NDArray[np.float64] | None,
        n_clusters: int,
    ) -> ExactPasses:
        """The passes of one exact run with ``engine`` and ``n_clusters``."""

    @abstractmethod
    def large(self, shift: npt.NDArray[np.float64]) -> LargeKPasses:
        """The passes of one large-k run, rows shifted by ``shift``."""


class Backend(ABC):
    """Where a k-means fit's passes run (this process, a Dask cluster...)."""

    name: ClassVar[str]

    def check(
        self, *, sample_weight: npt.NDArray[np.float64] | None, engine: Any
    ) -> None:
        """Raise InvalidParameterError for parameters this backend cannot run."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """Settings a checkpoint must be resumed with (beside the fit's own)."""
        return {}

    @abstractmethod
    def session(self, source: Any, X: npt.NDArray[Any]) -> AbstractContextManager[Any]:
        """A context manager giving the :class:`Session` of ``X``.

        ``source`` is what the user passed (a path, a memmap or an array), ``X``
        the matrix the client reads.
        """
