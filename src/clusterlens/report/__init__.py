"""HTML reports: self-contained pages a person opens to look at a clustering."""

from __future__ import annotations

from clusterlens.report._anchors import build_anchor_report
from clusterlens.report._clusters import build_cluster_report
from clusterlens.report._explore import build_explore_report

__all__ = ["build_anchor_report", "build_cluster_report", "build_explore_report"]
