"""Figures detector users check: mean IoU, BPR, anchors above threshold, fitness."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.utils._chunking import gen_batches

__all__ = [
    "best_anchor",
    "check_boxes",
    "evaluate_anchors",
    "figures_from_best",
    "group_mean",
]

_CHUNK = 1 << 16


def check_boxes(boxes: npt.ArrayLike, name: str = "boxes") -> npt.NDArray[np.float64]:
    """``boxes`` as a float64 (n, 2) array of positive, finite ``[w, h]``."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 2:
        raise DataValidationError(
            f"{name} must be of shape (n_boxes, 2) as [w, h]; got shape {b.shape}."
        )
    if b.shape[0] == 0:
        raise DataValidationError(f"{name} is empty: there are no boxes to work with.")
    bad = ~np.isfinite(b).all(axis=1) | (b <= 0).any(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"{name} must have positive, finite width and height; {int(bad.sum())} "
            f"rows do not (first at index {first}: {b[first].tolist()})."
        )
    return b


def best_anchor(
    boxes: npt.NDArray[np.float64], anchors: npt.NDArray[np.float64], ratio_thr: float
) -> dict[str, npt.NDArray[Any]]:
    """Per box: best IoU and its anchor, best ratio metric, anchors above threshold.

    Chunked over boxes and looped over the (few) anchors on contiguous
    vectors, so memory stays O(chunk) for any number of boxes. The ratio
    metric ``min(w/wa, wa/w, h/ha, ha/h)`` is computed as
    ``min(min(w, wa) / max(w, wa), min(h, ha) / max(h, ha))``.
    """
    n = boxes.shape[0]
    out = {
        "iou": np.empty(n),
        "label": np.empty(n, dtype=np.int64),
        "ratio": np.empty(n),
        "above": np.zeros(n, dtype=np.int64),
    }
    area_a = anchors[:, 0] * anchors[:, 1]
    thr = 1.0 / ratio_thr
    for sl in gen_batches(n, _CHUNK):
        w, h = boxes[sl, 0], boxes[sl, 1]
        area = w * h
        best = np.full(w.shape[0], -1.0)
        label = np.zeros(w.shape[0], dtype=np.int64)
        rbest = np.zeros(w.shape[0])
        above = out["above"][sl]
        for j in range(anchors.shape[0]):  # a loop over anchors, not boxes
            inter = np.minimum(w, anchors[j, 0]) * np.minimum(h, anchors[j, 1])
            iou = inter / (area + area_a[j] - inter)
            better = iou > best
            np.copyto(best, iou, where=better)
            np.copyto(label, j, where=better)
            wa, ha = anchors[j]
            r = np.minimum(
                np.minimum(w, wa) / np.maximum(w, wa),
                np.minimum(h, ha) / np.maximum(h, ha),
            )
            np.maximum(rbest, r, out=rbest)
            above += r > thr
        out["iou"][sl] = best
        out["label"][sl] = label
        out["ratio"][sl] = rbest
    return out


def figures_from_best(
    best: dict[str, npt.NDArray[Any]], ratio_thr: float
) -> dict[str, float]:
    """Mean IoU, BPR, AAT and fitness from the output of :func:`best_anchor`."""
    ok = best["ratio"] > 1.0 / ratio_thr
    return {
        "mean_iou": float(best["iou"].mean()),
        "bpr": float(ok.mean()),
        "aat": float(best["above"].mean()),
        "fitness": float((best["ratio"] * ok).mean()),
        "n_boxes": int(best["iou"].shape[0]),
    }


def evaluate_anchors(
    boxes: npt.ArrayLike, anchors: npt.ArrayLike, *, ratio_thr: float = 4.0
) -> dict[str, float]:
    """Mean IoU, BPR, anchors above threshold and fitness of ``anchors`` on ``boxes``.

    Parameters
    ----------
    boxes : array-like of shape (n_boxes, 2)
        ``[w, h]`` of the boxes.
    anchors : array-like of shape (n_anchors, 2)
        ``[w, h]`` of the anchors, in the same units as ``boxes``.
    ratio_thr : float, default=4.0
        Ultralytics' ``anchor_t``: a box can be learnt from an anchor when
        the ratio metric ``min(w/wa, wa/w, h/ha, ha/h)`` exceeds ``1/ratio_thr``.

    Returns
    -------
    figures : dict
        ``mean_iou`` (each box with its best anchor), ``bpr`` (best possible
        recall: share of boxes with at least one anchor above threshold),
        ``aat`` (mean number of anchors above threshold per box), ``fitness``
        (Ultralytics' ``mean(best * (best > 1/thr))`` of the ratio metric) and
        ``n_boxes``.

    Examples
    --------
    >>> f = evaluate_anchors([[10, 10], [20, 40]], [[10, 10], [20, 40]])
    >>> f["mean_iou"], f["bpr"], f["fitness"]
    (1.0, 1.0, 1.0)
    """
    b = check_boxes(boxes)
    a = check_boxes(anchors, "anchors")
    return figures_from_best(best_anchor(b, a, ratio_thr), ratio_thr)


def group_mean(
    values: npt.NDArray[np.float64], groups: npt.NDArray[np.int64], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Mean of ``values`` per group (with the count), for groups that occur."""
    counts = np.bincount(groups, minlength=len(names))
    sums = np.bincount(groups, weights=values, minlength=len(names))
    return {
        str(names[int(g)]): {
            "boxes": int(counts[g]),
            "mean_iou": float(sums[g] / counts[g]),
        }
        for g in np.flatnonzero(counts)
    }
