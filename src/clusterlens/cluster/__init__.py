"""Clustering engine: exact k-means with pluggable engines, one shared driver."""

from __future__ import annotations

from clusterlens.cluster._engines import Engine, FaissEngine, NumpyEngine, get_engine
from clusterlens.cluster._init import kmeans_plusplus
from clusterlens.cluster._kmeans import KMeans, KMeansResult, kmeans

__all__ = [
    "Engine",
    "FaissEngine",
    "KMeans",
    "KMeansResult",
    "NumpyEngine",
    "get_engine",
    "kmeans",
    "kmeans_plusplus",
]
