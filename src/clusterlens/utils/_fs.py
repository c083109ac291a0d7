"""Atomic file writes and staged output folders: nothing half-written looks done.

Every output folder clusterlens writes holds a small marker,
``.clusterlens-output.json`` (``{"schema": "clusterlens.output/1", "kind": ...}``),
written last into the staging folder. ``--overwrite`` replaces a folder only
when it is empty or holds the marker of the same kind of output, and never
when it is, contains, or (for an input folder) lies inside an input or a
workspace: a mistyped ``--out`` can never delete a user's data.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from clusterlens.exceptions import OutputExistsError

__all__ = [
    "MARKER",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "is_clusterlens_output",
    "output_kind",
    "process_umask",
    "staged_output_dir",
]

#: The file that says "clusterlens wrote this folder, for this kind of output".
MARKER = ".clusterlens-output.json"
_MARKER_SCHEMA = "clusterlens.output/1"
#: A workspace made before markers existed is still recognised by this file.
_WORKSPACE_FILE = "workspace.json"
_OWNER = ".owner"

PathArg = str | os.PathLike[str]


def process_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_umask = process_umask  # the name before issue #22, for code written since


def atomic_write_bytes(path: PathArg, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and ``os.replace``.

    A reader sees the old file or the whole new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~process_umask()
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


def atomic_write_text(path: PathArg, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def output_kind(folder: PathArg) -> str | None:
    """The kind of clusterlens output ``folder`` holds, or None if not ours.

    A folder with the marker gives its kind; a workspace written before markers
    existed (``workspace.json`` of schema ``clusterlens.workspace/*``) is
    ``"workspace"``.
    """
    folder = Path(folder)
    with contextlib.suppress(OSError, ValueError):
        body = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if (
            isinstance(body, dict)
            and body.get("schema") == _MARKER_SCHEMA
            and isinstance(body.get("kind"), str)
        ):
            return str(body["kind"])
    with contextlib.suppress(OSError, ValueError):
        body = json.loads((folder / _WORKSPACE_FILE).read_text(encoding="utf-8"))
        if isinstance(body, dict) and str(body.get("schema", "")).startswith(
            "clusterlens.workspace/"
        ):
            return "workspace"
    return None


def is_clusterlens_output(folder: PathArg) -> bool:
    """Whether ``folder`` is an output folder (or workspace) clusterlens wrote."""
    return output_kind(folder) is not None


def _inside(child: Path, parent: Path) -> bool:
    """``child`` is ``parent`` or lies below it (both resolved)."""
    return child == parent or parent in child.parents


def _resolve(p: PathArg) -> Path:
    return Path(os.path.realpath(os.fspath(p)))


def _nested_outputs(out: Path, own_kind: str) -> list[tuple[Path, str]]:
    """Clusterlens outputs below ``out`` that replacing it would delete.

    Inside a workspace the stage folders are expected; anything else nested
    (a workspace anywhere, or another output inside a non-workspace output)
    is returned. Symlinks are not followed (replacing ``out`` does not follow
    them either).
    """
    found: list[tuple[Path, str]] = []
    for root, dirs, _files in os.walk(out, followlinks=False):
        here = Path(root)
        if here == out:
            continue
        kind = output_kind(here)
        if kind is None:
            continue
        if kind == "workspace" or own_kind != "workspace":
            found.append((here, kind))
            dirs[:] = []
    return found


def check_output_dir(
    out: PathArg,
    *,
    overwrite: bool,
    kind: str,
    inputs: Sequence[PathArg | None] = (),
    workspace: PathArg | None = None,
) -> Path:
    """Refuse an ``--out`` that would lose data; return it as an absolute path.

    Parameters
    ----------
    out : path
        The output folder.
    overwrite : bool
        Whether the user asked to replace an existing ``out``.
    kind : str
        What the command writes (``"kmeans"``, ``"workspace"``,
        ``"features/cnn"``, ``"export/coco"``, ...), recorded in the marker.
    inputs : sequence of paths
        Files and folders the command reads. ``out`` may not be one of them
        or contain one; an existing ``out`` may not lie inside an input folder.
    workspace : path, optional
        The workspace a stage reads: ``out`` may lie inside it (the stage's
        own folder), but may not be it or contain it.

    Raises
    ------
    OutputExistsError
        With a message naming ``out`` and the path it would have destroyed.
    """
    out = Path(out).absolute()
    real = _resolve(out)
    guarded = [(p, _resolve(p)) for p in inputs if p is not None]
    if workspace is not None:
        guarded.append((Path(workspace), _resolve(workspace)))
    for given, p in guarded:
        if _inside(p, real):
            what = "is" if p == real else "contains"
            raise OutputExistsError(
                f"Output folder {out} {what} the input {given}; writing there could "
                "destroy it. Choose another --out (a new folder)."
            )
    if not out.exists() and not out.is_symlink():
        return out
    if not out.is_dir():
        raise OutputExistsError(
            f"Output path {out} exists and is not a folder. Choose another --out."
        )
    if not overwrite:
        raise OutputExistsError(
            f"Output folder {out} already exists. Pass --overwrite to replace it, "
            "or choose another --out."
        )
    if out.is_symlink():
        raise OutputExistsError(
            f"Output folder {out} is a symbolic link; --overwrite does not replace "
            "links. Choose another --out."
        )
    ws = _resolve(workspace) if workspace is not None else None
    for given, p in guarded:
        if p != ws and p.is_dir() and _inside(real, p):
            raise OutputExistsError(
                f"Output folder {out} lies inside the input folder {given}; "
                "--overwrite never replaces a folder inside an input. Choose an "
                "--out outside it."
            )
    if not any(out.iterdir()):
        return out
    found = output_kind(out)
    if found is None:
        raise OutputExistsError(
            f"Refusing to replace {out}: it was not written by clusterlens (no "
            f"{MARKER} in it), so --overwrite could delete your files. Remove it "
            "yourself if you are sure, or choose another --out."
        )
    if found != kind:
        raise OutputExistsError(
            f"Refusing to replace {out}: it holds a clusterlens {found!r} output, "
            f"and this command writes {kind!r}. Choose another --out."
        )
    nested = _nested_outputs(out, kind)
    if nested:
        path, nkind = nested[0]
        raise OutputExistsError(
            f"Refusing to replace {out}: it contains another clusterlens {nkind!r} "
            f"output, {path}, that --overwrite would delete. Move it out first, or "
            "choose another --out."
        )
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_stages(out: PathArg) -> list[Path]:
    """Delete ``.NAME.partial-*`` / ``.NAME.old-*`` folders of dead runs.

    A staging folder records the host and process that made it; one made on
    this host by a process that no longer runs (killed with SIGKILL, a power
    cut) is removed. Folders of live runs and of other hosts are kept.
    Returns the folders removed.
    """
    out = Path(out).absolute()
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    host = socket.gethostname()
    for pat in (f".{out.name}.partial-*", f".{out.name}.old-*"):
        for d in out.parent.glob(pat):
            if not d.is_dir() or d.is_symlink():
                continue
            try:
                owner = json.loads((d / _OWNER).read_text(encoding="utf-8"))
                pid, ohost = int(owner["pid"]), str(owner["host"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not ours to judge: keep it
            if ohost == host and not _pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
    return removed


def _make_stage(parent: Path, prefix: str) -> Path:
    stage = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(stage, 0o777 & ~process_umask())
    (stage / _OWNER).write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname()}),
        encoding="utf-8",
    )
    return stage


@contextlib.contextmanager
def staged_output_dir(
    out: PathArg,
    *,
    kind: str,
    overwrite: bool = False,
    inputs: Sequence[PathArg | None] = (),
    workspace: PathArg | None = None,
) -> Iterator[Path]:
    """Yield an empty staging folder that becomes ``out`` only on success.

    Everything is written into a hidden sibling ``.NAME.partial-*``; when the
    block ends without an exception the marker of ``kind`` is added, the old
    ``out`` (if ``overwrite``) is removed and the staging folder renamed into
    place. On any error the staging folder is deleted, so a failed run leaves
    no output that looks complete, and an existing ``out`` is left untouched.
    Staging folders left by killed runs are removed first
    (:func:`clean_stale_stages`).

    ``out`` is checked by :func:`check_output_dir` (same parameters) before
    any work and again just before the old folder is replaced.

    Raises
    ------
    OutputExistsError
        If ``out`` exists and may not be replaced (see :func:`check_output_dir`).
    """
    out = check_output_dir(
        out, overwrite=overwrite, kind=kind, inputs=inputs, workspace=workspace
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_stages(out)
    stage = _make_stage(out.parent, f".{out.name}.partial-")
    try:
        yield stage
        (stage / _OWNER).unlink(missing_ok=True)
        atomic_write_text(
            stage / MARKER,
            json.dumps({"schema": _MARKER_SCHEMA, "kind": kind}) + "\n",
        )
        check_output_dir(
            out, overwrite=overwrite, kind=kind, inputs=inputs, workspace=workspace
        )
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        trash = _make_stage(out.parent, f".{out.name}.old-")
        os.replace(out, trash / "old")
        os.replace(stage, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(stage, out)
