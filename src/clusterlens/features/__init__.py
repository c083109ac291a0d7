"""Image features: SIFT descriptors (OpenCV), CNN embeddings (torch), pixels and PCA."""

from __future__ import annotations

from clusterlens.features._cnn import CnnEmbedder
from clusterlens.features._effnet import build_efficientnet_lite0, default_weights_path
from clusterlens.features._pixels import PcaModel, fit_pca, pixel_features
from clusterlens.features._sift import SiftResult, resize_for_sift, sift_descriptors

__all__ = [
    "CnnEmbedder",
    "PcaModel",
    "SiftResult",
    "build_efficientnet_lite0",
    "default_weights_path",
    "fit_pca",
    "pixel_features",
    "resize_for_sift",
    "sift_descriptors",
]
