"""The Dask client a fit runs on, and what every Dask task of clusterlens shares.

Where the rows are (a file each worker opens itself, or a scattered array),
how a small object is sent to the cluster so that it survives a lost worker
(:func:`_put`), and the deterministic pairwise reduction of partial results
(:func:`_tree_reduce`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens._config import get_config
from clusterlens.exceptions import BackendError, DataValidationError
from clusterlens.io import open_descriptors
from clusterlens.utils._optional import import_optional

__all__ = ["dask_client"]


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
# Where a shard's rows are
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


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Combine two partial results key by key (sums added, digest tuples joined).

    The order (a then b) is fixed by the caller.
    """
    return {key: a[key] + b[key] for key in a}


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
