"""A small plugin registry: ``register(name)``, ``get(name)``, ``available()``."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from clusterlens.exceptions import InvalidParameterError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names mapped to plugins (engines, detectors, report sections)."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._loaded_entry_points = False

    def register(self, name: str) -> Callable[[T], T]:
        """Class or function decorator adding the object under ``name``."""

        def deco(obj: T) -> T:
            self._items[name] = obj
            return obj

        return deco

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points or self.entry_point_group is None:
            return
        self._loaded_entry_points = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.entry_point_group):
            self._items.setdefault(ep.name, ep.load())

    def available(self) -> list[str]:
        """Registered names, in registration order."""
        self._load_entry_points()
        return list(self._items)

    def get(self, name: str, extra_names: tuple[str, ...] = ()) -> T:
        """Return the plugin for ``name``; unknown names suggest close matches."""
        self._load_entry_points()
        if name in self._items:
            return self._items[name]
        names = [*extra_names, *self._items]
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(
            f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(names)}."
        )

    def __contains__(self, name: Any) -> bool:
        self._load_entry_points()
        return name in self._items
