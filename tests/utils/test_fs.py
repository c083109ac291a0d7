"""Staged output folders, the --overwrite guard and atomic writes."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from clusterlens.exceptions import OutputExistsError
from clusterlens.utils._fs import (
    MARKER,
    atomic_write_text,
    check_output_dir,
    clean_stale_stages,
    output_kind,
    staged_output_dir,
)


def test_staged_dir_appears_only_on_success(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_output_dir(out, kind="t") as stage:
            (stage / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with staged_output_dir(out, kind="t") as stage:
        (stage / "a.txt").write_text("done")
    assert (out / "a.txt").read_text() == "done"
    assert output_kind(out) == "t"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    with staged_output_dir(out, kind="t") as stage:
        (stage / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with staged_output_dir(out, kind="t"):
            pass
    with pytest.raises(ValueError):
        with staged_output_dir(out, overwrite=True, kind="t") as stage:
            (stage / "new.txt").write_text("new")
            raise ValueError
    assert (out / "old.txt").read_text() == "old"  # a failed run keeps the old one
    with staged_output_dir(out, overwrite=True, kind="t") as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_refuses_a_folder_clusterlens_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputExistsError, match=r"not written by clusterlens") as e:
        with staged_output_dir(out, overwrite=True, kind="kmeans"):
            pass
    assert str(out) in str(e.value)
    assert (out / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    empty = tmp_path / "empty"
    empty.mkdir()  # nothing to lose: an empty folder may be replaced
    with staged_output_dir(empty, overwrite=True, kind="kmeans") as stage:
        (stage / "a").write_text("a")
    assert (empty / "a").exists()


def test_overwrite_refuses_another_kind_and_nested_outputs(tmp_path):
    out = tmp_path / "km"
    with staged_output_dir(out, kind="kmeans"):
        pass
    with pytest.raises(OutputExistsError, match=r"'kmeans' output.*'vocab'"):
        check_output_dir(out, overwrite=True, kind="vocab")
    with staged_output_dir(out / "inner", kind="vocab"):
        pass
    with pytest.raises(OutputExistsError, match=r"contains another .*inner"):
        check_output_dir(out, overwrite=True, kind="kmeans")
    # a workspace holds its stages' folders; those are replaced with it
    ws = tmp_path / "ws"
    with staged_output_dir(ws, kind="workspace"):
        pass
    with staged_output_dir(ws / "features" / "cnn", kind="features/cnn"):
        pass
    check_output_dir(ws, overwrite=True, kind="workspace")
    with staged_output_dir(ws / "features" / "nested-ws", kind="workspace"):
        pass
    with pytest.raises(OutputExistsError, match="nested-ws"):
        check_output_dir(ws, overwrite=True, kind="workspace")


def test_overwrite_never_touches_inputs(tmp_path):
    data = tmp_path / "data"
    with staged_output_dir(data, kind="kmeans"):
        pass
    x = data / "x.npy"
    x.write_bytes(b"input")
    # contains the input
    with pytest.raises(OutputExistsError, match=r"contains the input .*x\.npy"):
        check_output_dir(data, overwrite=True, kind="kmeans", inputs=[x])
    # is the input (even before any --overwrite)
    with pytest.raises(OutputExistsError, match="is the input"):
        check_output_dir(data, overwrite=False, kind="kmeans", inputs=[data])
    # lies inside an input folder
    inner = data / "out"
    with staged_output_dir(inner, kind="kmeans"):
        pass
    with pytest.raises(OutputExistsError, match="lies inside the input folder"):
        check_output_dir(inner, overwrite=True, kind="kmeans", inputs=[data])
    # ... but a stage's folder inside its workspace is normal
    check_output_dir(inner, overwrite=True, kind="kmeans", workspace=data)
    with pytest.raises(OutputExistsError, match="is the input"):
        check_output_dir(data, overwrite=True, kind="kmeans", workspace=data)
    # symlinked paths are compared by what they point to
    link = tmp_path / "link"
    link.symlink_to(data)
    with pytest.raises(OutputExistsError, match="input"):
        check_output_dir(link, overwrite=True, kind="kmeans", inputs=[x])
    assert x.read_bytes() == b"input"


def test_stale_stages_of_dead_processes_are_removed(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    host = socket.gethostname()
    stale = tmp_path / ".out.partial-abc"
    stale.mkdir()
    (stale / ".owner").write_text(json.dumps({"pid": pid, "host": host}))
    live = tmp_path / ".out.partial-live"
    live.mkdir()
    (live / ".owner").write_text(json.dumps({"pid": os.getpid(), "host": host}))
    foreign = tmp_path / ".out.partial-other-host"
    foreign.mkdir()
    (foreign / ".owner").write_text(json.dumps({"pid": pid, "host": host + "-x"}))
    assert clean_stale_stages(out) == [stale]
    assert live.exists() and foreign.exists() and not stale.exists()


def test_sigkilled_run_leaves_nothing_the_next_run_keeps(tmp_path):
    out = tmp_path / "out"
    code = (
        "import os, signal, sys\n"
        "from clusterlens.utils._fs import staged_output_dir\n"
        f"with staged_output_dir({str(out)!r}, kind='t') as s:\n"
        "    (s / 'half').write_text('x')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == -9
    assert [p.name.startswith(".out.partial-") for p in tmp_path.iterdir()] == [True]
    with staged_output_dir(out, kind="t") as stage:
        (stage / "a").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with staged_output_dir(tmp_path / "out", kind="t") as stage:
            (stage / "a").write_text("a")
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]
