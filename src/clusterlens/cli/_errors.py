"""Map known errors to one stderr line and an exit code (no traceback)."""

from __future__ import annotations

import os
from collections.abc import Callable

import click

from clusterlens.exceptions import (
    ClusterlensError,
    DataValidationError,
    InvalidParameterError,
    MissingDependencyError,
    OutputExistsError,
)

__all__ = [
    "COMMAND_KEY",
    "DEBUG_ENV",
    "HINT",
    "flag_names",
    "format_error",
    "format_unexpected",
    "interrupted_message",
]

DEBUG_ENV = "CLUSTERLENS_DEBUG"
HINT = f"hint: set {DEBUG_ENV}=1 for a traceback"
#: ``ctx.meta`` key of the command that runs (set by ``cli.main``).
COMMAND_KEY = "clusterlens.command"


def _plain(e: BaseException, command: click.Command | None = None) -> str:
    return str(e)


def _os_error(e: BaseException, command: click.Command | None = None) -> str:
    assert isinstance(e, OSError)
    name = f" {e.filename}" if e.filename else ""
    return (
        f"cannot access{name}: {e.strerror or e}. Check the path and its permissions."
    )


def _memory(e: BaseException, command: click.Command | None = None) -> str:
    names = flag_names(command)
    fixes = []
    if "working_memory" in names:
        fixes.append(f"lower the working memory ({names['working_memory']} MiB)")
    if "batch_size" in names:
        fixes.append(f"use a smaller {names['batch_size']}")
    fixes.append("use a smaller input")
    fix = ", ".join(fixes[:-1]) + (" or " if len(fixes) > 1 else "") + fixes[-1]
    return f"out of memory. {fix[0].upper()}{fix[1:]}."


# Library keyword -> CLI parameter names that set it, tried in order (a flag of
# the same name as the keyword is used otherwise).
_ALIASES: dict[str, tuple[str, ...]] = {
    "format": ("format_in",),
    "img_size": ("label_img_size",),
    "images_dir": ("images_dir", "images"),
    "n_threads": ("threads",),
    "n_anchors": ("k",),
    "random_state": ("seed",),
}


def flag_names(command: click.Command | None) -> dict[str, str]:
    """Library keyword -> the flag of ``command`` that sets it (``--format-in``)."""
    if command is None:
        return {}
    flags: dict[str, str] = {}
    for p in command.params:
        if isinstance(p, click.Option) and p.name:
            long = [o for o in p.opts if o.startswith("--")] or list(p.opts)
            flags[p.name] = max(long, key=len)
    for kwarg, params in _ALIASES.items():
        for name in params:
            if name in flags:
                flags[kwarg] = flags[name]
                break
    return flags


def interrupted_message(command: click.Command | None) -> str:
    """What Ctrl-C prints: the --checkpoint hint only where the command has one."""
    names = flag_names(command)
    if "checkpoint" in names:
        return (
            f"Interrupted; no output was written (a {names['checkpoint']} folder is "
            "kept: rerun with --resume to continue)."
        )
    return "Interrupted; no output was written."


_Formatter = Callable[[BaseException, click.Command | None], str]

# Ordered: the first matching type wins, so subclasses come first.
_FORMATTERS: list[tuple[type[BaseException], str, _Formatter]] = [
    (OutputExistsError, "output exists", _plain),
    (MissingDependencyError, "missing dependency", _plain),
    (InvalidParameterError, "invalid parameter", _plain),
    (DataValidationError, "invalid input", _plain),
    (ClusterlensError, "error", _plain),
    (MemoryError, "error", _memory),
    (OSError, "error", _os_error),
]

HANDLED: tuple[type[BaseException], ...] = tuple(t for t, _, _ in _FORMATTERS)


def format_error(e: BaseException, command: click.Command | None = None) -> str:
    """``Error (kind): message`` plus the debug hint, for a handled error.

    ``command`` is the command that ran, if known: hints name only its flags.
    """
    for typ, kind, fmt in _FORMATTERS:
        if isinstance(e, typ):
            return f"Error ({kind}): {fmt(e, command)}\n{HINT}"
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
