"""Tests for the memory-mapped descriptor readers and writers in clusterlens.io."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from clusterlens._config import config_context
from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io import (
    as_matrix,
    open_descriptors,
    write_bvecs,
    write_fvecs,
    write_ivecs,
    write_oxford_bin,
)

SIFT_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sift"


def _random(fmt: str, n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if fmt == "fvecs":
        return rng.standard_normal((n, d)).astype(np.float32)
    if fmt == "ivecs":
        return rng.integers(-(2**31), 2**31 - 1, size=(n, d), dtype=np.int32)
    return rng.integers(0, 256, size=(n, d), dtype=np.uint8)


_WRITERS = {"fvecs": write_fvecs, "bvecs": write_bvecs, "ivecs": write_ivecs}
_DTYPES = {"fvecs": np.float32, "bvecs": np.uint8, "ivecs": np.int32}


def _assert_mapped_read_only(X: np.ndarray) -> None:
    assert isinstance(X, np.memmap)
    assert not X.flags.owndata
    assert not X.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        X[0, 0] = 0


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("fmt", ["fvecs", "bvecs", "ivecs"])
@pytest.mark.parametrize(("n", "d"), [(1, 1), (7, 3), (50, 128)])
def test_vecs_round_trip_is_mapped_read_only(tmp_path, fmt, n, d):
    X = _random(fmt, n, d, seed=n * d)
    path = tmp_path / f"x.{fmt}"
    _WRITERS[fmt](path, X)
    itemsize = np.dtype(_DTYPES[fmt]).itemsize
    assert path.stat().st_size == n * (4 + d * itemsize)

    Y = open_descriptors(path)
    assert Y.shape == (n, d)
    assert Y.dtype == _DTYPES[fmt]
    np.testing.assert_array_equal(Y, X)
    _assert_mapped_read_only(Y)


@pytest.mark.parametrize("fmt", ["fvecs", "bvecs", "ivecs"])
def test_vecs_header_bytes_are_little_endian_int32_dim(tmp_path, fmt):
    X = _random(fmt, 3, 5)
    path = tmp_path / f"x.{fmt}"
    _WRITERS[fmt](path, X)
    record = 4 + 5 * np.dtype(_DTYPES[fmt]).itemsize
    raw = np.fromfile(path, dtype=np.uint8).reshape(3, record)
    np.testing.assert_array_equal(raw[:, :4].copy().view("<i4").ravel(), [5, 5, 5])


def test_fvecs_round_trip_preserves_special_floats(tmp_path):
    X = np.array([[0.0, -0.0, np.inf], [-np.inf, 1e-45, 3.4e38]], dtype=np.float32)
    write_fvecs(tmp_path / "x.fvecs", X)
    Y = open_descriptors(tmp_path / "x.fvecs")
    np.testing.assert_array_equal(Y, X)
    np.testing.assert_array_equal(np.signbit(Y), np.signbit(X))


def test_fvecs_writer_casts_float64_and_ints_to_float32(tmp_path):
    X = np.arange(12, dtype=np.int64).reshape(3, 4)
    write_fvecs(tmp_path / "x.fvecs", X)
    Y = open_descriptors(tmp_path / "x.fvecs")
    assert Y.dtype == np.float32
    np.testing.assert_array_equal(Y, X.astype(np.float32))


@pytest.mark.parametrize("dim", [128, 64, 1])
def test_oxford_bin_round_trip(tmp_path, dim):
    X = _random("bin", 40, dim, seed=dim)
    path = tmp_path / "sift.bin"
    write_oxford_bin(path, X)
    assert path.stat().st_size == 40 * dim
    Y = open_descriptors(path, dim=dim)
    assert Y.shape == (40, dim)
    assert Y.dtype == np.uint8
    np.testing.assert_array_equal(Y, X)
    _assert_mapped_read_only(Y)


def test_oxford_bin_default_dim_is_128(tmp_path):
    X = _random("bin", 5, 128)
    write_oxford_bin(tmp_path / "a.bin", X)
    assert open_descriptors(tmp_path / "a.bin").shape == (5, 128)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_round_trip_is_mapped_read_only(tmp_path, dtype, order):
    rng = np.random.default_rng(3)
    X = np.asarray(rng.integers(0, 200, size=(20, 6)), dtype=dtype, order=order)
    path = tmp_path / "x.npy"
    np.save(path, X)
    Y = open_descriptors(path)
    assert Y.shape == (20, 6)
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, X)
    _assert_mapped_read_only(Y)


@pytest.mark.parametrize("fmt", ["fvecs", "bvecs", "ivecs"])
def test_explicit_format_overrides_suffix(tmp_path, fmt):
    X = _random(fmt, 4, 8)
    path = tmp_path / "descriptors.dat"
    _WRITERS[fmt](path, X)
    np.testing.assert_array_equal(open_descriptors(path, format=fmt), X)
    np.testing.assert_array_equal(
        open_descriptors(str(path), format=f".{fmt.upper()}"), X
    )


def test_suffix_is_case_insensitive(tmp_path):
    X = _random("fvecs", 2, 3)
    write_fvecs(tmp_path / "X.FVECS", X)
    np.testing.assert_array_equal(open_descriptors(tmp_path / "X.FVECS"), X)


def test_large_file_written_in_many_chunks_reads_back(tmp_path):
    X = _random("fvecs", 10_000, 128, seed=7)
    path = tmp_path / "big.fvecs"
    # 0.25 MiB per chunk: 10k rows x 516 bytes is about 5 MiB, i.e. ~20 chunks.
    with config_context(working_memory=0.25):
        write_fvecs(path, X)
    assert path.stat().st_size == 10_000 * (4 + 128 * 4)
    Y = open_descriptors(path)
    assert Y.shape == (10_000, 128)
    np.testing.assert_array_equal(Y, X)
    np.testing.assert_array_equal(Y[-1], X[-1])


@pytest.mark.parametrize("writer", [write_bvecs, write_oxford_bin])
def test_uint8_writers_chunk_boundaries_reproduce_unchunked(tmp_path, writer):
    X = _random("bvecs", 1001, 33, seed=11)
    with config_context(working_memory=0.001):  # ~1 KiB: a few dozen rows a chunk
        writer(tmp_path / "a", X)
    writer(tmp_path / "b", X)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_writers_accept_read_only_memmap(tmp_path):
    X = _random("bvecs", 30, 16, seed=5)
    write_bvecs(tmp_path / "a.bvecs", X)
    M = open_descriptors(tmp_path / "a.bvecs")
    write_bvecs(tmp_path / "b.bvecs", M)
    write_oxford_bin(tmp_path / "b.bin", M)
    np.testing.assert_array_equal(open_descriptors(tmp_path / "b.bvecs"), X)
    np.testing.assert_array_equal(open_descriptors(tmp_path / "b.bin", dim=16), X)


# --------------------------------------------------------------------------- #
# Reader errors
# --------------------------------------------------------------------------- #
def test_missing_path_raises_data_validation_error(tmp_path):
    path = tmp_path / "nope.fvecs"
    with pytest.raises(DataValidationError, match=r"nope\.fvecs.*does not exist") as e:
        open_descriptors(path)
    assert isinstance(e.value.__cause__, FileNotFoundError)


def test_directory_raises(tmp_path):
    d = tmp_path / "dir.fvecs"
    d.mkdir()
    with pytest.raises(DataValidationError, match=r"dir\.fvecs.*is a directory"):
        open_descriptors(d)


def test_non_path_raises():
    with pytest.raises(DataValidationError, match=r"must be a str or os\.PathLike"):
        open_descriptors(123)  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", ["fvecs", "bvecs", "ivecs", "bin", "npy"])
def test_empty_file_raises(tmp_path, suffix):
    path = tmp_path / f"empty.{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"empty\.\w+'? is empty \(0 bytes\)"):
        open_descriptors(path)


@pytest.mark.parametrize(
    ("fmt", "record"), [("fvecs", 4 + 8 * 4), ("ivecs", 4 + 8 * 4)]
)
def test_truncated_4byte_vecs_raises(tmp_path, fmt, record):
    path = tmp_path / f"x.{fmt}"
    _WRITERS[fmt](path, _random(fmt, 5, 8))
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    size = 5 * record - 3
    with pytest.raises(
        DataValidationError,
        match=rf"truncated: {size} bytes is not a whole number of {record}-byte "
        r"records \(d=8\); the last record is incomplete",
    ):
        open_descriptors(path)


def test_truncated_bvecs_raises(tmp_path):
    path = tmp_path / "x.bvecs"
    write_bvecs(path, _random("bvecs", 10, 128))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(
        DataValidationError,
        match=r"x\.bvecs'? is truncated: 1319 bytes is not a whole number of "
        r"132-byte records \(d=128\).*re-export or truncate",
    ):
        open_descriptors(path)


def test_file_shorter_than_header_raises(tmp_path):
    path = tmp_path / "x.fvecs"
    path.write_bytes(b"\x80\x00")
    with pytest.raises(DataValidationError, match="truncated: 2 bytes is shorter"):
        open_descriptors(path)


@pytest.mark.parametrize("bad_dim", [0, -5, 2**30])
def test_bad_header_dim_raises(tmp_path, bad_dim):
    path = tmp_path / "x.fvecs"
    path.write_bytes(np.array([bad_dim, 1, 2, 3], dtype="<i4").tobytes())
    with pytest.raises(
        DataValidationError, match=rf"invalid dimension header.*d={bad_dim}, expected"
    ):
        open_descriptors(path)


def test_big_endian_header_is_diagnosed(tmp_path):
    path = tmp_path / "x.fvecs"
    path.write_bytes(np.array([[4, 1, 2, 3, 4]], dtype=">i4").tobytes())
    with pytest.raises(DataValidationError, match=r"big-endian it would be d=4"):
        open_descriptors(path)


@pytest.mark.parametrize("fmt", ["fvecs", "bvecs", "ivecs"])
@pytest.mark.parametrize("row", [3, 199])
def test_inconsistent_dims_raise(tmp_path, fmt, row):
    # Size is still a whole number of records: only the header differs.
    path = tmp_path / f"x.{fmt}"
    _WRITERS[fmt](path, _random(fmt, 200, 16))
    record = 4 + 16 * np.dtype(_DTYPES[fmt]).itemsize
    raw = bytearray(path.read_bytes())
    raw[row * record : row * record + 4] = np.array([15], dtype="<i4").tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(
        DataValidationError,
        match=rf"inconsistent dimension headers: row 0 says d=16 "
        rf"but row {row} says d=15",
    ):
        open_descriptors(path)


def test_inconsistent_last_row_is_caught_in_large_file(tmp_path):
    n = 5000  # more rows than the header sample; the last row is always checked
    path = tmp_path / "x.fvecs"
    write_fvecs(path, _random("fvecs", n, 4))
    raw = bytearray(path.read_bytes())
    raw[(n - 1) * 20 : (n - 1) * 20 + 4] = np.array([3], dtype="<i4").tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(DataValidationError, match=rf"row {n - 1} says d=3"):
        open_descriptors(path)


def test_bin_not_multiple_of_dim_raises(tmp_path):
    path = tmp_path / "sift.bin"
    path.write_bytes(bytes(128 * 3 + 5))
    with pytest.raises(
        DataValidationError,
        match=r"389 bytes is not a whole number of 128-byte records \(dim=128\)",
    ):
        open_descriptors(path)


def test_bin_bad_dim_parameter_raises(tmp_path):
    path = tmp_path / "sift.bin"
    path.write_bytes(bytes(128))
    with pytest.raises(InvalidParameterError, match="'dim' parameter"):
        open_descriptors(path, dim=0)


@pytest.mark.parametrize(
    ("name", "hint"),
    [("x.txt", ""), ("x.fvec", "Did you mean '.fvecs'"), ("noext", "no suffix")],
)
def test_unknown_suffix_lists_supported_formats(tmp_path, name, hint):
    path = tmp_path / name
    path.write_bytes(bytes(16))
    with pytest.raises(DataValidationError, match="Supported formats: npy") as e:
        open_descriptors(path)
    msg = str(e.value)
    for fmt in ("fvecs", "bvecs", "ivecs", "bin"):
        assert fmt in msg
    assert hint in msg
    assert "format=" in msg


def test_unknown_format_parameter_raises(tmp_path):
    path = tmp_path / "x.fvecs"
    write_fvecs(path, np.ones((2, 2)))
    with pytest.raises(InvalidParameterError, match="Did you mean 'fvecs'"):
        open_descriptors(path, format="fvec")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(512,), (2, 3, 4)])
def test_npy_not_2d_raises(tmp_path, shape):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(shape, dtype=np.float32))
    with pytest.raises(
        DataValidationError, match=re.escape(f"shape {shape}; expected 2-D")
    ):
        open_descriptors(path)


def test_npy_object_dtype_raises(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([[1, "a"], [None, 2.0]], dtype=object), allow_pickle=True)
    with pytest.raises(
        DataValidationError, match=r"x\.npy'? holds dtype object; expected a numeric"
    ):
        open_descriptors(path)


def test_npy_string_dtype_raises(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([["a", "b"]]))
    with pytest.raises(
        DataValidationError, match="holds dtype <U1; expected a numeric"
    ):
        open_descriptors(path)


def test_npy_empty_array_raises(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((0, 128), dtype=np.float32))
    with pytest.raises(DataValidationError, match=r"empty array of shape \(0, 128\)"):
        open_descriptors(path)


def test_npy_truncated_raises(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((10, 8), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(DataValidationError, match=r"x\.npy'? is truncated"):
        open_descriptors(path)


def test_npy_garbage_raises(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"not a numpy file at all")
    with pytest.raises(DataValidationError, match=r"is not a valid \.npy file"):
        open_descriptors(path)


# --------------------------------------------------------------------------- #
# Writer errors
# --------------------------------------------------------------------------- #
def test_write_bvecs_rejects_out_of_range_and_float(tmp_path):
    with pytest.raises(DataValidationError, match=r"got values in \[0, 256\]"):
        write_bvecs(tmp_path / "x.bvecs", np.array([[0, 256]]))
    with pytest.raises(DataValidationError, match="got dtype float64"):
        write_bvecs(tmp_path / "x.bvecs", np.ones((2, 2)))
    with pytest.raises(DataValidationError, match=r"got values in \[-1, 3\]"):
        write_oxford_bin(tmp_path / "x.bin", np.array([[-1, 3]]))


def test_write_ivecs_rejects_int64_overflow_and_float(tmp_path):
    with pytest.raises(DataValidationError, match="stores integers in"):
        write_ivecs(tmp_path / "x.ivecs", np.array([[2**31]], dtype=np.int64))
    with pytest.raises(DataValidationError, match="got dtype float32"):
        write_ivecs(tmp_path / "x.ivecs", np.ones((2, 2), dtype=np.float32))


def test_writers_reject_1d(tmp_path):
    with pytest.raises(DataValidationError, match=r"got shape \(4,\)"):
        write_fvecs(tmp_path / "x.fvecs", np.ones(4))


# --------------------------------------------------------------------------- #
# as_matrix
# --------------------------------------------------------------------------- #
def test_as_matrix_returns_same_array_without_copy():
    X = np.random.default_rng(0).standard_normal((5, 3))
    assert as_matrix(X) is X
    Xf = np.asfortranarray(X)
    assert np.shares_memory(as_matrix(Xf), Xf)


def test_as_matrix_keeps_memmap_without_copy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((4, 2), dtype=np.float32))
    M = np.load(path, mmap_mode="r")
    out = as_matrix(M)
    assert out is M
    assert isinstance(out, np.memmap)


@pytest.mark.parametrize("as_str", [True, False])
def test_as_matrix_opens_paths(tmp_path, as_str):
    X = _random("fvecs", 6, 4)
    path = tmp_path / "x.fvecs"
    write_fvecs(path, X)
    out = as_matrix(str(path) if as_str else path)
    np.testing.assert_array_equal(out, X)
    _assert_mapped_read_only(out)


def test_as_matrix_accepts_lists():
    out = as_matrix([[1, 2], [3, 4], [5, 6]])
    assert out.shape == (3, 2)
    assert np.issubdtype(out.dtype, np.integer)


def test_as_matrix_1d_message():
    with pytest.raises(
        DataValidationError,
        match=r"X must be 2-D of shape \(n_samples, n_features\); got shape \(512,\)\. "
        r"Use X\.reshape\(1, -1\) for one sample\.",
    ):
        as_matrix(np.zeros(512))


def test_as_matrix_uses_name_in_messages():
    with pytest.raises(
        DataValidationError, match=r"queries must be 2-D.*got shape \(2, 2, 2\)"
    ):
        as_matrix(np.zeros((2, 2, 2)), name="queries")


def test_as_matrix_0d_raises():
    with pytest.raises(DataValidationError, match=r"got shape \(\)"):
        as_matrix(3.0)


def test_as_matrix_zero_rows_raises():
    with pytest.raises(DataValidationError, match=r"X is empty: 0 samples"):
        as_matrix(np.zeros((0, 128), dtype=np.float32))


def test_as_matrix_zero_features_raises():
    with pytest.raises(DataValidationError, match=r"X has 0 features"):
        as_matrix(np.zeros((5, 0)))


@pytest.mark.parametrize(
    ("X", "dtype"),
    [
        (np.array([[1, "a"]], dtype=object), "object"),
        (np.array([["a", "b"]]), "<U1"),
        (np.ones((2, 2), dtype=np.complex128), "complex128"),
    ],
)
def test_as_matrix_non_numeric_raises(X, dtype):
    with pytest.raises(
        DataValidationError, match=rf"X must hold numbers.*got dtype {re.escape(dtype)}"
    ):
        as_matrix(X)


def test_as_matrix_ragged_raises():
    with pytest.raises(DataValidationError, match="rows of equal length"):
        as_matrix([[1, 2], [3]])


def test_as_matrix_bad_path_raises(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist"):
        as_matrix(os.fspath(tmp_path / "missing.npy"))


# --------------------------------------------------------------------------- #
# Real data: ANN_SIFT10K (TEXMEX siftsmall) query set and ground truth
# --------------------------------------------------------------------------- #
def _sift_file(name: str) -> Path:
    path = SIFT_DIR / name
    if not path.is_file():
        pytest.skip(f"shared SIFT data not available at {path}")
    return path


def test_real_siftsmall_query_fvecs():
    Q = open_descriptors(_sift_file("siftsmall_query.fvecs"))
    assert Q.shape == (100, 128)
    assert Q.dtype == np.float32
    _assert_mapped_read_only(Q)
    # SIFT components are non-negative whole numbers (PROVENANCE: 0..169).
    assert np.all(Q >= 0)
    np.testing.assert_array_equal(Q, np.round(Q))
    assert 0 < Q.max() <= 255
    # Every vector is a real descriptor, not padding.
    assert np.all(Q.sum(axis=1) > 0)


def test_real_siftsmall_groundtruth_ivecs():
    G = open_descriptors(_sift_file("siftsmall_groundtruth.ivecs"))
    assert G.shape == (100, 100)
    assert G.dtype == np.int32
    assert G.min() >= 0
    assert G.max() < 10_000
    # Each row lists 100 distinct neighbour ids of the 10,000-vector base set.
    s = np.sort(G, axis=1)
    assert np.all(s[:, 1:] != s[:, :-1])


def test_real_siftsmall_query_round_trips_through_bvecs(tmp_path):
    Q = open_descriptors(_sift_file("siftsmall_query.fvecs"))
    write_bvecs(tmp_path / "q.bvecs", Q.astype(np.uint8))
    B = open_descriptors(tmp_path / "q.bvecs")
    np.testing.assert_array_equal(B.astype(np.float32), Q)
