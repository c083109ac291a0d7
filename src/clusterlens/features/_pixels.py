"""Raw-pixel features and PCA, the reference project's baseline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.typing import SeedLike
from clusterlens.utils.validation import check_int, check_random_state

__all__ = ["PcaModel", "fit_pca", "pixel_features"]


def pixel_features(images: Any, *, scale: bool = True) -> npt.NDArray[np.float32]:
    """Flatten same-sized uint8 images (n, H, W[, C]) to float32 rows in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> pixel_features(np.full((2, 3, 3), 255, np.uint8)).shape
    (2, 9)
    """
    arr = np.asarray(images)
    if arr.ndim not in (3, 4):
        raise DataValidationError(
            f"images must have shape (n, H, W) or (n, H, W, C); got {arr.shape}."
        )
    out = arr.reshape(arr.shape[0], -1).astype(np.float32)
    if scale:
        out /= 255.0
    return out


class PcaModel:
    """A fitted PCA projection: ``(X - mean) @ components.T`` (optionally whitened).

    Saved as ``.npz`` (arrays) + ``.json`` (sizes), never pickled.
    """

    def __init__(
        self,
        mean: npt.NDArray[np.float64],
        components: npt.NDArray[np.float64],
        explained_variance: npt.NDArray[np.float64],
        whiten: bool = False,
    ) -> None:
        self.mean = mean
        self.components = components
        self.explained_variance = explained_variance
        self.whiten = whiten

    def transform(self, X: Any) -> npt.NDArray[np.float32]:
        """Project rows of X (chunked so X may be a memmap)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise DataValidationError(
                f"X must have shape (n, {self.mean.shape[0]}) for this PCA; got "
                f"{X.shape}."
            )
        out = np.empty((X.shape[0], self.components.shape[0]), dtype=np.float32)
        step = 8192
        for s in range(0, X.shape[0], step):
            z = (X[s : s + step].astype(np.float64) - self.mean) @ self.components.T
            if self.whiten:
                z /= np.sqrt(np.maximum(self.explained_variance, 1e-12))
            out[s : s + step] = z
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``path.npz`` and ``path.json``."""
        import json

        from clusterlens.utils._fs import atomic_write_text

        p = Path(os.fspath(path))
        np.savez(
            p.with_suffix(".npz"),
            mean=self.mean,
            components=self.components,
            explained_variance=self.explained_variance,
        )
        atomic_write_text(
            p.with_suffix(".json"),
            json.dumps(
                {
                    "format": "clusterlens.pca",
                    "version": 1,
                    "n_components": int(self.components.shape[0]),
                    "n_features": int(self.mean.shape[0]),
                    "whiten": self.whiten,
                }
            ),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PcaModel:
        """Read a model written by :meth:`save`."""
        from clusterlens.io._safe import invalid_file, load_npz, read_json

        p = Path(os.fspath(path))
        fix = "save the model again with PcaModel.save (clusterlens features --pca)"
        meta = read_json(p.with_suffix(".json"), what="PCA model description", fix=fix)
        d = load_npz(
            p.with_suffix(".npz"),
            what="PCA model",
            fix=fix,
            keys=("mean", "components", "explained_variance"),
        )
        if not isinstance(meta.get("whiten"), bool):
            raise DataValidationError(
                invalid_file(
                    p.with_suffix(".json"),
                    "PCA model description",
                    "'whiten' is not true or false",
                    fix,
                )
            )
        return cls(d["mean"], d["components"], d["explained_variance"], meta["whiten"])


def fit_pca(
    X: Any,
    n_components: int,
    *,
    whiten: bool = False,
    random_state: SeedLike = None,
) -> PcaModel:
    """Fit PCA with scikit-learn (randomized SVD for large inputs).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int
        At most ``min(n_samples, n_features)``.
    whiten : bool, default=False
        Scale each component to unit variance.
    random_state : int, Generator or None, default=None

    Returns
    -------
    model : PcaModel
    """
    from sklearn.decomposition import PCA

    X = np.asarray(X)
    if X.ndim != 2:
        raise DataValidationError(f"X must be 2-D; got shape {X.shape}.")
    limit = min(X.shape)
    n_components = check_int(n_components, "n_components", "fit_pca", low=1)
    if n_components > limit:
        raise DataValidationError(
            f"n_components={n_components} must be <= min(n_samples, n_features)="
            f"{limit}. Use --pca {limit} or less."
        )
    rng = check_random_state(random_state)
    seed = int(rng.integers(0, 2**31 - 1))
    pca = PCA(n_components=n_components, whiten=False, random_state=seed).fit(X)
    return PcaModel(
        pca.mean_.astype(np.float64),
        pca.components_.astype(np.float64),
        pca.explained_variance_.astype(np.float64),
        whiten,
    )
