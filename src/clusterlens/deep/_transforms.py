"""Batched image transformations in plain torch (no torchvision).

One ``affine_grid`` + ``grid_sample`` call crops, rescales, rotates and flips a
whole batch; colour jitter and the Sobel filter are tensor arithmetic. All
random draws come from a caller's ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["ContrastiveViews", "Transforms", "default_transforms", "jitter", "sobel"]


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) uint8 or float -> float32 in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical Sobel responses of the grey image: (n, 2, H, W)."""
    g = _grey(x)
    kx = g.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    k = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    return F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), k)


@dataclass(frozen=True)
class Transforms:
    """Settings of the random transformation ``g`` and of the clean view.

    Parameters
    ----------
    input_size : int
        Side of the square network input every view is resampled to.
    crop_sizes : sequence of float
        Side of the random crop of a transformed view, as fractions of the
        image's shorter side; one is drawn per image (IIC on MNIST: 16, 20 and
        24 of 28 pixels).
    eval_crop : float
        Side of the centred crop of the clean view (used for training pairs
        and for prediction), as a fraction of the shorter side.
    rotation : float
        Largest rotation of a transformed view, in degrees (uniform).
    rotation_p : float
        Probability that a transformed view is rotated at all (the authors'
        MNIST code: 0.5; 1.0 rotates every view).
    rotate_image : bool
        Rotate the whole image about its centre before cropping (torchvision's
        ``RandomRotation`` then ``RandomCrop``, as the authors' code does);
        ``False`` rotates the crop about its own centre.
    first_random_p : float
        Probability that the first view of a training pair is a random crop
        of side ``eval_crop`` instead of the centred one (the authors' MNIST
        "centre_half": 0.5). The view used for prediction is always centred.
    flip : bool
        Random horizontal flips of transformed views.
    brightness, contrast, saturation, hue : float
        Colour jitter strengths (torchvision's meaning): factors drawn in
        ``[1 - s, 1 + s]``, hue shift in ``[-hue, hue]`` turns. Saturation
        and hue apply to RGB only.
    sobel : bool
        Replace the image by its two Sobel responses.
    include_rgb : bool
        With ``sobel``, keep the colour channels as well (5 channels).
    """

    input_size: int = 24
    crop_sizes: tuple[float, ...] = field(default=(16 / 28, 20 / 28, 24 / 28))
    eval_crop: float = 20 / 28
    rotation: float = 25.0
    rotation_p: float = 1.0
    rotate_image: bool = False
    first_random_p: float = 0.0
    flip: bool = False
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.125
    sobel: bool = False
    include_rgb: bool = False

    def out_channels(self, in_channels: int) -> int:
        """Network input channels for images with ``in_channels``."""
        if not self.sobel:
            return in_channels
        return 2 + (in_channels if self.include_rgb and in_channels == 3 else 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        d = asdict(self)
        d["crop_sizes"] = list(self.crop_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transforms:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "crop_sizes": tuple(d["crop_sizes"])})

    # ------------------------------------------------------------------ #
    def _resample(
        self,
        x: torch.Tensor,
        scale: torch.Tensor,
        theta_rot: torch.Tensor,
        tx: torch.Tensor,
        ty: torch.Tensor,
        flip: torch.Tensor,
    ) -> torch.Tensor:
        n, _, h, w = x.shape
        s = min(h, w)
        # Normalised coordinates: a crop of side c pixels spans c/w of [-1, 1].
        sx, sy = scale * s / w, scale * s / h
        cos, sin = torch.cos(theta_rot), torch.sin(theta_rot)
        theta = torch.stack(
            [
                torch.stack([sx * cos * flip, -sx * sin, tx], dim=1),
                torch.stack([sy * sin * flip, sy * cos, ty], dim=1),
            ],
            dim=1,
        )
        size = (n, x.shape[1], self.input_size, self.input_size)
        grid = F.affine_grid(
            theta.to(x.device, x.dtype), list(size), align_corners=False
        )
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        if not self.sobel:
            return x
        edges = sobel(x)
        if self.include_rgb and x.shape[1] == 3:
            return torch.cat([edges, x], dim=1)
        return edges

    def clean(self, images: torch.Tensor) -> torch.Tensor:
        """The deterministic view: centred crop, rescaled (and Sobel)."""
        x = _to_float(images)
        n = x.shape[0]
        one = torch.ones(n)
        zero = torch.zeros(n)
        x = self._resample(x, one * self.eval_crop, zero, zero, zero, one)
        return self._finish(x)

    def first(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The first view of a training pair.

        The centred crop (:meth:`clean`), or with probability
        ``first_random_p`` a crop of the same side placed at random; no
        random number is drawn when ``first_random_p`` is 0.
        """
        if self.first_random_p <= 0:
            return self.clean(images)
        x = _to_float(images)
        n = x.shape[0]
        g = generator
        room = max(0.0, 1.0 - self.eval_crop)
        moved = torch.rand(n, generator=g) < self.first_random_p
        tx = torch.where(moved, (torch.rand(n, generator=g) * 2 - 1) * room, 0.0)
        ty = torch.where(moved, (torch.rand(n, generator=g) * 2 - 1) * room, 0.0)
        one, zero = torch.ones(n), torch.zeros(n)
        x = self._resample(x, one * self.eval_crop, zero, tx, ty, one)
        return self._finish(x)

    def random(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random transformation ``g(x)`` of every image (one draw each)."""
        x = _to_float(images)
        n = x.shape[0]
        g = generator
        crops = torch.tensor(self.crop_sizes, dtype=torch.float32)
        scale = crops[torch.randint(len(crops), (n,), generator=g)]
        # Crop centre anywhere that keeps the crop inside the image.
        room = (1.0 - scale).clamp(min=0.0)
        tx = (torch.rand(n, generator=g) * 2 - 1) * room
        ty = (torch.rand(n, generator=g) * 2 - 1) * room
        angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(self.rotation)
        if self.rotation_p < 1:
            angle = torch.where(
                torch.rand(n, generator=g) < self.rotation_p, angle, 0.0
            )
        if self.rotate_image:  # rotate the image about its centre, then crop
            cos, sin = torch.cos(angle), torch.sin(angle)
            tx, ty = cos * tx - sin * ty, sin * tx + cos * ty
        flip = torch.ones(n)
        if self.flip:
            flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        x = self._resample(x, scale, angle, tx, ty, flip)
        x = self._jitter(x, g)
        return self._finish(x)

    def _jitter(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return jitter(x, g, self.brightness, self.contrast, self.saturation, self.hue)


def jitter(
    x: torch.Tensor,
    g: torch.Generator,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
) -> torch.Tensor:
    """Colour jitter of float images in [0, 1], one random draw per image.

    Strengths have torchvision's meaning (factors in ``[1 - s, 1 + s]``, hue
    shift in ``[-hue, hue]`` turns); saturation and hue apply to RGB only.
    """
    n = x.shape[0]

    def factor(strength: float) -> torch.Tensor:
        f = 1.0 + (torch.rand(n, generator=g) * 2 - 1) * strength
        return f.view(n, 1, 1, 1).to(x.device)

    if brightness > 0:
        x = x * factor(brightness)
    if contrast > 0:
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factor(contrast) + mean
    if x.shape[1] == 3:
        if saturation > 0:
            grey = _grey(x)
            x = (x - grey) * factor(saturation) + grey
        if hue > 0:
            x = _rotate_hue(x, torch.rand(n, generator=g) * 2 - 1, hue)
    return x.clamp(0.0, 1.0)


def _rotate_hue(x: torch.Tensor, u: torch.Tensor, hue: float) -> torch.Tensor:
    """Rotate the chroma of RGB images in YIQ space by ``u * hue`` turns."""
    to_yiq = x.new_tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
    )
    to_rgb = torch.linalg.inv(to_yiq)
    a = (u * hue * 2 * math.pi).to(x.device, x.dtype)
    cos, sin = torch.cos(a), torch.sin(a)
    n = x.shape[0]
    rot = torch.zeros(n, 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    m = to_rgb @ rot @ to_yiq  # (n, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, x)


def default_transforms(
    height: int,
    width: int,
    channels: int,
    *,
    input_size: int | None = None,
    sobel: bool | None = None,
    flip: bool | None = None,
    crop_sizes: Sequence[float] | None = None,
    eval_crop: float | None = None,
    rotation: float | None = None,
    rotation_p: float | None = None,
    rotate_image: bool | None = None,
    first_random_p: float | None = None,
) -> Transforms:
    """The paper's settings for the image size and channel count.

    Greyscale images (MNIST, IIC's settings): crops of 16, 20 and 24 of 28
    pixels, centred crop 20 for the clean view, network input 24, rotations
    up to 25 degrees, no flips, brightness and contrast jitter. RGB images
    (CIFAR, STL): crops of 20/32 of the side, input 32 (64 for images of 64
    pixels or more), flips, colour jitter, Sobel with the colour kept off.
    Any argument given overrides its default.
    """
    side = min(height, width)
    rgb = channels == 3
    if rgb:
        d_crops: tuple[float, ...] = (20 / 32,)
        d_eval, d_rot, d_flip, d_sobel = 20 / 32, 0.0, True, True
        d_input = 64 if side >= 64 else 32
    else:
        d_crops = (16 / 28, 20 / 28, 24 / 28)
        d_eval, d_rot, d_flip, d_sobel = 20 / 28, 25.0, False, False
        d_input = 24 if side <= 32 else min(64, side)
    return Transforms(
        input_size=int(input_size or d_input),
        crop_sizes=tuple(float(c) for c in (crop_sizes or d_crops)),
        eval_crop=float(eval_crop if eval_crop is not None else d_eval),
        rotation=float(rotation if rotation is not None else d_rot),
        rotation_p=float(1.0 if rotation_p is None else rotation_p),
        rotate_image=bool(rotate_image),
        first_random_p=float(first_random_p or 0.0),
        flip=bool(d_flip if flip is None else flip),
        sobel=bool(d_sobel if sobel is None else sobel),
        include_rgb=False,
    )


@dataclass(frozen=True)
class ContrastiveViews:
    """SimCLR's augmentation, batched on the images' device.

    Each call draws, for every image, a random resized crop (area
    ``min_scale`` to 1 of the image, aspect ratio 3/4 to 4/3, resampled to
    ``size``), a horizontal flip with probability 1/2, colour jitter with
    probability ``jitter_p`` and greyscale with probability ``grey_p``
    (Chen et al., 2020; torchvision's ``RandomResizedCrop``,
    ``RandomHorizontalFlip``, ``RandomApply(ColorJitter)``,
    ``RandomGrayscale``). Every random number comes from the caller's CPU
    ``torch.Generator``, so a seed gives the same views on any device.

    Parameters
    ----------
    size : int
        Side of the square output.
    min_scale : float
        Smallest crop area, as a fraction of the image's.
    jitter_p : float
        Probability of the colour jitter.
    brightness, contrast, saturation, hue : float
        Its strengths (torchvision's meaning, see :func:`jitter`).
    grey_p : float
        Probability of turning the view grey (3 equal channels).
    """

    size: int = 96
    min_scale: float = 0.2
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grey_p: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return asdict(self)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """(n, 3, H, W) uint8 or [0, 1] float images -> (n, 3, size, size) views."""
        x = _to_float(images)
        n = x.shape[0]
        g = generator
        area = self.min_scale + torch.rand(n, generator=g) * (1 - self.min_scale)
        log_r = (torch.rand(n, generator=g) * 2 - 1) * math.log(4 / 3)
        ratio = torch.exp(log_r)
        cw = torch.sqrt(area * ratio).clamp(max=1.0)  # fractions of the width
        ch = torch.sqrt(area / ratio).clamp(max=1.0)  # and of the height
        tx = (torch.rand(n, generator=g) * 2 - 1) * (1 - cw)
        ty = (torch.rand(n, generator=g) * 2 - 1) * (1 - ch)
        flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        zero = torch.zeros(n)
        theta = torch.stack(
            [torch.stack([cw * flip, zero, tx], 1), torch.stack([zero, ch, ty], 1)], 1
        ).to(x.device, x.dtype)
        grid = F.affine_grid(
            theta, [n, x.shape[1], self.size, self.size], align_corners=False
        )
        x = F.grid_sample(
            x, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        if self.jitter_p > 0:
            use = (torch.rand(n, generator=g) < self.jitter_p).to(x.device)
            jittered = jitter(
                x, g, self.brightness, self.contrast, self.saturation, self.hue
            )
            x = torch.where(use.view(n, 1, 1, 1), jittered, x)
        if self.grey_p > 0 and x.shape[1] == 3:
            grey = (torch.rand(n, generator=g) < self.grey_p).to(x.device)
            x = torch.where(grey.view(n, 1, 1, 1), _grey(x).expand_as(x), x)
        return x
