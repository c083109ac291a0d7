"""Genetic refinement of anchors: a (1+1) evolution strategy on one anchor at a time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clusterlens.utils._progress import progress

__all__ = ["Objective", "evolve_anchors"]

logger = logging.getLogger(__name__)


def _iou_column(
    w: npt.NDArray[np.float32], h: npt.NDArray[np.float32], wa: float, ha: float
) -> npt.NDArray[np.float32]:
    inter = np.minimum(w, np.float32(wa)) * np.minimum(h, np.float32(ha))
    return inter / (w * h + np.float32(wa * ha) - inter)


def _ratio_column(
    w: npt.NDArray[np.float32], h: npt.NDArray[np.float32], wa: float, ha: float
) -> npt.NDArray[np.float32]:
    wa32, ha32 = np.float32(wa), np.float32(ha)
    return np.minimum(
        np.minimum(w, wa32) / np.maximum(w, wa32),
        np.minimum(h, ha32) / np.maximum(h, ha32),
    )


@dataclass
class Objective:
    """One figure of merit over all boxes, updated one anchor column at a time.

    Keeps the per-box score of every anchor and, per box, the best and the
    second-best score with the best one's index: the figure for a candidate
    that changes only anchor ``j`` then costs O(n_boxes), not O(n_boxes * k).
    """

    kind: str  # "iou" or "ratio"
    w: npt.NDArray[np.float32]
    h: npt.NDArray[np.float32]
    ratio_thr: float
    scores: npt.NDArray[np.float32]  # (k, n)
    top1: npt.NDArray[np.float32]
    top1_idx: npt.NDArray[np.intp]
    top2: npt.NDArray[np.float32]

    @classmethod
    def build(
        cls,
        kind: str,
        boxes: npt.NDArray[np.float64],
        anchors: npt.NDArray[np.float64],
        ratio_thr: float,
    ) -> Objective:
        w = np.ascontiguousarray(boxes[:, 0], dtype=np.float32)
        h = np.ascontiguousarray(boxes[:, 1], dtype=np.float32)
        col = _iou_column if kind == "iou" else _ratio_column
        scores = np.stack([col(w, h, wa, ha) for wa, ha in anchors])
        obj = cls(kind, w, h, ratio_thr, scores, *cls._tops(scores))
        return obj

    @staticmethod
    def _tops(
        scores: npt.NDArray[np.float32],
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        if scores.shape[0] == 1:
            return (
                scores[0].copy(),
                np.zeros(scores.shape[1], np.intp),
                np.zeros_like(scores[0]),
            )
        part = np.partition(scores, scores.shape[0] - 2, axis=0)
        return part[-1], scores.argmax(axis=0), part[-2]

    def column(self, wa: float, ha: float) -> npt.NDArray[np.float32]:
        col = _iou_column if self.kind == "iou" else _ratio_column
        return col(self.w, self.h, wa, ha)

    def value(self, best: npt.NDArray[np.float32]) -> float:
        if self.kind == "iou":
            return float(np.mean(best, dtype=np.float64))
        ok = best > np.float32(1.0 / self.ratio_thr)
        return float(np.mean(best * ok, dtype=np.float64))

    def current(self) -> float:
        return self.value(self.top1)

    def with_column(self, j: int, col: npt.NDArray[np.float32]) -> float:
        """The figure if anchor ``j`` had the scores ``col``."""
        others = np.where(self.top1_idx == j, self.top2, self.top1)
        return self.value(np.maximum(others, col))

    def accept(self, j: int, col: npt.NDArray[np.float32]) -> None:
        self.scores[j] = col
        self.top1, self.top1_idx, self.top2 = self._tops(self.scores)


def evolve_anchors(
    boxes: npt.NDArray[np.float64],
    anchors: npt.NDArray[np.float64],
    *,
    maximize: str,
    keep: str | None = None,
    generations: int,
    rng: np.random.Generator,
    ratio_thr: float = 4.0,
    sigma: float = 0.1,
    verbose: int = 0,
) -> tuple[npt.NDArray[np.float64], list[float]]:
    """Raise one figure ("iou" or "ratio") by mutating one anchor at a time.

    Each generation picks an anchor at random and multiplies its width and
    height by ``exp(N(0, s))``; the mutation is kept if the figure
    ``maximize`` rises and, with ``keep``, the other figure does not fall
    below its starting value. The step ``s`` starts at ``sigma`` (YOLOv5's
    autoanchor mutation scale), grows by 1.5x after a success and shrinks by
    3 % after a failure (a (1+1) evolution strategy with a one-fifth-style
    rule). Ultralytics mutates every anchor at once; changing one at a time
    lets a generation cost O(n_boxes) instead of O(n_boxes * k), and more
    mutations are accepted near the optimum.

    Returns
    -------
    anchors : ndarray of shape (k, 2)
    curve : list of float
        The figure ``maximize`` after each generation.
    """
    k = anchors.shape[0]
    a = anchors.astype(np.float64, copy=True)
    main = Objective.build(maximize, boxes, a, ratio_thr)
    floor_obj = Objective.build(keep, boxes, a, ratio_thr) if keep else None
    floor = floor_obj.current() if floor_obj is not None else -np.inf
    f = main.current()
    s = sigma
    curve: list[float] = []
    bar = progress(
        range(generations), desc=f"evolve {maximize}", verbose=verbose, unit="gen"
    )
    for _ in bar:
        j = int(rng.integers(k))
        cand = a[j] * np.exp(rng.normal(0.0, s, 2))
        col = main.column(*cand)
        fg = main.with_column(j, col)
        ok = fg > f
        if ok and floor_obj is not None:
            fcol = floor_obj.column(*cand)
            ok = floor_obj.with_column(j, fcol) >= floor
        if ok:
            a[j] = cand
            main.accept(j, col)
            if floor_obj is not None:
                floor_obj.accept(j, fcol)
            f = fg
            s = min(s * 1.5, 0.3)
        else:
            s = max(s * 0.97, 0.002)
        curve.append(f)
        bar.set_postfix_str(f"{maximize}={f:.5f}", refresh=False)
    return a, curve
