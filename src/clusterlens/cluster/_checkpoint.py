"""Checkpoints of a Lloyd fit: everything needed to continue it bit for bit."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.utils._fs import atomic_write_text

__all__ = [
    "LloydState",
    "fingerprint",
    "load_arrays",
    "load_large_state",
    "load_state",
    "save_arrays",
    "save_large_state",
    "save_state",
]

FORMAT = "clusterlens.lloyd-checkpoint"
FORMAT_VERSION = 1


@dataclass
class LloydState:
    """The state of :func:`~clusterlens.cluster._driver.lloyd` after an iteration."""

    iteration: int  # iterations done
    centers: npt.NDArray[np.float64]  # after the update of that iteration
    labels: npt.NDArray[np.int64]  # labels of that iteration (the next one's prev)
    sums: npt.NDArray[np.float64]  # running per-cluster sums (incremental engines)
    weights: npt.NDArray[np.float64]
    origin: npt.NDArray[np.float64]
    best_inertia: float
    best_centers: npt.NDArray[np.float64]
    best_it: int
    history: list[dict[str, Any]] = field(default_factory=list)
    converged: bool = False  # the fit had stopped: resuming only re-assigns


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
    atomic_write_text(d / "checkpoint.json", json.dumps(meta, default=float))
    for old in d.glob("checkpoint-*.npz"):  # only once the JSON names the new one
        if old.name != name:
            old.unlink(missing_ok=True)


def load_arrays(
    directory: str | os.PathLike[str], fp: str
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """Read a checkpoint, checking it is whole and belongs to this data and fit."""
    d = Path(directory)
    try:
        meta = json.loads((d / "checkpoint.json").read_text())
        data = (d / str(meta.get("arrays", "checkpoint.npz"))).read_bytes()
    except (OSError, ValueError) as e:
        raise DataValidationError(
            f"No readable checkpoint in {d} ({e}). Point --resume at the folder a "
            "previous run wrote its checkpoint to."
        ) from e
    if (
        meta.get("format") != FORMAT
        or int(meta.get("format_version", 0)) > FORMAT_VERSION
    ):
        raise DataValidationError(
            f"{d / 'checkpoint.json'} is not a checkpoint we read."
        )
    if hashlib.sha256(data).hexdigest() != meta.get("npz_sha256"):
        raise DataValidationError(
            f"The checkpoint in {d} is corrupt (its arrays do not match their digest). "
            "Start the fit again without resuming."
        )
    if meta.get("fingerprint") != fp:
        raise DataValidationError(
            f"The checkpoint in {d} was written for other data or parameters "
            "(fingerprint mismatch). Resume with the same data, k, init, seed and "
            "engine, or start again."
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataValidationError(f"The checkpoint in {d} is unreadable ({e}).") from e
    return arrays, meta


def save_state(directory: str | os.PathLike[str], state: LloydState, fp: str) -> None:
    """Write the state of an exact Lloyd fit (see :func:`save_arrays`)."""
    save_arrays(
        directory,
        {
            "centers": state.centers,
            "labels": state.labels,
            "sums": state.sums,
            "weights": state.weights,
            "origin": state.origin,
            "best_centers": state.best_centers,
        },
        {
            "kind": "exact",
            "iteration": state.iteration,
            "best_inertia": state.best_inertia,
            "best_it": state.best_it,
            "history": state.history,
            "converged": state.converged,
        },
        fp,
    )


def load_state(directory: str | os.PathLike[str], fp: str) -> LloydState:
    """Read the state of an exact Lloyd fit (see :func:`load_arrays`)."""
    arrays, meta = load_arrays(directory, fp)
    return LloydState(
        iteration=int(meta["iteration"]),
        centers=arrays["centers"],
        labels=arrays["labels"],
        sums=arrays["sums"],
        weights=arrays["weights"],
        origin=arrays["origin"],
        best_inertia=float(meta["best_inertia"]),
        best_centers=arrays["best_centers"],
        best_it=int(meta["best_it"]),
        history=list(meta.get("history", [])),
        converged=bool(meta.get("converged", False)),
    )


def save_large_state(directory: str | os.PathLike[str], state: Any, fp: str) -> None:
    """Write the state of a large-k fit (a ``LargeKState``)."""
    save_arrays(
        directory,
        {
            "centers": state.centers,
            "labels": state.labels,
            "top": state.top,
            "perm": state.perm,
            "shift": state.shift,
        },
        {
            "kind": "large",
            "iteration": state.iteration,
            "history": state.history,
            "converged": state.converged,
        },
        fp,
    )


def load_large_state(directory: str | os.PathLike[str], fp: str) -> Any:
    """Read the state of a large-k fit."""
    from clusterlens.cluster._large import LargeKState

    arrays, meta = load_arrays(directory, fp)
    return LargeKState(
        iteration=int(meta["iteration"]),
        centers=arrays["centers"],
        labels=arrays["labels"],
        top=arrays["top"],
        perm=arrays["perm"],
        shift=arrays["shift"],
        history=list(meta.get("history", [])),
        converged=bool(meta.get("converged", False)),
    )
