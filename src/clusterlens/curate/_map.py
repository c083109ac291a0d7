"""A 2-D map of the collection: UMAP on the embeddings, PCA for tiny sets."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.utils.validation import check_random_state

__all__ = ["MIN_UMAP_SAMPLES", "Map2D", "embed_2d"]

#: Below this many items UMAP's neighbourhood graph is too small to mean much;
#: the map is the first two principal components instead.
MIN_UMAP_SAMPLES = 30

#: UMAP's optimisation epochs. umap-learn takes 500 below 10,000 items and 200
#: above; 200 everywhere draws the same neighbourhoods for a map at 40 % of the
#: cost (the layout is single-threaded, for a seeded map).
N_EPOCHS = 200

_UMAP_CACHED = False


def _cache_umap_kernels() -> None:
    """Let numba keep umap-learn's compiled kernels on disk between runs.

    umap-learn compiles its numba kernels in every new process and caches
    none of them (lmcinnes/umap#1257 proposes ``cache=True``): ~10 s of a
    short run. Turning on numba's own on-disk cache for its module-level
    kernels makes every run after the first load them instead (numba stores
    them beside the module, or in its per-user cache where that is read-only,
    and recompiles when the source or numba changes).
    """
    global _UMAP_CACHED
    if _UMAP_CACHED:
        return
    _UMAP_CACHED = True
    try:
        import umap.layouts
        import umap.umap_
        import umap.utils
        from numba.core.registry import CPUDispatcher
    except ImportError:  # another numba layout: compile as umap does
        return
    for mod in (umap.umap_, umap.layouts, umap.utils):
        for obj in list(vars(mod).values()):
            if isinstance(obj, CPUDispatcher):
                try:
                    obj.enable_caching()
                except Exception:  # a kernel numba cannot cache: compiled as before
                    continue


def preload_umap() -> bool:
    """Import umap-learn with its kernels' disk cache on (seconds of a short
    run, done ahead of the map by ``explore``'s map worker); False without
    umap-learn."""
    if importlib.util.find_spec("umap") is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap  # noqa: F401

        _cache_umap_kernels()
    return True


@dataclass(frozen=True)
class Map2D:
    """Coordinates of every item, scaled into [0, 1] x [0, 1].

    Attributes
    ----------
    xy : ndarray of shape (n_samples, 2), float32
    method : str
        "umap" or "pca", and why when it is not the one asked for.
    """

    xy: npt.NDArray[np.float32]
    method: str


def _unit_box(Y: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    lo = Y.min(axis=0)
    span = np.maximum(Y.max(axis=0) - lo, 1e-12)
    return ((Y - lo) / span).astype(np.float32)


def _pca2(Z: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    A = Z.astype(np.float64) - Z.mean(axis=0, dtype=np.float64)
    if A.shape[0] < 2:
        return np.zeros((A.shape[0], 2))
    _, _, vt = np.linalg.svd(A, full_matrices=False)
    Y = A @ vt[:2].T
    if Y.shape[1] < 2:
        Y = np.hstack([Y, np.zeros((Y.shape[0], 2 - Y.shape[1]))])
    # a fixed sign per axis, so the same data always gives the same picture
    sign = np.sign(Y[np.abs(Y).argmax(axis=0), np.arange(2)])
    return Y * np.where(sign == 0, 1.0, sign)


def embed_2d(
    Z: npt.ArrayLike,
    *,
    method: str = "auto",
    neighbors: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    n_neighbors: int = 15,
    random_state: int | np.random.Generator | None = 0,
) -> Map2D:
    """Project embeddings to 2-D for a map of the collection.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        L2-normalised embeddings.
    method : {"auto", "umap", "pca"}, default="auto"
        "umap": UMAP (umap-learn, cosine); "pca": the first two principal
        components; "auto": UMAP from ``MIN_UMAP_SAMPLES`` items on when
        umap-learn is installed, PCA otherwise.
    neighbors : (indices, distances), optional
        A k-NN graph already computed (self excluded), reused by UMAP instead
        of searching again; distances are squared Euclidean between unit rows.
    n_neighbors : int, default=15
        UMAP's neighbourhood size.
    random_state : int, Generator or None, default=0
        Seed; the same seed gives the same map (UMAP then runs on one thread).

    Returns
    -------
    Map2D

    Notes
    -----
    McInnes, Healy and Melville, "UMAP: Uniform Manifold Approximation and
    Projection", 2018. Cost: the k-NN graph (shared with duplicates and
    outliers) plus ``O(n)`` optimisation epochs.
    """
    A = np.ascontiguousarray(Z, dtype=np.float32)
    if A.ndim != 2 or A.shape[0] < 1:
        raise DataValidationError(f"Z must be 2-D with rows; got shape {A.shape}.")
    if method not in ("auto", "umap", "pca"):
        raise InvalidParameterError(
            f"The 'method' parameter of embed_2d must be one of 'auto', 'umap', "
            f"'pca'. Got {method!r} instead."
        )
    n = A.shape[0]
    have_umap = importlib.util.find_spec("umap") is not None
    if method == "umap" and not have_umap:
        from clusterlens.utils._optional import import_optional

        import_optional("umap", extra="explore")
    if method == "pca" or n < MIN_UMAP_SAMPLES or not have_umap:
        why = (
            ""
            if method == "pca"
            else f" (fewer than {MIN_UMAP_SAMPLES} items)"
            if n < MIN_UMAP_SAMPLES
            else " (umap-learn is not installed)"
        )
        return Map2D(xy=_unit_box(_pca2(A)), method="pca" + why)
    rng = check_random_state(random_state)
    seed = int(rng.integers(2**31 - 1))
    import umap  # type: ignore[import-not-found,import-untyped]

    k = int(min(n_neighbors, n - 1))
    kwargs: dict[str, Any] = {}
    if neighbors is not None:
        idx = np.asarray(neighbors[0], dtype=np.int64)
        dist = np.asarray(neighbors[1], dtype=np.float32)
        if idx.shape[1] >= k:
            # UMAP wants each row's own index first, then its neighbours, with
            # the metric's distances (cosine = squared L2 / 2 for unit rows)
            own = np.arange(n, dtype=np.int64)[:, None]
            kwargs["precomputed_knn"] = (
                np.hstack([own, idx[:, : k - 1]]),
                np.hstack([np.zeros((n, 1), np.float32), dist[:, : k - 1] / 2.0]),
                None,
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap's notes on n_jobs and the graph
        _cache_umap_kernels()
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=k,
            metric="cosine",
            random_state=seed,
            n_jobs=1,
            n_epochs=N_EPOCHS,
            **kwargs,
        )
        Y = reducer.fit_transform(A)
    return Map2D(xy=_unit_box(np.asarray(Y, dtype=np.float64)), method="umap")
