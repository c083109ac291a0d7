"""Baselines for the anchor-box benchmark: the seed notebook, YOLOv5, published anchors.

numpy/scipy only (torch, torchvision and ultralytics are not importable beside
clusterlens here). Everything takes box sizes ``wh`` of shape (n_boxes, 2) as
``[w, h]`` in pixels of the letterboxed network input, and returns anchors of
shape (k, 2) in the same units.

- :func:`notebook_kmeans_iou` is the seed notebook's ``kmeans_iou``
  (/work/shared/seeds/000_963abc047945d906.txt, itself from
  https://gist.github.com/WillieMaddox/3b1159baecb809b5fcb3a6154bc3cb0b).
- :func:`ultralytics_kmean_anchors` ports ``utils/autoanchor.py::kmean_anchors``
  of https://github.com/ultralytics/yolov5 (read at commit 5081342f04fb).
- :func:`metrics` computes every figure the benchmark prints, for every method.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

# YOLOv3 (COCO): the 9 anchors of darknet's cfg/yolov3.cfg, `[yolo]` layers,
# ``anchors = 10,13,  16,30,  33,23,  30,61,  62,45,  59,119,  116,90,  156,198,
# 373,326`` (https://github.com/pjreddie/darknet/blob/master/cfg/yolov3.cfg,
# checked against that file). darknet's yolo layer divides them by the network
# input width, so they are pixels of the network input: the cfg trains at 416 or
# 608 (the same numbers for both), and YOLOv5 reuses them unchanged at 640
# (models/yolov5s.yaml, P3/8 P4/16 P5/32).
YOLOV3_COCO_ANCHORS = np.array(
    [
        [10, 13],
        [16, 30],
        [33, 23],
        [30, 61],
        [62, 45],
        [59, 119],
        [116, 90],
        [156, 198],
        [373, 326],
    ],
    dtype=np.float64,
)

# YOLOv2 (VOC): the 5 anchors of darknet's cfg/yolo-voc.cfg, `[region]` layer,
# ``anchors = 1.3221, 1.73145, 3.19275, 4.00944, 5.05587, 8.09892, 9.47112,
# 4.84053, 11.2364, 10.0071`` (https://github.com/pjreddie/darknet/blob/master/
# cfg/yolo-voc.cfg, checked against that file; width=height=416). The region
# layer divides them by the grid size (13 at 416), so they are in grid cells:
# times the stride 32 gives pixels of a 416 input.
YOLOV2_VOC_GRID = np.array(
    [
        [1.3221, 1.73145],
        [3.19275, 4.00944],
        [5.05587, 8.09892],
        [9.47112, 4.84053],
        [11.2364, 10.0071],
    ],
    dtype=np.float64,
)
YOLOV2_STRIDE = 32
YOLOV2_VOC_ANCHORS = YOLOV2_VOC_GRID * YOLOV2_STRIDE

# Rows per chunk in metrics(): 2**16 rows x 9 anchors x 2 sides x 8 bytes is
# 9.4 MB per (rows, k, 2) float64 temporary; a handful of them stay < 100 MB.
_METRIC_CHUNK_ROWS = 2**16


def _area(x: np.ndarray) -> np.ndarray:
    """The notebook's ``area``: w * h of one box or of each row."""
    if len(x.shape) == 1:
        return x[0] * x[1]
    return x[:, 0] * x[:, 1]


def notebook_kmeans_iou(
    wh: np.ndarray, k: int, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """The seed notebook's k-means with the 1 - IoU distance, without its prints.

    Faithful to ``kmeans_iou`` of the notebook: initial centroids are ``k``
    distinct boxes drawn uniformly without replacement (the notebook's
    ``np.random.choice(np.arange(n), k, replace=False)``, here from a local
    ``Generator``); each iteration builds the full (k, n, 2) array of
    element-wise minima to get the intersections, assigns each box to the
    centroid of least 1 - IoU, records the clusters of the iteration with the
    best average IoU, and moves each centroid to the mean of its cluster. It
    stops when the centroids do not move (the sum of the 1 - IoU shifts is 0)
    or 25 iterations after the best average IoU. The anchors are the means of
    the best iteration's clusters, sorted by width as the notebook does.

    An empty cluster gives a NaN centroid, as in the notebook (its warnings
    are silenced here); the best-iteration bookkeeping usually hides it.

    Parameters
    ----------
    wh : ndarray of shape (n_boxes, 2)
        Box sizes ``[w, h]``.
    k : int
        Number of anchors.
    seed : int or numpy.random.Generator, default=0
        Seed of the initial centroids.

    Returns
    -------
    anchors : ndarray of shape (k, 2)
        Sorted by width.
    """
    rng = np.random.default_rng(seed)
    points = np.asarray(wh, dtype=np.float64)
    centroids = points[rng.choice(np.arange(len(points)), k, replace=False)]
    iter_count, iteration_cutoff = 0, 25

    best_clusters: list[np.ndarray] = []
    best_avg_iou = 0.0
    best_avg_iou_iteration = 0

    npoi = points.shape[0]
    area_p = _area(points)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of an empty cluster
        while True:
            cen2 = centroids.repeat(npoi, axis=0).reshape(k, npoi, 2)
            cdiff = points - cen2
            cidx = np.where(cdiff < 0)
            cen2[cidx] = points[cidx[1], cidx[2]]

            inter = cen2.prod(axis=2).T  # (k, npoi, 2) -> (npoi, k)
            dist = 1.0 - (inter / (area_p[:, np.newaxis] + _area(centroids) - inter))
            belongs_to_cluster = np.argmin(dist, axis=1)
            clusters_niou = np.min(dist, axis=1)
            clusters = [points[belongs_to_cluster == i] for i in range(k)]
            avg_iou = np.mean(1.0 - clusters_niou)
            if avg_iou > best_avg_iou:
                best_avg_iou = avg_iou
                best_clusters = clusters
                best_avg_iou_iteration = iter_count

            new_centroids = np.array([np.mean(c, axis=0) for c in clusters])
            isect = np.prod(
                np.min(np.asarray([centroids, new_centroids]), axis=0), axis=1
            )
            aa1 = np.prod(centroids, axis=1)
            aa2 = np.prod(new_centroids, axis=1)
            shifts = 1 - isect / (aa1 + aa2 - isect)

            if (
                sum(shifts) == 0
                or iter_count >= best_avg_iou_iteration + iteration_cutoff
            ):
                break

            centroids = new_centroids
            iter_count += 1

        anchors = np.asarray([np.mean(cluster, axis=0) for cluster in best_clusters])
    return anchors[anchors[:, 0].argsort()]


def _ratio_metric(k: np.ndarray, wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ultralytics' ``metric(k, wh)``: per-pair ratio metric and best per box."""
    r = wh[:, None] / k[None]
    x = np.minimum(r, 1 / r).min(2)  # ratio metric
    return x, x.max(1)  # x, best_x


def _scipy_kmeans(obs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``scipy.cluster.vq.kmeans(obs, n, iter=30)[0]`` drawing from ``rng``."""
    from scipy.cluster.vq import kmeans

    params = inspect.signature(kmeans).parameters
    kw = {"rng": rng} if "rng" in params else {"seed": rng}
    return kmeans(obs, n, iter=30, **kw)[0]


def ultralytics_kmean_anchors(
    wh0: np.ndarray,
    n: int = 9,
    img_size: int = 640,
    thr: float = 4.0,
    gen: int = 1000,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """numpy port of YOLOv5's ``utils/autoanchor.py::kmean_anchors``.

    The same steps as Ultralytics: keep the boxes with a side of at least 2
    pixels, whiten by the per-axis standard deviation, run
    ``scipy.cluster.vq.kmeans(wh / s, n, iter=30)`` (falling back to a random
    init when it cannot return ``n`` centroids), sort by area, then evolve
    for ``gen`` generations: multiply by a mutation ``v`` (probability 0.9,
    sigma 0.1, a random global scale, clipped to [0.3, 3.0]), clip the anchors
    to at least 2.0 pixels, and keep the mutant when its fitness
    ``mean(best * (best > 1/thr))`` of the ratio metric is higher. The fitness
    is evaluated in float32 over all kept boxes at once, as the torch original.

    Differences from the original: numpy instead of torch (this times the
    numpy port, not torch); no logging or progress bar; every random draw
    (scipy's kmeans init, ``np.random`` and Python's ``random.random()`` in the
    mutation, the random-init fallback) comes from one local
    ``numpy.random.Generator`` seeded by ``seed`` instead of the global RNGs,
    in the original's order. Like the original it takes ``wh0`` already in
    pixels at ``img_size`` (each image letterboxed so its long side is
    ``img_size``); ``img_size`` only scales the random-init fallback.

    Parameters
    ----------
    wh0 : ndarray of shape (n_boxes, 2)
        Box sizes ``[w, h]`` in pixels of the letterboxed input.
    n : int, default=9
        Number of anchors.
    img_size : int, default=640
        Training image size.
    thr : float, default=4.0
        Anchor-label ratio threshold (``hyp['anchor_t']``).
    gen : int, default=1000
        Generations of the genetic evolution.
    seed : int or numpy.random.Generator, default=0
        Seed of every random draw.

    Returns
    -------
    anchors : ndarray of shape (n, 2), float32
        Sorted by area, small to large.
    """
    rng = np.random.default_rng(seed)
    thr = 1 / thr
    wh0 = np.asarray(wh0)

    def anchor_fitness(k: np.ndarray) -> np.float32:
        _, best = _ratio_metric(k.astype(np.float32), wh)
        return (best * (best > thr).astype(np.float32)).mean()

    # Filter
    wh = wh0[(wh0 >= 2.0).any(1)].astype(np.float32)  # filter > 2 pixels

    # Kmeans init (the original's `try: assert ...; except Exception:` fallback)
    k = None
    if n <= len(wh):
        s = wh.std(0)  # sigmas for whitening
        try:
            k = _scipy_kmeans(wh / s, n, rng) * s
        except ValueError:  # scipy refuses degenerate input
            k = None
        if k is not None and len(k) != n:  # kmeans may return fewer points
            k = None
    if k is None:
        k = np.sort(rng.random(n * 2)).reshape(n, 2) * img_size  # random init
    k = k[np.argsort(k.prod(1))]  # print_results(k): sort small to large

    # Evolve
    f, sh, mp, s = anchor_fitness(k), k.shape, 0.9, 0.1
    for _ in range(gen):
        v = np.ones(sh)
        while (v == 1).all():  # mutate until a change occurs (prevent duplicates)
            v = (
                (rng.random(sh) < mp) * rng.random() * rng.standard_normal(sh) * s + 1
            ).clip(0.3, 3.0)
        kg = (k.copy() * v).clip(min=2.0)
        fg = anchor_fitness(kg)
        if fg > f:
            f, k = fg, kg.copy()

    return k[np.argsort(k.prod(1))].astype(np.float32)


def metrics(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> dict:
    """Anchor quality of ``anchors`` on boxes ``wh``, chunked over boxes.

    - ``mean_iou``: mean over boxes of the IoU with the best anchor, boxes and
      anchors sharing a centre (intersection ``min(w) * min(h)``);
    - ``bpr``: best possible recall, the fraction of boxes whose best
      Ultralytics ratio metric ``min(w/wa, wa/w, h/ha, ha/h)`` exceeds 1/thr;
    - ``aat``: anchors above threshold, the mean over boxes of the number of
      anchors whose ratio metric exceeds 1/thr;
    - ``fitness``: Ultralytics' ``mean(best * (best > 1/thr))``.

    Computed in float64 over chunks of 2**16 boxes, so a (chunk, k, 2)
    temporary stays near 10 MB for k = 9.

    Parameters
    ----------
    wh : ndarray of shape (n_boxes, 2)
        Box sizes ``[w, h]``.
    anchors : ndarray of shape (k, 2)
        Anchor sizes ``[w, h]`` in the same units.
    thr : float, default=4.0
        Ratio threshold.

    Returns
    -------
    dict
        ``mean_iou``, ``bpr``, ``aat`` and ``fitness`` as Python floats.
    """
    wh = np.asarray(wh, dtype=np.float64)
    a = np.asarray(anchors, dtype=np.float64)
    t = 1.0 / thr
    n = len(wh)
    sums = np.zeros(4)
    a_area = a[:, 0] * a[:, 1]
    for s in range(0, n, _METRIC_CHUNK_ROWS):
        c = wh[s : s + _METRIC_CHUNK_ROWS]
        inter = np.minimum(c[:, None, 0], a[None, :, 0]) * np.minimum(
            c[:, None, 1], a[None, :, 1]
        )
        iou = inter / (c[:, 0, None] * c[:, 1, None] + a_area[None] - inter)
        r = c[:, None, :] / a[None, :, :]
        x = np.minimum(r, 1.0 / r).min(2)
        best = x.max(1)
        sums += (
            iou.max(1).sum(),
            (best > t).sum(),
            (x > t).sum(),
            (best * (best > t)).sum(),
        )
    mean_iou, bpr, aat, fitness = (sums / n).tolist()
    return {"mean_iou": mean_iou, "bpr": bpr, "aat": aat, "fitness": fitness}


def synthetic_boxes(
    wh: np.ndarray,
    n_total: int,
    seed: int | np.random.Generator = 0,
    sigma: float = 0.05,
) -> np.ndarray:
    """``n_total`` boxes: copies of ``wh`` with multiplicative log-normal jitter.

    The real boxes are tiled (each appears ``n_total // len(wh)`` or one more
    times) and each side of each copy is multiplied by ``exp(sigma * z)``,
    ``z ~ N(0, 1)``, so every box stays positive and the size distribution
    keeps the real one's shape. 860,000 is the size of COCO 2017 train + val.

    Parameters
    ----------
    wh : ndarray of shape (n_boxes, 2)
        Positive box sizes ``[w, h]``.
    n_total : int
        Number of boxes to return.
    seed : int or numpy.random.Generator, default=0
        Seed of the jitter.
    sigma : float, default=0.05
        Standard deviation of the log of the jitter.

    Returns
    -------
    wh_big : ndarray of shape (n_total, 2), float64
    """
    rng = np.random.default_rng(seed)
    wh = np.asarray(wh, dtype=np.float64)
    idx = np.resize(np.arange(len(wh)), n_total)
    return wh[idx] * np.exp(sigma * rng.standard_normal((n_total, 2)))
