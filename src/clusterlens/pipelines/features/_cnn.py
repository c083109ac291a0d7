"""``clusterlens features cnn``: CNN embeddings of every workspace item."""

from __future__ import annotations

import logging
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.io._results import write_run
from clusterlens.io._workspace import (
    CROP_MARGIN,
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

__all__ = ["cnn_calibration", "run_cnn_features"]

logger = logging.getLogger(__name__)


def run_cnn_features(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    backbone: str | None = None,
    image_size: int | None = None,
    fit: str = "squash",
    flip: bool = False,
    normalize: str = "auto",
    runtime: str = "auto",
    batch_size: int = 32,
    n_jobs: int = 2,
    l2: bool = False,
    pca: int | None = None,
    whiten: bool = False,
    smooth: int = 0,
    n_neighbors: int = 10,
    random_state: int = 0,
    backend: str | None = None,
    shard_items: int | None = None,
    box_margin: float = CROP_MARGIN,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
    scan: Any = None,
) -> dict[str, Any]:
    """Embed every workspace item with the CNN into ``stage/features.npy``.

    A box item (a ``--boxes`` workspace) is cropped with ``box_margin`` of
    the box's width (height) on each side, clipped to its image (see
    :meth:`Workspace.read_item`): the object with some context.

    Images are decoded by ``n_jobs`` threads while the network runs on
    ``n_jobs`` threads. Unreadable items get a zero row and are counted.
    The embeddings are then L2-normalised (``l2``), reduced by PCA (``pca``
    components, ``whiten``) and smoothed (``smooth`` rounds of
    ``n_neighbors``-NN averaging, :func:`clusterlens.features.knn_smooth`),
    each when asked, in that order.
    ``flip`` averages each embedding with its mirror image's (test-time
    augmentation, twice the compute). ``weights``, ``backbone``,
    ``image_size`` (None: the backbone's native side), ``normalize`` and
    ``runtime`` are those of :class:`~clusterlens.features.CnnEmbedder` (an
    EfficientNet-Lite state dict, or a network saved with ``torch.export`` or
    TorchScript; torch or ONNX Runtime, "auto" taking ONNX Runtime when it is
    installed). ``run.json`` records the runtime that ran.

    With ``backend="dask"`` (or that configured default) each shard of
    ``shard_items`` consecutive items (default: a multiple of ``batch_size``)
    is one task: every worker process loads the network once, runs torch on
    one thread, reads its images from the workspace itself (same path on
    every worker) and returns the shard's rows, which the client writes in
    place. The features equal the local backend's up to float rounding
    (torch may pick other kernels for other batch compositions and thread
    counts); PCA, if asked, runs on the client as on the local backend.

    ``scan`` (a :class:`~clusterlens.pipelines.curate.ScanPass`; the local
    backend and whole-image items only) also gets every image as decoded (at
    the scan's size), so ``explore`` decodes each image once for both stages.
    """
    from clusterlens._config import resolve_backend
    from clusterlens.features import CnnEmbedder
    from clusterlens.features._effnet import (
        BACKBONES,
        adapted_image_size,
        check_backbone,
    )

    if backbone is not None:
        backbone = check_backbone(backbone, "run_cnn_features")
    if image_size is None:
        image_size = (
            BACKBONES[backbone or "lite0"][3]
            if weights is None
            else adapted_image_size(weights) or 224
        )
    check_image_root(ws, "features cnn")
    stage = Path(os.fspath(stage))
    which = resolve_backend(backend)
    if scan is not None and (which == "dask" or _has_boxes(ws)):
        raise ValueError("scan= needs the local backend and whole-image items")
    t0 = time.perf_counter()
    n = len(ws)
    extra: dict[str, Any] = {}
    if which == "dask":
        size = (
            -(-_default_shard_items(n) // batch_size) * batch_size
            if shard_items is None
            else int(check_int(shard_items, "shard_items", "run_cnn_features", low=1))
        )
        extra = {"shard_items": size}
        wpath = None if weights is None else str(Path(os.fspath(weights)).resolve())
        # built here too: a bad weights file fails before any task is sent,
        # and the embedding width is known
        root = str(ws.root.resolve())
        emb = _cached_embedder(
            wpath,
            _stamp(wpath),
            image_size,
            fit,
            flip,
            normalize,
            runtime,
            root,
            backbone,
        )
        X = np.zeros((n, emb.dim), dtype=np.float32)
        unreadable = _gather_item_shards(
            _cnn_shard,
            X,
            size,
            str(ws.root.resolve()),
            wpath,
            image_size,
            fit,
            batch_size,
            flip,
            normalize,
            runtime,
            root,
            float(box_margin),
            backbone,
            desc="cnn (dask)",
            verbose=verbose,
        )
    else:
        emb = CnnEmbedder(
            weights,
            backbone=backbone,
            image_size=image_size,
            fit=fit,
            n_threads=n_jobs,
            flip=flip,
            normalize=normalize,
            runtime=runtime,
            calibration=cnn_calibration(ws) if runtime == "onnx-int8" else None,
        )
        bar = progress(total=n, desc="cnn", unit="img", verbose=verbose)
        X, unreadable = _cnn_embed(
            ws, emb, 0, n, batch_size, n_jobs, bar.update, margin=box_margin, scan=scan
        )
        bar.close()
    report = unreadable_report(
        ws, "features cnn", unreadable, outcome="get a zero feature row"
    )
    seconds = time.perf_counter() - t0
    if l2:  # an unreadable item's zero row stays zero
        X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    info = _write_dense(stage, X, pca=pca, whiten=whiten, random_state=random_state)
    if smooth:
        from clusterlens.features import knn_smooth

        t1 = time.perf_counter()
        Z = knn_smooth(np.load(stage / "features.npy"), smooth, n_neighbors)
        np.save(stage / "features.npy", Z)
        info["smooth_seconds"] = time.perf_counter() - t1
    summary = {
        "n_items": n,
        **report,
        "seconds": seconds,
        "images_per_second": float(n / max(seconds, 1e-9)),
        **info,
    }
    write_run(
        stage,
        schema="clusterlens.features.cnn/1",
        command="features cnn",
        invocation=command,
        parameters={
            "workspace": str(ws.root.resolve()),
            "arch": emb.arch,
            "backbone": emb.backbone,
            "weights": str(weights) if weights else BACKBONES[emb.backbone][0],
            "image_size": image_size,
            "fit": fit,
            "flip": flip,
            "normalize": emb.normalize,
            "runtime": emb.runtime,
            "precision": emb.precision,
            "batch_size": batch_size,
            "box_margin": float(box_margin) if _has_boxes(ws) else None,
            "n_jobs": n_jobs,
            "l2": l2,
            "pca": pca,
            "whiten": whiten,
            "smooth": smooth,
            "n_neighbors": n_neighbors,
            "backend": which,
            **extra,
        },
        seed=random_state,
        results=summary,
    )
    return summary


def _has_boxes(ws: Workspace) -> bool:
    """Whether some item of ``ws`` is a box crop (finite ``bbox_w``)."""
    return bool(np.isfinite(np.asarray(ws.items["bbox_w"], dtype=np.float64)).any())


def cnn_calibration(ws: Workspace, n: int = 64) -> list[npt.NDArray[np.uint8]]:
    """Up to ``n`` readable images spread evenly over the workspace (int8 ranges).

    The same workspace always gives the same images, so the int8 model of a
    workspace is found again in the cache (e.g. by ``clusterlens similar``).
    """
    idx = np.unique(np.linspace(0, len(ws) - 1, min(n, len(ws))).astype(np.int64))
    return [
        img for _, img in ws.iter_items(idx, mode="RGB", n_jobs=2) if img is not None
    ]


def _cnn_embed(
    ws: Workspace,
    emb: Any,
    lo: int,
    hi: int,
    batch_size: int,
    n_jobs: int,
    update: Any = None,
    margin: float = 0.0,
    scan: Any = None,
) -> tuple[npt.NDArray[np.float32], list[int]]:
    """Embeddings of items ``lo:hi`` (zero rows for unreadable ones), and those.

    With ``n_jobs > 1`` each image is decoded and preprocessed (resized and
    normalised; PIL and numpy release the GIL) by the same worker thread, so
    both overlap the network instead of waiting for it.

    ``scan`` (a :class:`clusterlens.pipelines.curate.ScanPass`, whole-image
    items only) is handed every image as decoded at the scan's size (a JPEG
    at a DCT scale of at least ``scan.MIN_SIZE``), so the scan of ``explore``
    needs no decoding of its own.
    """
    from concurrent.futures import ThreadPoolExecutor

    def _prepared(i: int) -> tuple[int, npt.NDArray[np.float32] | None]:
        if scan is not None:
            try:
                full = ws.read_item(i, min_size=scan.MIN_SIZE)
            except Exception as e:  # any decoder failure: unreadable for both
                scan.fail(i, e)
                return i, None
            scan.add(i, full)
            return i, emb.preprocess(full)
        # a JPEG decodes at the smallest DCT scale still >= the network's input
        side = (emb.image_size, emb.image_size)
        for j, img in ws.iter_items([i], mode="RGB", margin=margin, min_size=side):
            return j, None if img is None else emb.preprocess(img)
        return i, None  # unreachable: iter_items yields one pair per index

    X = np.zeros((hi - lo, emb.dim), dtype=np.float32)
    unreadable: list[int] = []
    batch_idx: list[int] = []
    batch: list[npt.NDArray[np.float32]] = []

    def _flush() -> None:
        if batch:
            X[batch_idx] = emb.embed_batch(np.stack(batch))
            if update is not None:
                update(len(batch))
            batch_idx.clear()
            batch.clear()

    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        for i, x in _bounded_map(pool, _prepared, range(lo, hi), 2 * batch_size):
            if x is None:
                unreadable.append(i)
                if update is not None:
                    update(1)
                continue
            batch_idx.append(i - lo)
            batch.append(x)
            if len(batch) == batch_size:
                _flush()
        _flush()
    return X, unreadable


def _bounded_map(pool: Any, fn: Any, items: Any, ahead: int) -> Any:
    """``pool.map(fn, items)`` with at most ``ahead`` results in flight.

    ``Executor.map`` submits every item at once: when decoding outruns the
    network (small images), every prepared input would wait in memory (100,000
    CIFAR-sized inputs at 160 px: 30 GB). Here the decode threads stay
    ``ahead`` items in front of the consumer, in order.
    """
    from collections import deque

    it = iter(items)
    pending: deque[Any] = deque()
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            break
    while pending:
        out = pending.popleft().result()
        nxt = next(it, _END)
        if nxt is not _END:
            pending.append(pool.submit(fn, nxt))
        yield out


_END = object()


def _stamp(weights: str | None) -> int:
    """The weights file's mtime: a file rewritten in place is loaded again."""
    return 0 if weights is None else _mtime(Path(weights))


@lru_cache(maxsize=2)
def _cached_embedder(
    weights: str | None,
    stamp: int,
    image_size: int,
    fit: str,
    flip: bool = False,
    normalize: str = "auto",
    runtime: str = "auto",
    root: str | None = None,
    backbone: str | None = None,
) -> Any:
    """The CNN, built once per worker process, on one thread.

    ``stamp`` (the file's mtime) is only part of the cache key; the int8
    runtime calibrates on images of the workspace at ``root``.
    """
    from clusterlens.features import CnnEmbedder

    calibration = None
    if runtime == "onnx-int8" and root is not None:
        calibration = cnn_calibration(
            _cached_workspace(root, _mtime(Path(root) / "items.parquet"))
        )

    return CnnEmbedder(
        weights,
        backbone=backbone,
        image_size=image_size,
        fit=fit,
        n_threads=1,
        flip=flip,
        normalize=normalize,
        runtime=runtime,
        calibration=calibration,
    )


def _cnn_shard(
    lo: int,
    hi: int,
    root: str,
    weights: str | None,
    image_size: int,
    fit: str,
    batch_size: int,
    flip: bool = False,
    normalize: str = "auto",
    runtime: str = "auto",
    calibration_root: str | None = None,
    margin: float = 0.0,
    backbone: str | None = None,
) -> tuple[npt.NDArray[np.float32], list[int]]:
    """Worker task: embeddings of items ``lo:hi`` and the unreadable ones."""
    ws = _cached_workspace(root, _mtime(Path(root) / "items.parquet"))
    emb = _cached_embedder(
        weights,
        _stamp(weights),
        image_size,
        fit,
        flip,
        normalize,
        runtime,
        calibration_root,
        backbone,
    )
    return _cnn_embed(ws, emb, lo, hi, batch_size, 1, margin=margin)
