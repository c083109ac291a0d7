"""``clusterlens cluster``: k-means over an image workspace's BoVW or dense features."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._results import write_results, write_run_json
from clusterlens.io._workspace import Workspace

__all__ = ["load_feature_matrix", "run_cluster_images", "scores_if_labelled"]


def load_feature_matrix(ws: Workspace, features: str) -> tuple[Any, str]:
    """The (n_items, d) float32 matrix of a feature stage, and its path.

    ``features`` is "bow" (``WS/bow/tfidf.npz``, densified), "cnn" or
    "pixels" (``WS/features/<name>/features.npy``), a stage folder, or an
    ``.npy`` / ``.npz`` file.
    """
    import scipy.sparse as sp

    if features == "bow":
        p = ws.root / "bow" / "tfidf.npz"
    elif features in ("cnn", "pixels", "sift"):
        if features == "sift":
            raise DataValidationError(
                "SIFT descriptors are per keypoint, not per image; cluster their "
                "bag of words: clusterlens vocab ... then clusterlens bow WS, and "
                "--features bow."
            )
        p = ws.root / "features" / features / "features.npy"
    else:
        p = Path(features)
        if not p.exists() and (ws.root / "features" / features).is_dir():
            p = ws.root / "features" / features
        if p.is_dir():
            p = next(
                (q for q in (p / "features.npy", p / "tfidf.npz") if q.is_file()),
                p / "features.npy",
            )
    if not p.is_file():
        raise DataValidationError(
            f"No features at {str(p)!r}. Run the stage that writes it first "
            "(clusterlens features cnn|pixels WS, or clusterlens bow WS)."
        )
    if p.suffix == ".npz":
        X = sp.load_npz(p).toarray().astype(np.float32)
    else:
        X = np.load(p, mmap_mode="r")
    if X.ndim != 2 or X.shape[0] != len(ws):
        raise DataValidationError(
            f"Features {str(p)!r} have shape {X.shape}; expected ({len(ws)}, d) for "
            "this workspace's items."
        )
    return X, str(p)


def scores_if_labelled(
    ws: Workspace, labels_pred: npt.NDArray[np.int64]
) -> dict[str, Any]:
    """Accuracy / NMI / ARI / purity on the labelled items ({} when none)."""
    from clusterlens.metrics import evaluate_clustering

    labels = ws.labels
    if labels is None:
        return {}
    keep = labels >= 0
    scores = evaluate_clustering(labels[keep], labels_pred[keep])
    return {**scores, "n_labelled": int(keep.sum())}


def base_columns(ws: Workspace) -> dict[str, Any]:
    """``index``, ``item_id`` and ``label`` (-1 unknown) of every item."""
    return {
        "index": ws.items["index"].astype(np.int64),
        "item_id": ws.items["item_id"].astype(str),
        "label": ws.items["label"].astype(np.int64),
    }


def run_cluster_images(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    features: str = "bow",
    n_clusters: int = 2,
    n_init: int = 10,
    max_iter: int = 300,
    l2_normalize: bool = False,
    random_state: int = 0,
    report: bool = True,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """k-means on one feature matrix of the workspace; results, model, report."""
    from clusterlens.cluster import KMeans

    stage = Path(os.fspath(stage))
    X, src = load_feature_matrix(ws, features)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if n_clusters > X.shape[0]:
        raise DataValidationError(
            f"-k {n_clusters} is larger than the number of items ({X.shape[0]})."
        )
    if l2_normalize:
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X / np.where(norms > 0, norms, 1.0)
    t0 = time.perf_counter()
    km = KMeans(
        n_clusters, n_init=n_init, max_iter=max_iter, random_state=random_state
    ).fit(X)
    seconds = time.perf_counter() - t0
    labels = np.asarray(km.labels_, dtype=np.int64)
    d = np.asarray(km.transform(X))
    dist = d[np.arange(d.shape[0]), labels].astype(np.float64)
    km.save(stage / "model")
    write_results(
        stage / "results.parquet",
        {**base_columns(ws), "cluster": labels, "distance": dist},
    )
    scores = scores_if_labelled(ws, labels)
    summary = {
        "n_items": len(ws),
        "n_features": int(X.shape[1]),
        "n_clusters": n_clusters,
        "inertia": float(km.inertia_),
        "n_iter": int(km.n_iter_),
        "backend": "dask" if km.engine_.startswith("dask:") else "local",
        "seconds": seconds,
        "images_per_second": float(len(ws) / max(seconds, 1e-9)),
        **scores,
    }
    params = {
        "workspace": str(ws.root.resolve()),
        "features": src,
        "n_clusters": n_clusters,
        "n_init": n_init,
        "max_iter": max_iter,
        "l2_normalize": l2_normalize,
    }
    outputs = ["results.parquet", "model.npz", "model.json", "run.json"]
    if report:
        from clusterlens.report._topics import build_workspace_report

        build_workspace_report(
            ws,
            stage / "report.html",
            labels_pred=labels,
            distances=dist,
            figures={k: v for k, v in summary.items() if k != "n_items"},
            params=params,
            title=f"k-means on {features}: {n_clusters} clusters",
        )
        outputs.append("report.html")
    write_run_json(
        stage / "run.json",
        {
            "schema": "clusterlens.cluster-images/1",
            "command": "cluster",
            **(command or {}),
            "parameters": params,
            "seed": random_state,
            "results": summary,
            "outputs": outputs,
        },
    )
    return summary
