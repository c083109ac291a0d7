"""Where and how torch runs: the device, its thread count, deterministic kernels.

Shared by every estimator of :mod:`clusterlens.deep` (IIC, SCAN, the
segmenter, the backbone adapter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from clusterlens._config import get_config
from clusterlens.exceptions import InvalidParameterError
from clusterlens.utils._names import arg

__all__ = ["_deterministic", "_resolve_device", "_torch_threads"]


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """On CUDA, cuDNN's deterministic kernels (the same seed gives the same
    weights, not only the same labels); the flags are restored afterwards."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    old = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = old


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        cfg = get_config().get("device")
        if cfg:
            device = str(cfg)
        else:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str):
        raise InvalidParameterError(
            "The 'device' parameter of IIC must be a str such as 'cpu', 'cuda' or "
            f"'auto'. Got {device!r} instead."
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"{arg('device', repr(device))} was asked for but CUDA is not "
            f"available here. Use {arg('device', 'cpu')} or "
            f"{arg('device', 'auto')}."
        )
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise InvalidParameterError(
            f"{arg('device', repr(device))} is not a torch device. Use 'auto', "
            "'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from e
