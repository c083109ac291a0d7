"""Write labels as COCO JSON, an ImageFolder tree, Label Studio tasks, CSV."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io._workspace import Workspace
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils._progress import progress

__all__ = [
    "EXPORT_FORMATS",
    "LOCAL_FILES_URL",
    "export_labels",
    "label_studio_choice",
    "label_studio_config",
    "label_studio_rectangle",
    "label_studio_task",
    "local_files_url",
    "write_label_studio",
]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("coco", "imagefolder", "labelstudio", "csv")
_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)


def _folder_name(label: str) -> str:
    """A label as one safe path component (no separators, no '..')."""
    name = _UNSAFE.sub("_", label).strip(" .")
    return name or "_"


def _item_file(ws: Workspace, i: int, out: Path, verbose: int = 0) -> Path | None:
    """The file showing item ``i``: the original image, or a PNG written under
    ``out/images`` for array sources and box crops."""
    rel = str(ws.items["path"][i])
    whole = not np.isfinite(float(ws.items["bbox_w"][i]))
    if rel and whole:
        return ws.image_root / rel
    dst = out / "images" / f"{i:07d}.png"
    if not dst.exists():
        from PIL import Image

        try:
            pix = ws.read_item(i)
        except (OSError, ValueError) as e:
            logger.warning("item %d unreadable: %s", i, e)
            return None
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pix).save(dst)
    return dst


def _write_csv(
    ws: Workspace,
    labels: Sequence[str | None],
    cluster: npt.NDArray[np.int64],
    names: Mapping[int, str | None],
    out: Path,
) -> dict[str, Any]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "item_id", "path", "label", "cluster", "cluster_name"])
    for i in range(len(ws)):
        c = int(cluster[i])
        w.writerow(
            [
                i,
                ws.items["item_id"][i],
                ws.items["path"][i],
                labels[i] or "",
                c,
                names.get(c) or "",
            ]
        )
    atomic_write_text(out / "labels.csv", buf.getvalue())
    return {"files": ["labels.csv"]}


def _categories(labels: Sequence[str | None]) -> list[str]:
    return sorted({lab for lab in labels if lab})


def _write_coco(
    ws: Workspace, labels: Sequence[str | None], out: Path, verbose: int
) -> dict[str, Any]:
    cats = _categories(labels)
    cat_id = {name: j + 1 for j, name in enumerate(cats)}
    images: list[dict[str, Any]] = []
    image_id: dict[str, int] = {}
    anns = []
    for i in progress(range(len(ws)), total=len(ws), desc="coco", verbose=verbose):
        rel = str(ws.items["path"][i])
        if rel:
            key, file_name = rel, rel
        else:
            f = _item_file(ws, i, out)
            if f is None:
                continue
            key = file_name = str(f.relative_to(out))
        if key not in image_id:
            image_id[key] = len(images) + 1
            images.append(
                {
                    "id": image_id[key],
                    "file_name": file_name,
                    "width": int(ws.items["width"][i]),
                    "height": int(ws.items["height"][i]),
                }
            )
        lab = labels[i]
        if not lab:
            continue
        bw = float(ws.items["bbox_w"][i])
        if np.isfinite(bw):
            bbox = [float(ws.items[c][i]) for c in ("bbox_x", "bbox_y")]
            bbox += [bw, float(ws.items["bbox_h"][i])]
        else:
            bbox = [0.0, 0.0, float(ws.items["width"][i]), float(ws.items["height"][i])]
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
    note = "" if ws.image_root == Path("") else str(ws.image_root)
    return {"files": ["annotations.json"], "image_root": note or str(out)}


def _write_imagefolder(
    ws: Workspace,
    labels: Sequence[str | None],
    out: Path,
    copy: bool,
    verbose: int,
) -> dict[str, Any]:
    n_written = 0
    used: dict[str, str] = {}
    for i in progress(
        range(len(ws)), total=len(ws), desc="imagefolder", verbose=verbose
    ):
        lab = labels[i]
        if not lab:
            continue
        folder = _folder_name(lab)
        if used.setdefault(folder, lab) != lab:
            raise DataValidationError(
                f"Labels {used[folder]!r} and {lab!r} map to the same folder name "
                f"{folder!r}; rename one of them in the review."
            )
        src = _item_file(ws, i, out / ".images")
        if src is None:
            continue
        dst = out / folder / f"{i:07d}_{Path(src).name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_relative_to(out):
            os.replace(src, dst)
        elif copy:
            shutil.copy2(src, dst)
        else:
            os.symlink(src.resolve(), dst)
        n_written += 1
    shutil.rmtree(out / ".images", ignore_errors=True)
    return {"files": sorted(used), "n_images": n_written}


def _final(p: Path, out: Path, final: Path) -> Path:
    """Where ``p`` will be once the folder ``out`` has become ``final``."""
    p = p.resolve()
    base = out.resolve()
    return final.resolve() / p.relative_to(base) if p.is_relative_to(base) else p


#: Label Studio's URL prefix for a file served by its local file storage.
LOCAL_FILES_URL = "/data/local-files/?d="


def local_files_url(path: str | os.PathLike[str]) -> str:
    """The Label Studio URL of an absolute ``path`` (local file storage)."""
    return LOCAL_FILES_URL + os.fspath(path).lstrip("/")


def label_studio_choice(choice: str, *, to_name: str = "image") -> dict[str, Any]:
    """A ``choices`` result: ``choice`` picked for the object ``to_name``."""
    return {
        "from_name": "label",
        "to_name": to_name,
        "type": "choices",
        "value": {"choices": [choice]},
    }


def label_studio_rectangle(
    label: str,
    xywh: Sequence[float],
    width: float,
    height: float,
) -> dict[str, Any]:
    """A ``rectanglelabels`` result: box ``xywh`` (pixels) of a ``width x height``
    image labelled ``label`` (Label Studio wants percentages of the image)."""
    x, y, w, h = xywh
    return {
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": int(width),
        "original_height": int(height),
        "value": {
            "x": 100.0 * x / width,
            "y": 100.0 * y / height,
            "width": 100.0 * w / width,
            "height": 100.0 * h / height,
            "rotation": 0,
            "rectanglelabels": [label],
        },
    }


def label_studio_task(
    data: Mapping[str, Any],
    *,
    result: Mapping[str, Any] | None = None,
    model_version: str = "clusterlens",
    score: float | None = None,
    task_id: int | None = None,
    meta: Mapping[str, Any] | None = None,
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
        Who made the prediction.
    score : float, default=None
        The prediction's score (Label Studio sorts by it), if any.
    task_id : int, default=None
        The task's ``id``, if any.
    meta : mapping, default=None
        The task's ``meta`` (shown to the annotator, not labelled), if any.
    """
    task: dict[str, Any] = {}
    if task_id is not None:
        task["id"] = task_id
    task["data"] = dict(data)
    if meta is not None:
        task["meta"] = dict(meta)
    if result is not None:
        pred: dict[str, Any] = {"model_version": model_version}
        if score is not None:
            pred["score"] = score
        pred["result"] = [dict(result)]
        task["predictions"] = [pred]
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


def _write_labelstudio(
    ws: Workspace,
    labels: Sequence[str | None],
    cluster: npt.NDArray[np.int64],
    names: Mapping[int, str | None],
    out: Path,
    final: Path,
    verbose: int,
) -> dict[str, Any]:
    cats = sorted(set(_categories(labels)) | {n for n in names.values() if n})
    tasks = []
    for i in progress(
        range(len(ws)), total=len(ws), desc="labelstudio", verbose=verbose
    ):
        f = _item_file(ws, i, out)
        if f is None:
            continue
        c = int(cluster[i])
        pre = names.get(c) or labels[i]
        tasks.append(
            label_studio_task(
                {
                    "image": local_files_url(_final(Path(f), out, final)),
                    "index": i,
                    "item_id": str(ws.items["item_id"][i]),
                    "cluster": c,
                },
                result=label_studio_choice(pre) if pre else None,
                model_version="clusterlens-clusters",
                task_id=i + 1,
            )
        )
    files = write_label_studio(out, tasks, config=label_studio_config(cats))
    return {"files": files, "n_tasks": len(tasks)}


def export_labels(
    ws: Workspace,
    labels: Sequence[str | None],
    out: str | os.PathLike[str],
    *,
    fmt: str,
    cluster: npt.ArrayLike | None = None,
    cluster_names: Mapping[int, str | None] | None = None,
    copy: bool = False,
    final: str | os.PathLike[str] | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Write the labels of a workspace's items in one of four formats.

    Parameters
    ----------
    ws : Workspace
    labels : sequence of str or None, of length n_items
        The label of each item; None (or "") when it has none.
    out : str or os.PathLike
        An existing, empty folder to write into (the CLI passes a staging folder).
    fmt : {"coco", "imagefolder", "labelstudio", "csv"}
        "coco" writes ``annotations.json`` (one annotation per labelled item:
        its box, or the whole image); "imagefolder" one sub-folder per label
        with a link to (or, with ``copy``, a copy of) each image; "labelstudio"
        ``tasks.json`` with the cluster names as predictions (pre-annotations)
        and ``label_config.xml``; "csv" ``labels.csv`` (index, item_id, path,
        label, cluster, cluster_name). Array sources (IDX, .npz) and box crops
        are written as PNG files under ``images/``.
    cluster : array-like of shape (n_items,), default=None
        The cluster of each item (-1: none).
    cluster_names : mapping of int to str or None, default=None
        The name of each cluster.
    copy : bool, default=False
        ImageFolder: copy the images instead of linking to them.
    final : str or os.PathLike, default=None
        Where ``out`` will be moved once written (for the absolute image paths
        of Label Studio tasks); default: ``out``.
    verbose : int, default=0

    Returns
    -------
    summary : dict
        ``format``, ``n_items``, ``n_labelled`` and ``files`` written.

    Raises
    ------
    InvalidParameterError
        If ``fmt`` is unknown.
    DataValidationError
        If ``labels`` does not have one entry per item.
    """
    if fmt not in EXPORT_FORMATS:
        import difflib

        close = difflib.get_close_matches(str(fmt), EXPORT_FORMATS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(
            f"Unknown export format {fmt!r}.{hint} Available: "
            f"{', '.join(EXPORT_FORMATS)}."
        )
    n = len(ws)
    labs = [lab if lab else None for lab in labels]
    if len(labs) != n:
        raise DataValidationError(
            f"labels has {len(labs)} entries but the workspace has {n} items."
        )
    clu = (
        np.full(n, -1, dtype=np.int64)
        if cluster is None
        else np.asarray(cluster, dtype=np.int64)
    )
    names = dict(cluster_names or {})
    dst = Path(os.fspath(out))
    dst.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        info = _write_csv(ws, labs, clu, names, dst)
    elif fmt == "coco":
        info = _write_coco(ws, labs, dst, verbose)
    elif fmt == "imagefolder":
        info = _write_imagefolder(ws, labs, dst, copy, verbose)
    else:
        fin = Path(os.fspath(final)) if final is not None else dst
        info = _write_labelstudio(ws, labs, clu, names, dst, fin, verbose)
    return {
        "format": fmt,
        "n_items": n,
        "n_labelled": sum(lab is not None for lab in labs),
        **info,
    }
