"""One reader layer for the files clusterlens writes: a corrupt file is one message.

Every reader of a workspace or intermediate file (``items.parquet``,
``workspace.json``, ``results.parquet``, ``.npy``/``.npz`` arrays, models,
checkpoints) goes through these functions. Whatever is wrong with the file
(empty, truncated, a flipped byte, another format, the wrong JSON type), they
raise :class:`~clusterlens.exceptions.DataValidationError` in one form::

    'ws/items.parquet' is not a valid workspace items table (the file is
    truncated or is not a Parquet file): re-create it with `clusterlens ingest`.

A missing file or a permission problem is left as the ``OSError`` it is (the
CLI reports those as access errors).
"""

from __future__ import annotations

import errno
import json
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError

__all__ = [
    "CORRUPT_ERRORS",
    "describe_error",
    "invalid_file",
    "load_npy",
    "load_npz",
    "load_sparse",
    "read_json",
    "read_parquet",
]

PathLike = str | os.PathLike[str]


def invalid_file(path: PathLike, what: str, reason: str, fix: str) -> str:
    """The message for a file that is not what it should be (see module docs)."""
    return f"{str(path)!r} is not a valid {what} ({reason}): {fix}."


def _fail(path: PathLike, what: str, reason: str, fix: str) -> DataValidationError:
    return DataValidationError(invalid_file(path, what, reason, fix))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def describe_error(e: BaseException, kind: str) -> str:
    """A short human reason for a reader's exception (``kind``: ".npy", "JSON"...)."""
    if isinstance(e, EOFError):
        return "the file ends early: it is truncated"
    if isinstance(e, zipfile.BadZipFile):
        msg = _first_line(e)
        if "CRC" in msg:
            return f"its content is damaged: {msg}"
        return f"the archive is truncated or damaged: {msg}"
    if isinstance(e, zlib.error):
        return f"its compressed content is damaged: {_first_line(e)}"
    if isinstance(e, NotImplementedError | RuntimeError | OSError | struct.error):
        return f"the archive is damaged: {_first_line(e)}"
    if isinstance(e, tokenize.TokenError | SyntaxError):
        return "its header is damaged"
    if isinstance(e, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(e, json.JSONDecodeError):
        return f"it is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
    msg = _first_line(e)
    if "Object arrays cannot be loaded" in msg:
        return "it holds Python objects, which are never unpickled"
    if "pickled" in msg or "Failed to interpret" in msg:
        return f"it is not a NumPy {kind} file"
    if "magic bytes" in msg or "Parquet file size is 0" in msg:
        return "the file is truncated or is not a Parquet file"
    if "mmap length is greater" in msg or "cannot reshape" in msg or "EOF" in msg:
        return "the file is shorter than its header says: it is truncated"
    return msg


def _check_size(path: Path, what: str, fix: str) -> None:
    if path.stat().st_size == 0:  # an OSError (missing file) propagates as is
        raise _fail(path, what, "the file is empty, 0 bytes", fix)


def _is_access_error(e: OSError) -> bool:
    """An OSError about reaching the file (not its content): left to the caller.

    A damaged archive can make a reader seek to a negative offset (EINVAL):
    that one is about the content.
    """
    return e.errno is not None and e.errno != errno.EINVAL


#: Exceptions numpy, scipy and zipfile raise for a file that is not what it claims
#: (a damaged zip header can even claim encryption or an unknown compression).
CORRUPT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    OverflowError,
    SyntaxError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)


def read_json(path: PathLike, *, what: str, fix: str, expect: type = dict) -> Any:
    """Parse a JSON file that must hold a value of type ``expect``.

    Raises
    ------
    DataValidationError
        If the file is empty, not UTF-8, not JSON, or holds another type.
    """
    p = Path(os.fspath(path))
    _check_size(p, what, fix)
    try:
        value = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        if _is_access_error(e):
            raise
        raise _fail(p, what, describe_error(e, "JSON"), fix) from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise _fail(p, what, describe_error(e, "JSON"), fix) from e
    wrong_bool = isinstance(value, bool) and expect is not bool
    if not isinstance(value, expect) or wrong_bool:
        wanted = {dict: "a JSON object", list: "a JSON array"}.get(
            expect, expect.__name__
        )
        found = {dict: "an object", list: "an array", str: "a string"}.get(
            type(value), "null" if value is None else f"the value {value!r}"
        )
        raise _fail(p, what, f"expected {wanted}, found {found}", fix)
    return value


def read_parquet(
    path: PathLike,
    *,
    what: str,
    fix: str,
    columns: tuple[str, ...] | list[str] = (),
) -> dict[str, npt.NDArray[Any]]:
    """Read a Parquet table as a dict of numpy arrays; ``columns`` must be present.

    Raises
    ------
    DataValidationError
        If the file is empty, truncated, not Parquet, or lacks a column.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(os.fspath(path))
    _check_size(p, what, fix)
    try:
        table = pq.read_table(p, page_checksum_verification=True)
        out = {name: table[name].to_numpy() for name in table.column_names}
    except OSError as e:
        if _is_access_error(e):
            raise
        raise _fail(p, what, describe_error(e, "Parquet"), fix) from e
    except (pa.ArrowException, ValueError) as e:
        raise _fail(p, what, describe_error(e, "Parquet"), fix) from e
    missing = [c for c in columns if c not in out]
    if missing:
        raise _fail(
            p,
            what,
            f"no {', '.join(map(repr, missing))} column; it has "
            f"{', '.join(out) or 'none'}",
            fix,
        )
    n = {a.shape[0] for a in out.values()}
    if len(n) > 1:  # cannot happen for a real table; guards hand-made ones
        raise _fail(p, what, "its columns differ in length", fix)
    return out


def _check_array(
    p: Path,
    a: npt.NDArray[Any],
    name: str,
    what: str,
    fix: str,
    ndim: int | None,
    kinds: str | None,
) -> None:
    label = f"array {name!r}" if name else "the array"
    if ndim is not None and a.ndim != ndim:
        raise _fail(p, what, f"{label} is {a.ndim}-D, expected {ndim}-D", fix)
    if kinds is not None and a.dtype.kind not in kinds:
        raise _fail(p, what, f"{label} has dtype {a.dtype}", fix)


def load_npy(
    path: PathLike,
    *,
    what: str,
    fix: str,
    mmap: bool = False,
    ndim: int | None = None,
    kinds: str | None = None,
) -> npt.NDArray[Any]:
    """Load (or memory-map, read-only) an ``.npy`` file, without pickle.

    ``ndim`` and ``kinds`` (numpy dtype kind letters, e.g. ``"iu"``) check
    the array's shape and type.

    Raises
    ------
    DataValidationError
        If the file is empty, truncated, not ``.npy``, or of another shape/type.
    """
    p = Path(os.fspath(path))
    _check_size(p, what, fix)
    try:
        a = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except OSError as e:
        if _is_access_error(e):
            raise
        raise _fail(p, what, describe_error(e, ".npy"), fix) from e
    except CORRUPT_ERRORS as e:
        raise _fail(p, what, describe_error(e, ".npy"), fix) from e
    if not isinstance(a, np.ndarray):  # an .npz given where an .npy belongs
        a.close()
        raise _fail(p, what, "it is an .npz archive, not an .npy array", fix)
    _check_array(p, a, "", what, fix, ndim, kinds)
    return a


def load_npz(
    path: PathLike,
    *,
    what: str,
    fix: str,
    keys: tuple[str, ...] | list[str] = (),
) -> dict[str, npt.NDArray[Any]]:
    """Every array of an ``.npz`` archive, read into memory (CRCs checked).

    Raises
    ------
    DataValidationError
        If the file is empty, truncated, damaged, not ``.npz``, or lacks a key.
    """
    p = Path(os.fspath(path))
    _check_size(p, what, fix)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except AttributeError as e:  # a plain .npy has no context manager keys
        raise _fail(p, what, "it is an .npy array, not an .npz archive", fix) from e
    except OSError as e:
        if _is_access_error(e):
            raise
        raise _fail(p, what, describe_error(e, ".npz"), fix) from e
    except CORRUPT_ERRORS as e:
        raise _fail(p, what, describe_error(e, ".npz"), fix) from e
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise _fail(
            p,
            what,
            f"no {', '.join(map(repr, missing))} array; it has "
            f"{', '.join(arrays) or 'none'}",
            fix,
        )
    return arrays


def load_sparse(path: PathLike, *, what: str, fix: str) -> Any:
    """A scipy sparse matrix saved with ``scipy.sparse.save_npz``, as CSR.

    Its values must be finite.

    Raises
    ------
    DataValidationError
        If the file is damaged, not a sparse matrix, or holds NaN or infinity.
    """
    import scipy.sparse as sp

    p = Path(os.fspath(path))
    _check_size(p, what, fix)
    try:
        m = sp.load_npz(p).tocsr()
    except OSError as e:
        if _is_access_error(e):
            raise
        raise _fail(p, what, describe_error(e, ".npz"), fix) from e
    except (*CORRUPT_ERRORS, TypeError) as e:
        reason = describe_error(e, ".npz")
        if isinstance(e, KeyError) or "sparse" in str(e):
            reason = "it is not a scipy sparse matrix (scipy.sparse.save_npz)"
        raise _fail(p, what, reason, fix) from e
    if m.data.size and not np.isfinite(m.data).all():
        bad = int(np.count_nonzero(~np.isfinite(m.data)))
        raise _fail(p, what, f"{bad} value(s) are NaN or infinity", fix)
    return m
