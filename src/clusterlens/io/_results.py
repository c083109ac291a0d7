"""Per-item results as Parquet and run metadata as ``run.json``."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.utils._fs import atomic_write_bytes, atomic_write_text

__all__ = ["read_results", "versions", "write_results", "write_run", "write_run_json"]


def write_results(
    path: str | os.PathLike[str], columns: Mapping[str, npt.ArrayLike]
) -> Path:
    """Write one row per item to Parquet, atomically.

    Column names are shared across methods: ``index``, ``item_id``, ``label``,
    ``cluster``, ``distance``, ``topic``, score columns, ``issue_rank``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {name: np.asarray(col) for name, col in columns.items()}
    lengths = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataValidationError(f"Result columns differ in length: {lengths}.")
    table = pa.table({name: pa.array(a) for name, a in arrays.items()})
    sink = pa.BufferOutputStream()
    # Page checksums let readers tell a damaged file from a valid one.
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_results(
    path: str | os.PathLike[str],
    *,
    what: str = "results table",
    fix: str = "re-create it by running again the command that wrote it",
    columns: tuple[str, ...] = (),
) -> dict[str, npt.NDArray[Any]]:
    """Read a results Parquet file back as a dict of numpy arrays.

    Raises
    ------
    DataValidationError
        If the file is empty, truncated or not Parquet (the message names it,
        ``what`` it should be and ``fix``), or lacks one of ``columns``.
    """
    from clusterlens.io._safe import read_parquet

    return read_parquet(path, what=what, fix=fix, columns=columns)


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a run depends on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in (
        "clusterlens",
        "numpy",
        "scipy",
        "scikit-learn",
        "faiss-cpu",
        "pyarrow",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "clusterlens" not in out:
        from clusterlens import __version__

        out["clusterlens"] = __version__
    return out


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def write_run_json(path: str | os.PathLike[str], info: Mapping[str, Any]) -> Path:
    """Write ``run.json``: parameters, seed, versions, timings and results."""
    body = {**info, "versions": versions()}
    return atomic_write_text(path, json.dumps(body, indent=2, default=_default) + "\n")


def write_run(
    folder: str | os.PathLike[str],
    *,
    schema: str,
    command: str,
    invocation: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Path:
    """Write a command's ``folder/run.json`` (see :func:`write_run_json`).

    Parameters
    ----------
    folder : str or os.PathLike
        The output (staging) folder.
    schema : str
        The file's versioned schema, e.g. ``"clusterlens.bow/1"``.
    command : str
        The command's name.
    invocation : mapping, default=None
        How it was called (the CLI's arguments: ``{"ws": ...}``), merged in
        after ``command``.
    **fields
        The rest, in order: ``parameters``, ``seed``, ``results``,
        ``outputs``, ...
    """
    body = {"schema": schema, "command": command, **(invocation or {}), **fields}
    return write_run_json(Path(os.fspath(folder)) / "run.json", body)
