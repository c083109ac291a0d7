"""Checkpoint files of a k-means fit: a JSON naming its arrays, crash-safe.

What a checkpoint holds is the drivers' business
(:mod:`clusterlens.cluster._driver`, :mod:`clusterlens.cluster._large_driver`
and the backends' own arrays); here is how it is written and read back:
whole, unedited, and for the same data and parameters.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._safe import invalid_file, read_json
from clusterlens.utils._fs import atomic_write_text

__all__ = ["Checkpoint", "fingerprint", "load_arrays", "save_arrays"]

FORMAT = "clusterlens.lloyd-checkpoint"
# 2: checkpoint.json carries ``meta_sha256``, the digest of its own content.
FORMAT_VERSION = 2
_KINDS = ("exact", "large", "dask-exact", "dask-large")
_ARRAYS_NAME = re.compile(r"checkpoint-\d{6,}\.npz")
_PART_NAME = re.compile(r"dask-parts-\d{6,}/part-\d{5,}\.npz")
_FIX = "start the fit again without --resume (or in a new --checkpoint folder)"


@dataclass(frozen=True)
class Checkpoint:
    """A fit's checkpoint folder, its fingerprint, and whether to resume from it.

    The drivers call :meth:`load` (then :meth:`check_kind`) to resume and
    :meth:`save` after every iteration.
    """

    directory: Path
    fingerprint: str
    resume: bool

    def load(self) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
        """The arrays and JSON fields of the checkpoint (see :func:`load_arrays`)."""
        return load_arrays(self.directory, self.fingerprint)

    def check_kind(self, meta: dict[str, Any], kind: str) -> None:
        """Refuse a checkpoint of another mode or backend."""
        found = meta.get("kind", "exact")
        if found != kind:
            raise DataValidationError(
                f"The checkpoint in {self.directory} is of a {found!r} fit, not "
                f"{kind!r}: resume with the same backend and mode, or start again."
            )

    def save(self, kind: str, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """Write ``arrays`` and ``meta`` (with ``iteration``) as a ``kind`` fit."""
        save_arrays(self.directory, arrays, {"kind": kind, **meta}, self.fingerprint)


def fingerprint(X: npt.NDArray[Any], params: dict[str, Any]) -> str:
    """A short hash of X (shape, dtype, up to 1,024 sampled rows) and the parameters.

    A checkpoint is only resumed on data and parameters with the same
    fingerprint, so a run never continues from another run's state.
    """
    h = hashlib.sha256()
    h.update(json.dumps([list(X.shape), str(X.dtype), params], sort_keys=True).encode())
    rows = np.unique(
        np.linspace(0, X.shape[0] - 1, min(1024, X.shape[0])).astype(np.int64)
    )
    h.update(np.ascontiguousarray(X[rows]).tobytes())
    return h.hexdigest()[:32]


def save_arrays(
    directory: str | os.PathLike[str],
    arrays: dict[str, npt.NDArray[Any]],
    meta: dict[str, Any],
    fp: str,
) -> None:
    """Write ``checkpoint-NNNNNN.npz`` and ``checkpoint.json``, crash-safe.

    ``meta`` must hold ``iteration``; the JSON also records the format, the
    fingerprint, the array file's name and its SHA-256.
    """
    d = Path(directory)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": fp,
        **meta,
    }
    # New arrays under a new name first, then the JSON that names them, then
    # the old arrays go: a crash at any point leaves a JSON whose arrays exist.
    # The arrays stream to a temporary file (no copy of them in memory).
    name = f"checkpoint-{int(meta['iteration']):06d}.npz"
    tmp = d / f".{name}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    os.replace(tmp, d / name)
    meta["arrays"] = name
    meta["npz_sha256"] = h.hexdigest()
    meta = json.loads(json.dumps(meta, default=float))  # plain JSON types only
    meta["meta_sha256"] = _meta_digest(meta)
    atomic_write_text(d / "checkpoint.json", json.dumps(meta))
    for old in d.glob("checkpoint-*.npz"):  # only once the JSON names the new one
        if old.name != name:
            old.unlink(missing_ok=True)


def _meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the checkpoint JSON's content, less the digest itself."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_number(v: Any) -> TypeGuard[float]:
    """A finite JSON number (not a bool)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _schema_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's JSON, or None (see :func:`save_arrays`)."""
    it = meta.get("iteration")
    if not _is_int(it) or it < 0:
        return f"'iteration' is {it!r}, expected an integer >= 0"
    kind = meta.get("kind", "exact")
    if kind not in _KINDS:
        return f"'kind' is {kind!r}, expected one of {', '.join(_KINDS)}"
    if not isinstance(meta.get("fingerprint"), str):
        return "'fingerprint' is missing"
    name = meta.get("arrays")
    if not isinstance(name, str) or not _ARRAYS_NAME.fullmatch(name):
        return f"'arrays' is {name!r}, expected a name like checkpoint-000001.npz"
    if not isinstance(meta.get("npz_sha256"), str):
        return "'npz_sha256' is missing"
    history = meta.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return "'history' is not a list of per-iteration objects"
    # One entry per iteration done, numbered 1..iteration.
    if len(history) != it:
        return f"'iteration' is {it} but 'history' holds {len(history)} iterations"
    wrong = next(
        (i for i, h in enumerate(history) if h.get("iteration") != i + 1), None
    )
    if wrong is not None:
        return (
            f"history entry {wrong} is iteration {history[wrong].get('iteration')!r}, "
            f"expected {wrong + 1}"
        )
    if not isinstance(meta.get("converged", False), bool):
        return f"'converged' is {meta.get('converged')!r}, expected true or false"
    if kind == "dask-exact" and not _is_str_list(meta.get("digests", [])):
        return "'digests' is not a list of strings"
    if kind == "dask-large":
        parts = meta.get("parts")
        if not isinstance(parts, list) or not all(
            _is_str_list(p) and len(p) == 2 and _PART_NAME.fullmatch(p[0])
            for p in parts
        ):
            return "'parts' is not a list of [dask-parts-N/part-M.npz, digest]"
    if kind == "exact":
        best, best_it = meta.get("best_inertia"), meta.get("best_it")
        if not _is_number(best) or best < 0:
            return f"'best_inertia' is {best!r}, expected a finite number >= 0"
        if not _is_int(best_it) or not 0 <= best_it <= max(it - 1, 0):
            return (
                f"'best_it' is {best_it!r}, expected an integer in "
                f"[0, {max(it - 1, 0)}]"
            )
    return None


def load_arrays(
    directory: str | os.PathLike[str], fp: str
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """Read a checkpoint, checking it is whole and belongs to this data and fit.

    The JSON is checked against its schema and, from format version 2 on,
    against its own digest; the arrays against theirs.

    Raises
    ------
    DataValidationError
        If ``directory`` holds no checkpoint, or one that is damaged, edited,
        or written for other data or parameters.
    """

    d = Path(directory)
    json_path = d / "checkpoint.json"
    if not d.is_dir() or not json_path.is_file():
        raise DataValidationError(
            f"No readable checkpoint in {d} (no checkpoint.json"
            f"{'' if d.is_dir() else '; the folder does not exist'}). Point "
            "--resume at the folder a previous run wrote its checkpoint to."
        )
    meta = read_json(json_path, what="k-means checkpoint", fix=_FIX)
    if meta.get("format") != FORMAT:
        raise DataValidationError(
            f"{json_path} is not a k-means checkpoint (format "
            f"{meta.get('format')!r}); {_FIX}."
        )
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        problem: str | None = f"'format_version' is {version!r}"
    elif version > FORMAT_VERSION:
        raise DataValidationError(
            f"{json_path} was written by a newer clusterlens (format version "
            f"{version} > {FORMAT_VERSION}). Upgrade clusterlens, or {_FIX}."
        )
    elif version >= 2 and meta.get("meta_sha256") != _meta_digest(meta):
        problem = "its content does not match its digest: it was edited or damaged"
    else:
        problem = _schema_problem(meta)
    if problem is not None:
        raise DataValidationError(
            invalid_file(json_path, "k-means checkpoint", problem, _FIX)
        )
    npz_path = d / meta["arrays"]
    if not npz_path.is_file():
        raise DataValidationError(
            invalid_file(
                json_path,
                "k-means checkpoint",
                f"its arrays file {meta['arrays']} is missing",
                _FIX,
            )
        )
    data = npz_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["npz_sha256"]:
        raise DataValidationError(
            f"The checkpoint in {d} is corrupt (its arrays do not match their digest). "
            "Start the fit again without resuming."
        )
    if meta["fingerprint"] != fp:
        raise DataValidationError(
            f"The checkpoint in {d} was written for other data or parameters "
            "(fingerprint mismatch). Resume with the same data, k, init, seed and "
            "engine, or start again."
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise DataValidationError(
            invalid_file(npz_path, "k-means checkpoint", str(e), _FIX)
        ) from e
    return arrays, meta
