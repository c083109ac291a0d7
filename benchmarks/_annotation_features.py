"""Feature matrices for the annotation benchmark (what the clusters are made of).

- ``pixels``: raw pixels + PCA (the quick baseline);
- ``iic``: the penultimate layer (trunk) of a clusterlens IIC network
  (``clusterlens.deep._embed.iic_trunk_features``), L2-normalised, PCA;
- ``cnn``: a workspace's ImageNet CNN embeddings (``clusterlens features
  cnn``), L2-normalised, PCA;

then, optionally, ``smooth`` rounds of k-nearest-neighbour averaging: each
item's vector becomes the mean of its own and its ``n_neighbours - 1`` nearest
neighbours' vectors (no label is used anywhere). Averaging pulls an item
towards the dense part of the manifold it lies on, so k-means boundaries
follow the data's neighbourhoods rather than cutting through them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def pixel_pca(images: npt.NDArray[Any], pca: int, seed: int) -> npt.NDArray[np.float32]:
    from clusterlens.features import fit_pca, pixel_features

    X = pixel_features(images)
    return np.asarray(
        fit_pca(X, min(pca, X.shape[1]), random_state=seed).transform(X),
        dtype=np.float32,
    )


def train_iic(
    images: npt.NDArray[Any],
    n_classes: int,
    *,
    epochs: int,
    train_limit: int,
    seed: int,
) -> Any:
    """Train clusterlens IIC (labels never seen) on at most ``train_limit`` images."""
    from clusterlens.deep import IIC

    rng = np.random.default_rng(seed)
    n = images.shape[0]
    keep = np.sort(rng.choice(n, min(n, train_limit), replace=False))
    model = IIC(  # only the trunk is used: no SCAN head on top
        max(n_classes, 2),
        epochs=epochs,
        random_state=seed,
        device="cpu",
        verbose=1,
        cluster_head="iic",
    )
    return model.fit(images[keep])


def knn_smooth(
    X: npt.NDArray[np.float32], rounds: int, n_neighbours: int
) -> npt.NDArray[np.float32]:
    """``rounds`` of ``n_neighbours``-NN averaging: ``clusterlens.features.knn_smooth``
    (``clusterlens features iic --smooth``)."""
    from clusterlens.features import knn_smooth as smooth

    return smooth(X, rounds, n_neighbours)


def _l2_pca(T: npt.NDArray[np.float32], pca: int, seed: int) -> npt.NDArray[np.float32]:
    from clusterlens.features import fit_pca

    T = T / np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
    return np.asarray(
        fit_pca(T, min(pca, T.shape[1]), random_state=seed).transform(T),
        dtype=np.float32,
    )


def make_features(
    kind: str,
    images: npt.NDArray[Any],
    n_classes: int,
    *,
    pca: int,
    seed: int,
    iic_model: str | None = None,
    iic_epochs: int = 2,
    iic_train_limit: int = 20000,
    iic_save: str | None = None,
    smooth: int = 0,
    n_neighbours: int = 10,
    embeddings: npt.NDArray[Any] | None = None,
) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """The feature matrix of ``kind`` ("pixels", "iic" or "cnn": the rows of
    ``embeddings``) and what made it."""
    from clusterlens.deep._embed import iic_trunk_features

    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if kind == "pixels":
        Z = pixel_pca(images, pca, seed)
        desc = f"pixels + PCA {Z.shape[1]}"
    elif kind == "cnn":
        if embeddings is None:
            raise ValueError("kind='cnn' needs the embeddings")
        Z = _l2_pca(np.asarray(embeddings, dtype=np.float32), pca, seed)
        desc = f"CNN embeddings ({embeddings.shape[1]}-d), L2, PCA {Z.shape[1]}"
    else:
        if iic_model:
            from clusterlens.deep import IIC

            model = IIC.load(Path(iic_model), device="cpu")
            how = f"IIC model {iic_model}"
        else:
            model = train_iic(
                images,
                n_classes,
                epochs=iic_epochs,
                train_limit=iic_train_limit,
                seed=seed,
            )
            if iic_save:
                model.save(iic_save)
            how = (
                f"IIC trained here ({iic_epochs} epoch(s) on "
                f"{min(iic_train_limit, len(images)):,} images)"
            )
        info["iic_seconds"] = time.perf_counter() - t0
        T = iic_trunk_features(model, images)
        Z = _l2_pca(T, pca, seed)
        desc = f"{how}: trunk ({T.shape[1]}-d), L2, PCA {Z.shape[1]}"
    if smooth > 0:
        Z = knn_smooth(Z, smooth, n_neighbours)
        desc += f", {smooth} round(s) of {n_neighbours}-NN averaging"
    info["features"] = desc
    info["features_seconds"] = time.perf_counter() - t0
    return Z, info
