"""Self-contained HTML report of anchor boxes found by k-means with 1 - IoU."""

from __future__ import annotations

import logging
import math
import numbers
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.report._common import css, fmt_number, fmt_value, template, version
from clusterlens.typing import ArrayLike, PathLike, SeedLike
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils.validation import check_int, check_random_state

__all__ = ["build_anchor_report"]

logger = logging.getLogger(__name__)

_OWNER = "build_anchor_report"

# Qualitative palette (Tableau 10 with a darker yellow and grey, plus indigo and
# olive); anchor i gets _PALETTE[i % 12].
_PALETTE = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#72b7b2",
    "#d4a017",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#79706e",
    "#5254a3",
    "#8ca252",
)

# Scatter plot geometry (pixels of the SVG viewBox); the plot area is square so
# that both axes have the same number of pixels per decade and the 1:1 guide
# is the diagonal.
_PLOT = 500
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 14, 12, 46
_DOT_R = 1.6
_MARK = 6  # half side of an anchor marker
_FONT_W, _FONT_H = 7.0, 12.0  # glyph width and line height of 11px bold text
_SHAPES = 300  # side of the nested-rectangles picture
_SHAPES_PAD = 10
_MISSING = "—"
_TIMES = "\u00d7"  # MULTIPLICATION SIGN, as in "#3 12 x 15"


# --------------------------------------------------------------------------- #
# What the template receives
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _DotGroup:
    anchor: int
    color: str
    count: int
    dots: list[tuple[str, str]]


@dataclass(frozen=True)
class _Tick:
    pos: float
    label: str | None  # None: an unlabelled minor grid line
    major: bool


@dataclass(frozen=True)
class _Guide:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    lx: float
    ly: float


@dataclass(frozen=True)
class _Marker:
    index: int
    x: float
    y: float
    color: str
    label: str
    lx: float
    ly: float
    anchor: str  # text-anchor of the label
    tip: str


@dataclass(frozen=True)
class _Scatter:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    xticks: list[_Tick]
    yticks: list[_Tick]
    guides: list[_Guide]
    groups: list[_DotGroup]
    markers: list[_Marker]
    xlabel: str
    ylabel: str
    caption: str


@dataclass(frozen=True)
class _Rect:
    index: int
    x: float
    y: float
    width: float
    height: float
    color: str
    tip: str


@dataclass(frozen=True)
class _AnchorRow:
    index: int
    color: str
    label: str
    w: str
    h: str
    aspect: str
    area: str
    count: str
    share: str
    mean_iou: str


@dataclass(frozen=True)
class _Table:
    columns: list[tuple[str, bool]]  # (name, right-aligned: all values numbers)
    rows: list[list[tuple[str, bool]]]  # (text, right-aligned)


# --------------------------------------------------------------------------- #
# Public function
# --------------------------------------------------------------------------- #
def build_anchor_report(
    path: PathLike,
    *,
    boxes_wh: ArrayLike,
    labels: ArrayLike,
    anchors: ArrayLike,
    box_iou: ArrayLike | None = None,
    figures: Mapping[str, Any] | None = None,
    per_category: Mapping[str, Mapping[str, Any]]
    | Sequence[Mapping[str, Any]]
    | None = None,
    per_size: Mapping[str, Mapping[str, Any]]
    | Sequence[Mapping[str, Any]]
    | None = None,
    params: Mapping[str, Any] | None = None,
    units: str = "pixels",
    title: str = "clusterlens anchors",
    max_points: int = 6000,
    random_state: SeedLike = 0,
) -> pathlib.Path:
    """Write a self-contained HTML report of anchor boxes.

    The anchors are meant to come from k-means on box sizes with the
    ``1 - IoU`` distance (boxes compared as if they shared a centre). The
    report has a summary (box and anchor counts, mean IoU and the ``figures``
    table), a log-log scatter plot of box widths and heights coloured by
    anchor with the anchors drawn on top, the anchors drawn to scale as
    nested rectangles around a common centre, a table of the anchors, the
    optional ``per_category`` and ``per_size`` tables and the parameters in a
    collapsible table. The CSS and the SVG charts are inlined: the file opens
    from disk with no network access and no JavaScript.

    Parameters
    ----------
    path : str or os.PathLike
        Output file. Missing parent folders are created. An existing file is
        replaced atomically: the report is rendered to a temporary file in the
        same folder and moved into place with :func:`os.replace`.

    boxes_wh : array-like of shape (n_boxes, 2)
        Width and height of each box, in ``units``; all must be finite and
        positive.

    labels : array-like of shape (n_boxes,)
        Index of the anchor each box is assigned to, in ``[0, n_anchors)``.

    anchors : array-like of shape (n_anchors, 2)
        Width and height of each anchor, usually sorted by area. The order is
        kept as given: anchor ``i`` is row ``i``, shown as ``#i``.

    box_iou : array-like of shape (n_boxes,), default=None
        IoU of each box with its anchor (or its best IoU over all anchors),
        in [0, 1], averaged per anchor in the anchors table. ``None``
        computes the IoU of each box with its assigned anchor, both centred.

    figures : mapping of str to number or str, default=None
        Headline numbers (mean IoU, best possible recall, anchors above the
        threshold, fitness, seconds, ...) shown as a table at the top, in the
        mapping's order.

    per_category : mapping or sequence of mappings, default=None
        Figures per object category, as a table: a mapping from category name
        to a mapping of figures (``{"person": {"boxes": 100, "mean_iou":
        0.61}}``), or a sequence of mappings, one row each, whose keys become
        the columns in order of first appearance.

    per_size : mapping or sequence of mappings, default=None
        Figures per size bucket (small, medium, large, ...), in the same
        shape as ``per_category``.

    params : mapping of str to object, default=None
        Parameters of the run, shown in a collapsible table.

    units : str, default="pixels"
        Unit of the widths and heights, used in the axis labels and headings
        (``"pixels"``, ``"fraction of image"``, ...).

    title : str, default="clusterlens anchors"
        Page title and heading.

    max_points : int, default=6000
        Largest number of boxes drawn in the scatter plot. Beyond it a
        uniform random subsample of this size is drawn, and the caption says
        how many of how many are shown; ``0`` draws no boxes.

    random_state : int, numpy.random.Generator or None, default=0
        Seed of the subsample. The same int draws the same boxes.

    Returns
    -------
    path : pathlib.Path
        The path of the written report.

    Raises
    ------
    DataValidationError
        If ``boxes_wh`` or ``anchors`` is not of shape (n, 2), holds
        non-finite or non-positive values, ``labels`` or ``box_iou`` does not
        have one entry per box, a label is outside ``[0, n_anchors)``,
        ``box_iou`` is outside [0, 1], or ``per_category``/``per_size`` is not
        a mapping or sequence of mappings.
    InvalidParameterError
        If ``max_points`` is negative or ``title``/``units`` is not a str.

    See Also
    --------
    build_cluster_report : The report of a clustering of images.

    Notes
    -----
    Counts and mean IoUs per anchor come from :func:`numpy.bincount` in
    O(n_boxes + n_anchors); the IoU of two centred boxes is
    ``min(w1, w2) * min(h1, h2) / (w1 * h1 + w2 * h2 - inter)``. Drawing costs
    O(min(n_boxes, max_points)) SVG circles, each about 50 bytes.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> boxes = np.array([[10.0, 12.0], [11.0, 10.0], [40.0, 80.0]])
    >>> anchors = np.array([[10.5, 11.0], [40.0, 80.0]])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = build_anchor_report(
    ...         pathlib.Path(tmp) / "anchors.html",
    ...         boxes_wh=boxes, labels=[0, 0, 1], anchors=anchors,
    ...     )
    ...     out.read_text(encoding="utf-8").count('class="anchor-marker"')
    2
    """
    max_points = check_int(max_points, "max_points", _OWNER, low=0)
    for name, value in (("title", title), ("units", units)):
        if not isinstance(value, str):
            raise InvalidParameterError(
                f"The {name!r} parameter of {_OWNER} must be a str. "
                f"Got {value!r} instead."
            )
    rng = check_random_state(random_state)

    boxes = _check_wh(boxes_wh, "boxes_wh", "n_boxes")
    anch = _check_wh(anchors, "anchors", "n_anchors")
    n, k = boxes.shape[0], anch.shape[0]
    lab = _check_labels(labels, n, k)
    iou = _check_box_iou(box_iou, n)
    if iou is None:
        iou = _centred_iou(boxes, anch[lab])
    cat_table = _check_table(per_category, "per_category", "category")
    size_table = _check_table(per_size, "per_size", "size")

    counts = np.bincount(lab, minlength=k)
    iou_sums = np.bincount(lab, weights=iou, minlength=k)
    colors = [_PALETTE[i % len(_PALETTE)] for i in range(k)]

    if n > max_points:
        shown = np.sort(rng.choice(n, size=max_points, replace=False))
    else:
        shown = np.arange(n)

    rows = []
    for i in range(k):
        w, h = float(anch[i, 0]), float(anch[i, 1])
        c = int(counts[i])
        rows.append(
            _AnchorRow(
                index=i,
                color=colors[i],
                label=f"#{i} {_fmt_dim(w)}{_TIMES}{_fmt_dim(h)}",
                w=fmt_number(_round_sig(w)),
                h=fmt_number(_round_sig(h)),
                aspect=f"{w / h:.2f}",
                area=fmt_number(_round_sig(w * h)),
                count=f"{c:,}",
                share=f"{100.0 * c / n:.1f}%",
                mean_iou=f"{iou_sums[i] / c:.3f}" if c else _MISSING,
            )
        )

    summary = [
        ("boxes", f"{n:,}"),
        ("anchors", f"{k:,}"),
        ("mean IoU", f"{float(iou.mean()):.3f}"),
    ]
    html = template("anchors.html.j2").render(
        title=title,
        units=units,
        css=css(),
        summary=summary,
        figures=[(str(key), fmt_value(v)) for key, v in (figures or {}).items()],
        scatter=_scatter(boxes, lab, anch, shown, colors, units, random_state),
        shapes=_shapes(anch, colors),
        shapes_size=_SHAPES,
        frame=_frame_text(anch),
        anchors=rows,
        per_category=cat_table,
        per_size=size_table,
        params=[(str(key), fmt_value(v)) for key, v in (params or {}).items()],
        version=version(),
    )
    out = pathlib.Path(path)
    atomic_write_text(out, html)
    logger.info("Wrote anchor report with %d anchors, %d boxes to %s", k, n, out)
    return out


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
def _check_wh(values: ArrayLike, name: str, rows: str) -> npt.NDArray[np.float64]:
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DataValidationError(
            f"{name} must be 2-D of shape ({rows}, 2) holding [w, h]; got shape "
            f"{arr.shape}. For (n, 4) xyxy boxes pass np.diff(boxes.reshape(-1, 2, "
            "2), axis=1)[:, 0]."
        )
    if arr.shape[0] == 0:
        raise DataValidationError(f"{name} is empty; there is nothing to report.")
    if not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise DataValidationError(
            f"{name} must be real numbers; got dtype {arr.dtype}."
        )
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise DataValidationError(
            f"{name} must be finite; {int(bad.sum())} rows have NaN or infinity "
            f"(first at index {int(np.argmax(bad))})."
        )
    for col, dim in ((0, "w"), (1, "h")):
        bad = arr[:, col] <= 0
        if bad.any():
            raise DataValidationError(
                f"{name} must have positive width and height; {int(bad.sum())} rows "
                f"have {dim} <= 0 (first at index {int(np.argmax(bad))})."
            )
    return arr


def _check_labels(labels: ArrayLike, n: int, k: int) -> npt.NDArray[np.intp]:
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise DataValidationError(
            f"labels must be 1-D of shape (n_boxes,); got shape {lab.shape}."
        )
    if lab.shape[0] != n:
        raise DataValidationError(
            f"labels has {lab.shape[0]} items but boxes_wh has {n} rows; they must "
            "have one entry per box, in the same order."
        )
    if np.issubdtype(lab.dtype, np.floating) and np.all(lab == np.round(lab)):
        lab = lab.astype(np.int64)
    if not np.issubdtype(lab.dtype, np.integer):
        raise DataValidationError(
            f"labels must hold integer anchor indices; got dtype {lab.dtype}. "
            "Use labels.astype(int)."
        )
    bad = (lab < 0) | (lab >= k)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataValidationError(
            f"labels holds {int(bad.sum())} values outside [0, {k}), the range of "
            f"anchor indices (first at index {first}: {lab[first]}). Pass one row "
            "of anchors per label."
        )
    return lab.astype(np.intp, copy=False)


def _check_box_iou(box_iou: ArrayLike | None, n: int) -> npt.NDArray[np.float64] | None:
    if box_iou is None:
        return None
    arr = np.asarray(box_iou)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataValidationError(
            f"box_iou must be 1-D of shape (n_boxes,) = ({n},); got shape {arr.shape}."
        )
    if not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise DataValidationError(
            f"box_iou must be real numbers; got dtype {arr.dtype}."
        )
    arr = arr.astype(np.float64, copy=False)
    bad = ~((arr >= 0) & (arr <= 1))  # also catches NaN
    if bad.any():
        first = int(np.argmax(bad))
        raise DataValidationError(
            f"box_iou must lie in [0, 1]; {int(bad.sum())} values do not (first at "
            f"index {first}: {arr[first]!r})."
        )
    return arr


def _check_table(
    table: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]] | None,
    name: str,
    key_column: str,
) -> _Table | None:
    """Turn a mapping of rows or a sequence of rows into a table, columns in order."""
    if table is None:
        return None
    records: list[tuple[str | None, Mapping[str, Any]]] = []
    if isinstance(table, Mapping):
        for key, row in table.items():
            if not isinstance(row, Mapping):
                raise DataValidationError(
                    f"{name}[{key!r}] must be a mapping of figure name to value; got "
                    f"{type(row).__name__}."
                )
            records.append((str(key), row))
    elif isinstance(table, Sequence) and not isinstance(table, str | bytes):
        for i, row in enumerate(table):
            if not isinstance(row, Mapping):
                raise DataValidationError(
                    f"{name}[{i}] must be a mapping of column name to value; got "
                    f"{type(row).__name__}."
                )
            records.append((None, row))
    else:
        raise DataValidationError(
            f"{name} must be a mapping of {key_column} to a mapping of figures, or a "
            f"sequence of mappings; got {type(table).__name__}."
        )
    columns: dict[str, None] = {}
    for _, row in records:
        columns.update((str(c), None) for c in row)
    keyed = isinstance(table, Mapping)
    values = [{str(c): v for c, v in row.items()} for _, row in records]
    numeric = [all(_is_number(r[c]) for r in values if c in r) for c in columns]
    rows: list[list[tuple[str, bool]]] = []
    for (row_key, _row), by_name in zip(records, values, strict=True):
        cells = [(str(row_key), False)] if keyed else []
        for c, num in zip(columns, numeric, strict=True):
            cell = fmt_value(by_name[c]) if c in by_name else _MISSING
            cells.append((cell, num))
        rows.append(cells)
    header = [(key_column, False)] if keyed else []
    header += list(zip(columns, numeric, strict=True))
    return _Table(columns=header, rows=rows)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.number) and not isinstance(v, bool)


# --------------------------------------------------------------------------- #
# IoU of centred boxes
# --------------------------------------------------------------------------- #
def _centred_iou(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Row-wise IoU of two (n, 2) arrays of [w, h], boxes sharing a centre."""
    inter = np.minimum(a[:, 0], b[:, 0]) * np.minimum(a[:, 1], b[:, 1])
    return inter / (a[:, 0] * a[:, 1] + b[:, 0] * b[:, 1] - inter)


# --------------------------------------------------------------------------- #
# Scatter plot of log10(w), log10(h)
# --------------------------------------------------------------------------- #
def _log_ticks(lo: float, hi: float) -> list[tuple[float, float]]:
    """Values 1, 2 and 5 x 10**d in [10**lo, 10**hi] as (log10 value, value)."""
    ticks = []
    for d in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**d
            lv = math.log10(v)
            if lo - 1e-9 <= lv <= hi + 1e-9:
                ticks.append((lv, v))
    return ticks


def _tick_label(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e4:
        return f"{v / 1e3:g}k"
    if v >= 1:
        return f"{v:,.0f}"
    return np.format_float_positional(v, precision=12, trim="-")


def _axis_ticks(lo: float, hi: float) -> list[_Tick]:
    """Ticks at powers of ten (always labelled) and 2/5 multiples (if room)."""
    px_per_decade = _PLOT / (hi - lo)
    # Narrowest gap between neighbouring 1-2-5 ticks is log10(2) of a decade.
    label_minor = px_per_decade * math.log10(2) >= 30
    stride = max(1, math.ceil(34 / px_per_decade))  # every n-th decade if crowded
    out = []
    for lv, v in _log_ticks(lo, hi):
        major = abs(lv - round(lv)) < 1e-9
        if major:
            show = round(lv) % stride == 0
        else:
            show = label_minor
        out.append(_Tick(pos=lv, label=_tick_label(v) if show else None, major=major))
    return out


def _label_box(
    x: float, y: float, text: str, anchor: str
) -> tuple[float, float, float, float]:
    w = len(text) * _FONT_W
    x0 = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
    return (x0, y - _FONT_H * 0.8, x0 + w, y + _FONT_H * 0.25)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return dx * dy if dx > 0 and dy > 0 else 0.0


def _place_labels(
    points: list[tuple[float, float]], texts: list[str], bounds: tuple[float, ...]
) -> list[tuple[float, float, str]]:
    """Greedy label placement: first candidate spot that overlaps nothing."""
    m = _MARK + 3
    candidates = (
        (m, 4, "start"),  # right
        (-m, 4, "end"),  # left
        (0, -m - 2, "middle"),  # above
        (0, m + 10, "middle"),  # below
        (m - 2, -m, "start"),  # upper right
        (-m + 2, m + 8, "end"),  # lower left
        (m - 2, m + 8, "start"),  # lower right
        (-m + 2, -m, "end"),  # upper left
        (m, -m - 2, "end"),  # above, flush with the marker's right edge
        (m, m + 10, "end"),  # below, flush right
        (-m, -m - 2, "start"),  # above, flush left
        (-m, m + 10, "start"),  # below, flush left
        (0, -m - 14, "middle"),  # further above
        (0, m + 22, "middle"),  # further below
    )
    markers = [(x - m, y - m, x + m, y + m) for x, y in points]
    placed: list[tuple[float, float, float, float]] = []
    out = []
    for i, ((x, y), text) in enumerate(zip(points, texts, strict=True)):
        best = (math.inf, x, y, "start")
        for dx, dy, anchor in candidates:
            box = _label_box(x + dx, y + dy, text, anchor)
            cost = sum(_overlap(box, b) for b in placed)
            # Hiding another anchor's marker is worse than touching a label.
            cost += 3 * sum(_overlap(box, b) for j, b in enumerate(markers) if j != i)
            outside = (
                max(0.0, bounds[0] - box[0])
                + max(0.0, box[2] - bounds[2])
                + max(0.0, bounds[1] - box[1])
                + max(0.0, box[3] - bounds[3])
            )
            cost += 1000.0 * outside
            if cost < best[0]:
                best = (cost, x + dx, y + dy, anchor)
            if cost == 0:
                break
        _, lx, ly, anchor = best
        placed.append(_label_box(lx, ly, text, anchor))
        out.append((round(lx, 1), round(ly, 1), anchor))
    return out


def _scatter(
    boxes: npt.NDArray[np.float64],
    labels: npt.NDArray[np.intp],
    anchors: npt.NDArray[np.float64],
    shown: npt.NDArray[np.intp],
    colors: list[str],
    units: str,
    random_state: SeedLike,
) -> _Scatter:
    lb = np.log10(boxes)
    la = np.log10(anchors)
    lo = float(min(lb.min(), la.min()))
    hi = float(max(lb.max(), la.max()))
    pad = 0.04 * (hi - lo) if hi > lo else 0.25
    lo, hi = lo - pad, hi + pad
    scale = _PLOT / (hi - lo)
    left, top = _LEFT, _TOP
    right, bottom = _LEFT + _PLOT, _TOP + _PLOT

    def px(v: Any) -> Any:
        return left + (v - lo) * scale

    def py(v: Any) -> Any:
        return bottom - (v - lo) * scale

    ticks = _axis_ticks(lo, hi)
    xticks = [_Tick(round(float(px(t.pos)), 1), t.label, t.major) for t in ticks]
    yticks = [_Tick(round(float(py(t.pos)), 1), t.label, t.major) for t in ticks]

    guides = []
    for ratio, text in ((2.0, "1:2"), (1.0, "1:1"), (0.5, "2:1")):  # ratio = h / w
        off = math.log10(ratio)
        x1, x2 = max(lo, lo - off), min(hi, hi - off)
        if x2 - x1 <= 0:
            continue
        # Label near the upper end of the line, nudged inside the plot.
        t = x2 - 0.06 * (hi - lo)
        guides.append(
            _Guide(
                x1=round(float(px(x1)), 1),
                y1=round(float(py(x1 + off)), 1),
                x2=round(float(px(x2)), 1),
                y2=round(float(py(x2 + off)), 1),
                label=text,
                lx=round(float(px(t)), 1),
                ly=round(float(py(t + off)) - 4, 1),
            )
        )

    sx = np.round(px(lb[shown, 0]), 1)
    sy = np.round(py(lb[shown, 1]), 1)
    sl = labels[shown]
    groups = []
    for i in range(anchors.shape[0]):
        sel = sl == i
        dots = list(
            zip(
                np.char.mod("%g", sx[sel]).tolist(),
                np.char.mod("%g", sy[sel]).tolist(),
                strict=True,
            )
        )
        groups.append(_DotGroup(i, colors[i], int(sel.sum()), dots))

    pts = [(round(float(px(a)), 1), round(float(py(b)), 1)) for a, b in la.tolist()]
    texts = [
        f"#{i} {_fmt_dim(w)}{_TIMES}{_fmt_dim(h)}" for i, (w, h) in enumerate(anchors)
    ]
    spots = _place_labels(pts, texts, (left, top, right, bottom))
    markers = [
        _Marker(
            index=i,
            x=x,
            y=y,
            color=colors[i],
            label=texts[i],
            lx=lx,
            ly=ly,
            anchor=anchor,
            tip=f"anchor #{i}: {fmt_number(_round_sig(float(anchors[i, 0])))}"
            f" {_TIMES} {fmt_number(_round_sig(float(anchors[i, 1])))} {units}",
        )
        for i, ((x, y), (lx, ly, anchor)) in enumerate(zip(pts, spots, strict=True))
    ]

    n = boxes.shape[0]
    if shown.size == n:
        caption = f"All {n:,} boxes shown."
    else:
        seed = (
            f", random_state={random_state}"
            if isinstance(random_state, numbers.Integral)
            else ""
        )
        caption = (
            f"{shown.size:,} of {n:,} boxes shown (uniform random subsample{seed})."
        )
    return _Scatter(
        width=_LEFT + _PLOT + _RIGHT,
        height=_TOP + _PLOT + _BOTTOM,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        xticks=xticks,
        yticks=yticks,
        guides=guides,
        groups=groups,
        markers=markers,
        xlabel=f"width ({units})",
        ylabel=f"height ({units})",
        caption=caption,
    )


# --------------------------------------------------------------------------- #
# Nested rectangles sharing a centre
# --------------------------------------------------------------------------- #
def _shapes(anchors: npt.NDArray[np.float64], colors: list[str]) -> list[_Rect]:
    """Anchors to scale around the centre of a square, largest drawn first."""
    side = _SHAPES - 2 * _SHAPES_PAD
    scale = side / float(anchors.max())
    c = _SHAPES / 2
    order = np.argsort(-(anchors[:, 0] * anchors[:, 1]), kind="stable")
    rects = []
    for i in order.tolist():
        w, h = anchors[i] * scale
        rects.append(
            _Rect(
                index=i,
                x=round(c - w / 2, 1),
                y=round(c - h / 2, 1),
                width=round(max(w, 0.5), 1),
                height=round(max(h, 0.5), 1),
                color=colors[i],
                tip=f"#{i} {_fmt_dim(anchors[i, 0])}{_TIMES}{_fmt_dim(anchors[i, 1])}",
            )
        )
    return rects


def _frame_text(anchors: npt.NDArray[np.float64]) -> str:
    side = float(anchors.max()) * _SHAPES / (_SHAPES - 2 * _SHAPES_PAD)
    return _fmt_dim(side)


# --------------------------------------------------------------------------- #
# Formatting and resources
# --------------------------------------------------------------------------- #
def _round_sig(v: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits: 23.7391 -> 23.74."""
    if v == 0 or not math.isfinite(v):
        return v
    return round(v, digits - 1 - math.floor(math.log10(abs(v))))


def _fmt_dim(v: float) -> str:
    """Short size for labels: whole numbers from 10 up, else 3 significant digits."""
    v = float(v)
    if v >= 10:
        return f"{v:,.0f}"
    return f"{v:.3g}"
