"""IoU and ratio metrics of boxes that share a centre, and the 1 - IoU engine."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from clusterlens.cluster._engines._base import ENGINES, Engine

__all__ = ["IoUEngine", "IoUMedianEngine", "iou_wh", "ratio_metric"]


def iou_wh(boxes: npt.ArrayLike, anchors: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """IoU of every box with every anchor, all placed on the same centre.

    Parameters
    ----------
    boxes : array-like of shape (n_boxes, 2)
        ``[w, h]`` of each box.
    anchors : array-like of shape (n_anchors, 2)
        ``[w, h]`` of each anchor, in the same units.

    Returns
    -------
    iou : ndarray of shape (n_boxes, n_anchors)
        ``min(w) min(h) / (w h + wa ha - min(w) min(h))``, in [0, 1].

    Examples
    --------
    >>> iou_wh([[2, 2]], [[1, 1], [2, 4]]).round(3).tolist()
    [[0.25, 0.5]]
    """
    b = np.asarray(boxes, dtype=np.float64)
    a = np.asarray(anchors, dtype=np.float64)
    inter = np.minimum(b[:, None, 0], a[None, :, 0]) * np.minimum(
        b[:, None, 1], a[None, :, 1]
    )
    union = (b[:, 0] * b[:, 1])[:, None] + (a[:, 0] * a[:, 1])[None, :] - inter
    return inter / union


def ratio_metric(
    boxes: npt.ArrayLike, anchors: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Ultralytics' ratio metric: ``min(w/wa, wa/w, h/ha, ha/h)`` per box and anchor.

    A box matches an anchor in YOLOv5/v8 training when this is above
    ``1 / anchor_t`` (``anchor_t = 4.0`` by default).

    Examples
    --------
    >>> ratio_metric([[2, 2]], [[1, 1], [2, 4]]).tolist()
    [[0.5, 0.5]]
    """
    b = np.asarray(boxes, dtype=np.float64)
    a = np.asarray(anchors, dtype=np.float64)
    r = b[:, None, :] / a[None, :, :]
    return np.minimum(r, 1.0 / r).min(axis=2)


class _State(NamedTuple):
    anchors: npt.NDArray[np.float64]
    rows: list[npt.NDArray[np.float64]]
    labels: list[npt.NDArray[np.intp]]


@ENGINES.register("iou")
class IoUEngine(Engine):
    """k-means over box sizes with ``1 - IoU`` as the distance, mean update.

    The rows of X are ``[w, h]``; a box is assigned to the anchor it overlaps
    most when both share a centre (YOLOv2, Redmon & Farhadi 2017). The
    distance recorded (and summed as inertia) is ``1 - IoU``, so the lowest
    inertia is the highest mean IoU. Plugs into the shared k-means driver.
    """

    name = "iou"
    metric = "1-iou"
    incremental = True
    # The mean (or median) of a cluster's sizes does not maximise its mean IoU,
    # so an iteration can lower the mean IoU: the driver keeps the best seen.
    monotone = False

    @classmethod
    def supports(cls, params: Any) -> bool:
        return params.get("metric", "1-iou") == "1-iou"

    def working_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        return np.dtype(np.float64)

    def chunk_rows(
        self, n_features: int, n_clusters: int, dtype: np.dtype[Any], budget: int
    ) -> int:
        # Six length-m float32 vectors per chunk stay in the L2 cache.
        return int(max(1, min(32768, budget // (n_clusters * 8 + 64))))

    def prepare(
        self,
        centers: npt.NDArray[np.float64],
        dtype: np.dtype[Any],
        origin: npt.NDArray[np.float64] | None = None,
    ) -> _State:
        return _State(np.asarray(centers, dtype=np.float64), [], [])

    def pairwise(self, X_chunk: npt.NDArray[Any], state: _State) -> npt.NDArray[Any]:
        return 1.0 - iou_wh(X_chunk, state.anchors)

    def assign(
        self, X_chunk: npt.NDArray[Any], state: _State
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.floating[Any]]]:
        # A loop over the (few) anchors on contiguous length-m vectors: several
        # times faster than an (m, k) block and an argmax over rows of length k.
        # float32 is plenty for choosing the best anchor (IoU in [0, 1]).
        w = np.ascontiguousarray(X_chunk[:, 0], dtype=np.float32)
        h = np.ascontiguousarray(X_chunk[:, 1], dtype=np.float32)
        area = w * h
        best = np.full(w.shape[0], -1.0, dtype=np.float32)
        labels = np.zeros(w.shape[0], dtype=np.intp)
        inter = np.empty_like(w)
        tmp = np.empty_like(w)
        for j, (wa, ha) in enumerate(state.anchors.astype(np.float32)):
            np.minimum(w, wa, out=inter)
            inter *= np.minimum(h, ha, out=tmp)
            np.add(area, wa * ha, out=tmp)
            tmp -= inter
            np.divide(inter, tmp, out=inter)
            better = inter > best
            np.copyto(best, inter, where=better)
            np.copyto(labels, j, where=better)
        return labels, 1.0 - best.astype(np.float64)


@ENGINES.register("iou-median")
class IoUMedianEngine(IoUEngine):
    """As :class:`IoUEngine`, but each anchor moves to the median ``[w, h]``.

    The median is less pulled by a few huge boxes than the mean. It is not a
    sum, so each iteration's chunks (and labels) are kept in the per-iteration
    state: memory O(n_boxes), which boxes always afford.
    """

    name = "iou-median"
    incremental = False  # a median is recomputed from every row, not a sum

    def accumulate(
        self,
        X_chunk: npt.NDArray[Any],
        labels: npt.NDArray[np.intp],
        sample_weight: npt.NDArray[np.float64] | None,
        state: _State,
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
    ) -> None:
        super().accumulate(X_chunk, labels, sample_weight, state, sums, weights)
        state.rows.append(np.asarray(X_chunk, dtype=np.float64))
        state.labels.append(np.asarray(labels))

    def update(
        self,
        sums: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
        old_centers: npt.NDArray[np.float64],
        state: _State,
    ) -> npt.NDArray[np.float64]:
        new = super().update(sums, weights, old_centers, state)  # mean fallback
        if not state.rows:
            return new
        X = np.concatenate(state.rows)
        labels = np.concatenate(state.labels)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(new.shape[0] + 1))
        for c in range(new.shape[0]):  # a loop over anchors, not boxes
            lo, hi = bounds[c], bounds[c + 1]
            if hi > lo:
                new[c] = np.median(X[order[lo:hi]], axis=0)
        return new
