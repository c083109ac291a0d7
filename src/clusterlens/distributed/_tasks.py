"""The worker-side tasks of the Dask k-means backend: pure functions of a shard.

*Exact passes.* One task per shard assigns its rows with the local engine
(the same chunked code as the local passes) and returns per-cluster float64
sums and counts, added pairwise along a binary tree fixed by shard index.

*Large-k passes.* A shard's state (its rows sorted by label, their labels
and kept candidates) stays on its worker between passes, as in the local
large-k passes; a lost state is rebuilt by Dask from its (pure) lineage.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens._config import effective_n_threads, get_config
from clusterlens.cluster import Engine, get_engine
from clusterlens.distributed._client import _rows, _worker_threads
from clusterlens.exceptions import DataValidationError
from clusterlens.utils._chunking import gen_batches


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
def _large_rows(data: Any, lo: int, hi: int, shift: Any) -> tuple[Any, Any]:
    from clusterlens.cluster._large import Rows, storage_dtype

    X = _rows(data, lo, hi)
    return X, Rows(shift, storage_dtype(X.dtype))


def _acc(k: int, d: int) -> list[tuple[Any, Any]]:
    n = max(1, effective_n_threads())
    return [(np.zeros((k, d)), np.zeros(k, np.int64)) for _ in range(n)]


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
    from clusterlens.cluster._large import CHUNK, sorted_sums

    with _worker_threads():
        X, rows = _large_rows(data, lo, hi, shift)
        n, d = hi - lo, X.shape[1]
        src = X if prev is None else prev["Xs"]
        top = np.empty((n, r), np.int32)
        d2 = np.empty(n, np.float32)
        for a in range(0, n, CHUNK):
            block = np.asarray(src[a : a + CHUNK])
            F = rows.f32(block if prev is not None else rows.to_store(block))
            ex = None if prev is None else prev["top"][a : a + CHUNK]
            top[a : a + CHUNK], d2[a : a + CHUNK] = index.search_f32(F, r, extra=ex)
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
        sorted_sums(Xs, rows, new, acc)
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
    from clusterlens.cluster._large import farthest_entries

    _, rows = _large_rows(data, lo, hi, shift)
    far = farthest_entries(state["d2"], q)
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
