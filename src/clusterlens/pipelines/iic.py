"""``clusterlens iic`` as a library call: images in, trained IIC clusters out."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io import write_results, write_run_json
from clusterlens.utils._optional import import_optional

__all__ = ["HEAD_SELECTION", "load_images", "run_iic", "run_iic_predict"]

logger = logging.getLogger(__name__)

HEAD_SELECTION = (
    "the main-head sub-head with the lowest mean loss over the last epoch "
    "(labels are never used for training or selection)"
)


def load_images(
    source: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    mode: str | None = None,
    verbose: int = 0,
) -> Any:
    """Read any image source clusterlens knows (folder, IDX folder, ``.npz``)."""
    from clusterlens.io import load_image_array

    return load_image_array(source, size=size, mode=mode, verbose=verbose)


def _deep() -> Any:
    """``clusterlens.deep``, or a clear error naming the extra when torch is absent."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see clusterlens.deep
    import_optional("torch", extra="deep", feature="clusterlens iic")
    import clusterlens.deep

    return clusterlens.deep


def _item_ids(data: Any, source: Path) -> npt.NDArray[Any]:
    if data.paths is not None:
        return np.asarray([str(p) for p in data.paths])
    n = data.images.shape[0]
    return np.char.add(f"{source.name}/", np.arange(n).astype(str))


def _result_columns(
    data: Any, source: Path, proba: npt.NDArray[np.float32]
) -> dict[str, Any]:
    n, k = proba.shape
    cluster = proba.argmax(axis=1).astype(np.int64)
    cols: dict[str, Any] = {
        "index": np.arange(n, dtype=np.int64),
        "item_id": _item_ids(data, source),
    }
    if data.labels is not None:
        cols["label"] = np.asarray(data.labels, dtype=np.int64)
    cols["cluster"] = cluster
    cols["probability"] = proba[np.arange(n), cluster].astype(np.float32)
    width = len(str(k - 1))
    for c in range(k):
        cols[f"prob_{c:0{width}d}"] = proba[:, c].astype(np.float32)
    return cols


def photos_hint(channels: int, source: Path, k: int) -> str | None:
    """A pointer to the ImageNet CNN's features when IIC, which trains its
    network from scratch, is given colour photos: on every photo set measured
    the CNN's features clustered far better (CIFAR-10's 10,000 test photos:
    IIC 0.26 after 10 epochs, Lite0 features + the SCAN head 0.60; 398
    ant/bee photos: 0.57, chance 0.50, against 0.94). None for grey images."""
    if channels != 3:
        return None
    return (
        "IIC trains its network from scratch; on photos the ImageNet CNN's "
        "features, which need no training, have clustered far better "
        "(CIFAR-10 test photos: IIC 0.26, CNN 0.60; 398 ant/bee photos: 0.57 "
        f"against 0.94): clusterlens ingest {source} --out ws && clusterlens "
        f"features cnn ws && clusterlens cluster ws --features cnn -k {k} "
        "--method scan"
    )


def _scores(labels: Any, cluster: npt.NDArray[np.int64]) -> dict[str, float] | None:
    if labels is None:
        return None
    from clusterlens.metrics import evaluate_clustering

    lab = np.asarray(labels)
    known = lab >= 0  # -1: an image outside every class folder
    if not known.any():
        return None
    s = evaluate_clustering(lab[known], cluster[known])
    return {key: s[key] for key in ("accuracy", "nmi", "ari", "purity")}


def run_iic(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    n_clusters: int = 10,
    n_clusters_over: int | None = None,
    epochs: int = 3,
    size: tuple[int, int] | None = None,
    mode: str | None = None,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
    **iic_params: Any,
) -> dict[str, Any]:
    """Train IIC on the images of ``source`` and write the run's outputs.

    Writes ``model.npz`` + ``model.json``, ``assignments.parquet`` (``index``,
    ``item_id``, ``label`` when known, ``cluster``, ``probability`` and one
    ``prob_<c>`` column per cluster), ``report.html`` (a grid per cluster and
    the training curves) and ``run.json`` (parameters, seed, the chosen
    sub-head, per-epoch history, timings). Known labels are used only to
    report accuracy, NMI and ARI.

    Parameters
    ----------
    source : path
        An image folder, an MNIST-style IDX folder or an ``.npz`` with
        ``images`` and optional ``labels``.
    out_dir : path
        Existing, empty folder to write into.
    n_clusters, n_clusters_over, epochs, random_state, verbose
        As for :class:`clusterlens.deep.IIC` (``n_clusters_over=None``: the
        preset's value, else 50).
    size : (height, width) or None
        Resize every image (needed for folders of mixed sizes).
    mode : {"L", "RGB"} or None
        Convert the images to grey or colour.
    command : dict or None
        The command line, recorded in ``run.json``.
    **iic_params
        Further :class:`~clusterlens.deep.IIC` parameters (``preset``,
        ``n_heads``, ``head_restarts``, ``kernel_size``, ``n_repeats``,
        ``batch_size``, ``lr``, ``width``, ``backbone``, ``transforms``,
        ``device``, ``n_threads``, ``checkpoint_dir``, ``resume``, ...), and
        ``transform_overrides``: a dict of
        :func:`~clusterlens.deep.default_transforms` keyword arguments
        (``sobel``, ``flip``, ``input_size``, ...) applied to the defaults for
        the images read (on top of the preset's transformations).

    Returns
    -------
    summary : dict
        What ``run.json`` holds under ``results``.
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer):
        raise InvalidParameterError(f"k must be an integer >= 2; got {n_clusters!r}.")
    if n_clusters < 2:
        raise InvalidParameterError(
            f"k must be >= 2 (the number of clusters to find); got {n_clusters}."
        )
    deep = _deep()
    from clusterlens.report._iic import build_iic_report

    deep.get_preset(iic_params.get("preset"))  # an unknown name fails first
    out, src = Path(out_dir), Path(source)
    t0 = time.perf_counter()
    data = load_images(src, size=size, mode=mode, verbose=verbose)
    n = data.images.shape[0]
    if n < n_clusters:
        raise DataValidationError(
            f"{src} holds {n} images; IIC needs at least k={n_clusters}."
        )
    t_load = time.perf_counter() - t0

    overrides = iic_params.pop("transform_overrides", None)
    if overrides:
        preset = deep.get_preset(iic_params.get("preset"))
        shape = data.images.shape
        iic_params["transforms"] = deep.default_transforms(
            shape[1],
            shape[2],
            shape[3] if len(shape) == 4 else 1,
            **{**(preset.transforms if preset else {}), **overrides},
        )
    model = deep.IIC(
        n_clusters,
        n_clusters_over=n_clusters_over,
        epochs=epochs,
        random_state=random_state,
        verbose=verbose,
        **iic_params,
    )
    labels = data.labels
    monitor = None
    if labels is not None and (np.asarray(labels) >= 0).all():
        monitor = labels
    model.fit(data.images, monitor)
    t_fit = time.perf_counter() - t0 - t_load

    proba = model.proba_  # the training images' (predict_proba would redo the pass)
    cols = _result_columns(data, src, proba)
    cluster = cols["cluster"]
    scores = _scores(labels, cluster)
    model.save(out / "model")
    write_results(out / "assignments.parquet", cols)

    iic_epochs = [h for h in model.history_ if h.get("phase") != "self-label"]
    last_iic = iic_epochs[-1] if iic_epochs else None
    self_labelled = [h for h in model.history_ if h.get("phase") == "self-label"]
    teacher_accuracy = None
    if model.student_history_ and scores is not None:
        teacher = model.scan_head_.history_ if model.scan_head_ else model.history_
        teacher_accuracy = teacher[-1].get("accuracy") if teacher else None
    summary: dict[str, Any] = {
        "n_images": n,
        "image_shape": list(model.image_shape_),
        "n_clusters": n_clusters,
        "n_clusters_used": int(np.unique(cluster).size),
        "head": model.head_,
        "head_selection": HEAD_SELECTION,
        "head_losses": last_iic["head_losses"] if last_iic else None,
        "head_accuracies": last_iic.get("head_accuracies") if last_iic else None,
        "cluster_head": model.cluster_head,
        "pixel_neighbors": (
            model.pixel_neighbors if model.cluster_head == "scan" else None
        ),
        # the IIC sub-head's own accuracy (the last epoch's) beside the SCAN head's
        "iic_head_accuracy": (
            model.history_[-1].get("accuracy") if model.history_ else None
        ),
        "student_epochs": len(model.student_history_),
        # the clusters the student learnt from (SCAN head or sub-head)
        "teacher_accuracy": teacher_accuracy,
        "self_label_epochs": len(self_labelled),
        "confident_share": (
            self_labelled[-1]["confident_share"] if self_labelled else None
        ),
        "preset": model.preset,
        "settings": model.settings_,
        "epochs": model.n_epochs_,
        "device": model.device_,
        "fit_seconds": t_fit,
        "hint": photos_hint(model.image_shape_[2], src, n_clusters),
    }
    if scores is not None:
        summary.update(scores)
    figures: dict[str, Any] = {}
    if scores is not None:
        figures.update(
            {
                "accuracy (Hungarian)": scores["accuracy"],
                "NMI": scores["nmi"],
                "ARI": scores["ari"],
            }
        )
    scan_head = model.scan_head_
    n_nbrs = 0 if scan_head is None else min(scan_head.n_neighbors, n - 1)
    figures.update(
        {
            "sub-head used": (
                f"{model.head_} of {model.settings_['n_heads']} (lowest loss)"
            ),
            **(
                {
                    "clusters from": "a SCAN head on the trunk's embeddings "
                    "(--cluster-head scan, the default; "
                    + (
                        f"{min(model.pixel_neighbors, n_nbrs)} of each image's "
                        f"{n_nbrs} neighbours from its pixels)"
                        if model.pixel_neighbors
                        else "its neighbours from the trunk only)"
                    )
                    + (
                        ""
                        if summary["iic_head_accuracy"] is None
                        else "; the IIC sub-head alone: accuracy "
                        f"{summary['iic_head_accuracy']:.4f}"
                    )
                }
                if model.cluster_head == "scan"
                else {}
            ),
            **(
                {
                    "student network": (
                        f"{len(model.student_history_)} epochs on the "
                        f"{model.student_history_[-1]['confident_share']:.1%} of "
                        f"the images above confidence {model.confidence}, then it "
                        "predicts (--student-epochs)"
                        + (
                            ""
                            if teacher_accuracy is None
                            else "; the clusters it learnt from: accuracy "
                            f"{teacher_accuracy:.4f}"
                        )
                    )
                }
                if model.student_history_
                else {}
            ),
            "preset": model.preset or "none",
            "final loss": last_iic["loss"] if last_iic else None,
            "epochs": model.n_epochs_,
            **(
                {
                    "self-labelling epochs": (
                        f"{len(self_labelled)} (last: "
                        f"{self_labelled[-1]['confident_share']:.1%} of the "
                        f"images above confidence {model.confidence})"
                    )
                }
                if self_labelled
                else {}
            ),
            "training seconds": t_fit,
            "device": model.device_,
        }
    )
    if summary["hint"]:
        figures["note"] = summary["hint"]
    params = {k: v for k, v in model.get_params().items() if k not in ("transforms",)}
    params.update(model.settings_)  # the values that ran, preset resolved
    params["transforms"] = model.transforms_.to_dict()
    build_iic_report(
        out / "report.html",
        proba=proba,
        images=data.images,
        labels_true=labels,
        class_names=data.class_names,
        history=model.history_,
        scan_history=(None if model.scan_head_ is None else model.scan_head_.history_),
        student_history=model.student_history_ or None,
        figures=figures,
        params=params,
        title=f"clusterlens iic: {src.name}, k={n_clusters}",
    )
    write_run_json(
        out / "run.json",
        {
            "schema": "clusterlens.iic/1",
            "command": command or {"name": "iic"},
            "data": str(src),
            "parameters": {
                **{k: v for k, v in params.items() if k != "checkpoint_dir"},
                "checkpoint_dir": None
                if params.get("checkpoint_dir") is None
                else str(params["checkpoint_dir"]),
                "size": list(size) if size else None,
                "mode": mode,
            },
            "seed": random_state,
            "head": model.head_,
            "head_selection": HEAD_SELECTION,
            "timings": {
                "load_seconds": t_load,
                "fit_seconds": t_fit,
                "epoch_seconds": [h["seconds"] for h in model.history_],
                "total_seconds": time.perf_counter() - t0,
            },
            "results": summary,
            "history": model.history_,
            "outputs": [
                "model.npz",
                "model.json",
                "assignments.parquet",
                "report.html",
                "run.json",
            ],
        },
    )
    return summary


def run_iic_predict(
    model_path: str | os.PathLike[str],
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    mode: str | None = None,
    device: str = "auto",
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assign the images of ``source`` with a saved IIC model.

    Writes ``assignments.parquet`` (same columns as :func:`run_iic`) and
    ``run.json``.
    """
    deep = _deep()
    out, src = Path(out_dir), Path(source)
    t0 = time.perf_counter()
    model = deep.IIC.load(model_path, device=device)
    data = load_images(src, size=size, mode=mode, verbose=verbose)
    proba = model.predict_proba(data.images)
    cols = _result_columns(data, src, proba)
    write_results(out / "assignments.parquet", cols)
    summary: dict[str, Any] = {
        "n_images": int(data.images.shape[0]),
        "n_clusters": int(proba.shape[1]),
        "n_clusters_used": int(np.unique(cols["cluster"]).size),
        "head": model.head_,
        "cluster_head": getattr(model, "cluster_head", "iic"),
    }
    scores = _scores(data.labels, cols["cluster"])
    if scores is not None:
        summary.update(scores)
    write_run_json(
        out / "run.json",
        {
            "schema": "clusterlens.iic-predict/1",
            "command": command or {"name": "iic-predict"},
            "model": str(model_path),
            "data": str(src),
            "timings": {"total_seconds": time.perf_counter() - t0},
            "results": summary,
            "outputs": ["assignments.parquet", "run.json"],
        },
    )
    return summary
