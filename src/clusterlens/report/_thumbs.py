"""Thumbnails for the explore report: decode each shown item once, encode small."""

from __future__ import annotations

import base64
import functools
import io
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.io._workspace import Workspace

__all__ = ["encode_thumbnail", "thumbnail_bytes", "thumbnails"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- #
# Thumbnails: decode each shown item once, encode as the smaller of PNG/JPEG
# --------------------------------------------------------------------------- #
def _item_sizes(
    ws: Workspace,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    w = np.asarray(ws.items["width"], dtype=np.float64)
    h = np.asarray(ws.items["height"], dtype=np.float64)
    bw = np.asarray(ws.items.get("bbox_w", np.full(w.shape, np.nan)), dtype=np.float64)
    bh = np.asarray(ws.items.get("bbox_h", np.full(h.shape, np.nan)), dtype=np.float64)
    crop = np.isfinite(bw) & np.isfinite(bh)
    return np.where(crop, bw, w), np.where(crop, bh, h)


def _fit(w: float, h: float, side: int) -> tuple[int, int]:
    """(width, height) with the longest side ``side``, aspect kept."""
    if not (math.isfinite(w) and math.isfinite(h)) or w <= 0 or h <= 0:
        return side, side
    f = side / max(w, h)
    return max(1, round(w * f)), max(1, round(h * f))


@functools.cache
def _lossy_format() -> str:
    """WebP where Pillow writes it (about half the bytes of JPEG at 48 px)."""
    from PIL import features

    return "WEBP" if features.check("webp") else "JPEG"


#: An image with at most this many distinct colours is "flat" (digits,
#: drawings, screenshots): stored lossless, so its pixels stay sharp. Photos
#: shrunk to a thumbnail have hundreds to thousands.
FLAT_COLOURS = 256


def thumbnail_bytes(img: Any, quality: int) -> tuple[bytes, str]:
    """``img`` encoded small, and its MIME type: lossless for a flat image,
    lossy for a photo.

    One encoding per thumbnail, chosen by counting colours (encoding both
    ways and keeping the smaller took 5x longer, the lossless WebP attempt
    most of it). Lossy is WebP at its fastest effort (``method=0``: 0.6 ms
    for 48 px, about 1.3x the bytes of ``method=4`` at 1.7x the speed), or
    JPEG where Pillow has no WebP; lossless is PNG.
    """
    buf = io.BytesIO()
    if img.mode == "L":  # grey levels: at most 256 "colours", flat by the rule
        img.save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    rgb = img.convert("RGB")
    a = np.asarray(rgb)
    packed = (a[..., 0].astype(np.uint32) << 16) | (a[..., 1].astype(np.uint32) << 8)
    # distinct values of the sorted pixels (numpy's hashed np.unique takes
    # 20x longer on a thumbnail's 4,096 values)
    v = np.sort((packed | a[..., 2]).ravel())
    n_colours = int(np.count_nonzero(v[1:] != v[:-1])) + 1
    if n_colours <= FLAT_COLOURS:
        rgb.save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    if _lossy_format() == "WEBP":
        rgb.save(buf, format="WEBP", quality=quality, method=0)
        return buf.getvalue(), "image/webp"
    rgb.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), "image/jpeg"


def encode_thumbnail(img: Any, quality: int) -> str:
    """Data URI of ``img``, encoded by :func:`thumbnail_bytes`."""
    data, mime = thumbnail_bytes(img, quality)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnails(
    ws: Workspace,
    indices: Sequence[int],
    side: int,
    map_side: int,
    gallery: set[int],
    on_map: set[int],
    n_jobs: int,
) -> dict[int, tuple[tuple[str, int, int] | None, tuple[str, int, int] | None]]:
    """``{i: (gallery thumb, map thumb)}``; each ``(data URI, width, height)``.

    The scan's previews (:func:`clusterlens.curate.load_previews`) are used
    where they are current and large enough; other items are decoded.
    """
    from PIL import Image

    from clusterlens.curate._previews import PREVIEW_SIDE, load_previews

    W, H = _item_sizes(ws)
    pv = load_previews(ws) if max(side, map_side) <= PREVIEW_SIDE else None

    def pixels(i: int) -> npt.NDArray[np.uint8]:
        if pv is not None and pv[1][i, 0] > 0:
            pw, ph = (int(v) for v in pv[1][i])
            return np.ascontiguousarray(pv[0][i, :ph, :pw])
        w, h = _fit(float(W[i]), float(H[i]), side)
        small = math.isfinite(W[i]) and 0 < max(W[i], H[i]) < side
        # small images (digits) are enlarged below with sharp pixels
        return ws.read_item(
            i,
            mode="RGB",
            size=None if small else (h, w),
            min_size=None if small else (h, w),
        )

    def one(i: int) -> tuple[int, Any]:
        try:
            px = pixels(i)
        except (OSError, SyntaxError, ValueError) as e:
            logger.warning("explore report: item %d unreadable: %s", i, e)
            return i, None
        img = Image.fromarray(px)

        def scaled(long_side: int) -> tuple[Any, int, int]:
            sw, sh = _fit(img.size[0], img.size[1], long_side)
            if (sw, sh) == img.size:
                return img, sw, sh
            up = max(img.size) < long_side  # enlarge with sharp pixels
            how = Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS
            return img.resize((sw, sh), how), sw, sh

        thumb = mthumb = None
        if i in gallery:
            g, gw, gh = scaled(side)
            thumb = (encode_thumbnail(g, 85), gw, gh)
        if i in on_map:
            m, mw, mh = scaled(map_side)
            mthumb = (encode_thumbnail(m, 75), mw, mh)
        return i, (thumb, mthumb)

    out: dict[int, Any] = {}
    chunk = 256  # bounds the decoded images held at once
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        for start in range(0, len(indices), chunk):
            for i, got in pool.map(one, indices[start : start + chunk]):
                if got is not None:
                    out[i] = got
    return out
