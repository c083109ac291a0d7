"""``clusterlens kmeans`` as a library call: a descriptor matrix in, clusters out."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.cluster import KMeans
from clusterlens.io import write_results, write_run

__all__ = ["run_kmeans"]

OUTPUTS = ["model.npz", "model.json", "assignments.parquet", "run.json"]


def run_kmeans(
    X: npt.NDArray[Any],
    out_dir: str | os.PathLike[str],
    *,
    n_clusters: int,
    init: Any = "auto",
    n_init: int | str = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    engine: str = "auto",
    mode: str = "auto",
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
    source: Any = None,
) -> dict[str, Any]:
    """Fit :class:`~clusterlens.cluster.KMeans` on X and write the outputs.

    Writes ``model.npz`` + ``model.json`` (load with ``KMeans.load``),
    ``assignments.parquet`` (``index``, ``cluster``, ``distance``: Euclidean
    to the centre) and ``run.json`` into ``out_dir``; returns the results
    recorded there. ``source`` is X's file, which Dask workers then read
    themselves (the backend is the configured one). ``command`` adds fields
    to ``run.json`` (``{"data": path}``), ``parameters`` to its parameters.
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    km = KMeans(
        n_clusters,
        init=init,
        n_init=n_init,  # type: ignore[arg-type]
        max_iter=max_iter,
        tol=tol,
        engine=engine,
        random_state=random_state,
        verbose=verbose,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        mode=mode,  # type: ignore[arg-type]
    )
    km.fit(X if source is None else source)
    km.save(out / "model")
    write_results(
        out / "assignments.parquet",
        {
            "index": np.arange(X.shape[0], dtype=np.int64),
            "cluster": km.labels_,
            "distance": np.sqrt(km.distances_.astype(np.float64)),
        },
    )
    results = {
        "inertia": km.inertia_,
        "n_iter": km.n_iter_,
        "converged": km.converged_,
        "engine": km.engine_,
        "mode": km.mode_,
        "backend": "dask" if km.engine_.startswith("dask:") else "local",
        "n_samples": X.shape[0],
        "n_features": X.shape[1],
        "dtype": str(X.dtype),
    }
    write_run(
        out,
        schema="clusterlens.kmeans/1",
        command="kmeans",
        invocation=command,
        parameters={
            "n_clusters": n_clusters,
            "init": init if isinstance(init, str) else "array",
            "n_init": n_init,
            "max_iter": max_iter,
            "tol": tol,
            "engine": engine,
            "mode": mode,
            **(parameters or {}),
        },
        seed=random_state,
        timings={
            "total_seconds": time.perf_counter() - t0,
            "iteration_seconds": [h["seconds"] for h in km.history_],
        },
        results=results,
        history=km.history_,
        outputs=OUTPUTS,
    )
    return results
