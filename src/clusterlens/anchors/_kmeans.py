"""Anchor boxes by k-means under 1 - IoU, with optional genetic refinement."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClusterMixin

from clusterlens.anchors._evolve import evolve_anchors
from clusterlens.anchors._iou import IoUEngine, IoUMedianEngine
from clusterlens.anchors._metrics import (
    best_anchor,
    check_boxes,
    figures_from_best,
)
from clusterlens.cluster import kmeans
from clusterlens.exceptions import DataValidationError, NotFittedError
from clusterlens.typing import ArrayLike, SeedLike
from clusterlens.utils._names import arg
from clusterlens.utils.validation import (
    check_int,
    check_options,
    check_random_state,
    check_real,
)

__all__ = ["AnchorKMeans", "AnchorResult", "anchor_boxes"]


@dataclass(frozen=True)
class AnchorResult:
    """Result of :func:`anchor_boxes`.

    Attributes
    ----------
    anchors : ndarray of shape (n_anchors, 2)
        ``[w, h]`` sorted by area, smallest first, in the units of the boxes.
    labels : ndarray of shape (n_boxes,), int64
        Best-IoU anchor of each box.
    best_iou : ndarray of shape (n_boxes,)
        IoU of each box with its best anchor.
    figures : dict
        ``mean_iou``, ``bpr``, ``aat``, ``fitness``, ``n_boxes`` (see
        :func:`evaluate_anchors`).
    kmeans_figures : dict
        The same figures for the k-means anchors, before any evolution.
    n_iter : int
        Lloyd iterations of the best k-means run.
    history : list of dict
        Per-iteration history of the best k-means run.
    evolve_curve : list of float
        Fitness after each generation of evolution (empty without it).
    seconds : dict
        ``kmeans`` and ``evolve`` wall times.
    """

    anchors: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    best_iou: npt.NDArray[np.float64]
    figures: dict[str, float]
    kmeans_figures: dict[str, float]
    n_iter: int
    history: list[dict[str, Any]]
    evolve_curve: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _count_distinct(b: npt.NDArray[np.float64], enough: int) -> int:
    """Distinct rows of ``b``, or any number >= ``enough`` once that many are seen."""
    head = b[: max(enough * 100, 10_000)]
    n = np.unique(head[:, 0] + 1j * head[:, 1]).shape[0]
    if n >= enough or head.shape[0] == b.shape[0]:
        return int(n)
    return int(np.unique(b[:, 0] + 1j * b[:, 1]).shape[0])


def _sort_by_area(anchors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return anchors[np.lexsort((anchors[:, 0], anchors[:, 0] * anchors[:, 1]))]


def anchor_boxes(
    boxes: ArrayLike,
    n_anchors: int = 9,
    *,
    init: Literal["k-means++", "random"] | ArrayLike = "k-means++",
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    sample_size: int | None = 50_000,
    update: Literal["mean", "median"] = "mean",
    evolve: int = 0,
    fitness: Literal["iou", "ratio", "both"] = "both",
    ratio_thr: float = 4.0,
    random_state: SeedLike = None,
    verbose: int = 0,
) -> AnchorResult:
    """Anchor priors for a detector: k-means over box sizes with 1 - IoU distance.

    Parameters
    ----------
    boxes : array-like of shape (n_boxes, 2)
        ``[w, h]`` of the annotated boxes (pixels at the detector's input
        size, or normalised by image size).
    n_anchors : int, default=9
        Number of anchors (clusters).
    init : {"k-means++", "random"} or array of shape (n_anchors, 2), \
default="k-means++"
        "k-means++" draws each next seed with probability proportional to its
        1 - IoU to the nearest chosen one; "random" takes distinct boxes.
    n_init : int, default=10
        k-means restarts; the one with the highest mean IoU is kept.
    max_iter : int, default=300
    tol : float, default=1e-4
        Stop when the summed squared anchor shift is at most ``tol`` times
        the mean variance of the box sizes (0: only when no box changes).
    sample_size : int or None, default=50_000
        With more boxes than this, the ``n_init`` restarts run on a uniform
        sample of this many boxes and only the best one is refined on all
        boxes; None runs every restart on all boxes.
    update : {"mean", "median"}, default="mean"
        "mean" moves each anchor to the mean ``[w, h]`` of its boxes;
        "median" to the coordinate-wise median (robust to a few huge boxes).
    evolve : int, default=0
        Generations of genetic refinement after k-means (0: none); with
        ``fitness="both"``, that many for each of the two figures.
    fitness : {"iou", "ratio", "both"}, default="both"
        What evolution maximises: "iou" the mean IoU; "ratio" Ultralytics'
        ratio-metric fitness; "both" first the ratio fitness, then the mean
        IoU without letting that fitness fall (``evolve`` generations each).
    ratio_thr : float, default=4.0
        Ultralytics' ``anchor_t`` for BPR, AAT and the ratio fitness.
    random_state : int, Generator or None, default=None
    verbose : int, default=0

    Returns
    -------
    AnchorResult

    Notes
    -----
    The k-means runs on clusterlens's shared driver with the 1 - IoU engine
    (:class:`IoUEngine`), O(n_boxes * n_anchors) per iteration, vectorised;
    evolution costs O(n_boxes * n_anchors) per generation. References:
    Redmon & Farhadi, "YOLO9000" (2017) for IoU k-means; Ultralytics
    YOLOv5 ``utils/autoanchor.py`` for BPR, the ratio metric and evolution.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> planted = np.array([[10, 10], [40, 20], [20, 80]], float)
    >>> boxes = planted[rng.integers(3, size=300)] * rng.uniform(0.95, 1.05, (300, 2))
    >>> res = anchor_boxes(boxes, 3, random_state=0)
    >>> np.round(res.anchors / 10).tolist()
    [[1.0, 1.0], [4.0, 2.0], [2.0, 8.0]]
    >>> res.figures["mean_iou"] > 0.9
    True
    """
    owner = "anchor_boxes"
    b = check_boxes(boxes)
    n_anchors = check_int(n_anchors, "n_anchors", owner, low=1)
    n_init = check_int(n_init, "n_init", owner, low=1)
    tol = check_real(tol, "tol", owner, low=0.0)
    sample_size = check_int(sample_size, "sample_size", owner, low=1, allow_none=True)
    evolve = check_int(evolve, "evolve", owner, low=0)
    update = check_options(update, "update", owner, ("mean", "median"))  # type: ignore[assignment]
    fitness = check_options(fitness, "fitness", owner, ("iou", "ratio", "both"))  # type: ignore[assignment]
    ratio_thr = check_real(ratio_thr, "ratio_thr", owner, low=1.0, closed="neither")
    n_distinct = _count_distinct(b, n_anchors)
    if n_anchors > n_distinct:
        raise DataValidationError(
            f"{arg('n_anchors', str(n_anchors))} is larger than the number of "
            "distinct box sizes "
            f"({n_distinct} among {b.shape[0]} boxes). Ask for at most {n_distinct} "
            "anchors, or use more boxes."
        )
    rng = check_random_state(random_state)
    engine = IoUMedianEngine() if update == "median" else IoUEngine()
    t0 = time.perf_counter()
    n_restarts = n_init if isinstance(init, str) else 1
    start: Any = init
    if sample_size is not None and b.shape[0] > sample_size and n_restarts > 1:
        # Restarts on a sample, then one refinement on every box.
        idx = np.sort(rng.choice(b.shape[0], size=sample_size, replace=False))
        pre = kmeans(
            b[idx],
            n_anchors,
            init=init,  # type: ignore[arg-type]
            n_init=n_restarts,
            max_iter=max_iter,
            tol=tol,
            engine=engine,
            random_state=rng,
            verbose=verbose,
        )
        start, n_restarts = pre.centers.astype(np.float64), 1
    res = kmeans(
        b,
        n_anchors,
        init=start,
        n_init=n_restarts,
        max_iter=max_iter,
        tol=tol,
        engine=engine,
        random_state=rng,
        verbose=verbose,
    )
    t_kmeans = time.perf_counter() - t0
    anchors = _sort_by_area(res.centers.astype(np.float64))
    km_best = best_anchor(b, anchors, ratio_thr)
    km_figures = figures_from_best(km_best, ratio_thr)
    curve: list[float] = []
    t1 = time.perf_counter()
    if evolve:
        if fitness == "both":
            # First the ratio fitness, then the mean IoU without letting the
            # fitness fall: ends with at least the ratio-only fitness and a
            # mean IoU raised as far as that allows.
            anchors, c1 = evolve_anchors(
                b,
                anchors,
                maximize="ratio",
                generations=evolve,
                rng=rng,
                ratio_thr=ratio_thr,
                verbose=verbose,
            )
            anchors, c2 = evolve_anchors(
                b,
                anchors,
                maximize="iou",
                keep="ratio",
                generations=evolve,
                rng=rng,
                ratio_thr=ratio_thr,
                verbose=verbose,
            )
            curve = c1 + c2
        else:
            anchors, curve = evolve_anchors(
                b,
                anchors,
                maximize=fitness,
                generations=evolve,
                rng=rng,
                ratio_thr=ratio_thr,
                verbose=verbose,
            )
        anchors = _sort_by_area(anchors)
    t_evolve = time.perf_counter() - t1
    best = best_anchor(b, anchors, ratio_thr) if evolve else km_best
    figures = figures_from_best(best, ratio_thr) if evolve else km_figures
    return AnchorResult(
        anchors=anchors,
        labels=best["label"],
        best_iou=best["iou"],
        figures=figures,
        kmeans_figures=km_figures,
        n_iter=res.n_iter,
        history=res.history,
        evolve_curve=curve,
        seconds={"kmeans": t_kmeans, "evolve": t_evolve},
    )


class AnchorKMeans(ClusterMixin, BaseEstimator):
    """Estimator form of :func:`anchor_boxes` (scikit-learn contract).

    Parameters are those of :func:`anchor_boxes`. ``fit`` takes boxes
    ``(n_boxes, 2)`` as ``[w, h]``; ``predict`` gives each box's best-IoU
    anchor.

    Attributes
    ----------
    anchors_ : ndarray of shape (n_anchors, 2)
        Sorted by area. Also ``cluster_centers_``.
    labels_ : ndarray of shape (n_boxes,)
    mean_iou_, bpr_, fitness_ : float
    figures_ : dict
    history_ : list of dict
    n_features_in_ : int
        Always 2.
    """

    def __init__(
        self,
        n_anchors: int = 9,
        *,
        init: Any = "k-means++",
        n_init: int = 10,
        max_iter: int = 300,
        tol: float = 1e-4,
        sample_size: int | None = 50_000,
        update: str = "mean",
        evolve: int = 0,
        fitness: str = "both",
        ratio_thr: float = 4.0,
        random_state: SeedLike = None,
        verbose: int = 0,
    ) -> None:
        self.n_anchors = n_anchors
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.sample_size = sample_size
        self.update = update
        self.evolve = evolve
        self.fitness = fitness
        self.ratio_thr = ratio_thr
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: ArrayLike, y: Any = None) -> AnchorKMeans:
        """Find anchors for the boxes ``X`` of shape (n_boxes, 2)."""
        res = anchor_boxes(
            X,
            self.n_anchors,
            init=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            sample_size=self.sample_size,
            update=self.update,  # type: ignore[arg-type]
            evolve=self.evolve,
            fitness=self.fitness,  # type: ignore[arg-type]
            ratio_thr=self.ratio_thr,
            random_state=self.random_state,
            verbose=self.verbose,
        )
        self.anchors_ = self.cluster_centers_ = res.anchors
        self.labels_ = res.labels
        self.figures_ = res.figures
        self.mean_iou_ = res.figures["mean_iou"]
        self.bpr_ = res.figures["bpr"]
        self.fitness_ = res.figures["fitness"]
        self.history_ = res.history
        self.n_features_in_ = 2
        return self

    def predict(self, X: ArrayLike) -> npt.NDArray[np.int64]:
        """Index of the best-IoU anchor of each box."""
        if not hasattr(self, "anchors_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' "
                "with appropriate arguments before using this estimator."
            )
        b = check_boxes(X)
        return best_anchor(b, self.anchors_, self.ratio_thr)["label"]
