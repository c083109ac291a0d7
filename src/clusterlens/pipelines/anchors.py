"""``clusterlens anchors`` as a library call: boxes in, anchors and figures out."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.anchors import (
    anchor_boxes,
    anchors_json,
    format_darknet_cfg,
    format_yolov5_yaml,
    group_mean,
    split_levels,
)
from clusterlens.anchors._metrics import best_anchor, check_boxes, figures_from_best
from clusterlens.exceptions import DataValidationError
from clusterlens.io import write_results, write_run
from clusterlens.io._boxes import BoxTable, describe_dropped
from clusterlens.report import build_anchor_report
from clusterlens.utils._fs import atomic_write_text

__all__ = ["SIZE_BUCKETS", "run_anchors"]

logger = logging.getLogger(__name__)

#: COCO's size buckets, by box area in pixels of the original image.
SIZE_BUCKETS = (
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, np.inf),
)


def _size_bucket(area: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    edges = np.array([lo for _, lo, _ in SIZE_BUCKETS[1:]])
    return np.searchsorted(edges, area, side="right").astype(np.int64)


def _pretty(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Column names a person reads in the report."""
    return {
        k: {"boxes": v["boxes"], "mean IoU": v["mean_iou"]} for k, v in table.items()
    }


def run_anchors(
    table: BoxTable,
    out_dir: str | os.PathLike[str],
    *,
    n_anchors: int = 9,
    img_size: int = 640,
    normalized: bool = False,
    levels: int = 3,
    n_init: int = 10,
    update: str = "mean",
    evolve: int = 0,
    fitness: str = "both",
    ratio_thr: float = 4.0,
    evaluate: npt.NDArray[np.float64] | None = None,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Find (or evaluate) anchors for ``table`` and write every output to ``out_dir``.

    Parameters
    ----------
    table : BoxTable
        The annotated boxes.
    out_dir : path
        Existing, empty folder: ``anchors.json``, ``anchors.cfg`` (darknet
        line), ``anchors.yaml`` (YOLOv5/v8 block), ``boxes.parquet``,
        ``report.html`` and ``run.json``.
    n_anchors, n_init, update, evolve, fitness, ratio_thr, random_state, verbose
        As in :func:`clusterlens.anchors.anchor_boxes`.
    img_size : int, default=640
        The detector's input size. Boxes are taken in pixels at this size
        with letterbox scaling (each image scaled so its long side is
        ``img_size``), as Ultralytics does; with ``normalized`` they are
        ``w / image width, h / image height`` (the notebook's convention) and
        the anchors are multiplied by ``img_size`` for the cfg and yaml.
    levels : int, default=3
        Detection levels the anchors are split over (by area).
    evaluate : ndarray of shape (k, 2), default=None
        Anchors in pixels at ``img_size`` to evaluate instead of fitting.

    Returns
    -------
    summary : dict
        Anchors (pixels at ``img_size``), figures, timings.
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    wh = table.normalized_wh() if normalized else table.letterboxed_wh(img_size)
    scale = float(img_size) if normalized else 1.0
    unit = (
        f"fraction of the image (x {img_size} for pixels)"
        if normalized
        else (f"pixels at a {img_size} px letterboxed input")
    )
    n_iter = 0
    history: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    if evaluate is not None:
        anchors = check_boxes(evaluate, "anchors") / scale
        order = np.lexsort((anchors[:, 0], anchors[:, 0] * anchors[:, 1]))
        anchors = anchors[order]
        best = best_anchor(wh, anchors, ratio_thr)
        figures = figures_from_best(best, ratio_thr)
        km_figures: dict[str, float] = {}
    else:
        res = anchor_boxes(
            wh,
            n_anchors,
            n_init=n_init,
            update=update,  # type: ignore[arg-type]
            evolve=evolve,
            fitness=fitness,  # type: ignore[arg-type]
            ratio_thr=ratio_thr,
            random_state=random_state,
            verbose=verbose,
        )
        anchors, figures, km_figures = res.anchors, res.figures, res.kmeans_figures
        best = {"label": res.labels, "iou": res.best_iou}
        n_iter, history, seconds = res.n_iter, res.history, res.seconds
    if levels > len(anchors):
        raise DataValidationError(
            f"--levels {levels} is more than the number of anchors ({len(anchors)})."
        )
    per_category = group_mean(best["iou"], table.category, table.category_names)
    bucket = _size_bucket(table.w * table.h)
    per_size = group_mean(best["iou"], bucket, [name for name, _, _ in SIZE_BUCKETS])
    anchors_px = anchors * scale
    figures_out = {**figures, "seconds": time.perf_counter() - t0}

    atomic_write_text(out / "anchors.cfg", format_darknet_cfg(anchors_px) + "\n")
    atomic_write_text(
        out / "anchors.yaml", format_yolov5_yaml(anchors_px, levels) + "\n"
    )
    body = anchors_json(
        anchors_px,
        scale=f"pixels at a {img_size} px input",
        img_size=img_size,
        levels=levels,
        figures=figures,
    )
    if normalized:
        body["anchors_normalized"] = np.round(anchors, 6).tolist()
    import json

    atomic_write_text(out / "anchors.json", json.dumps(body, indent=2) + "\n")
    write_results(
        out / "boxes.parquet",
        {
            "index": np.arange(len(table), dtype=np.int64),
            "item_id": table.image_id.astype(str),
            "label": np.asarray(table.category_names, dtype=object)[
                table.category
            ].astype(str),
            "cluster": best["label"],
            "iou": best["iou"],
            "w": wh[:, 0],
            "h": wh[:, 1],
        },
    )
    params = {
        "n_anchors": len(anchors),
        "img_size": img_size,
        "normalized": normalized,
        "levels": levels,
        "n_init": n_init,
        "update": update,
        "evolve": evolve,
        "fitness": fitness,
        "ratio_thr": ratio_thr,
        "evaluate": evaluate is not None,
        "seed": random_state,
    }
    build_anchor_report(
        out / "report.html",
        boxes_wh=wh * scale,
        labels=best["label"],
        anchors=anchors_px,
        box_iou=best["iou"],
        figures={
            "boxes": len(table),
            "mean IoU": figures["mean_iou"],
            f"BPR (ratio thr {ratio_thr:g})": figures["bpr"],
            "anchors above thr per box": figures["aat"],
            "fitness": figures["fitness"],
            **(
                {"k-means mean IoU (before evolve)": km_figures["mean_iou"]}
                if evolve
                else {}
            ),
            "seconds": figures_out["seconds"],
        },
        per_category=_pretty(per_category),
        per_size=_pretty(per_size),
        params=params,
        units=f"pixels at {img_size}",
        title=f"clusterlens anchors: {len(anchors)} anchors, {table.source or 'boxes'}",
    )
    summary = {
        "anchors": np.round(anchors_px, 2).tolist(),
        "units": f"pixels at a {img_size} px input",
        "fit_units": unit,
        "figures": figures,
        "kmeans_figures": km_figures,
        "per_category": per_category,
        "per_size": per_size,
        "darknet_cfg": format_darknet_cfg(anchors_px),
        "yolov5_yaml": format_yolov5_yaml(anchors_px, levels),
        "levels": [np.round(lv, 2).tolist() for lv in split_levels(anchors_px, levels)],
        "n_boxes": len(table),
        # boxes the reader clipped to their image / dropped outside it
        "n_clipped": table.n_clipped,
        "n_outside": table.n_outside,
        "box_filter": {
            "n_read": table.n_read if table.n_read >= 0 else len(table),
            "dropped": [
                {"filter": k, "count": c, "reason": r} for k, c, r in table.dropped
            ],
            "summary": describe_dropped(
                table.n_read if table.n_read >= 0 else len(table),
                len(table),
                table.dropped,
            ),
        },
        "n_iter": n_iter,
    }
    write_run(
        out,
        schema="clusterlens.anchors/1",
        command="anchors",
        invocation=command,
        source=table.source,
        parameters=params,
        seed=random_state,
        timings={**seconds, "total_seconds": time.perf_counter() - t0},
        results=summary,
        history=history,
        outputs=[
            "anchors.json",
            "anchors.cfg",
            "anchors.yaml",
            "boxes.parquet",
            "report.html",
            "run.json",
        ],
    )
    return summary
