"""The explore report: one page that opens on a summary of every view of a workspace."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.curate._quality import ISSUE_TYPES
from clusterlens.io._results import read_results
from clusterlens.io._workspace import Workspace
from clusterlens.report._common import css, fmt_number, static_text, template, version
from clusterlens.report._thumbs import thumbnails
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils.validation import check_int

__all__ = ["build_explore_report"]

logger = logging.getLogger(__name__)

_OWNER = "build_explore_report"

#: Quality issue types in report order (the quality view's own order wins).
QUALITY_TYPES = ISSUE_TYPES

#: Categorical colours for clusters and labels (they repeat after 20).
_PALETTE = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#72b7b2",
    "#eeca3b",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#79706e",
    "#1f5f99",
    "#c25400",
    "#2f7d32",
    "#a8323e",
    "#3f8f8a",
    "#b59400",
    "#7b4f95",
    "#d0607a",
    "#6b4f3a",
    "#4e4a48",
)
_GREY = "#b9bec7"
#: Issue categories of the map, first match wins.
_ISSUES = (
    ("unreadable", "#1f2328"),
    ("quality issue", "#e45756"),
    ("outlier", "#b279a2"),
    ("duplicate copy", "#f58518"),
    ("clean", "#9fb7d0"),
)
_LEGEND_MAX = 20


# --------------------------------------------------------------------------- #
# What the template receives
# --------------------------------------------------------------------------- #
@dataclass
class _Item:
    """One thumbnail with a caption; ``src`` is filled in once decoded."""

    index: int
    item_id: str
    caption: str
    kind: str = ""  # extra CSS class: "keep", "flagged", ...
    sub: str = ""  # a second caption line
    src: str | None = None
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class _Tile:
    view: str
    name: str
    value: str
    count: int | None
    detail: str
    href: str | None
    state: str  # "ok", "missing", "error", "none"


@dataclass
class _View:
    """A view's table and run.json, or why it is not there."""

    name: str
    cols: dict[str, npt.NDArray[Any]] | None = None
    run: dict[str, Any] = field(default_factory=dict)
    state: str = "ok"  # "ok", "missing", "error"
    message: str = ""  # what is wrong, in a sentence
    problem: str = ""  # the same in two words, for a tile

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@dataclass(frozen=True)
class _Group:
    id: int
    size: int
    n_redundant: int
    items: list[_Item]
    n_hidden: int


@dataclass(frozen=True)
class _Quality:
    type: str
    title: str
    rule: str
    count: int
    items: list[_Item]
    n_hidden: int


@dataclass(frozen=True)
class _Map:
    width: int
    height: int
    radius: float
    points: list[tuple[float, float, str]]  # cx, cy, fill (the default mode)
    n_items: int
    sampled: bool
    method: str
    modes: list[tuple[str, str, bool]]  # value, label, available
    default: str
    legend: list[tuple[str, str, int]]
    legend_more: str
    data: Any  # Markup: the JSON for the script


# --------------------------------------------------------------------------- #
# Public function
# --------------------------------------------------------------------------- #
def build_explore_report(
    ws: Workspace,
    path: str | Path,
    *,
    max_groups: int = 12,
    max_group_items: int = 12,
    max_outliers: int = 24,
    max_quality: int = 12,
    max_sample: int = 120,
    max_map_points: int = 5000,
    max_rows: int = 200,
    thumb_size: int = 64,
    map_thumb_size: int = 48,
    n_jobs: int = 2,
    random_state: int = 0,
) -> Path:
    """Write ``report.html``: a summary of every view, then one section each.

    The page opens on the collection (items, source, labels) and one tile
    per view with its count, linked to its section: duplicate groups
    (largest first, representative first), the most isolated items, each
    quality issue type (its rule and worst flagged items), unreadable and
    skipped files, a 2-D map coloured by cluster, label or issue (hover a
    point for its thumbnail), the sample to label in pick order, and links
    to the cluster and label-issue reports. A view that was not computed is
    said so, with the command that computes it.

    Parameters
    ----------
    ws : Workspace
        The explored workspace (:func:`clusterlens.io.open_workspace`).
    path : str or Path
        Output file, written atomically; links to the other reports are
        relative to the workspace, so it belongs in ``ws.root``.
    max_groups, max_group_items : int, default=12
        Duplicate groups shown, and items shown per group.
    max_outliers : int, default=24
        Most isolated items shown.
    max_quality : int, default=12
        Worst flagged items shown per quality issue type.
    max_sample : int, default=120
        Picks of the sample shown (all are in ``sample/sample.csv``).
    max_map_points : int, default=5000
        Points drawn on the map; above it a random sample is drawn, and the
        page says so. Flagged items (unreadable, quality issue, outlier,
        duplicate copy) are drawn first, up to half of the points.
    max_rows : int, default=200
        Rows of the skipped and unreadable tables.
    thumb_size, map_thumb_size : int, default=64 and 48
        Longest side in pixels of the section thumbnails and of the map's
        hover thumbnails.
    n_jobs : int, default=2
        Threads decoding thumbnails.
    random_state : int, default=0
        Seed of the map's point sample.

    Returns
    -------
    path : Path
        The written report.

    Notes
    -----
    Only the thumbnails that are shown are decoded, once each: at most
    ``max_groups * max_group_items + max_outliers + 7 * max_quality +
    max_sample + max_map_points`` images. Each is stored as the smaller of
    its PNG and WebP (JPEG where Pillow has no WebP) encodings: lossy for
    photos, PNG for flat images such as digits. A map thumbnail costs about
    0.7 KB, so the page is about 1.5 MB for 2,000 photos.
    """
    limits = {
        "max_groups": max_groups,
        "max_group_items": max_group_items,
        "max_outliers": max_outliers,
        "max_quality": max_quality,
        "max_sample": max_sample,
        "max_map_points": max_map_points,
        "max_rows": max_rows,
    }
    for name, value in limits.items():
        check_int(value, name, _OWNER, low=0)
    thumb_size = check_int(thumb_size, "thumb_size", _OWNER, low=8, high=512)
    map_thumb_size = check_int(
        map_thumb_size, "map_thumb_size", _OWNER, low=8, high=512
    )
    n_jobs = check_int(n_jobs, "n_jobs", _OWNER, low=1)

    n = len(ws)
    root = ws.root
    views = {
        "scan": _load(ws, "scan", "scan.parquet"),
        "duplicates": _load(ws, "duplicates", "duplicates.parquet"),
        "outliers": _load(ws, "outliers", "outliers.parquet"),
        "quality": _load(ws, "quality", "quality.parquet"),
        "map": _load(ws, "map", "map.parquet"),
        "sample": _load(ws, "sample", "sample.parquet"),
        "clusters": _load(ws, "clusters/cnn", "results.parquet"),
        "label-issues": _load(ws, "label-issues", "label_issues.parquet"),
    }
    skipped = _skipped(root)
    ids = np.asarray(ws.items["item_id"]).astype(str)

    def item(i: int, caption: str, kind: str = "", sub: str = "") -> _Item:
        return _Item(int(i), str(ids[i]), caption, kind, sub=sub)

    unreadable = _unreadable_mask(views, n)
    groups, n_groups_total = _duplicate_groups(
        views["duplicates"], item, max_groups, max_group_items
    )
    outliers = _outliers(views["outliers"], item, max_outliers)
    quality = _quality(views["quality"], item, max_quality)
    sample = _sample(views["sample"], item, max_sample)

    # Decode every shown thumbnail once (unreadable items are not tried).
    shown = [
        *(it for g in groups for it in g.items),
        *outliers,
        *(it for q in quality for it in q.items),
        *sample,
    ]
    map_data = _map(ws, views, unreadable, max_map_points, random_state)
    map_idx = map_data.pop("_indices") if map_data else np.zeros(0, np.int64)
    want = sorted({it.index for it in shown} | {int(i) for i in map_idx})
    want = [i for i in want if not unreadable[i]]
    gallery = {it.index for it in shown}
    thumbs = thumbnails(
        ws, want, thumb_size, map_thumb_size, gallery, set(map_idx.tolist()), n_jobs
    )
    for it in shown:
        got = thumbs.get(it.index)
        if got is not None and got[0] is not None:
            it.src, it.width, it.height = got[0]
    the_map = _render_map(map_data, thumbs, map_idx) if map_data else None

    labels = ws.labels
    names = ws.class_names or []
    n_labelled = 0 if labels is None else int((labels >= 0).sum())
    collection = {
        "n_items": n,
        "source": str(ws.meta.get("source", "")),
        "kind": str(ws.meta.get("kind", "")),
        "labelled": n_labelled,
        "classes": [str(c) for c in names] if n_labelled else [],
        "n_skipped": len(skipped),
    }
    tiles = _tiles(ws, views, skipped, unreadable, n_groups_total, quality, the_map)
    dup_run = views["duplicates"].run
    out_run = views["outliers"].run
    html = template("explore.html.j2").render(
        title=f"clusterlens explore: {root.name or root}",
        css=css(),
        script=static_text("explore.js"),
        version=version(),
        collection=collection,
        tiles=tiles,
        views=views,
        groups=groups,
        n_groups=n_groups_total,
        dup_threshold=_fmt(dup_run.get("parameters", {}).get("threshold")),
        outliers=outliers,
        n_outliers=_count(views["outliers"], "outlier"),
        outlier_rule=str(out_run.get("parameters", {}).get("rule", "")),
        quality=quality,
        skipped=skipped[:max_rows],
        n_skipped=len(skipped),
        unreadable_rows=_unreadable_rows(views, ids, unreadable)[:max_rows],
        n_unreadable=int(unreadable.sum()),
        map=the_map,
        sample=sample,
        sample_info=_sample_info(views["sample"]),
        ws_arg=_shell_arg(str(root)),
    )
    out = Path(path)
    atomic_write_text(out, html)
    logger.info("Wrote the explore report of %d items to %s", n, out)
    return out


# --------------------------------------------------------------------------- #
# Reading the views
# --------------------------------------------------------------------------- #
def _load(ws: Workspace, name: str, file: str) -> _View:
    folder = ws.root / name
    view = _View(name)
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        view.run = run if isinstance(run, dict) else {}
    except (OSError, ValueError):
        view.run = {}
    p = folder / file
    if not p.is_file():
        view.state = "missing"
        return view
    try:
        cols = read_results(p)
    except Exception as e:  # pyarrow raises several types for a broken file
        view.state, view.problem = "error", "unreadable file"
        view.message = f"{p} cannot be read ({type(e).__name__}: {e})"
        logger.warning("explore report: %s", view.message)
        return view
    rows = len(next(iter(cols.values()))) if cols else 0
    if rows != len(ws):
        view.state, view.problem = "error", "out of date"
        view.message = (
            f"{p} has {rows:,} rows but the workspace has {len(ws):,} items; it is "
            "out of date"
        )
        logger.warning("explore report: %s", view.message)
        return view
    view.cols = cols
    return view


def _skipped(root: Path) -> list[tuple[str, str]]:
    """``(file, reason)`` per line of ``skipped.txt`` (reason after a tab)."""
    try:
        text = (root / "skipped.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        if line.strip():
            f, _, why = line.partition("\t")
            rows.append((f, why.strip() or "could not be decoded at ingest"))
    return rows


def _count(view: _View, column: str) -> int:
    if not view.ok or view.cols is None or column not in view.cols:
        return 0
    return int(np.asarray(view.cols[column], dtype=bool).sum())


def _unreadable_mask(views: dict[str, _View], n: int) -> npt.NDArray[np.bool_]:
    scan, quality = views["scan"], views["quality"]
    if scan.ok and scan.cols is not None and "readable" in scan.cols:
        return ~np.asarray(scan.cols["readable"], dtype=bool)
    if quality.ok and quality.cols is not None and "unreadable" in quality.cols:
        return np.asarray(quality.cols["unreadable"], dtype=bool)
    return np.zeros(n, dtype=bool)


def _unreadable_rows(
    views: dict[str, _View], ids: npt.NDArray[Any], unreadable: npt.NDArray[np.bool_]
) -> list[tuple[int, str, str]]:
    scan = views["scan"]
    reason = None
    if scan.ok and scan.cols is not None and "reason" in scan.cols:
        reason = np.asarray(scan.cols["reason"]).astype(str)
    return [
        (int(i), str(ids[i]), (reason[i] if reason is not None else "") or "unreadable")
        for i in np.flatnonzero(unreadable)
    ]


# --------------------------------------------------------------------------- #
# Sections
# --------------------------------------------------------------------------- #
def _duplicate_groups(
    view: _View, item: Any, max_groups: int, max_items: int
) -> tuple[list[_Group], int]:
    if not view.ok or view.cols is None:
        return [], 0
    c = view.cols
    group = np.asarray(c["group"], dtype=np.int64)
    kind = np.asarray(c["kind"]).astype(str)
    sim = np.asarray(c["similarity"], dtype=np.float64)
    rep = np.asarray(c["representative"], dtype=bool)
    members = np.flatnonzero(group >= 0)
    if members.size == 0:
        return [], 0
    gids, sizes = np.unique(group[members], return_counts=True)
    order = np.lexsort((gids, -sizes))  # largest first, then group id
    # inside a group: representative first, then most similar first
    key = np.lexsort(
        (members, -np.nan_to_num(sim[members], nan=-1.0), ~rep[members], group[members])
    )
    by_group = members[key]
    starts = np.searchsorted(group[by_group], gids)
    out = []
    for g in order[:max_groups]:
        rows = by_group[starts[g] : starts[g] + sizes[g]]
        items = []
        for i in rows[:max_items]:
            if rep[i]:
                items.append(item(i, "keep", "keep"))
            else:
                k = kind[i] or "near"
                s = "" if not np.isfinite(sim[i]) else f" {sim[i]:.3f}"
                items.append(item(i, f"{k}{s}", k))
        out.append(
            _Group(
                id=int(gids[g]),
                size=int(sizes[g]),
                n_redundant=int((~rep[rows]).sum()),
                items=items,
                n_hidden=int(sizes[g]) - len(items),
            )
        )
    return out, int(gids.size)


def _outliers(view: _View, item: Any, max_items: int) -> list[_Item]:
    if not view.ok or view.cols is None:
        return []
    c = view.cols
    rank = np.asarray(c["outlier_rank"], dtype=np.int64)
    score = np.asarray(c["outlier_score"], dtype=np.float64)
    flag = np.asarray(c["outlier"], dtype=bool)
    order = np.argsort(rank, kind="stable")[:max_items]
    return [
        item(i, f"score {score[i]:.3f}", "flagged" if flag[i] else "") for i in order
    ]


def _quality_types(view: _View) -> list[str]:
    cols = view.cols or {}
    params = view.run.get("parameters", {}) if isinstance(view.run, dict) else {}
    listed = params.get("issue_types") if isinstance(params, dict) else None
    order = (
        [str(t) for t in listed] if isinstance(listed, list) else list(QUALITY_TYPES)
    )
    extra = sorted(
        k[: -len("_score")]
        for k in cols
        if k.endswith("_score") and k[: -len("_score")] in cols
    )
    types = [t for t in order if t in cols and f"{t}_score" in cols]
    return types + [t for t in extra if t not in types]


def _quality(view: _View, item: Any, max_items: int) -> list[_Quality]:
    if not view.ok or view.cols is None:
        return []
    params = view.run.get("parameters", {})
    rules = params.get("rules", {}) if isinstance(params, dict) else {}
    rules = rules if isinstance(rules, dict) else {}
    out = []
    for t in _quality_types(view):
        flag = np.asarray(view.cols[t], dtype=bool)
        score = np.asarray(view.cols[f"{t}_score"], dtype=np.float64)
        idx = np.flatnonzero(flag)
        idx = idx[np.argsort(np.nan_to_num(score[idx], nan=np.inf), kind="stable")]
        shown = idx[:max_items]
        out.append(
            _Quality(
                type=t,
                title=t.replace("_", " "),
                rule=str(rules.get(t, "")),
                count=int(idx.size),
                items=[item(i, f"score {score[i]:.3f}", "flagged") for i in shown],
                n_hidden=int(idx.size - shown.size),
            )
        )
    return out


def _sample(view: _View, item: Any, max_items: int) -> list[_Item]:
    if not view.ok or view.cols is None:
        return []
    pick = np.asarray(view.cols["pick"], dtype=np.int64)
    covers = np.asarray(view.cols["covers"], dtype=np.int64)
    picked = np.flatnonzero(pick >= 0)
    picked = picked[np.argsort(pick[picked], kind="stable")][:max_items]
    return [
        item(i, f"#{pick[i] + 1}", "pick", sub=f"covers {covers[i]:,}") for i in picked
    ]


def _sample_info(view: _View) -> dict[str, Any]:
    if not view.ok or view.cols is None:
        return {}
    pick = np.asarray(view.cols["pick"], dtype=np.int64)
    res = view.run.get("results", {}) if isinstance(view.run, dict) else {}
    params = view.run.get("parameters", {}) if isinstance(view.run, dict) else {}
    return {
        "budget": int((pick >= 0).sum()),
        "eligible": res.get("n_eligible"),
        "radius": _fmt(res.get("covering_radius")),
        "method": str(params.get("method", "")) if isinstance(params, dict) else "",
    }


def _tiles(
    ws: Workspace,
    views: dict[str, _View],
    skipped: list[tuple[str, str]],
    unreadable: npt.NDArray[np.bool_],
    n_groups: int,
    quality: list[_Quality],
    the_map: _Map | None,
) -> list[_Tile]:
    root = _shell_arg(str(ws.root))

    def missing(
        view: str, name: str, cmd: str | None, href: str | None = None
    ) -> _Tile:
        """The tile of a view that is not there; ``cmd`` None: only explore makes it."""
        v = views[view]
        run = f"clusterlens {cmd or 'explore'} {root}"
        if v.state == "error":
            why = f"{v.problem}: recompute it with {run} --overwrite"
            return _Tile(view, name, "!", None, why, href, "error")
        return _Tile(view, name, "—", None, f"not computed: run {run}", href, "missing")

    tiles: list[_Tile] = []
    d = views["duplicates"]
    if d.ok and d.cols is not None:
        group = np.asarray(d.cols["group"], dtype=np.int64)
        rep = np.asarray(d.cols["representative"], dtype=bool)
        redundant = int(((group >= 0) & ~rep).sum())
        tiles.append(
            _Tile(
                "duplicates",
                "duplicate groups",
                f"{n_groups:,}",
                n_groups,
                f"{redundant:,} redundant item{_s(redundant)}",
                "#duplicates",
                "ok" if n_groups else "none",
            )
        )
    else:
        tiles.append(
            missing("duplicates", "duplicate groups", "duplicates", "#duplicates")
        )
    o = views["outliers"]
    if o.ok:
        k = _count(o, "outlier")
        tiles.append(
            _Tile(
                "outliers",
                "outliers",
                f"{k:,}",
                k,
                "flagged as isolated",
                "#outliers",
                "ok" if k else "none",
            )
        )
    else:
        tiles.append(missing("outliers", "outliers", "outliers", "#outliers"))
    if views["quality"].ok:
        for q in quality:
            tiles.append(
                _Tile(
                    f"quality-{q.type}",
                    q.title,
                    f"{q.count:,}",
                    q.count,
                    "flagged" if q.count else "nothing flagged",
                    f"#quality-{q.type}",
                    "ok" if q.count else "none",
                )
            )
    else:
        tiles.append(missing("quality", "quality issues", "quality", "#quality"))
    n_junk = len(skipped) + int(unreadable.sum())
    tiles.append(
        _Tile(
            "junk",
            "unreadable / skipped",
            f"{n_junk:,}",
            n_junk,
            f"{len(skipped):,} skipped at ingest, {int(unreadable.sum()):,} "
            "unreadable now",
            "#junk",
            "ok" if n_junk else "none",
        )
    )
    if the_map is not None:
        drawn = len(the_map.points)
        tiles.append(
            _Tile(
                "map",
                "map",
                f"{drawn:,}",
                drawn,
                f"points drawn of {the_map.n_items:,}"
                if the_map.sampled
                else "points, one per item",
                "#map",
                "ok",
            )
        )
    else:
        tiles.append(missing("map", "map", "map", "#map"))
    s = views["sample"]
    if s.ok and s.cols is not None:
        b = int((np.asarray(s.cols["pick"]) >= 0).sum())
        tiles.append(
            _Tile(
                "sample",
                "sample to label",
                f"{b:,}",
                b,
                "budget: items to label",
                "#sample",
                "ok",
            )
        )
    else:
        tiles.append(missing("sample", "sample to label", "sample", "#sample"))
    c = views["clusters"]
    href = _REPORTS["clusters"] if (ws.root / _REPORTS["clusters"]).is_file() else None
    if c.ok and c.cols is not None:
        k = int(np.unique(np.asarray(c.cols["cluster"])).size)
        tiles.append(
            _Tile(
                "clusters",
                "clusters",
                f"{k:,}",
                k,
                "open the cluster report" if href else "no report.html",
                href,
                "ok",
            )
        )
    else:
        tiles.append(missing("clusters", "clusters", None))
    li = views["label-issues"]
    li_page = _REPORTS["label-issues"]
    href = li_page if (ws.root / li_page).is_file() else None
    if li.ok and li.cols is not None:
        k = _count(li, "is_label_issue")
        tiles.append(
            _Tile(
                "label-issues",
                "label issues",
                f"{k:,}",
                k,
                "flagged · open the label-issue report" if href else "flagged",
                href,
                "ok",
            )
        )
    elif li.state == "missing" and _explore_skip(ws, "label-issues"):
        why = _explore_skip(ws, "label-issues")
        tiles.append(
            _Tile(
                "label-issues",
                "label issues",
                "—",
                None,
                f"skipped: {why}",
                None,
                "none",
            )
        )
    elif ws.labels is None and li.state == "missing":
        tiles.append(
            _Tile("label-issues", "label issues", "—", None, "no labels", None, "none")
        )
    else:
        tiles.append(missing("label-issues", "label issues", None))
    return tiles


def _explore_skip(ws: Workspace, stage: str) -> str | None:
    """Why ``clusterlens explore`` skipped ``stage`` (from ``WS/explore.json``)."""
    import json

    try:
        run = json.loads((ws.root / "explore.json").read_text(encoding="utf-8"))
        why = run["stages"][stage]["skipped"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(why) if why else None


#: Views with a report of their own, relative to the workspace.
_REPORTS = {
    "clusters": "clusters/cnn/report.html",
    "label-issues": "label-issues/report.html",
}


# --------------------------------------------------------------------------- #
# The map
# --------------------------------------------------------------------------- #
def _map(
    ws: Workspace,
    views: dict[str, _View],
    unreadable: npt.NDArray[np.bool_],
    max_points: int,
    seed: int,
) -> dict[str, Any] | None:
    """Points to draw and their colours per mode (no pixels yet)."""
    m = views["map"]
    if not m.ok or m.cols is None or max_points == 0:
        return None
    n = len(ws)
    x = np.clip(np.nan_to_num(np.asarray(m.cols["x"], np.float64), nan=0.5), 0, 1)
    y = np.clip(np.nan_to_num(np.asarray(m.cols["y"], np.float64), nan=0.5), 0, 1)

    issue = np.full(n, len(_ISSUES) - 1, dtype=np.int64)  # clean
    dup = views["duplicates"]
    if dup.ok and dup.cols is not None:
        redundant = (np.asarray(dup.cols["group"]) >= 0) & ~np.asarray(
            dup.cols["representative"], bool
        )
        issue[redundant] = 3
    if views["outliers"].ok and views["outliers"].cols is not None:
        issue[np.asarray(views["outliers"].cols["outlier"], bool)] = 2
    q = views["quality"]
    if q.ok and q.cols is not None:
        flagged = np.zeros(n, bool)
        for t in _quality_types(q):
            flagged |= np.asarray(q.cols[t], bool)
        issue[flagged] = 1
    issue[unreadable] = 0

    drawn = np.arange(n)
    sampled = n > max_points
    if sampled:
        # flagged items first (they are what a person looks for), but at most
        # half the points, so the sample still shows the collection's shape
        rng = np.random.default_rng(seed)
        flagged = np.flatnonzero(issue < len(_ISSUES) - 1)
        keep = rng.permutation(flagged)[: max_points // 2]
        rest = np.setdiff1d(np.arange(n), keep, assume_unique=True)
        extra = rng.choice(rest, max_points - keep.size, replace=False)
        drawn = np.sort(np.concatenate([keep, extra]))

    modes: dict[str, dict[str, Any]] = {}
    avail: list[tuple[str, str, bool]] = []
    c = views["clusters"]
    if c.ok and c.cols is not None:
        modes["cluster"] = _categorical(
            np.asarray(c.cols["cluster"], np.int64), drawn, lambda v: f"cluster {v}"
        )
        avail.append(("cluster", "cluster", True))
    else:
        avail.append(("cluster", "cluster (not computed)", False))
    labels = ws.labels
    if labels is not None:
        names = ws.class_names or []

        def label_name(v: int) -> str:
            if v < 0:
                return "unlabelled"
            return str(names[v]) if v < len(names) else f"label {v}"

        modes["label"] = _categorical(labels, drawn, label_name, unknown=-1)
        avail.append(("label", "label", True))
    else:
        avail.append(("label", "label (no labels)", False))
    counts = np.bincount(issue[drawn], minlength=len(_ISSUES))
    modes["issue"] = {
        "codes": issue[drawn].tolist(),
        "colors": [col for _, col in _ISSUES],
        "names": [name for name, _ in _ISSUES],
        "legend": [
            [name, col, int(k)]
            for (name, col), k in zip(_ISSUES, counts, strict=True)
            if k
        ],
        "more": "",
    }
    avail.append(("issue", "issue", True))
    default = next(v for v, _, ok in avail if ok)
    method = ""
    res = m.run.get("results", {}) if isinstance(m.run, dict) else {}
    if isinstance(res, dict):
        method = str(res.get("method", ""))
    return {
        "_indices": drawn,
        "x": x[drawn],
        "y": y[drawn],
        "modes": modes,
        "avail": avail,
        "default": default,
        "n_items": n,
        "sampled": sampled,
        "method": method,
        "ids": np.asarray(ws.items["item_id"]).astype(str)[drawn].tolist(),
    }


def _categorical(
    values: npt.NDArray[np.int64],
    drawn: npt.NDArray[np.intp],
    name_of: Any,
    unknown: int | None = None,
) -> dict[str, Any]:
    """Codes into a colour list: categories by size, largest first."""
    cats, inverse, sizes = np.unique(
        values[drawn], return_inverse=True, return_counts=True
    )
    order = np.lexsort((cats, -sizes))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    colors = []
    names = []
    for r, j in enumerate(order):
        v = int(cats[j])
        names.append(name_of(v))
        colors.append(
            _GREY
            if unknown is not None and v == unknown
            else _PALETTE[r % len(_PALETTE)]
        )
    legend = [
        [names[r], colors[r], int(sizes[order[r]])]
        for r in range(min(order.size, _LEGEND_MAX))
    ]
    more = ""
    if order.size > _LEGEND_MAX:
        more = (
            f"+{order.size - _LEGEND_MAX:,} more (colours repeat after {len(_PALETTE)})"
        )
    return {
        "codes": rank[inverse.reshape(-1)].tolist(),
        "colors": colors,
        "names": names,
        "legend": legend,
        "more": more,
    }


def _render_map(
    data: dict[str, Any],
    thumbs: dict[int, tuple[Any, Any]],
    drawn: npt.NDArray[np.intp],
) -> _Map:
    size, pad = 640, 12
    k = len(drawn)
    radius = 4.0 if k <= 500 else 3.0 if k <= 2000 else 2.2
    cx = np.round(pad + data["x"] * (size - 2 * pad), 1)
    cy = np.round(pad + (1.0 - data["y"]) * (size - 2 * pad), 1)
    mode = data["modes"][data["default"]]
    fills = [mode["colors"][c] for c in mode["codes"]]
    points = [(float(a), float(b), f) for a, b, f in zip(cx, cy, fills, strict=True)]
    map_thumbs = []
    for i in drawn.tolist():
        got = thumbs.get(int(i))
        map_thumbs.append(got[1][0] if got is not None and got[1] is not None else "")
    payload = {
        "ids": data["ids"],
        "thumbs": map_thumbs,
        "modes": data["modes"],
    }
    return _Map(
        width=size,
        height=size,
        radius=radius,
        points=points,
        n_items=data["n_items"],
        sampled=data["sampled"],
        method=data["method"],
        modes=data["avail"],
        default=data["default"],
        legend=[tuple(e) for e in mode["legend"]],
        legend_more=mode["more"],
        data=_json_for_script(payload),
    )


def _json_for_script(obj: Any) -> Any:
    """JSON safe inside <script type="application/json"> (no "</script>")."""
    from markupsafe import Markup

    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


# --------------------------------------------------------------------------- #
# Formatting
# --------------------------------------------------------------------------- #
def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return ""
    if isinstance(v, int | float):
        return fmt_number(float(v))
    return str(v)


def _s(k: int) -> str:
    return "" if k == 1 else "s"


def _shell_arg(s: str) -> str:
    """``s`` quoted for a shell command line when it needs it."""
    import shlex

    return shlex.quote(s)
