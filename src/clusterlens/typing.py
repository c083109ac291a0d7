"""Public type aliases used in clusterlens signatures."""

from __future__ import annotations

import os
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["ArrayLike", "BoxesLike", "PathLike", "SeedLike"]

ArrayLike: TypeAlias = npt.ArrayLike
PathLike: TypeAlias = str | os.PathLike[str]
SeedLike: TypeAlias = int | np.random.Generator | None
BoxesLike: TypeAlias = npt.NDArray[Any] | Any
