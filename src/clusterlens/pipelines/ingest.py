"""``clusterlens ingest`` as a library call: an image source in, a workspace out."""

from __future__ import annotations

import os
from typing import Any

from clusterlens.io._boxes import MIN_BOX_SIZE
from clusterlens.io._workspace import create_workspace

__all__ = ["run_ingest"]


def run_ingest(
    source: str | os.PathLike[str],
    stage: str | os.PathLike[str],
    *,
    boxes: bool = False,
    images: str | os.PathLike[str] | None = None,
    split: str | None = None,
    min_box_size: float = MIN_BOX_SIZE,
    min_class_count: int = 1,
    include_crowd: bool = False,
    class_names: list[str] | None = None,
    n_jobs: int = 2,
    verbose: int = 0,
) -> dict[str, Any]:
    """Create a workspace in ``stage`` (see ``clusterlens.io._workspace``)."""
    ws = create_workspace(
        source,
        stage,
        boxes=boxes,
        images=images,
        split=split,
        min_box_size=min_box_size,
        min_class_count=min_class_count,
        include_crowd=include_crowd,
        class_names=class_names,
        n_jobs=n_jobs,
        verbose=verbose,
    )
    meta = ws.meta
    secs = float(meta["seconds"])
    extra = {"box_filter": meta["box_filter"]} if "box_filter" in meta else {}
    return {
        "n_items": meta["n_items"],
        "kind": meta["kind"],
        "n_classes": len(meta["class_names"] or []),
        "n_labelled": meta["n_labelled"],
        "n_skipped": meta["n_skipped"],
        "n_skipped_output_folders": meta.get("n_skipped_output_folders", 0),
        "n_clipped": int(meta.get("n_clipped", 0)),
        "n_outside": int(meta.get("n_outside", 0)),
        "seconds": secs,
        "images_per_second": float(meta["n_items"] / max(secs, 1e-9)),
        **extra,
    }
