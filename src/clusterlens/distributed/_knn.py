"""The shared k-NN search (``knn_graph(..., backend="dask")``) on a Dask cluster.

Both modes cut the work into tasks that each worker does from the rows it
reads itself (the ``.npy`` file memory-mapped, same path on every worker, or
one copy of an in-memory array sent to the cluster as a task result), and
the client writes each task's rows in place as it finishes.

*Exact.* Each task searches a shard of query rows (whole blocks of
``BLOCK_ROWS``) against every row; the worker builds the searched matrix once
(the file itself when it is float32 and not normalised, else its normalised
copy) and keeps it for the next tasks.

*Approximate.* The client trains the cells' k-means on the seeded sample, as
the local backend does; one distributed pass gives every row its two nearest
centres; the client orders the rows by cell and picks each cell's probed
cells; then each task searches a contiguous range of cells (about
``shard_rows`` rows), reading the rows of its cells and of their probed
cells.

Every faiss call is the local backend's call on the same rows (faiss picks
its kernel, and so its rounding, by the size of a call), so the graph has
the local indices and distances equal up to float rounding (bit for bit in
the tests; at 130,000 x 128, 4 rows' distances differed by under 1e-6, cause
not yet found). Tasks are pure functions of their arguments: a
task lost with its worker is run again elsewhere, and the plan it reads is a
task result Dask can rebuild.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens._config import get_config
from clusterlens.distributed._client import (
    _file_source,
    _FileSource,
    _put,
    _rows,
    _worker_threads,
    dask_client,
)
from clusterlens.distributed._map import map_shards
from clusterlens.features._knn import (
    CellPlan,
    cell_plan,
    knn_blocks,
    prepared_rows,
    register_knn_search,
    search_cells,
    train_centres,
    train_ids,
)

__all__ = ["dask_knn_search"]

logger = logging.getLogger(__name__)

#: Default number of tasks per pass (fewer for small inputs).
_TASKS = 16


def _what(data: Any) -> str:
    return repr(data.path) if isinstance(data, _FileSource) else "X"


def _all_rows(data: Any) -> Any:
    """The whole input on a worker: the memory-mapped file or the sent array."""
    if isinstance(data, _FileSource):
        return _rows(data, 0, data.shape[0])  # checks shape and dtype
    return data


@lru_cache(maxsize=1)
def _database(
    data: _FileSource, mtime_ns: int, normalize: bool
) -> npt.NDArray[np.float32]:
    """The searched matrix, built once per worker for a file.

    A float32 file searched as it is costs no copy (the page cache is shared
    by the workers of a machine); otherwise its normalised float32 copy.
    """
    A = _all_rows(data)
    if not normalize and A.dtype == np.float32:
        db = np.ascontiguousarray(A)
        step = 65_536
        for lo in range(0, db.shape[0], step):
            prepared_rows(db[lo : lo + step], False, lo, _what(data))
        return db
    out = np.empty(A.shape, dtype=np.float32)
    step = 65_536
    for lo in range(0, A.shape[0], step):
        out[lo : lo + step] = prepared_rows(
            A[lo : lo + step], normalize, lo, _what(data)
        )
    return out


def _db(data: Any, normalize: bool) -> npt.NDArray[np.float32]:
    if isinstance(data, _FileSource):
        return _database(data, os.stat(data.path).st_mtime_ns, normalize)
    return prepared_rows(data, normalize, 0, "X")


def _exact_task(
    lo: int, hi: int, data: Any, normalize: bool, kk: int, block_rows: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Worker task: the ``kk`` nearest rows of query rows ``lo:hi``."""
    import faiss

    db = _db(data, normalize)
    with _worker_threads():
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(_threads())
        try:
            return knn_blocks(db[lo:hi], db, kk, block_rows)
        finally:
            faiss.omp_set_num_threads(threads)


def _threads() -> int:
    from clusterlens._config import effective_n_threads

    return effective_n_threads()


def _assign_task(
    lo: int,
    hi: int,
    data: Any,
    normalize: bool,
    centres: npt.NDArray[np.float32],
    block_rows: int,
) -> npt.NDArray[np.int64]:
    """Worker task: the two nearest centres of rows ``lo:hi``."""
    import faiss

    rows = prepared_rows(_all_rows(data)[lo:hi], normalize, lo, _what(data))
    with _worker_threads():
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(_threads())
        try:
            return knn_blocks(rows, centres, 2, block_rows)[1]
        finally:
            faiss.omp_set_num_threads(threads)


class _CellRows:
    """The rows of each cell, read from the input and kept while memory allows."""

    def __init__(self, data: Any, plan: CellPlan, normalize: bool) -> None:
        self.A = _all_rows(data)
        self.plan, self.normalize, self.what = plan, normalize, _what(data)
        self.budget = int(get_config()["working_memory"] * 2**20) // 2
        self.used = 0
        self.kept: OrderedDict[int, npt.NDArray[np.float32]] = OrderedDict()

    def __call__(self, c: int) -> npt.NDArray[np.float32]:
        got = self.kept.get(c)
        if got is not None:
            self.kept.move_to_end(c)
            return got
        b = self.plan.bounds
        ids = self.plan.order[b[c] : b[c + 1]]  # increasing: reads in file order
        rows = prepared_rows(self.A[ids], self.normalize, 0, self.what)
        self.kept[c] = rows
        self.used += rows.nbytes
        while self.used > self.budget and len(self.kept) > 1:
            _, old = self.kept.popitem(last=False)
            self.used -= old.nbytes
        return rows


def _cells_task(
    c0: int, c1: int, data: Any, normalize: bool, plan: CellPlan, kk: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Worker task: the neighbours of the rows of cells ``c0:c1``."""
    rows_of = _CellRows(data, plan, normalize)
    with _worker_threads():
        return search_cells(c0, c1, plan, rows_of, kk, _threads())


def _row_shards(
    n: int, shard_rows: int | None, block_rows: int
) -> list[tuple[int, int]]:
    """Contiguous shards of whole blocks (the last one ends at ``n``)."""
    if shard_rows is None:
        shard_rows = -(-n // _TASKS)
    blocks = max(1, -(-int(shard_rows) // block_rows))
    size = blocks * block_rows
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _cell_shards(
    bounds: npt.NDArray[np.int64], shard_rows: int
) -> list[tuple[int, int]]:
    """Contiguous ranges of cells of about ``shard_rows`` rows each."""
    nlist = bounds.shape[0] - 1
    cuts = np.searchsorted(bounds, np.arange(shard_rows, bounds[-1], shard_rows))
    edges = np.unique(np.concatenate([[0], np.clip(cuts, 1, nlist), [nlist]]))
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


@register_knn_search("dask")
def dask_knn_search(
    source: Any,
    A: Any,
    kk: int,
    *,
    exact: bool,
    nlist: int,
    n_probe: int,
    seed: int,
    normalize: bool,
    block_rows: int,
    shard_rows: int | None = None,
    verbose: int = 0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """``(distances, indices)`` with ``kk`` columns (self included), as the local
    search of :func:`clusterlens.features._knn.knn_graph` returns them."""
    n = int(A.shape[0])
    dist = np.empty((n, kk), dtype=np.float32)
    idx = np.empty((n, kk), dtype=np.int64)
    src = _file_source(source, A)
    with dask_client() as c:
        data: Any = src if src is not None else _put(c, np.asarray(A))
        if exact:
            bounds = _row_shards(n, shard_rows, block_rows)

            def put(i: int, res: Any) -> None:
                lo, hi = bounds[i]
                dist[lo:hi], idx[lo:hi] = res

            map_shards(
                _exact_task,
                bounds,
                data,
                normalize,
                kk,
                block_rows,
                client=c,
                consume=put,
                desc="neighbours (dask)",
                unit="row",
                verbose=verbose,
            )
            return dist, idx
        # the cells' k-means on the client, on the local backend's sample
        ids = train_ids(n, nlist, seed)
        sample = prepared_rows(np.asarray(A[ids]), normalize, 0, "X")
        centres = train_centres(sample, nlist, seed)
        del sample
        assign = np.empty((n, 2), dtype=np.int64)
        bounds = _row_shards(n, shard_rows, block_rows)

        def put_assign(i: int, res: Any) -> None:
            lo, hi = bounds[i]
            assign[lo:hi] = res

        map_shards(
            _assign_task,
            bounds,
            data,
            normalize,
            _put(c, centres),
            block_rows,
            client=c,
            consume=put_assign,
            desc="cells (dask)",
            unit="row",
            verbose=verbose,
        )
        plan = cell_plan(centres, assign, n_probe)
        cells = _cell_shards(
            plan.bounds, -(-n // _TASKS) if shard_rows is None else int(shard_rows)
        )

        def put_cells(i: int, res: Any) -> None:
            c0, c1 = cells[i]
            rows = plan.order[plan.bounds[c0] : plan.bounds[c1]]
            dist[rows], idx[rows] = res

        map_shards(
            _cells_task,
            cells,
            data,
            normalize,
            _put(c, plan),
            kk,
            client=c,
            consume=put_cells,
            desc="neighbours (dask)",
            unit="cell",
            verbose=verbose,
        )
    return dist, idx
