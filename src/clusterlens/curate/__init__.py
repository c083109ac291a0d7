"""Curation views of a collection: duplicates, outliers, a 2-D map, search, a sample."""

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
from clusterlens.curate._sample import CoverageSample, select_sample

__all__ = [
    "DEFAULT_NEAR_THRESHOLD",
    "DEFAULT_OUTLIER_Z",
    "EXACT_INDEX_MAX",
    "CoverageSample",
    "DuplicateGroups",
    "Map2D",
    "OutlierScores",
    "SimilarityIndex",
    "embed_2d",
    "find_duplicates",
    "outlier_scores",
    "select_sample",
]
