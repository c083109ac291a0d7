"""Options shared by the image-workspace commands (features, bow, topics, ...)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from clusterlens.cli._common import common_options

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["stage_out", "workspace_argument", "ws_inputs", "ws_options"]


def workspace_argument(f: F) -> F:
    """The WS argument: an existing workspace folder."""
    return click.argument(
        "ws",
        metavar="WS",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
    )(f)


#: ``--out`` (default: a folder inside WS), ``--overwrite``, ``--format``,
#: ``--quiet``, ``--seed``.
ws_options = common_options(
    out_required=False,
    out_help="Output folder (default: the stage's folder inside WS).",
)


def stage_out(ws: Path, out: Path | None, *default: str) -> Path:
    """``out`` or ``WS/<default...>``."""
    return out if out is not None else ws.joinpath(*default)


def ws_inputs(ws: Path) -> list[Path]:
    """Folders a stage on WS reads besides WS: the image root of its items.

    An ``--out`` may never be, or contain, one of these (see
    ``utils._fs.check_output_dir``). A workspace whose ``workspace.json`` cannot
    be read gives none here; the stage itself reports the broken file.
    """
    import json

    try:
        meta = json.loads((ws / "workspace.json").read_text(encoding="utf-8"))
        root = meta.get("image_root", "") if isinstance(meta, dict) else ""
    except (OSError, ValueError):
        return []
    return [Path(root)] if isinstance(root, str) and root else []
