"""Pascal VOC XML annotations."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._boxes import (
    MAX_IMAGE_SIDE,
    MIN_BOX_SIZE,
    BoxTable,
    _apply_filters,
    _as_path,
    _check_dir,
    _check_min_size,
    _filter_boxes,
    _report_clipping,
    clip_boxes,
)
from clusterlens.typing import PathLike

__all__ = ["read_voc_boxes", "voc_box_rows"]

logger = logging.getLogger(__name__)


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


def _parse_voc(
    path: Path,
) -> tuple[float, float, list[tuple[str, bool, list[float]]], str]:
    """Image size, ``(name, difficult, [xmin, ymin, xmax, ymax])`` per object
    and the image's file name (``<filename>``, else the XML's stem + .jpg)."""
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
    if max(width, height) > MAX_IMAGE_SIDE:
        raise DataValidationError(
            f"{where} gives an image size of {width:g} x {height:g} pixels, larger "
            f"than any image (at most {MAX_IMAGE_SIDE:,} a side). Fix its <size>."
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
    filename = (root.findtext("filename") or "").strip() or f"{path.stem}.jpg"
    return width, height, objects, filename


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
    cols, names, source = _parse_voc_dir(xml_dir)
    return _apply_filters(
        w=cols["w"],
        h=cols["h"],
        img_w=cols["img_w"],
        img_h=cols["img_h"],
        category=cols["category"],
        names=names,
        image_id=cols["image_id"],
        source=source,
        flag_steps=_difficult_step(cols, include_difficult),
        categories=categories,
        min_size=min_size,
        empty_hint="",
        outside=cols["outside"],
        clipped=cols["clipped"],
    )


def _difficult_step(
    cols: dict[str, Any], include_difficult: bool
) -> list[tuple[str, npt.NDArray[np.bool_], str]]:
    if include_difficult:
        return []
    return [("difficult", cols["difficult"], "include_difficult=False")]


def _parse_voc_dir(xml_dir: PathLike) -> tuple[dict[str, Any], list[str], str]:
    """Columns of every object of a VOC annotation folder (before the filters).

    ``cols`` holds ``xyxy`` (0-based pixels, clipped to the image), ``w``,
    ``h``, ``img_w``, ``img_h``, ``clipped``, ``outside``, ``difficult``,
    ``category``, ``image_id`` (the XML's stem), ``filename`` (the image's
    ``<filename>``), ``object`` (1-based number in its file) and
    ``xml_file``; plus the sorted category names and a description.
    """
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
    filenames: list[str] = []
    for fi, path in enumerate(files):
        width, height, objects, filename = _parse_voc(path)
        filenames.append(filename)
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
    infinite = ~np.isfinite(xyxy).all(axis=1)
    bad = infinite | ~((w > 0) & (h > 0))
    if bad.any():
        i = int(np.argmax(bad))
        n_inf = int(np.count_nonzero(infinite))
        n_w = int(np.count_nonzero(~infinite & ~(w > 0)))
        n_h = int(np.count_nonzero(~infinite & ~(h > 0)))
        counts = [
            (n_w, "have w <= 0"),
            (n_h, "have h <= 0"),
            (n_inf, "have a coordinate that is not finite"),
        ]
        said = [f"{k} {what}" for k, what in counts if k]
        said[0] = said[0].replace(" have", " objects have", 1)
        rule = (
            "box corners must be finite numbers"
            if n_inf
            else "boxes must have positive width and height"
        )
        raise DataValidationError(
            f"{rule}; in {where}, {' and '.join(said)} (first: object {obj_no[i]} "
            f"of {str(files[file_idx[i]])!r}, xmin, ymin, xmax, ymax = "
            f"{', '.join(f'{c:g}' for c in xyxy[i])}). VOC boxes need finite "
            "xmin <= xmax and ymin <= ymax; fix or remove these objects."
        )
    f_arr = np.asarray(file_idx, dtype=np.intp)
    # 1-based inclusive corners -> 0-based [x0, x1) pixels, clipped to the image
    img_w, img_h = sizes[f_arr, 0], sizes[f_arr, 1]
    zero_based = xyxy - np.array([1.0, 1.0, 0.0, 0.0])
    clipped_box, clipped, outside = clip_boxes(zero_based, img_w, img_h)
    _report_clipping(
        where,
        clipped,
        outside,
        lambda i: (
            f"object {obj_no[i]} of {str(files[file_idx[i]])!r}, xmin, ymin, "
            f"xmax, ymax = {', '.join(f'{c:g}' for c in xyxy[i])} on a "
            f"{img_w[i]:g}x{img_h[i]:g} image"
        ),
    )
    uniq, category = np.unique(np.asarray(names, dtype=np.str_), return_inverse=True)
    image_ids = np.asarray([p.stem for p in files], dtype=np.str_)
    cols = {
        "xyxy": clipped_box,
        "w": clipped_box[:, 2] - clipped_box[:, 0],
        "h": clipped_box[:, 3] - clipped_box[:, 1],
        "img_w": img_w,
        "img_h": img_h,
        "clipped": clipped,
        "outside": outside,
        "difficult": np.asarray(difficult, dtype=bool),
        "category": category.astype(np.int64).reshape(-1),
        "image_id": image_ids[f_arr],
        "filename": np.asarray(filenames, dtype=object)[f_arr],
        "object": np.asarray(obj_no, dtype=np.int64),
        "xml_file": np.asarray([str(p) for p in files], dtype=object)[f_arr],
    }
    return (
        cols,
        [str(u) for u in uniq],
        f"Pascal VOC XML {xml_path}/ ({len(files)} files)",
    )


def voc_box_rows(
    xml_dir: PathLike,
    *,
    include_difficult: bool = True,
    min_size: float = MIN_BOX_SIZE,
) -> tuple[dict[str, Any], list[str], str, Any, list[tuple[str, int, str]]]:
    """The boxes of a VOC annotation folder that the commands keep.

    The VOC twin of :func:`clusterlens.io._boxes_coco.coco_box_rows`: the
    parser of :func:`read_voc_boxes` and the shared filters (the image
    bounds, ``difficult`` unless ``include_difficult``, ``min_size``), so
    ``ingest --boxes``, ``label-issues`` and ``anchors`` keep the same boxes.

    Returns
    -------
    cols : dict
        Per-object columns (see ``_parse_voc_dir``).
    names : list of str
    source : str
    keep : ndarray of shape (n_boxes,), bool
    dropped : list of (key, count, reason)

    Raises
    ------
    DataValidationError
        As :func:`read_voc_boxes`, and if no box is left.
    """
    min_size = _check_min_size(min_size, "voc_box_rows")
    cols, names, source = _parse_voc_dir(xml_dir)
    keep, dropped = _filter_boxes(
        w=cols["w"],
        h=cols["h"],
        outside=cols["outside"],
        flag_steps=_difficult_step(cols, include_difficult),
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
