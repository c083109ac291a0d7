"""Fully convolutional trunks and per-pixel heads for IIC segmentation.

Two trunks: ``"rgb"``, a small VGG-style net trained from scratch on the pixels
(stride 4), and ``"cnn"``, the ImageNet EfficientNet-Lite that clusterlens
ships, frozen, whose feature maps of several depths (by default stride 8,
stride 16 and the 1280-channel head at stride 32, upsampled to stride 8) feed
two trainable convolutions. :func:`cnn_pixel_features` gives the frozen maps
alone, the embeddings of the k-means baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clusterlens.deep._nets import _VGGTrunk
from clusterlens.exceptions import InvalidParameterError
from clusterlens.features._effnet import INPUT_MEAN, INPUT_STD, build_efficientnet_lite

__all__ = [
    "CNN_LAYERS",
    "DEFAULT_CNN_LAYERS",
    "IIC_CNN_LAYERS",
    "LEGACY_CNN_LAYERS",
    "SEG_FEATURES",
    "CnnFeatureMaps",
    "SegNet",
    "check_cnn_layers",
    "cnn_pixel_features",
    "stack_maps",
]

#: Trunks: "rgb" learns from the pixels, "cnn" sits on frozen ImageNet maps.
SEG_FEATURES = ("rgb", "cnn")
# The "rgb" trunk at width 1: 3x3 conv + BN + ReLU layers, "M" a 2x2 max-pool.
_RGB_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256]
# Trainable layers on the frozen CNN maps: a 3x3 then a 1x1 convolution (two
# 3x3 layers of 128 channels cost 4x the compute for a CPU step).
_CNN_HEAD_CHANNELS = 96
#: Maps of the frozen CNN the "cnn" trunk can read, and their strides.
_LAYER_STRIDE = {"s8": 8, "s16": 16, "s32": 32, "head": 32}
CNN_LAYERS = tuple(_LAYER_STRIDE)
#: Default (and k-means's): the stride-8 and -16 blocks for the grid, the
#: conv head for the semantics (CamVid val, k-means, Lite0 at 240x320:
#: CamVid-3 0.882 -> 0.937, CamVid-6 0.591 -> 0.661 with the head added;
#: benchmarks/iic_seg.py).
DEFAULT_CNN_LAYERS = ("s8", "s16", "head")
#: The maps of models written before ``cnn_layers`` existed.
LEGACY_CNN_LAYERS = ("s8", "s16")
#: IIC's default: the same (on CamVid test the head lowered IIC on both tasks).
IIC_CNN_LAYERS = LEGACY_CNN_LAYERS
#: A map wider than this goes through a trainable 1x1 projection to
#: ``_CNN_HEAD_CHANNELS`` at its own grid before the upsampling.
_PROJECT_ABOVE = 256


class CnnFeatureMaps(nn.Module):
    """Frozen EfficientNet-Lite maps of several depths, each L2-normalised.

    Parameters
    ----------
    layers : sequence of {"s8", "s16", "s32", "head"}, default=("s8", "s16", "head")
        Which maps: the output of the last block at stride 8 (40 channels
        for Lite0), at stride 16 (112), at stride 32 (320), and the
        1280-channel convolutional head over it (stride 32, the layer the
        image embeddings pool). Deeper maps carry more of the ImageNet
        semantics (10-NN label purity of pooled CIFAR-10 features: 0.28,
        0.39, 0.57 and 0.58-0.60 for Lite0), shallower ones the finer grid.
    backbone : {"lite0", "lite1", "lite2"}, default="lite0"
        Whose packaged ImageNet weights.

    Each map is L2-normalised per pixel, so every layer weighs the same
    whatever its width. :meth:`maps` gives them at their own grids,
    ``forward`` upsampled (bilinear) to the finest one and concatenated.
    Input: RGB in [0, 1], ``(n, 3, H, W)`` with H and W multiples of 16.
    Output of ``forward``: ``(n, C, H / stride, W / stride)``.
    """

    def __init__(
        self,
        layers: Sequence[str] = DEFAULT_CNN_LAYERS,
        backbone: str = "lite0",
    ) -> None:
        super().__init__()
        self.layers = check_cnn_layers(layers)
        net = build_efficientnet_lite(None, backbone=backbone)
        self.stem = nn.Sequential(net._conv_stem, net._bn0)
        # cumulative stride after each block: the last block at 8, 16 and 32
        stride, cut = 2, {}
        for i, block in enumerate(net._blocks):
            stride *= int(block._depthwise_conv.stride[0])
            cut[f"s{stride}"] = i
        needed = [cut[name] for name in self.layers if name != "head"]
        last = len(net._blocks) - 1 if "head" in self.layers else max(needed)
        self.blocks = nn.ModuleList(net._blocks[: last + 1])
        self.cuts = {cut[name]: name for name in self.layers if name != "head"}
        self.conv_head = (
            nn.Sequential(net._conv_head, net._bn1) if "head" in self.layers else None
        )
        width = {name: int(net._blocks[i]._bn2.num_features) for name, i in cut.items()}
        width["head"] = int(net._bn1.num_features)
        self.channels = tuple(width[name] for name in self.layers)
        self.out_channels = int(sum(self.channels))
        self.stride = min(_LAYER_STRIDE[name] for name in self.layers)
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

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The L2-normalised maps of ``layers``, each at its own grid."""
        with torch.no_grad():
            x = (x - self.mean) / self.std  # type: ignore[operator]
            x = F.relu6(self.stem(x))
            found: dict[str, torch.Tensor] = {}
            for i, block in enumerate(self.blocks):
                x = block(x)
                if i in self.cuts:
                    found[self.cuts[i]] = x
            if self.conv_head is not None:
                found["head"] = F.relu6(self.conv_head(x))
            return tuple(F.normalize(found[name], dim=1) for name in self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stack_maps(self.maps(x))


def stack_maps(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Maps of several grids -> one ``(n, sum C, h, w)`` at the finest grid."""
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    return torch.cat(
        [
            m
            if m.shape[-2:] == size
            else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            for m in maps
        ],
        dim=1,
    ).contiguous()


def check_cnn_layers(layers: Any) -> tuple[str, ...]:
    """``layers`` as a tuple of known, distinct layer names (else a clear error)."""
    if isinstance(layers, str):
        layers = [v.strip() for v in layers.split(",") if v.strip()]
    try:
        names = tuple(layers)
    except TypeError:
        names = ()
    bad = [v for v in names if v not in _LAYER_STRIDE]
    if not names or bad or len(set(names)) != len(names):
        raise InvalidParameterError(
            "The 'cnn_layers' parameter of IICSegmenter must be distinct names "
            f"among {', '.join(CNN_LAYERS)} (e.g. 's8,s16,head'). Got {layers!r} "
            "instead."
        )
    return names  # type: ignore[return-value]


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
        learnt from the input channels; ``"cnn"``: frozen EfficientNet-Lite
        maps (:class:`CnnFeatureMaps`, stride 8) under a trainable 3x3 and
        1x1 convolution; a map wider than 256 channels (the 1280-channel
        head) first goes through a trainable 1x1 projection to 96 channels
        at its own grid.
    in_channels : int
        Input channels of the ``"rgb"`` trunk (3 RGB, 2 Sobel, 5 both).
    k, k_over : int
        Clusters of the main and of the overclustering head (0: none).
    n_heads : int
        Sub-heads per head: 1x1 convolutions with a softmax over clusters.
    width : float
        Channel multiplier of the ``"rgb"`` trunk.
    cnn_layers : sequence of str
        The frozen maps of the ``"cnn"`` trunk (see :class:`CnnFeatureMaps`).
    backbone : str
        Whose weights the ``"cnn"`` trunk loads.
    """

    def __init__(
        self,
        features: str,
        in_channels: int,
        k: int,
        k_over: int,
        n_heads: int,
        width: float = 0.5,
        cnn_layers: Sequence[str] = DEFAULT_CNN_LAYERS,
        backbone: str = "lite0",
    ):
        super().__init__()
        self.k, self.k_over, self.n_heads = k, k_over, n_heads
        self.project = nn.ModuleDict()
        if features == "cnn":
            frozen = CnnFeatureMaps(cnn_layers, backbone)
            self.frozen: CnnFeatureMaps | None = frozen
            c = _CNN_HEAD_CHANNELS
            c_in = 0
            for name, ch in zip(frozen.layers, frozen.channels, strict=True):
                if ch > _PROJECT_ABOVE:
                    self.project[name] = nn.Conv2d(ch, c, 1, bias=False)
                    ch = c
                c_in += ch
            self.trunk = nn.Sequential(
                *_conv_bn_relu(c_in, c),
                nn.Conv2d(c, c, 1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            )
            self.stride = frozen.stride
        else:
            self.frozen = None
            body = _VGGTrunk(_RGB_CFG, in_channels, width)
            self.trunk = body.body
            c = body.out_channels
            self.stride = 2**body.n_pools
        self.heads = nn.ModuleDict({"main": nn.Conv2d(c, k * n_heads, 1)})
        if k_over > 0:
            self.heads["over"] = nn.Conv2d(c, k_over * n_heads, 1)

    def features(
        self,
        x: torch.Tensor | Sequence[torch.Tensor],
        *,
        frozen_done: bool = False,
    ) -> torch.Tensor:
        """Trunk output ``(n, C, H / stride, W / stride)``.

        ``frozen_done``: ``x`` already holds the frozen CNN's maps (the
        tuple of :meth:`CnnFeatureMaps.maps`).
        """
        if self.frozen is not None:
            maps = x if frozen_done else self.frozen.maps(x)  # type: ignore[arg-type]
            x = stack_maps(
                [
                    self.project[name](m) if name in self.project else m
                    for name, m in zip(self.frozen.layers, maps, strict=True)
                ]
            )
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
    ``model`` a :class:`CnnFeatureMaps` (default: its default layers, Lite0);
    ``n_threads`` torch CPU threads while computing (restored afterwards).
    """
    from clusterlens.deep._runtime import _torch_threads

    model = model or CnnFeatureMaps()
    with _torch_threads(n_threads):
        out = [
            model(images[s : s + batch_size])
            for s in range(0, images.shape[0], batch_size)
        ]
    return torch.cat(out)
