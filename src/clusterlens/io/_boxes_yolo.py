"""YOLO label folders: 'class x y w h' lines normalised by the image size."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io._boxes import (
    MIN_BOX_SIZE,
    BoxTable,
    _apply_filters,
    _as_path,
    _check_dir,
    _check_min_size,
    _filter_boxes,
    _read_text,
    _report_clipping,
    clip_boxes,
)
from clusterlens.typing import PathLike
from clusterlens.utils._names import arg, arg_name
from clusterlens.utils.validation import check_int

__all__ = ["read_class_names", "read_yolo_boxes", "yolo_box_rows"]

logger = logging.getLogger(__name__)


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
            f"file {str(label)!r}): {e}. Replace the image, or pass "
            f"{arg('img_size')} if all images share one size."
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


def _yaml_scalar(text: str) -> str:
    """A plain or quoted YAML scalar as a string."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    return t


def _split_flow(body: str) -> list[str]:
    """The items of a YAML flow list or map body, split at top-level commas."""
    items, cur, quote = [], "", ""
    for ch in body:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            items.append(cur)
            cur = ""
            continue
        cur += ch
    items.append(cur)
    return [i for i in (x.strip() for x in items) if i]


def _yaml_names(text: str, path: Path) -> tuple[str, ...]:
    """The ``names:`` of an Ultralytics data.yaml: a list, or a map index -> name.

    Reads the forms Ultralytics and ``clusterlens export --format yolo``
    write (``names: [a, b]``, ``names: {0: a}``, a block list of ``- a``
    lines or a block map of ``0: a`` lines), without a YAML library.
    """
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("names:")), None)
    if start is None:
        raise DataValidationError(
            f"YOLO dataset file {str(path)!r} has no 'names:' key. Add the class "
            "names (names: [cat, dog] or one '0: cat' line per class)."
        )
    rest = lines[start].split(":", 1)[1].strip()
    pairs: list[tuple[str, str]] = []
    if rest.startswith("["):
        return tuple(_yaml_scalar(x) for x in _split_flow(rest.strip("[]")))
    if rest.startswith("{"):
        flow = (x.partition(":") for x in _split_flow(rest.strip("{}")))
        pairs = [(k, v) for k, _, v in flow]
    else:
        items: list[str] = []
        for ln in lines[start + 1 :]:
            if not ln.strip() or ln.lstrip().startswith("#"):
                continue
            if not ln[:1].isspace() and not ln.startswith("-"):
                break  # the next top-level key
            body = ln.strip()
            if body.startswith("- "):
                items.append(_yaml_scalar(body[2:]))
            elif ":" in body:
                k, v = body.split(":", 1)
                pairs.append((k, v))
        if items:
            return tuple(items)
    try:
        table = {int(_yaml_scalar(k)): _yaml_scalar(v) for k, v in pairs}
    except ValueError as e:
        raise DataValidationError(
            f"Cannot read the class names of YOLO dataset file {str(path)!r}: "
            "'names' must be a list or a map of class index to name."
        ) from e
    if sorted(table) != list(range(len(table))) or not table:
        raise DataValidationError(
            f"The 'names' of YOLO dataset file {str(path)!r} must number the "
            f"classes 0 to n-1; got indices {sorted(table)[:10]}."
        )
    return tuple(table[i] for i in range(len(table)))


def read_class_names(path: PathLike) -> tuple[str, ...]:
    """YOLO class names from ``classes.txt`` (one a line) or a ``data.yaml``.

    Raises
    ------
    DataValidationError
        If the file is missing, unreadable or names no class.
    """
    p = _as_path(path, "class names file")
    if not p.is_file():
        raise DataValidationError(
            f"Class names file {str(p)!r} does not exist. Pass a classes.txt (one "
            "name a line) or a YOLO data.yaml."
        )
    text = _read_text(p, "YOLO class names file")
    if p.suffix.lower() in (".yaml", ".yml"):
        names = _yaml_names(text, p)
    else:
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DataValidationError(
            f"Class names file {str(p)!r} names no class. Write one name a line."
        )
    return names


def _read_class_names_file(path: Path) -> tuple[str, ...]:
    return read_class_names(path)


def _find_data_yaml(labels: Path) -> Path | None:
    """A YOLO dataset's ``data.yaml``: in the labels folder or the dataset root.

    The dataset root is the folder above the last ``labels`` part of the
    path (``root/labels/train`` -> ``root``), else the labels folder's parent.
    """
    parts = labels.resolve().parts
    root = labels.resolve().parent
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "labels":
            root = Path(*parts[:i])
            break
    for d in (labels, root):
        for name in ("data.yaml", "data.yml"):
            if (d / name).is_file():
                return d / name
    return None


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
        ``labels_dir`` if there is one (as LabelImg writes it), else the
        ``names`` of a ``data.yaml`` in ``labels_dir`` or the dataset root
        (above its ``labels`` folder; as Ultralytics writes it), else names
        the classes ``"0"``, ``"1"``, ... up to the largest index found.
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
    cols, names, source = _parse_yolo(
        labels_dir, images_dir=images_dir, img_size=img_size, class_names=class_names
    )
    return _apply_filters(
        w=cols["w"],
        h=cols["h"],
        img_w=cols["img_w"],
        img_h=cols["img_h"],
        category=cols["category"],
        names=names,
        image_id=cols["image_id"],
        source=source,
        flag_steps=[],
        categories=categories,
        min_size=min_size,
        empty_hint="",
        outside=cols["outside"],
        clipped=cols["clipped"],
    )


def _parse_yolo(
    labels_dir: PathLike,
    *,
    images_dir: PathLike | None,
    img_size: int | tuple[int, int] | None,
    class_names: Sequence[str] | None,
) -> tuple[dict[str, Any], tuple[str, ...], str]:
    """Columns of every box of a YOLO labels folder (before the filters).

    ``cols`` holds ``xyxy`` (pixels, clipped to the image), ``w``, ``h``,
    ``img_w``, ``img_h``, ``clipped``, ``outside``, ``category``,
    ``image_id`` (the label file's relative path without suffix),
    ``image_path`` (the image file, None per box without images),
    ``line`` (the box's line number in its file) and ``label_file``.
    """
    size = _check_img_size(img_size)
    if size is not None and images_dir is not None:
        raise InvalidParameterError(
            f"Pass {arg_name('images_dir')} (read each image's size) or "
            f"{arg_name('img_size')} (one size for all images), not both. Got "
            f"{arg('images_dir', repr(str(images_dir)))} and "
            f"{arg('img_size', repr(img_size))}."
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
    elif (data_yaml := _find_data_yaml(labels)) is not None:
        names = read_class_names(data_yaml)
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
    image_files: list[Path | None] | None = None
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
                f"Pass {arg('images_dir', 'DIR')} (the folder of the images), or "
                f"{arg('img_size', '640')} if all images share one size."
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
                f"{arg('images_dir', 'DIR')} pointing at the images, or "
                f"{arg('img_size')} if all images share one size."
            )
        image_files = [index.get(k) for k in keys]
        for i in np.flatnonzero(has_boxes).tolist():
            file_w[i], file_h[i] = _image_size(index[keys[i]], files[i])
        source = f"YOLO labels {labels}/ (image sizes from {img_dir}/)"

    img_w = file_w[f_arr]
    img_h = file_h[f_arr]
    half = xywh[:, 2:] / 2
    scale = np.column_stack((img_w, img_h, img_w, img_h))
    corners = np.column_stack((xywh[:, :2] - half, xywh[:, :2] + half)) * scale
    # Normalised coordinates do not map back to whole pixels exactly (0.1 * 640
    # is 64.00000000000001): round to a millionth of a pixel, so a box written
    # from integer pixels crops the same pixels as its COCO or VOC original.
    corners = np.round(corners, 6)
    box, clipped, outside = clip_boxes(corners, img_w, img_h)

    def describe(i: int) -> str:
        return (
            f"{str(files[f_arr[i]])!r}, line {line_nos[i]}, on a "
            f"{img_w[i]:g}x{img_h[i]:g} image"
        )

    _report_clipping(where, clipped, outside, describe)
    image_path = (
        None
        if image_files is None
        else np.asarray([str(p) for p in image_files], dtype=object)[f_arr]
    )
    cols = {
        "xyxy": box,
        "w": box[:, 2] - box[:, 0],
        "h": box[:, 3] - box[:, 1],
        "img_w": img_w,
        "img_h": img_h,
        "clipped": clipped,
        "outside": outside,
        "category": c_arr,
        "image_id": np.asarray(keys, dtype=np.str_)[f_arr],
        "image_path": image_path,
        "line": np.asarray(line_nos, dtype=np.int64),
        "label_file": np.asarray([str(p) for p in files], dtype=object)[f_arr],
    }
    return cols, names, source


def yolo_box_rows(
    labels_dir: PathLike,
    *,
    images_dir: PathLike | None = None,
    class_names: Sequence[str] | None = None,
    min_size: float = MIN_BOX_SIZE,
) -> tuple[dict[str, Any], tuple[str, ...], str, Any, list[tuple[str, int, str]]]:
    """The boxes of a YOLO labels folder that the commands keep, with images.

    The YOLO twin of :func:`clusterlens.io._boxes_coco.coco_box_rows`: the
    parser of :func:`read_yolo_boxes` and the shared filters (the image
    bounds, ``min_size``), so ``ingest --boxes``, ``label-issues`` and
    ``anchors`` keep the same boxes of a folder. The images are required
    (boxes are cropped from them).

    Returns
    -------
    cols : dict
        Per-box columns (see ``_parse_yolo``), ``image_path`` set.
    names : tuple of str
    source : str
    keep : ndarray of shape (n_boxes,), bool
    dropped : list of (key, count, reason)

    Raises
    ------
    DataValidationError
        As :func:`read_yolo_boxes`, and if no box is left.
    """
    min_size = _check_min_size(min_size, "yolo_box_rows")
    cols, names, source = _parse_yolo(
        labels_dir, images_dir=images_dir, img_size=None, class_names=class_names
    )
    keep, dropped = _filter_boxes(
        w=cols["w"],
        h=cols["h"],
        outside=cols["outside"],
        flag_steps=[],
        category_drop=None,
        category_reason="",
        min_size=min_size,
    )
    if not keep.any():
        parts = ", ".join(f"{c} ({r})" for _, c, r in dropped if c)
        raise DataValidationError(
            f"No box of {source} is left: {keep.size} read, dropped {parts}. "
            "Relax these filters."
        )
    return cols, names, source, keep, dropped
