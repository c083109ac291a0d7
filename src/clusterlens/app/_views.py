"""The explore views in the review app: duplicates, outliers, quality, the sample.

Each view is a list of items in the order a person should see them, with a
caption per item, read from the files ``clusterlens explore`` (or the view
commands) wrote into the workspace. The page shows them as a grid whose items
can be selected and labelled, as the pool is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._workspace import Workspace

__all__ = ["VIEWS", "CurationView", "available_views", "load_view"]


@dataclass(frozen=True)
class CurationView:
    """One view: its items in order, a caption each, and what it shows."""

    name: str
    title: str
    intro: str
    indices: npt.NDArray[np.int64]
    captions: list[str]
    n_flagged: int


def _table(ws: Workspace, view: str, file: str) -> dict[str, Any]:
    from clusterlens.pipelines.curate import read_stage_table

    return read_stage_table(ws, view, file)


def _duplicates(ws: Workspace) -> CurationView:
    d = _table(ws, "duplicates", "duplicates.parquet")
    group = np.asarray(d["group"], dtype=np.int64)
    rep = np.asarray(d["representative"], dtype=bool)
    sim = np.asarray(d["similarity"], dtype=np.float64)
    kind = np.asarray(d["kind"]).astype(str)
    members = np.flatnonzero(group >= 0)
    # group by group, the copy to keep first, then the most similar
    order = members[np.lexsort((-sim[members], ~rep[members], group[members]))]
    captions = [
        f"group {group[i]} · keep"
        if rep[i]
        else f"group {group[i]} · {kind[i]} {sim[i]:.2f}"
        for i in order
    ]
    n_groups = int(group.max()) + 1 if members.size else 0
    return CurationView(
        "duplicates",
        "Duplicates",
        f"{n_groups} groups; each starts with the copy to keep. Select copies and "
        "label them (e.g. 'duplicate') to set them apart.",
        order.astype(np.int64),
        captions,
        int((~rep[members]).sum()),
    )


def _outliers(ws: Workspace) -> CurationView:
    o = _table(ws, "outliers", "outliers.parquet")
    rank = np.asarray(o["outlier_rank"], dtype=np.int64)
    flag = np.asarray(o["outlier"], dtype=bool)
    z = np.asarray(o["outlier_z"], dtype=np.float64)
    order = np.argsort(rank, kind="stable")
    n_show = max(int(flag.sum()), min(48, order.size))
    order = order[:n_show]
    captions = [
        f"{'outlier' if flag[i] else 'rank ' + str(rank[i] + 1)} · z {z[i]:.1f}"
        for i in order
    ]
    return CurationView(
        "outliers",
        "Outliers",
        f"{int(flag.sum())} flagged as isolated, then the next most isolated items, "
        "most isolated first.",
        order.astype(np.int64),
        captions,
        int(flag.sum()),
    )


_QUALITY_TYPES = (
    "blurry",
    "dark",
    "bright",
    "low_information",
    "odd_aspect_ratio",
    "odd_size",
    "grayscale",
)


def _quality(ws: Workspace) -> CurationView:
    q = _table(ws, "quality", "quality.parquet")
    seen: set[int] = set()
    idx: list[int] = []
    captions: list[str] = []
    for t in _QUALITY_TYPES:
        if t not in q:
            continue
        flag = np.asarray(q[t], dtype=bool)
        score = np.asarray(q[f"{t}_score"], dtype=np.float64)
        for i in np.flatnonzero(flag)[np.argsort(score[flag], kind="stable")]:
            if int(i) in seen:
                continue
            seen.add(int(i))
            idx.append(int(i))
            captions.append(f"{t.replace('_', ' ')} {score[i]:.2f}")
    return CurationView(
        "quality",
        "Image quality",
        f"{len(idx)} items flagged (blurry, dark, bright, low information, odd "
        "aspect ratio or size, grayscale), worst first within each type.",
        np.asarray(idx, dtype=np.int64),
        captions,
        len(idx),
    )


def _sample(ws: Workspace) -> CurationView:
    s = _table(ws, "sample", "sample.parquet")
    pick = np.asarray(s["pick"], dtype=np.int64)
    covers = np.asarray(s["covers"], dtype=np.int64)
    picked = np.flatnonzero(pick >= 0)
    order = picked[np.argsort(pick[picked], kind="stable")]
    return CurationView(
        "sample",
        "Sample to label",
        f"{order.size} items that cover the collection, in the order they were "
        "picked: label these first.",
        order.astype(np.int64),
        [f"#{pick[i] + 1} · covers {covers[i]}" for i in order],
        int(order.size),
    )


#: name -> (file it needs, loader).
VIEWS: dict[str, tuple[str, Callable[[Workspace], CurationView]]] = {
    "duplicates": ("duplicates/duplicates.parquet", _duplicates),
    "outliers": ("outliers/outliers.parquet", _outliers),
    "quality": ("quality/quality.parquet", _quality),
    "sample": ("sample/sample.parquet", _sample),
}


def available_views(ws: Workspace) -> list[str]:
    """The views whose files exist in the workspace."""
    return [name for name, (file, _) in VIEWS.items() if (ws.root / file).is_file()]


def load_view(ws: Workspace, name: str) -> CurationView:
    """Read view ``name``; a damaged or stale file is a DataValidationError."""
    if name not in VIEWS:
        raise DataValidationError(f"No view {name!r}; views: {', '.join(VIEWS)}.")
    return VIEWS[name][1](ws)
