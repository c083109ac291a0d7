"""Write reviewed labels as COCO JSON, an ImageFolder tree, Label Studio tasks, CSV."""

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

__all__ = ["EXPORT_FORMATS", "export_labels"]

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


def _label_config(cats: Sequence[str]) -> str:
    from xml.sax.saxutils import quoteattr

    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in cats)
    return (
        '<View>\n  <Image name="image" value="$image"/>\n'
        '  <Choices name="label" toName="image" choice="single">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


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
        task: dict[str, Any] = {
            "id": i + 1,
            "data": {
                "image": "/data/local-files/?d="
                + str(_final(Path(f), out, final)).lstrip("/"),
                "index": i,
                "item_id": str(ws.items["item_id"][i]),
                "cluster": c,
            },
        }
        if pre:
            task["predictions"] = [
                {
                    "model_version": "clusterlens-clusters",
                    "result": [
                        {
                            "from_name": "label",
                            "to_name": "image",
                            "type": "choices",
                            "value": {"choices": [pre]},
                        }
                    ],
                }
            ]
        tasks.append(task)
    atomic_write_text(out / "tasks.json", json.dumps(tasks, indent=1) + "\n")
    atomic_write_text(out / "label_config.xml", _label_config(cats))
    return {"files": ["tasks.json", "label_config.xml"], "n_tasks": len(tasks)}


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
