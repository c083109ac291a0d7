"""``clusterlens adapt``: SimCLR fine-tuning of the CNN on a workspace's images."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.exceptions import DataValidationError
from clusterlens.io._results import write_run
from clusterlens.io._workspace import Workspace, check_image_root, unreadable_report
from clusterlens.pipelines.features._pixels import _read_pixels
from clusterlens.utils._names import arg
from clusterlens.utils._progress import progress

__all__ = ["run_adapt"]

logger = logging.getLogger(__name__)


def run_adapt(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    backbone: str = "lite0",
    image_size: int = 96,
    epochs: int = 10,
    minutes: float | None = None,
    batch_size: int = 256,
    lr: float = 1e-4,
    temperature: float = 0.2,
    bn: str = "frozen",
    device: str = "auto",
    n_threads: int = 2,
    n_jobs: int = 2,
    random_state: int = 0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Contrastive fine-tuning of ``backbone`` on the items of ``ws``.

    Every item is decoded once, squashed to ``image_size`` x ``image_size``
    RGB as ``features cnn`` does (bilinear), into a uint8 cache in memory
    (60,000 items at 96 px: 1.6 GB) from which the views of every batch are
    made on the device. Unreadable items are left out of the training (and
    counted). Writes ``weights.npz`` + ``model.json`` (see
    :meth:`clusterlens.deep.ContrastiveAdapter.save`) and ``run.json``;
    the checkpoint of every epoch goes to ``checkpoint_dir`` (outside the
    staged output, so an interrupted run can be resumed).
    """
    from clusterlens.deep import ContrastiveAdapter, check_device

    check_image_root(ws, "adapt")
    check_device(device)  # before decoding anything: a missing GPU fails at once
    stage = Path(os.fspath(stage))
    t0 = time.perf_counter()
    n = len(ws)
    _check_batch(ws, n, batch_size)
    bar = progress(total=n, desc="decode", unit="img", verbose=verbose)
    imgs, unreadable = _read_pixels(ws, 0, n, image_size, "RGB", n_jobs, bar.update)
    bar.close()
    report = unreadable_report(
        ws, "adapt", unreadable, outcome="are left out of the training"
    )
    keep = np.ones(n, dtype=bool)
    keep[np.asarray(unreadable, dtype=np.int64)] = False
    n_train = int(keep.sum())
    _check_batch(ws, n_train, batch_size, " readable")
    t_read = time.perf_counter() - t0
    if checkpoint_dir is not None and not resume:
        Path(os.fspath(checkpoint_dir)).mkdir(parents=True, exist_ok=True)
    model = ContrastiveAdapter(
        backbone,
        image_size=image_size,
        epochs=epochs,
        minutes=minutes,
        batch_size=batch_size,
        lr=lr,
        temperature=temperature,
        bn=bn,
        device=device,
        n_threads=n_threads,
        random_state=random_state,
        verbose=verbose,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
    )
    t1 = time.perf_counter()
    model.fit(imgs[keep] if n_train < n else imgs)
    t_train = time.perf_counter() - t1
    del imgs
    model.save(stage)
    hist = model.history_
    summary = {
        "n_items": n,
        **report,
        "n_trained": n_train,
        "backbone": backbone,
        "arch": model.arch_,
        "image_size": image_size,
        "epochs": model.n_epochs_,
        "steps": int(sum(h["steps"] for h in hist)),
        "loss_first": hist[0]["loss"] if hist else None,
        "loss_last": hist[-1]["loss"] if hist else None,
        "stopped_early": bool(hist and hist[-1]["stopped_early"]),
        "device": model.device_,
        "cache_device": getattr(model, "cache_device_", None),
        "decode_seconds": t_read,
        "train_seconds": t_train,
        "seconds": time.perf_counter() - t0,
        "images_per_second": float(
            sum(h["steps"] for h in hist) * batch_size / max(t_train, 1e-9)
        ),
        "weights": str(stage / "weights.npz"),
    }
    write_run(
        stage,
        schema="clusterlens.adapt/1",
        command="adapt",
        invocation=command,
        parameters={
            "workspace": str(ws.root.resolve()),
            "backbone": backbone,
            "image_size": image_size,
            "epochs": epochs,
            "minutes": minutes,
            "batch_size": batch_size,
            "lr": lr,
            "temperature": temperature,
            "bn": bn,
            "device": device,
            "n_threads": n_threads,
            "checkpoint": None if checkpoint_dir is None else str(checkpoint_dir),
            "resume": resume,
        },
        seed=random_state,
        results=summary,
        history=hist,
        outputs=["weights.npz", "model.json", "run.json"],
    )
    return summary


def _check_batch(ws: Workspace, n: int, batch_size: int, what: str = "") -> None:
    """Refuse a workspace of fewer (readable) images than one batch."""
    if n >= batch_size:
        return
    raise DataValidationError(
        f"adapt: workspace {str(ws.root)!r} has {n}{what} images, fewer than "
        f"{arg('batch_size', str(batch_size))}; contrastive training needs one full "
        "batch (each image's negatives are the others of its batch). Pass "
        f"{arg('batch_size', str(max(2, n)))} or less, or add images."
    )
