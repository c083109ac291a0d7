"""Metrics for evaluating clusterings against known labels."""

from __future__ import annotations

from clusterlens.metrics._clustering import (
    adjusted_rand,
    cluster_summary,
    clustering_accuracy,
    contingency_matrix,
    evaluate_clustering,
    normalized_mutual_info,
    purity,
)
from clusterlens.metrics._segmentation import (
    CAMVID_CLASSES,
    CLASS_PRESETS,
    ClassTable,
    SegmentationConfusion,
    confusion_shares,
    majority_accuracy,
    parse_class_table,
    segmentation_scores,
)

__all__ = [
    "CAMVID_CLASSES",
    "CLASS_PRESETS",
    "ClassTable",
    "SegmentationConfusion",
    "adjusted_rand",
    "cluster_summary",
    "clustering_accuracy",
    "confusion_shares",
    "contingency_matrix",
    "evaluate_clustering",
    "majority_accuracy",
    "normalized_mutual_info",
    "parse_class_table",
    "purity",
    "segmentation_scores",
]
