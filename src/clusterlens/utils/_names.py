"""How a message names a parameter: its keyword, or the CLI flag that set it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

__all__ = ["arg", "arg_name", "cli_names"]

# Keyword argument -> CLI flag, set by the CLI around each command (None: library).
_CLI_NAMES: ContextVar[Mapping[str, str] | None] = ContextVar(
    "clusterlens_cli_names", default=None
)


@contextlib.contextmanager
def cli_names(names: Mapping[str, str]) -> Iterator[None]:
    """Within this block, messages name keyword ``k`` as ``names[k]`` (a flag).

    Nested blocks add to (and may override) the names of the outer ones.
    """
    token = _CLI_NAMES.set({**(_CLI_NAMES.get() or {}), **names})
    try:
        yield
    finally:
        _CLI_NAMES.reset(token)


def arg_name(name: str) -> str:
    """``name``, or its CLI flag (``--format-in``) when the CLI runs the code."""
    names = _CLI_NAMES.get()
    return names.get(name, name) if names else name


def arg(name: str, value: str = "...") -> str:
    """``name=value`` for a library caller, ``--flag value`` on the command line.

    Examples
    --------
    >>> arg("img_size", "640")
    'img_size=640'
    >>> with cli_names({"img_size": "--label-img-size"}):
    ...     arg("img_size", "640")
    '--label-img-size 640'
    """
    names = _CLI_NAMES.get()
    if names and name in names:
        return f"{names[name]} {value}"
    return f"{name}={value}"
