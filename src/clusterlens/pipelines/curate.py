"""The curation views of a workspace as library calls, one stage folder each.

Every view reads the workspace's embeddings (``WS/features/cnn``) and the
k-NN graph that ``run_neighbors`` writes once (``WS/neighbors``), so the
neighbour search that duplicates, outliers and the map share is done once.
Each ``run_*`` writes into a staging folder given by the caller (the CLI's
``staged_output_dir``) and returns a summary; ``run.json`` records a
``fingerprint`` of its inputs so ``explore`` can tell a stage that is done and
still valid from one to redo. Layout::

    WS/scan/        scan.parquet: index, item_id, readable, reason, hash and
                    the raw image properties (brightness, blur, ...)
    WS/neighbors/   neighbors.npz: indices, distances (k nearest, self
                    excluded, squared L2 between L2-normalised embeddings)
    WS/duplicates/  duplicates.parquet: index, item_id, group, kind,
                    similarity, representative
    WS/outliers/    outliers.parquet: index, item_id, outlier_score,
                    outlier_z, outlier, outlier_rank
    WS/quality/     quality.parquet: index, item_id, <issue>_score, <issue>
                    (bool) per issue type, any_issue; run.json has the rules
    WS/map/         map.parquet: index, item_id, x, y (in [0, 1])
    WS/index/       index.json (+ index.faiss above EXACT_INDEX_MAX items)
    WS/sample/      sample.parquet (index, item_id, pick, covers), sample.csv,
                    label_studio.json (tasks to import)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.curate._previews import PREVIEWS_FILE, SIZES_FILE
from clusterlens.curate._quality import WORKING_SIDE
from clusterlens.exceptions import DataValidationError
from clusterlens.io._results import read_results, write_results, write_run
from clusterlens.io._workspace import Workspace
from clusterlens.utils._progress import progress

__all__ = [
    "N_NEIGHBORS",
    "default_budget",
    "embeddings",
    "features_fingerprint",
    "load_neighbors",
    "read_stage_table",
    "run_duplicates",
    "run_index",
    "run_map",
    "run_neighbors",
    "run_outliers",
    "run_quality",
    "run_sample",
    "run_scan",
    "similar_items",
    "stage_fingerprint",
    "workspace_embedder",
]

#: Neighbours kept per item in ``WS/neighbors`` (the map's UMAP uses 15).
N_NEIGHBORS = 15
EMBEDDINGS = ("features", "cnn")


def _emb_path(ws: Workspace) -> Path:
    return ws.root.joinpath(*EMBEDDINGS, "features.npy")


def embeddings(ws: Workspace) -> npt.NDArray[np.float32]:
    """The workspace's CNN embeddings, memory-mapped, checked against its items.

    Raises
    ------
    DataValidationError
        If there are none, or their rows no longer match the items.
    """
    p = _emb_path(ws)
    if not p.is_file():
        raise DataValidationError(
            f"{ws.root} has no embeddings ({p} is missing). Compute them with: "
            f"clusterlens features cnn {ws.root} (or run clusterlens explore "
            f"{ws.root})."
        )
    try:
        X = np.load(p, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        raise DataValidationError(
            f"{p} is not a valid embeddings file ({e}); recompute it with: "
            f"clusterlens features cnn {ws.root} --overwrite"
        ) from e
    if X.ndim != 2 or X.shape[0] != len(ws) or X.shape[1] < 1:
        raise DataValidationError(
            f"The embeddings {p} have shape {X.shape}, but the workspace has "
            f"{len(ws):,} items: they no longer match. Recompute them with: "
            f"clusterlens features cnn {ws.root} --overwrite"
        )
    return X


def features_fingerprint(ws: Workspace) -> dict[str, Any]:
    """What the views depend on: the items and the embeddings file."""
    p = _emb_path(ws)
    st = p.stat() if p.is_file() else None
    items = ws.root / "items.parquet"
    return {
        "n_items": len(ws),
        "items_mtime_ns": items.stat().st_mtime_ns if items.is_file() else 0,
        "features_size": st.st_size if st else 0,
        "features_mtime_ns": st.st_mtime_ns if st else 0,
    }


#: Views whose outputs a view reads (its fingerprint includes theirs).
_UPSTREAM: dict[str, tuple[str, ...]] = {
    "scan": (),
    "neighbors": (),
    "duplicates": ("scan", "neighbors", "quality"),
    "outliers": ("duplicates", "neighbors"),
    "quality": ("scan",),
    "map": ("neighbors",),
    "index": (),
    "sample": ("duplicates", "quality"),
}


def stage_fingerprint(ws: Workspace, name: str, params: dict[str, Any]) -> Any:
    """What view ``name`` depends on: inputs, parameters and upstream views.

    Written into its ``run.json``; a view whose recorded fingerprint equals
    the current one is done and still valid (``explore`` reuses it).
    """
    if name in ("scan", "quality"):
        items = ws.root / "items.parquet"
        base: dict[str, Any] = {
            "n_items": len(ws),
            "items_mtime_ns": items.stat().st_mtime_ns if items.is_file() else 0,
        }
    else:
        base = features_fingerprint(ws)
    up = {u: _fingerprint_of(ws.root / u) for u in _UPSTREAM[name]}
    # JSON round trip: what is compared is what run.json holds
    return json.loads(json.dumps({**base, "params": params, "upstream": up}))


def _normalized(ws: Workspace) -> npt.NDArray[np.float32]:
    from clusterlens.features._knn import l2_normalize

    X = embeddings(ws)
    E = l2_normalize(X)
    if not np.isfinite(E).all():
        raise DataValidationError(
            f"The embeddings of {ws.root} contain NaN or infinity; recompute them "
            f"with: clusterlens features cnn {ws.root} --overwrite"
        )
    return E


def read_stage_table(ws: Workspace, name: str, file: str) -> dict[str, Any]:
    """``WS/<name>/<file>`` as a dict of columns, checked against the items."""
    p = ws.root / name / file
    if not p.is_file():
        raise DataValidationError(
            f"{ws.root} has no {name} view ({p} is missing). Compute it with: "
            f"clusterlens {name} {ws.root} (or clusterlens explore {ws.root})."
        )
    try:
        cols = read_results(p)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataValidationError(
            f"{p} is not a valid results file ({type(e).__name__}: {e}); "
            f"recompute it with: clusterlens {name} {ws.root} --overwrite"
        ) from e
    n = len(next(iter(cols.values()))) if cols else 0
    if n != len(ws):
        raise DataValidationError(
            f"{p} has {n:,} rows but the workspace has {len(ws):,} items; "
            f"recompute it with: clusterlens {name} {ws.root} --overwrite"
        )
    return cols


def _ids(ws: Workspace) -> dict[str, Any]:
    return {
        "index": np.asarray(ws.items["index"], dtype=np.int64),
        "item_id": np.asarray(ws.items["item_id"]).astype(str),
    }


def _write_run(
    stage: Path,
    name: str,
    ws: Workspace,
    fingerprint: dict[str, Any],
    parameters: dict[str, Any],
    results: dict[str, Any],
    command: dict[str, Any] | None,
    outputs: list[str],
) -> None:
    write_run(
        stage,
        schema=f"clusterlens.{name}/1",
        command=name,
        invocation=command,
        parameters={"workspace": str(ws.root.resolve()), **parameters},
        fingerprint=fingerprint,
        results=results,
        outputs=[*outputs, "run.json"],
    )


# --------------------------------------------------------------------------- #
# scan: one decode per item for content hashes and image properties
# --------------------------------------------------------------------------- #
def _content_hash(ws: Workspace, i: int, cache: dict[str, str]) -> str:
    """SHA-1 of the file's bytes (+ the box for a crop; the row for arrays)."""
    row = int(ws.items["array_row"][i])
    if row >= 0:
        arr = np.ascontiguousarray(np.load(ws.root / "images.npy", mmap_mode="r")[row])
        return hashlib.sha1(arr.tobytes()).hexdigest()
    rel = str(ws.items["path"][i])
    if rel not in cache:
        h = hashlib.sha1()
        with open(ws.image_root / rel, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        cache[rel] = h.hexdigest()
    w = float(ws.items["bbox_w"][i])
    if np.isfinite(w):
        box = ",".join(f"{float(ws.items[c][i]):g}" for c in _BOX)
        return hashlib.sha1(f"{cache[rel]}#{box}".encode()).hexdigest()
    return cache[rel]


_BOX = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


class ScanPass:
    """The scan of one workspace, filled item by item, then written once.

    ``add(i, image)`` takes an item already decoded with
    ``ws.read_item(i, min_size=ScanPass.MIN_SIZE)`` (the CNN stage of
    ``explore`` decodes every image once for both), ``item(i)`` decodes it
    here. Both may run in many threads at once (each writes only its own
    rows).

    A JPEG decodes at the smallest DCT scale still at least twice
    :data:`~clusterlens.curate._quality.WORKING_SIDE` in both sides (every
    content property is measured on a copy of at most that size): a
    12-megapixel photo at half its side, ~3x faster than whole. Twice, because
    the DCT scaling is softer than the area downscaling after it: decoded at
    1x the working side, sharpness read 11 % lower (median; 20 COCO photos
    enlarged 3-5x), at 2x within 4 % (median 0). Size properties are the
    file's own.
    """

    MIN_SIZE = (2 * WORKING_SIDE, 2 * WORKING_SIDE)

    def __init__(self, ws: Workspace) -> None:
        from clusterlens.curate._duplicates import THUMB_SIDE
        from clusterlens.curate._previews import MAX_PREVIEW_ITEMS, PREVIEW_SIDE

        n = len(ws)
        self.ws = ws
        self.t0 = time.perf_counter()
        self.hashes = np.full(n, "", dtype=object)
        self.readable = np.ones(n, dtype=bool)
        self.reason = np.full(n, "", dtype=object)
        self.props: list[dict[str, float] | None] = [None] * n
        self.thumbs = np.zeros((n, THUMB_SIDE, THUMB_SIDE), dtype=np.uint8)
        # colour previews for the reports (up to MAX_PREVIEW_ITEMS items)
        self.previews: npt.NDArray[np.uint8] | None = None
        self.preview_sizes = np.zeros((n, 2), dtype=np.int16)
        if n <= MAX_PREVIEW_ITEMS:
            self.previews = np.zeros((n, PREVIEW_SIDE, PREVIEW_SIDE, 3), np.uint8)
        self._cache: dict[str, str] = {}
        # the file's size, to report after a reduced decode (0: keep the
        # decoded size; a box crop is decoded whole)
        items = ws.items
        crop = np.isfinite(np.asarray(items["bbox_w"], dtype=np.float64))
        self._size = tuple(
            np.where(
                crop, 0, np.nan_to_num(np.asarray(items[c], dtype=np.float64))
            ).astype(np.int64)
            for c in ("height", "width")
        )

    def add(self, i: int, image: npt.NDArray[np.uint8]) -> None:
        """Record item ``i`` from its pixels (decoded with :attr:`MIN_SIZE`)."""
        from clusterlens.curate._duplicates import thumbnail
        from clusterlens.curate._previews import make_preview
        from clusterlens.curate._quality import image_properties

        try:
            self.hashes[i] = _content_hash(self.ws, i, self._cache)
            self.thumbs[i] = thumbnail(image)
            props = image_properties(image)
            h, w = int(self._size[0][i]), int(self._size[1][i])
            if h > 0 and w > 0 and image.shape[:2] != (h, w):
                # decoded at a reduced DCT scale: the sizes are the file's
                props.update(height=h, width=w, aspect=w / h, size=math.sqrt(h * w))
            self.props[i] = props
            if self.previews is not None:
                self.previews[i], pw, ph = make_preview(image)
                self.preview_sizes[i] = (pw, ph)
        except Exception as e:  # any decoder failure makes the item unreadable
            self.fail(i, e)

    def fail(self, i: int, error: BaseException) -> None:
        """Record item ``i`` as unreadable, with the decoder's reason."""
        why = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
        self.hashes[i], self.props[i] = "", None
        self.preview_sizes[i] = (0, 0)
        self.readable[i] = False
        self.reason[i] = (str(why).splitlines() or ["unreadable"])[0][:200]

    def item(self, i: int) -> None:
        """Decode item ``i`` and record it."""
        try:
            image = self.ws.read_item(i, min_size=self.MIN_SIZE)
        except Exception as e:  # any decoder failure makes the item unreadable
            self.fail(i, e)
            return
        self.add(i, image)

    def write(
        self,
        stage: str | os.PathLike[str],
        *,
        n_jobs: int,
        command: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write ``scan.parquet`` and ``thumbs.npy`` into ``stage``."""
        ws, n = self.ws, len(self.ws)
        stage = Path(os.fspath(stage))
        n_bad = int((~self.readable).sum())
        if n_bad == n:
            raise DataValidationError(
                f"None of the {n:,} items of {ws.root} can be read (first: "
                f"{ws.items['path'][0]}: {self.reason[0]}). Were the images moved? "
                "Re-run clusterlens ingest on their new place."
            )
        props = self.props
        keys = sorted({k for p in props if p is not None for k in p})
        cols: dict[str, Any] = {
            **_ids(ws),
            "readable": self.readable,
            "reason": self.reason.astype(str),
            "hash": self.hashes.astype(str),
        }
        for key in keys:
            cols[f"prop_{key}"] = np.array(
                [np.nan if p is None else float(p.get(key, np.nan)) for p in props],
                dtype=np.float64,
            )
        write_results(stage / "scan.parquet", cols)
        np.save(stage / "thumbs.npy", self.thumbs)
        outputs = ["scan.parquet", "thumbs.npy"]
        if self.previews is not None:
            np.save(stage / PREVIEWS_FILE, self.previews)
            np.save(stage / SIZES_FILE, self.preview_sizes)
            outputs += [PREVIEWS_FILE, SIZES_FILE]
        seconds = time.perf_counter() - self.t0
        summary = {
            "n_items": n,
            "n_unreadable": n_bad,
            "seconds": seconds,
            "images_per_second": float(n / max(seconds, 1e-9)),
        }
        _write_run(
            stage,
            "scan",
            ws,
            stage_fingerprint(ws, "scan", {}),
            {"n_jobs": n_jobs},
            summary,
            command,
            outputs,
        )
        return summary


def run_scan(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    n_jobs: int = 2,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode every item once: its content hash and its image properties.

    Items that cannot be read now are kept with ``readable=False`` and the
    reason; the files ``ingest`` skipped are listed in the junk view from
    ``WS/skipped.txt``.
    """
    from concurrent.futures import ThreadPoolExecutor

    scan = ScanPass(ws)
    bar = progress(total=len(ws), desc="scan", unit="img", verbose=verbose, leave=False)
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        for _ in pool.map(scan.item, range(len(ws))):
            bar.update(1)
    bar.close()
    return scan.write(stage, n_jobs=n_jobs, command=command)


# --------------------------------------------------------------------------- #
# neighbours, once
# --------------------------------------------------------------------------- #
def run_neighbors(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    n_neighbors: int = N_NEIGHBORS,
    random_state: int = 0,
    backend: str | None = None,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The k-NN graph of the L2-normalised embeddings, saved for every view.

    ``backend`` ("local" or "dask"; None: the configured default) says where
    the search runs. On Dask each worker memory-maps the embeddings file of
    the workspace itself (same path on every worker) and normalises the rows
    it reads; the graph equals the local backend's.
    """
    from clusterlens._config import resolve_backend
    from clusterlens.features._knn import knn_graph

    stage = Path(os.fspath(stage))
    which = resolve_backend(backend)
    t0 = time.perf_counter()
    if which == "dask":
        X = embeddings(ws)
        if X.shape[0] < 2:
            raise DataValidationError(
                f"{ws.root} has {X.shape[0]} item; the views need at least 2."
            )
        try:
            g = knn_graph(
                _emb_path(ws).resolve(),
                n_neighbors,
                seed=random_state,
                normalize=True,
                backend="dask",
                verbose=verbose,
            )
        except DataValidationError as e:
            raise DataValidationError(
                f"{e} Recompute the embeddings with: clusterlens features cnn "
                f"{ws.root} --overwrite"
            ) from e
        n = int(X.shape[0])
    else:
        E = _normalized(ws)
        if E.shape[0] < 2:
            raise DataValidationError(
                f"{ws.root} has {E.shape[0]} item; the views need at least 2."
            )
        g = knn_graph(
            E, n_neighbors, seed=random_state, backend="local", verbose=verbose
        )
        n = int(E.shape[0])
    np.savez(stage / "neighbors.npz", indices=g.indices, distances=g.distances)
    summary = {
        "n_items": n,
        "n_neighbors": int(g.indices.shape[1]),
        "method": g.method,
        "backend": g.backend,
        "seconds": time.perf_counter() - t0,
    }
    _write_run(
        stage,
        "neighbors",
        ws,
        stage_fingerprint(ws, "neighbors", {"n_neighbors": n_neighbors}),
        {"n_neighbors": n_neighbors, "metric": "cosine", "backend": g.backend},
        summary,
        command,
        ["neighbors.npz"],
    )
    return summary


def load_neighbors(
    ws: Workspace,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``(indices, distances)`` from ``WS/neighbors``, checked against the items."""
    p = ws.root / "neighbors" / "neighbors.npz"
    try:
        with np.load(p, allow_pickle=False) as z:
            idx = np.asarray(z["indices"], dtype=np.int64)
            dist = np.asarray(z["distances"], dtype=np.float32)
    except FileNotFoundError as e:
        raise DataValidationError(
            f"{ws.root} has no neighbour graph ({p} is missing); compute it with: "
            f"clusterlens explore {ws.root}"
        ) from e
    except Exception as e:  # zipfile / numpy raise several types
        raise DataValidationError(
            f"{p} is not a valid neighbour graph ({type(e).__name__}: {e}); "
            f"recompute it with: clusterlens explore {ws.root}"
        ) from e
    if idx.ndim != 2 or idx.shape[0] != len(ws) or idx.shape != dist.shape:
        raise DataValidationError(
            f"{p} has shape {idx.shape}, not one row per item ({len(ws):,}); "
            f"recompute it with: clusterlens explore {ws.root}"
        )
    return idx, dist


def _ensure_neighbors(ws: Workspace, verbose: int) -> None:
    """Compute ``WS/neighbors`` if it is missing or stale (views need it)."""
    from clusterlens.utils._fs import staged_output_dir

    folder = ws.root / "neighbors"
    want = stage_fingerprint(ws, "neighbors", {"n_neighbors": N_NEIGHBORS})
    if _fingerprint_of(folder) == want:
        return
    with staged_output_dir(
        folder, overwrite=True, kind="neighbors", workspace=ws.root
    ) as stage:
        run_neighbors(ws, stage, verbose=verbose)


def _fingerprint_of(folder: Path) -> Any:
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return run.get("fingerprint") if isinstance(run, dict) else None


# --------------------------------------------------------------------------- #
# duplicates, outliers, quality
# --------------------------------------------------------------------------- #
def _pixel_area(ws: Workspace) -> npt.NDArray[np.float64]:
    w = np.asarray(ws.items["bbox_w"], dtype=np.float64)
    h = np.asarray(ws.items["bbox_h"], dtype=np.float64)
    W = np.asarray(ws.items["width"], dtype=np.float64)
    H = np.asarray(ws.items["height"], dtype=np.float64)
    return np.where(np.isfinite(w), w * h, W * H)


def run_duplicates(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    threshold: float | None = None,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Exact (content hash) and near (embedding) duplicate groups."""
    from clusterlens.curate import (
        DEFAULT_CANDIDATE_THRESHOLD,
        DEFAULT_NEAR_THRESHOLD,
        DEFAULT_THUMB_THRESHOLD,
        find_duplicates,
    )

    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    thr = DEFAULT_NEAR_THRESHOLD if threshold is None else float(threshold)
    _ensure_neighbors(ws, verbose)
    idx, dist = load_neighbors(ws)
    E = embeddings(ws)  # memory-mapped: find_duplicates reads group members only
    scan = _scan_columns(ws)
    hashes = scan["hash"] if scan is not None else None
    thumbs = _scan_thumbs(ws) if scan is not None else None
    dup = find_duplicates(
        idx,
        1.0 - dist / 2.0,
        hashes=hashes,
        embeddings=E,
        threshold=thr,
        thumbnails=thumbs,
        preference=_keep_preference(ws),
        exact_only=_low_information(ws),
    )
    write_results(
        stage / "duplicates.parquet",
        {
            **_ids(ws),
            "group": dup.group,
            "kind": dup.kind.astype(str),
            "similarity": dup.similarity,
            "representative": dup.representative,
        },
    )
    n_exact = int((dup.kind == "exact").sum())
    summary = {
        "n_items": len(ws),
        "n_groups": dup.n_groups,
        "n_in_groups": int((dup.group >= 0).sum()),
        "n_redundant": dup.n_redundant,
        "n_exact_copies": n_exact,
        "threshold": thr,
        "seconds": time.perf_counter() - t0,
    }
    _write_run(
        stage,
        "duplicates",
        ws,
        stage_fingerprint(ws, "duplicates", {"threshold": thr}),
        {
            "threshold": thr,
            "thumbnails": thumbs is not None,
            "meaning": "near duplicates: cosine similarity of the L2-normalised CNN "
            f"embeddings >= {thr:g}, or >= {DEFAULT_CANDIDATE_THRESHOLD:g} with "
            f"small grayscale thumbnails correlating >= {DEFAULT_THUMB_THRESHOLD:g} "
            "(as-is or mirrored, or one a crop of the other); exact duplicates: "
            "equal content hashes; low-information images: exact copies only",
        },
        summary,
        command,
        ["duplicates.parquet"],
    )
    return summary


def _low_information(ws: Workspace) -> npt.NDArray[np.bool_] | None:
    """Items the quality view flags low_information (None before it ran)."""
    if not (ws.root / "quality" / "quality.parquet").is_file():
        return None
    q = read_stage_table(ws, "quality", "quality.parquet")
    if "low_information" not in q:
        return None
    return np.asarray(q["low_information"], dtype=bool)


def _keep_preference(ws: Workspace) -> npt.NDArray[np.float64]:
    """Which copy of a group to keep: a clean one first, then the largest.

    Items flagged blurry, dark, bright or low-information by the quality view
    (when it was computed) rank below every clean item.
    """
    area = _pixel_area(ws)
    pref = np.log1p(np.nan_to_num(area, nan=0.0))
    if (ws.root / "quality" / "quality.parquet").is_file():
        q = read_stage_table(ws, "quality", "quality.parquet")
        bad = np.zeros(len(ws), dtype=bool)
        for key in ("blurry", "dark", "bright", "low_information", "unreadable"):
            if key in q:
                bad |= np.asarray(q[key], dtype=bool)
        pref = pref - 1e3 * bad
    return pref


def _scan_thumbs(ws: Workspace) -> npt.NDArray[np.uint8] | None:
    """``WS/scan/thumbs.npy`` (duplicate thumbnails), or None if absent or stale."""
    from clusterlens.io._safe import load_npy

    p = ws.root / "scan" / "thumbs.npy"
    if not p.is_file():
        return None
    T = load_npy(p, what="duplicate thumbnails", fix="clusterlens scan WS")
    return T if T.ndim == 3 and T.shape[0] == len(ws) else None


def _scan_columns(ws: Workspace) -> dict[str, Any] | None:
    if not (ws.root / "scan" / "scan.parquet").is_file():
        return None
    return read_stage_table(ws, "scan", "scan.parquet")


def run_outliers(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    n_neighbors: int = 5,
    z_threshold: float | None = None,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """How isolated each item is; its own duplicates do not count as company."""
    from clusterlens.curate import DEFAULT_OUTLIER_Z, outlier_scores

    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    z_thr = DEFAULT_OUTLIER_Z if z_threshold is None else float(z_threshold)
    _ensure_neighbors(ws, verbose)
    idx, dist = load_neighbors(ws)
    sim = 1.0 - dist / 2.0
    exclude = None
    dpath = ws.root / "duplicates" / "duplicates.parquet"
    if dpath.is_file():
        group = read_stage_table(ws, "duplicates", "duplicates.parquet")["group"]
        exclude = (group[idx] == group[:, None]) & (group[:, None] >= 0)
    o = outlier_scores(sim, n_neighbors=n_neighbors, z_threshold=z_thr, exclude=exclude)
    rank = np.empty(len(ws), dtype=np.int64)
    rank[o.rank] = np.arange(len(ws))
    write_results(
        stage / "outliers.parquet",
        {
            **_ids(ws),
            "outlier_score": o.score,
            "outlier_z": o.z,
            "outlier": o.flag,
            "outlier_rank": rank,
        },
    )
    summary = {
        "n_items": len(ws),
        "n_outliers": int(o.flag.sum()),
        "n_neighbors": o.n_neighbors,
        "z_threshold": z_thr,
        "seconds": time.perf_counter() - t0,
    }
    _write_run(
        stage,
        "outliers",
        ws,
        stage_fingerprint(
            ws, "outliers", {"n_neighbors": n_neighbors, "z_threshold": z_thr}
        ),
        {
            "n_neighbors": n_neighbors,
            "z_threshold": z_thr,
            "rule": f"flagged when the mean cosine distance to the {o.n_neighbors} "
            f"nearest other items (own duplicates skipped) lies {z_thr:g} robust "
            "standard deviations (1.4826 MAD) above the median item's",
        },
        summary,
        command,
        ["outliers.parquet"],
    )
    return summary


def run_quality(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Image-quality issues (blurry, dark, ...) from the scan's properties."""
    from clusterlens.curate._quality import quality_issues

    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    scan = _scan_columns(ws)
    if scan is None:
        raise DataValidationError(
            f"{ws.root} has not been scanned ({ws.root / 'scan'} is missing); run: "
            f"clusterlens explore {ws.root}"
        )
    props = {k[5:]: v for k, v in scan.items() if k.startswith("prop_")}
    ok = np.asarray(scan["readable"], dtype=bool)
    res = quality_issues({k: v[ok] for k, v in props.items()})
    cols: dict[str, Any] = {**_ids(ws)}
    any_issue = np.zeros(len(ws), dtype=bool)
    counts: dict[str, int] = {}
    for t in res.issue_types:
        score = np.full(len(ws), np.nan, dtype=np.float32)
        flag = np.zeros(len(ws), dtype=bool)
        score[ok] = res.scores[t]
        flag[ok] = res.issues[t]
        cols[f"{t}_score"] = score
        cols[t] = flag
        any_issue |= flag
        counts[t] = int(flag.sum())
    cols["any_issue"] = any_issue
    cols["unreadable"] = ~ok
    write_results(stage / "quality.parquet", cols)
    summary = {
        "n_items": len(ws),
        "n_with_issue": int(any_issue.sum()),
        "n_unreadable": int((~ok).sum()),
        "counts": counts,
        "seconds": time.perf_counter() - t0,
    }
    _write_run(
        stage,
        "quality",
        ws,
        stage_fingerprint(ws, "quality", {}),
        {"issue_types": list(res.issue_types), "rules": dict(res.rules)},
        summary,
        command,
        ["quality.parquet"],
    )
    return summary


# --------------------------------------------------------------------------- #
# map, index, sample, search
# --------------------------------------------------------------------------- #
def run_map(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    method: str = "auto",
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """2-D coordinates of every item (UMAP over the shared k-NN graph)."""
    from clusterlens.curate import embed_2d

    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    _ensure_neighbors(ws, verbose)
    idx, dist = load_neighbors(ws)
    E = _normalized(ws)
    m = embed_2d(E, method=method, neighbors=(idx, dist), random_state=random_state)
    write_results(stage / "map.parquet", {**_ids(ws), "x": m.xy[:, 0], "y": m.xy[:, 1]})
    summary = {
        "n_items": len(ws),
        "method": m.method,
        "seconds": time.perf_counter() - t0,
    }
    _write_run(
        stage,
        "map",
        ws,
        stage_fingerprint(ws, "map", {"method": method, "seed": random_state}),
        {"method": method, "seed": random_state},
        summary,
        command,
        ["map.parquet"],
    )
    return summary


def run_index(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A search index over the embeddings, for ``clusterlens similar``."""
    from clusterlens.curate import SimilarityIndex

    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    index = SimilarityIndex.build(embeddings(ws), random_state=random_state)
    index.save(stage, features="features/cnn/features.npy")
    summary = {
        "n_items": len(ws),
        "kind": index.kind,
        "recall_at_10": index.recall,
        "seconds": time.perf_counter() - t0,
    }
    _write_run(
        stage,
        "index",
        ws,
        stage_fingerprint(ws, "index", {"seed": random_state}),
        {"seed": random_state},
        summary,
        command,
        ["index.json", *(["index.faiss"] if index.kind == "ivf" else [])],
    )
    return summary


def default_budget(n_eligible: int) -> int:
    """2 % of the items, at least 10 and at most 1,000 (and at most all)."""
    return int(min(n_eligible, max(10, min(1000, round(0.02 * n_eligible)))))


def _junk_mask(ws: Workspace) -> npt.NDArray[np.bool_]:
    """Items a labeller should not get: redundant copies, unreadable, flagged."""
    bad = np.zeros(len(ws), dtype=bool)
    if (ws.root / "duplicates" / "duplicates.parquet").is_file():
        d = read_stage_table(ws, "duplicates", "duplicates.parquet")
        bad |= (np.asarray(d["group"]) >= 0) & ~np.asarray(d["representative"], bool)
    if (ws.root / "quality" / "quality.parquet").is_file():
        q = read_stage_table(ws, "quality", "quality.parquet")
        for key in ("unreadable", "dark", "bright", "blurry", "low_information"):
            if key in q:
                bad |= np.asarray(q[key], dtype=bool)
    return bad


def run_sample(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    budget: int | None = None,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pick items that cover the collection, skipping duplicates and junk."""
    from clusterlens.curate import select_sample

    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    junk = _junk_mask(ws)
    eligible = ~junk
    n_ok = int(eligible.sum())
    if n_ok == 0:
        raise DataValidationError(
            f"Every item of {ws.root} is a duplicate or junk; nothing to sample."
        )
    b = default_budget(n_ok) if budget is None else int(budget)
    if b > n_ok:
        raise DataValidationError(
            f"--budget {b:,} is larger than the {n_ok:,} items of {ws.root} that "
            f"may be picked ({int(junk.sum()):,} duplicates or junk are left out). "
            f"Use --budget {n_ok:,} or less."
        )
    s = select_sample(embeddings(ws), b, eligible=eligible)
    pick = np.full(len(ws), -1, dtype=np.int64)
    pick[s.indices] = np.arange(b)
    covers = np.bincount(s.covered_by[s.covered_by >= 0], minlength=b)
    cover_col = np.zeros(len(ws), dtype=np.int64)
    cover_col[s.indices] = covers
    write_results(
        stage / "sample.parquet", {**_ids(ws), "pick": pick, "covers": cover_col}
    )
    paths = [_item_path(ws, int(i)) for i in s.indices]
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["pick", "index", "item_id", "path", "covers"])
    for t, i in enumerate(s.indices):
        w.writerow([t, int(i), ws.items["item_id"][i], paths[t], int(covers[t])])
    from clusterlens.utils._fs import atomic_write_text

    atomic_write_text(stage / "sample.csv", buf.getvalue())
    from clusterlens.io._export import label_studio_task, write_label_studio

    tasks = [
        label_studio_task(
            {"image": p, "item_id": str(ws.items["item_id"][i])},
            meta={"index": int(i), "pick": t, "covers": int(covers[t])},
        )
        for t, (i, p) in enumerate(zip(s.indices, paths, strict=True))
    ]
    write_label_studio(stage, tasks, tasks_file="label_studio.json")
    summary = {
        "n_items": len(ws),
        "budget": b,
        "n_eligible": n_ok,
        "covering_radius": float(s.radius[-1]),
        "seconds": time.perf_counter() - t0,
    }
    _write_run(
        stage,
        "sample",
        ws,
        stage_fingerprint(ws, "sample", {"budget": budget}),
        {
            "budget": b,
            "method": "greedy k-center on cosine distance, from the item nearest "
            "the mean; redundant duplicates, unreadable, dark, bright, blurry and "
            "low-information items left out",
        },
        summary,
        command,
        ["sample.parquet", "sample.csv", "label_studio.json"],
    )
    return summary


def _item_path(ws: Workspace, i: int) -> str:
    rel = str(ws.items["path"][i])
    return str((ws.image_root / rel).resolve()) if rel else f"array:{i}"


def similar_items(
    ws: Workspace,
    *,
    item: int | None = None,
    image: str | os.PathLike[str] | None = None,
    k: int = 10,
    embed: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.float32]] | None = None,
    pixels: npt.NDArray[np.uint8] | None = None,
    index: Any = None,
) -> dict[str, Any]:
    """The ``k`` items most similar to item ``item`` or to the image file ``image``.

    The image is embedded with the network and settings that made the
    workspace's embeddings (``WS/features/cnn/run.json``), or with ``embed``.
    ``pixels`` is an image already decoded (H, W, 3) to search by instead of
    a file (the review app's uploads, decoded by :func:`read_image` there);
    ``index`` a :class:`SimilarityIndex` already loaded from ``WS/index``
    (a long-running caller loads it once).
    """
    from clusterlens.curate import SimilarityIndex

    if sum(x is not None for x in (item, image, pixels)) != 1:
        raise DataValidationError("Give an image file or --item N, not both.")
    if index is None:
        index = SimilarityIndex.load(ws.root / "index", features=embeddings(ws))
    if item is not None:
        if not 0 <= item < len(ws):
            raise DataValidationError(
                f"--item {item} is not an item of {ws.root} (0 to {len(ws) - 1})."
            )
        q = np.asarray(embeddings(ws)[item], dtype=np.float32)
        query = {"item": int(item), "item_id": str(ws.items["item_id"][item])}
    elif pixels is not None:
        q = (embed or workspace_embedder(ws))(pixels)
        query = {"image": "(uploaded)"}
    else:
        from clusterlens.io._images import read_image

        path = Path(os.fspath(image))  # type: ignore[arg-type]
        embedder = embed or workspace_embedder(ws)
        # decoded as the items were (a JPEG at its smallest DCT scale >= input)
        side = getattr(embedder, "image_size", None)
        try:
            pixels = read_image(
                path, mode="RGB", min_size=None if side is None else (side, side)
            )
        except FileNotFoundError as e:
            raise DataValidationError(f"Query image {path} does not exist.") from e
        except Exception as e:  # PIL raises several types for a bad file
            raise DataValidationError(
                f"Query image {path} cannot be decoded ({type(e).__name__}: {e}). "
                "Give a JPEG, PNG or other image PIL reads."
            ) from e
        q = embedder(pixels)
        query = {"image": str(path)}
    ids, sims = index.search(q, k + (1 if item is not None else 0))
    ids, sims = ids[0], sims[0]
    if item is not None:
        keep = ids != item
        ids, sims = ids[keep][:k], sims[keep][:k]
    return {
        "query": query,
        "index": index.kind,
        "recall_at_10": index.recall,
        "results": [
            {
                "rank": r + 1,
                "index": int(i),
                "item_id": str(ws.items["item_id"][i]),
                "path": _item_path(ws, int(i)),
                "similarity": float(s),
            }
            for r, (i, s) in enumerate(zip(ids, sims, strict=True))
        ],
    }


def workspace_embedder(
    ws: Workspace,
) -> Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.float32]]:
    """The CNN with the parameters recorded in ``WS/features/cnn/run.json``."""
    from clusterlens.features import CnnEmbedder
    from clusterlens.features._effnet import BACKBONES

    run = ws.root.joinpath(*EMBEDDINGS, "run.json")
    try:
        params = json.loads(run.read_text(encoding="utf-8"))["parameters"]
        if not isinstance(params, dict):
            raise TypeError("parameters is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataValidationError(
            f"{run} cannot be read ({e}); recompute the embeddings with: "
            f"clusterlens features cnn {ws.root} --overwrite"
        ) from e
    weights = params.get("weights")
    if params.get("pca"):
        raise DataValidationError(
            f"The embeddings of {ws.root} were reduced with --pca; search by image "
            "needs the network's own embeddings (clusterlens features cnn WS)."
        )
    recorded = params.get("runtime", "torch")
    # ONNX Runtime only where it made the embeddings (its export is cached);
    # int8 must be int8, calibrated on the same images as before
    runtime = {"torch": "torch", "onnx-int8": "onnx-int8", "onnx": "onnx"}.get(
        recorded, "auto"
    )
    calibration = None
    if runtime == "onnx-int8":
        from clusterlens.pipelines.features import cnn_calibration

        calibration = cnn_calibration(ws)
    # a packaged backbone is recorded by name (and, before run.json had
    # "backbone", only as the Lite0 package's name in "weights")
    packaged = {v[0]: k for k, v in BACKBONES.items()}
    backbone = params.get("backbone") or packaged.get(str(weights))
    if weights is None and backbone is None:
        backbone = "lite0"
    emb = CnnEmbedder(
        None if backbone is not None else weights,
        backbone=backbone,
        image_size=int(params.get("image_size", 224)),
        fit=str(params.get("fit", "squash")),
        flip=bool(params.get("flip", False)),
        normalize=str(params.get("normalize", "auto")),
        runtime=runtime,
        calibration=calibration,
        n_threads=1,
    )

    def embed(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        batch = np.stack([emb.preprocess(pixels)])
        return np.asarray(emb.embed_batch(batch), dtype=np.float32)

    embed.image_size = emb.image_size  # type: ignore[attr-defined]
    return embed
