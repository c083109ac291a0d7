"""Label-issue report: importance histogram and top/bottom galleries (HTML)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from clusterlens.report._charts import histogram
from clusterlens.report._common import css, fmt_value, template, version
from clusterlens.report._thumbs import encode_thumbnail
from clusterlens.typing import PathLike
from clusterlens.utils._fs import atomic_write_text

if TYPE_CHECKING:
    from clusterlens.io import BoxSamples
    from clusterlens.label_issues import LabelIssues

__all__ = ["box_panels", "build_label_issue_report", "image_panel"]

logger = logging.getLogger(__name__)

_PANEL = 160  # longest side of a gallery panel, pixels
_MIN_CROP = 96  # a crop's long side is enlarged to this at least


@dataclass(frozen=True)
class _Row:
    index: int
    label: str
    suggested: str
    rank: int
    class_rank: int
    quality: str
    self_confidence: str
    disagreement: str
    importance: str
    flagged: bool
    panels: list[str]


def _png(img: Any) -> str:
    """A panel as a data URI, by the reports' one rule (lossless for flat
    images and masks, WebP for photos: the coco128 report, 100 rows of three
    panels, went from 6.4 MB to 1.0 MB)."""
    return encode_thumbnail(img, 85)


def box_panels(
    image_path: str, bbox: Sequence[float], label: str, *, margin: float = 0.1
) -> list[Any]:
    """Three panels for one box: its crop, the image with the box, the box mask.

    The crop keeps ``margin`` of the box's width (height) on each side, as
    the CNN saw it, and is enlarged to at least 96 pixels so a small object
    can be seen; the image shows the box and its given label (the
    notebook's panel); the mask is the notebook's white box on black.
    Returns three PIL images at most ``160`` pixels on their long side.
    """
    from PIL import Image, ImageDraw

    from clusterlens.io._images import decode_image

    raw = decode_image(str(image_path), mode="RGB")  # OSError when unreadable
    x, y, w, h = (float(v) for v in bbox)
    x0, y0, x1, y1 = round(x), round(y), round(x + w), round(y + h)
    mask = Image.new("RGB", raw.size, (0, 0, 0))
    ImageDraw.Draw(mask).rectangle([x0, y0, x1, y1], fill=(255, 255, 255))
    cx0 = max(0, int(np.floor(x - margin * w)))
    cy0 = max(0, int(np.floor(y - margin * h)))
    cx1 = min(raw.size[0], max(int(np.ceil(x + w + margin * w)), cx0 + 1))
    cy1 = min(raw.size[1], max(int(np.ceil(y + h + margin * h)), cy0 + 1))
    crop = raw.crop((cx0, cy0, cx1, cy1))
    boxed = raw.copy()
    draw = ImageDraw.Draw(boxed)
    lw = max(2, round(max(raw.size) / 200))
    draw.rectangle([x0, y0, x1, y1], outline=(230, 30, 30), width=lw)
    tw = draw.textlength(label)
    ty = max(0, y0 - 12)
    draw.rectangle([x0, ty, x0 + tw + 6, ty + 12], fill=(230, 30, 30))
    draw.text((x0 + 3, ty), label, fill=(255, 255, 255))
    factor = _PANEL / max(raw.size)
    size = (max(1, round(raw.size[0] * factor)), max(1, round(raw.size[1] * factor)))
    cf = min(_PANEL / max(crop.size), max(1.0, _MIN_CROP / max(crop.size)))
    csize = (max(1, round(crop.size[0] * cf)), max(1, round(crop.size[1] * cf)))
    return [
        crop.resize(csize, Image.Resampling.LANCZOS),
        boxed.resize(size, Image.Resampling.LANCZOS),
        mask.resize(size, Image.Resampling.LANCZOS),
    ]


def image_panel(pixels: Any) -> Any:
    """A whole sample's image as a gallery panel: at most 160 pixels on its long
    side; a small image (a 28-px digit) is enlarged to 96 pixels, sharp."""
    from PIL import Image

    img = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    long = max(img.size)
    f = min(_PANEL / long, max(1.0, _MIN_CROP / long))
    size = (max(1, round(img.size[0] * f)), max(1, round(img.size[1] * f)))
    how = Image.Resampling.NEAREST if f > 1 else Image.Resampling.LANCZOS
    return img.resize(size, how)


def _rows(
    res: LabelIssues,
    idx: npt.NDArray[np.int64],
    names: Sequence[str],
    boxes: BoxSamples | None,
    margin: float,
    images: Callable[[int], Any] | None = None,
) -> list[_Row]:
    rows = []
    for i in idx.tolist():
        label = names[int(res.labels[i])]
        panels: list[str] = []
        if boxes is None and images is not None:
            try:
                panels = [_png(image_panel(images(int(i))))]
            except (OSError, ValueError) as e:  # unreadable: keep the row
                logger.warning("Cannot show sample %d: %s", i, e)
        elif boxes is not None:
            try:
                panels = [
                    _png(p)
                    for p in box_panels(
                        str(boxes.image_path[i]), boxes.bbox[i], label, margin=margin
                    )
                ]
            except OSError as e:  # an unreadable image: keep the row, say why
                logger.warning("Cannot draw box %d: %s", i, e)
        rows.append(
            _Row(
                index=int(i),
                label=label,
                suggested=names[int(res.suggested_label[i])],
                rank=int(res.issue_rank[i]),
                class_rank=int(res.class_rank[i]),
                quality=f"{res.label_quality[i]:.4f}",
                self_confidence=f"{res.self_confidence[i]:.4f}",
                disagreement=f"{res.neighbor_disagreement[i]:.2f}",
                importance=f"{res.coreset_importance[i]:.3f}",
                flagged=bool(res.is_label_issue[i]),
                panels=panels,
            )
        )
    return rows


def build_label_issue_report(
    path: PathLike,
    res: LabelIssues,
    *,
    names: Sequence[str],
    members: npt.NDArray[np.int64],
    top_idx: npt.NDArray[np.int64],
    bottom_idx: npt.NDArray[np.int64],
    boxes: BoxSamples | None = None,
    images: Callable[[int], Any] | None = None,
    title: str = "clusterlens label issues",
    figures: Mapping[str, Any] | None = None,
    margin: float = 0.1,
) -> Path:
    """Write the self-contained label-issue report.

    Sections: headline figures; histograms of the coreset importance and of
    the combined label quality over ``members`` (the class shown); the
    confident joint's largest off-diagonal entries; galleries of the
    ``top_idx`` (most likely wrong first) and ``bottom_idx`` samples, each
    row with its scores and, for boxes, three panels (the crop with
    ``margin`` around the box, the image with the box and its label, the
    notebook's box mask), for whole images with ``images`` (``images(i)``:
    sample ``i``'s pixels) the image itself. Everything is inlined: no
    scripts, no external URLs.
    """
    joint = res.confident_joint.copy()
    np.fill_diagonal(joint, 0)
    flat = np.argsort(joint, axis=None)[::-1][:10]
    pairs = [
        (names[int(a)], names[int(b)], int(joint[a, b]))
        for a, b in zip(*np.unravel_index(flat, joint.shape), strict=True)
        if joint[a, b] > 0
    ]
    html = template("label_issues.html.j2").render(
        title=title,
        css=css(),
        figures=[(str(k), fmt_value(v)) for k, v in (figures or {}).items()],
        hist_importance=histogram(
            res.coreset_importance[members], "Coreset importance (1 = class mean)"
        ),
        hist_quality=histogram(
            res.label_quality[members], "Combined label quality (low = suspicious)"
        ),
        pairs=pairs,
        top=_rows(res, top_idx, names, boxes, margin, images),
        bottom=_rows(res, bottom_idx, names, boxes, margin, images),
        has_panels=boxes is not None,
        has_image=boxes is None and images is not None,
        version=version(),
    )
    out = Path(path)
    atomic_write_text(out, html)
    return out
