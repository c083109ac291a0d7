"""``clusterlens cluster``: k-means, Ward or a SCAN/IIC head over workspace features."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._results import write_results, write_run
from clusterlens.io._safe import invalid_file, load_npy, load_sparse
from clusterlens.io._workspace import Workspace

__all__ = ["load_feature_matrix", "run_cluster_images", "scores_if_labelled"]

METHODS: tuple[str, ...] = ("kmeans", "ward", "scan", "iic")
#: Methods that train a clustering head on the embeddings (clusterlens.deep.SCAN).
HEAD_METHODS: tuple[str, ...] = ("scan", "iic")
# Ward keeps the (n, n) merge structure in memory: about 8 n^2 / 2 bytes
WARD_MAX_ITEMS = 20_000
_WHAT = "feature matrix given to --features"


def load_feature_matrix(ws: Workspace, features: str) -> tuple[Any, str]:
    """The (n_items, d) float32 matrix of a feature stage, and its path.

    ``features`` is "bow" (``WS/bow/tfidf.npz``, densified), "cnn" or
    "pixels" (``WS/features/<name>/features.npy``), a stage folder, or an
    ``.npy`` / ``.npz`` file.
    """
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
    fix = (
        "re-create it with the stage that writes it (clusterlens features cnn|pixels "
        "WS, or clusterlens bow WS), or pass --features a .npy / .npz matrix"
    )
    if p.suffix == ".npz":
        X = load_sparse(p, what=_WHAT, fix=fix)
        X = X.toarray().astype(np.float32)
    else:
        X = load_npy(p, what=_WHAT, fix=fix, mmap=True)
        if X.dtype.kind not in "fiu":
            raise DataValidationError(
                invalid_file(
                    p,
                    _WHAT,
                    f"it holds {X.dtype} values, not numbers",
                    fix,
                )
            )
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
    method: str = "kmeans",
    random_state: int = 0,
    report: bool = True,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
    views: tuple[str, ...] = (),
    head: str | os.PathLike[str] | None = None,
    head_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cluster one feature matrix of the workspace; results, model, report.

    ``method="scan"`` / ``"iic"`` train a clustering head on the embeddings
    with their nearest neighbours (:class:`clusterlens.deep.SCAN` with that
    objective, then self-labelling; ``head_params`` are its parameters, e.g.
    ``{"n_neighbors": 20, "epochs": 30}``). ``views`` names other feature
    matrices of the same items (e.g. the embeddings of the mirrored images)
    the head is trained on as augmentations. ``head`` is a model folder or
    ``model`` file written by an earlier scan/iic run: its head is applied,
    not trained. Their results add a ``probability`` column (the kept head's
    probability of the cluster) and ``distance`` is ``1 - probability``.

    ``method="kmeans"`` is the engine's k-means (``n_init`` restarts);
    ``method="ward"`` is scikit-learn's agglomerative clustering with Ward
    linkage (deterministic; ``n_init``/``max_iter`` unused; at most
    ``WARD_MAX_ITEMS`` items), whose model is the clusters' mean vectors and
    whose ``distance`` column is each item's distance to its cluster's mean.
    Ward merges by the least increase of within-cluster variance, so unlike
    k-means it does not force clusters of similar spread: on the COCO box
    crops (21 classes, person 38 %) it beats k-means on PCA-whitened,
    L2-normalised CNN features (benchmarks/pipeline.py).
    """
    from clusterlens.cluster import KMeans
    from clusterlens.utils.validation import check_options

    method = check_options(method, "method", "run_cluster_images", METHODS)
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
    extra: dict[str, Any] = {}
    if method in HEAD_METHODS:
        labels, dist, extra = _fit_head(
            ws,
            X,
            stage,
            method,
            n_clusters,
            random_state,
            verbose,
            views,
            head,
            head_params or {},
        )
        seconds = time.perf_counter() - t0
        inertia, n_iter, backend = None, extra.pop("n_iter"), "local"
    elif method == "ward":
        labels, centers = _ward(X, n_clusters)
        seconds = time.perf_counter() - t0
        dist = np.linalg.norm(X - centers[labels], axis=1).astype(np.float64)
        inertia, n_iter, backend = float(np.sum(dist**2)), 0, "local"
        _save_ward(stage / "model", centers, labels, n_clusters)
    else:
        km = KMeans(
            n_clusters, n_init=n_init, max_iter=max_iter, random_state=random_state
        ).fit(X)
        seconds = time.perf_counter() - t0
        labels = np.asarray(km.labels_, dtype=np.int64)
        d = np.asarray(km.transform(X))
        dist = d[np.arange(d.shape[0]), labels].astype(np.float64)
        inertia, n_iter = float(km.inertia_), int(km.n_iter_)
        backend = "dask" if km.engine_.startswith("dask:") else "local"
        km.save(stage / "model")
    write_results(
        stage / "results.parquet",
        {
            **base_columns(ws),
            "cluster": labels,
            "distance": dist,
            **extra.pop("columns", {}),
        },
    )
    scores = scores_if_labelled(ws, labels)
    summary = {
        "n_items": len(ws),
        "n_features": int(X.shape[1]),
        "n_clusters": n_clusters,
        "method": method,
        "inertia": inertia,
        "n_iter": n_iter,
        "backend": backend,
        "seconds": seconds,
        "images_per_second": float(len(ws) / max(seconds, 1e-9)),
        **extra,
        **scores,
    }
    params = {
        "workspace": str(ws.root.resolve()),
        "features": src,
        "n_clusters": n_clusters,
        "n_init": n_init,
        "max_iter": max_iter,
        "l2_normalize": l2_normalize,
        "method": method,
    }
    if method in HEAD_METHODS:
        params.update(
            views=list(views),
            head=None if head is None else str(head),
            head_params=head_params or {},
        )
    outputs = ["results.parquet", "model.npz", "model.json", "run.json"]
    if report:
        from clusterlens.report._topics import build_workspace_report

        build_workspace_report(
            ws,
            stage / "report.html",
            labels_pred=labels,
            distances=dist,
            figures={
                k: v for k, v in summary.items() if k != "n_items" and v is not None
            },
            params=params,
            title=f"{METHOD_TITLES[method]} on {features}: {n_clusters} clusters",
        )
        outputs.append("report.html")
    write_run(
        stage,
        schema="clusterlens.cluster-images/1",
        command="cluster",
        invocation=command,
        parameters=params,
        seed=random_state,
        results=summary,
        outputs=outputs,
    )
    return summary


METHOD_TITLES = {
    "kmeans": "k-means",
    "ward": "Ward",
    "scan": "SCAN head",
    "iic": "IIC head",
}


def _fit_head(
    ws: Workspace,
    X: npt.NDArray[np.float32],
    stage: Path,
    method: str,
    n_clusters: int,
    random_state: int,
    verbose: int,
    views: tuple[str, ...],
    head: str | os.PathLike[str] | None,
    head_params: dict[str, Any],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], dict[str, Any]]:
    """Train (or load and apply) a SCAN/IIC head; labels, 1 - p, summary."""
    from clusterlens.deep import SCAN

    if head is not None:
        path = Path(head)
        model = SCAN.load(path / "model" if path.is_dir() else path)
        if model.n_clusters != n_clusters:
            raise DataValidationError(
                f"The head {str(head)!r} has {model.n_clusters} clusters, not "
                f"-k {n_clusters}. Pass -k {model.n_clusters}, or train a new head "
                "(leave out --head)."
            )
        proba = model.predict_proba(X)
    else:
        extra_views = []
        for v in views:
            V, _ = load_feature_matrix(ws, v)
            if V.shape != X.shape:
                raise DataValidationError(
                    f"The view {v!r} has shape {V.shape}, but the features have "
                    f"{X.shape}; a view holds other embeddings of the same items "
                    "(the same CNN on the mirrored images, say)."
                )
            extra_views.append(np.asarray(V, dtype=np.float32))
        model = SCAN(
            n_clusters,
            objective=method,
            random_state=random_state,
            verbose=verbose,
            **head_params,
        ).fit(X, views=np.stack(extra_views) if extra_views else None)
        proba = model.proba_
    model.save(stage / "model")
    labels = proba.argmax(axis=1).astype(np.int64)
    p = proba[np.arange(labels.size), labels].astype(np.float64)
    # the loss the head was chosen by: the last epoch of the SCAN/IIC step
    chosen = [h for h in model.history_ if h.get("stage") == model.objective]
    summary = {
        "n_iter": int(getattr(model, "n_epochs_", 0)),
        "head": int(model.head_),
        "loss": float(chosen[-1]["loss"]) if chosen else None,
        "mean_probability": float(p.mean()),
        "columns": {"probability": p.astype(np.float32)},
    }
    return labels, 1.0 - p, summary


def _ward(
    X: npt.NDArray[np.float32], n_clusters: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Ward-linkage agglomerative labels and the clusters' mean vectors."""
    from sklearn.cluster import AgglomerativeClustering

    n = X.shape[0]
    if n > WARD_MAX_ITEMS:
        raise DataValidationError(
            f"--method ward needs memory quadratic in the items; {n:,} items is more "
            f"than its limit of {WARD_MAX_ITEMS:,}. Use --method kmeans."
        )
    if n_clusters == 1:
        labels = np.zeros(n, dtype=np.int64)
    else:
        ward = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
        labels = np.asarray(ward.fit_predict(X), dtype=np.int64)
    counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, X)
    centers = (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)
    return labels, centers


def _save_ward(
    path: Path,
    centers: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    n_clusters: int,
) -> None:
    """``model.npz`` (cluster means, sizes) + ``model.json``; no pickle."""
    from clusterlens.io._persist import write_model

    write_model(
        path,
        {
            "cluster_centers": centers,
            "cluster_sizes": np.bincount(labels, minlength=n_clusters),
        },
        fmt="clusterlens.ward",
        version=1,
        params={"n_clusters": n_clusters, "linkage": "ward"},
        attributes={"n_features_in": int(centers.shape[1])},
        kind="AgglomerativeClustering",
    )
