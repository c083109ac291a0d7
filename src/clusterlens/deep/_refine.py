"""Edge-aware refinement of per-pixel clusters: a guided filter on the image.

The segmentation networks predict on a coarse grid (stride 8 for the CNN
trunk) that is upsampled to the image, so every boundary is blurred over
several pixels. :func:`refine_segmentation` filters each cluster's indicator
map with the image as the guide (He, Sun and Tang's guided filter), so that a
boundary moves to the image's edges, and takes the arg-max again.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from clusterlens.exceptions import DataValidationError

__all__ = [
    "REFINE_EPS",
    "REFINE_RADIUS",
    "box_mean",
    "guided_filter",
    "refine_segmentation",
]

#: Window radius as a share of the image's shorter side, and the
#: regularisation of the filter (grey levels in [0, 1]). Chosen on CamVid
#: val (k-means on the CNN maps, fit on train; 360x480 photos): radius 32 px
#: (0.09) took CamVid-3 0.936 -> 0.947 and CamVid-6 0.660 -> 0.682; radius
#: 8 px gained 0.3 pt, 48 px 1.0 / 2.9 pt; eps 1e-4 to 1e-2 changed < 0.1 pt.
REFINE_RADIUS = 0.09
REFINE_EPS = 1e-3


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of ``x`` (n, c, h, w) over each ``(2 r + 1)^2`` window, the window
    clipped at the borders; O(1) per pixel through cumulative sums."""
    r = int(radius)
    h, w = x.shape[-2:]

    def window_sums(z: torch.Tensor) -> torch.Tensor:
        z = F.pad(z, (r + 1, r, r + 1, r)).cumsum(-1).cumsum(-2)
        k = 2 * r + 1
        return (z[..., k:, k:] - z[..., :-k, k:] - z[..., k:, :-k] + z[..., :-k, :-k])[
            ..., :h, :w
        ]

    ones = torch.ones((1, 1, h, w), dtype=x.dtype, device=x.device)
    return window_sums(x) / window_sums(ones)


def guided_filter(
    p: torch.Tensor, guide: torch.Tensor, radius: int, eps: float
) -> torch.Tensor:
    """He et al.'s guided filter of ``p`` (n, c, h, w) by a grey ``guide``
    (n, 1, h, w): in each window the output is a linear function of the
    guide, so its edges follow the guide's (float64 inside)."""
    p64, g = p.double(), guide.double()
    mean_g, mean_p = box_mean(g, radius), box_mean(p64, radius)
    cov = box_mean(g * p64, radius) - mean_g * mean_p
    var = box_mean(g * g, radius) - mean_g * mean_g
    a = cov / (var + eps)
    b = mean_p - a * mean_g
    return (box_mean(a, radius) * g + box_mean(b, radius)).to(p.dtype)


def refine_segmentation(
    labels: npt.ArrayLike,
    image: npt.ArrayLike,
    n_clusters: int,
    *,
    radius: float = REFINE_RADIUS,
    eps: float = REFINE_EPS,
) -> npt.NDArray[np.int64]:
    """Move the boundaries of a per-pixel clustering onto the image's edges.

    Parameters
    ----------
    labels : array-like of shape (H, W), int
        A cluster id in ``[0, n_clusters)`` per pixel.
    image : array-like of shape (H, W, 3) or (H, W), uint8
        The image at the same size (its grey levels guide the filter).
    n_clusters : int
    radius : float, default=0.09
        Window radius as a share of the shorter side (at least 1 pixel).
    eps : float, default=1e-3
        Regularisation: edges weaker than about ``sqrt(eps)`` in grey level
        (0 to 1) are smoothed over.

    Returns
    -------
    labels : ndarray of shape (H, W), int64
        The arg-max of the guided-filtered indicator map of each cluster.

    Notes
    -----
    He, Sun and Tang, "Guided Image Filtering", ECCV 2010 / TPAMI 2013. O(k H W)
    whatever the radius. A region that holds one cluster over a window keeps
    it.
    """
    lab = np.asarray(labels)
    img = np.asarray(image)
    if lab.ndim != 2 or img.shape[:2] != lab.shape:
        raise DataValidationError(
            f"refine_segmentation needs labels (H, W) and an image of the same "
            f"height and width; got labels {lab.shape} and image {img.shape}."
        )
    grey = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)) / 255.0
    if grey.ndim == 3:
        grey = grey.mean(dim=-1)
    r = max(1, round(radius * min(lab.shape)))
    onehot = F.one_hot(torch.from_numpy(lab.astype(np.int64)), n_clusters)
    p = onehot.permute(2, 0, 1)[None].float()
    out = guided_filter(p, grey[None, None], r, eps)
    return out[0].argmax(dim=0).numpy().astype(np.int64)
