"""Memory-mapped readers and writers for .npy, *vecs and Oxford .bin descriptors."""

from __future__ import annotations

import difflib
import logging
import os
import stat
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._safe import CORRUPT_ERRORS, describe_error
from clusterlens.typing import PathLike
from clusterlens.utils._chunking import gen_batches, get_chunk_n_rows
from clusterlens.utils._names import arg
from clusterlens.utils.validation import check_int, check_options

__all__ = [
    "as_matrix",
    "open_descriptors",
    "write_bvecs",
    "write_fvecs",
    "write_ivecs",
    "write_oxford_bin",
]

logger = logging.getLogger(__name__)

FormatName = Literal["npy", "npz", "fvecs", "bvecs", "ivecs", "bin"]

_FORMATS: tuple[str, ...] = ("npy", "npz", "fvecs", "bvecs", "ivecs", "bin")
_SUFFIXES: dict[str, str] = {f".{fmt}": fmt for fmt in _FORMATS}
_FORMAT_HELP = (
    "npy (.npy, a 2-D numeric NumPy array), "
    "fvecs (.fvecs, int32 d then d float32 per row), "
    "bvecs (.bvecs, int32 d then d uint8 per row), "
    "ivecs (.ivecs, int32 d then d int32 per row), "
    "bin (.bin, Oxford5k SIFT: raw uint8 rows of `dim` bytes, no header)"
)
# Element dtype of the data part of each *vecs record (little-endian on disk).
_VECS_DTYPE: dict[str, np.dtype[Any]] = {
    "fvecs": np.dtype("<f4"),
    "bvecs": np.dtype("u1"),
    "ivecs": np.dtype("<i4"),
}
_VECS_LAYOUT: dict[str, str] = {
    "fvecs": "int32 d, then d float32",
    "bvecs": "int32 d, then d uint8",
    "ivecs": "int32 d, then d int32",
}
_HEADER_BYTES = 4
# A dimension header above this is treated as corrupt rather than as data.
_MAX_DIM = 1 << 20
# Rows whose dimension header is compared with the first one (plus the last row).
_N_HEADER_SAMPLES = 1000
# Accepted dtype kinds for descriptor data: bool, signed and unsigned int, float.
_NUMERIC_KINDS = "biuf"


# --------------------------------------------------------------------------- #
# Paths and formats
# --------------------------------------------------------------------------- #
def _stat_file(path: Any) -> tuple[Path, int]:
    """Return ``(Path, size in bytes)`` of a readable regular file, or raise."""
    try:
        p = Path(os.fspath(path))
    except TypeError as e:
        raise DataValidationError(
            f"path must be a str or os.PathLike pointing to a descriptor file; "
            f"got {type(path).__name__}. Pass the file's path, e.g. 'features.fvecs'."
        ) from e
    try:
        st = p.stat()
    except FileNotFoundError as e:
        raise DataValidationError(
            f"Descriptor file {str(p)!r} does not exist. Check the path "
            f"(relative paths are resolved from {str(Path.cwd())!r})."
        ) from e
    except OSError as e:
        raise DataValidationError(
            f"Cannot access descriptor file {str(p)!r}: {e.strerror or e}. "
            "Check the path and its permissions."
        ) from e
    if stat.S_ISDIR(st.st_mode):
        raise DataValidationError(
            f"{str(p)!r} is a directory; expected a descriptor file "
            f"({', '.join(_SUFFIXES)}). Pass the path of one file inside it."
        )
    if not stat.S_ISREG(st.st_mode):
        raise DataValidationError(
            f"{str(p)!r} is not a regular file; expected a descriptor file "
            f"({', '.join(_SUFFIXES)}) that can be memory-mapped."
        )
    if not os.access(p, os.R_OK):
        raise DataValidationError(
            f"Descriptor file {str(p)!r} is not readable. Check its permissions."
        )
    return p, int(st.st_size)


def _resolve_format(path: Path, format: str | None) -> str:
    """Pick the format from ``format`` or, when it is None, from the suffix."""
    if format is not None:
        name = format.lower().lstrip(".") if isinstance(format, str) else format
        return check_options(name, "format", "open_descriptors", _FORMATS)
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    close = difflib.get_close_matches(suffix, list(_SUFFIXES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shown = repr(suffix) if suffix else "no suffix"
    raise DataValidationError(
        f"Cannot tell the descriptor format of {str(path)!r} from its suffix "
        f"({shown}).{hint} Supported formats: {_FORMAT_HELP}. Rename the file or "
        f"pass {arg('format')} explicitly."
    )


def _memmap(path: Path, dtype: npt.DTypeLike, shape: tuple[int, ...]) -> np.memmap:
    """Open ``path`` as a read-only memmap, turning OS errors into data errors."""
    try:
        return np.memmap(path, dtype=dtype, mode="r", shape=shape)
    except OSError as e:
        raise DataValidationError(
            f"Cannot memory-map descriptor file {str(path)!r}: {e.strerror or e}. "
            "Check that the file exists, is readable and is on a local disk."
        ) from e


def _read_header(path: Path) -> int:
    """Return the first little-endian int32 of ``path`` (a *vecs dimension)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(_HEADER_BYTES)
    except OSError as e:
        raise DataValidationError(
            f"Cannot read descriptor file {str(path)!r}: {e.strerror or e}. "
            "Check the path and its permissions."
        ) from e
    return int(np.frombuffer(raw, dtype="<i4", count=1)[0])


def _sample_rows(n: int) -> npt.NDArray[np.intp]:
    """First, last and up to ``_N_HEADER_SAMPLES`` evenly strided row indices."""
    k = min(n, _N_HEADER_SAMPLES)
    idx = np.linspace(0, n - 1, num=k).astype(np.intp)
    return np.unique(np.concatenate([idx, np.array([0, n - 1], dtype=np.intp)]))


# --------------------------------------------------------------------------- #
# Readers
# --------------------------------------------------------------------------- #
def _open_vecs(path: Path, size: int, fmt: str) -> np.memmap:
    """Memory-map an fvecs/bvecs/ivecs file and return its data columns."""
    layout = _VECS_LAYOUT[fmt]
    if size < _HEADER_BYTES:
        raise DataValidationError(
            f"{fmt} file {str(path)!r} is truncated: {size} bytes is shorter than the "
            f"{_HEADER_BYTES}-byte dimension header of one record ({layout}). "
            "Re-export the file."
        )
    d = _read_header(path)
    if d <= 0 or d > _MAX_DIM:
        swapped = int(np.array([d], dtype="<i4").byteswap()[0])
        hint = (
            f" Read big-endian it would be d={swapped}; this reader expects "
            "little-endian files, so convert it with a little-endian writer."
            if 0 < swapped <= _MAX_DIM
            else " The file is corrupt or not in this format; check `format`."
        )
        raise DataValidationError(
            f"{fmt} file {str(path)!r} has an invalid dimension header: the first "
            f"record says d={d}, expected an int32 in [1, {_MAX_DIM}] "
            f"(each record is {layout}).{hint}"
        )
    itemsize = _VECS_DTYPE[fmt].itemsize
    record = _HEADER_BYTES + d * itemsize
    if size % record != 0:
        raise DataValidationError(
            f"{fmt} file {str(path)!r} is truncated: {size} bytes is not a whole "
            f"number of {record}-byte records (d={d}); the last record is "
            f"incomplete ({size % record} extra bytes after {size // record} "
            "complete records) — re-export or truncate the file."
        )
    n = size // record
    idx = _sample_rows(n)
    if itemsize == _HEADER_BYTES:
        mm = _memmap(path, "<i4", (n, 1 + d))
        headers = np.asarray(mm[idx, 0])
        data = mm.view(_VECS_DTYPE[fmt])[:, 1:]
    else:
        mm = _memmap(path, np.uint8, (n, record))
        headers = np.ascontiguousarray(mm[idx, :_HEADER_BYTES]).view("<i4")[:, 0]
        data = mm[:, _HEADER_BYTES:]
    bad = headers != d
    if bad.any():
        first = int(np.argmax(bad))
        raise DataValidationError(
            f"{fmt} file {str(path)!r} has inconsistent dimension headers: row 0 "
            f"says d={d} but row {int(idx[first])} says d={int(headers[first])} "
            f"({int(bad.sum())} of {idx.size} sampled rows differ). Every record "
            "must have the same d; re-export the file with one dimension."
        )
    logger.debug("Opened %s file %s: %d x %d", fmt, path, n, d)
    return data  # type: ignore[return-value]  # a view of the memmap


def _open_bin(path: Path, size: int, dim: int) -> np.memmap:
    """Memory-map an Oxford5k-style raw uint8 descriptor file."""
    if size % dim != 0:
        raise DataValidationError(
            f"bin file {str(path)!r} is truncated: {size} bytes is not a whole number "
            f"of {dim}-byte records (dim={dim}); the last descriptor is incomplete "
            f"({size % dim} extra bytes). Pass the right `dim` (row length in bytes), "
            "or re-export or truncate the file."
        )
    n = size // dim
    logger.debug("Opened bin file %s: %d x %d", path, n, dim)
    return _memmap(path, np.uint8, (n, dim))


def _open_npy(path: Path, size: int) -> np.ndarray:
    """Open a 2-D numeric ``.npy`` file with ``mmap_mode="r"``."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except OSError as e:
        raise DataValidationError(
            f"Cannot read descriptor file {str(path)!r}: {e.strerror or e}. "
            "Check the path and its permissions."
        ) from e
    except ValueError as e:
        raise DataValidationError(
            f"{str(path)!r} is not a valid .npy file ({e}). Expected a file written "
            f"by numpy.save; pass {arg('format')} if it is in another format."
        ) from e
    if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS:
        raise DataValidationError(
            f".npy file {str(path)!r} holds dtype {dtype}; expected a numeric "
            "(bool, int, uint or float) array that can be memory-mapped. "
            "Save the descriptors as a numeric array, e.g. np.save(path, "
            "X.astype(np.float32))."
        )
    if len(shape) != 2:
        raise DataValidationError(
            f".npy file {str(path)!r} holds an array of shape {shape}; expected 2-D of "
            "shape (n_samples, n_features). Save X.reshape(len(X), -1) (or "
            "X.reshape(1, -1) for one sample) instead."
        )
    if shape[0] == 0 or shape[1] == 0:
        raise DataValidationError(
            f".npy file {str(path)!r} holds an empty array of shape {shape}; expected "
            "at least one sample and one feature. Check how the file was written."
        )
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if size < expected:
        raise DataValidationError(
            f".npy file {str(path)!r} is truncated: {size} bytes, but its header "
            f"(shape {shape}, dtype {dtype}) needs {expected} bytes — re-export the "
            "file."
        )
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataValidationError(
            f"Cannot memory-map .npy file {str(path)!r}: {e}. Re-export it with "
            "numpy.save."
        ) from e
    logger.debug("Opened npy file %s: shape %s, dtype %s", path, X.shape, X.dtype)
    return X


#: Array names tried, in order, when an ``.npz`` holds several and no key is given.
_NPZ_KEYS = ("descriptors", "features", "X")


def _open_npz(path: Path, key: str | None) -> np.ndarray:
    """One 2-D numeric array of an ``.npz`` archive, loaded into memory."""
    try:
        archive = np.load(path, allow_pickle=False)
        if isinstance(archive, np.ndarray):
            raise ValueError("it holds one .npy array, not an .npz archive")
    except (OSError, *CORRUPT_ERRORS) as e:
        raise DataValidationError(
            f"{str(path)!r} is not a readable .npz archive "
            f"({describe_error(e, '.npz')}). Expected a file written by numpy.savez."
        ) from e
    with archive:
        names = list(archive.files)
        if key is None:
            if len(names) == 1:
                key = names[0]
            else:
                key = next((k for k in _NPZ_KEYS if k in names), None)
        if key is None or key not in names:
            raise DataValidationError(
                f".npz archive {str(path)!r} has arrays {names}; "
                + (f"no array named {key!r}. " if key is not None else "")
                + "Name the one to use (key=... in Python, --key on the command line)."
            )
        try:
            X = archive[key]
        except ValueError as e:
            if "pickle" not in str(e):
                raise DataValidationError(
                    f"Array {key!r} of {str(path)!r} is damaged "
                    f"({describe_error(e, '.npz')}). Re-export the file."
                ) from e
            raise DataValidationError(
                f"Array {key!r} of {str(path)!r} cannot be read without pickle ({e})."
            ) from e
        except CORRUPT_ERRORS as e:
            raise DataValidationError(
                f"Array {key!r} of {str(path)!r} is damaged "
                f"({describe_error(e, '.npz')}). Re-export the file."
            ) from e
    if X.dtype.hasobject or X.dtype.kind not in _NUMERIC_KINDS or X.ndim != 2:
        raise DataValidationError(
            f"Array {key!r} of {str(path)!r} has shape {X.shape} and dtype {X.dtype}; "
            "expected a 2-D numeric array of shape (n_samples, n_features)."
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataValidationError(
            f"Array {key!r} of {str(path)!r} is empty (shape {X.shape})."
        )
    X.flags.writeable = False
    return X


def open_descriptors(
    path: PathLike,
    *,
    format: FormatName | None = None,
    dim: int = 128,
    key: str | None = None,
) -> np.ndarray:
    """Open a descriptor file as a read-only, memory-mapped 2-D array.

    Nothing is loaded or copied: the result is a view on a read-only
    ``numpy.memmap`` of the file, so files larger than memory can be used.

    Parameters
    ----------
    path : str or os.PathLike
        The descriptor file.
    format : {"npy", "npz", "fvecs", "bvecs", "ivecs", "bin"}, default=None
        Layout of the file. ``None`` picks it from the suffix.

        - ``"npy"``: a NumPy ``.npy`` file holding a 2-D numeric array, opened
          with ``np.load(path, mmap_mode="r")``.
        - ``"npz"``: one 2-D array of a NumPy ``.npz`` archive (``key``), read
          into memory (archives cannot be memory-mapped).
        - ``"fvecs"``: TEXMEX records, each an int32 ``d`` then ``d`` float32.
        - ``"bvecs"``: TEXMEX records, each an int32 ``d`` then ``d`` uint8.
        - ``"ivecs"``: TEXMEX records, each an int32 ``d`` then ``d`` int32
          (e.g. ground-truth neighbour ids).
        - ``"bin"``: Oxford5k SIFT layout, consecutive raw uint8 descriptors of
          ``dim`` bytes with no header.
    dim : int, default=128
        Row length in bytes of a ``"bin"`` file; ignored for other formats,
        whose files record their own dimension.
    key : str, default=None
        Array of an ``.npz`` archive; None takes its only array, else the
        first of ``descriptors``, ``features``, ``X`` that it has.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        A read-only view on the file: float32 for fvecs, uint8 for bvecs and
        bin, int32 for ivecs, the stored dtype for npy. For the ``*vecs``
        formats it is strided (the per-row headers are skipped).

    Raises
    ------
    DataValidationError
        If the path is missing, a directory or unreadable; if the file is
        empty, truncated, has an invalid or inconsistent dimension header, or
        its suffix is unknown; or if a ``.npy`` file is not 2-D numeric.
    InvalidParameterError
        If ``format`` or ``dim`` is not valid.

    See Also
    --------
    as_matrix : Accept an array, memmap or path and return a 2-D array.
    write_fvecs, write_bvecs, write_ivecs, write_oxford_bin : The writers.

    Notes
    -----
    Opening is O(1) in the file size: only the first dimension header and a
    strided sample of at most 1000 row headers (always including the first
    and the last row) are read to check the layout. The ``*vecs`` formats are
    little-endian, as described on the TEXMEX corpus page
    (http://corpus-texmex.irisa.fr/).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.fvecs")
    >>> write_fvecs(path, np.eye(3, dtype=np.float32))
    >>> X = open_descriptors(path)
    >>> X.shape, X.dtype, X.flags.writeable
    ((3, 3), dtype('float32'), False)
    """
    p, size = _stat_file(path)
    fmt = _resolve_format(p, format)
    check_int(dim, "dim", "open_descriptors", low=1)
    if size == 0:
        raise DataValidationError(
            f"Descriptor file {str(p)!r} is empty (0 bytes); expected {fmt} data. "
            "The export probably failed or was interrupted; regenerate the file."
        )
    if fmt == "npy":
        return _open_npy(p, size)
    if fmt == "npz":
        return _open_npz(p, key)
    if fmt == "bin":
        return _open_bin(p, size, int(dim))
    return _open_vecs(p, size, fmt)


# --------------------------------------------------------------------------- #
# Arrays
# --------------------------------------------------------------------------- #
def _check_matrix(X: np.ndarray, name: str) -> None:
    """Raise unless ``X`` is a non-empty 2-D numeric array."""
    if X.dtype.hasobject or X.dtype.kind not in _NUMERIC_KINDS:
        raise DataValidationError(
            f"{name} must hold numbers (bool, int, uint or float); got dtype "
            f"{X.dtype}. Convert it first, e.g. {name}.astype(np.float32)."
        )
    if X.ndim != 2:
        if X.ndim == 1:
            fix = f"Use {name}.reshape(1, -1) for one sample."
        elif X.ndim == 0:
            fix = f"Use np.atleast_2d({name}) for one sample with one feature."
        else:
            fix = f"Flatten the trailing axes with {name}.reshape(len({name}), -1)."
        raise DataValidationError(
            f"{name} must be 2-D of shape (n_samples, n_features); got shape "
            f"{X.shape}. {fix}"
        )
    if X.shape[0] == 0:
        raise DataValidationError(
            f"{name} is empty: 0 samples (shape {X.shape}); at least 1 is required. "
            "Check the filter or file that produced it."
        )
    if X.shape[1] == 0:
        raise DataValidationError(
            f"{name} has 0 features (shape {X.shape}); at least 1 is required. "
            "Check the feature extraction that produced it."
        )


def as_matrix(X: npt.ArrayLike | PathLike, *, name: str = "X") -> np.ndarray:
    """Return ``X`` as a 2-D numeric array without copying arrays or memmaps.

    Parameters
    ----------
    X : {array-like, memmap, str, os.PathLike} of shape (n_samples, n_features)
        The data. A ``numpy.memmap`` is returned as it is; other arrays go
        through ``np.asarray`` (no copy for an ndarray); a path is opened with
        :func:`open_descriptors` (memory-mapped, read-only).
    name : str, default="X"
        Name of the input used in error messages.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Shares memory with the input whenever the input is an array.

    Raises
    ------
    DataValidationError
        If ``X`` is not 2-D, has no rows or no columns, does not hold numbers
        (object, str or complex dtype), cannot be turned into an array, or is
        a path :func:`open_descriptors` rejects.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.zeros((4, 2), dtype=np.float32)
    >>> as_matrix(A) is A
    True
    >>> as_matrix([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    if isinstance(X, str | os.PathLike):
        arr = open_descriptors(X)
    elif isinstance(X, np.memmap):
        arr = X
    else:
        try:
            arr = np.asarray(X)
        except (ValueError, TypeError) as e:
            raise DataValidationError(
                f"{name} cannot be turned into a numeric array ({e}). Pass an array of "
                "shape (n_samples, n_features) with rows of equal length."
            ) from e
    _check_matrix(arr, name)
    return arr


# --------------------------------------------------------------------------- #
# Writers
# --------------------------------------------------------------------------- #
def _integer_in_range(X: np.ndarray, fmt: str, low: int, high: int, hint: str) -> None:
    """Raise unless ``X`` is an integer array with values in ``[low, high]``."""
    if X.dtype.kind not in "biu":
        raise DataValidationError(
            f"{fmt} stores integers in [{low}, {high}]; got dtype {X.dtype}. {hint}"
        )
    lo, hi = int(X.min()), int(X.max())
    if lo < low or hi > high:
        raise DataValidationError(
            f"{fmt} stores integers in [{low}, {high}]; got values in [{lo}, {hi}]. "
            f"{hint}"
        )


def _write_vecs(path: PathLike, X: npt.ArrayLike, fmt: str) -> None:
    """Write ``X`` as fvecs/bvecs/ivecs records, a chunk of rows at a time."""
    arr = X if isinstance(X, np.memmap) else np.asarray(X)
    _check_matrix(arr, "X")
    if fmt == "bvecs":
        _integer_in_range(arr, fmt, 0, 255, "Pass X.astype(np.uint8) if intended.")
    elif fmt == "ivecs":
        info = np.iinfo(np.int32)
        _integer_in_range(
            arr,
            fmt,
            int(info.min),
            int(info.max),
            "Pass X.astype(np.int32) if intended.",
        )
    n, d = arr.shape
    dtype = _VECS_DTYPE[fmt]
    record = _HEADER_BYTES + d * dtype.itemsize
    rows = get_chunk_n_rows(record, max_n_rows=n)
    if dtype.itemsize == _HEADER_BYTES:
        buf = np.empty((rows, 1 + d), dtype="<i4")
        buf[:, 0] = d
        body = buf.view(dtype)[:, 1:]
    else:
        buf = np.empty((rows, record), dtype=np.uint8)
        buf[:, :_HEADER_BYTES] = np.array([d], dtype="<i4").view(np.uint8)
        body = buf[:, _HEADER_BYTES:]
    with open(os.fspath(path), "wb") as f:
        for sl in gen_batches(n, rows):
            m = sl.stop - sl.start
            body[:m] = arr[sl]
            buf[:m].tofile(f)


def write_fvecs(path: PathLike, X: npt.ArrayLike) -> None:
    """Write a 2-D array as an fvecs file (int32 ``d`` then ``d`` float32 per row).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; overwritten if it exists.
    X : {array-like, memmap} of shape (n_samples, n_features)
        Numeric data, cast to float32 (integers above 2**24 lose precision).

    Raises
    ------
    DataValidationError
        If ``X`` is not a non-empty 2-D numeric array.

    See Also
    --------
    open_descriptors : Read the file back, memory-mapped.
    """
    _write_vecs(path, X, "fvecs")


def write_bvecs(path: PathLike, X: npt.ArrayLike) -> None:
    """Write a 2-D uint8 array as a bvecs file (int32 ``d``, ``d`` uint8 per row).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; overwritten if it exists.
    X : {array-like, memmap} of shape (n_samples, n_features)
        Integer data with values in [0, 255], typically uint8 SIFT.

    Raises
    ------
    DataValidationError
        If ``X`` is not a non-empty 2-D integer array with values in [0, 255].

    See Also
    --------
    open_descriptors : Read the file back, memory-mapped.
    """
    _write_vecs(path, X, "bvecs")


def write_ivecs(path: PathLike, X: npt.ArrayLike) -> None:
    """Write a 2-D integer array as an ivecs file (int32 ``d``, ``d`` int32 per row).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; overwritten if it exists.
    X : {array-like, memmap} of shape (n_samples, n_features)
        Integer data within the int32 range (e.g. neighbour ids).

    Raises
    ------
    DataValidationError
        If ``X`` is not a non-empty 2-D integer array within the int32 range.

    See Also
    --------
    open_descriptors : Read the file back, memory-mapped.
    """
    _write_vecs(path, X, "ivecs")


def write_oxford_bin(path: PathLike, X: npt.ArrayLike) -> None:
    """Write a 2-D uint8 array as raw bytes (Oxford5k SIFT ``.bin`` layout).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; overwritten if it exists.
    X : {array-like, memmap} of shape (n_samples, n_features)
        Integer data with values in [0, 255]. The file has no header: read it
        back with ``open_descriptors(path, dim=n_features)``.

    Raises
    ------
    DataValidationError
        If ``X`` is not a non-empty 2-D integer array with values in [0, 255].

    See Also
    --------
    open_descriptors : Read the file back, memory-mapped.
    """
    arr = X if isinstance(X, np.memmap) else np.asarray(X)
    _check_matrix(arr, "X")
    _integer_in_range(arr, "bin", 0, 255, "Pass X.astype(np.uint8) if intended.")
    n, d = arr.shape
    rows = get_chunk_n_rows(d, max_n_rows=n)
    with open(os.fspath(path), "wb") as f:
        for sl in gen_batches(n, rows):
            np.ascontiguousarray(arr[sl], dtype=np.uint8).tofile(f)
