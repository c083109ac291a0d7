"""The review app for cluster-then-label: an action store, a local web page."""

from __future__ import annotations

from clusterlens.app._data import (
    ReviewData,
    find_results,
    load_review_data,
    open_review,
)
from clusterlens.app._store import STORE_SCHEMA, ReviewStore

__all__ = [
    "STORE_SCHEMA",
    "ReviewData",
    "ReviewStore",
    "create_app",
    "find_results",
    "load_review_data",
    "open_review",
]


def __getattr__(name: str) -> object:
    # Flask is an optional dependency ([app] extra): imported only when asked for.
    if name == "create_app":
        from clusterlens.app import _server

        return getattr(_server, name)
    raise AttributeError(f"module 'clusterlens.app' has no attribute {name!r}")
