"""Curation views of a collection: duplicates, outliers, image quality, a 2-D map,
search by example and a sample that covers it."""

from __future__ import annotations

from clusterlens.curate._duplicates import (
    DEFAULT_NEAR_THRESHOLD,
    DuplicateGroups,
    find_duplicates,
)
from clusterlens.curate._index import EXACT_INDEX_MAX, SimilarityIndex
from clusterlens.curate._map import Map2D, embed_2d
from clusterlens.curate._outliers import (
    DEFAULT_OUTLIER_Z,
    OutlierScores,
    outlier_scores,
)
from clusterlens.curate._quality import (
    DEFAULT_THRESHOLDS,
    ISSUE_TYPES,
    PROPERTY_NAMES,
    QualityResult,
    image_properties,
    properties_table,
    quality_issues,
)
from clusterlens.curate._sample import CoverageSample, select_sample

__all__ = [
    "DEFAULT_NEAR_THRESHOLD",
    "DEFAULT_OUTLIER_Z",
    "DEFAULT_THRESHOLDS",
    "EXACT_INDEX_MAX",
    "ISSUE_TYPES",
    "PROPERTY_NAMES",
    "CoverageSample",
    "DuplicateGroups",
    "Map2D",
    "OutlierScores",
    "QualityResult",
    "SimilarityIndex",
    "embed_2d",
    "find_duplicates",
    "image_properties",
    "outlier_scores",
    "properties_table",
    "quality_issues",
    "select_sample",
]
