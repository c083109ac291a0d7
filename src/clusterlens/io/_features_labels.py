"""Features and labels of a sample set: ``.npy``, Parquet and CSV readers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._descriptors import as_matrix
from clusterlens.io._safe import load_npy, read_parquet
from clusterlens.typing import PathLike

__all__ = ["PATH_COLUMNS", "read_features", "read_label_paths", "read_labels"]

#: Columns of a labels CSV/Parquet that name each sample's image file.
PATH_COLUMNS = ("path", "image", "file_name", "filename")

logger = logging.getLogger(__name__)


def read_features(path: PathLike) -> npt.NDArray[Any]:
    """Features from ``.npy`` (memory-mapped) or Parquet.

    A Parquet file holds one list column, or numeric columns (``index`` and
    ``label`` are skipped).
    """
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataValidationError(
                f"Cannot read features Parquet {str(p)!r}: {e}"
            ) from e
        import pyarrow as pa

        lists = [
            c
            for c in table.column_names
            if pa.types.is_list(table[c].type)
            or pa.types.is_fixed_size_list(table[c].type)
        ]
        if len(lists) == 1:
            col = table[lists[0]].to_pylist()
            X = np.asarray(col, dtype=np.float32)
        else:
            num = [
                c
                for c in table.column_names
                if pa.types.is_floating(table[c].type)
                or pa.types.is_integer(table[c].type)
            ]
            num = [c for c in num if c not in ("index", "label")]
            if not num:
                raise DataValidationError(
                    f"Features Parquet {str(p)!r} has no numeric columns and no "
                    "single list column to read as the feature matrix."
                )
            X = np.column_stack([table[c].to_numpy().astype(np.float32) for c in num])
        return as_matrix(X, name=f"features {str(p)!r}")
    if p.suffix.lower() != ".npy":
        raise DataValidationError(
            f"Features file {str(p)!r} must be .npy or .parquet; got "
            f"{p.suffix or 'no suffix'}."
        )
    return as_matrix(p, name=f"features {str(p)!r}")


def read_labels(path: PathLike) -> npt.NDArray[Any]:
    """Labels from ``.npy``, CSV (a ``label`` column, or the only column) or Parquet."""
    p = Path(path)
    if not p.is_file():
        raise DataValidationError(f"Labels file {str(p)!r} does not exist.")
    suffix = p.suffix.lower()
    fix = "save the labels again (one per row of the features)"
    if suffix == ".npy":
        return load_npy(
            p,
            what="labels file",
            fix=fix + " as a numeric or string array, no objects",
        )
    if suffix == ".parquet":
        table = read_parquet(p, what="labels Parquet", fix=fix)
        cols = list(table)
        name = "label" if "label" in cols else (cols[0] if len(cols) == 1 else None)
        if name is None:
            raise DataValidationError(
                f"Labels Parquet {str(p)!r} has columns {cols}; name the label "
                "column 'label' or keep only one column."
            )
        return table[name]
    if suffix in (".csv", ".txt"):
        import csv

        with p.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if not rows:
            raise DataValidationError(f"Labels CSV {str(p)!r} is empty.")
        header = [h.strip() for h in rows[0]]
        if "label" in header:
            j = header.index("label")
            body = rows[1:]
        elif len(header) == 1:
            j = 0
            body = rows[1:] if not _is_number(header[0]) else rows
        else:
            raise DataValidationError(
                f"Labels CSV {str(p)!r} has columns {header}; name the label "
                "column 'label' or keep only one column."
            )
        values = [r[j].strip() if j < len(r) else "" for r in body]
        if any(v == "" for v in values):
            bad = next(i for i, v in enumerate(values) if v == "")
            raise DataValidationError(
                f"Labels CSV {str(p)!r} has an empty label (data row {bad + 1})."
            )
        if all(_is_int(v) for v in values):
            return np.asarray([int(v) for v in values], dtype=np.int64)
        return np.asarray(values, dtype=str)
    raise DataValidationError(
        f"Labels file {str(p)!r} must be .npy, .csv or .parquet; got "
        f"{p.suffix or 'no suffix'}."
    )


def read_label_paths(
    path: PathLike, images_dir: PathLike | None = None
) -> list[str | None] | None:
    """The image file of each sample, from a labels CSV or Parquet.

    The first of the columns :data:`PATH_COLUMNS` (``path``, ``image``,
    ``file_name``, ``filename``) that the file has names each row's image;
    relative names are taken from ``images_dir`` (default: the labels file's
    folder). Returns None when the file has no such column (``.npy`` labels
    never do); an empty cell gives None for that row.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        table = read_parquet(p, what="labels Parquet", fix="save the labels again")
        col = next((c for c in PATH_COLUMNS if c in table), None)
        if col is None:
            return None
        names = [str(v) if v is not None else "" for v in table[col].tolist()]
    elif suffix in (".csv", ".txt"):
        import csv

        with p.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
        header = [h.strip() for h in rows[0]] if rows else []
        col = next((c for c in PATH_COLUMNS if c in header), None)
        if col is None:
            return None
        j = header.index(col)
        names = [r[j].strip() if j < len(r) else "" for r in rows[1:]]
    else:
        return None
    root = Path(images_dir) if images_dir is not None else p.parent
    return [str(root / n) if n else None for n in names]


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True
