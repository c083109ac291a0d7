"""VisualVocabulary: a k-means codebook over local descriptors, and quantization."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator

from clusterlens.cluster import get_engine, kmeans
from clusterlens.cluster._driver import assign_chunked
from clusterlens.cluster._kmeans import LARGE_K_THRESHOLD
from clusterlens.exceptions import DataValidationError, NotFittedError
from clusterlens.io import as_matrix
from clusterlens.typing import SeedLike
from clusterlens.utils.validation import check_int, check_options, check_random_state

__all__ = ["VisualVocabulary"]

FORMAT = "clusterlens.vocabulary"
FORMAT_VERSION = 1
_QUANTIZERS = ("auto", "exact", "index")


def nearest_or_tied(
    X: npt.NDArray[Any], centers: npt.NDArray[Any], words: npt.NDArray[Any]
) -> npt.NDArray[np.bool_]:
    """Whether each ``words[i]`` is an exact nearest word of ``X[i]``.

    The exact nearest word comes from the float32 GEMM search; both words'
    distances are then recomputed in float64 from the vectors, so float32
    rounding in either search is not counted as a disagreement (two words at
    the same distance both count as nearest).
    """
    C = np.asarray(centers, np.float64)
    exact, _ = assign_chunked(np.asarray(X), C, get_engine("numpy"))
    Xf = np.asarray(X, np.float64)
    d_w = ((Xf - C[words]) ** 2).sum(axis=1)
    d_e = ((Xf - C[exact]) ** 2).sum(axis=1)
    return np.asarray(d_w <= d_e * (1 + 1e-12))


def count_distinct_rows(X: npt.NDArray[Any], stop_at: int | None = None) -> int:
    """Number of distinct rows of X, read in chunks (64-bit row hashes).

    With ``stop_at``, stops counting once that many are certain (fast on
    real data, where the first chunk already holds them). Two different
    rows share a hash with probability ~2^-64 per pair.
    """
    n, d = X.shape
    w = np.random.default_rng(0).integers(1, 2**63 - 1, size=d, dtype=np.uint64)
    seen: npt.NDArray[np.uint64] = np.empty(0, np.uint64)
    step = max(1, (64 << 20) // max(1, 8 * d))
    for a in range(0, n, step):
        block = np.ascontiguousarray(X[a : a + step])
        if block.dtype.kind == "f":  # hash the bit patterns (-0.0 as 0.0)
            block = (block + 0).view(f"u{block.dtype.itemsize}")
        h = (block.astype(np.uint64) * w).sum(axis=1, dtype=np.uint64)
        seen = np.union1d(seen, h)
        if stop_at is not None and seen.size >= stop_at:
            return int(seen.size)
    return int(seen.size)


class VisualVocabulary(BaseEstimator):
    """A visual vocabulary: k-means words over descriptors (SIFT: 128-d uint8).

    Parameters
    ----------
    n_words : int, default=1024
        Number of visual words (clusters).
    sample : int, default=None
        Fit on a uniform random sample of this many descriptors (all when
        None); :meth:`transform` then assigns every descriptor.
    init : {"auto", "k-means++", "random"} or array, default="auto"
        "auto": k-means++ for exact training, random rows in the large-k mode.
    max_iter : int, default=20
        Lloyd iterations (vocabularies are usually trained for a fixed count).
    tol : float, default=1e-4
    engine : {"auto", "numpy", "faiss"}, default="auto"
        Engine of exact training and exact quantization.
    mode : {"auto", "exact", "large"}, default="auto"
        Training mode of :func:`~clusterlens.cluster.kmeans`: "auto" is the
        large-k mode from 4,096 words on.
    n_candidates, refresh_every : int
        Large-k mode settings (see :func:`~clusterlens.cluster.kmeans`).
    quantizer : {"auto", "exact", "index"}, default="auto"
        How :meth:`transform` finds each descriptor's word: "exact" compares
        with every word; "index" with the words of its ``n_probe`` nearest
        groups of words (a two-level index); "auto" is "index" from 4,096
        words on. :meth:`agreement` measures how often "index" finds the
        exact nearest word.
    n_probe : int, default=None
        Groups of words searched per descriptor by the index quantizer;
        None: ``max(16, round(0.075 * n_groups))`` of ``sqrt(n_words)`` groups
        (27 of 362 at 131,072 words: 99.0-99.3 % agreement at 11-14x the
        speed of ``faiss.IndexFlatL2`` in ``benchmarks/vocab.py``).
    checkpoint_dir : path, default=None
        Write a training checkpoint there after every iteration (needs an
        int ``random_state``).
    resume : bool, default=False
        Continue training from the checkpoint in ``checkpoint_dir``.
    random_state : int, Generator or None, default=None
    verbose : int, default=0
    backend : {"local", "dask"}, default=None
        Where training runs (see :func:`~clusterlens.cluster.kmeans`); None:
        the configured default. A descriptor file (or ``.npy`` memmap) fitted
        whole is read by the Dask workers themselves.

    Attributes
    ----------
    centers_ : ndarray of shape (n_words, n_features)
        The words.
    inertia_ : float
        SSE of the fitted (sampled) descriptors.
    labels_, distances_ : ndarray of shape (n_fit_samples_,)
        The fit's own word and squared distance for each fitted descriptor
        (not saved; in the large-k mode, the last candidate pass).
    history_ : list of dict
    n_features_in_ : int

    Notes
    -----
    Training is :func:`~clusterlens.cluster.kmeans`: exact chunked Lloyd for
    small vocabularies, the large-k mode (each descriptor compared with a few
    candidate words) for large ones. Quantization (:meth:`transform`) reads
    X chunk by chunk, so a memory-mapped uint8 file is never copied whole.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).integers(0, 255, (500, 16)).astype(np.uint8)
    >>> vocab = VisualVocabulary(8, random_state=0).fit(X)
    >>> words = vocab.transform(X)
    >>> words.shape, int(words.max()) < 8
    ((500,), True)
    """

    def __init__(
        self,
        n_words: int = 1024,
        *,
        sample: int | None = None,
        init: Any = "auto",
        max_iter: int = 20,
        tol: float = 1e-4,
        engine: str = "auto",
        mode: str = "auto",
        n_candidates: int = 3,
        refresh_every: int = 4,
        quantizer: str = "auto",
        n_probe: int | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
        random_state: SeedLike = None,
        verbose: int = 0,
        backend: str | None = None,
    ) -> None:
        self.n_words = n_words
        self.sample = sample
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.engine = engine
        self.mode = mode
        self.n_candidates = n_candidates
        self.refresh_every = refresh_every
        self.quantizer = quantizer
        self.n_probe = n_probe
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.random_state = random_state
        self.verbose = verbose
        self.backend = backend

    def fit(self, X: Any, y: Any = None) -> VisualVocabulary:
        """Learn the words from descriptors (array, memmap or descriptor file)."""
        Xa = as_matrix(X)
        n = Xa.shape[0]
        sample = check_int(
            self.sample, "sample", "VisualVocabulary", low=1, allow_none=True
        )
        rng = check_random_state(self.random_state)
        t0 = time.perf_counter()
        source: Any
        if sample is not None and sample < n:
            rows = np.sort(rng.choice(n, size=sample, replace=False))
            train = np.asarray(Xa[rows])  # only the sample is read; dtype kept
            source = train
        else:
            train = Xa
            # a file or .npy memmap as it is: Dask workers open it themselves
            source = X if isinstance(X, str | os.PathLike | np.memmap) else Xa
        check_options(self.quantizer, "quantizer", "VisualVocabulary", _QUANTIZERS)
        n_words = check_int(self.n_words, "n_words", "VisualVocabulary", low=1)
        if n_words > train.shape[0]:
            raise DataValidationError(
                f"n_words={n_words} is larger than the {train.shape[0]:,} descriptors "
                "to fit on. Use fewer words or more descriptors (a larger sample)."
            )
        distinct = count_distinct_rows(train, stop_at=n_words)
        if distinct < n_words:
            raise DataValidationError(
                f"n_words={n_words} is larger than the {distinct:,} distinct "
                "descriptors to fit on: some words would be copies of others. Use "
                f"at most {distinct:,} words, or more (or less duplicated) data."
            )
        # an int seed for the fit, so that it can be checkpointed and resumed
        fit_seed = int(rng.integers(0, 2**31 - 1))
        res = kmeans(
            source,
            self.n_words,
            init=self.init,
            max_iter=self.max_iter,
            tol=self.tol,
            engine=self.engine,
            random_state=fit_seed,
            verbose=self.verbose,
            mode=self.mode,  # type: ignore[arg-type]
            n_candidates=self.n_candidates,
            refresh_every=self.refresh_every,
            checkpoint_dir=self.checkpoint_dir,
            resume=self.resume,
            backend=self.backend,  # type: ignore[arg-type]
        )
        self.centers_ = res.centers
        self.inertia_ = res.inertia
        self.n_iter_ = res.n_iter
        self.history_ = res.history
        self.engine_ = res.engine
        self.mode_ = res.mode
        self.labels_ = res.labels
        self.distances_ = res.distances
        self.n_features_in_ = Xa.shape[1]
        self.n_fit_samples_ = int(train.shape[0])
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    @classmethod
    def from_centers(cls, centers: npt.ArrayLike) -> VisualVocabulary:
        """Wrap an existing codebook (e.g. a published one) as a vocabulary."""
        C = np.asarray(centers)
        if C.ndim != 2 or C.shape[0] < 1 or not np.isfinite(C).all():
            raise DataValidationError(
                f"centers must be a finite 2-D array (n_words, n_features); got shape "
                f"{C.shape}."
            )
        vocab = cls(C.shape[0])
        vocab.centers_ = C.astype(np.float32 if C.dtype != np.float64 else np.float64)
        vocab.inertia_ = float("nan")
        vocab.n_iter_ = 0
        vocab.history_ = []
        vocab.engine_ = "numpy"
        vocab.mode_ = "exact"
        vocab.n_features_in_ = C.shape[1]
        vocab.n_fit_samples_ = 0
        vocab.fit_seconds_ = 0.0
        return vocab

    def _check_fitted(self) -> None:
        if not hasattr(self, "centers_"):
            raise NotFittedError(
                "This VisualVocabulary instance is not fitted yet. Call 'fit' or "
                "'from_centers' before using it."
            )

    def _check_descriptors(self, X: Any) -> npt.NDArray[Any]:
        self._check_fitted()
        Xa = as_matrix(X)
        if Xa.shape[1] != self.n_features_in_:
            raise DataValidationError(
                f"Descriptors have {Xa.shape[1]} dimensions but the vocabulary's words "
                f"have {self.n_features_in_}. Use descriptors of the kind the "
                "vocabulary was built from."
            )
        return Xa

    @property
    def quantizer_(self) -> str:
        """The quantizer :meth:`transform` uses: "exact" or "index"."""
        self._check_fitted()
        q = check_options(self.quantizer, "quantizer", "VisualVocabulary", _QUANTIZERS)
        if q == "auto":
            q = "index" if self.centers_.shape[0] >= LARGE_K_THRESHOLD else "exact"
        return str(q)

    def _index(self) -> Any:
        """The two-level index over the words (built once, seeded, cached)."""
        from clusterlens.cluster._large import CoarseIndex

        cached = self.__dict__.get("_index_cache")
        if cached is not None and cached[0] is self.centers_:
            return cached[1]
        C = np.asarray(self.centers_, np.float64)
        shift = C.mean(axis=0)
        k = C.shape[0]
        g = max(1, round(np.sqrt(k)))
        n_probe = self.n_probe or max(16, round(0.075 * g))
        index = CoarseIndex(C - shift, shift=shift, n_groups=g, n_probe=n_probe)
        self.__dict__["_index_cache"] = (self.centers_, index)
        return index

    def quantize(self, X: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
        """Nearest word of each descriptor and its squared distance.

        Exact, or through the two-level index (see ``quantizer``).
        """
        Xa = self._check_descriptors(X)
        if self.quantizer_ == "index":
            top, d2 = self._index().search(Xa, 1)
            return top[:, 0], d2
        fitted = self.engine_.removeprefix("dask:")  # the engine that trained
        engine = get_engine(
            self.engine
            if self.engine != "auto"
            else ("numpy" if fitted == "large-k" else fitted)
        )
        return assign_chunked(Xa, self.centers_.astype(np.float64), engine)

    def agreement(
        self, X: Any, *, sample: int = 10_000, random_state: SeedLike = 0
    ) -> float:
        """Share of (sampled) descriptors whose word is their exact nearest word.

        1.0 for the exact quantizer; for the index quantizer, measured
        against an exact search on ``sample`` random rows of X. Ties (two
        words at the same distance) count as agreement.
        """
        Xa = self._check_descriptors(X)
        rng = check_random_state(random_state)
        n = Xa.shape[0]
        rows = np.sort(rng.choice(n, size=min(n, sample), replace=False))
        Xs = np.asarray(Xa[rows])
        if self.quantizer_ == "exact":
            return 1.0
        words, _ = self.quantize(Xs)
        return float(np.mean(nearest_or_tied(Xs, self.centers_, words)))

    def transform(self, X: Any) -> npt.NDArray[np.int64]:
        """Visual-word id of each descriptor, shape (n_descriptors,)."""
        return self.quantize(X)[0]

    predict = transform

    # -- persistence -------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``path.npz`` (the words) and ``path.json`` (the rest); no pickle."""
        from clusterlens.io._persist import write_model

        self._check_fitted()
        params = self.get_params()
        if not isinstance(params["init"], str):
            params["init"] = "array"
        if not isinstance(params["random_state"], int | None):
            params["random_state"] = None
        if params["checkpoint_dir"] is not None:
            params["checkpoint_dir"] = str(params["checkpoint_dir"])
        return write_model(
            path,
            {"centers": self.centers_},
            fmt=FORMAT,
            version=FORMAT_VERSION,
            params=params,
            attributes={
                "inertia_": self.inertia_,
                "n_iter_": self.n_iter_,
                "engine_": self.engine_,
                "mode_": getattr(self, "mode_", "exact"),
                "n_features_in_": self.n_features_in_,
                "n_fit_samples_": self.n_fit_samples_,
                "fit_seconds_": self.fit_seconds_,
                "history_": self.history_,
            },
            kind=type(self).__name__,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VisualVocabulary:
        """Read a vocabulary written by :meth:`save`."""
        from clusterlens.io._persist import model_paths, read_model
        from clusterlens.io._safe import invalid_file

        fix = "build it again with `clusterlens vocab` (or VisualVocabulary.save)"
        meta, arrays = read_model(
            path,
            fmt=FORMAT,
            version=FORMAT_VERSION,
            what="visual vocabulary",
            fix=fix,
            keys=("centers",),
        )
        centers = arrays["centers"]
        if centers.ndim != 2 or centers.dtype.kind not in "fiu" or not centers.size:
            raise DataValidationError(
                invalid_file(
                    model_paths(path)[0],
                    "visual vocabulary",
                    f"its 'centers' array has shape {centers.shape} and dtype "
                    f"{centers.dtype}, expected a non-empty 2-D numeric array",
                    fix,
                )
            )
        if not np.isfinite(centers).all():
            raise DataValidationError(
                invalid_file(
                    model_paths(path)[0],
                    "visual vocabulary",
                    "its 'centers' hold NaN or infinity",
                    fix,
                )
            )
        valid = cls().get_params()
        params = {k: v for k, v in meta.get("params", {}).items() if k in valid}
        if params.get("init") == "array":
            params["init"] = "auto"
        vocab = cls(**params)
        attrs = meta.get("attributes", {})
        vocab.centers_ = centers
        try:
            vocab.inertia_ = float(attrs.get("inertia_", np.nan))
            vocab.n_iter_ = int(attrs.get("n_iter_", 0))
            vocab.engine_ = str(attrs.get("engine_", "numpy"))
            vocab.mode_ = str(attrs.get("mode_", "exact"))
            vocab.n_features_in_ = int(attrs.get("n_features_in_", centers.shape[1]))
            vocab.n_fit_samples_ = int(attrs.get("n_fit_samples_", 0))
            vocab.fit_seconds_ = float(attrs.get("fit_seconds_", 0.0))
            vocab.history_ = list(attrs.get("history_", []))
        except (TypeError, ValueError, OverflowError) as e:
            raise DataValidationError(
                invalid_file(
                    model_paths(path)[1],
                    "visual vocabulary description",
                    f"an attribute has a wrong value: {e}",
                    fix,
                )
            ) from e
        if vocab.n_features_in_ != centers.shape[1]:
            raise DataValidationError(
                invalid_file(
                    model_paths(path)[1],
                    "visual vocabulary description",
                    f"n_features_in_ is {vocab.n_features_in_} but the centres "
                    f"have {centers.shape[1]} features",
                    fix,
                )
            )
        return vocab
