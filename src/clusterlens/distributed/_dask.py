"""k-means (exact and large-k) with the data sharded on a Dask cluster.

``kmeans(..., backend="dask")``, ``KMeans(backend="dask")`` and
:func:`dask_kmeans` run here. The rows of X are cut into contiguous shards.

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
undisturbed one. Checkpoints: the client writes the centres; in the large-k
mode each worker writes its shards' states next to them (a shared
filesystem, as for the data).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens._config import get_config
from clusterlens.cluster._driver import _relocate_empty
from clusterlens.cluster._engines import get_engine
from clusterlens.cluster._engines._base import Engine
from clusterlens.cluster._kmeans import KMeansResult
from clusterlens.distributed._map import shard_bounds
from clusterlens.exceptions import (
    BackendError,
    DataValidationError,
)
from clusterlens.io import open_descriptors
from clusterlens.utils._chunking import gen_batches
from clusterlens.utils._optional import import_optional
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import (
    check_int,
    check_real,
)

__all__ = ["dask_client", "dask_kmeans"]

logger = logging.getLogger(__name__)

#: Default rows per shard (one task per shard per iteration).
DEFAULT_SHARD_ROWS = 262_144
_OWNER = "dask_kmeans"


def _distributed() -> Any:
    return import_optional(
        "distributed", extra="dist", feature="The Dask backend (backend='dask')"
    )


# --------------------------------------------------------------------------- #
# Client
# --------------------------------------------------------------------------- #
@contextlib.contextmanager
def dask_client(
    client: Any = None,
    scheduler: str | None = None,
    *,
    timeout: float = 10.0,
    n_workers: int = 2,
    threads_per_worker: int = 1,
) -> Iterator[Any]:
    """The Dask client a fit runs on, closed afterwards if it was made here.

    In order: ``client`` if given; else a new connection to ``scheduler``
    (``"tcp://host:8786"``; default: the configured ``scheduler``, see
    :func:`clusterlens.config_context`), which raises :class:`BackendError`
    naming the address if it cannot be reached within ``timeout`` seconds;
    else the current ``distributed`` client if there is one; else a
    ``LocalCluster`` of ``n_workers`` worker processes, started here and
    closed on exit.
    """
    distributed = _distributed()
    if client is not None:
        yield client
        return
    if scheduler is None:
        scheduler = get_config()["scheduler"]
    if scheduler is not None:
        try:
            c = distributed.Client(
                scheduler, timeout=f"{float(timeout)}s", set_as_default=False
            )
        except (OSError, TimeoutError, ValueError) as e:
            raise BackendError(
                f"Cannot reach the Dask scheduler at {scheduler!r} within "
                f"{float(timeout):g} s ({type(e).__name__}: {e}). Check that "
                "`dask scheduler` runs there and the address and port are right, "
                "or omit the scheduler to use a local cluster."
            ) from e
        try:
            yield c
        finally:
            c.close()
        return
    try:
        current = distributed.default_client()
    except ValueError:
        current = None
    if current is not None:
        yield current
        return
    import dask

    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 for workers makes glibc map and
    # unmap every large temporary array: measured 1.5x slower large-k passes
    # than glibc's adaptive default, which the workers keep here.
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": env}),
        distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",  # a free port: no clash with a running one
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as c,
    ):
        yield c


# --------------------------------------------------------------------------- #
# Shards and the worker-side tasks (pure functions of shard and centres)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _FileSource:
    """A descriptor file every worker opens itself (shared filesystem)."""

    path: str
    shape: tuple[int, int]
    dtype: str


@lru_cache(maxsize=8)
def _open_cached(path: str, mtime_ns: int, size: int) -> npt.NDArray[Any]:
    return open_descriptors(path)


def _rows(data: Any, lo: int, hi: int) -> npt.NDArray[Any]:
    """Rows ``lo:hi``: read by this worker from the file, or a scattered array."""
    if isinstance(data, _FileSource):
        st = os.stat(data.path)
        X = _open_cached(data.path, st.st_mtime_ns, st.st_size)
        if tuple(X.shape) != data.shape or str(X.dtype) != data.dtype:
            raise DataValidationError(
                f"A Dask worker sees {data.path!r} as {X.shape} {X.dtype}, the client "
                f"as {data.shape} {data.dtype}. The workers need the same file at "
                "the same path (a shared filesystem)."
            )
        return X[lo:hi]
    return data  # type: ignore[no-any-return]


@lru_cache(maxsize=4)
def _engine(name: str) -> Engine:
    return get_engine(name)


def _chunk_rows(engine: Engine, d: int, k: int, dtype: np.dtype[Any]) -> int:
    budget = int(get_config()["working_memory"] * 2**20)
    return max(1, engine.chunk_rows(d, k, dtype, budget))


def _shard_stats(data: Any, lo: int, hi: int) -> tuple[int, Any, float]:
    """Row count, mean and mean per-feature variance of one shard; checks NaN/inf."""
    from clusterlens.cluster._driver import data_stats

    X = _rows(data, lo, hi)
    mean, var = data_stats(X, name=f"X[{lo}:{hi}]")
    return hi - lo, mean, var


def _shard_step(
    data: Any,
    lo: int,
    hi: int,
    centers: npt.NDArray[np.float64],
    origin: npt.NDArray[np.float64],
    engine_name: str,
) -> dict[str, Any]:
    """Assign one shard: per-cluster sums (float64), counts, inertia, label digest."""
    engine = _engine(engine_name)
    X = _rows(data, lo, hi)
    k, d = centers.shape
    state = engine.prepare(centers, X.dtype, origin)
    sums = np.zeros((k, d))
    weights = np.zeros(k)
    digest = hashlib.blake2b(digest_size=16)
    inertia = 0.0
    for sl in gen_batches(hi - lo, _chunk_rows(engine, d, k, X.dtype)):
        labels, dist = engine.step(X[sl], state, None, sums, weights, None)
        digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
        inertia += float(np.sum(dist, dtype=np.float64))
    return {
        "sums": engine.finalize(sums, weights, state),
        "weights": weights,
        "inertia": inertia,
        "digests": (digest.hexdigest(),),
    }


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Combine two partial results key by key (sums added, digest tuples joined).

    The order (a then b) is fixed by the caller.
    """
    return {key: a[key] + b[key] for key in a}


def _shard_assign(
    data: Any,
    lo: int,
    hi: int,
    centers: npt.NDArray[np.float64],
    origin: npt.NDArray[np.float64],
    engine_name: str,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Labels and distances of one shard to ``centers``."""
    engine = _engine(engine_name)
    X = _rows(data, lo, hi)
    k, d = centers.shape
    state = engine.prepare(centers, X.dtype, origin)
    labels = np.empty(hi - lo, dtype=np.int64)
    dist = np.empty(hi - lo, dtype=engine.working_dtype(X.dtype))
    for sl in gen_batches(hi - lo, _chunk_rows(engine, d, k, X.dtype)):
        labels[sl], dist[sl] = engine.assign(X[sl], state)
    return labels, dist


def _shard_farthest(
    data: Any,
    lo: int,
    hi: int,
    centers: npt.NDArray[np.float64],
    origin: npt.NDArray[np.float64],
    engine_name: str,
    q: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[np.int64], Any]:
    """The ``q`` rows of a shard farthest from their centres (ties: lower index).

    Returns their global indices (ascending), distances, labels and rows.
    """
    labels, dist = _shard_assign(data, lo, hi, centers, origin, engine_name)
    n = dist.shape[0]
    cand = np.arange(n)
    if q < n:
        cand = np.argpartition(-dist, q - 1)[:q]
        cand = cand[np.lexsort((cand, -dist[cand]))][:q]
    cand = np.sort(cand)
    rows = np.asarray(_rows(data, lo, hi)[cand], dtype=np.float64)
    return cand.astype(np.int64) + lo, dist[cand], labels[cand], rows


# --------------------------------------------------------------------------- #
# Large-k tasks: a shard's state (its rows sorted by label, their labels and
# kept candidates) stays on the workers between iterations, as in the local
# large-k driver; a lost state is rebuilt by Dask from its (pure) lineage.
# --------------------------------------------------------------------------- #
@contextlib.contextmanager
def _worker_threads() -> Iterator[None]:
    """Inside a task: as many threads as the worker gives each task slot."""
    from clusterlens._config import config_context

    n = 1
    with contextlib.suppress(Exception):  # not on a worker (tests call directly)
        w = _distributed().get_worker()
        n = max(1, int(getattr(w, "state", w).nthreads))
    with config_context(n_threads=n):
        yield


def _large_rows(data: Any, lo: int, hi: int, shift: Any) -> tuple[Any, Any]:
    from clusterlens.cluster._large import _Rows, _storage_dtype

    X = _rows(data, lo, hi)
    return X, _Rows(shift, _storage_dtype(X.dtype))


def _acc(k: int, d: int) -> list[tuple[Any, Any]]:
    from clusterlens.cluster._large import _n_threads

    return [(np.zeros((k, d)), np.zeros(k, np.int64)) for _ in range(_n_threads())]


def _summary(acc: list[tuple[Any, Any]], d2: Any, moved: int) -> dict[str, Any]:
    sums, counts = acc[0]
    for s_, c_ in acc[1:]:
        sums = sums + s_
        counts = counts + c_
    return {
        "sums": sums,
        "weights": counts,
        "inertia": float(d2.sum(dtype=np.float64)),
        "moved": int(moved),
    }


def _large_index_step(
    data: Any,
    lo: int,
    hi: int,
    shift: Any,
    index: Any,
    r: int,
    prev: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An index pass over one shard (the first pass, or a refresh of ``prev``)."""
    from clusterlens.cluster._large import _CHUNK, _sorted_sums

    with _worker_threads():
        X, rows = _large_rows(data, lo, hi, shift)
        n, d = hi - lo, X.shape[1]
        src = X if prev is None else prev["Xs"]
        top = np.empty((n, r), np.int32)
        d2 = np.empty(n, np.float32)
        for a in range(0, n, _CHUNK):
            block = np.asarray(src[a : a + _CHUNK])
            F = rows.f32(block if prev is not None else rows.to_store(block))
            ex = None if prev is None else prev["top"][a : a + _CHUNK]
            top[a : a + _CHUNK], d2[a : a + _CHUNK] = index.search_f32(F, r, extra=ex)
        new = top[:, 0].copy()
        o = np.argsort(new, kind="stable")
        if prev is None:
            moved = n
            Xs = rows.to_store(np.asarray(X)[o])
            perm = o.astype(np.int64)
        else:
            moved = int(np.count_nonzero(prev["labels"] != new))
            Xs, perm = prev["Xs"][o], prev["perm"][o]
        new, top, d2 = new[o], top[o], d2[o]
        acc = _acc(index.k, d)
        _sorted_sums(Xs, rows, new, acc)
        state = {"Xs": Xs, "perm": perm, "labels": new, "top": top, "d2": d2}
        return state, _summary(acc, d2, moved)


def _large_candidate_step(
    data: Any,
    lo: int,
    hi: int,
    shift: Any,
    Cs: Any,
    codes: Any,
    state: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A candidate pass over one shard against every shard's candidate union."""
    from clusterlens.cluster._large import candidate_pass

    with _worker_threads():
        _, rows = _large_rows(data, lo, hi, shift)
        k, d = Cs.shape
        acc = _acc(k, d)
        new, top, d2 = candidate_pass(
            state["Xs"], rows, state["labels"], state["top"], Cs, acc, codes=codes
        )
        moved = int(np.count_nonzero(new != state["labels"]))
        o = np.argsort(new, kind="stable")  # keep rows sorted by label
        out = {
            "Xs": state["Xs"][o],
            "perm": state["perm"][o],
            "labels": new[o],
            "top": top[o],
            "d2": d2[o],
        }
        return out, _summary(acc, d2, moved)


def _large_final(
    data: Any, lo: int, hi: int, shift: Any, Cs: Any, codes: Any, state: dict[str, Any]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Labels and squared distances of the final centres, in the shard's row order."""
    from clusterlens.cluster._large import candidate_pass

    with _worker_threads():
        _, rows = _large_rows(data, lo, hi, shift)
        k, d = Cs.shape
        new, _, d2 = candidate_pass(
            state["Xs"],
            rows,
            state["labels"],
            state["top"],
            Cs,
            _acc(k, d),
            codes=codes,
        )
        labels = np.empty(hi - lo, np.int64)
        dist = np.empty(hi - lo, np.float32)
        labels[state["perm"]] = new
        dist[state["perm"]] = d2
        return labels, dist


def _large_codes(state: dict[str, Any], k: int) -> npt.NDArray[np.int64]:
    from clusterlens.cluster._large import candidate_codes

    return candidate_codes(state["labels"], state["top"], k)


def _first(x: tuple[Any, Any]) -> Any:
    return x[0]


def _second(x: tuple[Any, Any]) -> Any:
    return x[1]


def _large_farthest(
    data: Any, lo: int, hi: int, shift: Any, q: int, state: dict[str, Any]
) -> tuple[Any, Any, Any, Any]:
    """The ``q`` rows of a shard farthest from their centres.

    Returns their stored positions, global row indices, distances and shifted
    float64 rows.
    """
    from clusterlens.cluster._large import _farthest

    _, rows = _large_rows(data, lo, hi, shift)
    far = _farthest(state["d2"], q)
    return (
        far,
        state["perm"][far] + lo,
        state["d2"][far],
        rows.f32(state["Xs"][far]).astype(np.float64),
    )


def _large_set_last(state: dict[str, Any], pos: Any, clusters: Any) -> dict[str, Any]:
    """The state with ``top[pos, -1] = clusters`` (re-seeded empty clusters)."""
    top = state["top"].copy()
    top[pos, -1] = clusters
    return {**state, "top": top}


def _union(a: Any, b: Any) -> Any:
    return np.union1d(a, b)


def _save_part(state: dict[str, Any], path: str) -> str:
    """Write a shard's large-k state (labels, top, perm) to ``path``; its SHA-256."""
    from clusterlens.utils._fs import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, perm=state["perm"], labels=state["labels"], top=state["top"])
    data = buf.getvalue()
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def _load_part(
    data: Any, lo: int, hi: int, shift: Any, path: str, sha256: str
) -> dict[str, Any]:
    """A shard's state from its checkpoint part (rows re-read and re-sorted)."""
    raw = Path(path).read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise DataValidationError(
            f"The checkpoint part {path} is corrupt (its digest does not match). "
            "Start the fit again without resuming."
        )
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        perm, labels, top = z["perm"], z["labels"], z["top"]
    X, rows = _large_rows(data, lo, hi, shift)
    if perm.shape != (hi - lo,):
        raise DataValidationError(
            f"The checkpoint part {path} holds {perm.shape[0]} rows, the shard "
            f"X[{lo}:{hi}] {hi - lo}: resume with the same data and shard size."
        )
    Xs = rows.to_store(np.asarray(X)[perm])
    return {"Xs": Xs, "perm": perm, "labels": labels, "top": top, "d2": None}


# --------------------------------------------------------------------------- #
# The drivers (client side)
# --------------------------------------------------------------------------- #
def _identity(x: Any) -> Any:
    return x


def _put(c: Any, x: Any) -> Any:
    """Send ``x`` to the cluster as a task: recomputed, not lost, with its worker.

    (Scattered data that dies with a worker cannot be rebuilt by Dask; a
    task's result can. Workers fetch it from each other, not the client.)
    """
    return c.submit(_identity, x, pure=False)


def _tree_reduce(client: Any, futures: list[Any], op: Any = None) -> Any:
    """Pairwise ``op`` along a binary tree fixed by shard index (deterministic).

    The combining tasks run before pending shard tasks (a higher priority), so
    a worker holds a few partials at a time, not one per shard.
    """
    op = _add if op is None else op
    level = 0
    while len(futures) > 1:
        level += 1
        nxt = [
            client.submit(op, futures[i], futures[i + 1], pure=False, priority=level)
            for i in range(0, len(futures) - 1, 2)
        ]
        if len(futures) % 2:
            nxt.append(futures[-1])
        futures = nxt
    return futures[0]


@dataclass(frozen=True)
class Checkpoint:
    """A sharded fit's checkpoint folder, fingerprint, and whether to resume."""

    directory: Path
    fingerprint: str
    resume: bool


def _file_source(source: Any, X: Any) -> _FileSource | None:
    """The file workers can open themselves for ``source`` (a path or a .npy memmap)."""
    if isinstance(source, str | os.PathLike):
        return _FileSource(str(Path(source).resolve()), tuple(X.shape), str(X.dtype))
    fn = getattr(source, "filename", None)
    if isinstance(source, np.memmap) and fn and str(fn).endswith(".npy"):
        with contextlib.suppress(Exception):
            whole = open_descriptors(fn)
            if whole.shape == source.shape and whole.dtype == source.dtype:
                return _FileSource(
                    str(Path(fn).resolve()), tuple(X.shape), str(X.dtype)
                )
    return None


class DaskData:
    """X cut into contiguous shards on a Dask cluster, for the k-means drivers.

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

    def __enter__(self) -> DaskData:
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

    # -- exact Lloyd ----------------------------------------------------------
    def lloyd(
        self,
        centers0: npt.NDArray[np.float64],
        *,
        engine: Engine,
        max_iter: int,
        tol: float,
        verbose: int = 0,
        desc: str = "k-means (dask)",
        checkpoint: Checkpoint | None = None,
    ) -> Any:
        """Exact Lloyd; ``tol`` is absolute (summed squared centre shift)."""
        from clusterlens.cluster._checkpoint import load_arrays, save_arrays
        from clusterlens.cluster._driver import LloydResult

        c = self.client
        n = self.n
        history: list[dict[str, Any]] = []
        converged = False
        prev_digests: tuple[str, ...] | None = None
        start = 0
        if checkpoint is not None and checkpoint.resume:
            arrays, meta = load_arrays(checkpoint.directory, checkpoint.fingerprint)
            _check_kind(checkpoint, meta, "dask-exact")
            centers, origin = arrays["centers"], arrays["origin"]
            history = list(meta.get("history", []))
            start = int(meta["iteration"])
            converged = bool(meta.get("converged", False))
            prev_digests = tuple(meta.get("digests") or ()) or None
        else:
            centers = np.array(centers0, dtype=np.float64, order="C")
            origin = centers.mean(axis=0)
        origin_f = _put(c, origin)
        n_iter = start
        bar = progress(total=max_iter, desc=desc, verbose=verbose, unit="iter")
        bar.update(start)
        try:
            for it in range(start, max_iter):
                if converged:
                    break
                t0 = time.perf_counter()
                centers_f = _put(c, centers)
                parts = self._map(_shard_step, centers_f, origin_f, engine.name)
                total = c.gather(_tree_reduce(c, parts))
                inertia = float(total["inertia"])
                if not np.isfinite(inertia):
                    raise DataValidationError(
                        "Input X contains NaN or infinity. Remove or impute those "
                        "rows before clustering."
                    )
                sums, weights = total["sums"], total["weights"]
                strict = prev_digests == total["digests"]
                prev_digests = total["digests"]
                empty = np.flatnonzero(weights <= 1e-12 * n)
                repaired = 0
                if empty.size:
                    sums[empty] = 0.0
                    weights[empty] = 0.0
                    repaired = self._repair(
                        centers_f, origin_f, engine, empty, sums, weights
                    )
                if repaired:
                    # Relocated points changed label after the digest was taken.
                    prev_digests = None
                new_centers = engine.update(sums, weights, centers, None)
                shift = float(((new_centers - centers) ** 2).sum())
                centers = new_centers
                n_iter = it + 1
                seconds = time.perf_counter() - t0
                history.append(
                    {
                        "iteration": n_iter,
                        "inertia": inertia,
                        "moved": 0 if strict else -1,
                        "center_shift": shift,
                        "empty_repaired": repaired,
                        "seconds": seconds,
                    }
                )
                converged = (strict and repaired == 0) or shift <= tol
                if checkpoint is not None:
                    save_arrays(
                        checkpoint.directory,
                        {"centers": centers, "origin": origin},
                        {
                            "kind": "dask-exact",
                            "iteration": n_iter,
                            "history": history,
                            "converged": converged,
                            "digests": list(prev_digests or ()),
                        },
                        checkpoint.fingerprint,
                    )
                bar.set_postfix_str(
                    f"inertia={inertia:.5g} {seconds:.2f}s/it", refresh=False
                )
                bar.update(1)
                if verbose >= 2:
                    logger.debug("dask k-means iteration %d: %s", n_iter, history[-1])
            if converged:
                bar.total = n_iter
                bar.refresh()
        finally:
            bar.close()
        # Labels and distances of the final centres, gathered in shard order.
        out = c.gather(
            self._map(_shard_assign, _put(c, centers), origin_f, engine.name)
        )
        labels = np.concatenate([o[0] for o in out])
        dist = np.concatenate([o[1] for o in out])
        inertia = float(sum(float(np.sum(o[1], dtype=np.float64)) for o in out))
        return LloydResult(
            centers=centers,
            labels=labels,
            distances=dist,
            inertia=inertia,
            n_iter=n_iter,
            converged=converged,
            history=history,
        )

    def _repair(
        self,
        centers_f: Any,
        origin_f: Any,
        eng: Engine,
        empty: npt.NDArray[np.intp],
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
    ) -> int:
        """Re-seed empty clusters exactly as the local driver's ``_relocate_empty``.

        Each shard returns its farthest ``q`` points; the merged candidates (in
        global index order) go through the local function, which picks by
        decreasing distance, ties by index: the global top ``q`` are among them.
        """
        q = min(self.n, 4 * empty.size + 16)
        got = self.client.gather(
            self._map(_shard_farthest, centers_f, origin_f, eng.name, q)
        )
        labels = np.concatenate([g[2] for g in got])
        dist = np.concatenate([g[1] for g in got])
        rows = np.concatenate([g[3] for g in got])
        return _relocate_empty(rows, empty, sums, weights, labels, dist, None)

    # -- large-k Lloyd ---------------------------------------------------------
    def large_k_lloyd(
        self,
        centers_init: npt.NDArray[np.float64],
        *,
        max_iter: int,
        tol: float,
        n_candidates: int = 3,
        refresh_every: int = 0,
        n_probe: int = 4,
        n_groups: int | None = None,
        seed: int = 0,
        verbose: int = 0,
        desc: str = "k-means (large-k, dask)",
        checkpoint: Checkpoint | None = None,
    ) -> Any:
        """The local large-k driver's passes, shard by shard.

        Every pass of :func:`clusterlens.cluster._large.large_k_lloyd` is a
        function of each row, its kept candidates and, in a candidate pass,
        its cluster's candidate union: each shard keeps its rows (sorted by
        label), labels and candidates on its worker, the union is merged on
        the workers, and only centres, the index, per-cluster sums and counts
        pass through the client. Labels equal the local driver's.
        """
        from clusterlens.cluster._checkpoint import load_arrays
        from clusterlens.cluster._large import CoarseIndex, LargeKResult

        c = self.client
        k = int(np.shape(centers_init)[0])
        r = max(1, int(n_candidates))
        history: list[dict[str, Any]] = []
        converged = False
        it = 0
        states: list[Any] | None = None
        codes_f: Any = None
        if checkpoint is not None and checkpoint.resume:
            arrays, meta = load_arrays(checkpoint.directory, checkpoint.fingerprint)
            _check_kind(checkpoint, meta, "dask-large")
            if [list(b) for b in meta.get("bounds", [])] != [
                list(b) for b in self.bounds
            ]:
                raise DataValidationError(
                    f"The checkpoint in {checkpoint.directory} was written with other "
                    "shards: resume with the same shard size."
                )
            shift, Cs = arrays["shift"], arrays["centers"]
            history = list(meta.get("history", []))
            it = int(meta["iteration"])
            converged = bool(meta.get("converged", False))
            shift_f = _put(c, shift)
            states = [
                c.submit(
                    _load_part,
                    dt,
                    lo,
                    hi,
                    shift_f,
                    str(checkpoint.directory / p),
                    sha,
                    pure=False,
                )
                for dt, (lo, hi), (p, sha) in zip(
                    self.datas, self.bounds, meta["parts"], strict=True
                )
            ]
        else:
            shift = np.asarray(centers_init, np.float64).mean(axis=0)
            Cs = np.asarray(centers_init, np.float64) - shift
            shift_f = _put(c, shift)
        bar = progress(total=max_iter, desc=desc, verbose=verbose, unit="iter")
        bar.update(it)
        try:
            while not converged and it < max_iter:
                t0 = time.perf_counter()
                if states is None or (refresh_every > 0 and it % refresh_every == 0):
                    index = CoarseIndex(
                        Cs, n_groups=n_groups, n_probe=n_probe, seed=seed + it
                    )
                    outs = self._map(
                        _large_index_step,
                        shift_f,
                        _put(c, index),
                        r,
                        per_shard=states or [None] * len(self.bounds),
                    )
                    kind = "index"
                else:
                    if codes_f is None:
                        codes_f = self._codes(states, k)
                    outs = self._map(
                        _large_candidate_step,
                        shift_f,
                        _put(c, Cs),
                        codes_f,
                        per_shard=states,
                    )
                    kind = "candidates"
                states = [c.submit(_first, o, pure=False) for o in outs]
                summaries = [c.submit(_second, o, pure=False) for o in outs]
                total = c.gather(_tree_reduce(c, summaries))
                sums, counts = total["sums"], total["weights"]
                inertia, moved = float(total["inertia"]), int(total["moved"])
                empty = np.flatnonzero(counts == 0)
                new_Cs = Cs.copy()
                ok = counts > 0
                new_Cs[ok] = sums[ok] / counts[ok, None]
                if empty.size:
                    self._reseed(states, shift_f, empty, new_Cs)
                shift2 = float(((new_Cs - Cs) ** 2).sum())
                Cs = new_Cs
                codes_f = None  # of the new states, when a candidate pass needs them
                it += 1
                seconds = time.perf_counter() - t0
                history.append(
                    {
                        "iteration": it,
                        "inertia": inertia,
                        "moved": moved,
                        "center_shift": shift2,
                        "empty_repaired": int(empty.size),
                        "seconds": seconds,
                        "pass": kind,
                    }
                )
                converged = (moved == 0 and empty.size == 0) or shift2 <= tol
                if checkpoint is not None:
                    self._save_large(
                        checkpoint, states, Cs, shift, it, history, converged
                    )
                bar.set_postfix_str(
                    f"inertia={inertia:.5g} moved={moved} {seconds:.2f}s/it",
                    refresh=False,
                )
                bar.update(1)
                if verbose >= 2:
                    logger.debug("%s iteration %d: %s", desc, it, history[-1])
            if converged:
                bar.total = it
                bar.refresh()
        finally:
            bar.close()
        assert states is not None
        if codes_f is None:
            codes_f = self._codes(states, k)
        out = c.gather(
            self._map(_large_final, shift_f, _put(c, Cs), codes_f, per_shard=states)
        )
        labels = np.concatenate([o[0] for o in out])
        dist = np.concatenate([o[1] for o in out])
        return LargeKResult(
            centers=Cs + shift,
            labels=labels,
            distances=dist,
            inertia=float(sum(float(o[1].sum(dtype=np.float64)) for o in out)),
            n_iter=it,
            converged=converged,
            history=history,
        )

    def _codes(self, states: list[Any], k: int) -> Any:
        """Every cluster's candidate union over all shards, as a future."""
        c = self.client
        parts = [c.submit(_large_codes, s, k, pure=False) for s in states]
        return _tree_reduce(c, parts, _union)

    def _reseed(
        self,
        states: list[Any],
        shift_f: Any,
        empty: npt.NDArray[np.intp],
        new_Cs: npt.NDArray[np.float64],
    ) -> None:
        """Empty clusters take the rows farthest from their centres (as locally)."""
        m = int(empty.size)
        got = self.client.gather(
            self._map(_large_farthest, shift_f, m, per_shard=states)
        )
        shard = np.concatenate([np.full(g[0].size, i) for i, g in enumerate(got)])
        pos = np.concatenate([g[0] for g in got])
        gidx = np.concatenate([g[1] for g in got])
        dd = np.concatenate([g[2] for g in got])
        rows = np.concatenate([g[3] for g in got])
        pick = np.lexsort((gidx, -dd))[:m]
        new_Cs[empty[: pick.size]] = rows[pick]
        ids = empty[: pick.size]
        for i in np.unique(shard[pick]):
            sel = shard[pick] == i
            states[i] = self.client.submit(
                _large_set_last, states[i], pos[pick][sel], ids[sel], pure=False
            )

    def _save_large(
        self,
        ckpt: Checkpoint,
        states: list[Any],
        Cs: npt.NDArray[np.float64],
        shift: npt.NDArray[np.float64],
        it: int,
        history: list[dict[str, Any]],
        converged: bool,
    ) -> None:
        """Workers write their shards' states, then the client the JSON naming them."""
        import shutil

        from clusterlens.cluster._checkpoint import save_arrays

        folder = f"dask-parts-{it:06d}"
        (ckpt.directory / folder).mkdir(parents=True, exist_ok=True)
        names = [f"{folder}/part-{i:05d}.npz" for i in range(len(states))]
        shas = self.client.gather(
            [
                self.client.submit(_save_part, s, str(ckpt.directory / p), pure=False)
                for s, p in zip(states, names, strict=True)
            ]
        )
        save_arrays(
            ckpt.directory,
            {"centers": Cs, "shift": shift},
            {
                "kind": "dask-large",
                "iteration": it,
                "history": history,
                "converged": converged,
                "bounds": [list(b) for b in self.bounds],
                "parts": [[p, h] for p, h in zip(names, shas, strict=True)],
            },
            ckpt.fingerprint,
        )
        for old in ckpt.directory.glob("dask-parts-*"):  # once the JSON names the new
            if old.name != folder:
                shutil.rmtree(old, ignore_errors=True)


def _check_kind(ckpt: Checkpoint, meta: dict[str, Any], kind: str) -> None:
    if meta.get("kind") != kind:
        raise DataValidationError(
            f"The checkpoint in {ckpt.directory} is of a {meta.get('kind')!r} fit, "
            f"not {kind!r}: resume with the same backend and mode, or start again."
        )


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
    from clusterlens.cluster._kmeans import _kmeans

    return _kmeans(
        X,
        n_clusters,
        backend="dask",
        dask_options={
            "client": client,
            "scheduler": scheduler,
            "timeout": check_real(timeout, "timeout", _OWNER, low=0.0),
            "shard_rows": check_int(shard_rows, "shard_rows", _OWNER, low=1),
        },
        **kwargs,
    )
