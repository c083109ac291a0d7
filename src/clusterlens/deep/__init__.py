"""Deep image clustering with IIC (Invariant Information Clustering) in torch.

Needs the ``deep`` extra (torch); importing this package without torch raises
:class:`~clusterlens.exceptions.MissingDependencyError` with the install line.
"""

from __future__ import annotations

from clusterlens.utils._optional import import_optional

import_optional("torch", extra="deep", feature="clusterlens.deep (IIC)")

from clusterlens.deep._iic import IIC, as_image_tensor  # noqa: E402
from clusterlens.deep._loss import (  # noqa: E402
    iid_loss,
    iid_segmentation_loss,
    joint_distribution,
    joint_distribution_dense,
    mutual_information_loss,
)
from clusterlens.deep._nets import BACKBONES, IICNet  # noqa: E402
from clusterlens.deep._transforms import (  # noqa: E402
    Transforms,
    default_transforms,
    sobel,
)

__all__ = [
    "BACKBONES",
    "IIC",
    "IICNet",
    "Transforms",
    "as_image_tensor",
    "default_transforms",
    "iid_loss",
    "iid_segmentation_loss",
    "joint_distribution",
    "joint_distribution_dense",
    "mutual_information_loss",
    "sobel",
]
