"""Backbones (the paper's small VGG-style nets, a small ResNet) and IIC heads."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "BACKBONES",
    "ClusterHeads",
    "EmbeddingHeads",
    "IICNet",
    "build_backbone",
    "init_conv_net",
]

#: Backbones: name -> layer configuration at width 1. Ints are 3x3 conv +
#: BatchNorm + ReLU with that many channels, "M" is a 2x2 max-pool.
_VGG_CFGS: dict[str, list[int | str]] = {
    # Paper's base B (MNIST): 4 conv layers, 3 pools.
    "vgg4": [64, "M", 128, "M", 256, "M", 512],
    # Paper's base C: 6 conv layers, 2 pools (segmentation / larger images).
    "vgg6": [64, 128, "M", 256, 256, "M", 512, 512],
}
BACKBONES = (*_VGG_CFGS, "resnet")


def _ch(c: int, width: float) -> int:
    return max(4, round(c * width))


class _VGGTrunk(nn.Module):
    def __init__(
        self,
        cfg: Sequence[int | str],
        in_channels: int,
        width: float,
        kernel_size: int = 3,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c_out = _ch(int(item), width)
            layers += [
                nn.Conv2d(
                    c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False
                ),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out_channels = c_in
        self.n_pools = sum(1 for item in cfg if item == "M")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.body(x), 1)

    def out_features(self, input_size: int) -> int:
        side = input_size
        for _ in range(self.n_pools):
            side //= 2
        return self.out_channels * side * side


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.down(x))


class _ResNetTrunk(nn.Module):
    """A small ResNet (BasicBlocks, four stages) with global average pooling."""

    def __init__(
        self,
        in_channels: int,
        width: float,
        blocks: Sequence[int] = (1, 1, 1, 1),
        channels: Sequence[int] = (64, 128, 256, 512),
    ):
        super().__init__()
        chs = [_ch(c, width) for c in channels]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, chs[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(chs[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        c_in = chs[0]
        for i, (n, c) in enumerate(zip(blocks, chs, strict=True)):
            for j in range(n):
                stages.append(_BasicBlock(c_in, c, 2 if (j == 0 and i > 0) else 1))
                c_in = c
        self.stages = nn.Sequential(*stages)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return torch.flatten(x.mean(dim=(2, 3)), 1)

    def out_features(self, input_size: int) -> int:
        return self.out_channels


def build_backbone(
    name: str, in_channels: int, width: float, kernel_size: int = 3
) -> nn.Module:
    """Trunk ``name`` (one of :data:`BACKBONES`) scaled by ``width``.

    ``kernel_size`` (odd) sets the VGG trunks' convolutions (the authors'
    MNIST net uses 5x5); the ResNet's are always 3x3.
    """
    if name == "resnet":
        if kernel_size != 3:
            raise ValueError(
                f"kernel_size={kernel_size} applies to the vgg backbones only; the "
                "resnet backbone's convolutions are 3x3."
            )
        return _ResNetTrunk(in_channels, width)
    if name in _VGG_CFGS:
        return _VGGTrunk(_VGG_CFGS[name], in_channels, width, kernel_size)
    raise ValueError(f"Unknown backbone {name!r}. Available: {', '.join(BACKBONES)}.")


@torch.no_grad()
def init_conv_net(net: nn.Module, generator: torch.Generator) -> None:
    """Initialise the convolutions (Kaiming, fan-out), linear layers (uniform
    in +-1/sqrt(fan-in), zero bias) and batch norms (1, 0, fresh running
    statistics) of ``net`` from ``generator``: no global RNG."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(
                m.weight, mode="fan_out", nonlinearity="relu", generator=generator
            )
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            nn.init.uniform_(m.weight, -bound, bound, generator=generator)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()


class ClusterHeads(nn.Module):
    """``n_heads`` linear sub-heads with softmax over ``k`` clusters, fused."""

    def __init__(self, in_features: int, k: int, n_heads: int):
        super().__init__()
        self.k, self.n_heads = k, n_heads
        self.linear = nn.Linear(in_features, k * n_heads)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Probabilities of shape (n_samples, n_heads, k)."""
        logits = self.linear(features).view(-1, self.n_heads, self.k)
        return torch.softmax(logits, dim=-1)


class IICNet(nn.Module):
    """A trunk with a main clustering head and an optional overclustering head.

    Parameters
    ----------
    backbone : {"vgg4", "vgg6", "resnet"}
        ``"vgg4"`` is the paper's base B (4 conv layers, for MNIST-sized
        images), ``"vgg6"`` its base C, ``"resnet"`` a small four-stage ResNet
        with global average pooling for larger images.
    in_channels : int
        Channels after the input transformations (1 grey, 2 Sobel, 3 RGB, 5
        Sobel + RGB).
    input_size : int
        Side of the square network input.
    k, k_over : int
        Clusters of the main and of the overclustering head (0: none).
    n_heads : int
        Sub-heads per head.
    width : float
        Multiplier of every layer's channel count (1.0 is the paper's).
    kernel_size : int
        Side of the VGG trunks' convolutions (3, or 5 as the authors' MNIST
        net).
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int,
        input_size: int,
        k: int,
        k_over: int,
        n_heads: int,
        width: float = 1.0,
        kernel_size: int = 3,
    ):
        super().__init__()
        self.trunk = build_backbone(backbone, in_channels, width, kernel_size)
        n_feat = self.trunk.out_features(input_size)  # type: ignore[operator]
        if n_feat < 1:
            raise ValueError(f"input_size {input_size} is too small for {backbone}.")
        self.heads = nn.ModuleDict({"main": ClusterHeads(n_feat, k, n_heads)})
        if k_over > 0:
            self.heads["over"] = ClusterHeads(n_feat, k_over, n_heads)

    def forward(self, x: torch.Tensor, head: str = "main") -> torch.Tensor:
        """Probabilities of shape (n_samples, n_heads, k) from head ``head``."""
        return self.heads[head](self.trunk(x))  # type: ignore[no-any-return]

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise every weight from ``generator`` (no global RNG)."""
        init_conv_net(self, generator)


class EmbeddingHeads(nn.Module):
    """Clustering sub-heads over fixed embeddings: logits ``(n, n_heads, k)``.

    ``hidden=0``: each sub-head is linear (one fused ``Linear``). ``hidden>0``:
    each sub-head is an MLP ``Linear -> BatchNorm -> ReLU -> Linear`` of that
    width, all sub-heads computed by one fused first layer and one batched
    second layer (no Python loop over heads).
    """

    def __init__(self, in_features: int, k: int, n_heads: int, hidden: int = 0):
        super().__init__()
        self.k, self.n_heads, self.hidden = k, n_heads, hidden
        if hidden > 0:
            self.first = nn.Linear(in_features, hidden * n_heads)
            self.norm = nn.BatchNorm1d(hidden * n_heads)
            self.second_weight = nn.Parameter(torch.empty(n_heads, hidden, k))
            self.second_bias = nn.Parameter(torch.empty(n_heads, k))
        else:
            self.linear = nn.Linear(in_features, k * n_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (n_samples, n_heads, k)."""
        if self.hidden > 0:
            h = torch.relu(self.norm(self.first(x)))
            h = h.view(-1, self.n_heads, self.hidden).transpose(0, 1)  # (H, n, h)
            out = torch.baddbmm(self.second_bias[:, None, :], h, self.second_weight)
            return out.transpose(0, 1)
        return self.linear(x).view(-1, self.n_heads, self.k)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise every weight from ``generator`` (no global RNG)."""
        init_conv_net(self, generator)
        if self.hidden > 0:
            bound = 1.0 / math.sqrt(self.hidden)
            nn.init.uniform_(self.second_weight, -bound, bound, generator=generator)
            nn.init.zeros_(self.second_bias)
