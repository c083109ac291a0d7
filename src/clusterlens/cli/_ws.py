"""Options shared by the image-workspace commands (features, bow, topics, ...)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["stage_out", "workspace_argument", "ws_options"]


def workspace_argument(f: F) -> F:
    """The WS argument: an existing workspace folder."""
    return click.argument(
        "ws",
        metavar="WS",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
    )(f)


def ws_options(f: F) -> F:
    """``--out`` (default: a folder inside WS), ``--overwrite``, ``--format``,
    ``--quiet``, ``--seed``."""
    f = click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Seed for every random choice; the same seed gives the same output.",
    )(f)
    f = click.option(
        "-q", "--quiet", is_flag=True, help="No progress bar and no summary text."
    )(f)
    f = click.option(
        "--format",
        "fmt",
        type=click.Choice(["human", "json"]),
        default="human",
        show_default=True,
        help="What to print on stdout (json implies no progress).",
    )(f)
    f = click.option(
        "--overwrite", is_flag=True, help="Replace the output folder if it exists."
    )(f)
    f = click.option(
        "-o",
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Output folder (default: the stage's folder inside WS).",
    )(f)
    return f


def stage_out(ws: Path, out: Path | None, *default: str) -> Path:
    """``out`` or ``WS/<default...>``."""
    return out if out is not None else ws.joinpath(*default)
