"""HTML reports: self-contained pages a person opens to look at a clustering."""

from __future__ import annotations

from clusterlens.report._clusters import build_cluster_report

__all__ = ["build_cluster_report"]
