"""``clusterlens features sift|cnn|pixels|vae|iic`` as library calls over a workspace.

One module per extractor (``_sift``, ``_cnn``, ``_pixels``, ``_vae``, ``_iic``);
``_common`` holds what they share (item shards on Dask, the dense output).
"""

from __future__ import annotations

from clusterlens.pipelines.features._cnn import cnn_calibration, run_cnn_features
from clusterlens.pipelines.features._iic import run_iic_features
from clusterlens.pipelines.features._pixels import run_pixel_features
from clusterlens.pipelines.features._sift import run_sift_features
from clusterlens.pipelines.features._vae import run_vae_features

__all__ = [
    "cnn_calibration",
    "run_cnn_features",
    "run_iic_features",
    "run_pixel_features",
    "run_sift_features",
    "run_vae_features",
]
