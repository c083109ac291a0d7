"""Small colour previews of every item, made by the scan from the image it decodes.

The explore report and the cluster report show thumbnails of up to thousands
of items; decoding each image again for them cost about as much as the scan
itself (a 500 x 375 JPEG: ~2 ms to decode at a reduced DCT scale, then
resize). The scan already holds every image decoded at full size, so it keeps
a :data:`PREVIEW_SIDE` copy (area-averaged) that the reports read instead.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from clusterlens.io._workspace import Workspace

__all__ = ["MAX_PREVIEW_ITEMS", "PREVIEW_SIDE", "load_previews", "make_preview"]

#: Longest side of a preview in pixels: the reports' default thumbnail side.
PREVIEW_SIDE = 64
#: Previews are kept for collections up to this many items (12 KB each: 200 MB
#: at most); the reports decode the images of larger ones, which show only a
#: sample of their items anyway.
MAX_PREVIEW_ITEMS = 16_384

PREVIEWS_FILE = "previews.npy"
SIZES_FILE = "preview_sizes.npy"


def make_preview(
    image: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint8], int, int]:
    """``image`` fitted into :data:`PREVIEW_SIDE` (never enlarged), RGB.

    Returns the (side, side, 3) block with the preview in its top-left
    corner, and the preview's width and height.
    """
    a = np.asarray(image, dtype=np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    h, w = a.shape[:2]
    f = min(1.0, PREVIEW_SIDE / max(h, w))
    pw, ph = max(1, round(w * f)), max(1, round(h * f))
    if (pw, ph) != (w, h):
        a = np.asarray(
            cv2.resize(np.ascontiguousarray(a), (pw, ph), interpolation=cv2.INTER_AREA),
            dtype=np.uint8,
        )
    out = np.zeros((PREVIEW_SIDE, PREVIEW_SIDE, 3), dtype=np.uint8)
    out[:ph, :pw] = a
    return out, pw, ph


def load_previews(
    ws: Workspace,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None:
    """The scan's previews of ``ws`` and their (width, height), if current.

    None when the scan kept none (a large collection, an older workspace) or
    when they belong to other items (the workspace was ingested again since).
    Sizes of 0 mark items the scan could not read.
    """
    folder = ws.root / "scan"
    try:
        run: Any = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        fp = run["fingerprint"]
        items = ws.root / "items.parquet"
        if int(fp["n_items"]) != len(ws) or int(fp["items_mtime_ns"]) != (
            items.stat().st_mtime_ns
        ):
            return None
        previews = np.load(folder / PREVIEWS_FILE, mmap_mode="r")
        sizes = np.load(folder / SIZES_FILE).astype(np.int64)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if previews.shape != (len(ws), PREVIEW_SIDE, PREVIEW_SIDE, 3) or sizes.shape != (
        len(ws),
        2,
    ):
        return None
    return previews, sizes
