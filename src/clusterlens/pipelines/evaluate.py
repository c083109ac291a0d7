"""``clusterlens evaluate``: external scores of a clustering run against labels."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._results import read_results

__all__ = ["evaluate_run"]


def _class_names(run_dir: Path) -> list[str] | None:
    """Class names of the workspace a run was made from (its run.json says which)."""
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        ws = Path(info["parameters"]["workspace"])
        meta = json.loads((ws / "workspace.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = meta.get("class_names") if isinstance(meta, dict) else None
    return [str(x) for x in names] if isinstance(names, list) and names else None


def _int_column(values: Any, path: Any, column: str) -> npt.NDArray[np.int64]:
    """A cluster or label column as int64; NaN or fractional values are errors."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind != "f":
        raise DataValidationError(
            f"Column {column!r} of {str(path)!r} must hold integer ids; it has "
            f"dtype {arr.dtype}."
        )
    missing = ~np.isfinite(arr)
    if missing.any():
        i = int(np.argmax(missing))
        raise DataValidationError(
            f"Column {column!r} of {str(path)!r} has {int(missing.sum())} missing "
            f"(NaN or infinite) values (first at row {i}); every row needs an "
            "integer id (-1 marks an unknown label). Fix or drop those rows."
        )
    fractional = arr != np.round(arr)
    if fractional.any():
        i = int(np.argmax(fractional))
        raise DataValidationError(
            f"Column {column!r} of {str(path)!r} must hold integer ids; "
            f"{int(fractional.sum())} values are not (first at row {i}: {arr[i]!r})."
        )
    return arr.astype(np.int64)


def evaluate_run(
    run: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    column: str | None = None,
) -> dict[str, Any]:
    """Accuracy / NMI / ARI / purity of a run, and the purity of each cluster.

    Parameters
    ----------
    run : path
        A run folder (with ``results.parquet``) or a results Parquet file.
    labels : path, default=None
        Parquet with ``index`` and ``label`` columns (e.g. a workspace's
        ``items.parquet``); default: the ``label`` column of the results.
    column : str, default=None
        The prediction column; default ``cluster`` (else ``topic``).

    Returns
    -------
    scores : dict
        ``accuracy``, ``nmi``, ``ari``, ``purity``, ``n_clusters``,
        ``n_classes``, ``n_labelled`` and ``clusters`` (one dict per cluster:
        ``cluster``, ``size``, ``majority`` label, ``purity``).

    Raises
    ------
    DataValidationError
        If the run has no results, no labels, or no labelled item.
    """
    from clusterlens.metrics import evaluate_clustering

    p = Path(os.fspath(run))
    path = p / "results.parquet" if p.is_dir() else p
    if not path.is_file():
        raise DataValidationError(
            f"{str(p)!r} has no results.parquet. Pass the folder of a cluster or "
            "topics run."
        )
    res = read_results(
        path,
        what="results table",
        fix="re-create it by running again the clusterlens cluster, topics or iic "
        "command that wrote it",
    )
    col = column or ("cluster" if "cluster" in res else "topic")
    if col not in res:
        raise DataValidationError(
            f"{str(path)!r} has no {col!r} column (columns: {', '.join(res)})."
        )
    pred = _int_column(res[col], path, col)
    names: list[str] | None = None
    if labels is not None:
        lab = read_results(
            labels,
            what="labels table given to --labels",
            fix="pass a Parquet file with 'index' and 'label' columns, such as a "
            "workspace's items.parquet",
        )
        if "label" not in lab or "index" not in lab:
            raise DataValidationError(
                f"{str(labels)!r} needs 'index' and 'label' columns."
            )
        lab_index = _int_column(lab["index"], labels, "index")
        res_index = _int_column(res["index"], path, "index")
        if min(lab_index.min(initial=0), res_index.min(initial=0)) < 0:
            raise DataValidationError(
                f"Column 'index' of {str(labels)!r} or {str(path)!r} has negative "
                "values; indexes are row numbers >= 0."
            )
        table = np.full(int(max(lab_index.max(), res_index.max())) + 1, -1)
        table[lab_index] = _int_column(lab["label"], labels, "label")
        true = table[res_index]
    elif "label" in res:
        true = _int_column(res["label"], path, "label")
        names = _class_names(path.parent)
    else:
        raise DataValidationError(
            f"{str(path)!r} has no 'label' column; pass --labels items.parquet."
        )
    keep = true >= 0
    if not keep.any():
        raise DataValidationError(
            f"No item of {str(path)!r} has a known label; nothing to evaluate against."
        )
    scores: dict[str, Any] = dict(evaluate_clustering(true[keep], pred[keep]))
    scores["n_labelled"] = int(keep.sum())
    t, c = true[keep], pred[keep]
    clusters = []
    for k in np.unique(c):
        members = t[c == k]
        counts = np.bincount(members)
        maj = int(counts.argmax())
        clusters.append(
            {
                "cluster": int(k),
                "size": int(members.size),
                "majority": names[maj] if names and maj < len(names) else maj,
                "purity": float(counts.max() / members.size),
            }
        )
    scores["clusters"] = clusters
    scores["column"] = col
    return scores
