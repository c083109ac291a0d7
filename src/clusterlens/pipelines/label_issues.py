"""``clusterlens label-issues`` as a library call: features or boxes in, ranking out."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io import write_results, write_run_json
from clusterlens.io._safe import load_npy, read_parquet
from clusterlens.label_issues import (
    SCORE_COLUMNS,
    LabelIssues,
    find_label_issues,
    most_confused_class,
)
from clusterlens.label_issues._validation import check_class_name
from clusterlens.typing import PathLike
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils._progress import progress

__all__ = [
    "BoxSamples",
    "Embedder",
    "coco_box_samples",
    "crop_features",
    "crop_images",
    "label_studio_tasks",
    "read_features",
    "read_labels",
    "run_label_issues",
]

logger = logging.getLogger(__name__)

#: A function turning box crops ``(n, H, W, 3) uint8`` into features ``(n, d)``.
#: The default is the crop pixels; a CNN embedding (``clusterlens.features``)
#: plugs in here with the same signature.
Embedder = Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.floating]]


# --------------------------------------------------------------------------- #
# Inputs
# --------------------------------------------------------------------------- #
def read_features(path: PathLike) -> npt.NDArray[Any]:
    """Features from ``.npy`` (memory-mapped) or Parquet.

    A Parquet file holds one list column, or numeric columns (``index`` and
    ``label`` are skipped).
    """
    from clusterlens.io._descriptors import as_matrix

    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataValidationError(
                f"Cannot read features Parquet {str(p)!r}: {e}"
            ) from e
        import pyarrow as pa

        lists = [
            c
            for c in table.column_names
            if pa.types.is_list(table[c].type)
            or pa.types.is_fixed_size_list(table[c].type)
        ]
        if len(lists) == 1:
            col = table[lists[0]].to_pylist()
            X = np.asarray(col, dtype=np.float32)
        else:
            num = [
                c
                for c in table.column_names
                if pa.types.is_floating(table[c].type)
                or pa.types.is_integer(table[c].type)
            ]
            num = [c for c in num if c not in ("index", "label")]
            if not num:
                raise DataValidationError(
                    f"Features Parquet {str(p)!r} has no numeric columns and no "
                    "single list column to read as the feature matrix."
                )
            X = np.column_stack([table[c].to_numpy().astype(np.float32) for c in num])
        return as_matrix(X, name=f"features {str(p)!r}")
    if p.suffix.lower() != ".npy":
        raise DataValidationError(
            f"Features file {str(p)!r} must be .npy or .parquet; got "
            f"{p.suffix or 'no suffix'}."
        )
    return as_matrix(p, name=f"features {str(p)!r}")


def read_labels(path: PathLike) -> npt.NDArray[Any]:
    """Labels from ``.npy``, CSV (a ``label`` column, or the only column) or Parquet."""
    p = Path(path)
    if not p.is_file():
        raise DataValidationError(f"Labels file {str(p)!r} does not exist.")
    suffix = p.suffix.lower()
    fix = "save the labels again (one per row of the features)"
    if suffix == ".npy":
        return load_npy(
            p,
            what="labels file",
            fix=fix + " as a numeric or string array, no objects",
        )
    if suffix == ".parquet":
        table = read_parquet(p, what="labels Parquet", fix=fix)
        cols = list(table)
        name = "label" if "label" in cols else (cols[0] if len(cols) == 1 else None)
        if name is None:
            raise DataValidationError(
                f"Labels Parquet {str(p)!r} has columns {cols}; name the label "
                "column 'label' or keep only one column."
            )
        return table[name]
    if suffix in (".csv", ".txt"):
        import csv

        with p.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if not rows:
            raise DataValidationError(f"Labels CSV {str(p)!r} is empty.")
        header = [h.strip() for h in rows[0]]
        if "label" in header:
            j = header.index("label")
            body = rows[1:]
        elif len(header) == 1:
            j = 0
            body = rows[1:] if not _is_number(header[0]) else rows
        else:
            raise DataValidationError(
                f"Labels CSV {str(p)!r} has columns {header}; name the label "
                "column 'label' or keep only one column."
            )
        values = [r[j].strip() if j < len(r) else "" for r in body]
        if any(v == "" for v in values):
            bad = next(i for i, v in enumerate(values) if v == "")
            raise DataValidationError(
                f"Labels CSV {str(p)!r} has an empty label (data row {bad + 1})."
            )
        if all(_is_int(v) for v in values):
            return np.asarray([int(v) for v in values], dtype=np.int64)
        return np.asarray(values, dtype=str)
    raise DataValidationError(
        f"Labels file {str(p)!r} must be .npy, .csv or .parquet; got "
        f"{p.suffix or 'no suffix'}."
    )


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class BoxSamples:
    """One sample per non-crowd COCO box.

    Attributes
    ----------
    labels : ndarray of shape (n,), int64
        Category index into ``class_names``.
    class_names : tuple of str
    bbox : ndarray of shape (n, 4)
        ``[x, y, w, h]`` in pixels (COCO convention), clipped to the image.
    image_path : ndarray of shape (n,), str
    image_id, annotation_id : ndarray of shape (n,), str
    img_w, img_h : ndarray of shape (n,)
    """

    labels: npt.NDArray[np.int64]
    class_names: tuple[str, ...]
    bbox: npt.NDArray[np.float64]
    image_path: npt.NDArray[np.str_]
    image_id: npt.NDArray[np.str_]
    annotation_id: npt.NDArray[np.str_]
    img_w: npt.NDArray[np.float64]
    img_h: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def coco_box_samples(annotations: PathLike, images_dir: PathLike) -> BoxSamples:
    """Non-crowd boxes of a COCO instances file, with their image files.

    The file is checked by the shared COCO reader
    (:mod:`clusterlens.io._boxes_coco`); boxes keep the annotation order.

    Raises
    ------
    DataValidationError
        If the file is not a valid COCO instances file, has no non-crowd box,
        or an image it needs is missing from ``images_dir``.
    """
    from clusterlens.io._boxes_coco import load_coco_json as _load_coco
    from clusterlens.io._boxes_coco import parse_coco as _parse_coco

    path = Path(annotations)
    data = _load_coco(path)
    cols, names = _parse_coco(path, data, "")
    # boxes are clipped to their image and dropped when wholly outside it
    # (the rule of every box reader; _parse_coco warns about both)
    keep = ~cols["crowd"] & ~cols["outside"]
    if not keep.any():
        outside = int(np.count_nonzero(~cols["crowd"] & cols["outside"]))
        why = f" ({outside} lie wholly outside their image)" if outside else ""
        raise DataValidationError(
            f"COCO annotation file {str(path)!r} has no non-crowd boxes to rank{why}."
        )
    anns = [a for a, k in zip(data["annotations"], keep, strict=True) if k]
    xyxy = np.asarray(cols["xyxy"], dtype=np.float64)[keep]
    images = {im["id"]: im for im in data["images"]}
    root = Path(images_dir)
    if not root.is_dir():
        raise DataValidationError(
            f"Images folder {str(root)!r} does not exist or is not a folder."
        )
    files = [str(images[a["image_id"]].get("file_name", "")) for a in anns]
    unique_files = sorted(set(files))
    missing = [f for f in unique_files if not (root / f).is_file()]
    if missing:
        raise DataValidationError(
            f"{len(missing)} of the {len(unique_files)} images of {str(path)!r} are "
            f"not in {str(root)!r} (first: {missing[0]!r}). Pass the folder that "
            "holds the images with --images."
        )
    return BoxSamples(
        labels=cols["category"][keep].astype(np.int64),
        class_names=tuple(names),
        bbox=np.column_stack((xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2])),
        image_path=np.asarray([str(root / f) for f in files], dtype=np.str_),
        image_id=cols["image_id"][keep].astype(np.str_),
        annotation_id=np.asarray([str(a.get("id", "")) for a in anns], dtype=np.str_),
        img_w=cols["img_w"][keep],
        img_h=cols["img_h"][keep],
    )


def crop_images(
    boxes: BoxSamples, size: int = 32, *, verbose: int = 0
) -> npt.NDArray[np.uint8]:
    """Every box cropped from its image and resized to ``size x size`` RGB.

    Raises
    ------
    DataValidationError
        If an image cannot be decoded (every box needs its crop), naming the
        file and why (see :func:`clusterlens.io.decode_image`).
    """
    from PIL import Image

    from clusterlens.io._images import UnreadableImageError, decode_image

    out = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    order = np.argsort(boxes.image_path, kind="stable")
    paths = boxes.image_path[order]
    starts = np.flatnonzero(np.r_[True, paths[1:] != paths[:-1]])
    ends = np.r_[starts[1:], paths.size]
    for s, e in progress(
        list(zip(starts, ends, strict=True)), desc="crops", verbose=verbose
    ):
        path = str(paths[s])  # a plain str: messages show the path, not np.str_
        try:
            rgb = decode_image(path, mode="RGB")
        except UnreadableImageError as err:
            raise DataValidationError(
                f"Cannot crop the {e - s} box(es) of image {path!r}: {err.reason}. "
                "Fix or replace the image, or remove its annotations."
            ) from err
        for i in order[s:e]:
            x, y, w, h = boxes.bbox[i]
            box = (
                int(np.floor(x)),
                int(np.floor(y)),
                int(np.ceil(x + w)),
                int(np.ceil(y + h)),
            )
            crop = rgb.crop(box).resize((size, size), Image.Resampling.BILINEAR)
            out[i] = np.asarray(crop, dtype=np.uint8)
    return out


def crop_features(
    boxes: BoxSamples,
    size: int = 32,
    *,
    embed: Embedder | None = None,
    verbose: int = 0,
) -> npt.NDArray[np.float32]:
    """Features of every box: its crop's pixels in [0, 1], or ``embed(crops)``.

    ``embed`` is the hook for a learned embedding (the CNN of
    ``clusterlens.features``): it receives ``(n, size, size, 3)`` uint8 crops
    and returns ``(n, d)`` features.
    """
    crops = crop_images(boxes, size, verbose=verbose)
    if embed is not None:
        feats = np.asarray(embed(crops), dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != len(boxes):
            raise DataValidationError(
                f"The embedder returned shape {feats.shape}; expected "
                f"({len(boxes)}, n_features), one row per box."
            )
        return feats
    return crops.reshape(len(boxes), -1).astype(np.float32) / 255.0


# --------------------------------------------------------------------------- #
# Exports
# --------------------------------------------------------------------------- #
def label_studio_tasks(
    res: LabelIssues,
    names: Sequence[str],
    selected: npt.NDArray[np.int64],
    boxes: BoxSamples | None = None,
) -> list[dict[str, Any]]:
    """Label Studio tasks (JSON import format) for the ``selected`` samples.

    Boxes become image tasks with the box as a ``rectanglelabels``
    prediction carrying the given label (``/data/local-files/?d=`` URLs, for
    Label Studio's local file storage); other samples become ``choices``
    tasks pre-filled with the suggested label.
    """
    tasks: list[dict[str, Any]] = []
    for rank_i in selected.tolist():
        i = int(rank_i)
        given = names[int(res.labels[i])]
        suggested = names[int(res.suggested_label[i])]
        score = float(1.0 - res.label_quality[i])
        meta = {
            "index": i,
            "given_label": given,
            "suggested_label": suggested,
            "issue_rank": int(res.issue_rank[i]),
            "label_quality": round(float(res.label_quality[i]), 6),
        }
        if boxes is not None:
            x, y, w, h = boxes.bbox[i]
            W, H = float(boxes.img_w[i]), float(boxes.img_h[i])
            tasks.append(
                {
                    "data": {
                        "image": "/data/local-files/?d="
                        + os.path.abspath(boxes.image_path[i]).lstrip("/"),
                        "annotation_id": str(boxes.annotation_id[i]),
                        **meta,
                    },
                    "predictions": [
                        {
                            "model_version": "clusterlens-label-issues",
                            "score": score,
                            "result": [
                                {
                                    "from_name": "label",
                                    "to_name": "image",
                                    "type": "rectanglelabels",
                                    "original_width": int(W),
                                    "original_height": int(H),
                                    "value": {
                                        "x": 100.0 * x / W,
                                        "y": 100.0 * y / H,
                                        "width": 100.0 * w / W,
                                        "height": 100.0 * h / H,
                                        "rotation": 0,
                                        "rectanglelabels": [given],
                                    },
                                }
                            ],
                        }
                    ],
                }
            )
        else:
            tasks.append(
                {
                    "data": meta,
                    "predictions": [
                        {
                            "model_version": "clusterlens-label-issues",
                            "score": score,
                            "result": [
                                {
                                    "from_name": "label",
                                    "to_name": "item",
                                    "type": "choices",
                                    "value": {"choices": [suggested]},
                                }
                            ],
                        }
                    ],
                }
            )
    return tasks


def _label_studio_config(names: Sequence[str], boxes: bool) -> str:
    from xml.sax.saxutils import quoteattr

    labels = "\n".join(f"    <Label value={quoteattr(n)}/>" for n in names)
    choices = "\n".join(f"    <Choice value={quoteattr(n)}/>" for n in names)
    if boxes:
        return (
            '<View>\n  <Image name="image" value="$image"/>\n'
            '  <RectangleLabels name="label" toName="image">\n'
            f"{labels}\n  </RectangleLabels>\n</View>\n"
        )
    return (
        '<View>\n  <Text name="item" value="given: $given_label, suggested: '
        '$suggested_label (sample $index)"/>\n'
        '  <Choices name="label" toName="item" choice="single">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


# --------------------------------------------------------------------------- #
# The run
# --------------------------------------------------------------------------- #
def run_label_issues(
    X: Any,
    labels: Any,
    out_dir: PathLike,
    *,
    pred_probs: Any = None,
    class_name: str | None = "auto",
    top: int = 50,
    export: bool = False,
    boxes: BoxSamples | None = None,
    class_names: Sequence[str] | None = None,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Score, rank and write every output of ``clusterlens label-issues``.

    Parameters
    ----------
    X, labels, pred_probs
        As in :func:`clusterlens.label_issues.find_label_issues`.
    out_dir : path
        Existing empty folder (the CLI's staging folder): writes
        ``label_issues.parquet`` (one row per sample: ``index``, ``label``,
        every score of :data:`SCORE_COLUMNS`, ``issue_rank``),
        ``suspected.csv`` (flagged samples of the selected class, worst
        first, for relabellers), ``report.html``, ``run.json`` and with
        ``export`` ``label_studio.json`` + ``label_studio_config.xml``.
    class_name : str or None, default="auto"
        Class whose samples the report and exports focus on: a class name,
        ``"auto"`` (the class with the most off-diagonal confusion, as in
        the notebook) or ``None``/``"all"`` (every class).
    top : int, default=50
        Samples in the top and bottom galleries.
    boxes : BoxSamples, default=None
        For COCO boxes: the galleries show the notebook's three panels.
    class_names : sequence of str, default=None
        Display names for integer labels (``class_names[label]``).
    **params
        Passed to :func:`find_label_issues`.
    """
    from clusterlens.report._label_issues import build_label_issue_report

    out = Path(out_dir)
    t0 = time.perf_counter()
    res = find_label_issues(
        X,
        labels,
        pred_probs=pred_probs,
        random_state=random_state,
        verbose=verbose,
        **params,
    )
    k = res.classes.size
    if class_names is not None:
        names = [str(class_names[int(c)]) for c in res.classes.tolist()]
    else:
        names = [str(c) for c in res.classes.tolist()]
    interest, confused_with, rate = most_confused_class(
        res.labels, res.predicted_label, k
    )
    if class_name is None or class_name == "all":
        chosen: int | None = None
    elif class_name == "auto":
        chosen = interest
    else:
        chosen = check_class_name(class_name, res.classes, names)
    in_class = np.ones(len(res), dtype=bool) if chosen is None else res.labels == chosen
    members = np.flatnonzero(in_class)
    members = members[np.argsort(res.issue_rank[members], kind="stable")]
    top_n = min(top, members.size)
    top_idx = members[:top_n]
    bottom_idx = members[::-1][:top_n]
    flagged = members[res.is_label_issue[members]]

    names_arr = np.asarray(names, dtype=object)
    cols: dict[str, Any] = {"index": np.arange(len(res), dtype=np.int64)}
    if boxes is not None:
        cols["item_id"] = boxes.annotation_id.astype(str)
        cols["image_id"] = boxes.image_id.astype(str)
    cols["label"] = names_arr[res.labels].astype(str)
    for name, values in res.columns().items():
        if name in ("predicted_label", "suggested_label"):
            cols[name] = names_arr[values].astype(str)
        else:
            cols[name] = values
    write_results(out / "label_issues.parquet", cols)

    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["index", "label", "suggested_label", "issue_rank", "class_rank"]
    head += ["label_quality", "self_confidence", "neighbor_disagreement"]
    head += ["coreset_importance"]
    if boxes is not None:
        head += ["annotation_id", "image", "x", "y", "w", "h"]
    w.writerow(head)
    for i in flagged.tolist():
        row: list[Any] = [
            i,
            names[int(res.labels[i])],
            names[int(res.suggested_label[i])],
            int(res.issue_rank[i]),
            int(res.class_rank[i]),
            f"{res.label_quality[i]:.6f}",
            f"{res.self_confidence[i]:.6f}",
            f"{res.neighbor_disagreement[i]:.4f}",
            f"{res.coreset_importance[i]:.6f}",
        ]
        if boxes is not None:
            row += [str(boxes.annotation_id[i]), os.path.basename(boxes.image_path[i])]
            row += [f"{v:.2f}" for v in boxes.bbox[i]]
        w.writerow(row)
    atomic_write_text(out / "suspected.csv", buf.getvalue())
    outputs = ["label_issues.parquet", "suspected.csv", "report.html", "run.json"]
    if export:
        tasks = label_studio_tasks(res, names, flagged, boxes)
        atomic_write_text(out / "label_studio.json", json.dumps(tasks, indent=1) + "\n")
        atomic_write_text(
            out / "label_studio_config.xml",
            _label_studio_config(names, boxes is not None),
        )
        outputs += ["label_studio.json", "label_studio_config.xml"]

    class_label = "all classes" if chosen is None else names[chosen]
    summary: dict[str, Any] = {
        "n_samples": len(res),
        "n_classes": k,
        "class": class_label,
        "class_samples": int(members.size),
        "n_flagged": int(res.is_label_issue.sum()),
        "n_flagged_in_class": int(flagged.size),
        "most_confused": {
            "class_of_interest": names[interest],
            "confused_with": names[confused_with],
            "rate": rate,
        },
        "top": [
            {
                "index": int(i),
                "label": names[int(res.labels[i])],
                "suggested_label": names[int(res.suggested_label[i])],
                "issue_rank": int(res.issue_rank[i]),
                "label_quality": float(res.label_quality[i]),
            }
            for i in top_idx[: min(10, top_n)]
        ],
        "info": res.info,
    }
    build_label_issue_report(
        out / "report.html",
        res,
        names=names,
        members=members,
        top_idx=top_idx,
        bottom_idx=bottom_idx,
        boxes=boxes,
        title=f"clusterlens label issues: {class_label}",
        figures={
            "samples": len(res),
            "classes": k,
            "class shown": class_label,
            "samples in class": int(members.size),
            "flagged (all classes)": int(res.is_label_issue.sum()),
            "flagged in class": int(flagged.size),
            "most confused": f"{names[confused_with]} predicted as "
            f"{names[interest]} ({rate:.1%})",
            "cross-validated accuracy (given labels)": res.info[
                "cross_validated_accuracy"
            ],
            "PCA components (explained variance)": f"{res.info['pca_components']} "
            f"({res.info['pca_explained_variance']:.1%})",
            "neighbour search": res.info["neighbor_search"],
            "seconds": time.perf_counter() - t0,
        },
    )
    write_run_json(
        out / "run.json",
        {
            "schema": "clusterlens.label_issues/1",
            "command": "label-issues",
            **(command or {}),
            "parameters": {
                "class": class_name,
                "top": top,
                "export": export,
                **params,
            },
            "seed": random_state,
            "columns": {
                "index": "sample position in the input",
                "label": "given label",
                **SCORE_COLUMNS,
            },
            "timings": {
                **res.info["timings"],
                "total_seconds": time.perf_counter() - t0,
            },
            "results": {k2: v for k2, v in summary.items() if k2 != "info"},
            "info": res.info,
            "outputs": outputs,
        },
    )
    summary["outputs"] = outputs
    return summary
