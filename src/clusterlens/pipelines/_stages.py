"""Explore's stages: each made into its folder unless a valid result is there."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterlens.io._workspace import Workspace
from clusterlens.utils._fs import output_kind, staged_output_dir

__all__ = [
    "add_fingerprint",
    "clusters_stage",
    "map_stage",
    "run_json",
    "run_stage",
    "valid_run",
]


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


def add_fingerprint(stage: Path, fingerprint: dict[str, Any]) -> None:
    """Record what an existing stage's run.json was computed from."""
    from clusterlens.utils._fs import atomic_write_text

    run = run_json(stage) or {}
    run["explore_fingerprint"] = json.loads(json.dumps(fingerprint))
    atomic_write_text(stage / "run.json", json.dumps(run, indent=2) + "\n")


def map_stage(
    ws: Workspace, want: Any, seed: int, command: dict[str, Any] | None
) -> tuple[dict[str, Any], bool]:
    """The ``map`` stage of ``explore`` (UMAP over the shared neighbours)."""
    from clusterlens.pipelines import curate as cv

    return run_stage(
        ws,
        ws.root / "map",
        "map",
        want,
        lambda st: cv.run_map(ws, st, random_state=seed, command=command),
    )


def clusters_stage(
    ws: Workspace, k: int, seed: int, want: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The ``clusters`` stage of ``explore``: k-means on the CNN embeddings."""
    from clusterlens.pipelines.cluster_images import run_cluster_images

    def make(stage: Path) -> dict[str, Any]:
        s = run_cluster_images(
            ws,
            stage,
            features="cnn",
            n_clusters=k,
            n_init=3,
            l2_normalize=True,
            random_state=seed,
            command={"command": "explore", "ws": str(ws.root)},
        )
        add_fingerprint(stage, want)
        return s

    return run_stage(
        ws,
        ws.root / "clusters" / "cnn",
        "clusters",
        want,
        make,
        key="explore_fingerprint",
    )
