"""Label-issue detection: rank samples by how likely their label is wrong."""

from __future__ import annotations

from clusterlens.label_issues._confident import (
    confident_joint,
    confident_thresholds,
    estimate_issue_counts,
    normalized_margin,
    self_confidence,
)
from clusterlens.label_issues._coreset import class_leverage, coreset_importance
from clusterlens.label_issues._find import (
    SCORE_COLUMNS,
    LabelIssues,
    combine_scores,
    find_label_issues,
    most_confused_class,
    prior_corrected,
    rank_label_issues,
)
from clusterlens.label_issues._logreg import cross_val_pred_probs
from clusterlens.label_issues._reduce import streaming_pca

__all__ = [
    "SCORE_COLUMNS",
    "LabelIssues",
    "class_leverage",
    "combine_scores",
    "confident_joint",
    "confident_thresholds",
    "coreset_importance",
    "cross_val_pred_probs",
    "estimate_issue_counts",
    "find_label_issues",
    "most_confused_class",
    "normalized_margin",
    "prior_corrected",
    "rank_label_issues",
    "self_confidence",
    "streaming_pca",
]
