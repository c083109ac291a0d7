"""``clusterlens features pixels``: resized raw pixels (a baseline)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.io._results import write_run
from clusterlens.io._workspace import (
    Workspace,
    check_image_root,
    unreadable_report,
)
from clusterlens.pipelines.features._common import (
    _cached_workspace,
    _default_shard_items,
    _gather_item_shards,
    _mtime,
    _write_dense,
)
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import check_int

__all__ = ["run_pixel_features"]

logger = logging.getLogger(__name__)


def run_pixel_features(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    size: int = 32,
    mode: str = "L",
    n_jobs: int = 2,
    pca: int | None = None,
    whiten: bool = False,
    random_state: int = 0,
    backend: str | None = None,
    shard_items: int | None = None,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Each item resized to ``size x size`` (``mode`` L or RGB), flattened to [0, 1].

    With ``backend="dask"`` the images are read and resized on the workers,
    one task per shard of ``shard_items`` items; the output is byte-identical.
    """
    from clusterlens._config import resolve_backend
    from clusterlens.features import pixel_features

    check_image_root(ws, "features pixels")
    stage = Path(os.fspath(stage))
    which = resolve_backend(backend)
    t0 = time.perf_counter()
    n = len(ws)
    extra: dict[str, Any] = {}
    if which == "dask":
        shard = (
            _default_shard_items(n)
            if shard_items is None
            else int(check_int(shard_items, "shard_items", "run_pixel_features", low=1))
        )
        extra = {"shard_items": shard}
        shape = (size, size) if mode == "L" else (size, size, 3)
        imgs = np.zeros((n, *shape), dtype=np.uint8)
        unreadable = _gather_item_shards(
            _pixel_shard,
            imgs,
            shard,
            str(ws.root.resolve()),
            size,
            mode,
            desc="pixels (dask)",
            verbose=verbose,
        )
    else:
        bar = progress(total=n, desc="pixels", unit="img", verbose=verbose)
        imgs, unreadable = _read_pixels(ws, 0, n, size, mode, n_jobs, bar.update)
        bar.close()
    report = unreadable_report(
        ws, "features pixels", unreadable, outcome="get zero pixels"
    )
    X = pixel_features(imgs)
    seconds = time.perf_counter() - t0
    info = _write_dense(stage, X, pca=pca, whiten=whiten, random_state=random_state)
    summary = {
        "n_items": n,
        **report,
        "seconds": seconds,
        "images_per_second": float(n / max(seconds, 1e-9)),
        **info,
    }
    write_run(
        stage,
        schema="clusterlens.features.pixels/1",
        command="features pixels",
        invocation=command,
        parameters={
            "workspace": str(ws.root.resolve()),
            "size": size,
            "mode": mode,
            "pca": pca,
            "whiten": whiten,
            "backend": which,
            **extra,
        },
        seed=random_state,
        results=summary,
    )
    return summary


def _read_pixels(
    ws: Workspace,
    lo: int,
    hi: int,
    size: int,
    mode: str,
    n_jobs: int,
    update: Any = None,
) -> tuple[npt.NDArray[np.uint8], list[int]]:
    """Items ``lo:hi`` resized (zeros for unreadable ones), and the unreadable ones."""
    shape = (size, size) if mode == "L" else (size, size, 3)
    imgs = np.zeros((hi - lo, *shape), dtype=np.uint8)
    unreadable: list[int] = []
    it = ws.iter_items(range(lo, hi), mode=mode, size=(size, size), n_jobs=n_jobs)
    for i, img in it:
        if img is None:
            unreadable.append(i)
        else:
            imgs[i - lo] = img
        if update is not None:
            update(1)
    return imgs, unreadable


def _pixel_shard(
    lo: int, hi: int, root: str, size: int, mode: str
) -> tuple[npt.NDArray[np.uint8], list[int]]:
    """Worker task: the resized pixels of items ``lo:hi`` and the unreadable ones."""
    ws = _cached_workspace(root, _mtime(Path(root) / "items.parquet"))
    return _read_pixels(ws, lo, hi, size, mode, 1)
