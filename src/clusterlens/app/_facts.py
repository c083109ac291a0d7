"""What ``explore`` found about each item, as columns the app filters and shows.

Read once per app from the workspace's stage files (duplicates, outliers,
quality, label issues, sample, neighbours, the scan's previews); a file that
is missing or belongs to other items is left out, never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.curate._quality import ISSUE_TYPES
from clusterlens.exceptions import ClusterlensError
from clusterlens.io._results import read_results
from clusterlens.io._workspace import Workspace

__all__ = ["ISSUES", "QUALITY_TYPES", "ItemFacts", "load_facts"]

logger = logging.getLogger(__name__)

QUALITY_TYPES = ISSUE_TYPES

#: The issue filters of the "all items" view: name -> title.
ISSUES = {
    "duplicate": "duplicate (not the copy to keep)",
    "outlier": "outlier",
    "quality": "any quality issue",
    **{t: t.replace("_", " ") for t in QUALITY_TYPES},
    "label_issue": "label issue",
    "sample": "in the sample to label",
}


@dataclass
class ItemFacts:
    """Per-item columns (each of length ``n``) and the score columns' titles."""

    n: int
    given: npt.NDArray[Any]  # str, the label the data came with ("" none)
    flags: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    scores: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    score_titles: dict[str, str] = field(default_factory=dict)
    dup_group: npt.NDArray[np.int64] | None = None
    dup_keep: npt.NDArray[np.bool_] | None = None
    suggested: npt.NDArray[Any] | None = None
    neighbors: npt.NDArray[np.int64] | None = None
    previews: npt.NDArray[np.uint8] | None = None
    preview_sizes: npt.NDArray[np.int64] | None = None

    def issues_of(self, i: int) -> list[str]:
        """The issues flagged for item ``i`` (names of :data:`ISSUES`)."""
        return [k for k, v in self.flags.items() if bool(v[i])]

    def scores_of(self, i: int) -> dict[str, float]:
        """Item ``i``'s scores, by title (NaN ones left out)."""
        out = {}
        for k, v in self.scores.items():
            x = float(v[i])
            if np.isfinite(x):
                out[self.score_titles[k]] = round(x, 3)
        return out


def _read(ws: Workspace, rel: str) -> dict[str, Any] | None:
    p = ws.root / rel
    if not p.is_file():
        return None
    try:
        cols = read_results(p)
    except (ClusterlensError, OSError, ValueError) as e:
        logger.warning("review app: cannot read %s (%s); left out", p, e)
        return None
    index = np.asarray(cols.get("index", []), dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= len(ws)):
        logger.warning("review app: %s belongs to other items; left out", p)
        return None
    cols["index"] = index
    return cols


def _full(n: int, index: npt.NDArray[np.int64], v: Any, fill: Any) -> Any:
    v = np.asarray(v)
    out = np.full(n, fill, dtype=v.dtype if fill is not np.nan else np.float64)
    out[index] = v
    return out


def load_facts(ws: Workspace) -> ItemFacts:
    """Everything the stage files of ``ws`` say about its items."""
    n = len(ws)
    given = np.asarray(ws.items.get("label_name", np.full(n, "")), dtype=object)
    f = ItemFacts(n=n, given=np.where(given == None, "", given).astype(str))  # noqa: E711
    d = _read(ws, "duplicates/duplicates.parquet")
    if d is not None and "group" in d:
        ix = d["index"]
        f.dup_group = _full(n, ix, np.asarray(d["group"], dtype=np.int64), -1)
        f.dup_keep = _full(n, ix, np.asarray(d["representative"], dtype=bool), False)
        f.flags["duplicate"] = (f.dup_group >= 0) & ~f.dup_keep
        f.scores["dup_similarity"] = _full(
            n, ix, np.asarray(d["similarity"], dtype=np.float64), np.nan
        )
        f.score_titles["dup_similarity"] = "duplicate similarity"
    o = _read(ws, "outliers/outliers.parquet")
    if o is not None and "outlier" in o:
        ix = o["index"]
        f.flags["outlier"] = _full(n, ix, np.asarray(o["outlier"], dtype=bool), False)
        f.scores["outlier_z"] = _full(
            n, ix, np.asarray(o["outlier_z"], dtype=np.float64), np.nan
        )
        f.score_titles["outlier_z"] = "outlier z"
    q = _read(ws, "quality/quality.parquet")
    if q is not None:
        ix = q["index"]
        anyq = np.zeros(n, dtype=bool)
        for t in QUALITY_TYPES:
            if t in q:
                flag = _full(n, ix, np.asarray(q[t], dtype=bool), False)
                f.flags[t] = flag
                anyq |= flag
                f.scores[t] = _full(
                    n, ix, np.asarray(q[f"{t}_score"], dtype=np.float64), np.nan
                )
                f.score_titles[t] = t.replace("_", " ") + " score"
        f.flags["quality"] = anyq
    li = _read(ws, "label-issues/label_issues.parquet")
    if li is not None and "is_label_issue" in li:
        ix = li["index"]
        f.flags["label_issue"] = _full(
            n, ix, np.asarray(li["is_label_issue"], dtype=bool), False
        )
        if "label_quality" in li:
            f.scores["label_quality"] = _full(
                n, ix, np.asarray(li["label_quality"], dtype=np.float64), np.nan
            )
            f.score_titles["label_quality"] = "label quality"
        if "suggested_label" in li:
            f.suggested = _full(
                n, ix, np.asarray(li["suggested_label"]).astype(str), ""
            ).astype(object)
    s = _read(ws, "sample/sample.parquet")
    if s is not None and "pick" in s:
        pick = _full(n, s["index"], np.asarray(s["pick"], dtype=np.int64), -1)
        f.flags["sample"] = pick >= 0
    nb = ws.root / "neighbors" / "neighbors.npz"
    if nb.is_file():
        try:
            with np.load(nb, allow_pickle=False) as z:
                ind = np.asarray(z["indices"], dtype=np.int64)
            if ind.ndim == 2 and ind.shape[0] == n and (ind < n).all():
                f.neighbors = ind
        except (OSError, ValueError, KeyError) as e:
            logger.warning("review app: cannot read %s (%s); left out", nb, e)
    from clusterlens.curate._previews import load_previews

    got = load_previews(ws)
    if got is not None:
        f.previews, f.preview_sizes = got
    return f
