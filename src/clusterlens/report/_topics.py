"""Reports of a workspace clustering (k-means or LDA topics) with thumbnails."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.curate._previews import PREVIEW_SIDE, load_previews
from clusterlens.io._workspace import Workspace
from clusterlens.report._clusters import build_cluster_report

__all__ = ["build_workspace_report", "shown_items"]

logger = logging.getLogger(__name__)


def shown_items(
    labels_pred: npt.NDArray[np.int64],
    distances: npt.NDArray[Any] | None,
    max_thumbnails: int,
) -> npt.NDArray[np.int64]:
    """Items the report shows: the first ``max_thumbnails`` per cluster.

    Uses the report's order (closest to the centre first, then item order).
    """
    n = labels_pred.shape[0]
    _, inverse = np.unique(labels_pred, return_inverse=True)
    inverse = inverse.reshape(-1)
    key = distances if distances is not None else np.arange(n)
    order = np.lexsort((key, inverse))
    grouped = inverse[order]
    starts = np.searchsorted(grouped, grouped, side="left")
    rank = np.arange(n) - starts
    return np.sort(order[rank < max_thumbnails]).astype(np.int64)


def build_workspace_report(
    ws: Workspace,
    path: str | os.PathLike[str],
    *,
    labels_pred: npt.ArrayLike,
    distances: npt.ArrayLike | None = None,
    figures: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    title: str = "clusterlens report",
    max_thumbnails: int = 24,
    thumb_size: int = 64,
    n_jobs: int = 2,
    notes: Mapping[int, str] | None = None,
) -> Path:
    """A report with one card per cluster (or topic) and a grid of its images.

    Only the thumbnails that are shown are decoded (the first
    ``max_thumbnails`` of each cluster, closest first), resized to
    ``thumb_size`` square; the card shows size, majority label and purity
    when the workspace has labels, and ``notes[c]`` (a topic's top words).
    """
    pred = np.asarray(labels_pred, dtype=np.int64)
    dist = None if distances is None else np.asarray(distances, dtype=np.float64)
    idx = shown_items(pred, dist, max_thumbnails)
    thumbs = np.zeros((pred.shape[0], thumb_size, thumb_size, 3), dtype=np.uint8)
    square = (thumb_size, thumb_size)
    pv = load_previews(ws) if thumb_size <= PREVIEW_SIDE else None
    if pv is not None:
        # the scan's previews, where it could read the item (no decoding)
        from PIL import Image

        have = pv[1][idx, 0] > 0
        for i in np.asarray(idx)[have]:
            pw, ph = (int(v) for v in pv[1][i])
            small = Image.fromarray(np.ascontiguousarray(pv[0][i, :ph, :pw]))
            thumbs[i] = np.asarray(small.resize(square, Image.Resampling.BILINEAR))
        idx = np.asarray(idx)[~have]
    for i, img in ws.iter_items(
        idx, mode="RGB", size=square, min_size=square, n_jobs=n_jobs
    ):
        if img is not None:
            thumbs[i] = img
    labels = ws.labels
    names = ws.class_names
    true: Any = None
    if labels is not None and names:
        true = np.array(
            [names[x] if x >= 0 else "(unlabelled)" for x in labels], dtype=object
        )
    return build_cluster_report(
        path,
        labels_pred=pred,
        images=thumbs,
        labels_true=true,
        distances=dist,
        figures=figures,
        params=params,
        title=title,
        max_thumbnails=max_thumbnails,
        thumb_size=thumb_size,
        notes=notes,
    )
