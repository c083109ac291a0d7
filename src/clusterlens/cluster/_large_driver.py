"""The one large-k Lloyd loop, over the passes of any backend.

:func:`large_k_loop` owns the iteration, the choice of pass (through the
two-level index, or among candidates: see :mod:`clusterlens.cluster._large`),
convergence, ``history``, progress bar, checkpoints and the re-seeding of
empty clusters; a :class:`~clusterlens.cluster._backend.LargeKPasses` runs
the passes where the rows are (this process, or Dask workers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.cluster._backend import LargeKPasses, Session
from clusterlens.cluster._large import CoarseIndex
from clusterlens.cluster._local import LocalSession
from clusterlens.utils._progress import progress

__all__ = [
    "LargeKResult",
    "LargeKState",
    "large_k_lloyd",
    "large_k_loop",
]

logger = logging.getLogger(__name__)


@dataclass
class LargeKState:
    """A local large-k fit after an iteration (see :func:`large_k_lloyd`)."""

    iteration: int
    centers: npt.NDArray[np.float64]  # minus ``shift``, after that iteration's update
    labels: npt.NDArray[np.int32]  # in stored-row order
    top: npt.NDArray[np.int32]  # (n, r) in stored-row order
    perm: npt.NDArray[np.int64]  # stored row i is input row perm[i]
    shift: npt.NDArray[np.float64]
    history: list[dict[str, Any]] = field(default_factory=list)
    converged: bool = False


@dataclass(frozen=True)
class LargeKResult:
    centers: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    distances: npt.NDArray[np.float32]
    inertia: float
    n_iter: int
    converged: bool
    history: list[dict[str, Any]]


def _reseed(
    passes: LargeKPasses, empty: npt.NDArray[np.intp], new_Cs: npt.NDArray[np.float64]
) -> None:
    """Empty clusters move to the rows farthest from their centres.

    Those rows (by decreasing distance, ties by the backend's key) become the
    empty clusters' centres, and the clusters their candidates.
    """
    m = int(empty.size)
    far = passes.farthest(m)
    pick = np.lexsort((far.key, -far.dist))[:m]
    new_Cs[empty[: pick.size]] = far.rows[pick]
    passes.seed(far.where[pick], empty[: pick.size])


def large_k_loop(
    session: Session,
    centers_init: npt.NDArray[np.float64],
    *,
    max_iter: int,
    tol: float,
    n_candidates: int = 3,
    refresh_every: int = 0,
    n_probe: int = 4,
    n_groups: int | None = None,
    first_pass: str = "index",
    seed: int = 0,
    verbose: int = 0,
    desc: str = "k-means (large-k)",
    checkpoint: Any = None,
) -> LargeKResult:
    """Lloyd over candidate centres (see :mod:`clusterlens.cluster._large`).

    Iteration 0, and every ``refresh_every``-th one when > 0, assigns through
    a :class:`CoarseIndex` built on the current centres (``first_pass``:
    "index" compares each point with the centres of its ``n_probe`` nearest
    groups of centres, "exact" with every centre; a refresh also keeps each
    point's current candidates, so it never moves a point farther); the
    others run a candidate pass. ``tol`` is the absolute tolerance on the
    summed squared centre shift. A final candidate pass (no update) makes
    labels and inertia match the returned centres. Empty clusters take the
    rows farthest from their centres, as in the exact driver. With
    ``checkpoint`` (see :func:`~clusterlens.cluster._driver.exact_loop`) the
    state is written after every iteration, or the fit continues from it.
    """
    r = max(1, int(n_candidates))
    if first_pass == "exact":  # one group holding every centre: exact top-r
        n_groups = 1
    history: list[dict[str, Any]] = []
    converged = False
    it = 0
    if checkpoint is not None and checkpoint.resume:
        arrays, meta = checkpoint.load()
        shift = arrays["shift"].copy()
        Cs = arrays["centers"].copy()
        history = list(meta.get("history", []))
        it = int(meta["iteration"])
        converged = bool(meta.get("converged", False))
        passes = session.large(shift)
        checkpoint.check_kind(meta, passes.kind)
        passes.restore(checkpoint.directory, arrays, meta)
    else:
        shift = np.asarray(centers_init, np.float64).mean(axis=0)
        Cs = np.asarray(centers_init, np.float64) - shift
        passes = session.large(shift)
    bar = progress(total=max_iter, desc=desc, verbose=verbose, unit="iter")
    bar.update(it)
    try:
        while not converged and it < max_iter:
            t0 = time.perf_counter()
            if not passes.assigned or (refresh_every > 0 and it % refresh_every == 0):
                index = CoarseIndex(
                    Cs, n_groups=n_groups, n_probe=n_probe, seed=seed + it
                )
                p = passes.index_pass(index, r)
                kind = "index"
            else:
                p = passes.candidate_pass(Cs)
                kind = "candidates"
            sums, counts = p.sums, p.counts
            empty = np.flatnonzero(counts == 0)
            new_Cs = Cs.copy()
            ok = counts > 0
            new_Cs[ok] = sums[ok] / counts[ok, None]
            if empty.size:
                _reseed(passes, empty, new_Cs)
            shift2 = float(((new_Cs - Cs) ** 2).sum())
            Cs = new_Cs
            passes.end_iteration()
            it += 1
            seconds = time.perf_counter() - t0
            history.append(
                {
                    "iteration": it,
                    "inertia": p.inertia,
                    "moved": p.moved,
                    "center_shift": shift2,
                    "empty_repaired": int(empty.size),
                    "seconds": seconds,
                    "pass": kind,
                }
            )
            bar.set_postfix_str(
                f"inertia={p.inertia:.5g} moved={p.moved} {seconds:.2f}s/it",
                refresh=False,
            )
            bar.update(1)
            if verbose >= 2:
                logger.debug("%s iteration %d: %s", desc, it, history[-1])
            converged = (p.moved == 0 and empty.size == 0) or shift2 <= tol
            if checkpoint is not None:
                arrays, meta = passes.checkpoint(checkpoint.directory, it)
                checkpoint.save(
                    passes.kind,
                    {"centers": Cs, **arrays, "shift": shift},
                    {
                        "iteration": it,
                        "history": history,
                        "converged": converged,
                        **meta,
                    },
                )
                passes.checkpoint_written(checkpoint.directory)
        if converged:
            bar.total = it
            bar.refresh()
    finally:
        bar.close()
    # labels and distances of the final centres
    labels, dist, inertia = passes.final(Cs)
    return LargeKResult(
        centers=Cs + shift,
        labels=labels,
        distances=dist,
        inertia=inertia,
        n_iter=it,
        converged=converged,
        history=history,
    )


@dataclass
class _StateCallback:
    """A checkpoint that hands each state to a callback, or resumes from one."""

    on_iteration: Callable[[LargeKState], None] | None
    state: LargeKState | None
    directory: Path = Path()

    @property
    def resume(self) -> bool:
        return self.state is not None

    def check_kind(self, meta: dict[str, Any], kind: str) -> None:
        pass

    def load(self) -> tuple[dict[str, Any], dict[str, Any]]:
        s = self.state
        assert s is not None
        arrays = {
            "centers": s.centers,
            "labels": s.labels,
            "top": s.top,
            "perm": s.perm,
            "shift": s.shift,
        }
        meta = {
            "iteration": s.iteration,
            "history": s.history,
            "converged": s.converged,
        }
        return arrays, meta

    def save(self, kind: str, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        if self.on_iteration is not None:
            self.on_iteration(
                LargeKState(
                    meta["iteration"],
                    arrays["centers"],
                    arrays["labels"],
                    arrays["top"],
                    arrays["perm"],
                    arrays["shift"],
                    meta["history"],
                    meta["converged"],
                )
            )


def large_k_lloyd(
    X: npt.NDArray[Any],
    centers_init: npt.NDArray[np.float64],
    *,
    max_iter: int,
    tol: float,
    n_candidates: int = 3,
    refresh_every: int = 0,
    n_probe: int = 4,
    n_groups: int | None = None,
    first_pass: str = "index",
    seed: int = 0,
    verbose: int = 0,
    desc: str = "k-means (large-k)",
    resume: LargeKState | None = None,
    on_iteration: Callable[[LargeKState], None] | None = None,
) -> LargeKResult:
    """:func:`large_k_loop` over X in this process.

    ``on_iteration`` is called with the :class:`LargeKState` after every
    iteration; ``resume`` continues from one.
    """
    ckpt = None
    if resume is not None or on_iteration is not None:
        ckpt = _StateCallback(on_iteration, resume)
    return large_k_loop(
        LocalSession(X),
        centers_init,
        max_iter=max_iter,
        tol=tol,
        n_candidates=n_candidates,
        refresh_every=refresh_every,
        n_probe=n_probe,
        n_groups=n_groups,
        first_pass=first_pass,
        seed=seed,
        verbose=verbose,
        desc=desc,
        checkpoint=ckpt,
    )
