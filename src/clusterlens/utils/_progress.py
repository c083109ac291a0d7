"""One progress-bar wrapper, on tqdm, that every long loop uses."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from clusterlens._config import get_config

__all__ = ["progress", "progress_enabled"]


def progress_enabled(verbose: int) -> bool:
    """Whether a bar may be shown: verbose asked, env and config allow it."""
    if os.environ.get("CLUSTERLENS_DISABLE_PROGRESS_BARS", "").strip() not in ("", "0"):
        return False
    return bool(verbose) and bool(get_config()["show_progress"])


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    verbose: int = 0,
    unit: str = "it",
    leave: bool = True,
) -> Any:
    """Wrap ``iterable`` in a tqdm bar on stderr, or a silent stand-in.

    The returned object always supports ``set_postfix_str``, ``update`` and
    ``close`` so callers never branch on whether a bar is shown.
    """
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not progress_enabled(verbose),
        leave=leave,
        dynamic_ncols=True,
    )
