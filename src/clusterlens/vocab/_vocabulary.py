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
from clusterlens.exceptions import DataValidationError, NotFittedError
from clusterlens.io import as_matrix
from clusterlens.typing import SeedLike
from clusterlens.utils.validation import check_int, check_random_state

__all__ = ["VisualVocabulary"]

FORMAT = "clusterlens.vocabulary"
FORMAT_VERSION = 1


class VisualVocabulary(BaseEstimator):
    """A visual vocabulary: k-means words over descriptors (SIFT: 128-d uint8).

    Parameters
    ----------
    n_words : int, default=1024
        Number of visual words (clusters).
    sample : int, default=None
        Fit on a uniform random sample of this many descriptors (all when
        None); :meth:`transform` then assigns every descriptor.
    init : {"k-means++", "random"} or array, default="k-means++"
    max_iter : int, default=20
        Lloyd iterations (vocabularies are usually trained for a fixed count).
    tol : float, default=1e-4
    engine : {"auto", "numpy", "faiss"}, default="auto"
    random_state : int, Generator or None, default=None
    verbose : int, default=0

    Attributes
    ----------
    centers_ : ndarray of shape (n_words, n_features)
        The words.
    inertia_ : float
        SSE of the fitted (sampled) descriptors.
    history_ : list of dict
    n_features_in_ : int

    Notes
    -----
    Training is exact Lloyd on clusterlens's chunked GEMM engine; quantization
    (:meth:`transform`) is an exact nearest-word search, chunk by chunk, so
    a memory-mapped uint8 file is never copied whole. A large-k mode that
    avoids comparing every descriptor with every word is the subject of
    issue #4 (``cluster/_large_k.py`` holds the prototype).

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
        init: Any = "k-means++",
        max_iter: int = 20,
        tol: float = 1e-4,
        engine: str = "auto",
        random_state: SeedLike = None,
        verbose: int = 0,
    ) -> None:
        self.n_words = n_words
        self.sample = sample
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.engine = engine
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: Any, y: Any = None) -> VisualVocabulary:
        """Learn the words from descriptors (array, memmap or descriptor file)."""
        Xa = as_matrix(X)
        n = Xa.shape[0]
        sample = check_int(
            self.sample, "sample", "VisualVocabulary", low=1, allow_none=True
        )
        rng = check_random_state(self.random_state)
        t0 = time.perf_counter()
        if sample is not None and sample < n:
            rows = np.sort(rng.choice(n, size=sample, replace=False))
            train = np.asarray(Xa[rows])  # only the sample is read; dtype kept
        else:
            train = Xa
        res = kmeans(
            train,
            self.n_words,
            init=self.init,
            max_iter=self.max_iter,
            tol=self.tol,
            engine=self.engine,
            random_state=rng,
            verbose=self.verbose,
        )
        self.centers_ = res.centers
        self.inertia_ = res.inertia
        self.n_iter_ = res.n_iter
        self.history_ = res.history
        self.engine_ = res.engine
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

    def quantize(self, X: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
        """Nearest word of each descriptor and its squared distance (exact)."""
        self._check_fitted()
        Xa = as_matrix(X)
        if Xa.shape[1] != self.n_features_in_:
            raise DataValidationError(
                f"Descriptors have {Xa.shape[1]} dimensions but the vocabulary's words "
                f"have {self.n_features_in_}. Use descriptors of the kind the "
                "vocabulary was built from."
            )
        engine = get_engine(self.engine_ if self.engine == "auto" else self.engine)
        return assign_chunked(Xa, self.centers_.astype(np.float64), engine)

    def transform(self, X: Any) -> npt.NDArray[np.int64]:
        """Visual-word id of each descriptor, shape (n_descriptors,)."""
        return self.quantize(X)[0]

    predict = transform

    # -- persistence -------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``path.npz`` (the words) and ``path.json`` (the rest); no pickle."""
        from clusterlens.cluster._persist import write_model

        self._check_fitted()
        params = self.get_params()
        if not isinstance(params["init"], str):
            params["init"] = "array"
        if not isinstance(params["random_state"], int | None):
            params["random_state"] = None
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
        from clusterlens.cluster._persist import read_model

        meta, arrays = read_model(
            path, fmt=FORMAT, version=FORMAT_VERSION, what="visual vocabulary"
        )
        if "centers" not in arrays:
            raise DataValidationError(
                f"The vocabulary at {path} has no 'centers' array."
            )
        centers = arrays["centers"]
        valid = cls().get_params()
        params = {k: v for k, v in meta.get("params", {}).items() if k in valid}
        if params.get("init") == "array":
            params["init"] = "k-means++"
        vocab = cls(**params)
        attrs = meta.get("attributes", {})
        vocab.centers_ = centers
        vocab.inertia_ = float(attrs.get("inertia_", np.nan))
        vocab.n_iter_ = int(attrs.get("n_iter_", 0))
        vocab.engine_ = str(attrs.get("engine_", "numpy"))
        vocab.n_features_in_ = int(attrs.get("n_features_in_", centers.shape[1]))
        vocab.n_fit_samples_ = int(attrs.get("n_fit_samples_", 0))
        vocab.fit_seconds_ = float(attrs.get("fit_seconds_", 0.0))
        vocab.history_ = list(attrs.get("history_", []))
        return vocab
