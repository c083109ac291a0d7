"""SIFT descriptors with OpenCV: a keypoint cap, optional RootSIFT, a resize policy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.utils._optional import import_optional
from clusterlens.utils.validation import check_int

__all__ = ["SiftResult", "opencv", "resize_for_sift", "sift_descriptors"]

logger = logging.getLogger(__name__)

_OWNER = "sift_descriptors"


@dataclass(frozen=True)
class SiftResult:
    """The SIFT descriptors of one image.

    Attributes
    ----------
    descriptors : ndarray of shape (n_keypoints, 128), uint8
    keypoints : ndarray of shape (n_keypoints, 4), float32
        ``x, y`` as fractions of the image's width and height (so they do not
        depend on the resize policy), the keypoint ``size`` in pixels of the
        resized image, and its ``angle`` in degrees.
    """

    descriptors: npt.NDArray[np.uint8]
    keypoints: npt.NDArray[np.float32]


def opencv() -> Any:
    """The ``cv2`` module; MissingDependencyError naming the ``sift`` extra."""
    return import_optional("cv2", extra="sift", feature="SIFT features")


_cv2 = opencv  # the name before issue #22, for code written since


def resize_for_sift(
    image: npt.NDArray[np.uint8], *, max_size: int | None = 640, min_size: int = 0
) -> npt.NDArray[np.uint8]:
    """Scale a grayscale image so its longer side is at most ``max_size``.

    Small images are enlarged so their shorter side is at least ``min_size``
    (0 disables it); enlarging wins over ``max_size`` for very thin images.
    Area interpolation shrinks, bicubic enlarges.
    """
    cv2 = opencv()
    h, w = image.shape[:2]
    scale = 1.0
    if max_size is not None and max(h, w) > max_size:
        scale = max_size / max(h, w)
    if min_size and min(h, w) * scale < min_size:
        scale = min_size / min(h, w)
    if scale == 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(image, size, interpolation=interp), dtype=np.uint8)


def sift_descriptors(
    image: npt.NDArray[np.uint8],
    *,
    max_keypoints: int = 300,
    rootsift: bool = False,
    max_size: int | None = 640,
    min_size: int = 0,
    detector: Any = None,
) -> SiftResult:
    """Detect SIFT keypoints in one image and describe them.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, 3), uint8
        Colour images are converted to grayscale (ITU-R 601-2 luma).
    max_keypoints : int, default=300
        Keep at most this many keypoints, the strongest (largest detector
        response) first; 300 as in the reference project.
    rootsift : bool, default=False
        RootSIFT (Arandjelović & Zisserman, 2012): L1-normalise each descriptor
        and take the square root, so Euclidean distance compares like the
        Hellinger kernel; stored as uint8 (scaled by 512, clipped at 255, as
        OpenCV stores SIFT).
    max_size, min_size : int, default=640 and 0
        Resize policy, see :func:`resize_for_sift`.
    detector : cv2.SIFT, default=None
        A detector to reuse (one per thread); a new one when None.

    Returns
    -------
    result : SiftResult
        Zero rows when no keypoint is found (a blank or tiny image).

    Notes
    -----
    Lowe, "Distinctive image features from scale-invariant keypoints", IJCV 2004.
    Cost is about linear in the number of pixels after resizing.

    Examples
    --------
    >>> import numpy as np
    >>> img = (np.indices((64, 64)).sum(0) % 16 * 16).astype(np.uint8)
    >>> r = sift_descriptors(img, max_keypoints=10)
    >>> r.descriptors.dtype, r.descriptors.shape[1], r.descriptors.shape[0] <= 10
    (dtype('uint8'), 128, True)
    """
    cv2 = opencv()
    max_keypoints = check_int(max_keypoints, "max_keypoints", _OWNER, low=1)
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise DataValidationError(
            f"image must be uint8 of shape (H, W) or (H, W, 3); got {img.dtype} of "
            f"shape {img.shape}."
        )
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    small = resize_for_sift(img, max_size=max_size, min_size=min_size)
    sh, sw = small.shape
    sift = (
        detector if detector is not None else cv2.SIFT_create(nfeatures=max_keypoints)
    )
    kps, desc = sift.detectAndCompute(np.ascontiguousarray(small), None)
    if desc is None or len(kps) == 0:
        return SiftResult(
            np.empty((0, 128), dtype=np.uint8), np.empty((0, 4), dtype=np.float32)
        )
    kp = np.array(
        [(k.pt[0], k.pt[1], k.size, k.angle, k.response) for k in kps],
        dtype=np.float64,
    )
    if kp.shape[0] > max_keypoints:  # nfeatures can keep ties and extra orientations
        order = np.argsort(-kp[:, 4], kind="stable")[:max_keypoints]
        order.sort()
        kp, desc = kp[order], desc[order]
    d = np.asarray(desc, dtype=np.float32)
    if rootsift:
        d = np.sqrt(d / np.maximum(d.sum(axis=1, keepdims=True), 1e-12))
        d = np.minimum(np.round(d * 512.0), 255.0)
    out_kp = np.empty((kp.shape[0], 4), dtype=np.float32)
    out_kp[:, 0] = kp[:, 0] / max(sw, 1)
    out_kp[:, 1] = kp[:, 1] / max(sh, 1)
    out_kp[:, 2] = kp[:, 2]
    out_kp[:, 3] = kp[:, 3]
    return SiftResult(np.clip(np.round(d), 0, 255).astype(np.uint8), out_kp)
