"""Readers of annotated bounding boxes (COCO JSON, YOLO txt, Pascal VOC XML)."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import (
    DataQualityWarning,
    DataValidationError,
    InvalidParameterError,
)
from clusterlens.typing import ArrayLike
from clusterlens.utils._names import arg
from clusterlens.utils.validation import check_int, check_real

__all__ = [
    "CLIP_TOLERANCE",
    "MAX_IMAGE_SIDE",
    "MIN_BOX_SIZE",
    "BoxTable",
    "clip_boxes",
    "describe_dropped",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

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
    n_clipped : int, default=0
        Boxes the reader clipped to their image (they reached more than
        :data:`CLIP_TOLERANCE` pixels past its border); see :func:`clip_boxes`.
    n_outside : int, default=0
        Boxes the reader dropped because they lie wholly outside their image.
    n_read : int, default=-1
        Boxes in the source before any filter (-1: not recorded).
    dropped : tuple of (str, int, str), default=()
        What each filter removed, in the order applied: ``(key, count,
        reason)`` with ``key`` one of ``"outside"``, ``"crowd"``,
        ``"difficult"``, ``"categories"``, ``"small"``; see
        :func:`describe_dropped`.

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
    n_clipped: int = 0
    n_outside: int = 0
    n_read: int = -1
    dropped: tuple[tuple[str, int, str], ...] = ()

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
        for k in ("img_w", "img_h"):
            big = cols[k] > MAX_IMAGE_SIDE
            if big.any():
                i = int(np.argmax(big))
                raise DataValidationError(
                    f"BoxTable.{k} must be at most {MAX_IMAGE_SIDE:,} pixels, larger "
                    f"than any image; {int(big.sum())} rows are bigger (first at "
                    f"index {i}: {cols[k][i]:g}). Fix the image sizes."
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
        object.__setattr__(self, "n_clipped", int(self.n_clipped))
        object.__setattr__(self, "n_outside", int(self.n_outside))
        object.__setattr__(self, "n_read", int(self.n_read))
        object.__setattr__(
            self,
            "dropped",
            tuple((str(k), int(c), str(r)) for k, c, r in self.dropped),
        )

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


def _bbox_xywh(bboxes: list[Any]) -> FloatArray:
    """COCO ``[x, y, w, h]`` boxes as an (n, 4) array; NaN rows if malformed."""
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
    return arr


#: Largest image side, in pixels, a box reader accepts: 2**24, the largest
#: range of integers float32 holds exactly (a bigger size is a typo, and breaks
#: the float32 IoU arithmetic of anchor k-means).
MAX_IMAGE_SIDE = 2**24

#: Smallest width and height, in pixels of the original image, of a box that
#: ``ingest --boxes``, ``label-issues`` and ``anchors`` keep by default: a box
#: under one pixel has no pixel to crop. The same default everywhere, so every
#: command counts the same boxes of a file (issue #23).
MIN_BOX_SIZE = 1.0

#: Pixels a box may reach past its image's border without being counted as
#: clipped (annotation tools round, and VOC's 1-based corners reach W + 1).
CLIP_TOLERANCE = 1.0


def clip_boxes(
    xyxy: ArrayLike, img_w: ArrayLike, img_h: ArrayLike
) -> tuple[FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Clip boxes to their image: the one rule of every box reader.

    Parameters
    ----------
    xyxy : array-like of shape (n_boxes, 4)
        ``[x0, y0, x1, y1]`` corners in pixels, 0-based, ``x1``/``y1``
        exclusive (a COCO box is ``[x, y, x + w, y + h]``).
    img_w, img_h : array-like of shape (n_boxes,)
        Size of each box's image in pixels.

    Returns
    -------
    xyxy : ndarray of shape (n_boxes, 4)
        The corners clipped to ``[0, img_w] x [0, img_h]``.
    clipped : ndarray of shape (n_boxes,), bool
        Boxes that reached more than :data:`CLIP_TOLERANCE` pixels past the
        image (and still overlap it): readers count and report them.
    outside : ndarray of shape (n_boxes,), bool
        Boxes with no area left inside the image: readers drop them, count
        them and report them.

    Examples
    --------
    >>> xyxy, clipped, outside = clip_boxes(
    ...     [[10, 10, 100000, 30], [700, 0, 800, 10], [0, 0, 640.5, 10]],
    ...     [640, 640, 640], [480, 480, 480])
    >>> xyxy[0].tolist(), clipped.tolist(), outside.tolist()
    ([10.0, 10.0, 640.0, 30.0], [True, False, False], [False, True, False])
    """
    box = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    w = np.asarray(img_w, dtype=np.float64).reshape(-1)
    h = np.asarray(img_h, dtype=np.float64).reshape(-1)
    out = np.empty_like(box)
    np.clip(box[:, 0], 0.0, w, out=out[:, 0])
    np.clip(box[:, 2], 0.0, w, out=out[:, 2])
    np.clip(box[:, 1], 0.0, h, out=out[:, 1])
    np.clip(box[:, 3], 0.0, h, out=out[:, 3])
    outside = (out[:, 2] - out[:, 0] <= 0) | (out[:, 3] - out[:, 1] <= 0)
    moved = np.abs(out - box).max(axis=1) > CLIP_TOLERANCE
    return out, moved & ~outside, outside


def _report_clipping(
    where: str,
    clipped: npt.NDArray[np.bool_],
    outside: npt.NDArray[np.bool_],
    describe: Callable[[int], str],
) -> None:
    """Warn once about boxes clipped to (or dropped outside) their image."""
    parts = []
    if clipped.any():
        i = int(np.argmax(clipped))
        parts.append(
            f"{int(clipped.sum())} box(es) reach past their image and were clipped "
            f"to it (first: {describe(i)})"
        )
    if outside.any():
        i = int(np.argmax(outside))
        parts.append(
            f"{int(outside.sum())} box(es) lie wholly outside their image and were "
            f"dropped (first: {describe(i)})"
        )
    if parts:
        warnings.warn(
            f"{where}: {'; '.join(parts)}. Check the image sizes and box "
            "coordinates of the annotations.",
            DataQualityWarning,
            stacklevel=3,
        )


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


def describe_dropped(
    n_read: int, n_kept: int, dropped: Sequence[tuple[str, int, str]]
) -> str:
    """One sentence saying how many boxes were kept and what each filter dropped.

    Examples
    --------
    >>> describe_dropped(939, 929, [("crowd", 10, "iscrowd=1"), ("small", 0, "")])
    'kept 929 of 939 boxes: dropped 10 (iscrowd=1)'
    >>> describe_dropped(5, 5, [])
    'kept all 5 boxes'
    """
    parts = [f"{c:,} ({r})" for _, c, r in dropped if c]
    if not parts:
        return f"kept all {n_kept:,} boxes"
    return f"kept {n_kept:,} of {n_read:,} boxes: dropped {', '.join(parts)}"


def _min_size_reason(min_size: float) -> str:
    return f"w or h under {min_size!r} px, {arg('min_size', repr(min_size))}"


def _filter_boxes(
    *,
    w: FloatArray,
    h: FloatArray,
    outside: npt.NDArray[np.bool_] | None,
    flag_steps: Sequence[tuple[str, npt.NDArray[np.bool_], str]],
    category_drop: npt.NDArray[np.bool_] | None,
    category_reason: str,
    min_size: float,
) -> tuple[npt.NDArray[np.bool_], list[tuple[str, int, str]]]:
    """The box filters every command shares, in order: the image bounds, the
    flags (crowd, difficult), categories, ``min_size``.

    Returns the kept mask and ``(key, count, reason)`` per filter (each count
    among the boxes the filters before it kept).
    """
    keep = np.ones(w.shape[0], dtype=bool)
    removed: list[tuple[str, int, str]] = []
    if outside is not None and outside.any():
        removed.append(
            ("outside", int(np.count_nonzero(outside)), "wholly outside their image")
        )
        keep &= ~outside
    for key, drop, description in flag_steps:
        removed.append((key, int(np.count_nonzero(keep & drop)), description))
        keep &= ~drop
    if category_drop is not None:
        removed.append(
            ("categories", int(np.count_nonzero(keep & category_drop)), category_reason)
        )
        keep &= ~category_drop
    if min_size > 0:
        drop = (w < min_size) | (h < min_size)
        removed.append(
            ("small", int(np.count_nonzero(keep & drop)), _min_size_reason(min_size))
        )
        keep &= ~drop
    return keep, removed


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
    flag_steps: Sequence[tuple[str, npt.NDArray[np.bool_], str]],
    categories: Sequence[str] | str | None,
    min_size: float,
    empty_hint: str,
    outside: npt.NDArray[np.bool_] | None = None,
    clipped: npt.NDArray[np.bool_] | None = None,
) -> BoxTable:
    """Apply the flag filters, then categories, then ``min_size``; build the table.

    ``flag_steps`` holds ``(key, drop_mask, description)`` triples (crowd,
    difficult). ``outside`` and ``clipped`` come from :func:`clip_boxes`:
    boxes outside their image are dropped first; both counts are kept in the
    table, with what every filter dropped (``BoxTable.dropped``). Raises a
    data error saying what each filter removed when nothing is left.
    """
    n_total = int(w.shape[0])
    if n_total == 0:
        raise DataValidationError(f"{source} holds no boxes. {empty_hint}")
    out_names = tuple(names)
    category_drop = None
    category_reason = ""
    if categories is not None:
        wanted = _resolve_categories(categories, names, source)
        category = _category_lut(names, wanted)[category]
        category_drop = category < 0
        category_reason = f"not in {arg('categories', repr(list(wanted)))}"
        out_names = wanted
    keep, removed = _filter_boxes(
        w=w,
        h=h,
        outside=outside,
        flag_steps=flag_steps,
        category_drop=category_drop,
        category_reason=category_reason,
        min_size=min_size,
    )
    n_outside = next((c for k, c, _ in removed if k == "outside"), 0)
    n_kept = int(np.count_nonzero(keep))
    if n_kept == 0:
        parts = ", ".join(f"{c} by {_by(k, r)}" for k, c, r in removed if c)
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
        n_clipped=0 if clipped is None else int(np.count_nonzero(keep & clipped)),
        n_outside=n_outside,
        n_read=n_total,
        dropped=tuple(removed),
    )


def _by(key: str, reason: str) -> str:
    """How the 'nothing left' message names a filter."""
    if key == "outside":
        return "the image bounds (wholly outside their image)"
    if key == "small":
        return reason.split(", ", 1)[-1] + " (" + reason.split(", ", 1)[0] + ")"
    if key == "categories":
        return reason.removeprefix("not in ")
    return reason


def _check_min_size(min_size: Any, owner: str) -> float:
    return check_real(min_size, "min_size", owner, low=0.0)
