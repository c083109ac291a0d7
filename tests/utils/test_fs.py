"""Staged output folders and atomic writes."""

from __future__ import annotations

import pytest

from clusterlens.exceptions import OutputExistsError
from clusterlens.utils._fs import atomic_write_text, staged_output_dir


def test_staged_dir_appears_only_on_success(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_output_dir(out) as stage:
            (stage / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with staged_output_dir(out) as stage:
        (stage / "a.txt").write_text("done")
    assert (out / "a.txt").read_text() == "done"


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with staged_output_dir(out):
            pass
    with pytest.raises(ValueError):
        with staged_output_dir(out, overwrite=True) as stage:
            (stage / "new.txt").write_text("new")
            raise ValueError
    assert (out / "old.txt").read_text() == "old"  # a failed run keeps the old one
    with staged_output_dir(out, overwrite=True) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]
