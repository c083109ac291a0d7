"""Deep clustering in torch: IIC, SCAN heads, and SimCLR adaptation of the CNN.

Needs the ``deep`` extra (torch); importing this package without torch raises
:class:`~clusterlens.exceptions.MissingDependencyError` with the install line.
Importing it sets ``OMP_WAIT_POLICY=PASSIVE`` unless already set (see below).
"""

from __future__ import annotations

import os

from clusterlens.utils._optional import import_optional

# OpenMP threads that spin while waiting make torch 10x slower on a busy
# machine (measured: 2.75 s against 0.21 s per IIC step with 2 threads on 2
# shared cores); passive waiting changes no result. Read once, when torch loads;
# a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import_optional("torch", extra="deep", feature="clusterlens.deep (IIC)")

from clusterlens.deep._adapt import ContrastiveAdapter, check_device  # noqa: E402
from clusterlens.deep._iic import IIC, as_image_tensor  # noqa: E402
from clusterlens.deep._loss import (  # noqa: E402
    iid_loss,
    iid_segmentation_loss,
    joint_distribution,
    joint_distribution_dense,
    mutual_information_loss,
    nt_xent_loss,
    scan_loss,
)
from clusterlens.deep._nets import BACKBONES, EmbeddingHeads, IICNet  # noqa: E402
from clusterlens.deep._presets import PRESETS, Preset, get_preset  # noqa: E402
from clusterlens.deep._refine import (  # noqa: E402
    guided_filter,
    refine_segmentation,
)
from clusterlens.deep._scan import (  # noqa: E402
    SCAN,
    EmbeddingPreprocessor,
    mine_neighbors,
)
from clusterlens.deep._seg import (  # noqa: E402
    IICSegmenter,
    SegTransforms,
    apply_geometry,
    invert_geometry,
    random_geometry,
    segmentation_step_loss,
)
from clusterlens.deep._seg_nets import (  # noqa: E402
    CNN_LAYERS,
    DEFAULT_CNN_LAYERS,
    IIC_CNN_LAYERS,
    LEGACY_CNN_LAYERS,
    SEG_FEATURES,
    CnnFeatureMaps,
    SegNet,
    check_cnn_layers,
    cnn_pixel_features,
)
from clusterlens.deep._transforms import (  # noqa: E402
    ContrastiveViews,
    Transforms,
    default_transforms,
    sobel,
)

__all__ = [
    "BACKBONES",
    "CNN_LAYERS",
    "DEFAULT_CNN_LAYERS",
    "IIC",
    "IIC_CNN_LAYERS",
    "LEGACY_CNN_LAYERS",
    "PRESETS",
    "SCAN",
    "SEG_FEATURES",
    "CnnFeatureMaps",
    "ContrastiveAdapter",
    "ContrastiveViews",
    "EmbeddingHeads",
    "EmbeddingPreprocessor",
    "IICNet",
    "IICSegmenter",
    "Preset",
    "SegNet",
    "SegTransforms",
    "Transforms",
    "apply_geometry",
    "as_image_tensor",
    "check_cnn_layers",
    "check_device",
    "cnn_pixel_features",
    "default_transforms",
    "get_preset",
    "guided_filter",
    "iid_loss",
    "iid_segmentation_loss",
    "invert_geometry",
    "joint_distribution",
    "joint_distribution_dense",
    "mine_neighbors",
    "mutual_information_loss",
    "nt_xent_loss",
    "random_geometry",
    "refine_segmentation",
    "scan_loss",
    "segmentation_step_loss",
    "sobel",
]
