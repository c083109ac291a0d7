"""The Dask backend of k-means (exact and large-k): X sharded on a Dask cluster.

``kmeans(..., backend="dask")``, ``KMeans(backend="dask")`` and
:func:`dask_kmeans` run the one Lloyd loop of each mode
(:mod:`clusterlens.cluster._driver`, :mod:`clusterlens.cluster._large_driver`)
with :class:`DaskBackend` answering its passes through the engine's public
protocol (:class:`clusterlens.cluster.Backend`). The rows of X are cut into
contiguous shards; the worker-side tasks are in :mod:`._tasks`.

*Exact Lloyd.* Each iteration the client sends only the centres to the
workers; one task per shard assigns its rows with the local engine (the same
chunked code as the local driver) and returns per-cluster float64 sums and
counts, which are added pairwise along a binary tree fixed by shard index.
The same data, shards and init therefore give bit-identical centres on every
run, and the local backend's labels (its running sums, updated with the
points that moved, differ by rounding only).

*Large-k mode.* Every pass of the local large-k driver is a function of each
row, its kept candidate centres and (in a candidate pass) its cluster's
candidate union over all rows. Each shard keeps its state on its worker (its
rows sorted by label, their labels and candidates: a Dask future, never sent
to the client); the client sends the centres, or in an index pass the
two-level index over them, and receives the tree-reduced sums and counts; the
per-cluster candidate unions are merged worker to worker. Labels equal the
local driver's.

Data from a file (``.npy``, ``.bvecs``, ``.fvecs``, Oxford ``.bin``) never goes
through the client: each worker opens the file itself, memory-mapped, and reads
its row range. An in-memory array is scattered to the workers once per fit
(not replicated: use a file when workers may be lost). Every task is a pure
function of its inputs, so a task lost with a worker is run again elsewhere by
Dask (a lost large-k state is rebuilt from its lineage) and the fit ends as an
undisturbed one. Checkpoints: the driver writes the centres; in the large-k
mode each worker writes its shards' states next to them (a shared
filesystem, as for the data).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.cluster import (
    Backend,
    Engine,
    ExactPass,
    ExactPasses,
    FarthestRows,
    FarthestStored,
    KMeansResult,
    LargeKPasses,
    LargePass,
    Session,
    kmeans,
    register_backend,
)
from clusterlens.distributed._client import (
    _file_source,
    _put,
    _tree_reduce,
    dask_client,
)
from clusterlens.distributed._map import shard_bounds
from clusterlens.distributed._tasks import (
    _first,
    _large_candidate_step,
    _large_codes,
    _large_farthest,
    _large_final,
    _large_index_step,
    _large_set_last,
    _load_part,
    _save_part,
    _second,
    _shard_assign,
    _shard_farthest,
    _shard_stats,
    _shard_step,
    _union,
)
from clusterlens.exceptions import (
    DataValidationError,
    InvalidParameterError,
)
from clusterlens.utils.validation import check_int, check_real

__all__ = ["DaskBackend", "dask_kmeans"]

#: Default rows per shard (one task per shard per iteration).
DEFAULT_SHARD_ROWS = 262_144
_OWNER = "dask_kmeans"


@register_backend("dask")
class DaskBackend(Backend):
    """X sharded over a Dask cluster (see :func:`dask_kmeans` for the options).

    ``kmeans(X, k, backend=DaskBackend(client=c, shard_rows=100_000))`` runs
    on the cluster of ``c``; ``backend="dask"`` is ``DaskBackend()``.
    """

    name = "dask"

    def __init__(
        self,
        *,
        client: Any = None,
        scheduler: str | None = None,
        timeout: float = 10.0,
        shard_rows: int = DEFAULT_SHARD_ROWS,
    ) -> None:
        self.client = client
        self.scheduler = scheduler
        self.timeout = float(timeout)
        self.shard_rows = int(shard_rows)

    def check(
        self, *, sample_weight: npt.NDArray[np.float64] | None, engine: Any
    ) -> None:
        if sample_weight is not None:
            raise InvalidParameterError(
                "backend='dask' takes no sample_weight: use the local backend."
            )
        if isinstance(engine, Engine):
            raise InvalidParameterError(
                "backend='dask' runs an engine by name ('auto', 'numpy' or 'faiss') "
                f"on its workers; got the object {engine!r}."
            )

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "dask", "shard_rows": self.shard_rows}

    def session(self, source: Any, X: npt.NDArray[Any]) -> DaskSession:
        return DaskSession(
            source,
            X,
            client=self.client,
            scheduler=self.scheduler,
            timeout=self.timeout,
            shard_rows=self.shard_rows,
        )


class DaskSession(Session):
    """X cut into contiguous shards on a Dask cluster, for one fit.

    A context manager: entering it picks the client (see :func:`dask_client`)
    and tells the workers where their rows are (a file each worker opens
    itself, or, for an in-memory array, shards scattered once); leaving it
    closes a client made here.
    """

    def __init__(
        self,
        source: Any,
        X: Any,
        *,
        client: Any = None,
        scheduler: str | None = None,
        timeout: float = 10.0,
        shard_rows: int = DEFAULT_SHARD_ROWS,
    ) -> None:
        self.source, self.X = source, X
        self.n, self.d = X.shape
        self.bounds = shard_bounds(self.n, shard_rows)
        self._client_args = (client, scheduler, float(timeout))

    def __enter__(self) -> DaskSession:
        client, scheduler, timeout = self._client_args
        self._stack = contextlib.ExitStack()
        self.client = self._stack.enter_context(
            dask_client(client, scheduler, timeout=timeout)
        )
        try:
            src = _file_source(self.source, self.X)
            if src is not None:
                self.datas: list[Any] = [src] * len(self.bounds)
            else:
                self.datas = [
                    self.client.scatter(np.asarray(self.X[lo:hi]), hash=False)
                    for lo, hi in self.bounds
                ]
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def _map(
        self, fn: Any, *args: Any, per_shard: list[Any] | None = None
    ) -> list[Any]:
        """One task per shard: ``fn(data, lo, hi, *args[, per_shard[i]])``."""
        c = self.client
        out = []
        for i, (dt, (lo, hi)) in enumerate(zip(self.datas, self.bounds, strict=True)):
            extra = () if per_shard is None else (per_shard[i],)
            out.append(c.submit(fn, dt, lo, hi, *args, *extra, pure=False))
        return out

    def mean_var(self) -> float:
        """Mean per-feature variance of X (combined per shard, Chan et al.).

        This pass also rejects NaN/inf, naming the shard and row.
        """
        stats = self.client.gather(self._map(_shard_stats))
        n = self.n
        counts = np.array([s[0] for s in stats], dtype=np.float64)
        means = np.array([s[1] for s in stats])
        mean = (counts[:, None] * means).sum(axis=0) / n
        m2 = sum(s[2] * s[0] + float(((s[1] - mean) ** 2).mean()) * s[0] for s in stats)
        return float(m2 / n)

    def exact(
        self,
        engine: Any,
        sample_weight: npt.NDArray[np.float64] | None,
        n_clusters: int,
    ) -> ExactPasses:
        return DaskExactPasses(self, engine)

    def large(self, shift: npt.NDArray[np.float64]) -> LargeKPasses:
        return DaskLargeKPasses(self, shift)


class DaskExactPasses(ExactPasses):
    """Exact passes, one task per shard; sums tree-reduced on the workers.

    The same data, shards and init give bit-identical centres on every run.
    Labels are not counted per pass: each shard returns a digest of its
    labels, so an unchanged assignment is recognised (strict convergence).
    """

    kind = "dask-exact"

    def __init__(self, session: DaskSession, engine: Engine) -> None:
        self.s = session
        self.engine = engine
        self.n_samples = session.n
        self.total_weight = float(session.n)
        self.digests: tuple[str, ...] | None = None
        self.centers_f: Any = None
        self.origin: Any = None
        self.origin_f: Any = None

    def _origin(self, origin: npt.NDArray[np.float64]) -> Any:
        """The origin as a future, sent once per fit."""
        if self.origin_f is None or self.origin is not origin:
            self.origin, self.origin_f = origin, _put(self.s.client, origin)
        return self.origin_f

    def step(
        self,
        centers: npt.NDArray[np.float64],
        origin: npt.NDArray[np.float64],
        *,
        delta: bool,
    ) -> ExactPass:
        c = self.s.client
        origin_f = self._origin(origin)
        self.centers_f = _put(c, centers)
        parts = self.s._map(_shard_step, self.centers_f, origin_f, self.engine.name)
        total = c.gather(_tree_reduce(c, parts))
        inertia = float(total["inertia"])
        if not np.isfinite(inertia):
            raise DataValidationError(
                "Input X contains NaN or infinity. Remove or impute those "
                "rows before clustering."
            )
        unchanged = self.digests == total["digests"]
        self.digests = total["digests"]
        return ExactPass(total["sums"], total["weights"], inertia, None, unchanged)

    def farthest(self, q: int) -> FarthestRows:
        """Each shard's farthest ``q`` rows, in global index order.

        The merged candidates hold the global top ``q`` (ties: lower index).
        """
        got = self.s.client.gather(
            self.s._map(
                _shard_farthest, self.centers_f, self.origin_f, self.engine.name, q
            )
        )
        return FarthestRows(
            index=np.concatenate([g[0] for g in got]),
            rows=np.concatenate([g[3] for g in got]),
            labels=np.concatenate([g[2] for g in got]),
            dist=np.concatenate([g[1] for g in got]),
        )

    def relabel(self, index: npt.NDArray[np.int64], labels: npt.NDArray[Any]) -> None:
        # Relocated points changed label after the digest was taken.
        self.digests = None

    def final(
        self,
        centers: npt.NDArray[np.float64],
        origin: npt.NDArray[np.float64],
        *,
        last_pass: bool,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any], float]:
        """Labels and distances of ``centers``, gathered in shard order."""
        c = self.s.client
        out = c.gather(
            self.s._map(
                _shard_assign, _put(c, centers), self._origin(origin), self.engine.name
            )
        )
        labels = np.concatenate([o[0] for o in out])
        dist = np.concatenate([o[1] for o in out])
        inertia = float(sum(float(np.sum(o[1], dtype=np.float64)) for o in out))
        return labels, dist, inertia

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"digests": list(self.digests or ())}

    def restore(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.digests = tuple(meta.get("digests") or ()) or None


class DaskLargeKPasses(LargeKPasses):
    """The local large-k passes, shard by shard.

    Each shard keeps its rows (sorted by label), labels and candidates on its
    worker; the per-cluster candidate unions are merged on the workers; only
    centres, the index, per-cluster sums and counts pass through the client.
    Labels equal the local backend's.
    """

    kind = "dask-large"

    def __init__(self, session: DaskSession, shift: npt.NDArray[np.float64]) -> None:
        self.s = session
        self.shift_f = _put(session.client, shift)
        self.states: list[Any] | None = None
        self.codes_f: Any = None

    @property
    def assigned(self) -> bool:
        return self.states is not None

    def _pass(self, outs: list[Any]) -> LargePass:
        c = self.s.client
        self.states = [c.submit(_first, o, pure=False) for o in outs]
        summaries = [c.submit(_second, o, pure=False) for o in outs]
        total = c.gather(_tree_reduce(c, summaries))
        return LargePass(
            total["sums"],
            total["weights"],
            float(total["inertia"]),
            int(total["moved"]),
        )

    def index_pass(self, index: Any, r: int) -> LargePass:
        outs = self.s._map(
            _large_index_step,
            self.shift_f,
            _put(self.s.client, index),
            r,
            per_shard=self.states or [None] * len(self.s.bounds),
        )
        return self._pass(outs)

    def _codes(self, k: int) -> Any:
        """Every cluster's candidate union over all shards, as a future."""
        if self.codes_f is None:
            assert self.states is not None
            c = self.s.client
            parts = [c.submit(_large_codes, s, k, pure=False) for s in self.states]
            self.codes_f = _tree_reduce(c, parts, _union)
        return self.codes_f

    def candidate_pass(self, Cs: npt.NDArray[np.float64]) -> LargePass:
        codes_f = self._codes(Cs.shape[0])
        outs = self.s._map(
            _large_candidate_step,
            self.shift_f,
            _put(self.s.client, Cs),
            codes_f,
            per_shard=self.states,
        )
        return self._pass(outs)

    def farthest(self, m: int) -> FarthestStored:
        """Each shard's farthest ``m`` rows; ties broken by global row index."""
        got = self.s.client.gather(
            self.s._map(_large_farthest, self.shift_f, m, per_shard=self.states)
        )
        shard = np.concatenate([np.full(g[0].size, i) for i, g in enumerate(got)])
        pos = np.concatenate([g[0] for g in got])
        return FarthestStored(
            key=np.concatenate([g[1] for g in got]),
            dist=np.concatenate([g[2] for g in got]),
            rows=np.concatenate([g[3] for g in got]),
            where=np.stack([shard, pos], axis=1),
        )

    def seed(self, where: Any, clusters: npt.NDArray[np.intp]) -> None:
        assert self.states is not None
        shard, pos = where[:, 0], where[:, 1]
        for i in np.unique(shard):
            sel = shard == i
            self.states[i] = self.s.client.submit(
                _large_set_last, self.states[i], pos[sel], clusters[sel], pure=False
            )

    def end_iteration(self) -> None:
        self.codes_f = None  # of the new states, when a candidate pass needs them

    def final(
        self, Cs: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], float]:
        codes_f = self._codes(Cs.shape[0])
        out = self.s.client.gather(
            self.s._map(
                _large_final,
                self.shift_f,
                _put(self.s.client, Cs),
                codes_f,
                per_shard=self.states,
            )
        )
        labels = np.concatenate([o[0] for o in out])
        dist = np.concatenate([o[1] for o in out])
        return labels, dist, float(sum(float(o[1].sum(dtype=np.float64)) for o in out))

    def checkpoint(
        self, directory: Path, iteration: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Workers write their shards' states; the driver the JSON naming them."""
        assert self.states is not None
        c = self.s.client
        folder = self._folder = f"dask-parts-{iteration:06d}"
        (directory / folder).mkdir(parents=True, exist_ok=True)
        names = [f"{folder}/part-{i:05d}.npz" for i in range(len(self.states))]
        shas = c.gather(
            [
                c.submit(_save_part, s, str(directory / p), pure=False)
                for s, p in zip(self.states, names, strict=True)
            ]
        )
        return {}, {
            "bounds": [list(b) for b in self.s.bounds],
            "parts": [[p, h] for p, h in zip(names, shas, strict=True)],
        }

    def checkpoint_written(self, directory: Path) -> None:
        for old in directory.glob("dask-parts-*"):  # once the JSON names the new
            if old.name != self._folder:
                shutil.rmtree(old, ignore_errors=True)

    def restore(
        self, directory: Path, arrays: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        if [list(b) for b in meta.get("bounds", [])] != [
            list(b) for b in self.s.bounds
        ]:
            raise DataValidationError(
                f"The checkpoint in {directory} was written with other "
                "shards: resume with the same shard size."
            )
        c = self.s.client
        self.states = [
            c.submit(
                _load_part,
                dt,
                lo,
                hi,
                self.shift_f,
                str(directory / p),
                sha,
                pure=False,
            )
            for dt, (lo, hi), (p, sha) in zip(
                self.s.datas, self.s.bounds, meta["parts"], strict=True
            )
        ]


def dask_kmeans(
    X: Any,
    n_clusters: int,
    *,
    client: Any = None,
    scheduler: str | None = None,
    timeout: float = 10.0,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    **kwargs: Any,
) -> KMeansResult:
    """k-means with X sharded on a Dask cluster: ``kmeans(..., backend="dask")``.

    The result equals :func:`clusterlens.cluster.kmeans` with the same
    arguments on the local backend: labels equal, centres and inertia within
    float rounding (sums are added in another order). Both modes ("exact"
    and "large") run sharded.

    Parameters
    ----------
    X : {path, array-like} of shape (n_samples, n_features)
        A descriptor file path (``.npy``, ``.bvecs``, ``.fvecs``, ``.bin``) or
        a ``.npy`` memmap is opened by each worker itself, memory-mapped, at
        the same path: rows never pass through the client, and a lost
        worker's tasks are rerun. An array is scattered once per fit; its
        shards are not replicated, so a worker lost with them fails the fit
        (use a file on a cluster).
    n_clusters : int
    client : distributed.Client, optional
    scheduler : str, optional
        Address of a running scheduler; unreachable within ``timeout``
        seconds raises :class:`BackendError`. See :func:`dask_client` for
        the order in which a client is chosen.
    timeout : float, default=10.0
    shard_rows : int, default=262144
        Rows per shard: one task per shard and pass.
    **kwargs
        As in :func:`clusterlens.cluster.kmeans` (``sample_weight`` is not
        taken).

    Notes
    -----
    Exact mode, per iteration: the client sends the (k, d) float64 centres
    and receives one (k, d) sum and k counts (float64) after a tree reduction
    on the workers; each shard's task returns one partial. An empty cluster
    is repaired as the local driver does: each shard returns its farthest
    candidates, merged by (distance, index). Large-k mode: each shard's rows
    (sorted by label), labels and kept candidates stay on its worker; per
    pass the client sends the centres (or, in an index pass, the two-level
    index over them) and receives the reduced sums and counts; the
    per-cluster candidate unions are merged worker to worker.
    """
    backend = DaskBackend(
        client=client,
        scheduler=scheduler,
        timeout=check_real(timeout, "timeout", _OWNER, low=0.0),
        shard_rows=check_int(shard_rows, "shard_rows", _OWNER, low=1),  # type: ignore[arg-type]
    )
    return kmeans(X, n_clusters, backend=backend, **kwargs)
