"""HTML report of a segmentation run: image / prediction / ground-truth triplets."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.report._common import css, fmt_value, template, version
from clusterlens.report._iic import _line_chart
from clusterlens.report._thumbs import encode_thumbnail
from clusterlens.typing import PathLike
from clusterlens.utils._fs import atomic_write_text

__all__ = ["build_iic_seg_report", "segment_palette"]

logger = logging.getLogger(__name__)

#: Colours of the evaluated classes (then of unmatched clusters): distinct on
#: white and on photos (Okabe-Ito and Tableau hues).
_PALETTE = np.array(
    [
        (86, 180, 233), (140, 86, 75), (230, 159, 0), (0, 158, 115),
        (204, 121, 167), (213, 94, 0), (0, 114, 178), (240, 228, 66),
        (127, 127, 127), (188, 189, 34), (23, 190, 207), (148, 103, 189),
        (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210),
        (199, 199, 199), (219, 219, 141), (158, 218, 229), (31, 119, 180),
    ],
    dtype=np.uint8,
)  # fmt: skip
_IGNORED = np.array((0, 0, 0), dtype=np.uint8)
#: Longest side of each picture of a triplet, in pixels.
TRIPLET_SIDE = 300


def segment_palette(n: int) -> npt.NDArray[np.uint8]:
    """``n`` RGB colours (the palette repeats, darker, after 20)."""
    reps = -(-n // len(_PALETTE))
    tiles = [(_PALETTE * (0.75**r)).astype(np.uint8) for r in range(reps)]
    return np.concatenate(tiles)[:n]


def _hex(rgb: Any) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


def _picture(arr: npt.NDArray[np.uint8], nearest: bool) -> dict[str, Any]:
    from PIL import Image

    img = Image.fromarray(arr)
    w, h = img.size
    f = TRIPLET_SIDE / max(w, h)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    img = img.resize(
        size, Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    )
    return {"src": encode_thumbnail(img, 85), "width": size[0], "height": size[1]}


def build_iic_seg_report(
    path: PathLike,
    *,
    data: Any,
    material: Mapping[str, Any],
    summary: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] = (),
    params: Mapping[str, Any] | None = None,
    title: str = "clusterlens iic-seg report",
) -> pathlib.Path:
    """Write a self-contained HTML report of a per-pixel clustering.

    Parameters
    ----------
    path : str or os.PathLike
        Output file, replaced atomically.
    data : SegImages
        The images (paths, stems, own sizes).
    material : mapping
        From the pipeline: ``masks`` (index -> (cluster map, class map or
        None) of the images shown), ``table`` (the ClassTable or None) and,
        when scored, ``confusion`` (class x cluster pixel counts) and
        ``scores``.
    summary : mapping
        The run's results (accuracy, mIoU, ...).
    history : sequence of mappings
        Per-epoch training history (loss curves).
    params : mapping
        The run's parameters.
    title : str
        Page title.
    """
    from clusterlens.io import read_image

    table = material.get("table")
    scores = material.get("scores")
    k = int(summary["n_clusters"])
    n_classes = table.n_classes if table is not None else 0
    class_colours = segment_palette(max(n_classes, 1))
    # a cluster takes its matched class's colour; the others follow
    cluster_colours = np.zeros((k, 3), dtype=np.uint8)
    matched = np.full(k, -1)
    if scores is not None:
        for j, name in enumerate(table.class_names):  # type: ignore[union-attr]
            c = scores["match"][name]
            if c >= 0:
                matched[c] = j
    extra = segment_palette(n_classes + k)[n_classes:]
    free = iter(extra)
    for c in range(k):
        cluster_colours[c] = (
            class_colours[matched[c]] if matched[c] >= 0 else next(free)
        )
    triplets = []
    for i, (mask, classes) in sorted(material.get("masks", {}).items()):
        h, w = mask.shape
        photo = read_image(data.paths[i], mode="RGB", size=(h, w))
        pred = cluster_colours[mask]
        gt = None
        if classes is not None:
            gt_rgb = np.where(
                (classes >= 0)[..., None],
                class_colours[np.clip(classes, 0, None)],
                _IGNORED,
            ).astype(np.uint8)
            gt = _picture(gt_rgb, True)
        acc = None
        if scores is not None and classes is not None:
            keep = classes >= 0
            if keep.any():
                want = np.array(
                    [scores["match"][n] for n in table.class_names]  # type: ignore[union-attr]
                )[np.clip(classes, 0, None)]
                acc = float((want[keep] == mask[keep]).mean())
        triplets.append(
            {
                "stem": data.stems[i],
                "image": _picture(photo, False),
                "pred": _picture(pred, True),
                "gt": gt,
                "accuracy": None if acc is None else f"{acc:.3f}",
            }
        )
    confusion = None
    if scores is not None:
        m = np.asarray(material["confusion"], dtype=np.float64)
        rows = m.sum(axis=1, keepdims=True)
        share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        confusion = {
            "clusters": [
                {"id": c, "colour": _hex(cluster_colours[c])} for c in range(k)
            ],
            "rows": [
                {
                    "name": name,
                    "colour": _hex(class_colours[j]),
                    "pixels": f"{int(m[j].sum()):,}",
                    "iou": f"{scores['iou'][name]:.3f}",
                    "cells": [
                        {
                            "pct": f"{100 * share[j, c]:.1f}",
                            "alpha": f"{share[j, c]:.2f}",
                            "matched": scores["match"][name] == c,
                        }
                        for c in range(k)
                    ],
                }
                for j, name in enumerate(table.class_names)  # type: ignore[union-attr]
            ],
        }
    legend = []
    if table is not None:
        legend = [
            {"name": n, "colour": _hex(class_colours[j])}
            for j, n in enumerate(table.class_names)
        ]
        legend.append({"name": "ignored (not scored)", "colour": _hex(_IGNORED)})
    figures: list[tuple[str, str]] = []
    if scores is not None:
        figures += [
            ("pixel accuracy (Hungarian)", f"{summary['accuracy']:.4f}"),
            ("mIoU", f"{summary['miou']:.4f}"),
            ("majority class", f"{summary['majority_accuracy']:.4f}"),
            ("images scored", f"{summary['n_images_scored']:,}"),
            ("pixels scored", f"{summary['n_pixels_scored']:,}"),
        ]
    for key, label in (
        ("method", "method"),
        ("features", "features"),
        ("cnn_layers", "CNN maps"),
        ("epochs", "epochs"),
        ("head", "sub-head used (lowest loss)"),
        ("fit_seconds", "training seconds"),
        ("device", "device"),
    ):
        if key in summary:
            v = summary[key]
            text = ", ".join(map(str, v)) if isinstance(v, list) else fmt_value(v)
            figures.append((label, text))
    if summary.get("k_over"):
        figures.append(
            (
                "over-clustering",
                f"k-means into {int(summary['k_over'])} clusters, merged into "
                f"{k} segments (Ward linkage of the centres)",
            )
        )
    if "refine" in summary:
        figures.append(
            (
                "boundaries",
                "moved onto the photo's edges (guided filter)"
                if summary["refine"]
                else "as predicted (upsampled, not refined)",
            )
        )
    charts = []
    if history:
        epochs = [float(h["epoch"]) for h in history]
        series = {
            "main head loss (chosen sub-head)": [float(h["loss"]) for h in history]
        }
        if all("loss_over" in h for h in history):
            series["overclustering head loss (mean)"] = [
                float(h["loss_over"]) for h in history
            ]
        chart = _line_chart(
            "Loss per epoch (minus mutual information)", "loss", epochs, series
        )
        if chart is not None:
            charts.append(chart)
    html = template("iic_seg.html.j2").render(
        title=title,
        css=css(),
        summary=[
            ("images", f"{int(summary['n_images']):,}"),
            ("clusters", f"{k:,}"),
            ("used", f"{int(summary['n_clusters_used']):,}"),
        ],
        figures=figures,
        charts=charts,
        confusion=confusion,
        table_name=None if table is None else table.name,
        legend=legend,
        triplets=triplets,
        n_shown=len(triplets),
        params=[(str(a), fmt_value(b)) for a, b in (params or {}).items()],
        version=version(),
    )
    out = pathlib.Path(path)
    atomic_write_text(out, html)
    logger.info("Wrote segmentation report to %s", out)
    return out
