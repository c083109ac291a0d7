"""Self-contained HTML report of a clustering of images, one card per cluster."""

from __future__ import annotations

import logging
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.report._charts import LineChart, fmt_compact, line_chart
from clusterlens.report._common import css, fmt_number, fmt_value, template, version
from clusterlens.report._thumbs import encode_thumbnail
from clusterlens.typing import ArrayLike, PathLike
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils.validation import check_int

__all__ = ["build_cluster_report"]

logger = logging.getLogger(__name__)

_OWNER = "build_cluster_report"
_PALETTE = ("#4c78a8", "#f58518", "#54a24b")  # top-3 label colours; "other" is grey
_TOP_LABELS = 3


# --------------------------------------------------------------------------- #
# What the template receives
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Thumb:
    index: int
    src: str
    width: int
    height: int
    title: str
    distance: str


@dataclass(frozen=True)
class _Segment:
    name: str
    count: int
    percent: float
    color: str


@dataclass(frozen=True)
class _Cluster:
    id: int
    size: int
    share: float
    majority: str | None
    purity: float | None
    segments: list[_Segment]
    mean_distance: str | None
    thumbs: list[_Thumb] = field(default_factory=list)
    n_hidden: int = 0
    note: str | None = None


# --------------------------------------------------------------------------- #
# Public function
# --------------------------------------------------------------------------- #
def build_cluster_report(
    path: PathLike,
    *,
    labels_pred: ArrayLike,
    images: ArrayLike | None = None,
    labels_true: ArrayLike | None = None,
    distances: ArrayLike | None = None,
    figures: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    title: str = "clusterlens report",
    class_names: Sequence[str] | Mapping[Any, str] | None = None,
    max_thumbnails: int = 40,
    thumb_size: int = 48,
    notes: Mapping[int, str] | None = None,
) -> pathlib.Path:
    """Write a self-contained HTML report of a clustering of images.

    The report has a summary (item and cluster counts, overall purity and the
    ``figures`` table), the inertia curve when ``history`` is given, the
    parameters in a collapsible table, and one card per cluster, largest
    first. Each card shows the cluster id and size and, when ``labels_true``
    is given, the majority label, the purity and a bar of the three most
    frequent labels. Below that is a grid of thumbnails, closest to the
    cluster centre first when ``distances`` is given, so the outliers come
    last. Images, CSS and the chart are inlined: the file opens from disk
    with no network access and no JavaScript.

    Parameters
    ----------
    path : str or os.PathLike
        Output file. Missing parent folders are created. An existing file is
        replaced atomically: the report is rendered to a temporary file in the
        same folder and moved into place with :func:`os.replace`.

    labels_pred : array-like of shape (n_samples,)
        Predicted cluster id of each item (integers; ``-1`` is allowed and
        shown as a cluster of its own, as for noise).

    images : array-like of shape (n_samples, H, W) or (n_samples, H, W, C), \
            default=None
        Images to show as thumbnails, with ``C`` in {1, 3, 4}. ``uint8`` is
        shown as it is; any other dtype (floats in [0, 1], digits in
        [0, 16], ...) is rescaled to [0, 255] with the minimum and maximum of
        the whole array. ``None`` gives a report without thumbnails.

    labels_true : array-like of shape (n_samples,), default=None
        Known labels (ints or strings). Enables the majority label, purity and
        label distribution of each cluster.

    distances : array-like of shape (n_samples,), default=None
        Distance of each item to its cluster centre. Thumbnails are sorted by
        it, closest first; NaN sorts last. ``None`` keeps the input order.

    figures : mapping of str to number or str, default=None
        Headline numbers (accuracy, NMI, ARI, inertia, seconds, ...) shown as
        a table at the top, in the mapping's order.

    history : sequence of mappings, default=None
        Per-iteration statistics such as ``KMeans.history_``; each entry needs
        the keys ``"iteration"`` and ``"inertia"``. Drawn as an inline SVG
        line chart.

    params : mapping of str to object, default=None
        Parameters of the run, shown in a collapsible table.

    title : str, default="clusterlens report"
        Page title and heading.

    class_names : sequence of str or mapping, default=None
        Display names of the labels in ``labels_true``: a sequence indexed by
        integer label, or a mapping from label to name (labels missing from
        it are shown as they are). Ignored when ``labels_true`` is None.

    max_thumbnails : int, default=40
        Largest number of thumbnails per cluster; ``0`` shows none.

    thumb_size : int, default=48
        Longest side of a thumbnail in pixels. Smaller images (8x8 digits)
        are enlarged with nearest-neighbour sampling so the pixels stay sharp;
        larger ones are reduced with Lanczos filtering.

    notes : mapping of int to str, default=None
        A line of text shown on the card of each cluster id it names (an LDA
        topic's top words, ...); escaped.

    Returns
    -------
    path : pathlib.Path
        The path of the written report.

    Raises
    ------
    DataValidationError
        If an array does not have one entry per item of ``labels_pred``,
        ``images`` is not 3-D or 4-D, values are not finite, or a ``history``
        entry lacks ``"iteration"`` or ``"inertia"``.
    InvalidParameterError
        If ``max_thumbnails`` or ``thumb_size`` is out of range.

    Notes
    -----
    Cluster sizes, majority labels and purities come from one contingency
    table built with :func:`numpy.bincount`, in O(n_samples + n_clusters *
    n_classes). Encoding the thumbnails costs O(n_clusters * max_thumbnails)
    PNG encodings, which dominates the run time.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> labels = np.array([0, 0, 1, 1, 1])
    >>> images = np.zeros((5, 8, 8), dtype=np.uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = build_cluster_report(
    ...         pathlib.Path(tmp) / "report.html", labels_pred=labels, images=images
    ...     )
    ...     out.read_text(encoding="utf-8").count('class="card cluster"')
    2
    """
    max_thumbnails = check_int(max_thumbnails, "max_thumbnails", _OWNER, low=0)
    thumb_size = check_int(thumb_size, "thumb_size", _OWNER, low=1, high=4096)
    if not isinstance(title, str):
        raise InvalidParameterError(
            f"The 'title' parameter of {_OWNER} must be a str. Got {title!r} instead."
        )

    pred = _check_labels_pred(labels_pred)
    n = pred.shape[0]
    imgs = _check_images(images, n)
    true = _check_1d(labels_true, "labels_true", n)
    dist = _check_distances(distances, n)
    hist = _check_history(history)

    cluster_ids, inverse, sizes = np.unique(
        pred, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    # Items grouped by cluster, closest to the centre first inside each group.
    key = dist if dist is not None else np.arange(n)
    order = np.lexsort((key, inverse))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))

    stats = _label_stats(true, inverse, cluster_ids.size, class_names)
    scale = _intensity_scale(imgs) if imgs is not None else None

    clusters: list[_Cluster] = []
    for c in sorted(range(cluster_ids.size), key=lambda c: (-sizes[c], cluster_ids[c])):
        size = int(sizes[c])
        members = order[starts[c] : starts[c] + size]
        shown = members[:max_thumbnails] if imgs is not None else members[:0]
        thumbs = [
            _thumb(imgs, scale, int(i), true, dist, stats, thumb_size)  # type: ignore[arg-type]
            for i in shown
        ]
        mean_d = None
        if dist is not None:
            finite = dist[members][np.isfinite(dist[members])]
            mean_d = fmt_number(float(finite.mean())) if finite.size else None
        clusters.append(
            _Cluster(
                id=int(cluster_ids[c]),
                size=size,
                share=100.0 * size / n,
                majority=stats.majority(c) if stats else None,
                purity=stats.purity(c) if stats else None,
                segments=stats.segments(c, size) if stats else [],
                mean_distance=mean_d,
                thumbs=thumbs,
                n_hidden=size - len(thumbs) if imgs is not None else 0,
                note=(notes or {}).get(int(cluster_ids[c])),
            )
        )

    summary: list[tuple[str, str]] = [
        ("items", f"{n:,}"),
        ("clusters", f"{cluster_ids.size:,}"),
    ]
    if stats is not None:
        summary.append(("classes", f"{stats.names.size:,}"))
        summary.append(("purity", f"{stats.overall_purity:.3f}"))

    html = template("clusters.html.j2").render(
        title=title,
        css=css(),
        summary=summary,
        figures=[(str(k), fmt_value(v)) for k, v in (figures or {}).items()],
        chart=_chart(hist) if hist else None,
        params=[(str(k), fmt_value(v)) for k, v in (params or {}).items()],
        clusters=clusters,
        has_images=imgs is not None,
        has_labels=stats is not None,
        has_distances=dist is not None,
        max_thumbnails=max_thumbnails,
        version=version(),
    )
    out = pathlib.Path(path)
    atomic_write_text(out, html)
    logger.info("Wrote cluster report with %d clusters to %s", len(clusters), out)
    return out


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
def _length_error(name: str, got: int, n: int) -> DataValidationError:
    return DataValidationError(
        f"{name} has {got} items but labels_pred has {n}; they must have one "
        "entry per item, in the same order."
    )


def _check_labels_pred(labels_pred: ArrayLike) -> npt.NDArray[np.int64]:
    pred = np.asarray(labels_pred)
    if pred.ndim != 1:
        raise DataValidationError(
            f"labels_pred must be 1-D of shape (n_samples,); got shape {pred.shape}."
        )
    if pred.size == 0:
        raise DataValidationError("labels_pred is empty; there is nothing to report.")
    if np.issubdtype(pred.dtype, np.integer):
        return pred.astype(np.int64, copy=False)
    if np.issubdtype(pred.dtype, np.floating) and np.all(pred == np.round(pred)):
        return pred.astype(np.int64)
    raise DataValidationError(
        f"labels_pred must hold integer cluster ids; got dtype {pred.dtype}. "
        "Use labels.astype(int)."
    )


def _check_1d(values: ArrayLike | None, name: str, n: int) -> npt.NDArray[Any] | None:
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataValidationError(
            f"{name} must be 1-D of shape (n_samples,); got shape {arr.shape}."
        )
    if arr.shape[0] != n:
        raise _length_error(name, arr.shape[0], n)
    if arr.dtype == object:  # mixed types would break np.unique's sort
        arr = arr.astype(str)
    return arr


def _check_distances(distances: ArrayLike | None, n: int) -> npt.NDArray[Any] | None:
    dist = _check_1d(distances, "distances", n)
    if dist is None:
        return None
    if not np.issubdtype(dist.dtype, np.number) or np.iscomplexobj(dist):
        raise DataValidationError(
            f"distances must be real numbers; got dtype {dist.dtype}."
        )
    return dist.astype(np.float64, copy=False)


def _check_images(images: ArrayLike | None, n: int) -> npt.NDArray[Any] | None:
    if images is None:
        return None
    arr = images if isinstance(images, np.ndarray) else np.asarray(images)
    if arr.ndim not in (3, 4):
        raise DataValidationError(
            "images must be 3-D of shape (n_samples, H, W) or 4-D of shape "
            f"(n_samples, H, W, C); got shape {arr.shape}."
        )
    if arr.ndim == 4 and arr.shape[3] not in (1, 3, 4):
        raise DataValidationError(
            "images must have 1, 3 or 4 channels in the last axis; got shape "
            f"{arr.shape}. Use np.moveaxis(images, 1, -1) for channels-first data."
        )
    if arr.shape[0] != n:
        raise _length_error("images", arr.shape[0], n)
    if min(arr.shape[1:3]) < 1:
        raise DataValidationError(f"images must not be empty; got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataValidationError(f"images must be numeric; got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise DataValidationError(f"images must be real; got dtype {arr.dtype}.")
    return arr


def _check_history(
    history: Sequence[Mapping[str, Any]] | None,
) -> list[tuple[float, float]]:
    if history is None:
        return []
    rows: list[tuple[float, float]] = []
    for i, entry in enumerate(history):
        if not isinstance(entry, Mapping):
            raise DataValidationError(
                f"history[{i}] must be a mapping with the keys 'iteration' and "
                f"'inertia'; got {type(entry).__name__}."
            )
        missing = [k for k in ("iteration", "inertia") if k not in entry]
        if missing:
            raise DataValidationError(
                f"history[{i}] lacks the key {missing[0]!r}; each entry needs "
                "'iteration' and 'inertia'."
            )
        try:
            x, y = float(entry["iteration"]), float(entry["inertia"])
        except (TypeError, ValueError) as e:
            raise DataValidationError(
                f"history[{i}] must have numeric 'iteration' and 'inertia'; got "
                f"{entry['iteration']!r} and {entry['inertia']!r}."
            ) from e
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataValidationError(
                f"history[{i}] has a non-finite 'iteration' or 'inertia' "
                f"({entry['iteration']!r}, {entry['inertia']!r})."
            )
        rows.append((x, y))
    return rows


# --------------------------------------------------------------------------- #
# Label statistics (one contingency table, no loop over items)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _LabelStats:
    names: npt.NDArray[Any]  # display name per class code
    codes: npt.NDArray[np.intp]  # class code per item
    table: npt.NDArray[np.int64]  # (n_clusters, n_classes) counts
    overall_purity: float

    def majority(self, c: int) -> str:
        return str(self.names[int(np.argmax(self.table[c]))])

    def purity(self, c: int) -> float:
        row = self.table[c]
        return float(row.max() / row.sum())

    def segments(self, c: int, size: int) -> list[_Segment]:
        row = self.table[c]
        top = np.argsort(-row, kind="stable")[:_TOP_LABELS]
        top = top[row[top] > 0]
        segs = [
            _Segment(str(self.names[j]), int(row[j]), 100.0 * row[j] / size, col)
            for j, col in zip(top, _PALETTE, strict=False)
        ]
        rest = size - sum(s.count for s in segs)
        if rest > 0:
            segs.append(_Segment("other", rest, 100.0 * rest / size, "#b9bec7"))
        return segs

    def name_of(self, i: int) -> str:
        return str(self.names[self.codes[i]])


def _label_stats(
    true: npt.NDArray[Any] | None,
    inverse: npt.NDArray[np.intp],
    n_clusters: int,
    class_names: Sequence[str] | Mapping[Any, str] | None,
) -> _LabelStats | None:
    if true is None:
        return None
    classes, codes = np.unique(true, return_inverse=True)
    codes = codes.reshape(-1)
    m = classes.size
    table = np.bincount(inverse * m + codes, minlength=n_clusters * m).reshape(
        n_clusters, m
    )
    overall = float(table.max(axis=1).sum() / true.shape[0])
    return _LabelStats(_display_names(classes, class_names), codes, table, overall)


def _display_names(
    classes: npt.NDArray[Any], class_names: Sequence[str] | Mapping[Any, str] | None
) -> npt.NDArray[Any]:
    if class_names is None:
        return np.array([str(c) for c in classes.tolist()], dtype=object)
    if isinstance(class_names, Mapping):
        return np.array(
            [str(class_names.get(c, c)) for c in classes.tolist()], dtype=object
        )
    if isinstance(class_names, str) or not isinstance(class_names, Iterable):
        raise InvalidParameterError(
            f"The 'class_names' parameter of {_OWNER} must be a sequence of str, a "
            f"mapping or None. Got {class_names!r} instead."
        )
    names = list(class_names)
    if not np.issubdtype(classes.dtype, np.integer):
        raise DataValidationError(
            "class_names given as a sequence needs integer labels_true to index it; "
            f"got labels of dtype {classes.dtype}. Pass a mapping from label to name."
        )
    bad = classes[(classes < 0) | (classes >= len(names))]
    if bad.size:
        raise DataValidationError(
            f"labels_true holds {bad.size} labels outside [0, {len(names)}), the "
            f"range of class_names (first: {bad[0]}). Pass one name per class."
        )
    return np.array([str(names[c]) for c in classes.tolist()], dtype=object)


# --------------------------------------------------------------------------- #
# Thumbnails
# --------------------------------------------------------------------------- #
def _intensity_scale(images: npt.NDArray[Any]) -> tuple[float, float] | None:
    """Return ``(low, high)`` for min-max scaling, or None for uint8 input."""
    if images.dtype == np.uint8:
        return None
    if images.dtype == bool:
        return (0.0, 1.0)
    lo, hi = float(np.min(images)), float(np.max(images))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DataValidationError(
            "images contain NaN or infinity; replace them (np.nan_to_num) first."
        )
    return lo, hi


def _to_uint8(img: npt.NDArray[Any], scale: tuple[float, float] | None) -> Any:
    if scale is None:
        return img
    lo, hi = scale
    if hi <= lo:  # a constant dataset: show it black
        return np.zeros(img.shape, dtype=np.uint8)
    out = (img.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _thumb(
    images: npt.NDArray[Any],
    scale: tuple[float, float] | None,
    i: int,
    true: npt.NDArray[Any] | None,
    dist: npt.NDArray[Any] | None,
    stats: _LabelStats | None,
    thumb_size: int,
) -> _Thumb:
    from PIL import Image

    pixels = _to_uint8(np.asarray(images[i]), scale)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    img = Image.fromarray(np.ascontiguousarray(pixels))
    h, w = pixels.shape[:2]
    factor = thumb_size / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if size != (w, h):
        resample = Image.Resampling.NEAREST if factor > 1 else Image.Resampling.LANCZOS
        img = img.resize(size, resample=resample)
    src = encode_thumbnail(img, 85)

    parts = [f"item {i}"]
    if stats is not None and true is not None:
        parts.append(f"label {stats.name_of(i)}")
    d = ""
    if dist is not None:
        d = fmt_number(float(dist[i]))
        parts.append(f"distance {d}")
    return _Thumb(i, src, size[0], size[1], " · ".join(parts), d)


# --------------------------------------------------------------------------- #
# Inertia chart (the shared builder of report._charts)
# --------------------------------------------------------------------------- #
def _chart(hist: list[tuple[float, float]]) -> LineChart | None:
    """The inertia per iteration (dots up to 200 iterations)."""
    return line_chart(
        [x for x, _ in hist],
        {"inertia": [y for _, y in hist]},
        tip=lambda _, x, y: f"iteration {fmt_number(x)}: inertia {fmt_number(y)}",
        title="Inertia per iteration",
        ylabel="inertia",
        size=(720, 260),
        margins=(72, 20, 16, 46),
        ytick_label=fmt_compact,
        any_xticks=True,
        max_dots=200,
    )
