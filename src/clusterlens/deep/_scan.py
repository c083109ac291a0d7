"""SCAN on frozen embeddings: mine neighbours, train a clustering head, self-label."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClusterMixin

from clusterlens.deep._loss import iid_loss, scan_loss
from clusterlens.deep._nets import EmbeddingHeads
from clusterlens.deep._runtime import _deterministic, _resolve_device, _torch_threads
from clusterlens.exceptions import (
    DataValidationError,
    InvalidParameterError,
    NotFittedError,
)
from clusterlens.io._persist import model_paths, read_model, write_model
from clusterlens.io._safe import invalid_file
from clusterlens.utils._names import arg
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import (
    check_int,
    check_options,
    check_random_state,
    check_real,
)

__all__ = ["SCAN", "EmbeddingPreprocessor", "mine_neighbors"]

logger = logging.getLogger(__name__)

_OWNER = "SCAN"
MODEL_FORMAT = "clusterlens.scan"
FORMAT_VERSION = 1
OBJECTIVES = ("scan", "iic")
#: Fewest optimisation steps per epoch (see ``SCAN.fit``).
_MIN_STEPS = 10
#: Self-labelling's learning rate, relative to ``lr``: it refines a head that
#: already clusters (at the full rate it undid part of the SCAN step on
#: CIFAR-10 embeddings, 0.606 -> 0.559 accuracy).
_SELF_LABEL_LR = 0.1


# --------------------------------------------------------------------------- #
# preprocessing and neighbours
# --------------------------------------------------------------------------- #
#: Above this many rows and features both, the principal axes come from a
#: randomized range finder instead of an exact eigendecomposition.
EXACT_PCA_MAX = 4096
#: Rows per chunk when the preprocessing streams over the embeddings.
_ROWS = 8192


def _chunked_sum(
    X: npt.NDArray[Any], f: Callable[[npt.NDArray[np.float64]], Any]
) -> npt.NDArray[np.float64]:
    """``sum(f(chunk))`` over float64 chunks of rows (no float64 copy of X)."""
    total: Any = 0.0
    for s in range(0, X.shape[0], _ROWS):
        total = total + f(X[s : s + _ROWS].astype(np.float64))
    return np.asarray(total, dtype=np.float64)


def _top_axes_randomized(
    X: npt.NDArray[Any], mean: npt.NDArray[np.float64], p: int, scale: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The ``p`` leading eigenpairs of the covariance ``scale * Xc^T Xc``
    without forming it: a randomized range finder with power iterations
    (Halko, Martinsson & Tropp 2011, alg. 4.4), each product streamed over
    chunks of rows; a fixed seed, so the axes are reproducible. Not
    scikit-learn's randomized PCA (``features.fit_pca``): it centres a full
    copy of ``X`` (or, with ``copy=False``, the caller's array in place),
    another n x d when ``X`` is a trunk's 18,432-wide embeddings."""
    d = X.shape[1]
    q = min(d, p + max(10, p // 4))  # oversampled

    def cov_times(Q: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        def part(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            c -= mean  # a float64 copy of the chunk, centred in place
            return c.T @ (c @ Q)

        return scale * _chunked_sum(X, part)

    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((d, q)))[0]
    for _ in range(6):
        Q = np.linalg.qr(cov_times(Q))[0]
    evals, W = np.linalg.eigh(Q.T @ cov_times(Q))
    order = np.argsort(evals)[::-1][:p]
    return evals[order], Q @ W[:, order]


class EmbeddingPreprocessor:
    """Centre, project on the top principal axes (optional), L2-normalise.

    The same rows go to the neighbour search and to the head. Fitted in
    float64, streamed over chunks of rows, from the covariance (``d x d``), or
    from the Gram matrix (``n x n``) when there are fewer rows than features:
    the same axes either way. When both exceed :data:`EXACT_PCA_MAX`, a
    seeded randomized range finder gives the leading axes without forming
    either matrix.

    Parameters
    ----------
    n_components : int or None
        Principal axes kept; None keeps the centred features as they are.
    whiten : bool
        Scale each kept axis to unit variance before the L2 normalisation.
    l2 : bool
        Scale each row to unit length last.
    """

    def __init__(
        self, n_components: int | None, whiten: bool = False, l2: bool = True
    ) -> None:
        self.n_components = n_components
        self.whiten = whiten
        self.l2 = l2

    def fit(self, X: npt.NDArray[np.float32]) -> EmbeddingPreprocessor:
        """Learn the mean and the principal axes of ``X``."""
        n, d = X.shape
        self.mean_ = _chunked_sum(X, lambda c: c.sum(axis=0)) / n
        if self.n_components is None or self.n_components >= d:
            self.components_ = np.eye(d, dtype=np.float64)
            self.scale_ = np.ones(d, dtype=np.float64)
            if self.whiten:
                var = _chunked_sum(X, lambda c: ((c - self.mean_) ** 2).sum(axis=0))
                self.scale_ = 1.0 / np.maximum(np.sqrt(var / n), 1e-12)
            return self
        p, scale = self.n_components, 1.0 / max(1, n - 1)
        if min(n, d) > EXACT_PCA_MAX:
            # both n x n and d x d are too large to decompose (18,432 trunk
            # features of 20,000 photos: a 2.7 GB matrix, minutes of eigh)
            evals, comps = _top_axes_randomized(X, self.mean_, p, scale)
        elif n < d:
            # fewer rows than features (a wide trunk on a small folder:
            # 398 photos x 8,192 features took a minute and 0.5 GB in the
            # d x d eigh): the same axes from the n x n Gram matrix,
            # v = Xc^T u / ||Xc^T u||, with the same eigenvalues
            Xc = X.astype(np.float64) - self.mean_
            evals, evecs = np.linalg.eigh((Xc @ Xc.T) * scale)
            order = np.argsort(evals)[::-1][:p]
            evals, comps = evals[order], Xc.T @ evecs[:, order]
            norms = np.linalg.norm(comps, axis=0)
            comps /= np.where(norms > 0, norms, 1.0)
        else:

            def part(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
                c -= self.mean_  # a float64 copy of the chunk, centred in place
                return c.T @ c

            cov = _chunked_sum(X, part)
            evals, evecs = np.linalg.eigh(cov * scale)
            order = np.argsort(evals)[::-1][:p]
            evals, comps = evals[order], evecs[:, order]
        # a sign convention, so the axes do not depend on the LAPACK build
        flip = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
        self.components_ = comps * np.where(flip == 0, 1.0, flip)
        var = np.maximum(evals, 1e-12)
        self.scale_ = 1.0 / np.sqrt(var) if self.whiten else np.ones_like(var)
        return self

    def transform(self, X: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Rows as the head sees them: float32 (unit length with ``l2``)."""
        out = np.empty((X.shape[0], self.components_.shape[1]), dtype=np.float32)
        for s in range(0, X.shape[0], _ROWS):
            Z = (X[s : s + _ROWS].astype(np.float64) - self.mean_) @ self.components_
            Z *= self.scale_
            if self.l2:
                Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
            out[s : s + _ROWS] = Z
        return out

    def arrays(self) -> dict[str, npt.NDArray[np.float64]]:
        """What a model file stores."""
        return {
            "mean": self.mean_,
            "components": self.components_,
            "scale": self.scale_,
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, Any], n_components: int | None, whiten: bool, l2: bool
    ) -> EmbeddingPreprocessor:
        """The inverse of :meth:`arrays`."""
        pre = cls(n_components, whiten, l2)
        pre.mean_ = np.asarray(arrays["mean"], dtype=np.float64)
        pre.components_ = np.asarray(arrays["components"], dtype=np.float64)
        pre.scale_ = np.asarray(arrays["scale"], dtype=np.float64)
        d, p = pre.components_.shape
        if pre.mean_.shape != (d,) or pre.scale_.shape != (p,):
            raise ValueError(
                f"the preprocessing arrays disagree: mean {pre.mean_.shape}, "
                f"components {pre.components_.shape}, scale {pre.scale_.shape}"
            )
        return pre


def mine_neighbors(
    Z: npt.ArrayLike, n_neighbors: int, *, seed: int = 0, verbose: int = 0
) -> npt.NDArray[np.int64]:
    """The ``n_neighbors`` nearest other rows of each row, nearest first.

    The project's one k-NN search (:func:`clusterlens.features._knn.knn_graph`:
    faiss, exact up to its size limit, cell-blocked above it) on the rows as
    given (L2 distance; for unit rows that is the cosine order).

    Returns
    -------
    indices : ndarray of shape (n_samples, n_neighbors), int64
    """
    from clusterlens.features._knn import knn_graph

    return knn_graph(Z, n_neighbors, seed=seed, verbose=verbose).indices


def _check_neighbors(
    value: Any, name: str, n: int, min_cols: int
) -> npt.NDArray[np.int64]:
    """Neighbour indices given by the caller: (n, >= min_cols), rows of X."""
    nb = np.asarray(value)
    if nb.ndim != 2 or nb.shape[0] != n or nb.shape[1] < min_cols:
        raise DataValidationError(
            f"{name} must have shape ({n}, >= {min_cols}); got {nb.shape}."
        )
    if nb.dtype.kind not in "iu" or nb.min() < 0 or nb.max() >= n:
        raise DataValidationError(
            f"{name} must hold row indices in [0, {n}); got values in "
            f"[{nb.min()}, {nb.max()}] of dtype {nb.dtype}."
        )
    return nb.astype(np.int64, copy=False)


def _check_X(X: Any, name: str = "X") -> npt.NDArray[np.float32]:
    A = np.asarray(X)
    if A.ndim != 2:
        raise DataValidationError(
            f"{name} must be 2-D of shape (n_samples, n_features); got shape {A.shape}."
        )
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise DataValidationError(
            f"{name} is empty (shape {A.shape}); nothing to cluster."
        )
    if A.dtype.kind not in "fiu":
        raise DataValidationError(f"{name} must hold numbers; got dtype {A.dtype}.")
    A = np.ascontiguousarray(A, dtype=np.float32)
    bad = ~np.isfinite(A).all(axis=1)
    if bad.any():
        raise DataValidationError(
            f"{name} contains NaN or infinity in {int(bad.sum())} rows (first at row "
            f"{int(np.argmax(bad))}); clean or drop them first."
        )
    return A


class SCAN(ClusterMixin, BaseEstimator):  # type: ignore[misc]
    """Clustering head trained on frozen embeddings with their nearest neighbours.

    The SCAN recipe (Van Gansbeke et al., ECCV 2020) without its pretext
    step, the embeddings being given: (1) the ``n_neighbors`` nearest
    neighbours of every row are mined once; (2) ``n_heads`` clustering heads
    (linear, or small MLPs) are trained at once to put each row and a random
    one of its neighbours in the same cluster, with an entropy term that
    keeps all clusters in use; the head with the lowest loss is kept;
    (3) self-labelling: the rows that head predicts with probability above
    ``confidence`` become targets of a class-balanced cross-entropy on
    augmented copies. Augmentation is in embedding space (dropout and
    Gaussian noise), or another view of the same items (``views`` of
    :meth:`fit`, e.g. the embeddings of the mirrored images).

    Parameters
    ----------
    n_clusters : int, default=10
        Clusters (overclustering, more clusters than classes, is allowed).
    objective : {"scan", "iic"}, default="scan"
        Loss of step (2) on (row, neighbour) pairs: "scan" is SCAN's
        ``-log <p_i, p_j>`` plus the entropy term; "iic" maximises the mutual
        information of the paired assignments (IIC's objective, with the
        neighbour as the transformed copy).
    n_neighbors : int, default=20
        Neighbours mined per row (SCAN uses 20 on CIFAR-10).
    n_components : int or None, default=128
        Principal axes of the embeddings kept before the L2 normalisation;
        None keeps all.
    whiten : bool, default=False
        Scale the kept axes to unit variance.
    l2 : bool, default=True
        Scale each row to unit length last (the cosine geometry of CNN
        embeddings); False keeps the (centred, projected) rows as they are,
        for features whose norm carries meaning.
    hidden : int, default=256
        0: linear heads; > 0: MLP heads with one hidden layer of this width
        (on CIFAR-10 embeddings 256 reached 0.61 accuracy, linear 0.53).
    n_heads : int, default=5
        Heads trained at once; the one with the lowest loss is kept.
    entropy_weight : float, default=5.0
        Weight of the entropy term of "scan" (the paper's 5 on CIFAR-10).
    epochs : int, default=30
        Epochs of step (2): passes over the rows, at least 10 steps each (a
        set smaller than 10 batches is passed over several times per epoch).
    self_label_epochs : int, default=10
        Passes of step (3); 0 skips it.
    confidence : float, default=0.99
        Probability above which a row is its own target in step (3).
    batch_size : int, default=512
        Rows per step; the entropy term is taken over a batch, so keep it
        several times ``n_clusters``.
    lr : float, default=1e-2
        Adam learning rate of step (2); step (3) uses a tenth of it.
    weight_decay : float, default=1e-4
        Adam weight decay.
    dropout : float, default=0.1
        Fraction of input features zeroed in each augmented copy.
    noise : float, default=0.5
        Standard deviation of the Gaussian noise added to each augmented
        copy, relative to each feature's standard deviation.
    device : str, default="cpu"
        "cpu", "cuda" or "auto" (CUDA when present).
    n_threads : int or None, default=1
        torch CPU threads during fit/predict (restored afterwards). One by
        default: the head's matrices are small, and a second OpenMP thread
        that spins while waiting made a fit 50-80x slower on a loaded
        2-core machine (2.7 s against 150-220 s, 900 rows, 15 epochs).
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the neighbour search's cells, the weights, the batches, the
        neighbour drawn and every augmentation.
    verbose : int, default=0
        1 shows a progress bar per stage (with accuracy, NMI and ARI per
        epoch when ``fit`` gets ``y``).

    Attributes
    ----------
    preprocessor_ : EmbeddingPreprocessor
    net_ : EmbeddingHeads
    head_ : int
        The head kept (lowest loss over the last epoch of step 2).
    neighbors_ : ndarray of shape (n_samples, n_neighbors)
        The mined neighbours of the training rows (not saved with the model).
    labels_ : ndarray of shape (n_samples,)
    proba_ : ndarray of shape (n_samples, n_clusters)
        The kept head's probabilities for the training rows (what
        :meth:`predict_proba` gives for them).
    history_ : list of dict
        One entry per epoch: stage, loss, per-head losses (step 2), the
        confident share (step 3), seconds, and accuracy/NMI/ARI given ``y``.
    n_features_in_ : int
        Width of the training embeddings; predict needs the same.
    device_ : str

    Notes
    -----
    Step (2) costs ``2 * epochs * n * (d * p + p * h * k)``-ish flops for
    ``p`` kept components; the neighbour search ``2 n^2 p`` (exact). The
    heads see the embeddings only, so what they reach is bounded by how often
    neighbours share a class: measure it with ``neighbors_``.
    """

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        objective: str = "scan",
        n_neighbors: int = 20,
        n_components: int | None = 128,
        whiten: bool = False,
        l2: bool = True,
        hidden: int = 256,
        n_heads: int = 5,
        entropy_weight: float = 5.0,
        epochs: int = 30,
        self_label_epochs: int = 10,
        confidence: float = 0.99,
        batch_size: int = 512,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        dropout: float = 0.1,
        noise: float = 0.5,
        device: str = "cpu",
        n_threads: int | None = 1,
        random_state: Any = None,
        verbose: int = 0,
    ):
        self.n_clusters = n_clusters
        self.objective = objective
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.whiten = whiten
        self.l2 = l2
        self.hidden = hidden
        self.n_heads = n_heads
        self.entropy_weight = entropy_weight
        self.epochs = epochs
        self.self_label_epochs = self_label_epochs
        self.confidence = confidence
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.noise = noise
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ #
    def _validate_params(self) -> None:
        check_int(self.n_clusters, "n_clusters", _OWNER, low=2)
        check_options(self.objective, "objective", _OWNER, OBJECTIVES)
        check_int(self.n_neighbors, "n_neighbors", _OWNER, low=1)
        check_int(self.n_components, "n_components", _OWNER, low=1, allow_none=True)
        check_int(self.hidden, "hidden", _OWNER, low=0)
        check_int(self.n_heads, "n_heads", _OWNER, low=1)
        check_real(self.entropy_weight, "entropy_weight", _OWNER, low=0.0)
        check_int(self.epochs, "epochs", _OWNER, low=1)
        check_int(self.self_label_epochs, "self_label_epochs", _OWNER, low=0)
        check_real(
            self.confidence, "confidence", _OWNER, low=0.0, high=1.0, closed="neither"
        )
        check_int(self.batch_size, "batch_size", _OWNER, low=2)
        check_real(self.lr, "lr", _OWNER, low=0.0, closed="neither")
        check_real(self.weight_decay, "weight_decay", _OWNER, low=0.0)
        check_real(self.dropout, "dropout", _OWNER, low=0.0, high=1.0, closed="left")
        check_real(self.noise, "noise", _OWNER, low=0.0)
        check_int(self.n_threads, "n_threads", _OWNER, low=1, allow_none=True)

    def _build(self, n_features: int, n_inputs: int, gen: torch.Generator) -> None:
        self.net_ = EmbeddingHeads(n_inputs, self.n_clusters, self.n_heads, self.hidden)
        self.net_.reset_parameters(gen)
        self.n_features_in_ = n_features

    # ------------------------------------------------------------------ #
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        views: Any = None,
        neighbors: Any = None,
        extra_neighbors: Any = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> SCAN:
        """Mine neighbours, train the heads, self-label.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The embeddings (e.g. ``features/cnn/features.npy``).
        y : array-like of shape (n_samples,), optional
            True classes, used only to report accuracy, NMI and ARI per epoch
            in ``history_`` (never for training or choosing the head).
        views : array-like of shape (n_views, n_samples, n_features), optional
            Other embeddings of the same items (e.g. of the mirrored images):
            each augmented copy starts from ``X`` or one of these, at random.
        neighbors : array-like of shape (n_samples, m), optional
            Neighbour indices to use instead of mining them (the first
            ``n_neighbors`` columns are used).
        extra_neighbors : array-like of shape (n_samples, m), optional
            Neighbours found in another space (IIC: the images' pixels):
            the last ``m`` of each row's ``n_neighbors``, the first
            ``n_neighbors - m`` mined in ``X`` as usual.
        callback : callable, optional
            Called with each epoch's history entry.
        """
        from clusterlens.metrics import evaluate_clustering

        self._validate_params()
        A = _check_X(X)
        n, d = A.shape
        if n <= self.n_clusters:
            raise DataValidationError(
                f"n_samples={n} should be > n_clusters={self.n_clusters}: a head "
                f"needs more rows than clusters. Lower {arg('n_clusters', '...')}."
            )
        labels_true = None
        if y is not None:
            labels_true = np.asarray(y)
            if labels_true.shape != (n,):
                raise DataValidationError(
                    f"y must have shape ({n},) to match X; got {labels_true.shape}."
                )
        view_arrays = self._check_views(views, n, d)
        rng = check_random_state(self.random_state)
        seed = int(rng.integers(0, 2**62))
        n_comp = None if self.n_components is None else min(self.n_components, d, n)
        self.preprocessor_ = EmbeddingPreprocessor(
            n_comp, bool(self.whiten), bool(self.l2)
        ).fit(A)
        Z = self.preprocessor_.transform(A)
        Zv = [self.preprocessor_.transform(v) for v in view_arrays]
        k_nn = min(self.n_neighbors, n - 1)
        if neighbors is not None and extra_neighbors is not None:
            raise InvalidParameterError(
                "Give 'neighbors' (all of them) or 'extra_neighbors' (some, the "
                "rest mined in X), not both."
            )
        if neighbors is None:
            extra = np.empty((n, 0), dtype=np.int64)
            if extra_neighbors is not None:
                extra = _check_neighbors(extra_neighbors, "extra_neighbors", n, 1)
                if extra.shape[1] > k_nn:
                    raise DataValidationError(
                        f"extra_neighbors has {extra.shape[1]} columns; at most "
                        f"n_neighbors={k_nn} fit."
                    )
            t0 = time.perf_counter()
            own = mine_neighbors(
                Z, k_nn - extra.shape[1], seed=seed % 2**31, verbose=self.verbose
            )
            self.neighbors_ = np.ascontiguousarray(np.concatenate([own, extra], 1))
            self.neighbor_seconds_ = time.perf_counter() - t0
        else:
            nb = _check_neighbors(neighbors, "neighbors", n, k_nn)
            self.neighbors_ = np.ascontiguousarray(nb[:, :k_nn])
            self.neighbor_seconds_ = 0.0
        device = _resolve_device(self.device)
        self.device_ = str(device)
        gen = torch.Generator().manual_seed(seed)
        with _torch_threads(self.n_threads), _deterministic(device):
            self._build(d, Z.shape[1], gen)
            net = self.net_.to(device)
            views_t = torch.stack([torch.from_numpy(v) for v in (Z, *Zv)]).to(device)
            nbrs = torch.from_numpy(self.neighbors_).to(device)
            std = views_t[0].std(dim=0, keepdim=True)
            self.history_: list[dict[str, Any]] = []
            self.head_ = 0
            bs = min(self.batch_size, n)
            # an epoch is at least _MIN_STEPS steps: a small set is passed
            # over several times (one permutation after another)
            n_passes = max(1, -(-_MIN_STEPS * bs // n))
            n_batches = max(1, n * n_passes // bs)

            def augment(idx: torch.Tensor) -> torch.Tensor:
                v = torch.randint(views_t.shape[0], (idx.shape[0],), generator=gen).to(
                    device
                )
                x = views_t[v, idx]
                if self.noise > 0:
                    eps = torch.randn(x.shape, generator=gen).to(device)
                    x = x + self.noise * std * eps
                if self.dropout > 0:
                    keep = torch.rand(x.shape, generator=gen).to(device) >= self.dropout
                    x = x * keep / (1.0 - self.dropout)
                return x

            def finish(entry: dict[str, Any], t0: float) -> None:
                self.proba_ = self._proba(Z, all_heads=False)
                self.labels_ = self.proba_.argmax(axis=1).astype(np.int64)
                entry["head"] = self.head_
                entry["n_clusters_used"] = int(np.unique(self.labels_).size)
                if labels_true is not None:
                    s = evaluate_clustering(labels_true, self.labels_)
                    entry.update(accuracy=s["accuracy"], nmi=s["nmi"], ari=s["ari"])
                entry["seconds"] = time.perf_counter() - t0
                self.history_.append(entry)
                logger.info(
                    "SCAN %s epoch %d: %s", entry["stage"], entry["epoch"], entry
                )
                if callback is not None:
                    callback(entry)

            # ---- step 2: the clustering heads on neighbour pairs -------- #
            opt = torch.optim.Adam(
                net.parameters(), lr=self.lr, weight_decay=self.weight_decay
            )
            bar = progress(
                total=self.epochs,
                desc=self.objective,
                unit="epoch",
                verbose=self.verbose,
            )
            for epoch in range(self.epochs):
                t0 = time.perf_counter()
                net.train()
                perm = self._permutation(n, n_passes, gen).to(device)
                sums = torch.zeros(self.n_heads, dtype=torch.float64)
                cons = torch.zeros(self.n_heads, dtype=torch.float64)
                ent = torch.zeros(self.n_heads, dtype=torch.float64)
                for b in range(n_batches):
                    idx = perm[b * bs : (b + 1) * bs]
                    pick = torch.randint(k_nn, (idx.shape[0],), generator=gen).to(
                        device
                    )
                    jdx = nbrs[idx, pick]
                    la, lb = net(augment(idx)), net(augment(jdx))
                    loss, c, e = self._pair_loss(la, lb)
                    opt.zero_grad(set_to_none=True)
                    loss.sum().backward()
                    opt.step()
                    sums += loss.detach().double().cpu()
                    cons += c.detach().double().cpu()
                    ent += e.detach().double().cpu()
                per_head = (sums / n_batches).tolist()
                if not np.isfinite(per_head).all():
                    raise InvalidParameterError(
                        f"SCAN training diverged at epoch {epoch + 1} (loss "
                        f"{per_head}); lower the learning rate, e.g. "
                        f"{arg('lr', '1e-4')}."
                    )
                self.head_ = int(np.argmin(per_head))
                entry = {
                    "stage": self.objective,
                    "epoch": epoch + 1,
                    "loss": per_head[self.head_],
                    "head_losses": per_head,
                    "consistency": float(cons[self.head_] / n_batches),
                    "entropy": float(ent[self.head_] / n_batches),
                }
                finish(entry, t0)
                bar.update(1)
                bar.set_postfix_str(self._postfix(entry))
            bar.close()

            # ---- step 3: self-labelling on the confident rows ---------- #
            if self.self_label_epochs:
                self._self_label(
                    Z, n, bs, n_passes, n_batches, augment, gen, device, finish
                )
        self.n_epochs_ = len(self.history_)
        return self

    def _pair_loss(
        self, la: torch.Tensor, lb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head loss of (row, neighbour) logits ``(B, H, k)``."""
        if self.objective == "scan":
            return scan_loss(la, lb, entropy_weight=self.entropy_weight)
        pa, pb = torch.softmax(la, dim=-1), torch.softmax(lb, dim=-1)
        losses = [iid_loss(pa[:, h], pb[:, h])[0] for h in range(self.n_heads)]
        loss = torch.stack(losses)
        zero = torch.zeros_like(loss)
        return loss, zero, zero

    def _self_label(
        self,
        Z: npt.NDArray[np.float32],
        n: int,
        bs: int,
        n_passes: int,
        n_batches: int,
        augment: Callable[[torch.Tensor], torch.Tensor],
        gen: torch.Generator,
        device: torch.device,
        finish: Callable[[dict[str, Any], float], None],
    ) -> None:
        """Class-balanced cross-entropy on the rows predicted confidently."""
        net, h, k = self.net_, self.head_, self.n_clusters
        clean = torch.from_numpy(Z).to(device)
        opt = torch.optim.Adam(
            net.parameters(),
            lr=self.lr * _SELF_LABEL_LR,
            weight_decay=self.weight_decay,
        )
        bar = progress(
            total=self.self_label_epochs,
            desc="self-label",
            unit="epoch",
            verbose=self.verbose,
        )
        for epoch in range(self.self_label_epochs):
            t0 = time.perf_counter()
            perm = self._permutation(n, n_passes, gen).to(device)
            total, n_conf, n_steps = 0.0, 0, 0
            for b in range(n_batches):
                idx = perm[b * bs : (b + 1) * bs]
                net.eval()
                with torch.no_grad():
                    p = torch.softmax(net(clean[idx])[:, h], dim=-1)
                net.train()
                conf, target = p.max(dim=1)
                mask = conf > self.confidence
                m = int(mask.sum())
                if m < 2:  # nothing to learn from (and BatchNorm needs 2 rows)
                    continue
                target = target[mask]
                counts = torch.bincount(target, minlength=k).to(p.dtype)
                weight = torch.where(counts > 0, 1.0 / counts.clamp(min=1), 0.0)
                weight = weight / weight.sum() * int((counts > 0).sum())
                logits = net(augment(idx[mask]))[:, h]
                loss = F.cross_entropy(logits, target, weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                n_conf += m
                n_steps += 1
            entry = {
                "stage": "self-label",
                "epoch": epoch + 1,
                "loss": total / max(n_steps, 1),
                "confident": n_conf / max(n_batches * bs, 1),
            }
            finish(entry, t0)
            bar.update(1)
            bar.set_postfix_str(self._postfix(entry))
        bar.close()

    @staticmethod
    def _permutation(n: int, n_passes: int, gen: torch.Generator) -> torch.Tensor:
        """``n_passes`` random permutations of the rows, one after another."""
        return torch.cat([torch.randperm(n, generator=gen) for _ in range(n_passes)])

    @staticmethod
    def _postfix(entry: dict[str, Any]) -> str:
        text = f"loss {entry['loss']:.4f}"
        if "accuracy" in entry:
            text += f" acc {entry['accuracy']:.4f} NMI {entry['nmi']:.4f}"
        return text

    def _check_views(self, views: Any, n: int, d: int) -> list[npt.NDArray[np.float32]]:
        if views is None:
            return []
        V = np.asarray(views)
        if V.ndim == 2:
            V = V[None]
        if V.ndim != 3 or V.shape[1:] != (n, d):
            raise DataValidationError(
                f"views must have shape (n_views, {n}, {d}) to match X; got {V.shape}."
            )
        return [_check_X(v, f"views[{i}]") for i, v in enumerate(V)]

    # ------------------------------------------------------------------ #
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_") or not hasattr(self, "preprocessor_"):
            raise NotFittedError(
                "This SCAN instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def _proba(
        self, Z: npt.NDArray[np.float32], *, all_heads: bool, chunk: int = 65_536
    ) -> npt.NDArray[np.float32]:
        net = self.net_
        device = next(net.parameters()).device
        net.eval()
        out = []
        with torch.inference_mode():
            for s in range(0, Z.shape[0], chunk):
                logits = net(torch.from_numpy(Z[s : s + chunk]).to(device))
                p = torch.softmax(logits.float(), dim=-1)
                out.append(p if all_heads else p[:, self.head_])
        net.train()
        return torch.cat(out).cpu().numpy()

    def predict_proba(self, X: Any) -> npt.NDArray[np.float32]:
        """Cluster probabilities ``(n_samples, n_clusters)`` from the kept head."""
        self._check_fitted()
        A = _check_X(X)
        if A.shape[1] != self.n_features_in_:
            raise DataValidationError(
                f"X has {A.shape[1]} features, but this SCAN head was fitted on "
                f"{self.n_features_in_}-d embeddings. Use the features it was "
                "trained on (the same CNN and settings), or train a new head."
            )
        with _torch_threads(self.n_threads):
            return self._proba(self.preprocessor_.transform(A), all_heads=False)

    def predict(self, X: Any) -> npt.NDArray[np.int64]:
        """Cluster of each row (arg-max of :meth:`predict_proba`)."""
        return self.predict_proba(X).argmax(axis=1).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
        """Fit, then return ``labels_``."""
        return self.fit(X, y, **kwargs).labels_

    # ------------------------------------------------------------------ #
    def save(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``path.npz`` (preprocessing and weights) + ``path.json``; no pickle."""
        arrays, params, attrs = self.state()
        return write_model(
            path,
            arrays,
            fmt=MODEL_FORMAT,
            version=FORMAT_VERSION,
            params=params,
            attributes=attrs,
            kind="SCAN",
        )

    def state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The fitted head as (arrays, parameters, attributes), what :meth:`save`
        writes; :meth:`from_state` reads it back (also inside another model's
        file, as a refined IIC keeps its SCAN head)."""
        self._check_fitted()
        params = dict(self.get_params())
        params["random_state"] = (
            params["random_state"]
            if isinstance(params["random_state"], int | None)
            else "generator"
        )
        arrays: dict[str, Any] = {
            f"pre/{k}": v for k, v in self.preprocessor_.arrays().items()
        }
        arrays.update(
            {
                f"model/{k}": v.detach().cpu().numpy()
                for k, v in self.net_.state_dict().items()
            }
        )
        attrs = {
            "head": self.head_,
            "n_features_in": self.n_features_in_,
            "n_inputs": int(self.preprocessor_.components_.shape[1]),
            "history": self.history_,
            "n_epochs": getattr(self, "n_epochs_", len(self.history_)),
        }
        return arrays, params, attrs

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> SCAN:
        """Read a model written by :meth:`save`."""
        fix = "train and save it again (clusterlens cluster --method scan, SCAN.save)"
        meta, arrays = read_model(
            path, fmt=MODEL_FORMAT, version=FORMAT_VERSION, what="SCAN model", fix=fix
        )
        json_path = model_paths(path)[1]
        try:
            return cls.from_state(
                arrays, dict(meta["params"]), meta["attributes"], device=device
            )
        except (KeyError, TypeError, ValueError) as e:
            reason = f"no {e}" if isinstance(e, KeyError) else str(e).rstrip(".")
            raise DataValidationError(
                invalid_file(json_path, "SCAN model description", reason, fix)
            ) from e

    @classmethod
    def from_state(
        cls,
        arrays: dict[str, Any],
        params: dict[str, Any],
        attrs: dict[str, Any],
        *,
        device: str = "cpu",
    ) -> SCAN:
        """The head :meth:`state` described; KeyError, TypeError or ValueError
        naming what does not fit (the caller names the file)."""
        params = dict(params)
        if params.get("random_state") == "generator":
            params["random_state"] = None
        unknown = sorted(set(params) - set(cls().get_params()))
        if unknown:
            raise ValueError(f"unknown parameters {', '.join(unknown)}")
        params["device"] = device
        model = cls(**params)
        model._validate_params()
        head, d, p = attrs["head"], attrs["n_features_in"], attrs["n_inputs"]
        for name, v, lo in (
            ("head", head, 0),
            ("n_features_in", d, 1),
            ("n_inputs", p, 1),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name!r} is {v!r}, not an int >= {lo}")
        if head >= model.n_heads:
            raise ValueError(f"'head' is {head}, but there are {model.n_heads} heads")
        pre = EmbeddingPreprocessor.from_arrays(
            {k[4:]: v for k, v in arrays.items() if k.startswith("pre/")},
            model.n_components,
            model.whiten,
            model.l2,
        )
        if pre.components_.shape != (d, p):
            raise ValueError(
                f"the preprocessing maps {pre.components_.shape}, expected ({d}, {p})"
            )
        history = attrs["history"]
        if not isinstance(history, list):
            raise ValueError("'history' is not a list")
        model.preprocessor_ = pre
        model._build(d, p, torch.Generator().manual_seed(0))
        state = {
            k[len("model/") :]: torch.from_numpy(np.array(v))
            for k, v in arrays.items()
            if k.startswith("model/")
        }
        try:
            model.net_.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(
                f"the weights do not match this SCAN head ({str(e).splitlines()[0]})"
            ) from e
        model.net_.to(_resolve_device(device))
        model.device_ = str(_resolve_device(device))
        model.head_ = head
        model.history_ = history
        model.n_epochs_ = len(history)
        return model
