"""``clusterlens features iic``: the trunk embeddings of a trained IIC network."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.exceptions import DataValidationError
from clusterlens.io._results import write_run
from clusterlens.io._workspace import (
    Workspace,
    check_image_root,
    unreadable_report,
)
from clusterlens.pipelines.features._common import _write_dense
from clusterlens.pipelines.features._pixels import _read_pixels
from clusterlens.utils._progress import progress

__all__ = ["run_iic_features"]

logger = logging.getLogger(__name__)


def run_iic_features(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str],
    pca: int | None = 128,
    smooth: int = 0,
    n_neighbors: int = 10,
    n_jobs: int = 2,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Penultimate-layer (trunk) embeddings of a trained IIC for every item.

    The items are read at the model's image size and mode; the embeddings are
    L2-normalised, reduced with PCA (``pca`` components, None: none) and
    optionally smoothed (``smooth`` rounds of ``n_neighbors``-NN averaging,
    :func:`clusterlens.features.knn_smooth`). Writes ``features.npy``
    (+ ``pca.npz``/``pca.json``) and ``run.json``: features to over-cluster
    (``clusterlens cluster --features iic -k 300``) and name in the review app.
    """
    from clusterlens.deep import IIC
    from clusterlens.deep._embed import iic_trunk_features
    from clusterlens.features import knn_smooth

    check_image_root(ws, "features iic")
    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    net = IIC.load(Path(os.fspath(model)), device="cpu")
    h, w, c = (int(v) for v in net.image_shape_)
    if h != w:
        raise DataValidationError(
            f"The IIC model {model} takes {h}x{w} images; features iic reads square "
            "images only."
        )
    n = len(ws)
    bar = progress(total=n, desc="images", unit="img", verbose=verbose)
    imgs, unreadable = _read_pixels(
        ws, 0, n, h, "L" if c == 1 else "RGB", n_jobs, bar.update
    )
    bar.close()
    report = unreadable_report(
        ws, "features iic", unreadable, outcome="are embedded as zero pixels"
    )
    T = iic_trunk_features(net, imgs)
    T /= np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
    info = _write_dense(
        stage,
        T,
        pca=None if pca is None else min(pca, *T.shape),
        whiten=False,
        random_state=random_state,
    )
    if smooth:
        Z = knn_smooth(np.load(stage / "features.npy"), smooth, n_neighbors)
        np.save(stage / "features.npy", Z)
    seconds = time.perf_counter() - t0
    summary = {
        "n_items": n,
        **report,
        "seconds": seconds,
        "images_per_second": float(n / max(seconds, 1e-9)),
        **info,
    }
    write_run(
        stage,
        schema="clusterlens.features.iic/1",
        command="features iic",
        invocation=command,
        parameters={
            "workspace": str(ws.root.resolve()),
            "model": str(Path(os.fspath(model)).resolve()),
            "pca": pca,
            "smooth": smooth,
            "n_neighbors": n_neighbors,
        },
        seed=random_state,
        results=summary,
    )
    return summary
