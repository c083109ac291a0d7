"""Write reviewed labels as COCO, YOLO, an ImageFolder tree, Label Studio tasks, CSV."""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
import re
import shutil
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io._workspace import Workspace
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils._progress import progress

__all__ = [
    "EXPORT_FORMATS",
    "FILE_MODES",
    "LOCAL_FILES_URL",
    "SKIP_REASONS",
    "describe_skipped",
    "export_labels",
    "label_studio_choice",
    "label_studio_config",
    "label_studio_prediction",
    "label_studio_rectangle",
    "label_studio_task",
    "local_files_url",
    "safe_folder_name",
    "write_label_studio",
]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("coco", "yolo", "imagefolder", "labelstudio", "csv")
#: How ImageFolder and YOLO exports bring the image files in.
FILE_MODES = ("symlink", "hardlink", "copy")
#: Why an item is left out of every export, in words.
SKIP_REASONS = {
    "duplicate": "marked duplicate (keep one)",
    "rejected": "rejected",
}
_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)
# Names Windows reserves whatever the extension (a folder "con" cannot be made).
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)
_MAX_NAME_BYTES = 200  # below the 255 bytes of a path component, with room


def safe_folder_name(label: str) -> str:
    """``label`` as one path component safe on Linux, macOS and Windows.

    Separators and other characters outside letters, digits, ``. - _`` and
    space become ``_``; leading and trailing dots and spaces go (no ``..``, no
    hidden folder); names Windows reserves (``con``, ``nul``, ``com1`` ...)
    get a trailing ``_``; the name is cut to 200 UTF-8 bytes.

    Examples
    --------
    >>> safe_folder_name("cat/dog"), safe_folder_name(".."), safe_folder_name("CON")
    ('cat_dog', '_', 'CON_')
    """
    name = _UNSAFE.sub("_", unicodedata.normalize("NFC", label)).strip(" .")
    if name.split(".")[0].lower() in _RESERVED:
        name += "_"
    raw = name.encode("utf-8")[:_MAX_NAME_BYTES]
    name = raw.decode("utf-8", errors="ignore").strip(" .")
    return name or "_"


# --------------------------------------------------------------------------- #
# What is exported: the items kept, their images
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Plan:
    """The items an export writes, and why the others are left out."""

    labels: list[str | None]  # None for skipped items too
    keep: npt.NDArray[np.bool_]
    skipped: dict[str, int]
    is_box: npt.NDArray[np.bool_]


def _plan(
    ws: Workspace, labels: Sequence[str | None], skip: Mapping[int, str]
) -> _Plan:
    n = len(ws)
    labs = [lab if lab else None for lab in labels]
    if len(labs) != n:
        raise DataValidationError(
            f"labels has {len(labs)} entries but the workspace has {n} items."
        )
    keep = np.ones(n, dtype=bool)
    skipped: dict[str, int] = {}
    for i, why in skip.items():
        if not 0 <= int(i) < n:
            raise DataValidationError(
                f"skip names item {i} but the workspace has {n} items."
            )
        if keep[int(i)]:
            keep[int(i)] = False
            skipped[str(why)] = skipped.get(str(why), 0) + 1
    for i in np.flatnonzero(~keep).tolist():
        labs[i] = None
    is_box = np.isfinite(np.asarray(ws.items["bbox_w"], dtype=np.float64))
    return _Plan(labels=labs, keep=keep, skipped=skipped, is_box=is_box)


class _LastImage:
    """The last image file decoded: the boxes of one image are cropped from one
    decode (coco128's 927 boxes: 128 decodes instead of 927)."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.image: Any = None

    def __call__(self, ws: Workspace, i: int) -> Any:
        from clusterlens.io._images import decode_image

        if int(ws.items["array_row"][i]) >= 0:
            return None
        path = str(ws.items["path"][i])
        if path != self.path:
            self.path, self.image = None, None
            self.image = decode_image(ws.image_root / path)
            self.path = path
        return self.image


def _array_png(
    ws: Workspace, i: int, folder: Path, last: _LastImage | None = None
) -> Path | None:
    """Write item ``i``'s pixels (an array row or a box crop) as a PNG."""
    from PIL import Image

    dst = folder / f"{i:07d}.png"
    if dst.exists():
        return dst
    try:
        pix = ws.read_item(i, image=None if last is None else last(ws, i))
    except (OSError, ValueError) as e:
        logger.warning("item %d unreadable: %s", i, e)
        return None
    dst.parent.mkdir(parents=True, exist_ok=True)
    # lossless; zlib level 1: coco128 photo crops encode ~2x faster than at
    # the default level 6, for 5 % more bytes
    Image.fromarray(pix).save(dst, compress_level=1)
    return dst


def _item_file(
    ws: Workspace, i: int, out: Path, last: _LastImage | None = None
) -> Path | None:
    """The file showing item ``i`` alone: the original image, or a PNG written
    under ``out/images`` for array sources and box crops."""
    rel = str(ws.items["path"][i])
    if rel and not np.isfinite(float(ws.items["bbox_w"][i])):
        return ws.image_root / rel
    return _array_png(ws, i, out / "images", last)


def _source_image(ws: Workspace, i: int, out: Path) -> tuple[str, Path] | None:
    """The whole image item ``i`` is (or is a box of): its key and file.

    Items of image files share their file's key (its path under the image
    root); array rows are written as PNG under ``out/images``.
    """
    rel = str(ws.items["path"][i])
    if rel:
        return rel, ws.image_root / rel
    f = _array_png(ws, i, out / "images")
    return None if f is None else (str(f.relative_to(out)), f)


def _bring(src: Path, dst: Path, files: str) -> None:
    """Put the file ``src`` at ``dst`` as a symlink, hard link or copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if files == "copy":
        shutil.copy2(src, dst)
        return
    if files == "symlink":
        os.symlink(src.resolve(), dst)
        return
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise DataValidationError(
                f"Cannot hard-link {str(src)!r} into {str(dst.parent)!r} ({e.strerror}"
                "): hard links need the images and the export on one file system "
                "that allows them. Use --link symlink or --copy."
            ) from e
        raise


def _check_files(files: str) -> None:
    if files not in FILE_MODES:
        raise InvalidParameterError(
            f"The 'files' parameter of export_labels must be one of "
            f"{', '.join(repr(m) for m in FILE_MODES)}. Got {files!r} instead."
        )


def _export_rel(rel: str, k: int) -> PurePosixPath:
    """Where a source image goes under ``images/`` (its own relative path,
    unless that could leave the folder)."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return PurePosixPath(f"{k:06d}_{safe_folder_name(p.name or 'image')}")
    return PurePosixPath(*(safe_folder_name(part) for part in p.parts))


# --------------------------------------------------------------------------- #
# CSV
# --------------------------------------------------------------------------- #
def _write_csv(
    ws: Workspace,
    plan: _Plan,
    cluster: npt.NDArray[np.int64],
    names: Mapping[int, str | None],
    out: Path,
) -> dict[str, Any]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "item_id", "path", "label", "cluster", "cluster_name"])
    for i in np.flatnonzero(plan.keep).tolist():
        c = int(cluster[i])
        w.writerow(
            [
                i,
                ws.items["item_id"][i],
                ws.items["path"][i],
                plan.labels[i] or "",
                c,
                names.get(c) or "",
            ]
        )
    atomic_write_text(out / "labels.csv", buf.getvalue())
    return {"files": ["labels.csv"], "n_rows": int(plan.keep.sum())}


def _categories(labels: Sequence[str | None]) -> list[str]:
    return sorted({lab for lab in labels if lab})


# --------------------------------------------------------------------------- #
# COCO
# --------------------------------------------------------------------------- #
def _item_bbox(ws: Workspace, i: int) -> list[float]:
    bw = float(ws.items["bbox_w"][i])
    if np.isfinite(bw):
        x, y = float(ws.items["bbox_x"][i]), float(ws.items["bbox_y"][i])
        return [x, y, bw, float(ws.items["bbox_h"][i])]
    return [0.0, 0.0, float(ws.items["width"][i]), float(ws.items["height"][i])]


def _write_coco(ws: Workspace, plan: _Plan, out: Path, verbose: int) -> dict[str, Any]:
    cats = _categories(plan.labels)
    cat_id = {name: j + 1 for j, name in enumerate(cats)}
    images: list[dict[str, Any]] = []
    image_id: dict[str, int] = {}
    anns = []
    kept = np.flatnonzero(plan.keep)
    for i in progress(kept.tolist(), total=kept.size, desc="coco", verbose=verbose):
        src = _source_image(ws, i, out)
        if src is None:
            continue
        key = src[0]
        if key not in image_id:
            image_id[key] = len(images) + 1
            images.append(
                {
                    "id": image_id[key],
                    "file_name": key,
                    "width": int(ws.items["width"][i]),
                    "height": int(ws.items["height"][i]),
                }
            )
        lab = plan.labels[i]
        if not lab:
            continue
        bbox = _item_bbox(ws, i)
        anns.append(
            {
                "id": i + 1,
                "image_id": image_id[key],
                "category_id": cat_id[lab],
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
                "item_id": str(ws.items["item_id"][i]),
            }
        )
    doc = {
        "info": {"description": "labels reviewed with clusterlens", "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": cat_id[n], "name": n} for n in cats],
    }
    atomic_write_text(out / "annotations.json", json.dumps(doc) + "\n")
    root = "" if ws.image_root == Path("") else str(ws.image_root)
    return {
        "files": ["annotations.json"],
        "image_root": root or str(out),
        "n_images": len(images),
        "n_annotations": len(anns),
    }


# --------------------------------------------------------------------------- #
# YOLO
# --------------------------------------------------------------------------- #
def _yaml_str(s: str) -> str:
    """A YAML scalar for ``s`` (a JSON string is a valid YAML one)."""
    return json.dumps(s, ensure_ascii=False)


def _write_yolo(
    ws: Workspace, plan: _Plan, out: Path, final: Path, files: str, verbose: int
) -> dict[str, Any]:
    if not plan.is_box.any():
        raise DataValidationError(
            f"YOLO labels are boxes, and the workspace {str(ws.root)!r} holds whole "
            "images (no item is a box). For boxes ingest a COCO file with "
            "`clusterlens ingest COCO.json --boxes`; for whole-image classes use "
            "--format imagefolder (the layout YOLO classification trains on)."
        )
    sel = plan.keep & plan.is_box
    idx = np.flatnonzero(sel)
    paths = np.asarray(ws.items["path"], dtype=object)[idx].astype(str)
    labelled = np.array([plan.labels[i] is not None for i in idx.tolist()], bool)
    # one image per source file; an image is written only when every box of it
    # that is kept has a reviewed label (a missing line would teach the detector
    # that an object is background)
    keys, inv = np.unique(paths, return_inverse=True)
    n_unlab = np.bincount(inv, weights=~labelled, minlength=keys.size)
    complete = n_unlab[inv] == 0
    cats = _categories([plan.labels[i] for i in idx[complete].tolist()])
    cls = {name: j for j, name in enumerate(cats)}
    W = np.asarray(ws.items["width"], dtype=np.float64)[idx]
    H = np.asarray(ws.items["height"], dtype=np.float64)[idx]
    x, y, bw, bh = (
        np.asarray(ws.items[c], dtype=np.float64)[idx]
        for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
    )
    xywhn = np.clip(
        np.column_stack(((x + bw / 2) / W, (y + bh / 2) / H, bw / W, bh / H)), 0, 1
    )
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(keys.size + 1))
    written: list[str] = []
    n_boxes = 0
    lab_dir, img_dir = out / "labels", out / "images"
    lab_dir.mkdir(parents=True, exist_ok=True)
    for k in progress(range(keys.size), total=keys.size, desc="yolo", verbose=verbose):
        rows = order[bounds[k] : bounds[k + 1]]
        if not complete[rows[0]]:
            continue
        rel = _export_rel(str(keys[k]), k)
        src = ws.image_root / str(keys[k])
        if not src.is_file():
            logger.warning("image %s is gone; left out of the YOLO export", src)
            continue
        _bring(src, img_dir / rel, files)
        lines = [
            f"{cls[plan.labels[int(idx[r])]]} "  # type: ignore[index]
            + " ".join(f"{v:.6f}" for v in xywhn[r])
            for r in rows.tolist()
        ]
        atomic_write_text((lab_dir / rel).with_suffix(".txt"), "\n".join(lines) + "\n")
        written.append(str(rel))
        n_boxes += rows.size
    atomic_write_text(lab_dir / "classes.txt", "".join(f"{c}\n" for c in cats))
    # an absolute root: Ultralytics reads a relative 'path' from its datasets
    # folder, not from the folder of data.yaml
    yaml = "# written by clusterlens export --format yolo\n"
    yaml += f"path: {_yaml_str(str(final.resolve()))}\n"
    yaml += "train: images\nval: images\nnames:\n"
    yaml += "".join(f"  {j}: {_yaml_str(c)}\n" for j, c in enumerate(cats))
    atomic_write_text(out / "data.yaml", yaml)
    n_partial = int((n_unlab > 0).sum())
    return {
        "files": ["data.yaml", "labels/classes.txt", "labels/", "images/"],
        "n_images": len(written),
        "n_boxes": n_boxes,
        "n_images_incomplete": n_partial,
        "n_whole_images_left_out": int((plan.keep & ~plan.is_box).sum()),
    }


# --------------------------------------------------------------------------- #
# ImageFolder
# --------------------------------------------------------------------------- #
def _write_imagefolder(
    ws: Workspace, plan: _Plan, out: Path, files: str, verbose: int
) -> dict[str, Any]:
    n_written = 0
    used: dict[str, str] = {}
    todo = np.array(
        [i for i in np.flatnonzero(plan.keep).tolist() if plan.labels[i]], np.int64
    )
    # by image file, so that the boxes of an image are cut from one decode
    paths = np.asarray(ws.items["path"], dtype=object)[todo].astype(str)
    todo = todo[np.argsort(paths, kind="stable")]
    last = _LastImage()
    for i in progress(
        todo.tolist(), total=todo.size, desc="imagefolder", verbose=verbose
    ):
        lab = str(plan.labels[i])
        folder = safe_folder_name(lab)
        # case-insensitive: "Cat" and "cat" are one folder on macOS and Windows
        if used.setdefault(folder.casefold(), lab) != lab:
            raise DataValidationError(
                f"Labels {used[folder.casefold()]!r} and {lab!r} map to the same "
                f"folder name {folder!r} (folder names are compared ignoring case); "
                "rename one of them in the review."
            )
        src = _item_file(ws, i, out / ".images", last)
        if src is None:
            continue
        dst = out / folder / f"{i:07d}_{Path(src).name}"
        if src.is_relative_to(out):
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        else:
            _bring(src, dst, files)
        n_written += 1
    shutil.rmtree(out / ".images", ignore_errors=True)
    folders = sorted({safe_folder_name(lab) for lab in used.values()})
    return {"files": folders, "n_images": n_written}


def _final(p: Path, out: Path, final: Path) -> Path:
    """Where ``p`` will be once the folder ``out`` has become ``final``."""
    p = p.resolve()
    base = out.resolve()
    return final.resolve() / p.relative_to(base) if p.is_relative_to(base) else p


# --------------------------------------------------------------------------- #
# Label Studio (the one exporter: review exports, label-issues, sample picks)
# --------------------------------------------------------------------------- #
#: Label Studio's URL prefix for a file served by its local file storage.
LOCAL_FILES_URL = "/data/local-files/?d="


def local_files_url(path: str | os.PathLike[str]) -> str:
    """The Label Studio URL of an absolute ``path`` (local file storage)."""
    return LOCAL_FILES_URL + os.fspath(path).lstrip("/")


def label_studio_choice(
    choice: str, *, to_name: str = "image", result_id: str | None = None
) -> dict[str, Any]:
    """A ``choices`` result: ``choice`` picked for the object ``to_name``."""
    out: dict[str, Any] = {} if result_id is None else {"id": result_id}
    out.update(
        {
            "from_name": "label",
            "to_name": to_name,
            "type": "choices",
            "value": {"choices": [choice]},
        }
    )
    return out


def label_studio_rectangle(
    label: str,
    xywh: Sequence[float],
    width: float,
    height: float,
    *,
    result_id: str | None = None,
    score: float | None = None,
) -> dict[str, Any]:
    """A ``rectanglelabels`` result: box ``xywh`` (pixels) of a ``width x height``
    image labelled ``label`` (Label Studio wants percentages of the image);
    ``score`` is the region's own score (predictions only)."""
    x, y, w, h = xywh
    out: dict[str, Any] = {} if result_id is None else {"id": result_id}
    out.update(
        {
            "from_name": "label",
            "to_name": "image",
            "type": "rectanglelabels",
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {
                "x": 100.0 * x / width,
                "y": 100.0 * y / height,
                "width": 100.0 * w / width,
                "height": 100.0 * h / height,
                "rotation": 0,
                "rectanglelabels": [label],
            },
        }
    )
    if score is not None:
        out["score"] = float(score)
    return out


def label_studio_prediction(
    results: Sequence[Mapping[str, Any]],
    *,
    model_version: str,
    score: float | None = None,
) -> dict[str, Any]:
    """One entry of a task's ``predictions``: ``results`` made by ``model_version``
    with an overall ``score`` (Label Studio sorts and filters tasks by it)."""
    pred: dict[str, Any] = {"model_version": model_version}
    if score is not None:
        pred["score"] = float(score)
    pred["result"] = [dict(r) for r in results]
    return pred


def label_studio_task(
    data: Mapping[str, Any],
    *,
    result: Mapping[str, Any] | None = None,
    model_version: str = "clusterlens",
    score: float | None = None,
    task_id: int | None = None,
    meta: Mapping[str, Any] | None = None,
    annotation: Sequence[Mapping[str, Any]] | None = None,
    predictions: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """One Label Studio task (JSON import format).

    Parameters
    ----------
    data : mapping
        The task's ``data`` (``image`` for image tasks; what the labelling
        config's ``$names`` refer to).
    result : mapping, default=None
        A pre-annotation (:func:`label_studio_choice`,
        :func:`label_studio_rectangle`), written as the task's one
        prediction; None: no prediction.
    model_version : str, default="clusterlens"
        Who made the ``result`` prediction.
    score : float, default=None
        The ``result`` prediction's score (Label Studio sorts by it), if any.
    task_id : int, default=None
        The task's ``id``, if any.
    meta : mapping, default=None
        The task's ``meta`` (shown to the annotator, not labelled), if any.
    annotation : sequence of mapping, default=None
        The results of one finished annotation (labels a person gave), written
        as the task's ``annotations``; None or empty: none.
    predictions : sequence of mapping, default=None
        Predictions (:func:`label_studio_prediction`) after the ``result`` one.
    """
    task: dict[str, Any] = {}
    if task_id is not None:
        task["id"] = task_id
    task["data"] = dict(data)
    if meta is not None:
        task["meta"] = dict(meta)
    if annotation:
        task["annotations"] = [
            {
                "result": [dict(r) for r in annotation],
                "was_cancelled": False,
                "ground_truth": False,
            }
        ]
    preds = []
    if result is not None:
        preds.append(
            label_studio_prediction([result], model_version=model_version, score=score)
        )
    preds += [dict(p) for p in predictions or ()]
    if preds:
        task["predictions"] = preds
    return task


def label_studio_config(
    names: Sequence[str], *, control: str = "choices", text: str | None = None
) -> str:
    """A Label Studio labelling config (XML) for ``names``.

    ``control`` is ``"choices"`` (one label per task) or ``"rectangles"``
    (labelled boxes on the image). The object labelled is the task's image,
    or with ``text`` a text line built from the task's data (``$field``).
    """
    from xml.sax.saxutils import quoteattr

    if text is None:
        obj, to = '  <Image name="image" value="$image"/>\n', "image"
    else:
        obj, to = f'  <Text name="item" value={quoteattr(text)}/>\n', "item"
    if control == "rectangles":
        labels = "\n".join(f"    <Label value={quoteattr(n)}/>" for n in names)
        ctrl = (
            f'  <RectangleLabels name="label" toName="{to}">\n'
            f"{labels}\n  </RectangleLabels>\n"
        )
    elif control == "choices":
        choices = "\n".join(f"    <Choice value={quoteattr(n)}/>" for n in names)
        ctrl = (
            f'  <Choices name="label" toName="{to}" choice="single">\n'
            f"{choices}\n  </Choices>\n"
        )
    else:
        raise InvalidParameterError(
            f"Unknown Label Studio control {control!r}; use 'choices' or 'rectangles'."
        )
    return f"<View>\n{obj}{ctrl}</View>\n"


def write_label_studio(
    out: str | os.PathLike[str],
    tasks: Sequence[Mapping[str, Any]],
    *,
    config: str | None = None,
    tasks_file: str = "tasks.json",
    config_file: str = "label_config.xml",
) -> list[str]:
    """Write ``tasks`` (and the labelling ``config``) into the folder ``out``.

    Returns the names of the files written.
    """
    dst = Path(os.fspath(out))
    atomic_write_text(dst / tasks_file, json.dumps(list(tasks), indent=1) + "\n")
    if config is None:
        return [tasks_file]
    atomic_write_text(dst / config_file, config)
    return [tasks_file, config_file]


#: model_version of the two kinds of suggestion a review export carries.
CLUSTER_MODEL = "clusterlens-clusters"
ISSUES_MODEL = "clusterlens-label-issues"


def _ls_results(
    ws: Workspace,
    i: int,
    label: str,
    rid: str,
    box: bool,
    score: float | None = None,
) -> dict[str, Any]:
    if not box:
        return label_studio_choice(label, result_id=rid)
    return label_studio_rectangle(
        label,
        _item_bbox(ws, i),
        float(ws.items["width"][i]),
        float(ws.items["height"][i]),
        result_id=rid,
        score=score,
    )


def _mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def _write_labelstudio(
    ws: Workspace,
    plan: _Plan,
    cluster: npt.NDArray[np.int64],
    names: Mapping[int, str | None],
    scores: npt.NDArray[np.float64] | None,
    suggestions: Mapping[int, tuple[str, float | None]],
    out: Path,
    final: Path,
    verbose: int,
) -> dict[str, Any]:
    kept = np.flatnonzero(plan.keep)
    box = bool(plan.is_box[kept].any()) if kept.size else False
    # one task per whole image: a box workspace's boxes are rectangles on their
    # source image, as Label Studio shows them (not one task per crop)
    groups: dict[str, list[int]] = {}
    files: dict[str, Path] = {}
    for i in kept.tolist():
        src = _source_image(ws, i, out)
        if src is None:
            continue
        groups.setdefault(src[0], []).append(i)
        files[src[0]] = src[1]
    cats: set[str] = set(_categories(plan.labels))
    tasks = []
    n_ann = n_pred = 0
    for t, (key, items) in enumerate(
        progress(groups.items(), total=len(groups), desc="labelstudio", verbose=verbose)
    ):
        ann, by_cluster, by_issue = [], [], []
        c_scores: list[float] = []
        i_scores: list[float] = []
        for i in items:
            ib = bool(plan.is_box[i])
            if plan.labels[i]:
                ann.append(_ls_results(ws, i, str(plan.labels[i]), f"{i}-label", ib))
            c = int(cluster[i])
            name = names.get(c) if c >= 0 else None
            s = None if scores is None or not np.isfinite(scores[i]) else scores[i]
            if name:
                cats.add(name)
                by_cluster.append(_ls_results(ws, i, name, f"{i}-cluster", ib, s))
                if s is not None:
                    c_scores.append(float(s))
            if i in suggestions:
                lab, sc = suggestions[i]
                cats.add(lab)
                by_issue.append(_ls_results(ws, i, lab, f"{i}-issue", ib, sc))
                if sc is not None:
                    i_scores.append(float(sc))
        preds = []
        if by_cluster:
            preds.append(
                label_studio_prediction(
                    by_cluster, model_version=CLUSTER_MODEL, score=_mean(c_scores)
                )
            )
        if by_issue:
            preds.append(
                label_studio_prediction(
                    by_issue, model_version=ISSUES_MODEL, score=_mean(i_scores)
                )
            )
        n_ann += bool(ann)
        n_pred += bool(preds)
        data: dict[str, Any] = {
            "image": local_files_url(_final(files[key], out, final)),
        }
        if box or len(items) > 1:
            data["items"] = [str(ws.items["item_id"][i]) for i in items]
        else:
            i = items[0]
            data["index"] = i
            data["item_id"] = str(ws.items["item_id"][i])
            data["cluster"] = int(cluster[i])
        tasks.append(
            label_studio_task(data, task_id=t + 1, annotation=ann, predictions=preds)
        )
    config = label_studio_config(
        sorted(cats), control="rectangles" if box else "choices"
    )
    files_written = write_label_studio(out, tasks, config=config)
    return {
        "files": files_written,
        "n_tasks": len(tasks),
        "n_annotated": n_ann,
        "n_predicted": n_pred,
    }


# --------------------------------------------------------------------------- #
# The entry point
# --------------------------------------------------------------------------- #
def export_labels(
    ws: Workspace,
    labels: Sequence[str | None],
    out: str | os.PathLike[str],
    *,
    fmt: str,
    cluster: npt.ArrayLike | None = None,
    cluster_names: Mapping[int, str | None] | None = None,
    skip: Mapping[int, str] | None = None,
    scores: npt.ArrayLike | None = None,
    suggestions: Mapping[int, tuple[str, float | None]] | None = None,
    files: str = "symlink",
    final: str | os.PathLike[str] | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Write the labels of a workspace's items in one of five formats.

    Parameters
    ----------
    ws : Workspace
    labels : sequence of str or None, of length n_items
        The label of each item; None (or "") when it has none.
    out : str or os.PathLike
        An existing, empty folder to write into (the CLI passes a staging folder).
    fmt : {"coco", "yolo", "imagefolder", "labelstudio", "csv"}
        "coco" writes ``annotations.json``: one image entry per source image
        and one annotation per labelled item (a box item's box as in its
        source image, a whole image's full frame). "yolo" writes
        ``images/``, ``labels/`` (one ``class cx cy w h`` line per box,
        normalised by the image size), ``labels/classes.txt`` and
        ``data.yaml``, for box workspaces only; an image is written only when
        every kept box of it has a label. "imagefolder" writes one sub-folder
        per label (a safe name, :func:`safe_folder_name`) with each item's
        image or box crop. "labelstudio" writes ``tasks.json`` (one task per
        image; labels as ``annotations``, cluster names and label-issue
        suggestions as ``predictions`` with ``model_version`` and ``score``)
        and ``label_config.xml``. "csv" writes ``labels.csv`` (index,
        item_id, path, label, cluster, cluster_name). Array sources (IDX,
        .npz) and box crops are written as PNG files.
    cluster : array-like of shape (n_items,), default=None
        The cluster of each item (-1: none).
    cluster_names : mapping of int to str or None, default=None
        The name of each cluster.
    skip : mapping of int to str, default=None
        Items left out of the export, with why (e.g. ``"duplicate"``,
        ``"rejected"``, see :data:`SKIP_REASONS`); the summary counts them.
    scores : array-like of shape (n_items,), default=None
        How sure the cluster-name suggestion of each item is, in [0, 1] (NaN:
        unknown); the ``score`` of the Label Studio predictions.
    suggestions : mapping of int to (str, float or None), default=None
        Another suggested label per item (e.g. a label-issues fix) and its
        score; written as a second Label Studio prediction.
    files : {"symlink", "hardlink", "copy"}, default="symlink"
        How ImageFolder and YOLO exports bring in the image files: symbolic
        links (to the absolute path), hard links (same file system only), or
        copies.
    final : str or os.PathLike, default=None
        Where ``out`` will be moved once written (for the absolute image paths
        of Label Studio tasks and the root in YOLO's ``data.yaml``); default:
        ``out``.
    verbose : int, default=0

    Returns
    -------
    summary : dict
        ``format``, ``n_items``, ``n_labelled`` (labelled items exported),
        ``skipped`` (reason -> count), ``n_skipped``, ``files`` written and
        per-format counts.

    Raises
    ------
    InvalidParameterError
        If ``fmt`` or ``files`` is unknown.
    DataValidationError
        If ``labels`` does not have one entry per item, ``skip`` names an
        item that does not exist, two labels map to one ImageFolder folder, or
        a YOLO export is asked of a workspace without boxes.
    """
    if fmt not in EXPORT_FORMATS:
        import difflib

        close = difflib.get_close_matches(str(fmt), EXPORT_FORMATS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(
            f"Unknown export format {fmt!r}.{hint} Available: "
            f"{', '.join(EXPORT_FORMATS)}."
        )
    _check_files(files)
    n = len(ws)
    plan = _plan(ws, labels, skip or {})
    clu = (
        np.full(n, -1, dtype=np.int64)
        if cluster is None
        else np.asarray(cluster, dtype=np.int64)
    )
    names = dict(cluster_names or {})
    dst = Path(os.fspath(out))
    dst.mkdir(parents=True, exist_ok=True)
    fin = Path(os.fspath(final)) if final is not None else dst
    if fmt == "csv":
        info = _write_csv(ws, plan, clu, names, dst)
    elif fmt == "coco":
        info = _write_coco(ws, plan, dst, verbose)
    elif fmt == "yolo":
        info = _write_yolo(ws, plan, dst, fin, files, verbose)
    elif fmt == "imagefolder":
        info = _write_imagefolder(ws, plan, dst, files, verbose)
    else:
        sc = None if scores is None else np.asarray(scores, dtype=np.float64)
        info = _write_labelstudio(
            ws, plan, clu, names, sc, suggestions or {}, dst, fin, verbose
        )
    return {
        "format": fmt,
        "n_items": n,
        "n_labelled": sum(lab is not None for lab in plan.labels),
        "skipped": dict(sorted(plan.skipped.items())),
        "n_skipped": int((~plan.keep).sum()),
        **info,
    }


def describe_skipped(skipped: Mapping[str, int]) -> str:
    """The items an export left out, in words ("" when none).

    Examples
    --------
    >>> describe_skipped({"duplicate": 3, "rejected": 1})
    'skipped 4 items: 3 marked duplicate (keep one), 1 rejected'
    """
    total = sum(skipped.values())
    if not total:
        return ""
    parts = ", ".join(
        f"{c:,} {SKIP_REASONS.get(k, k)}" for k, c in skipped.items() if c
    )
    return f"skipped {total:,} item{'s' if total != 1 else ''}: {parts}"
