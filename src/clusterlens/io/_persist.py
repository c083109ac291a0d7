"""Model files: ``.npz`` arrays plus a JSON sidecar (no pickle), for every model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.exceptions import DataValidationError
from clusterlens.utils._fs import atomic_write_bytes, atomic_write_text

__all__ = ["model_paths", "read_model", "write_model"]


def model_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(x.npz, x.json)`` for ``x``, ``x.npz`` or ``x.json``."""
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_model(
    path: str | os.PathLike[str],
    arrays: dict[str, Any],
    *,
    fmt: str,
    version: int,
    params: dict[str, Any],
    attributes: dict[str, Any],
    kind: str,
) -> tuple[Path, Path]:
    """Write ``path.npz`` (arrays, no pickle) and ``path.json``, atomically."""
    import io

    from clusterlens import __version__

    npz_path, json_path = model_paths(path)
    meta = {
        "format": fmt,
        "format_version": version,
        "clusterlens_version": __version__,
        "numpy_version": np.__version__,
        "class": kind,
        "params": params,
        "attributes": attributes,
    }
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    atomic_write_bytes(npz_path, buf.getvalue())
    atomic_write_text(json_path, json.dumps(_jsonable(meta), indent=2, default=float))
    return npz_path, json_path


def read_model(
    path: str | os.PathLike[str],
    *,
    fmt: str,
    version: int,
    what: str,
    fix: str | None = None,
    keys: tuple[str, ...] = (),
    other_formats: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a pair written by :func:`write_model`: ``(meta, arrays)``.

    ``other_formats`` maps formats a user may confuse with ``fmt`` to what
    such a file is and the command that reads it, added to the message.

    Accepts any format version up to ``version`` (newer fields are ignored by
    the caller) and names the file and the fix in every error: an empty,
    truncated or damaged file of the pair raises DataValidationError.
    """
    from clusterlens.io._safe import invalid_file, load_npz, read_json

    fix = fix or f"write the {what} again with the clusterlens command that made it"
    npz_path, json_path = model_paths(path)
    for p in (npz_path, json_path):
        if not p.is_file():
            raise DataValidationError(
                f"Model file {p} not found: a saved {what} is a pair {npz_path.name} + "
                f"{json_path.name}. Check the path."
            )
    meta = read_json(json_path, what=f"{what} description", fix=fix)
    if meta.get("format") != fmt:
        other = (other_formats or {}).get(str(meta.get("format")))
        raise DataValidationError(
            f"{json_path} is not a clusterlens {what} (format {meta.get('format')!r})"
            + (f": it is {other}." if other else ".")
        )
    fv = meta.get("format_version", 0)
    problem = None
    if not isinstance(fv, int) or isinstance(fv, bool):
        problem = f"format_version is {fv!r}, not an integer"
    else:
        problem = next(
            (
                f"{key!r} is {type(meta[key]).__name__}, expected an object"
                for key in ("params", "attributes")
                if key in meta and not isinstance(meta[key], dict)
            ),
            None,
        )
    if problem is not None:
        raise DataValidationError(
            invalid_file(json_path, f"{what} description", problem, fix)
        )
    if fv > version:
        raise DataValidationError(
            f"{json_path} was written by a newer clusterlens (format version "
            f"{meta['format_version']} > {version}). Upgrade clusterlens."
        )
    arrays = load_npz(npz_path, what=what, fix=fix, keys=keys)
    return meta, arrays
