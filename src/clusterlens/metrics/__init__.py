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

__all__ = [
    "adjusted_rand",
    "cluster_summary",
    "clustering_accuracy",
    "contingency_matrix",
    "evaluate_clustering",
    "normalized_mutual_info",
    "purity",
]
