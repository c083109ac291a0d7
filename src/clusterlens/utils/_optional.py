"""Import optional dependencies with an actionable error."""

from __future__ import annotations

import importlib
from types import ModuleType

from clusterlens.exceptions import MissingDependencyError

__all__ = ["import_optional"]


def import_optional(name: str, *, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        what = feature or "This feature"
        raise MissingDependencyError(
            f"{what} requires {name}. "
            f"Install it with: pip install 'clusterlens[{extra}]'"
        ) from e
