"""The demos: ``explore`` on photos shipped inside installed packages, and the
digits k-means run (scikit-learn's handwritten digits, clustered and reported)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.cluster import KMeans
from clusterlens.io import write_results, write_run_json
from clusterlens.metrics import evaluate_clustering
from clusterlens.report import build_cluster_report

__all__ = ["DEMO_PLANTS", "build_demo_folder", "demo_photo_files", "run_demo"]

logger = logging.getLogger(__name__)


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    n_clusters: int = 10,
    n_init: int = 10,
    random_state: int = 0,
    verbose: int = 0,
) -> dict[str, Any]:
    """Cluster the 1,797 digits of ``sklearn.datasets.load_digits`` and report.

    Features are the 64 pixel intensities scaled to [0, 1]; k-means runs
    ``n_init`` k-means++ starts; the hidden digit labels are used only to
    evaluate (accuracy with Hungarian matching, NMI, ARI, purity).

    Parameters
    ----------
    out_dir : path
        Existing, empty folder to write into: ``model.npz`` + ``model.json``,
        ``assignments.parquet``, ``report.html`` and ``run.json``.
    n_clusters : int, default=10
    n_init : int, default=10
    random_state : int, default=0
    verbose : int, default=0

    Returns
    -------
    summary : dict
        The figures written to ``run.json`` (``accuracy``, ``nmi``, ``ari``,
        ``purity``, ``inertia``, ``n_iter``, timings).
    """
    from sklearn.datasets import load_digits

    out = Path(out_dir)
    t0 = time.perf_counter()
    digits = load_digits()
    images = digits.images.astype(np.float32)  # (1797, 8, 8), values 0..16
    X = (images.reshape(len(images), -1) / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    t_load = time.perf_counter() - t0

    km = KMeans(n_clusters, n_init=n_init, random_state=random_state, verbose=verbose)
    km.fit(X)
    t_fit = time.perf_counter() - t0 - t_load

    scores = evaluate_clustering(y, km.labels_)
    distance = np.sqrt(km.distances_.astype(np.float64))
    km.save(out / "model")
    write_results(
        out / "assignments.parquet",
        {
            "index": np.arange(len(y), dtype=np.int64),
            "item_id": np.array([f"digits/{i}" for i in range(len(y))]),
            "label": y,
            "cluster": km.labels_,
            "distance": distance,
        },
    )
    figures = {
        "accuracy (Hungarian)": scores["accuracy"],
        "NMI": scores["nmi"],
        "ARI": scores["ari"],
        "purity": scores["purity"],
        "inertia": km.inertia_,
        "iterations": km.n_iter_,
        "k-means seconds": t_fit,
    }
    build_cluster_report(
        out / "report.html",
        labels_pred=km.labels_,
        images=digits.images.astype(np.uint8) * 15,
        labels_true=y,
        distances=distance,
        figures=figures,
        history=km.history_,
        params=km.get_params(),
        title="clusterlens demo: scikit-learn digits, k-means on pixels",
        class_names=[f"digit {i}" for i in range(10)],
    )
    summary = {
        "accuracy": scores["accuracy"],
        "nmi": scores["nmi"],
        "ari": scores["ari"],
        "purity": scores["purity"],
        "inertia": km.inertia_,
        "n_iter": km.n_iter_,
        "n_samples": len(y),
        "n_clusters": n_clusters,
    }
    write_run_json(
        out / "run.json",
        {
            "schema": "clusterlens.demo/1",
            "command": "demo",
            "dataset": "sklearn.datasets.load_digits (1,797 8x8 images, 10 classes)",
            "features": "64 pixel intensities / 16",
            "parameters": {
                "n_clusters": n_clusters,
                "n_init": n_init,
                "init": "k-means++",
                "engine": km.engine_,
            },
            "seed": random_state,
            "timings": {
                "load_seconds": t_load,
                "fit_seconds": t_fit,
                "total_seconds": time.perf_counter() - t0,
            },
            "results": summary,
            "history": km.history_,
            "outputs": [
                "model.npz",
                "model.json",
                "assignments.parquet",
                "report.html",
            ],
        },
    )
    return summary


#: Planted variants the photo demo adds, so that every view has something to
#: show: (source photo, what is done to it, file name).
DEMO_PLANTS = (
    (
        "coffee.png",
        "resized to half and saved as JPEG quality 60",
        "planted_coffee_small.jpg",
    ),
    ("astronaut.png", "mirrored left to right", "planted_astronaut_mirror.png"),
    ("rocket.jpg", "Gaussian blur, sigma 4 px", "planted_rocket_blurred.jpg"),
    ("chelsea.png", "darkened to 15 % brightness", "planted_chelsea_dark.png"),
)


def demo_photo_files() -> list[Path]:
    """The real photos the demo explores: those shipped inside installed packages.

    Every image of ``skimage/data`` that Pillow decodes (astronaut, coffee,
    chelsea the cat, the rocket, a stereo pair of a motorcycle, the Hubble deep
    field, coins, text, ...) and scikit-learn's two sample photos (China, a
    flower). No network is used.
    """
    from clusterlens.utils._optional import import_optional

    skdata = import_optional("skimage.data", extra="demo", feature="The photo demo")
    import sklearn.datasets

    roots = [
        Path(os.fspath(skdata.__file__)).parent,
        Path(os.fspath(sklearn.datasets.__file__)).parent / "images",
    ]
    files = []
    for root in roots:
        files += sorted(
            p
            for p in root.iterdir()
            if p.suffix.lower() in (".png", ".jpg", ".gif", ".tif")
            and p.name != "multipage_rgb.tif"  # a TIFF layout Pillow cannot read
        )
    return files


def build_demo_folder(dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the photo demo's image folder: the shipped photos and the plants.

    Returns what was written: ``n_photos``, ``planted`` (file -> how it was
    made).
    """
    import shutil

    from PIL import Image, ImageFilter, ImageOps

    photos = Path(os.fspath(dest))
    photos.mkdir(parents=True, exist_ok=True)
    files = demo_photo_files()
    for p in files:
        shutil.copyfile(p, photos / p.name)
    planted = {}
    for name, how, out_name in DEMO_PLANTS:
        with Image.open(photos / name) as f:
            img = f.convert("RGB")
        if out_name.endswith("_small.jpg"):
            img.resize((img.width // 2, img.height // 2)).save(
                photos / out_name, quality=60
            )
        elif "mirror" in out_name:
            ImageOps.mirror(img).save(photos / out_name)
        elif "blurred" in out_name:
            img.filter(ImageFilter.GaussianBlur(4)).save(photos / out_name, quality=95)
        else:
            img.point(lambda v: int(v * 0.15)).save(photos / out_name)
        planted[out_name] = f"{name}, {how}"
    return {"n_photos": len(files), "planted": planted}
