"""Atomic file writes and staged output folders: nothing half-written looks done."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from clusterlens.exceptions import OutputExistsError

__all__ = ["atomic_write_bytes", "atomic_write_text", "staged_output_dir"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and ``os.replace``.

    A reader sees the old file or the whole new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_output_dir(
    out: str | os.PathLike[str], *, overwrite: bool = False
) -> Iterator[Path]:
    """Yield an empty staging folder that becomes ``out`` only on success.

    Everything is written into a hidden sibling ``.NAME.partial-*``; when the
    block ends without an exception the old ``out`` (if ``overwrite``) is
    removed and the staging folder renamed into place. On any error the
    staging folder is deleted, so a failed run leaves no output that looks
    complete, and an existing ``out`` is left untouched.

    Raises
    ------
    OutputExistsError
        If ``out`` exists and ``overwrite`` is False (checked before any work).
    """
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"Output folder {out} already exists. Pass --overwrite to replace it, "
            "or choose another --out."
        )
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"Output path {out} exists and is not a folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, trash / "old")
        os.replace(stage, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(stage, out)
