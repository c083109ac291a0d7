"""End-to-end runs that write an output folder: compute, evaluate, report.

Pipelines sit above ``report`` in the dependency order (``cli -> pipelines ->
report -> {cluster, anchors, ...}``): they call one library function per
stage and write the shared outputs (``run.json``, Parquet, ``report.html``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["run_anchors", "run_demo", "run_kmeans", "run_vocab"]

# Loaded on first use: importing one pipeline (``explore``'s) must not load
# every other one and what they import (scikit-learn through the anchors:
# a second of every command's start).
_LAZY = {
    "run_anchors": "clusterlens.pipelines.anchors",
    "run_demo": "clusterlens.pipelines.demo",
    "run_kmeans": "clusterlens.pipelines.kmeans",
    "run_vocab": "clusterlens.pipelines.vocab",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
