"""Bounding the crop-embedding cache: stale entries and the least recently used go."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["MAX_CACHE_ENTRIES", "SOURCE_FILE", "prune_crop_cache", "touch_entry"]

logger = logging.getLogger(__name__)

#: Cached annotation files kept at most (the least recently used go first).
MAX_CACHE_ENTRIES = 8
#: What each entry records about its input, to find its stale siblings.
SOURCE_FILE = "source.json"
#: Staging folders of runs that died are removed after this many seconds.
_STALE_STAGE_SECONDS = 24 * 3600.0


def _last_used(entry: Path) -> float:
    try:
        return (entry / SOURCE_FILE).stat().st_mtime
    except OSError:
        try:
            return entry.stat().st_mtime
        except OSError:
            return 0.0


def _source(entry: Path) -> Any:
    try:
        return json.loads((entry / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def touch_entry(entry: Path, source: dict[str, Any]) -> None:
    """Record ``source`` in ``entry`` and mark it used now."""
    path = entry / SOURCE_FILE
    try:
        path.write_text(json.dumps(source, sort_keys=True), encoding="utf-8")
    except OSError as e:  # a read-only cache still serves its embeddings
        logger.info("cannot mark crop cache entry %s used: %s", entry, e)


def prune_crop_cache(
    root: Path,
    keep: Path,
    source: dict[str, Any],
    *,
    max_entries: int = MAX_CACHE_ENTRIES,
) -> list[Path]:
    """Remove what the cache under ``root`` no longer needs; return what went.

    Removed: entries recorded for the same ``source`` as ``keep`` (the same
    annotation file, images folder and parameters) whose digest differs,
    i.e. made before the file or an image changed, which nothing can read
    again; staging folders of runs that died more than a day ago; then the
    least recently used entries beyond ``max_entries``. ``keep`` itself is
    never removed.
    """
    if not root.is_dir():
        return []
    keep = keep.resolve()
    removed: list[Path] = []
    entries: list[Path] = []
    now = time.time()
    for p in root.iterdir():
        if not p.is_dir() or p.resolve() == keep:
            continue
        if p.name.startswith(".tmp-"):
            try:
                old = now - p.stat().st_mtime > _STALE_STAGE_SECONDS
            except OSError:
                continue
            if old:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
            continue
        if _source(p) == source:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            continue
        entries.append(p)
    entries.sort(key=_last_used, reverse=True)
    for p in entries[max(max_entries - 1, 0) :]:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    if removed:
        logger.info(
            "crop cache %s: removed %d stale or old entries", root, len(removed)
        )
    return removed
