"""HTML report of an IIC run: a grid per cluster and the training curves."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.report._charts import LineChart, line_chart
from clusterlens.report._clusters import (
    _check_images,
    _Cluster,
    _intensity_scale,
    _label_stats,
    _thumb,
)
from clusterlens.report._common import css, fmt_number, fmt_value, template, version
from clusterlens.typing import PathLike
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils.validation import check_int

__all__ = ["build_iic_report"]

logger = logging.getLogger(__name__)


def _line_chart(
    title: str, ylabel: str, x: Sequence[float], series: Mapping[str, Sequence[float]]
) -> LineChart | None:
    """A chart of one or more series over epochs (None when nothing to draw)."""
    return line_chart(
        x,
        series,
        tip=lambda name, e, v: f"{name}, epoch {fmt_number(e)}: {v:.4f}",
        title=title,
        ylabel=ylabel,
    )


def _scan_chart(
    scan_history: Sequence[Mapping[str, Any]], whose: str = "the clusters"
) -> LineChart | None:
    """The SCAN head's epochs (neighbour training, then self-labelling): its
    agreement with the labels when known, else its loss. ``whose``: what its
    clusters are (the run's, or the student's targets)."""
    xs = [float(i + 1) for i in range(len(scan_history))]
    keys = [m for m in ("accuracy", "nmi", "ari") if all(m in h for h in scan_history)]
    n_sl = sum(h.get("stage") == "self-label" for h in scan_history)
    tail = f"; epochs {len(xs) - n_sl + 1} to {len(xs)} self-labelling" if n_sl else ""
    if keys:
        return _line_chart(
            "The SCAN head's agreement with the known labels per epoch "
            f"({whose}; labels not used{tail})",
            "score",
            xs,
            {
                m.upper() if m != "accuracy" else m: [float(h[m]) for h in scan_history]
                for m in keys
            },
        )
    # no labels: the neighbour-consistency loss (self-labelling's
    # cross-entropy is on another scale)
    train = [h for h in scan_history if h.get("stage") != "self-label"]
    return _line_chart(
        f"The SCAN head's loss per epoch ({whose}; neighbour consistency + entropy)",
        "loss",
        xs[: len(train)],
        {"loss": [float(h["loss"]) for h in train]},
    )


def _student_chart(
    student_history: Sequence[Mapping[str, Any]],
) -> LineChart | None:
    """The student network's epochs: its agreement with the known labels when
    there are any, else its cross-entropy and its agreement with the clusters
    it learnt from."""
    xs = [float(h["epoch"]) for h in student_history]
    keys = [
        m for m in ("accuracy", "nmi", "ari") if all(m in h for h in student_history)
    ]
    if keys:
        return _line_chart(
            "The student network's agreement with the known labels per epoch "
            "(the clusters; labels not used)",
            "score",
            xs,
            {
                m.upper() if m != "accuracy" else m: [
                    float(h[m]) for h in student_history
                ]
                for m in keys
            },
        )
    return _line_chart(
        "The student network per epoch: cross-entropy on the confident images, "
        "and the share of all images it puts where the clusters it learnt from did",
        "value",
        xs,
        {
            "cross-entropy": [float(h["loss"]) for h in student_history],
            "agreement with the clusters": [
                float(h["agreement"]) for h in student_history
            ],
        },
    )


def _subhead_rows(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per main sub-head from the last epoch, lowest loss first."""
    if not history or not isinstance(history[-1].get("head_losses"), list):
        return []
    last = history[-1]
    losses = [float(v) for v in last["head_losses"]]
    accs = last.get("head_accuracies")
    if not (isinstance(accs, list) and len(accs) == len(losses)):
        accs = [None] * len(losses)
    restarts = np.zeros(len(losses), dtype=np.int64)
    for h in history:
        for i in h.get("restarted") or []:
            if 0 <= int(i) < len(losses):
                restarts[int(i)] += 1
    rows = [
        {
            "index": i,
            "loss": f"{loss:.4f}",
            "accuracy": None if acc is None else f"{float(acc):.4f}",
            "chosen": i == int(last.get("head", -1)),
            "restarts": int(restarts[i]),
        }
        for i, (loss, acc) in enumerate(zip(losses, accs, strict=True))
    ]
    return sorted(rows, key=lambda r: (float(r["loss"]), r["index"]))


def build_iic_report(
    path: PathLike,
    *,
    proba: npt.ArrayLike,
    images: npt.ArrayLike | None = None,
    labels_true: npt.ArrayLike | None = None,
    class_names: Sequence[str] | Mapping[Any, str] | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    scan_history: Sequence[Mapping[str, Any]] | None = None,
    student_history: Sequence[Mapping[str, Any]] | None = None,
    figures: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    title: str = "clusterlens iic report",
    max_thumbnails: int = 40,
    thumb_size: int = 48,
) -> pathlib.Path:
    """Write a self-contained HTML report of an IIC clustering.

    Parameters
    ----------
    path : str or os.PathLike
        Output file, replaced atomically.
    proba : array-like of shape (n_samples, n_clusters)
        Cluster probabilities; each image goes to its arg-max cluster and the
        thumbnails of a cluster run from the most to the least confident.
    images : array-like of shape (n_samples, H, W[, C]), default=None
        Images shown as thumbnails.
    labels_true : array-like of shape (n_samples,), default=None
        Known labels: majority label, purity and label bar per cluster.
    class_names : sequence or mapping, default=None
        Display names of the labels.
    history : sequence of mappings, default=()
        ``IIC.history_``: the loss curves (``loss``, ``loss_over``) and, when
        present, ``accuracy``/``nmi``/``ari`` per epoch; the last epoch's
        ``head_losses`` (and ``head_accuracies``) fill the sub-head table.
    scan_history : sequence of mappings, default=None
        ``IIC.scan_head_.history_`` when a SCAN head gives the clusters
        (``cluster_head="scan"``): its loss and, given labels, its agreement
        per epoch; the IIC charts and the sub-head table then say that they
        are IIC's, not the clusters'.
    student_history : sequence of mappings, default=None
        ``IIC.student_history_`` when a student network gives the clusters
        (``student_epochs``): its agreement with the labels per epoch, or
        without labels its loss and agreement with the clusters it learnt.
    figures, params : mapping, default=None
        Headline numbers and the run's parameters.
    title : str
        Page title.
    max_thumbnails, thumb_size : int
        Thumbnails per cluster and their longest side in pixels.

    Returns
    -------
    path : pathlib.Path
    """
    max_thumbnails = check_int(
        max_thumbnails, "max_thumbnails", "build_iic_report", low=0
    )
    thumb_size = check_int(
        thumb_size, "thumb_size", "build_iic_report", low=1, high=4096
    )
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise DataValidationError(
            f"proba must have shape (n_samples, n_clusters); got {p.shape}."
        )
    n, k = p.shape
    pred = p.argmax(axis=1)
    conf = p[np.arange(n), pred]
    imgs = _check_images(images, n)
    true = None
    if labels_true is not None:
        true = np.asarray(labels_true)
        if true.shape != (n,):
            raise DataValidationError(
                f"labels_true has shape {true.shape}; expected ({n},)."
            )
    sizes = np.bincount(pred, minlength=k)
    stats = _label_stats(true, pred, k, class_names)
    scale = _intensity_scale(imgs) if imgs is not None else None
    order = np.lexsort((-conf, pred))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))

    clusters = []
    for c in sorted(range(k), key=lambda c: (-sizes[c], c)):
        size = int(sizes[c])
        members = order[starts[c] : starts[c] + size]
        shown = members[:max_thumbnails] if imgs is not None else members[:0]
        thumbs = [
            _thumb(imgs, scale, int(i), true, None, stats, thumb_size)  # type: ignore[arg-type]
            for i in shown
        ]
        clusters.append(
            _Cluster(
                id=c,
                size=size,
                share=100.0 * size / n,
                majority=stats.majority(c) if stats and size else None,
                purity=stats.purity(c) if stats and size else None,
                segments=stats.segments(c, size) if stats and size else [],
                mean_distance=(f"{float(conf[members].mean()):.3f}" if size else None),
                thumbs=thumbs,
                n_hidden=size - len(thumbs) if imgs is not None else 0,
            )
        )

    all_epochs = [float(h["epoch"]) for h in history]
    # IIC epochs, then (optionally) self-labelling epochs with their own loss
    selfl = [h for h in history if h.get("phase") == "self-label"]
    history = [h for h in history if h.get("phase") != "self-label"]
    epochs = [float(h["epoch"]) for h in history]
    charts = []
    loss_series = {
        "main head loss (chosen sub-head)": [float(h["loss"]) for h in history]
    }
    if history and all("loss_over" in h for h in history):
        loss_series["overclustering head loss (mean)"] = [
            float(h["loss_over"]) for h in history
        ]
    charts.append(
        _line_chart(
            "Loss per epoch (minus mutual information)", "loss", epochs, loss_series
        )
    )
    every = [*history, *selfl]
    metric_keys = [
        m for m in ("accuracy", "nmi", "ari") if every and all(m in h for h in every)
    ]
    scan = scan_history is not None
    if metric_keys:
        title_tail = (
            f"; epochs {len(history) + 1} to {len(every)} self-labelling"
            if selfl
            else ""
        )
        whose = "The IIC sub-head's agreement" if scan else "Agreement"
        charts.append(
            _line_chart(
                f"{whose} with the known labels per epoch (labels not used"
                f"{title_tail})",
                "score",
                all_epochs,
                {
                    m.upper() if m != "accuracy" else m: [float(h[m]) for h in every]
                    for m in metric_keys
                },
            )
        )
    if selfl:
        series = {
            "share of images above the confidence": [
                float(h["confident_share"]) for h in selfl
            ]
        }
        ce = [h.get("self_label_loss") for h in selfl]
        if all(v is not None for v in ce):  # None: no target, nothing trained
            series["cross-entropy"] = [float(v) for v in ce]  # type: ignore[arg-type]
        charts.append(
            _line_chart(
                "Self-labelling per epoch: cross-entropy on the confident images "
                "and their share",
                "value",
                [float(h["epoch"]) for h in selfl],
                series,
            )
        )
    if scan_history:
        charts.append(
            _scan_chart(
                scan_history,
                "the student's targets" if student_history else "the clusters",
            )
        )
    if student_history:
        charts.append(_student_chart(student_history))
    subheads = _subhead_rows(history)
    per_head = [h.get("head_accuracies") for h in history]
    if subheads and all(isinstance(a, list) and a for a in per_head):
        acc = [np.asarray(a, dtype=np.float64) for a in per_head]  # type: ignore[arg-type]
        charts.append(
            _line_chart(
                f"Sub-heads' accuracy per epoch, {len(subheads)} sub-heads "
                "(labels not used)",
                "accuracy",
                epochs,
                {
                    "chosen sub-head (lowest loss)": [
                        float(a[int(h["head"])])
                        for a, h in zip(acc, history, strict=True)
                    ],
                    "best sub-head": [float(a.max()) for a in acc],
                    "median sub-head": [float(np.median(a)) for a in acc],
                    "worst sub-head": [float(a.min()) for a in acc],
                },
            )
        )
    summary = [
        ("items", f"{n:,}"),
        ("clusters", f"{k:,}"),
        ("non-empty", f"{int((sizes > 0).sum()):,}"),
    ]
    if stats is not None:
        summary.append(("purity", f"{stats.overall_purity:.3f}"))
    html = template("iic.html.j2").render(
        title=title,
        css=css(),
        summary=summary,
        figures=[(str(a), fmt_value(b)) for a, b in (figures or {}).items()],
        charts=[c for c in charts if c is not None],
        subheads=subheads,
        subheads_epoch=(
            f"IIC's last epoch, {len(history)}, before {len(selfl)} of "
            "self-labelling that trained the chosen one only"
            if selfl
            else "last epoch"
        ),
        subheads_role=(
            "the lowest-loss one is IIC's choice; the clusters come from the "
            + (
                "student network that learnt the SCAN head's"
                if student_history
                else "SCAN head on the trunk"
            )
            if scan
            else "the lowest-loss one is IIC's choice; the clusters come from "
            "the student network that learnt its"
            if student_history
            else "the lowest-loss one predicts"
        ),
        params=[(str(a), fmt_value(b)) for a, b in (params or {}).items()],
        clusters=clusters,
        version=version(),
    )
    out = pathlib.Path(path)
    atomic_write_text(out, html)
    logger.info("Wrote IIC report with %d clusters to %s", k, out)
    return out
