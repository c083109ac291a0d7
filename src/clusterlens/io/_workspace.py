"""The image workspace: one folder that every image stage reads from and writes to.

``clusterlens ingest SOURCE --out WS`` creates it; each later stage reads what the
stage before it wrote and adds its own sub-folder. Every sub-folder is written
through a staging folder, so a folder that exists is complete. Layout::

    WS/
      workspace.json        schema "clusterlens.workspace/1": source, kind
                            ("folder", "coco", "coco-boxes", "yolo-boxes",
                            "voc-boxes", "idx", "npz"),
                            n_items, class_names, n_skipped, timings
      items.parquet         one row per item (an image, or a box crop), in
                            item order; columns:
                              index       int64, 0..n_items-1 (the item id
                                          every other file refers to)
                              item_id     str, stable name (relative path,
                                          "<file>#box<ann id>" or "idx:<row>")
                              path        str, image file relative to
                                          `image_root` in workspace.json ("" for
                                          array sources)
                              width, height  int64, pixels of the whole image
                              label       int64, index into class_names, -1
                                          when unknown
                              label_name  str ("" when unknown)
                              split       str ("" when none)
                              bbox_x, bbox_y, bbox_w, bbox_h  float64, the
                                          crop in pixels (COCO xywh); NaN for
                                          whole images
                              array_row   int64, row of images.npy (-1 when
                                          the item is read from `path`)
      images.npy            uint8 (n, H, W[, 3]); only for IDX / .npz sources
      skipped.txt           files that could not be decoded (one per line;
                            workspace.json "skipped" gives the reasons of
                            the first few)
      features/sift/        descriptors.npy  uint8 (n_descriptors, 128)
                            offsets.npy      int64 (n_items + 1,): item i owns
                                             rows offsets[i]:offsets[i+1]
                            keypoints.npy    float32 (n_descriptors, 4): x, y
                                             (in [0, 1] of the crop), size, angle
                            run.json
      features/cnn/         features.npy float32 (n_items, d), run.json,
      features/pixels/      [pca.npz + pca.json when --pca was given]
      vocab/                written by ``clusterlens vocab``: vocab.npz + vocab.json
      bow/                  counts.npz (scipy CSR, n_items x n_words, raw
                            counts), tfidf.npz (CSR, tf-idf, rows L2-normed),
                            idf.npy, words.npy (int32 word of each
                            descriptor), run.json
      topics/               results.parquet (index, item_id, label, topic,
                            topic_prob, cluster), doc_topic.npy, topic_word.npy,
                            divergence.npy, topics.json, run.json, report.html
      clusters/             results.parquet (index, item_id, label, cluster,
                            distance), model.npz/json, run.json, report.html
      evaluation.json       written by ``clusterlens evaluate`` beside a run

The stage folders under ``topics/`` and ``clusters/`` are defaults; any
``--out`` may be given. The review app reads ``items.parquet`` and any
``results.parquet`` (joined on ``index``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataQualityWarning, DataValidationError
from clusterlens.io._boxes import MIN_BOX_SIZE
from clusterlens.io._images import (
    IMAGE_SUFFIXES,
    OUTPUT_MARKERS,
    UnreadableImageError,
    _is_idx_images,
    _native_mode,
    decode_image,
    describe_unreadable,
    list_image_folder,
    load_image_array,
    probe_image,
    too_many_unreadable,
)
from clusterlens.io._results import read_results, write_results, write_run_json
from clusterlens.io._safe import invalid_file, load_npy, read_json
from clusterlens.typing import PathLike
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils._names import cli_names

__all__ = [
    "CROP_MARGIN",
    "WORKSPACE_SCHEMA",
    "Workspace",
    "check_image_root",
    "create_workspace",
    "open_workspace",
    "unreadable_report",
]

logger = logging.getLogger(__name__)

WORKSPACE_SCHEMA = "clusterlens.workspace/1"
_ITEMS = "items.parquet"
_META = "workspace.json"
_ARRAY = "images.npy"
_REINGEST = "re-create the workspace with `clusterlens ingest SOURCE --out WS`"
#: Columns every reader of ``items.parquet`` relies on.
_COLUMNS = (
    "index",
    "item_id",
    "path",
    "label",
    "array_row",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
)


@dataclass(frozen=True)
class Workspace:
    """An ingested image set: the items table and how to read each item's pixels.

    Attributes
    ----------
    root : Path
        The workspace folder.
    meta : dict
        The content of ``workspace.json``.
    items : dict of str to ndarray
        The columns of ``items.parquet``.
    """

    root: Path
    meta: dict[str, Any]
    items: dict[str, npt.NDArray[Any]]

    def __len__(self) -> int:
        """Number of items."""
        return int(self.items["index"].shape[0])

    @property
    def labels(self) -> npt.NDArray[np.int64] | None:
        """Label of each item (-1 unknown), or None when no item has one."""
        lab = self.items["label"].astype(np.int64)
        return lab if (lab >= 0).any() else None

    @property
    def class_names(self) -> list[str] | None:
        """Class names, indexed by label."""
        names = self.meta.get("class_names")
        return list(names) if names else None

    @property
    def image_root(self) -> Path:
        """Folder the ``path`` column is relative to."""
        return Path(self.meta.get("image_root", ""))

    def _array(self) -> npt.NDArray[np.uint8]:
        return _load_array(self.root)

    def item_path(self, i: int) -> str:
        """Where item ``i``'s pixels come from: its image file, or an array row."""
        row = int(self.items["array_row"][i])
        if row >= 0:
            return f"{self.root / _ARRAY} row {row}"
        return str(self.image_root / str(self.items["path"][i]))

    def read_item(
        self,
        i: int,
        *,
        mode: str | None = None,
        size: tuple[int, int] | None = None,
        margin: float = 0.0,
        min_size: tuple[int, int] | None = None,
        image: Any = None,
    ) -> npt.NDArray[np.uint8]:
        """Pixels of item ``i`` (crop applied), uint8 (H, W) or (H, W, 3).

        ``image`` is item ``i``'s whole image already decoded (a PIL image of
        its file, as :func:`clusterlens.io.decode_image` gives it with this
        ``mode``): callers cropping many boxes of one image decode it once.

        ``size`` (height, width) resizes the result; ``min_size`` (height,
        width) says the caller needs no more pixels than that (a whole JPEG
        image is decoded at a reduced DCT scale still at least that large,
        see :func:`clusterlens.io.decode_image`; a box crop is decoded whole).

        ``margin`` widens a box item's crop by that fraction of the box's
        width (height) on the left and right (top and bottom), clipped to the
        image: the context around the object (:data:`CROP_MARGIN` is what
        ``features cnn`` uses). Whole-image items ignore it.

        Image files are decoded by :func:`clusterlens.io.decode_image` (the
        rules every stage shares: regular files only, a pixel limit, 16-bit
        and float pixels scaled by the image's mode).

        Raises
        ------
        UnreadableImageError
            If the image file cannot be decoded (an ``OSError`` and a
            ``DataValidationError``; ``reason`` says why).
        """
        from PIL import Image

        row = int(self.items["array_row"][i])
        if row >= 0:
            arr = np.asarray(self._array()[row])
            img = Image.fromarray(arr)
            target = mode if mode is not None else _native_mode(img.mode)
            if img.mode != target:
                img = img.convert(target)
        elif image is not None:
            img = image
        else:
            x, y, w, h = (float(self.items[c][i]) for c in _BBOX)
            img = decode_image(
                self.image_root / str(self.items["path"][i]),
                mode=mode,
                # a crop's box is in full-resolution pixels: decoded whole
                min_size=None
                if min_size is None or np.isfinite(w)
                else (min_size[1], min_size[0]),
            )
        x, y, w, h = (float(self.items[c][i]) for c in _BBOX)
        if np.isfinite(w):
            if margin > 0:
                x0, y0 = max(0.0, x - margin * w), max(0.0, y - margin * h)
                x1 = min(float(img.width), x + w + margin * w)
                y1 = min(float(img.height), y + h + margin * h)
                x, y, w, h = x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)
            box = (
                int(np.floor(x)),
                int(np.floor(y)),
                max(int(np.ceil(x + w)), int(np.floor(x)) + 1),
                max(int(np.ceil(y + h)), int(np.floor(y)) + 1),
            )
            img = img.crop(box)
        if size is not None:
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).copy()

    def item_problem(self, i: int) -> str | None:
        """Why item ``i`` cannot be read now (decodes it), or None when it can."""
        try:
            self.read_item(i)
        except UnreadableImageError as e:
            return e.reason
        except (OSError, ValueError) as e:
            return str(e)
        return None

    def missing_image_root(self) -> Path | None:
        """The image folder, when items are read from it and it does not exist."""
        if (self.items["array_row"] < 0).any() and not self.image_root.is_dir():
            return self.image_root
        return None

    def iter_items(
        self,
        indices: Sequence[int] | npt.NDArray[np.integer[Any]],
        *,
        mode: str | None = None,
        size: tuple[int, int] | None = None,
        n_jobs: int = 1,
        margin: float = 0.0,
        min_size: tuple[int, int] | None = None,
    ) -> Iterator[tuple[int, npt.NDArray[np.uint8] | None]]:
        """Yield ``(index, pixels)`` in order; ``pixels`` is None when unreadable.

        ``n_jobs`` threads decode ahead (PIL releases the GIL while decoding).
        Unreadable items are logged at DEBUG; stages count them and report
        them with :func:`unreadable_report`.
        """
        from concurrent.futures import ThreadPoolExecutor

        def _one(i: int) -> tuple[int, npt.NDArray[np.uint8] | None]:
            try:
                return i, self.read_item(
                    i, mode=mode, size=size, margin=margin, min_size=min_size
                )
            except (OSError, ValueError) as e:
                logger.debug("item %d (%s) unreadable: %s", i, self.item_path(i), e)
                return i, None

        idx = [int(i) for i in indices]
        if n_jobs <= 1:
            yield from map(_one, idx)
            return
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            yield from pool.map(_one, idx)


_N_NAMED = 5


def _fix_hint(ws: Workspace) -> str:
    root = ws.missing_image_root()
    if root is not None:
        return (
            f"Their image folder {str(root)!r} (image_root in "
            f"{str(ws.root / _META)!r}) does not exist: move the images back "
            "there, or re-run `clusterlens ingest` on their new location."
        )
    return (
        "Restore those files (or move the images back), or re-run "
        "`clusterlens ingest` to leave the unreadable ones out."
    )


def check_image_root(ws: Workspace, stage: str) -> None:
    """Fail at once when the workspace's image folder is gone (issue #17 row 11).

    Raises
    ------
    DataValidationError
        If items are read from ``image_root`` and it does not exist, naming
        the workspace, the count and the first missing file.
    """
    root = ws.missing_image_root()
    if root is None:
        return
    from_files = np.flatnonzero(ws.items["array_row"] < 0)
    raise DataValidationError(
        f"{stage}: {from_files.size} of {len(ws)} items of workspace "
        f"{str(ws.root)!r} are unreadable (first: "
        f"{ws.item_path(int(from_files[0]))!r}). {_fix_hint(ws)}"
    )


def unreadable_report(
    ws: Workspace,
    stage: str,
    unreadable: Sequence[int] | npt.NDArray[np.integer[Any]],
    *,
    outcome: str,
    stacklevel: int = 2,
) -> dict[str, Any]:
    """Apply the unreadable-item rule shared by every stage (issue #17 row 12).

    No unreadable item: nothing. More than half of the items unreadable
    (:data:`clusterlens.io._images.MAX_UNREADABLE_FRACTION`): fail. Otherwise warn,
    naming the first few items with the reason. Returns the fields for
    ``run.json``'s results: ``unreadable_items`` (the count) and
    ``unreadable`` (index, item_id, path and reason of the first few).

    Raises
    ------
    DataValidationError
        If more than half of the items are unreadable.
    """
    bad = sorted({int(i) for i in unreadable})
    named: list[dict[str, Any]] = []
    for i in bad[:_N_NAMED]:
        named.append(
            {
                "index": i,
                "item_id": str(ws.items["item_id"][i]),
                "path": ws.item_path(i),
                "reason": ws.item_problem(i) or "unreadable while the stage ran",
            }
        )
    summary = {"unreadable_items": len(bad), "unreadable": named}
    if not bad:
        return summary
    n = len(ws)
    if too_many_unreadable(len(bad), n):
        first = named[0]
        raise DataValidationError(
            f"{stage}: {len(bad)} of {n} items of workspace {str(ws.root)!r} are "
            f"unreadable (more than half; first: {first['path']!r}: "
            f"{first['reason']}). {_fix_hint(ws)}"
        )
    listed = describe_unreadable(
        [(u["path"], u["reason"]) for u in named], limit=_N_NAMED
    )
    more = f" and {len(bad) - len(named)} more" if len(bad) > len(named) else ""
    warnings.warn(
        f"{stage}: {len(bad)} of {n} items of workspace {str(ws.root)!r} are "
        f"unreadable and {outcome}: {listed}{more}. {_fix_hint(ws)}",
        DataQualityWarning,
        stacklevel=stacklevel + 1,
    )
    return summary


_BBOX = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")

#: Context ``features cnn`` keeps around a box item: 10 % of the box's width
#: (height) on each side, clipped to the image, as the crops of the coreset
#: notebook (issue #23) keep some surroundings of the object.
CROP_MARGIN = 0.1


def open_workspace(path: PathLike) -> Workspace:
    """Open a workspace written by :func:`create_workspace` (``clusterlens ingest``).

    Raises
    ------
    DataValidationError
        If ``path`` is not a workspace.
    """
    root = Path(os.fspath(path))
    meta_file = root / _META
    if not (root / _ITEMS).is_file() or not meta_file.is_file():
        raise DataValidationError(
            f"{str(root)!r} is not a clusterlens workspace (no {_ITEMS} and {_META}). "
            "Create one with: clusterlens ingest SOURCE --out WS"
        )
    meta = read_json(meta_file, what="workspace file", fix=_REINGEST)
    if meta.get("schema") != WORKSPACE_SCHEMA:
        raise DataValidationError(
            f"{str(meta_file)!r} has schema {meta.get('schema')!r}; expected "
            f"{WORKSPACE_SCHEMA!r}. Re-run clusterlens ingest."
        )
    for key, typ, name in (
        ("image_root", str, "a string"),
        ("class_names", (list, type(None)), "a list or null"),
    ):
        if key in meta and not isinstance(meta[key], typ):
            raise DataValidationError(
                invalid_file(
                    meta_file,
                    "workspace file",
                    f"{key!r} is {type(meta[key]).__name__}, expected {name}",
                    _REINGEST,
                )
            )
    items = read_results(
        root / _ITEMS, what="workspace items table", fix=_REINGEST, columns=_COLUMNS
    )
    problem = next(
        (
            f"its {c!r} column holds {items[c].dtype}, not integers"
            for c in ("index", "label", "array_row")
            if items[c].dtype.kind not in "iu"
        ),
        None,
    )
    if problem is None and not np.array_equal(
        items["index"], np.arange(items["index"].shape[0])
    ):
        problem = "its 'index' column is not 0, 1, ..., n_items - 1"
    if problem is not None:
        raise DataValidationError(
            invalid_file(root / _ITEMS, "workspace items table", problem, _REINGEST)
        )
    rows = items["array_row"]
    if rows.size and (rows >= 0).any():
        # Check the pixels of array sources now: a missing or damaged
        # images.npy fails here with its name, not at the first item read.
        if not (root / _ARRAY).is_file():
            raise DataValidationError(
                f"Workspace {str(root)!r} has no {_ARRAY}, but its items are read "
                f"from it; {_REINGEST}."
            )
        arr = _load_array(root)
        if rows.size and int(rows.max()) >= arr.shape[0]:
            raise DataValidationError(
                invalid_file(
                    root / _ARRAY,
                    "workspace image array",
                    f"it holds {arr.shape[0]} images but items.parquet refers to "
                    f"row {int(rows.max())}",
                    _REINGEST,
                )
            )
    return Workspace(root=root, meta=meta, items=items)


def _load_array(root: Path) -> npt.NDArray[np.uint8]:
    """``images.npy`` of a workspace, memory-mapped and checked."""
    arr = load_npy(
        root / _ARRAY,
        what="workspace image array",
        fix=_REINGEST,
        mmap=True,
        kinds="u",
    )
    if arr.ndim not in (3, 4):
        raise DataValidationError(
            invalid_file(
                root / _ARRAY,
                "workspace image array",
                f"it has shape {arr.shape}, expected (n, height, width[, 3])",
                _REINGEST,
            )
        )
    return arr


# --------------------------------------------------------------------------- #
# Ingest
# --------------------------------------------------------------------------- #
def _empty_bbox(n: int) -> dict[str, npt.NDArray[np.float64]]:
    return {c: np.full(n, np.nan) for c in _BBOX}


def _probe_sizes(
    paths: Sequence[Path], n_jobs: int, verbose: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], list[str | None]]:
    """Width, height and why each file is unreadable (None: readable).

    Decodes every file (finds corruption) through the checks every stage
    uses, so what ingest keeps the features stages can read; a JPEG at its
    smallest DCT scale (:func:`probe_image`: all its data is still read).
    """
    from concurrent.futures import ThreadPoolExecutor

    from clusterlens.utils._progress import progress

    def _one(p: Path) -> tuple[int, int, str | None]:
        try:
            w, h = probe_image(p)
        except UnreadableImageError as e:
            logger.debug("unreadable %s: %s", p, e.reason)
            return 0, 0, e.reason
        return w, h, None

    bar = progress(total=len(paths), desc="ingest", unit="img", verbose=verbose)
    out: list[tuple[int, int, str | None]] = []
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        for r in pool.map(_one, paths):
            out.append(r)
            bar.update(1)
    bar.close()
    w = np.array([r[0] for r in out], dtype=np.int64)
    h = np.array([r[1] for r in out], dtype=np.int64)
    return w, h, [r[2] for r in out]


def _relative(p: Path, root: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _ingest_folder(src: Path, n_jobs: int, verbose: int) -> dict[str, Any]:
    listing = list_image_folder(src)
    if listing.n_duplicates:
        logger.info(
            "%d files under %s are reached twice (links); each is listed once",
            listing.n_duplicates,
            src,
        )
    w, h, why = _probe_sizes(listing.paths, n_jobs, verbose)
    ok = np.array([r is None for r in why], dtype=bool)
    rel = [str(p.relative_to(src)) for p in listing.paths]
    skipped = sorted(
        [(_relative(p, src), r) for p, r in listing.skipped]
        + [(r, y) for r, y in zip(rel, why, strict=True) if y is not None]
    )
    keep = np.flatnonzero(ok)
    n = keep.size
    names = listing.class_names or []
    labels = listing.labels[keep] if listing.labels is not None else np.full(n, -1)
    cols: dict[str, Any] = {
        "item_id": np.array([rel[i] for i in keep], dtype=object),
        "path": np.array([rel[i] for i in keep], dtype=object),
        "width": w[keep],
        "height": h[keep],
        "label": labels.astype(np.int64),
        "label_name": np.array([names[x] if x >= 0 else "" for x in labels], object),
        "split": np.array(
            [listing.split[i] for i in keep] if listing.split else [""] * n, object
        ),
        **_empty_bbox(n),
        "array_row": np.full(n, -1, dtype=np.int64),
    }
    return {
        "kind": "folder",
        "image_root": str(src.resolve()),
        "class_names": listing.class_names,
        "columns": cols,
        "skipped": skipped,
        "n_files": len(listing.paths) + len(listing.skipped),
        "output_dirs": [_relative(p, src) for p in listing.output_dirs],
    }


def _ingest_coco(
    src: Path,
    image_dir: Path | None,
    *,
    boxes: bool,
    min_box_size: float,
    min_class_count: int,
    include_crowd: bool = False,
    n_jobs: int,
    verbose: int,
) -> dict[str, Any]:
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataValidationError(f"Cannot read COCO JSON {str(src)!r}: {e}.") from e
    if not isinstance(data, dict) or "images" not in data:
        raise DataValidationError(
            f"{str(src)!r} is not a COCO instances file (no 'images' list)."
        )
    if image_dir is None:
        for cand in (src.parent / "images", src.parent):
            if cand.is_dir() and any(
                (cand / str(im.get("file_name", ""))).is_file()
                for im in data["images"][:5]
            ):
                image_dir = cand
                break
        else:
            raise DataValidationError(
                f"Cannot find the images of {str(src)!r} beside it (looked in "
                f"{str(src.parent / 'images')!r} and {str(src.parent)!r}). Pass "
                "--images DIR."
            )
    images = {im["id"]: im for im in data["images"]}
    clip_counts = {"n_clipped": 0, "n_outside": 0}
    box_filter: dict[str, Any] | None = None
    if boxes:
        # The shared COCO parser and box filters: every annotation is checked
        # (an unknown category_id or image_id is an error naming the file and
        # annotation id) and the boxes kept are those anchors and label-issues
        # keep (inside the image, not crowd, at least min_box_size a side).
        from clusterlens.io._boxes import describe_dropped
        from clusterlens.io._boxes_coco import coco_box_rows

        with cli_names({"min_size": "--min-box-size"}):
            _, parsed, names, ok, dropped = coco_box_rows(
                src, include_crowd=include_crowd, min_size=min_box_size
            )
        anns_all = data["annotations"]
        xyxy = np.asarray(parsed["xyxy"], dtype=np.float64)
        wh = xyxy[:, 2:] - xyxy[:, :2]
        clip_counts = {
            "n_clipped": int(np.count_nonzero(ok & parsed["clipped"])),
            "n_outside": int(np.count_nonzero(~parsed["crowd"] & parsed["outside"])),
        }
        cat_of = np.asarray(parsed["category"], dtype=np.int64)
        counts = np.bincount(cat_of[ok], minlength=len(names))
        rare = ok & (counts[cat_of] < min_class_count)
        if min_class_count > 1:
            dropped.append(
                (
                    "rare",
                    int(np.count_nonzero(rare)),
                    f"categories with under {min_class_count} boxes, --min-class-count",
                )
            )
        ok &= ~rare
        rows = np.flatnonzero(ok)
        if not rows.size:
            raise DataValidationError(
                f"No box of {str(src)!r} is left with --min-box-size {min_box_size} "
                f"and --min-class-count {min_class_count}. Lower them."
            )
        box_filter = {
            "n_read": int(ok.size),
            "dropped": [{"filter": k, "count": c, "reason": r} for k, c, r in dropped],
            "summary": describe_dropped(int(ok.size), int(rows.size), dropped),
            "min_box_size": float(min_box_size),
            "include_crowd": bool(include_crowd),
        }
        anns = [anns_all[i] for i in rows.tolist()]
        used = np.unique(cat_of[rows])
        remap = np.full(len(names), -1, dtype=np.int64)
        remap[used] = np.arange(used.size)
        class_names = [names[i] for i in used.tolist()]
        imgs = [images[a["image_id"]] for a in anns]
        label = remap[cat_of[rows]]
        bb = np.column_stack((xyxy[rows, :2], wh[rows]))
        cols: dict[str, Any] = {
            "item_id": np.array(
                [
                    f"{im['file_name']}#box{a['id']}"
                    for im, a in zip(imgs, anns, strict=True)
                ],
                object,
            ),
            "path": np.array([str(im["file_name"]) for im in imgs], object),
            "width": np.array([int(im["width"]) for im in imgs], np.int64),
            "height": np.array([int(im["height"]) for im in imgs], np.int64),
            "label": label,
            "label_name": np.array([class_names[x] for x in label], object),
            "split": np.array([""] * len(anns), object),
            "bbox_x": bb[:, 0],
            "bbox_y": bb[:, 1],
            "bbox_w": bb[:, 2],
            "bbox_h": bb[:, 3],
            "array_row": np.full(len(anns), -1, np.int64),
        }
        kind = "coco-boxes"
    else:
        ims = sorted(images.values(), key=lambda im: str(im["file_name"]))
        n = len(ims)
        cols = {
            "item_id": np.array([str(im["file_name"]) for im in ims], object),
            "path": np.array([str(im["file_name"]) for im in ims], object),
            "width": np.array([int(im.get("width", 0)) for im in ims], np.int64),
            "height": np.array([int(im.get("height", 0)) for im in ims], np.int64),
            "label": np.full(n, -1, np.int64),
            "label_name": np.array([""] * n, object),
            "split": np.array([""] * n, object),
            **_empty_bbox(n),
            "array_row": np.full(n, -1, np.int64),
        }
        class_names = None
        kind = "coco"
    unique_paths = sorted(set(cols["path"].tolist()))
    _, _, why = _probe_sizes([image_dir / p for p in unique_paths], n_jobs, verbose)
    bad = {p: y for p, y in zip(unique_paths, why, strict=True) if y is not None}
    keep_rows = np.array([p not in bad for p in cols["path"]], dtype=bool)
    cols = {k: v[keep_rows] for k, v in cols.items()}
    return {
        **clip_counts,
        "box_filter": box_filter,
        "kind": kind,
        "image_root": str(image_dir.resolve()),
        "class_names": class_names,
        "columns": cols,
        "skipped": sorted(bad.items()),
        "n_files": len(unique_paths),
        "output_dirs": [],
    }


def _ingest_box_folder(
    src: Path,
    image_dir: Path | None,
    *,
    min_box_size: float,
    min_class_count: int,
    class_names: Sequence[str] | None,
    n_jobs: int,
    verbose: int,
) -> dict[str, Any]:
    """One item per kept box of a YOLO labels folder or a VOC annotation folder.

    The boxes are those ``label-issues`` and ``anchors`` keep (the shared
    readers and filters of :func:`clusterlens.io._box_samples.box_samples`);
    the items hold the same columns as a COCO ``--boxes`` workspace, so every
    later stage (``features cnn``, ``label-issues``, the app) reads them alike.
    """
    from clusterlens.io._box_samples import box_samples
    from clusterlens.io._boxes import describe_dropped
    from clusterlens.io._read_boxes import detect_box_format

    fmt, _ = detect_box_format(src)  # a folder: YOLO or VOC
    with cli_names({"min_size": "--min-box-size"}):
        samples = box_samples(
            src, image_dir, min_size=min_box_size, class_names=class_names
        )
    dropped = list(samples.dropped)
    cat_of = samples.labels
    counts = np.bincount(cat_of, minlength=len(samples.class_names))
    rare = counts[cat_of] < min_class_count
    if min_class_count > 1:
        dropped.append(
            (
                "rare",
                int(np.count_nonzero(rare)),
                f"categories with under {min_class_count} boxes, --min-class-count",
            )
        )
    rows = np.flatnonzero(~rare)
    if not rows.size:
        raise DataValidationError(
            f"No box of {str(src)!r} is left with --min-box-size {min_box_size} "
            f"and --min-class-count {min_class_count}. Lower them."
        )
    n_read = samples.n_read
    box_filter = {
        "n_read": n_read,
        "dropped": [{"filter": k, "count": c, "reason": r} for k, c, r in dropped],
        "summary": describe_dropped(n_read, int(rows.size), dropped),
        "min_box_size": float(min_box_size),
        "include_crowd": False,
    }
    paths = samples.image_path[rows]
    root = Path(os.path.commonpath([os.path.dirname(p) for p in set(paths.tolist())]))
    rel = np.asarray([os.path.relpath(p, root) for p in paths.tolist()], object)
    used = np.unique(cat_of[rows])
    remap = np.full(len(samples.class_names), -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    names = [samples.class_names[i] for i in used.tolist()]
    label = remap[cat_of[rows]]
    bb = samples.bbox[rows]
    cols: dict[str, Any] = {
        "item_id": np.asarray(
            [
                f"{r}#box{a}"
                for r, a in zip(
                    rel.tolist(), samples.annotation_id[rows].tolist(), strict=True
                )
            ],
            object,
        ),
        "path": rel,
        "width": samples.img_w[rows].astype(np.int64),
        "height": samples.img_h[rows].astype(np.int64),
        "label": label,
        "label_name": np.asarray([names[x] for x in label], object),
        "split": np.asarray([""] * rows.size, object),
        "bbox_x": bb[:, 0],
        "bbox_y": bb[:, 1],
        "bbox_w": bb[:, 2],
        "bbox_h": bb[:, 3],
        "array_row": np.full(rows.size, -1, np.int64),
    }
    unique_paths = sorted(set(rel.tolist()))
    _, _, why = _probe_sizes([root / p for p in unique_paths], n_jobs, verbose)
    bad = {p: y for p, y in zip(unique_paths, why, strict=True) if y is not None}
    keep_rows = np.array([p not in bad for p in cols["path"]], dtype=bool)
    cols = {k: v[keep_rows] for k, v in cols.items()}
    return {
        "box_filter": box_filter,
        "kind": f"{fmt.lower()}-boxes",
        "image_root": str(root.resolve()),
        "class_names": names,
        "columns": cols,
        "skipped": sorted(bad.items()),
        "n_files": len(unique_paths),
        "output_dirs": [],
    }


def _ingest_array(src: Path, kind: str, out: Path) -> dict[str, Any]:
    data = load_image_array(src)
    np.save(out / _ARRAY, data.images)
    n = len(data)
    labels = data.labels if data.labels is not None else np.full(n, -1, np.int64)
    names = data.class_names or (
        [str(c) for c in range(int(labels.max()) + 1)] if (labels >= 0).any() else None
    )
    cols: dict[str, Any] = {
        "item_id": np.array([f"{kind}:{i}" for i in range(n)], object),
        "path": np.array([""] * n, object),
        "width": np.full(n, data.images.shape[2], np.int64),
        "height": np.full(n, data.images.shape[1], np.int64),
        "label": labels.astype(np.int64),
        "label_name": np.array(
            [names[x] if names and x >= 0 else "" for x in labels], object
        ),
        "split": np.array(data.split if data.split else [""] * n, object),
        **_empty_bbox(n),
        "array_row": np.arange(n, dtype=np.int64),
    }
    return {
        "kind": kind,
        "image_root": "",
        "class_names": names,
        "columns": cols,
        "skipped": [],
        "n_files": n,
        "output_dirs": [],
    }


def create_workspace(
    source: PathLike,
    out: PathLike,
    *,
    boxes: bool = False,
    images: PathLike | None = None,
    split: str | None = None,
    min_box_size: float = MIN_BOX_SIZE,
    min_class_count: int = 1,
    include_crowd: bool = False,
    class_names: Sequence[str] | None = None,
    n_jobs: int = 2,
    verbose: int = 0,
) -> Workspace:
    """Ingest an image source into the (existing, empty) folder ``out``.

    Parameters
    ----------
    source : str or os.PathLike
        An image folder (sub-folders name labels), a COCO instances JSON, an
        MNIST-style IDX folder or file, or an ``.npz`` with ``images``; with
        ``boxes``, also a YOLO labels folder (or dataset root with
        ``labels/``) or a Pascal VOC annotation folder (or year root with
        ``Annotations/``).
    out : str or os.PathLike
        The workspace folder to fill (the CLI passes a staging folder).
    boxes : bool, default=False
        COCO, YOLO or VOC: one item per box crop (labelled with its category)
        instead of one per image (unlabelled; COCO only).
    images : str or os.PathLike, default=None
        Boxes: the folder of the images (default: COCO ``images/`` beside the
        JSON, or the JSON's folder; YOLO the ``images`` twin of the ``labels``
        folder; VOC the year root's ``JPEGImages``).
    split : str, default=None
        Keep only this split (folder or IDX sources).
    min_box_size : float, default=MIN_BOX_SIZE (1.0)
        COCO boxes: drop boxes narrower or lower than this many pixels (the
        default of ``label-issues`` and ``anchors`` too).
    min_class_count : int, default=1
        COCO boxes: drop categories with fewer boxes than this.
    include_crowd : bool, default=False
        COCO boxes: keep ``iscrowd=1`` boxes.
    class_names : sequence of str, default=None
        YOLO boxes: the name of each class index (default: ``classes.txt``
        or the dataset's ``data.yaml``).
    n_jobs : int, default=2
        Threads decoding images to check them.
    verbose : int, default=0

    Returns
    -------
    workspace : Workspace

    Raises
    ------
    DataValidationError
        If the source is missing, empty, or of an unknown kind, or more than
        half of its image files are unreadable.

    Warns
    -----
    DataQualityWarning
        When image files are unreadable (fewer than half: they are skipped and
        listed in ``skipped.txt``), or sub-folders are clusterlens outputs
        (skipped and counted).
    """
    t0 = time.perf_counter()
    src = Path(os.fspath(source))
    dst = Path(os.fspath(out))
    if not src.exists():
        raise DataValidationError(
            f"Source {str(src)!r} does not exist. Pass an image folder, a COCO JSON, "
            "an MNIST-style IDX folder or an .npz with 'images'."
        )
    if boxes and src.is_dir():
        info = _ingest_box_folder(
            src,
            Path(os.fspath(images)) if images is not None else None,
            min_box_size=min_box_size,
            min_class_count=min_class_count,
            class_names=class_names,
            n_jobs=n_jobs,
            verbose=verbose,
        )
    elif src.is_file() and src.suffix.lower() == ".json":
        info = _ingest_coco(
            src,
            Path(os.fspath(images)) if images is not None else None,
            boxes=boxes,
            min_box_size=min_box_size,
            min_class_count=min_class_count,
            include_crowd=include_crowd,
            n_jobs=n_jobs,
            verbose=verbose,
        )
    elif (src.is_dir() and any(_is_idx_images(f.name) for f in src.iterdir())) or (
        src.is_file() and _is_idx_images(src.name)
    ):
        info = _ingest_array(src, "idx", dst)
    elif src.is_file() and src.suffix.lower() == ".npz":
        info = _ingest_array(src, "npz", dst)
    elif src.is_dir():
        info = _ingest_folder(src, n_jobs, verbose)
    elif src.suffix.lower() in IMAGE_SUFFIXES or src.suffix.lower() == ".tar":
        raise DataValidationError(
            f"Source {str(src)!r} is a single file; pass the folder of images "
            "(extract an archive first, e.g. tar xf FILE)."
        )
    else:
        raise DataValidationError(
            f"Cannot ingest {str(src)!r}: expected an image folder, a COCO JSON, an "
            "MNIST-style IDX folder or an .npz with 'images'."
        )
    cols = info["columns"]
    if split is not None:
        keep = cols["split"] == split
        if not keep.any():
            have = sorted({s for s in cols["split"] if s})
            raise DataValidationError(
                f"Source {str(src)!r} has no {split!r} split (splits: "
                f"{', '.join(have) if have else 'none'})."
            )
        cols = {k: v[keep] for k, v in cols.items()}
    n = int(cols["label"].shape[0])
    skipped: list[tuple[str, str]] = info["skipped"]
    if skipped and too_many_unreadable(len(skipped), info["n_files"]):
        first, why = skipped[0]
        raise DataValidationError(
            f"{len(skipped)} of {info['n_files']} image files of {str(src)!r} are "
            f"unreadable (more than half; first: {first!r}: {why}). Check that "
            "they are real image files and readable, or remove the broken ones."
        )
    if n == 0:
        raise DataValidationError(f"No readable image in {str(src)!r}.")
    outputs: list[str] = info["output_dirs"]
    if outputs:
        warnings.warn(
            f"Skipped {len(outputs)} clusterlens output folder(s) under "
            f"{str(src)!r} (holding {' or '.join(OUTPUT_MARKERS)}): "
            f"{', '.join(repr(o) for o in outputs[:5])}"
            f"{f' and {len(outputs) - 5} more' if len(outputs) > 5 else ''}.",
            DataQualityWarning,
            stacklevel=2,
        )
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} unreadable image file(s) of {str(src)!r} "
            f"(listed in skipped.txt): {describe_unreadable(skipped)}.",
            DataQualityWarning,
            stacklevel=2,
        )
        atomic_write_text(dst / "skipped.txt", "\n".join(p for p, _ in skipped) + "\n")
    table = {"index": np.arange(n, dtype=np.int64), **cols}
    table["item_id"] = table["item_id"].astype(str)
    table["path"] = table["path"].astype(str)
    table["label_name"] = table["label_name"].astype(str)
    table["split"] = table["split"].astype(str)
    write_results(dst / _ITEMS, table)
    meta = {
        "schema": WORKSPACE_SCHEMA,
        "source": str(src.resolve()),
        "kind": info["kind"],
        "image_root": info["image_root"],
        "n_items": n,
        "class_names": info["class_names"],
        "n_labelled": int((table["label"] >= 0).sum()),
        "n_skipped": len(skipped),
        "skipped": [{"path": p, "reason": r} for p, r in skipped[:20]],
        "n_skipped_output_folders": len(outputs),
        # boxes clipped to their image / dropped wholly outside it (--boxes)
        "n_clipped": int(info.get("n_clipped", 0)),
        "n_outside": int(info.get("n_outside", 0)),
        "seconds": time.perf_counter() - t0,
    }
    if info.get("box_filter") is not None:
        meta["box_filter"] = info["box_filter"]
    write_run_json(dst / _META, meta)
    return open_workspace(dst)
