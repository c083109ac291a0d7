"""What the feature extractors share: shards, cached workspaces, dense output."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.io._workspace import Workspace

__all__: list[str] = []

logger = logging.getLogger(__name__)


def _default_shard_items(n: int) -> int:
    """Items per Dask task: a function of ``n`` only (a rerun finds the same shards)."""
    return int(min(256, max(8, -(-n // 64))))


def _mtime(p: Path) -> int:
    try:
        return os.stat(p).st_mtime_ns
    except OSError:
        return 0


@lru_cache(maxsize=4)
def _cached_workspace(root: str, mtime_ns: int) -> Workspace:
    """The workspace at ``root``, opened once per worker process (and version)."""
    from clusterlens.io import open_workspace

    return open_workspace(root)


# --------------------------------------------------------------------------- #
# Dense features: CNN embeddings and pixels, optionally PCA-reduced
# --------------------------------------------------------------------------- #
def _write_dense(
    stage: Path,
    X: npt.NDArray[np.float32],
    *,
    pca: int | None,
    whiten: bool,
    random_state: int,
) -> dict[str, Any]:
    from clusterlens.features import fit_pca

    info: dict[str, Any] = {"raw_dim": int(X.shape[1])}
    if pca is not None:
        model = fit_pca(X, pca, whiten=whiten, random_state=random_state)
        X = model.transform(X)
        model.save(stage / "pca")
        ev = model.explained_variance
        info["pca_explained_variance"] = float(ev.sum())
    np.save(stage / "features.npy", np.ascontiguousarray(X, dtype=np.float32))
    info["dim"] = int(X.shape[1])
    return info


def _gather_item_shards(
    fn: Any,
    out: npt.NDArray[Any],
    shard: int,
    *args: Any,
    desc: str,
    verbose: int,
) -> list[int]:
    """Dask tasks ``fn(lo, hi, *args) -> (rows, unreadable)`` over shards of items.

    Each shard's rows land in ``out[lo:hi]`` as it finishes; returns the
    indices of the unreadable items, sorted.
    """
    from clusterlens.distributed._map import map_shards, shard_bounds

    bounds = shard_bounds(out.shape[0], shard)
    bad: list[int] = []

    def put(i: int, res: tuple[npt.NDArray[Any], list[int]]) -> None:
        lo, hi = bounds[i]
        out[lo:hi] = res[0]
        bad.extend(int(j) for j in res[1])

    map_shards(fn, bounds, *args, consume=put, desc=desc, unit="img", verbose=verbose)
    return sorted(bad)
