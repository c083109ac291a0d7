"""Save and load a fitted KMeans as a model file pair (see ``io/_persist.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterlens.io._persist import read_model, write_model

if TYPE_CHECKING:
    from clusterlens.cluster._kmeans import KMeans

__all__ = ["load_kmeans", "save_kmeans"]

FORMAT = "clusterlens.kmeans"
FORMAT_VERSION = 1


def save_kmeans(model: KMeans, path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a fitted KMeans; returns the two paths written."""
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "cluster_centers_": np.asarray(model.cluster_centers_),
        "labels_": np.asarray(model.labels_),
    }
    params = model.get_params()
    if not isinstance(params["init"], str):
        arrays["init"] = np.asarray(params["init"], dtype=np.float64)
        params["init"] = "array"
    if not isinstance(params["engine"], str):
        params["engine"] = getattr(params["engine"], "name", "numpy")
    if isinstance(params["random_state"], np.random.Generator):
        params["random_state"] = None
    if params.get("backend") is not None and not isinstance(params["backend"], str):
        params["backend"] = getattr(params["backend"], "name", None)
    if params.get("checkpoint_dir") is not None:
        params["checkpoint_dir"] = str(params["checkpoint_dir"])
    return write_model(
        path,
        arrays,
        fmt=FORMAT,
        version=FORMAT_VERSION,
        params=params,
        attributes={
            "inertia_": float(model.inertia_),
            "n_iter_": int(model.n_iter_),
            "engine_": model.engine_,
            "converged_": bool(model.converged_),
            "n_features_in_": int(model.n_features_in_),
            "history_": model.history_,
        },
        kind=type(model).__name__,
    )


def load_kmeans(cls: type[KMeans], path: str | os.PathLike[str]) -> KMeans:
    """Read a model written by :func:`save_kmeans` (any format version <= ours)."""
    meta, arrays = read_model(
        path,
        fmt=FORMAT,
        version=FORMAT_VERSION,
        what="k-means model",
        fix="save the model again (KMeans.save, or clusterlens kmeans)",
        keys=("cluster_centers_",),
    )
    params = dict(meta.get("params", {}))
    if params.get("init") == "array":
        params["init"] = arrays.get("init")
    valid = cls().get_params()
    model = cls(**{k: v for k, v in params.items() if k in valid})
    attrs = meta.get("attributes", {})
    model.cluster_centers_ = arrays["cluster_centers_"]
    model.labels_ = arrays.get("labels_", np.zeros(0, dtype=np.int64)).astype(np.int64)
    model.inertia_ = float(attrs.get("inertia_", np.nan))
    model.n_iter_ = int(attrs.get("n_iter_", 0))
    model.engine_ = str(attrs.get("engine_", "numpy"))
    model.converged_ = bool(attrs.get("converged_", False))
    model.n_features_in_ = int(
        attrs.get("n_features_in_", model.cluster_centers_.shape[1])
    )
    model.history_ = list(attrs.get("history_", []))
    return model
