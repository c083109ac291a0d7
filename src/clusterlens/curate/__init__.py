"""Curation views of an image collection: image-quality issues (issue #18)."""

from __future__ import annotations

from clusterlens.curate._quality import (
    DEFAULT_THRESHOLDS,
    ISSUE_TYPES,
    PROPERTY_NAMES,
    QualityResult,
    image_properties,
    properties_table,
    quality_issues,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ISSUE_TYPES",
    "PROPERTY_NAMES",
    "QualityResult",
    "image_properties",
    "properties_table",
    "quality_issues",
]
