"""``clusterlens features vae``: latent means of a small VAE trained on the pixels."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.io._results import write_run
from clusterlens.io._workspace import (
    Workspace,
    check_image_root,
    unreadable_report,
)
from clusterlens.pipelines.features._pixels import _read_pixels
from clusterlens.utils._progress import progress

__all__ = ["run_vae_features"]

logger = logging.getLogger(__name__)


def run_vae_features(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    size: int = 28,
    mode: str = "L",
    latent: int = 16,
    epochs: int = 30,
    batch_size: int = 128,
    n_jobs: int = 2,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A small VAE trained on the items' pixels; its latent means as features.

    Writes ``features.npy`` (n, latent) float32, ``vae.npz`` + ``vae.json``
    (the model, with its loss per epoch) and ``run.json``. See
    :func:`clusterlens.features.fit_vae`.
    """
    from clusterlens.features import fit_vae, pixel_features

    check_image_root(ws, "features vae")
    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    n = len(ws)
    bar = progress(total=n, desc="pixels", unit="img", verbose=verbose)
    imgs, unreadable = _read_pixels(ws, 0, n, size, mode, n_jobs, bar.update)
    bar.close()
    report = unreadable_report(
        ws, "features vae", unreadable, outcome="are trained on as zero pixels"
    )
    X = pixel_features(imgs)
    t_read = time.perf_counter() - t0
    model = fit_vae(
        X,
        latent=latent,
        epochs=epochs,
        batch_size=batch_size,
        random_state=random_state,
        verbose=verbose,
    )
    Z = model.transform(X)
    model.save(stage / "vae")
    np.save(stage / "features.npy", Z)
    seconds = time.perf_counter() - t0
    summary = {
        "n_items": n,
        **report,
        "raw_dim": int(X.shape[1]),
        "dim": int(Z.shape[1]),
        "final_loss": model.history[-1]["loss"],
        "read_seconds": t_read,
        "seconds": seconds,
        "images_per_second": float(n / max(seconds, 1e-9)),
    }
    write_run(
        stage,
        schema="clusterlens.features.vae/1",
        command="features vae",
        invocation=command,
        parameters={
            "workspace": str(ws.root.resolve()),
            "size": size,
            "mode": mode,
            "latent": latent,
            "hidden": list(model.hidden),
            "epochs": epochs,
            "batch_size": batch_size,
        },
        seed=random_state,
        results=summary,
        history=model.history,
        outputs=["features.npy", "vae.npz", "vae.json", "run.json"],
    )
    return summary
