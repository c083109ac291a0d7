"""COCO instances JSON: one box per annotation."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.exceptions import DataValidationError
from clusterlens.io._boxes import (
    _MAX_LISTED,
    MAX_IMAGE_SIDE,
    MIN_BOX_SIZE,
    BoxTable,
    IntArray,
    _apply_filters,
    _as_path,
    _bbox_xywh,
    _check_file,
    _check_min_size,
    _filter_boxes,
    _float_column,
    _read_text,
    _report_clipping,
    clip_boxes,
)
from clusterlens.typing import PathLike
from clusterlens.utils._names import arg_name

__all__ = ["coco_box_rows", "read_coco_boxes"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- #
# COCO
# --------------------------------------------------------------------------- #
def _load_coco(path: Path) -> dict[str, Any]:
    """Load one COCO instances file and check its top-level structure."""
    _check_file(path, "COCO annotation file")
    text = _read_text(path, "COCO annotation file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataValidationError(
            f"COCO annotation file {str(path)!r} is not valid JSON: {e.msg} at line "
            f"{e.lineno}, column {e.colno}. Check that the file is complete (not "
            "truncated) and is a COCO instances file such as "
            "instances_train2017.json."
        ) from e
    if isinstance(data, list):
        raise DataValidationError(
            f"{str(path)!r} is not a COCO instances file: it holds a JSON list "
            f"({len(data)} items), which looks like a COCO results (detections) "
            "file. Pass the ground-truth file, a JSON object with 'images', "
            "'annotations' and 'categories' lists."
        )
    if not isinstance(data, dict):
        raise DataValidationError(
            f"{str(path)!r} is not a COCO instances file: it holds a JSON "
            f"{type(data).__name__}, expected an object with 'images', "
            "'annotations' and 'categories' lists."
        )
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        found = ", ".join(repr(k) for k in list(data)[:_MAX_LISTED]) or "none"
        raise DataValidationError(
            f"{str(path)!r} is not a COCO instances file: it has no "
            f"{' or '.join(repr(k) for k in missing)} key (found keys: {found}). "
            "Expected a JSON object with 'images', 'annotations' and 'categories' "
            "lists, as in instances_train2017.json."
        )
    for key in ("images", "annotations", "categories"):
        value = data[key]
        if not isinstance(value, list):
            raise DataValidationError(
                f"COCO annotation file {str(path)!r}: {key!r} must be a list of "
                f"objects; got a {type(value).__name__}."
            )
        bad = [i for i, item in enumerate(value) if not isinstance(item, dict)]
        if bad:
            raise DataValidationError(
                f"COCO annotation file {str(path)!r}: every entry of {key!r} must be "
                f"a JSON object; {len(bad)} are not (first at index {bad[0]}: "
                f"{value[bad[0]]!r})."
            )
    return data


def _ann_name(anns: list[dict[str, Any]], i: int) -> str:
    """How to name annotation ``i`` in a message: its id, else its position."""
    ann_id = anns[i].get("id")
    return f"annotation id {ann_id!r}" if ann_id is not None else f"annotation #{i}"


def _lookup(keys: list[Any], table: list[Any], values: IntArray) -> IntArray:
    """Return ``values[i]`` where ``table[i] == key``, per key; -1 when absent.

    ``table`` holds unique ints or strings. Integer keys (the usual COCO ids)
    are matched with a sort and ``searchsorted``; others through a dict.
    """
    k = np.asarray(keys)
    t = np.asarray(table)
    if k.dtype.kind == "i" and t.dtype.kind == "i" and t.size:
        order = np.argsort(t, kind="stable")
        sorted_t = t[order]
        pos = np.minimum(np.searchsorted(sorted_t, k), t.size - 1)
        found = sorted_t[pos] == k
        return np.where(found, values[order[pos]], -1).astype(np.int64, copy=False)
    if not t.size:
        return np.full(len(keys), -1, dtype=np.int64)
    index = {key: i for i, key in enumerate(table)}
    rows = np.fromiter(
        (index.get(x, -1) if isinstance(x, int | str) else -1 for x in keys),
        dtype=np.intp,
        count=len(keys),
    )
    return np.where(rows >= 0, values[rows], -1).astype(np.int64, copy=False)


def _check_unique(ids: list[Any], key: str, where: str) -> None:
    """Raise if an id appears twice in the ``key`` list of one COCO file."""
    if len(set(ids)) == len(ids):
        return
    values, counts = np.unique(
        np.asarray(ids, dtype=object).astype(str), return_counts=True
    )
    dup = str(values[np.argmax(counts > 1)])
    raise DataValidationError(
        f"{where}: id {dup!r} appears more than once in its {key!r} list; ids must "
        "be unique within a file. Fix the file."
    )


def _parse_coco(
    path: Path, data: dict[str, Any], prefix: str
) -> tuple[dict[str, Any], list[str]]:
    """Columns of one COCO file (before filtering) and its category names."""
    where = f"COCO annotation file {str(path)!r}"
    images: list[dict[str, Any]] = data["images"]
    anns: list[dict[str, Any]] = data["annotations"]
    cats: list[dict[str, Any]] = data["categories"]

    bad_cat = [
        i
        for i, c in enumerate(cats)
        if not isinstance(c.get("name"), str) or not isinstance(c.get("id"), int | str)
    ]
    if bad_cat:
        raise DataValidationError(
            f"{where}: every category needs an 'id' and a 'name'; {len(bad_cat)} "
            f"do not (first at index {bad_cat[0]}: {cats[bad_cat[0]]!r})."
        )
    _check_unique([c["id"] for c in cats], "categories", where)
    names = list(dict.fromkeys(c["name"] for c in cats))
    name_pos = {name: i for i, name in enumerate(names)}

    img_keys = [im.get("id") for im in images]
    bad_img = [i for i, k in enumerate(img_keys) if not isinstance(k, int | str)]
    if bad_img:
        raise DataValidationError(
            f"{where}: every image needs an integer or string 'id'; {len(bad_img)} "
            f"do not (first at index {bad_img[0]}: {images[bad_img[0]]!r})."
        )
    _check_unique(img_keys, "images", where)

    n = len(anns)
    ann_img = [a.get("image_id") for a in anns]
    rows = _lookup(ann_img, img_keys, np.arange(len(img_keys), dtype=np.int64))
    orphan = rows < 0
    if orphan.any():
        first = int(np.argmax(orphan))
        raise DataValidationError(
            f"{where}: {int(orphan.sum())} annotations refer to an image that is "
            f"not in its 'images' list (first: {_ann_name(anns, first)} has "
            f"image_id {ann_img[first]!r}). Fix the file or remove these "
            "annotations."
        )

    cat = _lookup(
        [a.get("category_id") for a in anns],
        [c["id"] for c in cats],
        np.array([name_pos[c["name"]] for c in cats], dtype=np.int64),
    )
    unknown = cat < 0
    if unknown.any():
        first = int(np.argmax(unknown))
        known = ", ".join(repr(c["id"]) for c in cats[:_MAX_LISTED])
        raise DataValidationError(
            f"{where}: {int(unknown.sum())} annotations have a category_id that is "
            f"not in its 'categories' list (first: {_ann_name(anns, first)} has "
            f"category_id {anns[first].get('category_id')!r}; known ids: {known}). "
            "Fix the file or remove these annotations."
        )

    img_w_all = _float_column([im.get("width") for im in images])
    img_h_all = _float_column([im.get("height") for im in images])
    used = np.zeros(len(images), dtype=bool)
    used[rows] = True
    no_size = used & ~(
        np.isfinite(img_w_all)
        & np.isfinite(img_h_all)
        & (img_w_all > 0)
        & (img_h_all > 0)
    )
    if no_size.any():
        j = int(np.argmax(no_size))
        im = images[j]
        raise DataValidationError(
            f"{where}: image id {im['id']!r} (file_name {im.get('file_name')!r}) has "
            f"no valid size (width={im.get('width')!r}, height={im.get('height')!r}); "
            f"{int(no_size.sum())} annotated images are like this. Boxes need their "
            "image's size: add positive 'width' and 'height' to these image records."
        )
    huge = used & ((img_w_all > MAX_IMAGE_SIDE) | (img_h_all > MAX_IMAGE_SIDE))
    if huge.any():
        j = int(np.argmax(huge))
        im = images[j]
        raise DataValidationError(
            f"{where}: image id {im['id']!r} (file_name {im.get('file_name')!r}) is "
            f"{im.get('width')!r} x {im.get('height')!r} pixels, larger than any "
            f"image (at most {MAX_IMAGE_SIDE:,} a side); {int(huge.sum())} "
            "annotated images are like this. Fix their 'width' and 'height'."
        )

    xywh = _bbox_xywh([a.get("bbox") for a in anns])
    w, h = xywh[:, 2], xywh[:, 3]
    malformed = ~np.isfinite(xywh).all(axis=1)
    w_bad = ~malformed & (w <= 0)
    h_bad = ~malformed & (h <= 0)
    bad = malformed | w_bad | h_bad
    if bad.any():
        first = int(np.argmax(bad))
        parts = [
            f"{int(k.sum())} {what}"
            for k, what in (
                (w_bad, "have w <= 0"),
                (h_bad, "have h <= 0"),
                (malformed, "have no valid bbox"),
            )
            if k.any()
        ]
        raise DataValidationError(
            f"{where}: boxes must have positive width and height; "
            f"{', '.join(parts)} (first: {_ann_name(anns, first)}, "
            f"bbox={anns[first].get('bbox')!r}). A COCO bbox is [x, y, width, "
            "height] in pixels; fix or remove these annotations."
        )

    img_w, img_h = img_w_all[rows], img_h_all[rows]
    xyxy, clipped, outside = clip_boxes(
        np.column_stack((xywh[:, :2], xywh[:, :2] + xywh[:, 2:])), img_w, img_h
    )
    _report_clipping(
        where,
        clipped,
        outside,
        lambda i: (
            f"{_ann_name(anns, i)}, bbox={anns[i].get('bbox')!r} on a "
            f"{img_w[i]:g}x{img_h[i]:g} image"
        ),
    )
    w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), dtype=bool, count=n)
    ids = np.array([f"{prefix}{k}" for k in img_keys], dtype=np.str_)
    cols = {
        "w": w,
        "h": h,
        "img_w": img_w,
        "img_h": img_h,
        "clipped": clipped,
        "outside": outside,
        "xyxy": xyxy,
        "category": cat,
        "image_id": ids[rows] if n else np.zeros(0, dtype=np.str_),
        "crowd": crowd,
        "n_images": len(images),
    }
    return cols, names


def _crowd_filter() -> str:
    """How a message names the crowd filter: the flag that turns it off."""
    flag = arg_name("include_crowd")
    if flag == "include_crowd":
        return "include_crowd=False"
    return f"iscrowd=1, {flag} keeps them"


def _file_labels(paths: Sequence[Path]) -> list[str]:
    """Short unique labels for files: their stems, or full paths on a clash."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(p) for p in paths]


def read_coco_boxes(
    paths: PathLike | Sequence[PathLike],
    *,
    categories: Sequence[str] | None = None,
    include_crowd: bool = False,
    min_size: float = 0.0,
) -> BoxTable:
    """Read the boxes of one or several COCO instances JSON files.

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        COCO instances files (``instances_train2017.json``), e.g. train and val
        together. Several files are merged: categories are unified by name,
        and image ids are prefixed with ``"<file stem>:"`` to stay unique.
    categories : sequence of str, default=None
        Category names to keep. ``None`` keeps all; otherwise only boxes of
        these categories are read, and ``category_names`` is this list in the
        given order.
    include_crowd : bool, default=False
        Whether to keep ``iscrowd=1`` annotations (boxes around a crowd of
        objects, excluded from COCO evaluation).
    min_size : float, default=0.0
        Drop boxes whose width or height is below this many pixels.

    Returns
    -------
    table : BoxTable
        One row per kept box; ``w, h`` come from ``bbox = [x, y, w, h]`` and
        ``img_w, img_h`` from the image records.

    Raises
    ------
    DataValidationError
        If a file is missing, is not JSON or not a COCO instances file; an
        annotation refers to a missing image or category; an annotated image
        has no size; a bbox is missing or has ``w <= 0`` or ``h <= 0``; a
        requested category does not exist; or no box is left after filtering.
    InvalidParameterError
        If ``min_size`` is negative.

    See Also
    --------
    read_boxes : Detect the format and read.

    Notes
    -----
    Files are read with the standard :mod:`json` module (no pycocotools).
    Every annotation is validated, including those removed by the filters.
    Filters are applied in the order crowd, categories, ``min_size``.

    Examples
    --------
    >>> table = read_coco_boxes(["instances_train2017.json",
    ...                          "instances_val2017.json"])  # doctest: +SKIP
    >>> table.letterboxed_wh(640).shape  # doctest: +SKIP
    (896782, 2)
    """
    min_size = _check_min_size(min_size, "read_coco_boxes")
    if isinstance(paths, str | os.PathLike):
        path_list = [_as_path(paths, "paths")]
    else:
        try:
            path_list = [_as_path(p, "Each COCO path") for p in paths]
        except TypeError as e:
            raise DataValidationError(
                f"paths must be a path or a sequence of paths to COCO JSON files; "
                f"got {type(paths).__name__}."
            ) from e
    if not path_list:
        raise DataValidationError(
            "paths is empty; pass at least one COCO instances JSON file."
        )
    labels = _file_labels(path_list)
    prefixes = [f"{lab}:" for lab in labels] if len(path_list) > 1 else [""]

    names: list[str] = []
    name_pos: dict[str, int] = {}
    parts: list[dict[str, Any]] = []
    for path, prefix in zip(path_list, prefixes, strict=True):
        cols, file_names = _parse_coco(path, _load_coco(path), prefix)
        for name in file_names:
            if name not in name_pos:
                name_pos[name] = len(names)
                names.append(name)
        to_global = np.array([name_pos[nm] for nm in file_names], dtype=np.int64)
        cols["category"] = to_global[cols["category"]]
        parts.append(cols)

    def cat(key: str) -> Any:
        return np.concatenate([p[key] for p in parts])

    source = "COCO JSON " + " + ".join(p.name for p in path_list)
    n_images = sum(p["n_images"] for p in parts)
    crowd = cat("crowd")
    return _apply_filters(
        w=cat("w"),
        h=cat("h"),
        img_w=cat("img_w"),
        img_h=cat("img_h"),
        category=cat("category").astype(np.int64, copy=False),
        names=names,
        image_id=cat("image_id").astype(np.str_, copy=False),
        source=source,
        flag_steps=[] if include_crowd else [("crowd", crowd, _crowd_filter())],
        outside=cat("outside"),
        clipped=cat("clipped"),
        categories=categories,
        min_size=min_size,
        empty_hint=(
            f"It lists {n_images} images and no annotations; check that it is "
            "the right file (image_info_*.json files have no annotations)."
        ),
    )


def coco_box_rows(
    path: PathLike,
    *,
    include_crowd: bool = False,
    min_size: float = MIN_BOX_SIZE,
) -> tuple[dict[str, Any], dict[str, Any], list[str], Any, list[tuple[str, int, str]]]:
    """The boxes of one COCO file that the commands keep, with the raw records.

    The filters of :func:`read_coco_boxes` (the image bounds, crowd,
    ``min_size``) applied by the same code, so ``ingest --boxes``,
    ``label-issues`` and ``anchors`` keep the same boxes of a file.

    Returns
    -------
    data : dict
        The parsed JSON.
    cols : dict
        Per-annotation columns of the shared parser (``xyxy`` clipped to the
        image, ``category``, ``image_id``, ``img_w``, ``img_h``, ...).
    names : list of str
        Category names (``cols["category"]`` indexes them).
    keep : ndarray of shape (n_annotations,), bool
        The boxes kept.
    dropped : list of (key, count, reason)
        What each filter removed (see :func:`describe_dropped`).

    Raises
    ------
    DataValidationError
        If the file is not a valid COCO instances file, or no box is left.
    """
    min_size = _check_min_size(min_size, "coco_box_rows")
    p = _as_path(path, "path")
    data = _load_coco(p)
    cols, names = _parse_coco(p, data, "")
    if not cols["crowd"].size:
        raise DataValidationError(
            f"COCO annotation file {str(p)!r} has no annotations (it lists "
            f"{cols['n_images']} images); check that it is the right file."
        )
    keep, dropped = _filter_boxes(
        w=cols["w"],
        h=cols["h"],
        outside=cols["outside"],
        flag_steps=[] if include_crowd else [("crowd", cols["crowd"], _crowd_filter())],
        category_drop=None,
        category_reason="",
        min_size=min_size,
    )
    if not keep.any():
        parts = ", ".join(f"{c} ({r})" for _, c, r in dropped if c)
        raise DataValidationError(
            f"No box of COCO annotation file {str(p)!r} is left: "
            f"{cols['crowd'].size} read, dropped {parts}. Relax these filters."
        )
    return data, cols, names, keep, dropped
