"""``read_boxes``: one entry point that tells COCO, VOC and YOLO apart.

Kept apart from :mod:`clusterlens.io._boxes` (the box table and the filters
every reader shares), so that module never imports its readers.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io._boxes import BoxTable, _as_path
from clusterlens.io._boxes_coco import read_coco_boxes
from clusterlens.io._boxes_voc import _voc_files, read_voc_boxes
from clusterlens.io._boxes_yolo import read_yolo_boxes
from clusterlens.typing import PathLike

__all__ = ["detect_box_format", "read_boxes"]

_SUPPORTED_HELP = (
    "COCO instances JSON (a .json file or a list of them), "
    "a folder of Pascal VOC .xml files (or a VOC root with Annotations/), "
    "a folder of YOLO .txt label files (or a YOLO dataset root with labels/)"
)

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

    fmt, found = detect_box_format(path)
    _check_filters(fmt, str(path), filters)
    if fmt == "COCO":
        return read_coco_boxes(found, **filters)
    if fmt == "VOC":
        return read_voc_boxes(found, **filters)
    return read_yolo_boxes(found, **filters)


def detect_box_format(source: PathLike) -> tuple[str, Path]:
    """Which annotation format a path holds, and the path its reader takes.

    Returns ``("COCO", json_file)``, ``("VOC", folder)`` (of .xml files, or a
    VOC root with ``Annotations/``) or ``("YOLO", labels_folder)``.

    Raises
    ------
    DataValidationError
        If the path does not exist or its format cannot be told.
    """
    path = _as_path(source, "source")
    if not path.exists():
        raise DataValidationError(
            f"Annotation source {str(path)!r} does not exist. Check the path "
            f"(relative paths are resolved from {str(Path.cwd())!r})."
        )
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "COCO", path
        raise DataValidationError(
            f"Cannot read boxes from {str(path)!r}: a {path.suffix or 'suffix-less'} "
            f"file is not a supported annotation format. Supported: {_SUPPORTED_HELP}."
        )
    if _voc_files(path):
        return "VOC", path
    has_txt = any(p.is_file() for p in path.glob("*.txt"))
    if has_txt or path.name == "labels":
        return "YOLO", path
    if (path / "labels").is_dir():
        return "YOLO", path / "labels"
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
