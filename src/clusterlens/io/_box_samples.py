"""One sample per box: the kept boxes of a COCO file or a ``--boxes`` workspace."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._boxes import MIN_BOX_SIZE, describe_dropped
from clusterlens.io._workspace import Workspace
from clusterlens.typing import PathLike

__all__ = ["BoxSamples", "coco_box_samples", "workspace_box_samples"]

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
