"""Anchor boxes for detectors: k-means under 1 - IoU, figures and exports."""

from __future__ import annotations

from clusterlens.anchors._iou import IoUEngine, IoUMedianEngine, iou_wh, ratio_metric
from clusterlens.anchors._kmeans import AnchorKMeans, AnchorResult, anchor_boxes
from clusterlens.anchors._metrics import evaluate_anchors, group_mean
from clusterlens.io._anchors import (
    anchors_json,
    format_darknet_cfg,
    format_yolov5_yaml,
    parse_anchors,
    split_levels,
)

__all__ = [
    "AnchorKMeans",
    "AnchorResult",
    "IoUEngine",
    "IoUMedianEngine",
    "anchor_boxes",
    "anchors_json",
    "evaluate_anchors",
    "format_darknet_cfg",
    "format_yolov5_yaml",
    "group_mean",
    "iou_wh",
    "parse_anchors",
    "ratio_metric",
    "split_levels",
]
