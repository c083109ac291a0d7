"""Options shared by commands: output folder, format, quiet, seed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["common_options", "descriptor_options", "verbosity"]


def common_options(default_out: str | None = None) -> Callable[[F], F]:
    """``--out``, ``--overwrite``, ``--format``, ``--quiet`` and ``--seed``."""

    def deco(f: F) -> F:
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
            required=default_out is None,
            default=default_out,
            show_default=True,
            help="Output folder (written only when the run succeeds).",
        )(f)
        return f

    return deco


def descriptor_options(f: F) -> F:
    """``--format-in``, ``--dim`` and ``--key``: how to read a descriptor file."""
    f = click.option(
        "--key",
        default=None,
        help="Array to use in an .npz archive (default: its only array, or "
        "'descriptors', 'features', 'X').",
    )(f)
    f = click.option(
        "--dim",
        type=click.IntRange(min=1),
        default=128,
        show_default=True,
        help="Row length of a raw Oxford .bin file.",
    )(f)
    f = click.option(
        "--format-in",
        "format_in",
        type=click.Choice(["npy", "npz", "fvecs", "bvecs", "ivecs", "bin"]),
        default=None,
        help="Input format when the suffix does not say it.",
    )(f)
    return f


def verbosity(quiet: bool, fmt: str) -> int:
    """Progress bars only for a person reading human output."""
    return 0 if quiet or fmt == "json" else 1
