"""Clustering engine: one Lloyd loop per mode over pluggable engines and backends."""

from __future__ import annotations

from clusterlens.cluster._backend import (
    Backend,
    ExactPass,
    ExactPasses,
    FarthestRows,
    FarthestStored,
    LargeKPasses,
    LargePass,
    Session,
    get_backend,
    register_backend,
)
from clusterlens.cluster._engines import Engine, FaissEngine, NumpyEngine, get_engine
from clusterlens.cluster._init import kmeans_plusplus
from clusterlens.cluster._kmeans import KMeans, KMeansResult, kmeans

__all__ = [
    "Backend",
    "Engine",
    "ExactPass",
    "ExactPasses",
    "FaissEngine",
    "FarthestRows",
    "FarthestStored",
    "KMeans",
    "KMeansResult",
    "LargeKPasses",
    "LargePass",
    "NumpyEngine",
    "Session",
    "get_backend",
    "get_engine",
    "kmeans",
    "kmeans_plusplus",
    "register_backend",
]
