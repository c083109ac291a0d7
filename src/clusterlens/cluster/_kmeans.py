"""KMeans estimator and its functional twin ``kmeans`` over any engine."""

from __future__ import annotations

import logging
import numbers
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.utils.validation import validate_data

from clusterlens.cluster._backend import Backend, Session, get_backend
from clusterlens.cluster._driver import assign_chunked, exact_loop, warn_few_clusters
from clusterlens.cluster._engines import Engine, get_engine
from clusterlens.cluster._init import kmeans_plusplus, random_rows
from clusterlens.cluster._large_driver import large_k_loop
from clusterlens.exceptions import (
    DataValidationError,
    InvalidParameterError,
    NotFittedError,
)
from clusterlens.io import as_matrix
from clusterlens.io._checkpoint import Checkpoint, fingerprint
from clusterlens.typing import ArrayLike, SeedLike
from clusterlens.utils.validation import (
    check_int,
    check_options,
    check_random_state,
    check_real,
)

__all__ = ["KMeans", "KMeansResult", "kmeans"]

logger = logging.getLogger(__name__)

_ENGINE_NAMES = ("auto", "numpy", "faiss")
_MODES = ("auto", "exact", "large")
#: ``mode="auto"`` runs the large-k mode from this many clusters on. Its gain
#: grows with k: ~1.8x the exact fit at k = 4,096 (100,000 x 128, same SSE),
#: 5.4x at k = 8,192 (real SIFT, +0.3 % SSE), 9.5x faiss flat at k = 16,384
#: (1 M x 128, same SSE); see ``benchmarks/vocab.py``.
LARGE_K_THRESHOLD = 4096
# Kept as they are and converted a chunk at a time (float32 for small ints).
_INPUT_DTYPES = [
    np.float64,
    np.float32,
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    np.int32,
    np.uint32,
    np.int64,
]


@dataclass(frozen=True)
class KMeansResult:
    """Result of :func:`kmeans`.

    Attributes
    ----------
    centers : ndarray of shape (n_clusters, n_features)
    labels : ndarray of shape (n_samples,), int64
    inertia : float
        Sum of (weighted) squared distances of points to their centre.
    n_iter : int
        Iterations of the best run.
    history : list of dict
        Per iteration of the best run: ``iteration``, ``inertia``, ``moved``,
        ``center_shift``, ``empty_repaired``, ``seconds``.
    engine : str
        The engine that ran ("large-k" in the large-k mode).
    converged : bool
        Whether the best run stopped before ``max_iter``.
    init_seconds, fit_seconds : float
    distances : ndarray of shape (n_samples,)
        Squared distance of each point to its centre.
    mode : {"exact", "large"}
        Which Lloyd ran (see :func:`kmeans`'s ``mode``).
    """

    centers: npt.NDArray[Any]
    labels: npt.NDArray[np.int64]
    inertia: float
    n_iter: int
    history: list[dict[str, Any]]
    engine: str
    converged: bool
    init_seconds: float = 0.0
    fit_seconds: float = 0.0
    distances: npt.NDArray[Any] = field(default_factory=lambda: np.zeros(0), repr=False)
    mode: str = "exact"


def _check_sample_weight(
    sample_weight: ArrayLike | None, n: int
) -> npt.NDArray[np.float64] | None:
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        return np.full(n, float(sample_weight))  # type: ignore[arg-type]
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise DataValidationError(
            f"sample_weight must be 1-D of length n_samples={n}; got shape {w.shape}."
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise DataValidationError(
            "sample_weight must be finite and non-negative; "
            f"{int((~np.isfinite(w) | (w < 0)).sum())} entries are not."
        )
    if w.sum() <= 0:
        raise DataValidationError(
            "sample_weight sums to zero: at least one must be > 0."
        )
    return w


def _resolve_init(
    init: Any, n_clusters: int, n_features: int, owner: str
) -> str | npt.NDArray[np.float64]:
    if isinstance(init, str):
        return check_options(init, "init", owner, ("auto", "k-means++", "random"))
    if callable(init):
        raise InvalidParameterError(
            f"The 'init' parameter of {owner} must be 'auto', 'k-means++', 'random' "
            "or an array of shape (n_clusters, n_features). Got a callable instead."
        )
    centers = np.asarray(init, dtype=np.float64)
    if centers.shape != (n_clusters, n_features):
        raise DataValidationError(
            f"init has shape {centers.shape}; it must be (n_clusters, n_features) = "
            f"({n_clusters}, {n_features})."
        )
    if not np.isfinite(centers).all():
        raise DataValidationError("init contains NaN or infinity.")
    return centers


def kmeans(
    X: Any,
    n_clusters: int,
    *,
    init: Literal["auto", "k-means++", "random"] | ArrayLike = "auto",
    n_init: int | Literal["auto"] = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    sample_weight: ArrayLike | None = None,
    engine: str | Engine = "auto",
    init_size: int | None = None,
    random_state: SeedLike = None,
    verbose: int = 0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    mode: Literal["auto", "exact", "large"] = "auto",
    n_candidates: int = 3,
    refresh_every: int = 4,
    backend: Literal["local", "dask"] | Backend | None = None,
) -> KMeansResult:
    """k-means (Lloyd) over an array, a memmap or a descriptor file.

    Parameters
    ----------
    X : {array-like, memmap, path} of shape (n_samples, n_features)
        float32, float64 or small-integer (uint8 SIFT) data; a ``.npy``,
        ``.fvecs``, ``.bvecs``, ``.ivecs`` or Oxford ``.bin`` path is memory
        mapped. X is read a chunk at a time and never copied whole.
    n_clusters : int
        Number of clusters, 1 <= n_clusters <= n_samples.
    init : {"auto", "k-means++", "random"} or array of shape (n_clusters, n_features)
        "k-means++" seeds greedily far apart (on ``init_size`` rows);
        "random" picks distinct rows at random; an array is used as it is.
        "auto" is "k-means++" in the exact mode and "random" in the large-k
        mode (k-means++ costs O(n k d) there, more than the whole fit).
    n_init : int or "auto", default="auto"
        Runs with different seeds, the lowest inertia kept. "auto" is 1 for
        "k-means++", an array or the large-k mode, and 10 for "random"
        (scikit-learn's rule).
    max_iter : int, default=300
    tol : float, default=1e-4
        Relative tolerance: stop when the summed squared centre shift is at
        most ``tol`` times the mean per-feature variance of X.
    sample_weight : array-like of shape (n_samples,), default=None
    engine : {"auto", "numpy", "faiss"} or Engine, default="auto"
        "numpy" is the chunked-GEMM exact engine (fastest here); "faiss"
        uses ``faiss.knn``; "auto" picks the best that supports the input.
    init_size : int, default=None
        Rows k-means++ runs on; ``max(20 * n_clusters, 10_000)`` when None.
    random_state : int, Generator or None, default=None
    verbose : int, default=0
    checkpoint_dir : path, default=None
        Write a checkpoint there after every iteration (one run only: an int
        seed and ``n_init=1``). A crash or Ctrl-C leaves a loadable one.
    resume : bool, default=False
        Continue from the checkpoint in ``checkpoint_dir``; it must come from
        the same data and parameters (checked by a fingerprint). The result
        equals that of an uninterrupted fit.
    mode : {"auto", "exact", "large"}, default="auto"
        "exact" compares every point with every centre (``engine``);
        "large" compares each point with a few candidate centres (see
        ``clusterlens.cluster._large``): 5-10x faster from k ~ 8,000 on, with
        an SSE within about 1 % of exact Lloyd from the same start
        (measured: ``benchmarks/vocab.py``).
        "auto" is "large" from ``n_clusters >= LARGE_K_THRESHOLD`` (4,096) on.
        The large-k mode takes no ``sample_weight`` and its own engine.
    n_candidates : int, default=3
        Large-k mode: centres kept per point between passes. More is slower
        and closer to exact Lloyd.
    refresh_every : int, default=4
        Large-k mode: every this many iterations, search new candidates for
        every point through the two-level index (keeping its current ones);
        0: only in the first pass. Smaller is closer to exact Lloyd and
        slower; 0 is fastest (measured in ``benchmarks/vocab.py``).
    backend : {"local", "dask"} or Backend, default=None
        "local" runs in this process; "dask" shards X over a Dask cluster
        (the configured ``scheduler``, else the current client, else a
        ``LocalCluster`` started and closed here; see
        :func:`clusterlens.distributed.dask_kmeans` for the options) with the
        same result: labels equal, inertia within float rounding. None: the
        configured default (:func:`clusterlens.config_context`). A
        :class:`~clusterlens.cluster.Backend` object runs the passes where it
        says (``clusterlens.distributed.DaskBackend(client=...)``).

    Returns
    -------
    KMeansResult

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]], float)
    >>> res = kmeans(X, 2, random_state=0)
    >>> sorted(res.centers[:, 0].tolist())
    [1.0, 10.0]
    >>> float(res.inertia)
    16.0
    """
    return _kmeans(
        X,
        n_clusters,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        sample_weight=sample_weight,
        engine=engine,
        init_size=init_size,
        random_state=random_state,
        verbose=verbose,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        mode=mode,
        n_candidates=n_candidates,
        refresh_every=refresh_every,
        backend=backend,
    )


def _kmeans(
    X: Any,
    n_clusters: int,
    *,
    init: Any = "auto",
    n_init: int | Literal["auto"] = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    sample_weight: ArrayLike | None = None,
    engine: str | Engine = "auto",
    init_size: int | None = None,
    random_state: SeedLike = None,
    verbose: int = 0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    mode: str = "auto",
    n_candidates: int = 3,
    refresh_every: int = 4,
    backend: str | Backend | None = None,
) -> KMeansResult:
    """:func:`kmeans` (validates, then runs the ``n_init`` runs)."""
    owner = "kmeans"
    bk = get_backend(backend)
    source = X
    X = as_matrix(X)
    n, d = X.shape
    n_clusters = check_int(n_clusters, "n_clusters", owner, low=1)  # type: ignore[assignment]
    if n_clusters > n:
        raise DataValidationError(
            f"n_samples={n} should be >= n_clusters={n_clusters}. "
            "Use fewer clusters or more data."
        )
    max_iter = check_int(max_iter, "max_iter", owner, low=1)  # type: ignore[assignment]
    tol = check_real(tol, "tol", owner, low=0.0)
    verbose = check_int(verbose, "verbose", owner, low=0)  # type: ignore[assignment]
    init_size = check_int(init_size, "init_size", owner, low=1, allow_none=True)
    init_r = _resolve_init(init, n_clusters, d, owner)
    if n_init == "auto":
        n_runs = 10 if isinstance(init_r, str) and init_r == "random" else 1
    else:
        n_runs = check_int(n_init, "n_init", owner, low=1)  # type: ignore[assignment]
        if not isinstance(init_r, str) and n_runs != 1:
            warnings.warn(
                f"Explicit initial center position passed: performing only one init "
                f"in {owner} instead of n_init={n_runs}.",
                RuntimeWarning,
                stacklevel=2,
            )
            n_runs = 1
    if isinstance(engine, str):
        check_options(engine, "engine", owner, _ENGINE_NAMES)
    mode = check_options(mode, "mode", owner, _MODES)  # type: ignore[assignment]
    n_candidates = check_int(n_candidates, "n_candidates", owner, low=1)  # type: ignore[assignment]
    refresh_every = check_int(refresh_every, "refresh_every", owner, low=0)  # type: ignore[assignment]
    w = _check_sample_weight(sample_weight, n)
    if mode == "auto":
        mode = (
            "large"
            if n_clusters >= LARGE_K_THRESHOLD
            and engine == "auto"
            and w is None
            and n_clusters > 1
            else "exact"
        )
    if mode == "large" and (w is not None or engine != "auto"):
        raise InvalidParameterError(
            "mode='large' runs its own candidate search without sample weights: "
            "use engine='auto' and no sample_weight, or mode='exact'."
        )
    if isinstance(init_r, str) and init_r == "auto":
        init_r = "random" if mode == "large" else "k-means++"
    if n_init == "auto" and mode == "large":
        n_runs = 1
    eng = get_engine(engine, {"dtype": X.dtype, "metric": "sqeuclidean"})
    rng = check_random_state(random_state)
    bk.check(sample_weight=w, engine=engine)

    ckpt = None
    if checkpoint_dir is not None or resume:
        if checkpoint_dir is None:
            raise InvalidParameterError("resume=True needs checkpoint_dir.")
        if n_runs != 1 or isinstance(random_state, np.random.Generator):
            raise InvalidParameterError(
                "Checkpoints cover one run: use n_init=1 and an int random_state."
            )
        folder = Path(checkpoint_dir)
        if not resume:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():  # resuming never creates the folder
            what = "it is a file, not a folder" if folder.exists() else "no such folder"
            raise DataValidationError(
                f"No readable checkpoint in {folder} ({what}). Resume from the folder "
                "a previous run wrote its checkpoint to."
            )
        fp = fingerprint(
            X,
            {
                "n_clusters": n_clusters,
                "init": init_r if isinstance(init_r, str) else "array",
                "seed": random_state,
                "engine": eng.name,
                "tol": tol,
                "weighted": w is not None,
                **bk.fingerprint(),
                **(
                    {
                        "mode": mode,
                        "n_candidates": n_candidates,
                        "refresh_every": refresh_every,
                    }
                    if mode == "large"
                    else {}
                ),
            },
        )
        ckpt = Checkpoint(folder, fp, bool(resume))

    with bk.session(source, X) as session:
        res = _runs(
            X,
            n_clusters,
            session=session,
            checkpoint=ckpt,
            seeds=rng.integers(0, 2**63 - 1, size=n_runs),
            init_r=init_r,
            init_size=init_size,
            w=w,
            eng=eng,
            mode=mode,
            max_iter=max_iter,
            tol=tol,
            verbose=verbose,
            n_candidates=n_candidates,
            refresh_every=refresh_every,
            where="" if bk.name == "local" else bk.name,
        )
    return res


def _runs(
    X: Any,
    n_clusters: int,
    *,
    session: Session,
    checkpoint: Checkpoint | None,
    seeds: npt.NDArray[np.int64],
    init_r: Any,
    init_size: int | None,
    w: npt.NDArray[np.float64] | None,
    eng: Engine,
    mode: str,
    max_iter: int,
    tol: float,
    verbose: int,
    n_candidates: int,
    refresh_every: int,
    where: str,
) -> KMeansResult:
    """The ``n_init`` runs of a validated fit, on a backend's ``session``."""
    n_runs = len(seeds)
    t0 = time.perf_counter()
    mean_var = session.mean_var()  # also rejects NaN/inf, naming the row
    tol_abs = tol * mean_var
    best = None
    init_seconds = 0.0
    for run, seed in enumerate(seeds):
        ti = time.perf_counter()
        if checkpoint is not None and checkpoint.resume:
            centers0 = np.zeros((n_clusters, X.shape[1]))  # the checkpoint's are used
        elif isinstance(init_r, str) and init_r == "k-means++":
            size = init_size if init_size is not None else max(20 * n_clusters, 10_000)
            centers0, _ = kmeans_plusplus(
                X,
                n_clusters,
                sample_weight=w,
                sample_size=size,
                random_state=int(seed),
                engine=eng,
            )
        elif isinstance(init_r, str):
            centers0 = random_rows(
                X, n_clusters, sample_weight=w, random_state=int(seed)
            )
        else:
            centers0 = init_r
        init_seconds += time.perf_counter() - ti
        desc = "k-means" if n_runs == 1 else f"k-means run {run + 1}/{n_runs}"
        res: Any
        if mode == "large":
            res = large_k_loop(
                session,
                centers0,
                max_iter=max_iter,
                tol=tol_abs,
                n_candidates=n_candidates,
                refresh_every=refresh_every,
                seed=int(seed) % (2**31),
                verbose=verbose,
                desc=desc + (f" (large-k, {where})" if where else " (large-k)"),
                checkpoint=checkpoint,
            )
        else:
            res = exact_loop(
                session.exact(eng, w, n_clusters),
                centers0,
                engine=eng,
                max_iter=max_iter,
                tol=tol_abs,
                verbose=verbose,
                desc=desc + (f" ({where})" if where else ""),
                leave=n_runs == 1 or run == n_runs - 1,
                checkpoint=checkpoint,
            )
        if verbose:
            logger.info(
                "%s: inertia %.6g after %d iterations", desc, res.inertia, res.n_iter
            )
        if best is None or res.inertia < best.inertia:
            best = res
    assert best is not None
    warn_few_clusters(best.labels, n_clusters)
    out_dtype = (
        eng.working_dtype(X.dtype)
        if mode == "exact"
        else np.dtype(np.float64 if X.dtype == np.float64 else np.float32)
    )
    return KMeansResult(
        centers=best.centers.astype(out_dtype),
        labels=best.labels,
        inertia=best.inertia,
        n_iter=best.n_iter,
        history=best.history,
        engine=(f"{where}:" if where else "")
        + (eng.name if mode == "exact" else "large-k"),
        converged=best.converged,
        init_seconds=init_seconds,
        fit_seconds=time.perf_counter() - t0,
        distances=best.distances,
        mode=mode,
    )


class KMeans(
    ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator
):
    """k-means clustering: exact chunked Lloyd, or a large-k mode for big k.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {"auto", "k-means++", "random"} or array of shape \
(n_clusters, n_features), default="auto"
        "k-means++" seeds greedily far apart; "random" picks distinct rows;
        an array gives the initial centres; "auto" is "k-means++" in the
        exact mode and "random" in the large-k mode.
    n_init : int or "auto", default="auto"
        Runs with different seeds, best inertia kept ("auto": 1 for
        "k-means++" or an array, 10 for "random").
    max_iter : int, default=300
        Maximum Lloyd iterations per run.
    tol : float, default=1e-4
        Relative tolerance on the centre shift (times the mean feature
        variance), as in scikit-learn.
    engine : {"auto", "numpy", "faiss"} or Engine, default="auto"
        Who computes assignments: "numpy" (chunked GEMM), "faiss"
        (``faiss.knn``), or "auto" (the fastest that supports the input).
    init_size : int, default=None
        Rows that k-means++ seeds on (``max(20 * n_clusters, 10_000)``).
    random_state : int, Generator or None, default=None
        Seed for every random choice; the same seed gives the same result.
    verbose : int, default=0
        1 shows a progress bar; 2 also logs every iteration.
    checkpoint_dir : path, default=None
        Write a checkpoint there after every iteration (see :func:`kmeans`).
    resume : bool, default=False
        Continue from the checkpoint in ``checkpoint_dir``.
    mode : {"auto", "exact", "large"}, default="auto"
        "large" compares each point with a few candidate centres instead of
        all k (see :func:`kmeans`); "auto" picks it from k = 4,096 on.
    n_candidates : int, default=3
        Large-k mode: candidate centres kept per point.
    refresh_every : int, default=4
        Large-k mode: search new candidates through the two-level index
        every this many iterations (0: only in the first pass).
    backend : {"local", "dask"} or Backend, default=None
        Where the fit runs: this process, or X sharded over a Dask cluster
        (the same result; see :func:`kmeans`). None: the configured default
        (``clusterlens.config_context(backend=...)``). A file path or a
        ``.npy`` memmap is read by the workers themselves.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,), int64
    inertia_ : float
    n_iter_ : int
    history_ : list of dict
        Per-iteration ``inertia``, ``moved``, ``center_shift``,
        ``empty_repaired`` and ``seconds``.
    engine_ : str
        The engine that ran.
    mode_ : {"exact", "large"}
        The mode that ran.
    n_features_in_ : int

    See Also
    --------
    kmeans : The functional twin, returning a :class:`KMeansResult`.

    Notes
    -----
    Each iteration costs ``2 n k d`` flops in one GEMM per chunk (see
    :class:`~clusterlens.cluster.NumpyEngine`) plus O(n d) for the centre
    update; memory is the chunk buffers, not a copy of X.

    Examples
    --------
    >>> import numpy as np
    >>> from clusterlens.cluster import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]], float)
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> km.predict([[0, 0], [12, 3]]).tolist() == [km.labels_[0], km.labels_[3]]
    True
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "auto",
        n_init: int | Literal["auto"] = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        engine: str | Engine = "auto",
        init_size: int | None = None,
        random_state: SeedLike = None,
        verbose: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
        mode: Literal["auto", "exact", "large"] = "auto",
        n_candidates: int = 3,
        refresh_every: int = 4,
        backend: Literal["local", "dask"] | Backend | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.engine = engine
        self.init_size = init_size
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.mode = mode
        self.n_candidates = n_candidates
        self.refresh_every = refresh_every
        self.backend = backend

    # -- helpers -----------------------------------------------------------
    def _check_X(self, X: Any, *, reset: bool) -> npt.NDArray[Any]:
        if isinstance(X, str | os.PathLike):
            Xa = as_matrix(X)
            if reset:
                self.n_features_in_ = Xa.shape[1]
            elif Xa.shape[1] != self.n_features_in_:
                raise DataValidationError(
                    f"X has {Xa.shape[1]} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
            return Xa
        Xa = validate_data(
            self,
            X,
            reset=reset,
            dtype=_INPUT_DTYPES,
            accept_sparse=False,
            ensure_all_finite=False,
            ensure_min_samples=1,
        )
        return Xa

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' "
                "with appropriate arguments before using this estimator."
            )

    @property
    def _n_features_out(self) -> int:
        return int(self.cluster_centers_.shape[0])

    # -- estimator API -----------------------------------------------------
    def fit(
        self, X: Any, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> KMeans:
        """Compute k-means clustering.

        Parameters
        ----------
        X : {array-like, memmap, path} of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : KMeans
        """
        Xa = self._check_X(X, reset=True)
        if (
            isinstance(self.n_clusters, numbers.Integral)
            and self.n_clusters > Xa.shape[0]
        ):
            raise DataValidationError(
                f"n_samples={Xa.shape[0]} should be >= n_clusters={self.n_clusters}."
            )
        # a file or a .npy memmap goes as it is: Dask workers open it themselves
        source = X if isinstance(X, str | os.PathLike | np.memmap) else Xa
        res = kmeans(
            source,
            self.n_clusters,
            init=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            sample_weight=sample_weight,
            engine=self.engine,
            init_size=self.init_size,
            random_state=self.random_state,
            verbose=self.verbose,
            checkpoint_dir=self.checkpoint_dir,
            resume=self.resume,
            mode=self.mode,
            n_candidates=self.n_candidates,
            refresh_every=self.refresh_every,
            backend=self.backend,
        )
        self.cluster_centers_ = res.centers
        self.labels_ = res.labels
        self.inertia_ = res.inertia
        self.n_iter_ = res.n_iter
        self.history_ = res.history
        self.engine_ = res.engine
        self.mode_ = res.mode
        self.converged_ = res.converged
        self.distances_ = res.distances
        return self

    def _engine_obj(self) -> Engine:
        name = getattr(self, "engine_", "numpy").rpartition(":")[2]  # "dask:numpy"
        if name == "large-k":  # predict exactly with the GEMM engine
            name = "numpy"
        return get_engine(self.engine if isinstance(self.engine, Engine) else name)

    def predict(self, X: Any) -> npt.NDArray[np.int64]:
        """Index of the nearest centre of each row of X.

        Parameters
        ----------
        X : {array-like, memmap, path} of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        self._check_fitted()
        Xa = self._check_X(X, reset=False)
        labels, _ = assign_chunked(
            Xa, self.cluster_centers_.astype(np.float64), self._engine_obj()
        )
        return labels

    def transform(self, X: Any) -> npt.NDArray[Any]:
        """Euclidean distance from each row of X to every centre.

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
        """
        self._check_fitted()
        Xa = self._check_X(X, reset=False)
        _, d2 = assign_chunked(
            Xa,
            self.cluster_centers_.astype(np.float64),
            self._engine_obj(),
            pairwise=True,
        )
        return np.sqrt(d2)

    def score(
        self, X: Any, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> float:
        """Opposite of the (weighted) inertia of X under the fitted centres."""
        self._check_fitted()
        Xa = self._check_X(X, reset=False)
        w = _check_sample_weight(sample_weight, Xa.shape[0])
        _, d2 = assign_chunked(
            Xa, self.cluster_centers_.astype(np.float64), self._engine_obj()
        )
        d2 = d2.astype(np.float64)
        return -float(d2.sum() if w is None else d2 @ w)

    # -- persistence -------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save to ``path`` (``.npz`` arrays) and a ``.json`` sidecar; no pickle."""
        from clusterlens.cluster._persist import save_kmeans

        self._check_fitted()
        save_kmeans(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KMeans:
        """Load a model written by :meth:`save`."""
        from clusterlens.cluster._persist import load_kmeans

        return load_kmeans(cls, path)
