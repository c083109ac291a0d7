"""Readers of annotated bounding boxes (COCO JSON, YOLO txt, Pascal VOC XML)."""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.typing import ArrayLike, PathLike
from clusterlens.utils.validation import check_int, check_real

__all__ = [
    "BoxTable",
    "read_boxes",
    "read_coco_boxes",
    "read_voc_boxes",
    "read_yolo_boxes",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Image suffixes tried, in this order, for the image of a YOLO label file.
_IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# EXIF orientations that swap width and height (rotations by 90 or 270 degrees).
_EXIF_ORIENTATION_TAG = 0x0112
_EXIF_TRANSPOSED = frozenset({5, 6, 7, 8})
_YOLO_LINE_HELP = (
    "Each line must be 'class x_center y_center width height': an integer class "
    ">= 0, then four numbers in [0, 1] (normalised by the image size) with "
    "width and height > 0"
)
_SUPPORTED_HELP = (
    "COCO instances JSON (a .json file or a list of them), "
    "a folder of Pascal VOC .xml files (or a VOC root with Annotations/), "
    "a folder of YOLO .txt label files (or a YOLO dataset root with labels/)"
)
_MAX_LISTED = 30


# --------------------------------------------------------------------------- #
# The table
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False, repr=False)
class BoxTable:
    """Annotated boxes, one row per box, with the size of each box's image.

    Built by :func:`read_coco_boxes`, :func:`read_yolo_boxes`,
    :func:`read_voc_boxes` and :func:`read_boxes`; the input of anchor-box
    k-means.

    Parameters
    ----------
    w : ndarray of shape (n_boxes,), dtype float64
        Box width in pixels of the original image.
    h : ndarray of shape (n_boxes,), dtype float64
        Box height in pixels of the original image.
    img_w : ndarray of shape (n_boxes,), dtype float64
        Width in pixels of the image the box belongs to.
    img_h : ndarray of shape (n_boxes,), dtype float64
        Height in pixels of the image the box belongs to.
    category : ndarray of shape (n_boxes,), dtype int64
        Index of the box's category into ``category_names``.
    category_names : tuple of str
        Category names; ``category_names[category[i]]`` is the name of box ``i``.
    image_id : ndarray of shape (n_boxes,), dtype str
        Identifier of the box's image: the label file's stem for YOLO and VOC,
        the COCO image id as a string (prefixed with ``"<file stem>:"`` when
        several COCO files are merged).
    source : str, default=""
        Human-readable description of where the boxes were read from.

    Raises
    ------
    DataValidationError
        If the columns differ in length or are not 1-D, a box or image has a
        non-positive or non-finite size, or a category is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> t = BoxTable(w=[10.0, 20.0], h=[5.0, 40.0], img_w=[100.0, 200.0],
    ...              img_h=[50.0, 100.0], category=[0, 1],
    ...              category_names=("cat", "dog"), image_id=["a", "b"])
    >>> len(t)
    2
    >>> t.normalized_wh()
    array([[0.1, 0.1],
           [0.1, 0.4]])
    >>> t.letterboxed_wh(640)
    array([[ 64.,  32.],
           [ 64., 128.]])
    """

    w: FloatArray
    h: FloatArray
    img_w: FloatArray
    img_h: FloatArray
    category: IntArray
    category_names: tuple[str, ...]
    image_id: npt.NDArray[np.str_]
    source: str = ""

    def __post_init__(self) -> None:
        cols: dict[str, Any] = {
            name: np.asarray(getattr(self, name), dtype=np.float64)
            for name in ("w", "h", "img_w", "img_h")
        }
        category = np.asarray(self.category)
        if category.size and category.dtype.kind not in "iu":
            raise DataValidationError(
                f"BoxTable.category must hold integer indices into category_names; "
                f"got dtype {category.dtype}. Map names to indices first, e.g. "
                "with np.unique(names, return_inverse=True)."
            )
        cols["category"] = category.astype(np.int64, copy=False)
        image_id = np.asarray(self.image_id)
        cols["image_id"] = (
            image_id if image_id.dtype.kind == "U" else image_id.astype(str)
        )
        n = cols["w"].shape[0] if cols["w"].ndim == 1 else -1
        bad = [k for k, v in cols.items() if v.ndim != 1 or v.shape[0] != n]
        if bad:
            shapes = ", ".join(f"{k}{np.shape(v)}" for k, v in cols.items())
            raise DataValidationError(
                "BoxTable columns must all be 1-D with one row per box; got shapes "
                f"{shapes}. Pass one value per box in every column."
            )
        names = tuple(str(c) for c in self.category_names)
        for k in ("w", "h", "img_w", "img_h"):
            v = cols[k]
            wrong = ~(np.isfinite(v) & (v > 0))
            if wrong.any():
                raise DataValidationError(
                    f"boxes must have positive width and height; "
                    f"{int(wrong.sum())} rows have {k} <= 0 or not finite "
                    f"(first at index {int(np.argmax(wrong))}). Drop those rows "
                    "before building the BoxTable."
                )
        cat = cols["category"]
        out = (cat < 0) | (cat >= len(names))
        if out.any():
            first = int(np.argmax(out))
            raise DataValidationError(
                f"BoxTable.category must index into category_names (0 to "
                f"{len(names) - 1}); {int(out.sum())} rows are out of range (first at "
                f"index {first}: {int(cat[first])}). Pass every category name."
            )
        for k, v in cols.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "category_names", names)
        object.__setattr__(self, "source", str(self.source))

    def __len__(self) -> int:
        """Return the number of boxes."""
        return int(self.w.shape[0])

    def __repr__(self) -> str:
        """Summarise the table without printing its columns."""
        n_images = int(np.unique(self.image_id).size)
        return (
            f"BoxTable(n_boxes={len(self)}, n_images={n_images}, "
            f"n_categories={len(self.category_names)}, source={self.source!r})"
        )

    def normalized_wh(self) -> FloatArray:
        """Box sizes as fractions of their image's size.

        Returns
        -------
        wh : ndarray of shape (n_boxes, 2), dtype float64
            ``[w / img_w, h / img_h]`` per box, each in (0, 1] for boxes
            inside their image.
        """
        return np.column_stack((self.w / self.img_w, self.h / self.img_h))

    def letterboxed_wh(self, img_size: int) -> FloatArray:
        """Box sizes in pixels at the detector input after letterbox resizing.

        Each image is scaled, keeping its aspect ratio, so that its long side
        equals ``img_size``; every box is scaled by the same factor. This is
        what YOLO-style detectors see, and what Ultralytics' autoanchor uses
        (``shapes = img_size * shapes / shapes.max(1)``).

        Parameters
        ----------
        img_size : int
            Long side of the detector input in pixels, e.g. 640.

        Returns
        -------
        wh : ndarray of shape (n_boxes, 2), dtype float64
            ``[w, h] * img_size / max(img_w, img_h)`` per box.

        Raises
        ------
        InvalidParameterError
            If ``img_size`` is not an int >= 1.
        """
        size = check_int(img_size, "img_size", "BoxTable.letterboxed_wh", low=1)
        scale = size / np.maximum(self.img_w, self.img_h)
        return np.column_stack((self.w * scale, self.h * scale))

    def select(self, mask: ArrayLike) -> BoxTable:
        """Return the boxes chosen by a boolean mask or an array of indices.

        Parameters
        ----------
        mask : array-like of shape (n_boxes,) of bool, or of int
            A boolean mask with one entry per box, or integer row indices.

        Returns
        -------
        table : BoxTable
            The chosen rows, with the same ``category_names`` and ``source``.

        Raises
        ------
        DataValidationError
            If a boolean mask has the wrong length, or ``mask`` is neither
            boolean nor integer.
        """
        m = np.asarray(mask)
        if m.dtype == np.bool_:
            if m.shape != (len(self),):
                raise DataValidationError(
                    f"A boolean mask for BoxTable.select must have shape "
                    f"({len(self)},), one entry per box; got shape {m.shape}."
                )
        elif m.size == 0:
            m = np.zeros(0, dtype=np.intp)
        elif m.dtype.kind not in "iu":
            raise DataValidationError(
                f"BoxTable.select expects a boolean mask or integer indices; got "
                f"dtype {m.dtype}. Build the mask with a comparison, e.g. "
                "table.select(table.w >= 8)."
            )
        return dataclasses.replace(
            self,
            w=self.w[m],
            h=self.h[m],
            img_w=self.img_w[m],
            img_h=self.img_h[m],
            category=self.category[m],
            image_id=self.image_id[m],
        )


# --------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------- #
def _as_path(path: Any, what: str) -> Path:
    """Turn ``path`` into a :class:`Path`, or raise a data error naming ``what``."""
    try:
        return Path(os.fspath(path))
    except TypeError as e:
        raise DataValidationError(
            f"{what} must be a str or os.PathLike; got {type(path).__name__}. "
            "Pass the path, e.g. 'annotations/instances_train2017.json'."
        ) from e


def _check_file(path: Path, what: str) -> None:
    """Raise unless ``path`` is an existing regular file."""
    if not path.exists():
        raise DataValidationError(
            f"{what} {str(path)!r} does not exist. Check the path (relative paths "
            f"are resolved from {str(Path.cwd())!r})."
        )
    if not path.is_file():
        raise DataValidationError(
            f"{what} {str(path)!r} is not a file. Pass the path of the file itself."
        )


def _check_dir(path: Path, what: str) -> None:
    """Raise unless ``path`` is an existing directory."""
    if not path.exists():
        raise DataValidationError(
            f"{what} {str(path)!r} does not exist. Check the path (relative paths "
            f"are resolved from {str(Path.cwd())!r})."
        )
    if not path.is_dir():
        raise DataValidationError(
            f"{what} {str(path)!r} is not a directory. Pass the folder that holds "
            "the annotation files."
        )


def _read_text(path: Path, what: str) -> str:
    """Read a UTF-8 text file, turning OS and decoding errors into data errors."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataValidationError(
            f"{what} {str(path)!r} is not UTF-8 text (byte {e.start}: {e.reason}). "
            "Check that it is an annotation file and not an image or archive."
        ) from e
    except OSError as e:
        raise DataValidationError(
            f"Cannot read {what} {str(path)!r}: {e.strerror or e}. Check the path "
            "and its permissions."
        ) from e


def _float_or_nan(v: Any) -> float:
    """``float(v)`` for real numbers, NaN for anything else (None, str, list)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return float("nan")
    return float(v)


def _float_column(values: list[Any]) -> FloatArray:
    """Return a float64 array of JSON numbers; non-numbers become NaN."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64).reshape(len(values))
    return np.array([_float_or_nan(v) for v in values], dtype=np.float64)


def _bbox_wh(bboxes: list[Any]) -> tuple[FloatArray, FloatArray]:
    """Width and height columns of COCO ``[x, y, w, h]`` boxes; NaN if malformed."""
    n = len(bboxes)
    try:
        arr = np.asarray(bboxes, dtype=np.float64)
        if arr.shape != (n, 4):
            raise ValueError("ragged")
    except (TypeError, ValueError):
        arr = np.array(
            [
                [_float_or_nan(x) for x in b]
                if isinstance(b, list | tuple) and len(b) == 4
                else [float("nan")] * 4
                for b in bboxes
            ],
            dtype=np.float64,
        ).reshape(n, 4)
    return arr[:, 2].copy(), arr[:, 3].copy()


def _resolve_categories(
    categories: Sequence[str] | str, available: Sequence[str], where: str
) -> tuple[str, ...]:
    """Check the requested category names against ``available``; keep their order."""
    requested = [categories] if isinstance(categories, str) else list(categories)
    wanted = tuple(dict.fromkeys(str(c) for c in requested))
    if not wanted:
        raise InvalidParameterError(
            "The 'categories' parameter must name at least one category or be "
            "None (all categories). Got an empty list instead."
        )
    unknown = [c for c in wanted if c not in available]
    if unknown:
        hints = []
        for u in unknown:
            close = difflib.get_close_matches(u, list(available), n=3)
            if close:
                hints.append(
                    f"for {u!r} did you mean {' or '.join(repr(c) for c in close)}?"
                )
        hint = f" ({'; '.join(hints)})" if hints else ""
        shown = ", ".join(available[:_MAX_LISTED])
        more = (
            f", ... ({len(available)} in all)" if len(available) > _MAX_LISTED else ""
        )
        raise DataValidationError(
            f"Unknown categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(repr(u) for u in unknown)} in {where}{hint}. "
            f"Available: {shown}{more}."
        )
    return wanted


def _category_lut(available: Sequence[str], wanted: Sequence[str]) -> IntArray:
    """Lookup table old index -> index into ``wanted`` (-1 when not wanted)."""
    lut = np.full(len(available), -1, dtype=np.int64)
    pos = {name: i for i, name in enumerate(available)}
    lut[[pos[c] for c in wanted]] = np.arange(len(wanted), dtype=np.int64)
    return lut


def _apply_filters(
    *,
    w: FloatArray,
    h: FloatArray,
    img_w: FloatArray,
    img_h: FloatArray,
    category: IntArray,
    names: Sequence[str],
    image_id: npt.NDArray[np.str_],
    source: str,
    flag_steps: Sequence[tuple[npt.NDArray[np.bool_], str]],
    categories: Sequence[str] | str | None,
    min_size: float,
    empty_hint: str,
) -> BoxTable:
    """Apply the flag filters, then categories, then ``min_size``; build the table.

    ``flag_steps`` holds ``(drop_mask, description)`` pairs (crowd, difficult).
    Raises a data error saying what each filter removed when nothing is left.
    """
    n_total = int(w.shape[0])
    if n_total == 0:
        raise DataValidationError(f"{source} holds no boxes. {empty_hint}")
    keep = np.ones(n_total, dtype=bool)
    removed: list[tuple[int, str]] = []
    for drop, description in flag_steps:
        removed.append((int(np.count_nonzero(keep & drop)), description))
        keep &= ~drop
    out_names = tuple(names)
    if categories is not None:
        wanted = _resolve_categories(categories, names, source)
        category = _category_lut(names, wanted)[category]
        drop = category < 0
        removed.append(
            (int(np.count_nonzero(keep & drop)), f"categories={list(wanted)!r}")
        )
        keep &= ~drop
        out_names = wanted
    if min_size > 0:
        drop = (w < min_size) | (h < min_size)
        removed.append(
            (
                int(np.count_nonzero(keep & drop)),
                f"min_size={min_size!r} (w or h < {min_size!r} px)",
            )
        )
        keep &= ~drop
    n_kept = int(np.count_nonzero(keep))
    if n_kept == 0:
        parts = ", ".join(f"{k} by {d}" for k, d in removed if k)
        raise DataValidationError(
            f"No boxes left from {source} after filtering: {n_total} boxes read, "
            f"removed {parts}. Relax these filters."
        )
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "Read %d boxes (%d images, %d categories) from %s; %d dropped by filters.",
            n_kept,
            int(np.unique(image_id[keep]).size),
            len(out_names),
            source,
            n_total - n_kept,
        )
    all_kept = n_kept == n_total
    return BoxTable(
        w=w if all_kept else w[keep],
        h=h if all_kept else h[keep],
        img_w=img_w if all_kept else img_w[keep],
        img_h=img_h if all_kept else img_h[keep],
        category=category if all_kept else category[keep],
        category_names=out_names,
        image_id=image_id if all_kept else image_id[keep],
        source=source,
    )


def _check_min_size(min_size: Any, owner: str) -> float:
    return check_real(min_size, "min_size", owner, low=0.0)


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

    w, h = _bbox_wh([a.get("bbox") for a in anns])
    malformed = ~(np.isfinite(w) & np.isfinite(h))
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

    crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), dtype=bool, count=n)
    ids = np.array([f"{prefix}{k}" for k in img_keys], dtype=np.str_)
    cols = {
        "w": w,
        "h": h,
        "img_w": img_w_all[rows],
        "img_h": img_h_all[rows],
        "category": cat,
        "image_id": ids[rows] if n else np.zeros(0, dtype=np.str_),
        "crowd": crowd,
        "n_images": len(images),
    }
    return cols, names


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
        flag_steps=[] if include_crowd else [(crowd, "include_crowd=False")],
        categories=categories,
        min_size=min_size,
        empty_hint=(
            f"It lists {n_images} images and no annotations; check that it is "
            "the right file (image_info_*.json files have no annotations)."
        ),
    )


# --------------------------------------------------------------------------- #
# YOLO
# --------------------------------------------------------------------------- #
def _yolo_line_error(path: Path, line_no: int, line: str, reason: str) -> str:
    return (
        f"Malformed YOLO label in {str(path)!r}, line {line_no}: {reason}. "
        f"Got {line.strip()!r}. {_YOLO_LINE_HELP}."
    )


def _default_images_dir(labels: Path) -> Path | None:
    """Return the YOLO-layout images folder: last 'labels' part -> 'images'."""
    parts = labels.resolve().parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "labels":
            return Path(*parts[:i], "images", *parts[i + 1 :])
    return None


def _check_img_size(img_size: Any) -> tuple[float, float] | None:
    """``None``, an int ``s`` -> ``(s, s)``, or a ``(w, h)`` pair of ints."""
    if img_size is None:
        return None
    if isinstance(img_size, Sequence) and not isinstance(img_size, str):
        if len(img_size) == 2:
            w = check_int(img_size[0], "img_size[0]", "read_yolo_boxes", low=1)
            h = check_int(img_size[1], "img_size[1]", "read_yolo_boxes", low=1)
            return float(w), float(h)
        raise InvalidParameterError(
            "The 'img_size' parameter of read_yolo_boxes must be an int, a (width, "
            f"height) pair of ints or None. Got {img_size!r} instead."
        )
    s = check_int(img_size, "img_size", "read_yolo_boxes", low=1)
    return float(s), float(s)


def _image_size(path: Path, label: Path) -> tuple[float, float]:
    """Width and height of an image from its header, EXIF rotation applied."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION_TAG)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataValidationError(
            f"Cannot read the size of image {str(path)!r} (the image of YOLO label "
            f"file {str(label)!r}): {e}. Replace the image, or pass img_size=... "
            "if all images share one size."
        ) from e
    if orientation in _EXIF_TRANSPOSED:
        w, h = h, w
    return float(w), float(h)


def _index_images(images_dir: Path) -> dict[str, Path]:
    """Map ``relative/path/stem`` -> image path, preferring suffixes in order."""
    rank = {s: i for i, s in enumerate(_IMAGE_SUFFIXES)}
    found: dict[str, tuple[int, Path]] = {}
    for p in images_dir.rglob("*"):
        r = rank.get(p.suffix.lower())
        if r is None or not p.is_file():
            continue
        key = p.relative_to(images_dir).with_suffix("").as_posix()
        if key not in found or r < found[key][0]:
            found[key] = (r, p)
    return {k: v[1] for k, v in found.items()}


def _read_class_names_file(path: Path) -> tuple[str, ...]:
    text = _read_text(path, "YOLO class names file")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def read_yolo_boxes(
    labels_dir: PathLike,
    *,
    images_dir: PathLike | None = None,
    img_size: int | tuple[int, int] | None = None,
    class_names: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    min_size: float = 0.0,
) -> BoxTable:
    """Read the boxes of a folder of YOLO ``.txt`` label files.

    Parameters
    ----------
    labels_dir : str or os.PathLike
        Folder of label files, searched recursively: one ``.txt`` per image,
        one ``class x_center y_center width height`` line per box, normalised
        to [0, 1] by the image size. Empty files (images without objects) are
        fine.
    images_dir : str or os.PathLike, default=None
        Folder of the images, mirroring ``labels_dir`` (``labels/a/x.txt`` <->
        ``images/a/x.jpg``); ``.jpg``, ``.jpeg``, ``.png``, ``.bmp`` and
        ``.webp`` are tried in that order. ``None`` uses the YOLO layout: the
        path of ``labels_dir`` with its last ``labels`` part replaced by
        ``images``. Cannot be combined with ``img_size``.
    img_size : int or tuple of (int, int), default=None
        Size of every image in pixels, ``s`` for ``s x s`` or ``(width,
        height)``, when the images are not at hand. ``None`` reads each
        image's size from its file header.
    class_names : sequence of str, default=None
        Name of each class index. ``None`` reads ``classes.txt`` in
        ``labels_dir`` if there is one (as LabelImg writes it), else names the
        classes ``"0"``, ``"1"``, ... up to the largest index found.
    categories : sequence of str, default=None
        Category names to keep (from ``class_names``); ``None`` keeps all.
    min_size : float, default=0.0
        Drop boxes whose width or height is below this many pixels.

    Returns
    -------
    table : BoxTable
        One row per kept box, in pixels of the original image; ``image_id`` is
        the label file's path relative to ``labels_dir``, without suffix.

    Raises
    ------
    DataValidationError
        If the folder is missing or holds no ``.txt`` file; a line is
        malformed (the message names the file and line number); a class
        index has no name; an image is missing or unreadable; or no box is
        left.
    InvalidParameterError
        If ``img_size`` or ``min_size`` is invalid, or ``img_size`` and
        ``images_dir`` are both given.

    See Also
    --------
    read_boxes : Detect the format and read.

    Notes
    -----
    Image sizes come from the file header only (Pillow's lazy
    ``Image.open(path).size``); images whose EXIF orientation rotates them by
    90 degrees have width and height swapped, as Ultralytics does.
    """
    min_size = _check_min_size(min_size, "read_yolo_boxes")
    size = _check_img_size(img_size)
    if size is not None and images_dir is not None:
        raise InvalidParameterError(
            "read_yolo_boxes takes images_dir (read each image's size) or img_size "
            "(one size for all images), not both. Got "
            f"images_dir={str(images_dir)!r} and img_size={img_size!r}."
        )
    labels = _as_path(labels_dir, "labels_dir")
    _check_dir(labels, "YOLO labels directory")
    class_file = labels / "classes.txt"
    files = sorted(p for p in labels.rglob("*.txt") if p.is_file() and p != class_file)
    if not files:
        hint = ""
        if (labels / "labels").is_dir():
            hint = f" It has a 'labels' folder: pass {str(labels / 'labels')!r}."
        elif any(p.suffix.lower() in _IMAGE_SUFFIXES for p in labels.iterdir()):
            hint = " It holds images: pass the matching 'labels' folder instead."
        raise DataValidationError(
            f"No YOLO label files (*.txt) in {str(labels)!r} or its subfolders. "
            "Expected one .txt file per image with one 'class x_center y_center "
            f"width height' line per box.{hint}"
        )
    if class_names is not None:
        names: tuple[str, ...] | None = tuple(str(c) for c in class_names)
    elif class_file.is_file():
        names = _read_class_names_file(class_file)
    else:
        names = None

    cls: list[int] = []
    vals: list[list[float]] = []
    file_idx: list[int] = []
    line_nos: list[int] = []
    has_boxes = np.zeros(len(files), dtype=bool)
    for fi, path in enumerate(files):
        text = _read_text(path, "YOLO label file")
        for line_no, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 5:
                extra = ""
                if len(fields) > 5 and len(fields) % 2 == 1:
                    extra = (
                        " (this looks like a segmentation polygon; convert to boxes)"
                    )
                raise DataValidationError(
                    _yolo_line_error(
                        path,
                        line_no,
                        line,
                        f"expected 5 fields, found {len(fields)}" + extra,
                    )
                )
            try:
                c = int(fields[0])
            except ValueError as e:
                raise DataValidationError(
                    _yolo_line_error(
                        path, line_no, line, f"class {fields[0]!r} is not an integer"
                    )
                ) from e
            try:
                v = [float(x) for x in fields[1:]]
            except ValueError as e:
                raise DataValidationError(
                    _yolo_line_error(path, line_no, line, "a value is not a number")
                ) from e
            cls.append(c)
            vals.append(v)
            file_idx.append(fi)
            line_nos.append(line_no)
        has_boxes[fi] = bool(file_idx) and file_idx[-1] == fi

    where = f"YOLO labels {str(labels)!r}"
    if not cls:
        raise DataValidationError(
            f"{where} holds {len(files)} label files but no boxes: every file is "
            "empty. Check that this is the right folder."
        )
    c_arr = np.asarray(cls, dtype=np.int64)
    xywh = np.asarray(vals, dtype=np.float64).reshape(-1, 4)
    f_arr = np.asarray(file_idx, dtype=np.intp)
    checks = [
        (c_arr < 0, "the class is negative"),
        (~np.isfinite(xywh).all(axis=1), "a value is not finite"),
        (((xywh < 0) | (xywh > 1)).any(axis=1), "a value is outside [0, 1]"),
        ((xywh[:, 2] <= 0) | (xywh[:, 3] <= 0), "width or height is <= 0"),
    ]
    if names is not None:
        checks.append(
            (c_arr >= len(names), f"the class has no name ({len(names)} class names)")
        )
    for bad, reason in checks:
        if bad.any():
            i = int(np.argmax(bad))
            path = files[f_arr[i]]
            line = _read_text(path, "YOLO label file").splitlines()[line_nos[i] - 1]
            more = f" ({int(bad.sum())} lines are like this)" if bad.sum() > 1 else ""
            raise DataValidationError(
                _yolo_line_error(path, line_nos[i], line, reason + more)
            )
    if names is None:
        names = tuple(str(i) for i in range(int(c_arr.max()) + 1))

    keys = [p.relative_to(labels).with_suffix("").as_posix() for p in files]
    file_w = np.zeros(len(files), dtype=np.float64)
    file_h = np.zeros(len(files), dtype=np.float64)
    if size is not None:
        file_w[:], file_h[:] = size
        source = f"YOLO labels {labels}/ (img_size={int(size[0])}x{int(size[1])})"
    else:
        img_dir = (
            _as_path(images_dir, "images_dir")
            if images_dir is not None
            else _default_images_dir(labels)
        )
        if img_dir is None or not img_dir.is_dir():
            looked = (
                f"{str(img_dir)!r} is not a directory"
                if img_dir is not None
                else "the path has no 'labels' part to map to 'images'"
            )
            raise DataValidationError(
                f"Cannot find the images of {where}: {looked}. YOLO boxes are "
                "normalised to [0, 1], so each image's size in pixels is needed. "
                "Pass images_dir=... (the folder of the images), or img_size=640 "
                "(or (width, height)) if all images share one size."
            )
        index = _index_images(img_dir)
        missing = [
            i for i in np.flatnonzero(has_boxes).tolist() if keys[i] not in index
        ]
        if missing:
            first = files[missing[0]]
            raise DataValidationError(
                f"{len(missing)} YOLO label files have no image with the same name in "
                f"{str(img_dir)!r} (tried {', '.join(_IMAGE_SUFFIXES)}); first: "
                f"{str(first)!r} -> {str(img_dir / keys[missing[0]])!r}.*. Pass "
                "images_dir=... pointing at the images, or img_size=... if all "
                "images share one size."
            )
        for i in np.flatnonzero(has_boxes).tolist():
            file_w[i], file_h[i] = _image_size(index[keys[i]], files[i])
        source = f"YOLO labels {labels}/ (image sizes from {img_dir}/)"

    img_w = file_w[f_arr]
    img_h = file_h[f_arr]
    return _apply_filters(
        w=xywh[:, 2] * img_w,
        h=xywh[:, 3] * img_h,
        img_w=img_w,
        img_h=img_h,
        category=c_arr,
        names=names,
        image_id=np.asarray(keys, dtype=np.str_)[f_arr],
        source=source,
        flag_steps=[],
        categories=categories,
        min_size=min_size,
        empty_hint="",
    )


# --------------------------------------------------------------------------- #
# Pascal VOC
# --------------------------------------------------------------------------- #
def _voc_files(xml_dir: Path) -> list[Path]:
    """List the ``.xml`` files of a folder, or of its ``Annotations`` subfolder."""
    files = sorted(p for p in xml_dir.glob("*.xml") if p.is_file())
    if not files and (xml_dir / "Annotations").is_dir():
        files = sorted(
            p for p in (xml_dir / "Annotations").glob("*.xml") if p.is_file()
        )
    return files


def _xml_float(elem: ET.Element | None, tag: str) -> float | None:
    """Return the number in ``<tag>`` under ``elem``; None if absent or not one."""
    if elem is None:
        return None
    text = elem.findtext(tag)
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def _parse_voc(path: Path) -> tuple[float, float, list[tuple[str, bool, list[float]]]]:
    """Image size and ``(name, difficult, [xmin, ymin, xmax, ymax])`` per object."""
    where = f"Pascal VOC file {str(path)!r}"
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataValidationError(
            f"{where} is not valid XML ({e}). Fix or remove the file."
        ) from e
    except OSError as e:
        raise DataValidationError(
            f"Cannot read {where}: {e.strerror or e}. Check its permissions."
        ) from e
    if root.tag != "annotation":
        raise DataValidationError(
            f"{where} is not a Pascal VOC annotation: its root element is "
            f"<{root.tag}>, expected <annotation>."
        )
    size = root.find("size")
    width, height = _xml_float(size, "width"), _xml_float(size, "height")
    if width is None or height is None or not (width > 0 and height > 0):
        got = (
            "no <size> element"
            if size is None
            else f"width={size.findtext('width')!r}, height={size.findtext('height')!r}"
        )
        raise DataValidationError(
            f"{where} has no valid image size ({got}). Boxes need their image's "
            "size: add <size><width>W</width><height>H</height></size> with the "
            "image's size in pixels."
        )
    objects = []
    for j, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataValidationError(
                f"{where}: object {j} has no <name>. Every <object> needs a class name."
            )
        difficult_text = (obj.findtext("difficult") or "0").strip()
        difficult = difficult_text.lower() in ("1", "true", "1.0")
        box = obj.find("bndbox")
        coords = [_xml_float(box, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        if box is None or any(c is None for c in coords):
            got = (
                "no <bndbox>"
                if box is None
                else ", ".join(
                    f"{t}={box.findtext(t)!r}" for t in ("xmin", "ymin", "xmax", "ymax")
                )
            )
            raise DataValidationError(
                f"{where}: object {j} ({name!r}) has a malformed bndbox ({got}). "
                "Expected <bndbox> with numeric <xmin>, <ymin>, <xmax>, <ymax> in "
                "1-based pixel coordinates."
            )
        objects.append((name, difficult, [float(c) for c in coords if c is not None]))
    return width, height, objects


def read_voc_boxes(
    xml_dir: PathLike,
    *,
    categories: Sequence[str] | None = None,
    include_difficult: bool = True,
    min_size: float = 0.0,
) -> BoxTable:
    """Read the boxes of a folder of Pascal VOC XML annotation files.

    Parameters
    ----------
    xml_dir : str or os.PathLike
        Folder of ``.xml`` files (``VOC2007/Annotations``), or a VOC year root
        that has an ``Annotations`` subfolder.
    categories : sequence of str, default=None
        Object names to keep. ``None`` keeps all; ``category_names`` is then
        the sorted set of names found, otherwise this list in the given order.
    include_difficult : bool, default=True
        Whether to keep objects marked ``<difficult>1</difficult>``.
    min_size : float, default=0.0
        Drop boxes whose width or height is below this many pixels.

    Returns
    -------
    table : BoxTable
        One row per kept box; ``image_id`` is the XML file's stem.

    Raises
    ------
    DataValidationError
        If the folder is missing or holds no ``.xml`` file; a file is not
        valid XML, has no image size or a malformed ``<bndbox>``; a box has
        ``xmax < xmin`` or ``ymax < ymin``; a requested category does not
        exist; or no box is left after filtering.
    InvalidParameterError
        If ``min_size`` is negative.

    See Also
    --------
    read_boxes : Detect the format and read.

    Notes
    -----
    VOC coordinates are 1-based and inclusive, so ``w = xmax - xmin + 1`` and
    ``h = ymax - ymin + 1``. Files are parsed with
    :mod:`xml.etree.ElementTree`.
    """
    min_size = _check_min_size(min_size, "read_voc_boxes")
    xml_path = _as_path(xml_dir, "xml_dir")
    _check_dir(xml_path, "Pascal VOC annotation directory")
    files = _voc_files(xml_path)
    if not files:
        raise DataValidationError(
            f"No Pascal VOC annotation files (*.xml) in {str(xml_path)!r} or its "
            "'Annotations' subfolder. Pass the folder that holds the .xml files, "
            "e.g. 'VOCdevkit/VOC2007/Annotations'."
        )
    names: list[str] = []
    difficult: list[bool] = []
    coords: list[list[float]] = []
    sizes = np.zeros((len(files), 2), dtype=np.float64)
    file_idx: list[int] = []
    obj_no: list[int] = []
    for fi, path in enumerate(files):
        width, height, objects = _parse_voc(path)
        sizes[fi] = width, height
        for j, (name, diff, box) in enumerate(objects, start=1):
            names.append(name)
            difficult.append(diff)
            coords.append(box)
            file_idx.append(fi)
            obj_no.append(j)
    where = f"Pascal VOC annotations {str(xml_path)!r}"
    if not names:
        raise DataValidationError(
            f"{where} hold {len(files)} files but no <object>. Check that this is "
            "the right folder."
        )
    xyxy = np.asarray(coords, dtype=np.float64).reshape(-1, 4)
    w = xyxy[:, 2] - xyxy[:, 0] + 1.0
    h = xyxy[:, 3] - xyxy[:, 1] + 1.0
    bad = ~(np.isfinite(w) & np.isfinite(h) & (w > 0) & (h > 0))
    if bad.any():
        i = int(np.argmax(bad))
        n_w = int(np.count_nonzero(~(w > 0)))
        n_h = int(np.count_nonzero(~(h > 0)))
        raise DataValidationError(
            f"boxes must have positive width and height; in {where}, {n_w} objects "
            f"have w <= 0 and {n_h} have h <= 0 (first: object {obj_no[i]} of "
            f"{str(files[file_idx[i]])!r}, xmin, ymin, xmax, ymax = "
            f"{', '.join(f'{c:g}' for c in xyxy[i])}). VOC boxes need xmin <= xmax "
            "and ymin <= ymax; fix or remove these objects."
        )
    f_arr = np.asarray(file_idx, dtype=np.intp)
    uniq, category = np.unique(np.asarray(names, dtype=np.str_), return_inverse=True)
    image_ids = np.asarray([p.stem for p in files], dtype=np.str_)
    return _apply_filters(
        w=w,
        h=h,
        img_w=sizes[f_arr, 0],
        img_h=sizes[f_arr, 1],
        category=category.astype(np.int64).reshape(-1),
        names=[str(u) for u in uniq],
        image_id=image_ids[f_arr],
        source=f"Pascal VOC XML {xml_path}/ ({len(files)} files)",
        flag_steps=(
            []
            if include_difficult
            else [(np.asarray(difficult, dtype=bool), "include_difficult=False")]
        ),
        categories=categories,
        min_size=min_size,
        empty_hint="",
    )


# --------------------------------------------------------------------------- #
# Dispatch
# --------------------------------------------------------------------------- #
_FILTERS: dict[str, tuple[str, ...]] = {
    "COCO": ("categories", "include_crowd", "min_size"),
    "YOLO": ("images_dir", "img_size", "class_names", "categories", "min_size"),
    "VOC": ("categories", "include_difficult", "min_size"),
}


def _check_filters(fmt: str, source: str, filters: dict[str, Any]) -> None:
    allowed = _FILTERS[fmt]
    unknown = [k for k in filters if k not in allowed]
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(
            f"read_boxes read {source!r} as {fmt} annotations, which do not take "
            f"{', '.join(repr(k) for k in unknown)}.{hint} Options for {fmt}: "
            f"{', '.join(allowed)}."
        )


def read_boxes(source: PathLike | Sequence[PathLike], **filters: Any) -> BoxTable:
    """Read annotated boxes, detecting the format from the path.

    Parameters
    ----------
    source : str, os.PathLike or sequence of them
        One of:

        - a ``.json`` file or a list of them: COCO instances files, read with
          :func:`read_coco_boxes`;
        - a folder of ``.xml`` files, or a VOC root with ``Annotations/``:
          Pascal VOC, read with :func:`read_voc_boxes`;
        - a folder of ``.txt`` label files, a folder named ``labels``, or a
          dataset root with ``labels/``: YOLO, read with
          :func:`read_yolo_boxes`.
    **filters : dict
        Keyword arguments of the chosen reader (``categories``, ``min_size``,
        ``include_crowd``, ``include_difficult``, ``images_dir``,
        ``img_size``, ``class_names``).

    Returns
    -------
    table : BoxTable
        One row per box.

    Raises
    ------
    DataValidationError
        If the source does not exist or its format cannot be told, and
        whatever the chosen reader raises.
    InvalidParameterError
        If a keyword does not apply to the detected format.

    Examples
    --------
    >>> table = read_boxes("coco128/labels/train2017", min_size=2)  # doctest: +SKIP
    """
    if isinstance(source, str | os.PathLike):
        path = _as_path(source, "source")
    else:
        try:
            paths = [_as_path(p, "Each source") for p in source]
        except TypeError as e:
            raise DataValidationError(
                f"source must be a path or a sequence of paths; got "
                f"{type(source).__name__}. Supported: {_SUPPORTED_HELP}."
            ) from e
        not_json = [p for p in paths if p.suffix.lower() != ".json"]
        if not_json or not paths:
            raise DataValidationError(
                "Several sources can only be COCO JSON files (e.g. train + val); got "
                f"{str(not_json[0]) if not_json else 'an empty list'!r}. Pass a "
                "VOC or YOLO folder on its own."
            )
        _check_filters("COCO", " + ".join(map(str, paths)), filters)
        return read_coco_boxes(paths, **filters)

    if not path.exists():
        raise DataValidationError(
            f"Annotation source {str(path)!r} does not exist. Check the path "
            f"(relative paths are resolved from {str(Path.cwd())!r})."
        )
    if path.is_file():
        if path.suffix.lower() == ".json":
            _check_filters("COCO", str(path), filters)
            return read_coco_boxes(path, **filters)
        raise DataValidationError(
            f"Cannot read boxes from {str(path)!r}: a {path.suffix or 'suffix-less'} "
            f"file is not a supported annotation format. Supported: {_SUPPORTED_HELP}."
        )
    if _voc_files(path):
        _check_filters("VOC", str(path), filters)
        return read_voc_boxes(path, **filters)
    has_txt = any(p.is_file() for p in path.glob("*.txt"))
    if has_txt or path.name == "labels":
        _check_filters("YOLO", str(path), filters)
        return read_yolo_boxes(path, **filters)
    if (path / "labels").is_dir():
        _check_filters("YOLO", str(path), filters)
        return read_yolo_boxes(path / "labels", **filters)
    jsons = sorted(p.name for p in path.glob("*.json"))
    hint = (
        f" It holds JSON files ({', '.join(jsons[:5])}); pass the COCO file(s) "
        "themselves, e.g. read_boxes([train_json, val_json])."
        if jsons
        else ""
    )
    raise DataValidationError(
        f"Cannot tell the annotation format of folder {str(path)!r}: it has no .xml "
        f"or .txt files and no 'labels' or 'Annotations' subfolder.{hint} "
        f"Supported: {_SUPPORTED_HELP}."
    )
