"""clusterlens: turn a pile of images into structure people act on."""

from __future__ import annotations

import importlib
import logging
from typing import Any

try:
    from clusterlens._version import __version__
except ImportError:  # pragma: no cover - running from a tree without a build
    __version__ = "0.1.0+unknown"

logging.getLogger("clusterlens").addHandler(logging.NullHandler())

# Public names re-exported lazily: importing clusterlens does no work and never
# imports torch, faiss or numba.
_LAZY = {
    "KMeans": "clusterlens.cluster",
    "kmeans": "clusterlens.cluster",
    "kmeans_plusplus": "clusterlens.cluster",
    "KMeansResult": "clusterlens.cluster",
    "open_descriptors": "clusterlens.io",
    "get_config": "clusterlens._config",
    "set_config": "clusterlens._config",
    "config_context": "clusterlens._config",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clusterlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
