"""One sample per box: the kept boxes of a COCO file, a YOLO or VOC folder, or a
``--boxes`` workspace."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io._boxes import MIN_BOX_SIZE, describe_dropped
from clusterlens.typing import PathLike

if TYPE_CHECKING:  # _workspace builds box workspaces from these samples
    from clusterlens.io._workspace import Workspace

__all__ = [
    "BoxSamples",
    "box_samples",
    "coco_box_samples",
    "voc_box_samples",
    "workspace_box_samples",
    "yolo_box_samples",
]

logger = logging.getLogger(__name__)

_BBOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


@dataclass(frozen=True)
class BoxSamples:
    """One sample per kept box, of a COCO file or a ``--boxes`` workspace.

    Attributes
    ----------
    labels : ndarray of shape (n,), int64
        Category index into ``class_names``.
    class_names : tuple of str
    bbox : ndarray of shape (n, 4)
        ``[x, y, w, h]`` in pixels (COCO convention), clipped to the image.
    image_path : ndarray of shape (n,), str
    image_id, annotation_id : ndarray of shape (n,), str
    img_w, img_h : ndarray of shape (n,)
    n_read : int, default=-1
        Boxes in the source before the filters (-1: not known).
    dropped : tuple of (str, int, str), default=()
        What each box filter removed (see
        :func:`clusterlens.io._boxes.describe_dropped`).
    """

    labels: npt.NDArray[np.int64]
    class_names: tuple[str, ...]
    bbox: npt.NDArray[np.float64]
    image_path: npt.NDArray[np.str_]
    image_id: npt.NDArray[np.str_]
    annotation_id: npt.NDArray[np.str_]
    img_w: npt.NDArray[np.float64]
    img_h: npt.NDArray[np.float64]
    n_read: int = -1
    dropped: tuple[tuple[str, int, str], ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def filter_summary(self) -> dict[str, Any]:
        """What the box filters kept and dropped, for run.json and the summary."""
        n_read = self.n_read if self.n_read >= 0 else len(self)
        return {
            "n_read": n_read,
            "n_kept": len(self),
            "dropped": [
                {"filter": k, "count": c, "reason": r} for k, c, r in self.dropped
            ],
            "summary": describe_dropped(n_read, len(self), self.dropped),
        }


def coco_box_samples(
    annotations: PathLike,
    images_dir: PathLike,
    *,
    min_size: float = MIN_BOX_SIZE,
    include_crowd: bool = False,
) -> BoxSamples:
    """The boxes of a COCO instances file that the commands keep, with images.

    The file is checked by the shared COCO reader and the boxes are filtered
    by the filters ``ingest --boxes`` and ``anchors`` use (wholly outside
    the image, crowd unless ``include_crowd``, narrower or lower than
    ``min_size`` pixels; see :func:`clusterlens.io._boxes_coco.coco_box_rows`);
    boxes are clipped to their image and keep the annotation order.

    Raises
    ------
    DataValidationError
        If the file is not a valid COCO instances file, no box is left, or an
        image it needs is missing from ``images_dir``.
    """
    from clusterlens.io._boxes_coco import coco_box_rows

    path = Path(annotations)
    data, cols, names, keep, dropped = coco_box_rows(
        path, include_crowd=include_crowd, min_size=min_size
    )
    anns = [a for a, k in zip(data["annotations"], keep, strict=True) if k]
    xyxy = np.asarray(cols["xyxy"], dtype=np.float64)[keep]
    images = {im["id"]: im for im in data["images"]}
    root = Path(images_dir)
    if not root.is_dir():
        raise DataValidationError(
            f"Images folder {str(root)!r} does not exist or is not a folder."
        )
    files = [str(images[a["image_id"]].get("file_name", "")) for a in anns]
    unique_files = sorted(set(files))
    missing = [f for f in unique_files if not (root / f).is_file()]
    if missing:
        raise DataValidationError(
            f"{len(missing)} of the {len(unique_files)} images of {str(path)!r} are "
            f"not in {str(root)!r} (first: {missing[0]!r}). Pass the folder that "
            "holds the images with --images."
        )
    return BoxSamples(
        labels=cols["category"][keep].astype(np.int64),
        class_names=tuple(names),
        bbox=np.column_stack((xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2])),
        image_path=np.asarray([str(root / f) for f in files], dtype=np.str_),
        image_id=cols["image_id"][keep].astype(np.str_),
        annotation_id=np.asarray([str(a.get("id", "")) for a in anns], dtype=np.str_),
        img_w=cols["img_w"][keep],
        img_h=cols["img_h"][keep],
        n_read=int(keep.size),
        dropped=tuple(dropped),
    )


def _samples(
    *,
    cols: dict[str, Any],
    names: Any,
    keep: npt.NDArray[np.bool_],
    dropped: list[tuple[str, int, str]],
    image_path: npt.NDArray[Any],
    annotation_id: npt.NDArray[Any],
    source: str,
) -> BoxSamples:
    """BoxSamples of the kept rows of a reader's columns (``xyxy`` clipped)."""
    xyxy = np.asarray(cols["xyxy"], dtype=np.float64)[keep]
    paths = np.asarray(image_path, dtype=object)[keep]
    missing = sorted({str(p) for p in paths.tolist() if not Path(str(p)).is_file()})
    if missing:
        raise DataValidationError(
            f"{len(missing)} images of the boxes of {source} are missing (first: "
            f"{missing[0]!r}). Pass the folder that holds the images with --images."
        )
    return BoxSamples(
        labels=np.asarray(cols["category"], dtype=np.int64)[keep],
        class_names=tuple(str(n) for n in names),
        bbox=np.column_stack((xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2])),
        image_path=np.asarray([str(p) for p in paths.tolist()], dtype=np.str_),
        image_id=np.asarray(cols["image_id"])[keep].astype(np.str_),
        annotation_id=np.asarray(annotation_id)[keep].astype(np.str_),
        img_w=np.asarray(cols["img_w"], dtype=np.float64)[keep],
        img_h=np.asarray(cols["img_h"], dtype=np.float64)[keep],
        n_read=int(keep.size),
        dropped=tuple(dropped),
    )


def yolo_box_samples(
    labels_dir: PathLike,
    images_dir: PathLike | None = None,
    *,
    class_names: Any = None,
    min_size: float = MIN_BOX_SIZE,
) -> BoxSamples:
    """The boxes of a YOLO labels folder that the commands keep, with images.

    Read by the shared YOLO parser (:func:`clusterlens.io.read_yolo_boxes`;
    ``images_dir`` defaults to the ``images`` twin of the ``labels`` folder,
    class names to ``classes.txt`` or the dataset's ``data.yaml``) and
    filtered by the filters every command shares (inside the image, at least
    ``min_size`` pixels a side). ``annotation_id`` is ``"<label file>:<line>"``.

    Raises
    ------
    DataValidationError
        As :func:`clusterlens.io.read_yolo_boxes`, or if no box is left.
    """
    from clusterlens.io._boxes_yolo import yolo_box_rows

    cols, names, source, keep, dropped = yolo_box_rows(
        labels_dir, images_dir=images_dir, class_names=class_names, min_size=min_size
    )
    ann = np.char.add(
        np.char.add(np.asarray(cols["image_id"], dtype=np.str_), ":"),
        np.asarray(cols["line"]).astype(np.str_),
    )
    return _samples(
        cols=cols,
        names=names,
        keep=keep,
        dropped=dropped,
        image_path=cols["image_path"],
        annotation_id=ann,
        source=source,
    )


def _voc_images_dir(xml_dir: Path) -> Path:
    """``JPEGImages`` of a VOC year root (the annotations' folder or its parent)."""
    root = xml_dir.parent if xml_dir.name == "Annotations" else xml_dir
    return root / "JPEGImages"


def voc_box_samples(
    xml_dir: PathLike,
    images_dir: PathLike | None = None,
    *,
    include_difficult: bool = True,
    min_size: float = MIN_BOX_SIZE,
) -> BoxSamples:
    """The boxes of a Pascal VOC annotation folder that the commands keep.

    Read by the shared VOC parser (:func:`clusterlens.io.read_voc_boxes`;
    each image is ``<filename>`` in ``images_dir``, default the year root's
    ``JPEGImages``) and filtered by the filters every command shares.
    ``annotation_id`` is ``"<xml stem>:<object number>"``.

    Raises
    ------
    DataValidationError
        As :func:`clusterlens.io.read_voc_boxes`, if no box is left, or if
        an image is missing.
    """
    from clusterlens.io._boxes_voc import voc_box_rows

    cols, names, source, keep, dropped = voc_box_rows(
        xml_dir, include_difficult=include_difficult, min_size=min_size
    )
    root = (
        Path(images_dir) if images_dir is not None else _voc_images_dir(Path(xml_dir))
    )
    if not root.is_dir():
        raise DataValidationError(
            f"Cannot find the images of {source}: {str(root)!r} is not a folder. "
            "Pass the folder of the images (VOC's JPEGImages) with --images."
        )
    paths = np.asarray([str(root / f) for f in cols["filename"].tolist()], object)
    ann = np.char.add(
        np.char.add(np.asarray(cols["image_id"], dtype=np.str_), ":"),
        np.asarray(cols["object"]).astype(np.str_),
    )
    return _samples(
        cols=cols,
        names=names,
        keep=keep,
        dropped=dropped,
        image_path=paths,
        annotation_id=ann,
        source=source,
    )


def box_samples(
    source: PathLike,
    images_dir: PathLike | None = None,
    *,
    min_size: float = MIN_BOX_SIZE,
    include_crowd: bool = False,
    class_names: Any = None,
) -> BoxSamples:
    """The kept boxes of a COCO JSON, a YOLO labels folder or a VOC folder.

    The format is told as :func:`clusterlens.io.read_boxes` tells it; then
    :func:`coco_box_samples` (``images_dir`` required), :func:`yolo_box_samples`
    or :func:`voc_box_samples`. ``include_crowd`` applies to COCO,
    ``class_names`` to YOLO.

    Raises
    ------
    DataValidationError
        If the format cannot be told, or the reader refuses the source.
    """
    from clusterlens.io._read_boxes import detect_box_format

    fmt, path = detect_box_format(source)
    if class_names is not None and fmt != "YOLO":
        raise InvalidParameterError(
            f"Class names apply to YOLO labels only (whose classes are numbers); "
            f"{str(source)!r} is {fmt}, whose boxes carry their names. Leave out "
            "--class-names."
        )
    if fmt == "COCO":
        if images_dir is None:
            raise DataValidationError(
                "COCO input needs --images DIR, the folder that holds its images "
                "(boxes are cropped from them)."
            )
        return coco_box_samples(
            path, images_dir, min_size=min_size, include_crowd=include_crowd
        )
    if fmt == "YOLO":
        return yolo_box_samples(
            path, images_dir, class_names=class_names, min_size=min_size
        )
    return voc_box_samples(path, images_dir, min_size=min_size)


def workspace_box_samples(ws: Workspace) -> BoxSamples | None:
    """The box items of a ``--boxes`` workspace as :class:`BoxSamples`.

    None for a workspace of whole images (or of arrays). Labels are the
    workspace's (``-1`` where unknown).
    """
    bbox = np.column_stack(
        [np.asarray(ws.items[c], dtype=np.float64) for c in _BBOX_COLUMNS]
    )
    if not np.isfinite(bbox[:, 2]).all() or (ws.items["array_row"] >= 0).any():
        return None
    ids = ws.items["item_id"].astype(str)
    ann = np.asarray([s.rpartition("#box")[2] for s in ids.tolist()], dtype=np.str_)
    paths = ws.items["path"].astype(str)
    bf = ws.meta.get("box_filter") or {}
    dropped = tuple(
        (str(d.get("filter", "")), int(d.get("count", 0)), str(d.get("reason", "")))
        for d in bf.get("dropped", [])
        if isinstance(d, dict)
    )
    return BoxSamples(
        labels=ws.items["label"].astype(np.int64),
        class_names=tuple(ws.class_names or ()),
        bbox=bbox,
        image_path=np.asarray(
            [str(ws.image_root / p) for p in paths.tolist()], dtype=np.str_
        ),
        image_id=paths.astype(np.str_),
        annotation_id=ann,
        img_w=ws.items["width"].astype(np.float64),
        img_h=ws.items["height"].astype(np.float64),
        n_read=int(bf.get("n_read", -1)),
        dropped=dropped,
    )
