"""Embeddings of a fitted IIC: the trunk's output, the input of every head.

``IIC.predict_proba`` gives the chosen head's cluster probabilities (k values
per image). Finer structure, e.g. to over-cluster a dataset into hundreds of
pure clusters for a person to name, lives in the penultimate layer: the
features every sub-head reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.deep._iic import IIC, as_image_tensor
from clusterlens.deep._runtime import _torch_threads
from clusterlens.exceptions import DataValidationError, InvalidParameterError

__all__ = ["iic_trunk_features"]


def iic_trunk_features(
    model: IIC, X: Any, *, batch_size: int = 1024
) -> npt.NDArray[np.float32]:
    """Trunk features ``(n_samples, n_features)`` of a fitted IIC for images ``X``.

    Each image goes through the model's deterministic (clean) transformation,
    as in :meth:`IIC.predict_proba`; the heads are not applied.

    Parameters
    ----------
    model : IIC
        A fitted (or loaded) IIC.
    X : array-like of shape (n_samples, H, W) or (n_samples, H, W, C)
        Images of the size the model was trained on (uint8, or floats in [0, 1]).
    batch_size : int, default=1024
        Images per forward pass.

    Returns
    -------
    features : ndarray of shape (n_samples, n_features), float32
    """
    if not isinstance(model, IIC):
        raise InvalidParameterError(
            f"model must be a fitted clusterlens IIC; got {type(model).__name__}."
        )
    model._check_fitted()
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise InvalidParameterError(
            f"The 'batch_size' parameter must be an int >= 1. Got {batch_size!r}."
        )
    images = as_image_tensor(X, "X")
    shape = (int(images.shape[2]), int(images.shape[3]), int(images.shape[1]))
    if shape != tuple(model.image_shape_):
        h, w, c = model.image_shape_
        raise DataValidationError(
            f"X holds {shape[0]}x{shape[1]} images with {shape[2]} channel(s); "
            f"this model was trained on {h}x{w} with {c}. Resize the images first."
        )
    with _torch_threads(model.n_threads):
        return model._trunk_features(images, batch_size)
