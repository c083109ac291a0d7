"""Explore's stages: each made into its folder unless a valid result is there."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterlens.io._workspace import Workspace
from clusterlens.utils._fs import output_kind, staged_output_dir

__all__ = ["run_json", "run_stage", "valid_run"]


def run_json(folder: Path) -> dict[str, Any] | None:
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) else None


def run_stage(
    ws: Workspace,
    folder: Path,
    kind: str,
    want: Any,
    fn: Callable[[Path], dict[str, Any]],
    *,
    key: str = "fingerprint",
) -> tuple[dict[str, Any], bool]:
    """Run ``fn`` into ``folder`` unless it holds a valid result already.

    Returns (its summary, whether it was reused).
    """
    run = valid_run(folder, kind, want, key=key)
    if run is not None:
        return dict(run.get("results", {})), True
    with staged_output_dir(
        folder, overwrite=True, kind=kind, workspace=ws.root
    ) as stage:
        return fn(stage), False


def valid_run(
    folder: Path, kind: str, want: Any, *, key: str = "fingerprint"
) -> dict[str, Any] | None:
    """The ``run.json`` of ``folder`` if it holds a valid ``kind`` result."""
    run = run_json(folder) if output_kind(folder) == kind else None
    if run is not None and want is not None and run.get(key) == want:
        return run
    return None
