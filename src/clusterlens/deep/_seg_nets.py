"""Fully convolutional trunks and per-pixel heads for IIC segmentation.

Two trunks: ``"rgb"``, a small VGG-style net trained from scratch on the pixels
(stride 4), and ``"cnn"``, the ImageNet EfficientNet-Lite0 that clusterlens
ships, frozen, whose stride-8 and stride-16 feature maps (upsampled to stride
8) feed two trainable 3x3 convolutions. :func:`cnn_pixel_features` gives the
frozen maps alone, the embeddings of the k-means baseline.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clusterlens.deep._nets import _VGGTrunk
from clusterlens.features._effnet import INPUT_MEAN, INPUT_STD, build_efficientnet_lite

__all__ = ["SEG_FEATURES", "CnnFeatureMaps", "SegNet", "cnn_pixel_features"]

#: Trunks: "rgb" learns from the pixels, "cnn" sits on frozen ImageNet maps.
SEG_FEATURES = ("rgb", "cnn")
# The "rgb" trunk at width 1: 3x3 conv + BN + ReLU layers, "M" a 2x2 max-pool.
_RGB_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256]
# Trainable layers on the frozen CNN maps: a 3x3 then a 1x1 convolution (two
# 3x3 layers of 128 channels cost 4x the compute for a CPU step).
_CNN_HEAD_CHANNELS = 96


class CnnFeatureMaps(nn.Module):
    """Frozen EfficientNet-Lite0: stride-8 and stride-16 maps, concatenated.

    Each part is L2-normalised per pixel before the concatenation, so both
    scales weigh the same; the stride-16 map is upsampled (bilinear) to the
    stride-8 grid. Input: RGB in [0, 1], ``(n, 3, H, W)`` with H and W
    multiples of 16. Output: ``(n, C, H / 8, W / 8)``.
    """

    stride = 8

    def __init__(self) -> None:
        super().__init__()
        net = build_efficientnet_lite(None)
        self.stem = nn.Sequential(net._conv_stem, net._bn0)
        # cumulative stride after each block: the last block at 8 and at 16
        stride, cut8, cut16 = 2, -1, -1
        for i, block in enumerate(net._blocks):
            stride *= int(block._depthwise_conv.stride[0])
            if stride == 8:
                cut8 = i
            elif stride == 16:
                cut16 = i
        self.blocks = nn.ModuleList(net._blocks[: cut16 + 1])
        self.cut8 = cut8
        self.out_channels = int(
            net._blocks[cut8]._bn2.num_features + net._blocks[cut16]._bn2.num_features
        )
        self.register_buffer(
            "mean", torch.tensor(INPUT_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        )
        self.register_buffer(
            "std", torch.tensor(INPUT_STD, dtype=torch.float32).view(1, 3, 1, 1)
        )
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> CnnFeatureMaps:
        """Always in eval mode: its batch-norm statistics are ImageNet's."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = (x - self.mean) / self.std  # type: ignore[operator]
            x = F.relu6(self.stem(x))
            f8 = x
            for i, block in enumerate(self.blocks):
                x = block(x)
                if i == self.cut8:
                    f8 = x
            f16 = F.interpolate(
                x, size=f8.shape[-2:], mode="bilinear", align_corners=False
            )
            return torch.cat(
                [F.normalize(f8, dim=1), F.normalize(f16, dim=1)], dim=1
            ).contiguous()


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class SegNet(nn.Module):
    """A fully convolutional trunk with per-pixel clustering heads.

    Parameters
    ----------
    features : {"rgb", "cnn"}
        ``"rgb"``: a VGG-style trunk (6 conv layers, 2 pools, stride 4)
        learnt from the input channels; ``"cnn"``: frozen EfficientNet-Lite0
        maps (stride 8) under two trainable 3x3 convolutions.
    in_channels : int
        Input channels of the ``"rgb"`` trunk (3 RGB, 2 Sobel, 5 both).
    k, k_over : int
        Clusters of the main and of the overclustering head (0: none).
    n_heads : int
        Sub-heads per head: 1x1 convolutions with a softmax over clusters.
    width : float
        Channel multiplier of the ``"rgb"`` trunk.
    """

    def __init__(
        self,
        features: str,
        in_channels: int,
        k: int,
        k_over: int,
        n_heads: int,
        width: float = 0.5,
    ):
        super().__init__()
        self.k, self.k_over, self.n_heads = k, k_over, n_heads
        if features == "cnn":
            self.frozen: nn.Module | None = CnnFeatureMaps()
            c = _CNN_HEAD_CHANNELS
            self.trunk = nn.Sequential(
                *_conv_bn_relu(self.frozen.out_channels, c),  # type: ignore[arg-type]
                nn.Conv2d(c, c, 1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            )
            self.stride = CnnFeatureMaps.stride
        else:
            self.frozen = None
            body = _VGGTrunk(_RGB_CFG, in_channels, width)
            self.trunk = body.body
            c = body.out_channels
            self.stride = 2**body.n_pools
        self.heads = nn.ModuleDict({"main": nn.Conv2d(c, k * n_heads, 1)})
        if k_over > 0:
            self.heads["over"] = nn.Conv2d(c, k_over * n_heads, 1)

    def features(self, x: torch.Tensor, *, frozen_done: bool = False) -> torch.Tensor:
        """Trunk output ``(n, C, H / stride, W / stride)``.

        ``frozen_done``: ``x`` already holds the frozen CNN's maps.
        """
        if self.frozen is not None and not frozen_done:
            x = self.frozen(x)
        return self.trunk(x)  # type: ignore[no-any-return]

    def head(self, f: torch.Tensor, head: str = "main") -> torch.Tensor:
        """Per-pixel probabilities ``(n, n_heads, k, h, w)`` of head ``head``."""
        logits = self.heads[head](f)
        n, _, h, w = logits.shape
        return torch.softmax(logits.view(n, self.n_heads, -1, h, w), dim=2)

    def forward(self, x: torch.Tensor, head: str = "main") -> torch.Tensor:
        """Per-pixel probabilities ``(n, n_heads, k, h, w)`` of head ``head``."""
        return self.head(self.features(x), head)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise every trainable weight from ``generator`` (no global RNG)."""
        for name, m in self.named_modules():
            if name.startswith("frozen"):
                continue
            if isinstance(m, nn.Conv2d):
                if m.bias is not None:  # a head (1x1, with a bias)
                    bound = 1.0 / math.sqrt(m.in_channels)
                    nn.init.uniform_(m.weight, -bound, bound, generator=generator)
                    nn.init.zeros_(m.bias)
                else:
                    nn.init.kaiming_normal_(
                        m.weight,
                        mode="fan_out",
                        nonlinearity="relu",
                        generator=generator,
                    )
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def trainable_parameters(self) -> list[Any]:
        """The parameters the optimiser updates (not the frozen CNN's)."""
        return [p for p in self.parameters() if p.requires_grad]


def cnn_pixel_features(
    images: torch.Tensor,
    *,
    batch_size: int = 8,
    model: CnnFeatureMaps | None = None,
    n_threads: int | None = None,
) -> torch.Tensor:
    """Frozen ImageNet feature maps of RGB images in [0, 1]: ``(n, C, H/8, W/8)``.

    ``images`` is ``(n, 3, H, W)`` float with H and W multiples of 16;
    ``n_threads`` torch CPU threads while computing (restored afterwards).
    """
    from clusterlens.deep._iic import _torch_threads

    model = model or CnnFeatureMaps()
    with _torch_threads(n_threads):
        out = [
            model(images[s : s + batch_size])
            for s in range(0, images.shape[0], batch_size)
        ]
    return torch.cat(out)
