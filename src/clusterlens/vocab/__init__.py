"""Visual vocabularies: k-means words over local descriptors, and quantization."""

from __future__ import annotations

from clusterlens.vocab._bow import (
    bow_counts,
    idf_weights,
    spatial_cells,
    tfidf_transform,
)
from clusterlens.vocab._vocabulary import VisualVocabulary

__all__ = [
    "VisualVocabulary",
    "bow_counts",
    "idf_weights",
    "spatial_cells",
    "tfidf_transform",
]
