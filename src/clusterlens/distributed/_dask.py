"""Exact k-means (Lloyd) with the data sharded on a Dask cluster.

The rows of X are cut into contiguous shards. Each iteration the client sends
only the centres to the workers; one task per shard assigns its rows with the
local engine (the same chunked code as :func:`clusterlens.cluster.kmeans`) and
returns per-cluster float64 sums and counts, which are added pairwise along a
binary tree fixed by shard index. The same data, shards and init therefore give
bit-identical centres on every run, and the local backend's labels (its
running sums, updated with the points that moved, differ by rounding only).

Data from a file (``.npy``, ``.bvecs``, ``.fvecs``, Oxford ``.bin``) never goes
through the client: each worker opens the file itself, memory-mapped, and reads
its row range. An in-memory array is scattered to the workers once per fit
(not replicated: use a file when workers may be lost).
Every task is a pure function of (shard, centres), so a task lost with a worker
is simply run again elsewhere by Dask and the fit ends as an undisturbed one.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from clusterlens.cluster._init import kmeans_plusplus, random_rows
from clusterlens.cluster._kmeans import KMeansResult
from clusterlens.exceptions import (
    BackendError,
    DataValidationError,
    InvalidParameterError,
)
from clusterlens.io import as_matrix, open_descriptors
from clusterlens.utils._chunking import gen_batches
from clusterlens.utils._optional import import_optional
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import (
    check_int,
    check_random_state,
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
    with (
        distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
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
    """Combine two partial results; the order (a then b) is fixed by the caller."""
    return {
        "sums": a["sums"] + b["sums"],
        "weights": a["weights"] + b["weights"],
        "inertia": a["inertia"] + b["inertia"],
        "digests": a["digests"] + b["digests"],
    }


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
# The driver (client side)
# --------------------------------------------------------------------------- #
def _identity(x: Any) -> Any:
    return x


def _put(c: Any, x: npt.NDArray[Any]) -> Any:
    """Send ``x`` to the cluster as a task: recomputed, not lost, with its worker.

    (Scattered data that dies with a worker cannot be rebuilt by Dask; a
    task's result can. Workers fetch it from each other, not the client.)
    """
    return c.submit(_identity, x, pure=False)


def _tree_reduce(client: Any, futures: list[Any]) -> Any:
    """Pairwise sums along a binary tree fixed by shard index (deterministic)."""
    while len(futures) > 1:
        nxt = [
            client.submit(_add, futures[i], futures[i + 1], pure=False)
            for i in range(0, len(futures) - 1, 2)
        ]
        if len(futures) % 2:
            nxt.append(futures[-1])
        futures = nxt
    return futures[0]


def dask_kmeans(
    X: Any,
    n_clusters: int,
    *,
    init: str | npt.ArrayLike = "k-means++",
    max_iter: int = 300,
    tol: float = 1e-4,
    engine: str = "numpy",
    init_size: int | None = None,
    random_state: Any = None,
    client: Any = None,
    scheduler: str | None = None,
    timeout: float = 10.0,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    verbose: int = 0,
) -> KMeansResult:
    """Exact k-means (Lloyd) with X sharded on a Dask cluster.

    The result equals :func:`clusterlens.cluster.kmeans` with ``mode="exact"``,
    ``n_init=1`` and the same ``init``, ``random_state``, ``engine``, ``tol``
    and ``max_iter``: labels equal, centres and inertia within float rounding
    (the local backend keeps running sums, this one re-sums every iteration).

    Parameters
    ----------
    X : {path, array-like} of shape (n_samples, n_features)
        A descriptor file path (``.npy``, ``.bvecs``, ``.fvecs``, ``.bin``) is
        opened by each worker itself, memory-mapped, at the same path: rows
        never pass through the client, and a lost worker's tasks are rerun.
        An array is scattered once per fit; its shards are not replicated, so
        a worker lost with them fails the fit (use a file on a cluster).
    n_clusters : int
    init : {"k-means++", "random"} or array of shape (n_clusters, n_features)
        Seeding runs on the client, on ``init_size`` rows (k-means++) or
        ``n_clusters`` rows (random), with the local backend's code and seed.
    max_iter : int, default=300
    tol : float, default=1e-4
        Relative to the mean per-feature variance of X, as in ``kmeans``.
    engine : str, default="numpy"
        A registered squared-Euclidean engine, run on each shard.
    init_size : int, default=None
    random_state : int, Generator or None
    client : distributed.Client, optional
    scheduler : str, optional
        Address of a running scheduler; unreachable within ``timeout``
        seconds raises :class:`BackendError`. See :func:`dask_client` for
        the order in which a client is chosen.
    timeout : float, default=10.0
    shard_rows : int, default=262144
        Rows per shard: one task per shard and iteration.
    verbose : int, default=0

    Returns
    -------
    KMeansResult
        ``history`` entries have ``moved`` set to -1 when points changed
        cluster (tasks keep no labels between iterations, so only whether
        any point moved is known) and 0 when none did.

    Notes
    -----
    Per iteration the client sends the (k, d) float64 centres and receives
    one (k, d) sum and k counts (float64) after the tree reduction; each
    worker additionally sends/receives one partial per tree level. An empty
    cluster is repaired as the local driver does (re-seeded at the point
    farthest from its centre whose cluster keeps other points): each shard
    returns its farthest candidates, merged by (distance, index).
    """
    t_start = time.perf_counter()
    is_path = isinstance(X, str | os.PathLike)
    Xm = as_matrix(X)
    n, d = Xm.shape
    k = check_int(n_clusters, "n_clusters", _OWNER, low=1)
    assert k is not None
    if k > n:
        raise DataValidationError(
            f"n_samples={n} should be >= n_clusters={k}. "
            "Use fewer clusters or more data."
        )
    max_iter_i = check_int(max_iter, "max_iter", _OWNER, low=1)
    assert max_iter_i is not None
    tol = check_real(tol, "tol", _OWNER, low=0.0)
    shard = check_int(shard_rows, "shard_rows", _OWNER, low=1)
    assert shard is not None
    timeout = check_real(timeout, "timeout", _OWNER, low=0.0)
    verbose = int(check_int(verbose, "verbose", _OWNER, low=0) or 0)
    eng = get_engine(engine, {"dtype": Xm.dtype, "metric": "sqeuclidean"})
    if eng.metric != "sqeuclidean" or not eng.monotone:
        raise InvalidParameterError(
            f"The Dask backend runs squared-Euclidean engines; got {engine!r}."
        )

    ti = time.perf_counter()
    if isinstance(init, str):
        if init not in ("k-means++", "random"):
            raise InvalidParameterError(
                f"The 'init' parameter of {_OWNER} must be 'k-means++', 'random' or "
                f"an array of shape (n_clusters, n_features); got {init!r}."
            )
        # kmeans() draws one seed per run from random_state: the same here.
        seed = int(check_random_state(random_state).integers(0, 2**63 - 1, size=1)[0])
        if init == "k-means++":
            size = init_size if init_size is not None else max(20 * k, 10_000)
            centers0, _ = kmeans_plusplus(
                Xm, k, sample_size=size, random_state=seed, engine=eng
            )
        else:
            centers0 = random_rows(Xm, k, random_state=seed)
    else:
        centers0 = np.array(init, dtype=np.float64)
        if centers0.shape != (k, d):
            raise DataValidationError(
                f"init has shape {centers0.shape}; expected (n_clusters, n_features) "
                f"= ({k}, {d})."
            )
        if not np.isfinite(centers0).all():
            raise DataValidationError("init contains NaN or infinity.")
    init_seconds = time.perf_counter() - ti

    bounds = [(lo, min(n, lo + shard)) for lo in range(0, n, shard)]
    with dask_client(client, scheduler, timeout=timeout) as c:
        if is_path:
            src = _FileSource(str(Path(X).resolve()), (n, d), str(Xm.dtype))
            datas: list[Any] = [src] * len(bounds)
        else:
            datas = [c.scatter(np.asarray(Xm[lo:hi]), hash=False) for lo, hi in bounds]
        res = _fit(c, datas, bounds, centers0, eng, max_iter_i, tol, verbose)
    centers, labels, dist, inertia, n_iter, converged, history = res
    return KMeansResult(
        centers=centers.astype(eng.working_dtype(Xm.dtype)),
        labels=labels,
        inertia=inertia,
        n_iter=n_iter,
        history=history,
        engine=f"dask:{eng.name}",
        converged=converged,
        init_seconds=init_seconds,
        fit_seconds=time.perf_counter() - t_start - init_seconds,
        distances=dist,
        mode="exact",
    )


def _fit(
    c: Any,
    datas: list[Any],
    bounds: list[tuple[int, int]],
    centers0: npt.NDArray[np.float64],
    eng: Engine,
    max_iter: int,
    tol: float,
    verbose: int,
) -> tuple[Any, Any, Any, float, int, bool, list[dict[str, Any]]]:
    n = bounds[-1][1]
    # Tolerance relative to the data's variance, combined per shard in order
    # (Chan et al.); this pass also rejects NaN/inf naming the rows.
    stats = c.gather(
        [
            c.submit(_shard_stats, dt, lo, hi, pure=False)
            for dt, (lo, hi) in zip(datas, bounds, strict=True)
        ]
    )
    counts = np.array([s[0] for s in stats], dtype=np.float64)
    means = np.array([s[1] for s in stats])
    mean = (counts[:, None] * means).sum(axis=0) / n
    m2 = sum(s[2] * s[0] + float(((s[1] - mean) ** 2).mean()) * s[0] for s in stats)
    tol_abs = tol * m2 / n

    centers = np.array(centers0, dtype=np.float64, order="C")
    origin = centers.mean(axis=0)
    origin_f = _put(c, origin)
    history: list[dict[str, Any]] = []
    converged = False
    prev_digests: tuple[str, ...] | None = None
    n_iter = 0
    bar = progress(total=max_iter, desc="k-means (dask)", verbose=verbose, unit="iter")
    try:
        for it in range(max_iter):
            t0 = time.perf_counter()
            centers_f = _put(c, centers)
            parts = [
                c.submit(
                    _shard_step, dt, lo, hi, centers_f, origin_f, eng.name, pure=False
                )
                for dt, (lo, hi) in zip(datas, bounds, strict=True)
            ]
            total = c.gather(_tree_reduce(c, parts))
            inertia = float(total["inertia"])
            if not np.isfinite(inertia):
                raise DataValidationError(
                    "Input X contains NaN or infinity. Remove or impute those rows "
                    "before clustering."
                )
            sums, weights = total["sums"], total["weights"]
            strict = prev_digests == total["digests"]
            prev_digests = total["digests"]
            empty = np.flatnonzero(weights <= 1e-12 * n)
            repaired = 0
            if empty.size:
                sums[empty] = 0.0
                weights[empty] = 0.0
                repaired = _repair(
                    c, datas, bounds, centers_f, origin_f, eng, empty, sums, weights
                )
            if repaired:
                # Relocated points changed label after the digest was taken.
                prev_digests = None
            new_centers = eng.update(sums, weights, centers, None)
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
            bar.set_postfix_str(
                f"inertia={inertia:.5g} {seconds:.2f}s/it", refresh=False
            )
            bar.update(1)
            if verbose >= 2:
                logger.debug("dask k-means iteration %d: %s", n_iter, history[-1])
            if (strict and repaired == 0) or shift <= tol_abs:
                converged = True
                bar.total = n_iter
                bar.refresh()
                break
    finally:
        bar.close()
    # Labels and distances of the final centres, gathered in shard order.
    centers_f = _put(c, centers)
    out = c.gather(
        [
            c.submit(
                _shard_assign, dt, lo, hi, centers_f, origin_f, eng.name, pure=False
            )
            for dt, (lo, hi) in zip(datas, bounds, strict=True)
        ]
    )
    labels = np.concatenate([o[0] for o in out])
    dist = np.concatenate([o[1] for o in out])
    inertia = float(sum(float(np.sum(o[1], dtype=np.float64)) for o in out))
    return centers, labels, dist, inertia, n_iter, converged, history


def _repair(
    c: Any,
    datas: list[Any],
    bounds: list[tuple[int, int]],
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
    n = bounds[-1][1]
    q = min(n, 4 * empty.size + 16)
    got = c.gather(
        [
            c.submit(
                _shard_farthest,
                dt,
                lo,
                hi,
                centers_f,
                origin_f,
                eng.name,
                q,
                pure=False,
            )
            for dt, (lo, hi) in zip(datas, bounds, strict=True)
        ]
    )
    labels = np.concatenate([g[2] for g in got])
    dist = np.concatenate([g[1] for g in got])
    rows = np.concatenate([g[3] for g in got])
    return _relocate_empty(rows, empty, sums, weights, labels, dist, None)
