"""Map known errors to one stderr line and an exit code (no traceback)."""

from __future__ import annotations

import os
from collections.abc import Callable

from clusterlens.exceptions import (
    ClusterlensError,
    DataValidationError,
    InvalidParameterError,
    MissingDependencyError,
    OutputExistsError,
)

__all__ = ["DEBUG_ENV", "HINT", "format_error", "format_unexpected"]

DEBUG_ENV = "CLUSTERLENS_DEBUG"
HINT = f"hint: set {DEBUG_ENV}=1 for a traceback"


def _plain(e: BaseException) -> str:
    return str(e)


def _os_error(e: BaseException) -> str:
    assert isinstance(e, OSError)
    name = f" {e.filename}" if e.filename else ""
    return (
        f"cannot access{name}: {e.strerror or e}. Check the path and its permissions."
    )


def _memory(e: BaseException) -> str:
    return (
        "out of memory. Lower the working memory (--working-memory MiB) or use "
        "a smaller input."
    )


# Ordered: the first matching type wins, so subclasses come first.
_FORMATTERS: list[tuple[type[BaseException], str, Callable[[BaseException], str]]] = [
    (OutputExistsError, "output exists", _plain),
    (MissingDependencyError, "missing dependency", _plain),
    (InvalidParameterError, "invalid parameter", _plain),
    (DataValidationError, "invalid input", _plain),
    (ClusterlensError, "error", _plain),
    (MemoryError, "error", _memory),
    (OSError, "error", _os_error),
]

HANDLED: tuple[type[BaseException], ...] = tuple(t for t, _, _ in _FORMATTERS)


def format_error(e: BaseException) -> str:
    """``Error (kind): message`` plus the debug hint, for a handled error."""
    for typ, kind, fmt in _FORMATTERS:
        if isinstance(e, typ):
            return f"Error ({kind}): {fmt(e)}\n{HINT}"
    return f"Error: {e}\n{HINT}"


def format_unexpected(e: BaseException) -> str:
    """One line for an error no check caught: a clusterlens bug to report.

    ``EOFError`` is what reading an empty or cut-off file raises deep inside a
    reader; name it so (click would print a bare "Aborted!").
    """
    what = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, EOFError):
        return (
            f"Error (invalid input): a file ended early ({what}): an input is empty "
            f"or cut off. Check the files given to this command.\n{HINT}"
        )
    return (
        f"Error (unexpected): {type(e).__name__}: {what}. This is a bug in "
        f"clusterlens; rerun with {DEBUG_ENV}=1 and report the traceback."
    )


def debug_enabled() -> bool:
    """Whether the user asked for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
