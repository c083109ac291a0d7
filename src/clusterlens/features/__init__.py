"""Image features: SIFT (OpenCV), CNN embeddings and a VAE (torch), pixels and PCA."""

from __future__ import annotations

from clusterlens.features._cnn import CnnEmbedder
from clusterlens.features._effnet import (
    build_efficientnet_lite,
    default_weights_path,
    efficientnet_lite_blocks,
)
from clusterlens.features._pixels import PcaModel, fit_pca, pixel_features
from clusterlens.features._sift import SiftResult, resize_for_sift, sift_descriptors
from clusterlens.features._smooth import knn_smooth
from clusterlens.features._vae import VaeModel, fit_vae

__all__ = [
    "CnnEmbedder",
    "PcaModel",
    "SiftResult",
    "VaeModel",
    "build_efficientnet_lite",
    "default_weights_path",
    "efficientnet_lite_blocks",
    "fit_pca",
    "fit_vae",
    "knn_smooth",
    "pixel_features",
    "resize_for_sift",
    "sift_descriptors",
]
