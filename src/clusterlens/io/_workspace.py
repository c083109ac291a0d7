"""The image workspace: one folder that every image stage reads from and writes to.

``clusterlens ingest SOURCE --out WS`` creates it; each later stage reads what the
stage before it wrote and adds its own sub-folder. Every sub-folder is written
through a staging folder, so a folder that exists is complete. Layout::

    WS/
      workspace.json        schema "clusterlens.workspace/1": source, kind
                            ("folder", "coco", "coco-boxes", "idx", "npz"),
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
      skipped.txt           files that could not be decoded (one per line)
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataQualityWarning, DataValidationError
from clusterlens.io._images import (
    IMAGE_SUFFIXES,
    _is_idx_images,
    list_image_folder,
    load_image_array,
)
from clusterlens.io._results import read_results, write_results, write_run_json
from clusterlens.io._safe import invalid_file, load_npy, read_json
from clusterlens.typing import PathLike
from clusterlens.utils._fs import atomic_write_text

__all__ = ["WORKSPACE_SCHEMA", "Workspace", "create_workspace", "open_workspace"]

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

    def read_item(
        self,
        i: int,
        *,
        mode: str | None = None,
        size: tuple[int, int] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """Pixels of item ``i`` (crop applied), uint8 (H, W) or (H, W, 3).

        Raises
        ------
        OSError
            If the image file cannot be decoded.
        """
        from PIL import Image

        row = int(self.items["array_row"][i])
        if row >= 0:
            arr = np.asarray(self._array()[row])
            img = Image.fromarray(arr)
        else:
            path = self.image_root / str(self.items["path"][i])
            with Image.open(path) as f:
                f.load()
                img = f.copy()
        x, y, w, h = (float(self.items[c][i]) for c in _BBOX)
        if np.isfinite(w):
            box = (
                int(np.floor(x)),
                int(np.floor(y)),
                max(int(np.ceil(x + w)), int(np.floor(x)) + 1),
                max(int(np.ceil(y + h)), int(np.floor(y)) + 1),
            )
            img = img.crop(box)
        target = (
            mode if mode is not None else ("L" if img.mode in ("L", "1") else "RGB")
        )
        if img.mode != target:
            img = img.convert(target)
        if size is not None:
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).copy()

    def iter_items(
        self,
        indices: Sequence[int] | npt.NDArray[np.integer[Any]],
        *,
        mode: str | None = None,
        size: tuple[int, int] | None = None,
        n_jobs: int = 1,
    ) -> Iterator[tuple[int, npt.NDArray[np.uint8] | None]]:
        """Yield ``(index, pixels)`` in order; ``pixels`` is None when unreadable.

        ``n_jobs`` threads decode ahead (PIL releases the GIL while decoding).
        """
        from concurrent.futures import ThreadPoolExecutor

        def _one(i: int) -> tuple[int, npt.NDArray[np.uint8] | None]:
            try:
                return i, self.read_item(i, mode=mode, size=size)
            except (OSError, SyntaxError, ValueError) as e:
                logger.warning(
                    "item %d (%s) unreadable: %s", i, self.items["path"][i], e
                )
                return i, None

        idx = [int(i) for i in indices]
        if n_jobs <= 1:
            yield from map(_one, idx)
            return
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            yield from pool.map(_one, idx)


_BBOX = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


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
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Width, height and decodability of each file (decodes fully: finds corruption)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from clusterlens.utils._progress import progress

    def _one(p: Path) -> tuple[int, int, bool]:
        try:
            with Image.open(p) as img:
                img.load()
                return img.width, img.height, True
        except (OSError, SyntaxError, ValueError) as e:
            logger.debug("unreadable %s: %s", p, e)
            return 0, 0, False

    bar = progress(total=len(paths), desc="ingest", unit="img", verbose=verbose)
    out: list[tuple[int, int, bool]] = []
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        for r in pool.map(_one, paths):
            out.append(r)
            bar.update(1)
    bar.close()
    w = np.array([r[0] for r in out], dtype=np.int64)
    h = np.array([r[1] for r in out], dtype=np.int64)
    ok = np.array([r[2] for r in out], dtype=bool)
    return w, h, ok


def _ingest_folder(src: Path, n_jobs: int, verbose: int) -> dict[str, Any]:
    listing = list_image_folder(src)
    w, h, ok = _probe_sizes(listing.paths, n_jobs, verbose)
    rel = [str(p.relative_to(src)) for p in listing.paths]
    skipped = [r for r, k in zip(rel, ok, strict=True) if not k]
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
    }


def _ingest_coco(
    src: Path,
    image_dir: Path | None,
    *,
    boxes: bool,
    min_box_size: float,
    min_class_count: int,
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
    cats = sorted(data.get("categories", []), key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    names = [str(c["name"]) for c in cats]
    images = {im["id"]: im for im in data["images"]}
    anns = [a for a in data.get("annotations", []) if not a.get("iscrowd", 0)]
    if boxes:
        wh = np.array([a["bbox"][2:4] for a in anns], dtype=np.float64).reshape(-1, 2)
        keep = np.flatnonzero((wh >= max(min_box_size, 1.0)).all(axis=1))
        anns = [anns[i] for i in keep]
        counts = np.bincount(
            [cat_index[a["category_id"]] for a in anns], minlength=len(names)
        )
        anns = [
            a for a in anns if counts[cat_index[a["category_id"]]] >= min_class_count
        ]
        if not anns:
            raise DataValidationError(
                f"No box of {str(src)!r} is left with min_box_size={min_box_size} "
                f"and min_class_count={min_class_count}. Lower them."
            )
        used = sorted({cat_index[a["category_id"]] for a in anns})
        remap = {old: new for new, old in enumerate(used)}
        class_names = [names[i] for i in used]
        imgs = [images[a["image_id"]] for a in anns]
        label = np.array([remap[cat_index[a["category_id"]]] for a in anns], np.int64)
        bb = np.array([a["bbox"] for a in anns], dtype=np.float64)
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
    _, _, ok = _probe_sizes([image_dir / p for p in unique_paths], n_jobs, verbose)
    bad = {p for p, k in zip(unique_paths, ok, strict=True) if not k}
    keep_rows = np.array([p not in bad for p in cols["path"]], dtype=bool)
    cols = {k: v[keep_rows] for k, v in cols.items()}
    return {
        "kind": kind,
        "image_root": str(image_dir.resolve()),
        "class_names": class_names,
        "columns": cols,
        "skipped": sorted(bad),
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
    }


def create_workspace(
    source: PathLike,
    out: PathLike,
    *,
    boxes: bool = False,
    images: PathLike | None = None,
    split: str | None = None,
    min_box_size: float = 8.0,
    min_class_count: int = 1,
    n_jobs: int = 2,
    verbose: int = 0,
) -> Workspace:
    """Ingest an image source into the (existing, empty) folder ``out``.

    Parameters
    ----------
    source : str or os.PathLike
        An image folder (sub-folders name labels), a COCO instances JSON, an
        MNIST-style IDX folder or file, or an ``.npz`` with ``images``.
    out : str or os.PathLike
        The workspace folder to fill (the CLI passes a staging folder).
    boxes : bool, default=False
        COCO only: one item per box crop (labelled with its category) instead
        of one per image (unlabelled).
    images : str or os.PathLike, default=None
        COCO only: the folder of the images (default: ``images/`` beside the
        JSON, or the JSON's folder).
    split : str, default=None
        Keep only this split (folder or IDX sources).
    min_box_size : float, default=8.0
        COCO boxes: drop boxes narrower or lower than this many pixels.
    min_class_count : int, default=1
        COCO boxes: drop categories with fewer boxes than this.
    n_jobs : int, default=2
        Threads decoding images to check them.
    verbose : int, default=0

    Returns
    -------
    workspace : Workspace

    Raises
    ------
    DataValidationError
        If the source is missing, empty, or of an unknown kind.
    """
    import warnings

    t0 = time.perf_counter()
    src = Path(os.fspath(source))
    dst = Path(os.fspath(out))
    if not src.exists():
        raise DataValidationError(
            f"Source {str(src)!r} does not exist. Pass an image folder, a COCO JSON, "
            "an MNIST-style IDX folder or an .npz with 'images'."
        )
    if src.is_file() and src.suffix.lower() == ".json":
        info = _ingest_coco(
            src,
            Path(os.fspath(images)) if images is not None else None,
            boxes=boxes,
            min_box_size=min_box_size,
            min_class_count=min_class_count,
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
    if n == 0:
        raise DataValidationError(f"No readable image in {str(src)!r}.")
    skipped = info["skipped"]
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} unreadable image file(s) of {str(src)!r} "
            f"(listed in skipped.txt), e.g. {skipped[0]!r}.",
            DataQualityWarning,
            stacklevel=2,
        )
        atomic_write_text(dst / "skipped.txt", "\n".join(skipped) + "\n")
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
        "seconds": time.perf_counter() - t0,
    }
    write_run_json(dst / _META, meta)
    return open_workspace(dst)
