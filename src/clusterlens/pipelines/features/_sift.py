"""``clusterlens features sift``: SIFT descriptors, checkpointed and resumable."""

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
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataQualityWarning, DataValidationError
from clusterlens.io._results import write_run
from clusterlens.io._workspace import (
    Workspace,
    check_image_root,
    unreadable_report,
)
from clusterlens.pipelines.features._common import (
    _cached_workspace,
    _default_shard_items,
    _mtime,
)
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import check_int

__all__ = ["run_sift_features"]

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
        write_run(
            stage,
            schema="clusterlens.features.sift/1",
            command="features sift",
            invocation=command,
            parameters=run_params,
            results=summary,
            outputs=[
                "descriptors.npy",
                "offsets.npy",
                "keypoints.npy",
                "run.json",
            ],
        )
    return summary
