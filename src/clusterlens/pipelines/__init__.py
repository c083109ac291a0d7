"""End-to-end runs that write an output folder: compute, evaluate, report.

Pipelines sit above ``report`` in the dependency order (``cli -> pipelines ->
report -> {cluster, anchors, ...}``): they call one library function per
stage and write the shared outputs (``run.json``, Parquet, ``report.html``).
"""

from __future__ import annotations

from clusterlens.pipelines.anchors import run_anchors
from clusterlens.pipelines.demo import run_demo
from clusterlens.pipelines.kmeans import run_kmeans
from clusterlens.pipelines.vocab import run_vocab

__all__ = ["run_anchors", "run_demo", "run_kmeans", "run_vocab"]
