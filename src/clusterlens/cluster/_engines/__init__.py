"""Engines: assignment and per-cluster sums for the k-means driver."""

from __future__ import annotations

from clusterlens.cluster._engines._base import ENGINES, Engine, get_engine

# Registration order is the "auto" preference order: fastest measured first.
from clusterlens.cluster._engines._numpy import NumpyEngine  # isort: skip
from clusterlens.cluster._engines._faiss import FaissEngine  # isort: skip

__all__ = ["ENGINES", "Engine", "FaissEngine", "NumpyEngine", "get_engine"]
