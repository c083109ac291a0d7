"""Anchors in the formats detectors read: darknet cfg, YOLOv5/v8 yaml, JSON."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError

__all__ = ["format_darknet_cfg", "format_yolov5_yaml", "parse_anchors", "split_levels"]


def parse_anchors(text: str) -> npt.NDArray[np.float64]:
    """Parse ``"10,13, 16,30, 33,23"`` (darknet's order: w,h pairs) to (k, 2).

    Examples
    --------
    >>> parse_anchors("10,13,  16,30").tolist()
    [[10.0, 13.0], [16.0, 30.0]]
    """
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    try:
        values = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError as e:
        raise DataValidationError(
            f"Anchors {text!r} must be numbers as 'w1,h1, w2,h2, ...': {e}."
        ) from e
    if values.size == 0 or values.size % 2:
        raise DataValidationError(
            f"Anchors {text!r} must be w,h pairs; got {values.size} numbers."
        )
    if not np.isfinite(values).all() or (values <= 0).any():
        raise DataValidationError(f"Anchors {text!r} must all be positive numbers.")
    return values.reshape(-1, 2)


def split_levels(
    anchors: npt.NDArray[np.float64], levels: int
) -> list[npt.NDArray[np.float64]]:
    """Anchors sorted by area, split as evenly as possible over detection levels."""
    if levels < 1 or levels > len(anchors):
        raise DataValidationError(
            f"levels={levels} must be between 1 and the number of anchors "
            f"({len(anchors)})."
        )
    order = np.argsort(anchors[:, 0] * anchors[:, 1], kind="stable")
    return [anchors[idx] for idx in np.array_split(order, levels)]


def _pairs(a: npt.NDArray[np.float64]) -> str:
    return ", ".join(f"{round(w):d},{round(h):d}" for w, h in a)


def format_darknet_cfg(anchors: npt.NDArray[np.float64]) -> str:
    """The YOLOv3 cfg line, e.g. ``anchors = 10,13, 16,30, 33,23``."""
    order = np.argsort(anchors[:, 0] * anchors[:, 1], kind="stable")
    return f"anchors = {_pairs(anchors[order])}"


def format_yolov5_yaml(anchors: npt.NDArray[np.float64], levels: int) -> str:
    """The YOLOv5/v8 model yaml ``anchors:`` block, one line per level."""
    lines = ["anchors:"]
    for i, level in enumerate(split_levels(anchors, levels)):
        stride = 2 ** (3 + i)
        lines.append(f"  - [{_pairs(level)}]  # P{3 + i}/{stride}")
    return "\n".join(lines)


def anchors_json(
    anchors: npt.NDArray[np.float64],
    *,
    scale: str,
    img_size: int | None,
    levels: int,
    figures: dict[str, Any],
) -> dict[str, Any]:
    """The content of ``anchors.json``."""
    return {
        "schema": "clusterlens.anchors/1",
        "anchors": np.round(anchors, 4).tolist(),
        "scale": scale,
        "img_size": img_size,
        "levels": [np.round(lv, 4).tolist() for lv in split_levels(anchors, levels)],
        "figures": figures,
    }
