"""The safe reader layer (#17 E): any damage to a file is one DataValidationError."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import scipy.sparse as sp

from clusterlens.exceptions import DataValidationError
from clusterlens.io import open_descriptors, read_results, write_results
from clusterlens.io._safe import (
    load_npy,
    load_npz,
    load_sparse,
    read_json,
    read_parquet,
)

KW = {"what": "test file", "fix": "make it again"}


def _npz_bytes(compressed: bool) -> bytes:
    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buf, a=np.arange(10.0), b=np.ones((2, 3), np.int32))
    return buf.getvalue()


def _damaged(raw: bytes):
    """Every one-byte flip (two masks) and every truncation of ``raw``."""
    for i in range(len(raw)):
        for mask in (0xFF, 0x01):
            b = bytearray(raw)
            b[i] ^= mask
            yield bytes(b)
    for n in range(len(raw)):
        yield raw[:n]


def _only_data_errors(path, raw, read) -> int:
    """Read every damaged version; return how many were refused."""
    refused = 0
    for data in _damaged(raw):
        path.write_bytes(data)
        try:
            read(path)
        except DataValidationError as e:
            assert str(path) in str(e) and "make it again" in str(e)
            refused += 1
    return refused


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_every_damaged_npz_is_a_data_error(tmp_path, compressed):
    raw = _npz_bytes(compressed)
    refused = _only_data_errors(tmp_path / "x.npz", raw, lambda p: load_npz(p, **KW))
    assert refused > len(raw)  # most damage is detected (zip CRCs), none escapes


@pytest.mark.parametrize("mmap", [False, True])
def test_every_damaged_npy_is_a_data_error(tmp_path, mmap):
    buf = io.BytesIO()
    np.save(buf, np.arange(12.0).reshape(3, 4))
    raw = buf.getvalue()
    _only_data_errors(tmp_path / "x.npy", raw, lambda p: load_npy(p, mmap=mmap, **KW))


def test_every_damaged_parquet_is_a_data_error(tmp_path):
    write_results(tmp_path / "r.parquet", {"index": np.arange(5), "x": np.ones(5)})
    raw = (tmp_path / "r.parquet").read_bytes()
    _only_data_errors(tmp_path / "d.parquet", raw, lambda p: read_parquet(p, **KW))


def test_results_are_written_with_page_checksums(tmp_path):
    """A flipped byte in a data page is caught, not read as another value."""
    write_results(tmp_path / "r.parquet", {"x": np.arange(1000, dtype=np.int64)})
    raw = bytearray((tmp_path / "r.parquet").read_bytes())
    # the data page follows the 4-byte magic and its header: flip inside it
    raw[100] ^= 0xFF
    (tmp_path / "r.parquet").write_bytes(bytes(raw))
    with pytest.raises(DataValidationError, match=r"r\.parquet"):
        read_results(tmp_path / "r.parquet")


@pytest.mark.parametrize(
    ("content", "found"),
    [
        ("", "empty"),
        ("[1]", "found an array"),
        ("null", "found null"),
        ("true", "found the value True"),
        ("{", "not valid JSON"),
        ("\xff", "not"),
    ],
)
def test_read_json_names_what_is_wrong(tmp_path, content, found):
    p = tmp_path / "x.json"
    p.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataValidationError, match=found) as e:
        read_json(p, **KW)
    assert str(e.value).startswith(f"{str(p)!r} is not a valid test file (")
    assert str(e.value).endswith("): make it again.")


def test_read_json_accepts_the_expected_type(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"a": 1}))
    assert read_json(p, **KW) == {"a": 1}
    p.write_text("[1, 2]")
    assert read_json(p, expect=list, **KW) == [1, 2]


def test_missing_file_stays_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_npy(tmp_path / "none.npy", **KW)


def test_shape_dtype_and_key_checks(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(DataValidationError, match="2-D, expected 1-D"):
        load_npy(tmp_path / "a.npy", ndim=1, **KW)
    with pytest.raises(DataValidationError, match="dtype float32"):
        load_npy(tmp_path / "a.npy", kinds="iu", **KW)
    with pytest.raises(DataValidationError, match=r"an \.npz archive, not an \.npy"):
        np.savez(tmp_path / "b.npz", a=np.zeros(2))
        load_npy(tmp_path / "b.npz", **KW)
    with pytest.raises(DataValidationError, match="no 'c' array"):
        load_npz(tmp_path / "b.npz", keys=("c",), **KW)
    with pytest.raises(DataValidationError, match="'y' column"):
        write_results(tmp_path / "r.parquet", {"x": np.ones(2)})
        read_parquet(tmp_path / "r.parquet", columns=("y",), **KW)


def test_load_sparse_refuses_non_finite_and_dense(tmp_path):
    m = sp.csr_matrix(np.array([[1.0, 0.0], [np.nan, 2.0]]))
    sp.save_npz(tmp_path / "m.npz", m)
    with pytest.raises(DataValidationError, match="1 value"):
        load_sparse(tmp_path / "m.npz", **KW)
    np.savez(tmp_path / "d.npz", x=np.ones((2, 2)))
    with pytest.raises(DataValidationError, match="not a scipy sparse matrix"):
        load_sparse(tmp_path / "d.npz", **KW)


def test_descriptor_npz_damaged_is_a_data_error(tmp_path):
    """kmeans/vocab DATA: a truncated .npz was a BadZipFile traceback."""
    raw = _npz_bytes(True)
    p = tmp_path / "x.npz"
    for data in (raw[: len(raw) // 2], raw[:-30]):
        p.write_bytes(data)
        with pytest.raises(DataValidationError, match=r"x\.npz"):
            open_descriptors(p, key="a")
