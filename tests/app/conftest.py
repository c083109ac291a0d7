"""Tiny workspaces for the review app tests: synthetic digits, clustered for real."""

from __future__ import annotations

import numpy as np
import pytest


def _blobs(n_per, seed):
    """3 classes of 8x8 images: a bright square in one of three places, plus noise."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for c, (r, q) in enumerate([(0, 0), (0, 4), (4, 2)]):
        base = np.zeros((8, 8), dtype=np.float64)
        base[r : r + 4, q : q + 4] = 200
        noise = rng.normal(0, 12, size=(n_per, 8, 8))
        imgs.append(np.clip(base + noise, 0, 255).astype(np.uint8))
        labels.append(np.full(n_per, c))
    return np.concatenate(imgs), np.concatenate(labels)


def make_ws(tmp_path, *, n_per=20, k=3, seed=0, features=True):
    """Ingest synthetic digits and k-means them (``clusterlens cluster``'s code)."""
    from clusterlens.io import create_workspace
    from clusterlens.pipelines.cluster_images import run_cluster_images

    images, labels = _blobs(n_per, seed)
    src = tmp_path / "digits.npz"
    np.savez(src, images=images, labels=labels)
    ws_dir = tmp_path / "ws"
    ws_dir.mkdir()
    ws = create_workspace(src, ws_dir)
    feat = ws_dir / "features" / "pixels"
    feat.mkdir(parents=True)
    np.save(feat / "features.npy", images.reshape(len(images), -1).astype(np.float32))
    stage = ws_dir / "clusters" / "pixels"
    stage.mkdir(parents=True)
    run_cluster_images(
        ws,
        stage,
        features="pixels",
        n_clusters=k,
        n_init=3,
        random_state=seed,
        report=False,
    )
    if not features:
        (feat / "features.npy").unlink()
    return ws_dir, labels


@pytest.fixture
def digits_ws(tmp_path):
    """(workspace folder, true labels) with 3 clusters of 20 items."""
    return make_ws(tmp_path)
