"""The IIC estimator: training loop, sub-head selection, checkpoints, predict."""

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
from sklearn.base import BaseEstimator, ClusterMixin

from clusterlens.deep._loss import iid_loss
from clusterlens.deep._nets import BACKBONES, ClusterHeads, IICNet
from clusterlens.deep._optim_state import (
    check_optimizer_attrs,
    optimizer_arrays,
    restore_optimizer,
)
from clusterlens.deep._presets import DEFAULTS, get_preset
from clusterlens.deep._runtime import _deterministic, _resolve_device, _torch_threads
from clusterlens.deep._transforms import Transforms, default_transforms
from clusterlens.exceptions import (
    DataValidationError,
    InvalidParameterError,
    NotFittedError,
)
from clusterlens.io._checkpoint import fingerprint
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

__all__ = ["IIC", "as_image_tensor"]

logger = logging.getLogger(__name__)

_OWNER = "IIC"
MODEL_FORMAT = "clusterlens.iic"
CKPT_FORMAT = "clusterlens.iic.checkpoint"
FORMAT_VERSION = 1
CKPT_NAME = "iic-checkpoint"
# Self-labelling's learning rate, as a fraction of IIC's.
SELF_LABEL_LR_FACTOR = 0.1
#: What gives the clusters: the lowest-loss IIC sub-head, or a SCAN head
#: trained on the trunk's embeddings after IIC.
CLUSTER_HEADS = ("iic", "scan")
# The images' own neighbours are mined on thumbnails of at most this side.
PIXEL_SIDE = 32
# Parameters that may differ between a checkpoint and the run resuming it.
_RESUME_FREE = (
    "epochs",
    "self_label_epochs",
    "confidence",
    "cluster_head",
    "pixel_neighbors",
    "student_epochs",
    "verbose",
    "checkpoint_dir",
    "resume",
    "device",
    "n_threads",
)
#: Model formats of the IIC family, what each is and the command that reads it
#: (named when one is given where the other is expected).
MODEL_KINDS = {
    "clusterlens.iic": "an IIC image-classification model; use `clusterlens "
    "iic-predict` with it",
    "clusterlens.iic-seg": "an IIC segmentation model; use `clusterlens "
    "iic-seg-predict` with it",
}


def as_image_tensor(images: Any, name: str = "images") -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) images -> uint8 tensor (N, C, H, W), validated.

    ``uint8`` is used as it is; floats must lie in [0, 1] and are scaled to
    [0, 255]. The array is never written to.
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, :, :, None]
    if arr.ndim != 4 or arr.shape[3] not in (1, 3):
        raise DataValidationError(
            f"{name} must have shape (n_images, H, W) or (n_images, H, W, C) with C "
            f"in {{1, 3}}; got shape {arr.shape}."
        )
    if arr.shape[0] == 0:
        raise DataValidationError(f"{name} is empty; there is nothing to cluster.")
    if min(arr.shape[1:3]) < 8:
        raise DataValidationError(
            f"{name} are {arr.shape[1]}x{arr.shape[2]} pixels; IIC needs at least "
            "8x8. Resize them first."
        )
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise DataValidationError(
                f"{name} must be uint8 or floats in [0, 1]; got dtype {arr.dtype}."
            )
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
            raise DataValidationError(
                f"{name} as floats must lie in [0, 1]; got values in [{lo}, {hi}]. "
                "Scale them or pass uint8."
            )
        arr = np.rint(arr * 255.0).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def _check_finite_loss(value: float, lr: float, epoch: int, batch: int) -> None:
    """Stop a diverging run: a non-finite loss only ever gives NaN weights."""
    if np.isfinite(value):
        return
    raise InvalidParameterError(
        f"IIC training diverged: the loss became {value} at epoch {epoch}, batch "
        f"{batch}, with a learning rate of {lr:g}. Lower the learning rate, "
        f"e.g. {arg('lr', '2e-3')} (the default)."
    )


class IIC(ClusterMixin, BaseEstimator):  # type: ignore[misc]
    """Invariant Information Clustering: a CNN trained to cluster images.

    The network maps an image ``x`` and a random transformation ``g(x)`` of it
    to soft cluster assignments ``z`` and ``z'`` and maximises their mutual
    information ``I(z; z')`` over each batch (Ji et al., ICCV 2019). No label
    is used for training or for choosing the sub-head that predicts.

    Parameters
    ----------
    n_clusters : int, default=10
        Clusters of the main head (the number of classes), at least 2.
    preset : {"ji2019-mnist"} or None, default=None
        A named configuration that sets the parameters left at ``None``
        (an explicit argument always wins) and the transformations when
        ``transforms`` is None. ``"ji2019-mnist"``: the authors' MNIST run
        (net B at width 1 with 5x5 convolutions, 5 sub-heads, no
        overclustering, batch 140 x 5 repeats, Adam lr 1e-4, their
        transformations); see :data:`clusterlens.deep.PRESETS`.
    n_clusters_over : int or None, default=None
        Clusters of the auxiliary overclustering head; 0 trains no such head.
        ``None``: the preset's value, else 50.
    n_heads : int or None, default=None
        Sub-heads per head (single linear layers, cheap: 50 cost little
        more than 5); the main sub-head with the lowest loss over the last
        epoch predicts (``head_``). ``None``: the preset's value, else 5.
    head_restarts : int, default=0
        At the end of every epoch, re-initialise this many of the main
        sub-heads with the highest loss over that epoch (a stuck head gets a
        fresh start on the trained trunk). Never the chosen head (so
        ``predict`` is unaffected), nor one restarted at the end of the
        previous epoch (it gets one full epoch to converge).
    aux_mode : {"alternate", "joint"}, default="joint"
        How the two heads share the trunk: "alternate" trains the main and
        the auxiliary head on alternate batches (the paper alternates them);
        "joint" sums both heads' losses on every batch (one trunk pass feeds
        both, so each head sees every batch at almost no extra cost).
    n_repeats : int or None, default=None
        Sample repeats: each image of a batch is paired with this many
        independent random transformations of itself (``None``: the
        preset's value, else 4).
    batch_size : int or None, default=None
        Images per batch (before repeats). Small batches mean more steps per
        epoch, which is what a short CPU run needs (``None``: the preset's
        value, else 32).
    epochs : int, default=3
        Passes over the data with the IIC objective.
    self_label_epochs : int, default=0
        Then this many passes of self-labelling (the last step of SCAN, Van
        Gansbeke et al. 2020): the images the chosen sub-head assigns with
        probability above ``confidence`` (on the clean view, recomputed every
        batch) become targets of a class-balanced cross-entropy on a random
        transformation of themselves, which trains the trunk and that
        sub-head (minus the entropy of each batch's mean assignment, as in
        IIC's objective), with fresh Adam moments at a tenth of ``lr``. The
        sub-head choice is frozen at the last IIC epoch. A finished run
        resumes into it (``resume=True`` with more ``self_label_epochs``).
        0 skips it.
    confidence : float, default=0.99
        Probability above which an image is a self-labelling target.
    cluster_head : {"scan", "iic"}, default="scan"
        What gives the clusters. "scan": after training, cluster the trunk's
        embeddings of the training images with a SCAN head
        (:class:`clusterlens.deep.SCAN` with its defaults, seeded from
        ``random_state``: mined neighbours, neighbour consistency,
        self-labelling), which then predicts instead of the IIC sub-head
        (``scan_head_``; saved in the model file). "iic": the lowest-loss
        sub-head, as the paper (and models saved before this option). The
        sub-heads can settle on a partition that merges two classes and
        splits another while the trunk's neighbourhoods keep them apart: on
        all 70,000 MNIST digits after 2 epochs (3 seeds), sub-heads at 0.882
        / 0.963 / 0.970 accuracy, the SCAN head 0.988 / 0.988 / 0.987 (with
        ``pixel_neighbors``; 0.975 / 0.976 / 0.975 without);
        on CIFAR-10 from scratch (10 epochs) 0.236 -> 0.264 (test photos)
        and 0.225 -> 0.236 (10,000 train photos). Costs a pass over the
        images and the SCAN fit (2-3 minutes for 70,000 on 2 cores).
    pixel_neighbors : int, default=5
        With ``cluster_head="scan"``: how many of the SCAN head's neighbours
        of each image (20) come from the images themselves (thumbnails of at
        most 32 pixels a side, centred, projected on their top 128 principal
        axes, L2-normalised) instead of from the trunk's embeddings; 0: the
        trunk's only. A briefly trained trunk can keep one style of a class
        apart from the rest of it, and the head then joins that island to
        any cluster: on MNIST after 2 epochs the 7s with a crossbar (1.4 %
        of the digits) have 98 % of their 20 trunk neighbours among
        themselves and the rest split between 2s, 7s, 3s and 4s, and went to
        the 5s, 6s or 3s by the head's seed; 42 % of their pixel neighbours
        are other 7s. The 2-epoch trunks of 5 seeds: 0.975 / 0.976 / 0.975 /
        0.987 / 0.990 with the trunk's neighbours only, 0.988 / 0.988 /
        0.987 / 0.988 / 0.989 with 5 of 20 from the pixels; scikit-learn's
        digits (3 trunks x 3 head seeds): mean 0.927 -> 0.949, lowest 0.860
        -> 0.951; CIFAR-10 test photos from scratch (3 epochs, 3 head seeds):
        mean 0.254 -> 0.252, within the seeds' spread (see
        ``benchmarks/iic_mnist.py``).
    student_epochs : int, default=0
        After the clusters (SCAN head or sub-head), train a fresh
        convolutional network on the images for this many epochs, the
        images the clusters hold with probability above ``confidence`` as
        targets, with small random rotations, scalings and shifts (the
        last step of SCAN, on a new network rather than the IIC trunk);
        that network (``student_``, saved in the model file) then predicts.
        It fixes doubtful images from the sure ones, but learns the sure
        ones' mistakes as given. All 70,000 MNIST digits after 2 IIC epochs
        and the SCAN head (seeds 0-4: 0.988 / 0.988 / 0.987 / 0.988 /
        0.989): 5 epochs 0.9904 / 0.9905 / 0.9902 / 0.9904 / 0.9910, 3
        epochs 0.9896 / 0.9897 / 0.9893 / 0.9897 / 0.9904 (1.5-3 minutes
        an epoch on 2 cores); 3 epochs on 3,000 MNIST digits with
        the defaults 0.940 -> 0.963, on scikit-learn's digits (10 IIC
        epochs, 3 seeds) 0.980 / 0.961 / 0.946 -> 0.986 / 0.969 / 0.959.
        The images are shrunk to at most 32 pixels a side for it. Its
        probabilities are softer than a head's (it learns with label
        smoothing 0.1: about 0.9 at most), in the same order. 0: none.
    lr : float or None, default=None
        Adam learning rate (``None``: the preset's value, else 2e-3; the
        paper uses 1e-4 with far more epochs).
    lamb : float, default=1.0
        Entropy coefficient λ of the objective; 1 is plain mutual information.
    backbone : {"vgg4", "vgg6", "resnet"}, default="vgg4"
        ``"vgg4"``: the paper's base B (4 conv layers) for images up to about
        32 pixels; ``"vgg6"``: base C; ``"resnet"``: a small ResNet with
        global pooling for larger images.
    width : float or None, default=None
        Channel multiplier (1.0 = the paper's 64-128-256-512); ``None``: the
        preset's value, else 0.25 (16-32-64-128 trains about 14 times faster
        on a CPU than the paper's).
    kernel_size : int or None, default=None
        Side of the VGG trunks' convolutions, odd (the authors' MNIST net:
        5); ``None``: the preset's value, else 3.
    transforms : Transforms or None, default=None
        Random transformation settings; ``None`` picks the paper's for the
        image size and channel count (:func:`default_transforms`), with the
        preset's changes when one is named.
    device : str, default="auto"
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when present, else the
        ``device`` configuration, else CPU).
    n_threads : int or None, default=2
        torch CPU threads during ``fit``/``predict`` (restored afterwards);
        ``None`` leaves torch's setting alone.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the weights, the batches and every transformation.
    verbose : int, default=0
        1 shows a progress bar per epoch with the loss (and accuracy, NMI and
        ARI when ``fit`` gets ``y``).
    checkpoint_dir : path or None, default=None
        Folder for a checkpoint (``iic-checkpoint.npz`` + ``.json``) written
        after every epoch.
    resume : bool, default=False
        Continue from the checkpoint in ``checkpoint_dir`` (same data and
        parameters; ``epochs`` may grow).

    Attributes
    ----------
    net_ : IICNet
        The trained network.
    transforms_ : Transforms
        The transformation settings used.
    head_ : int
        Index of the main sub-head chosen (lowest loss in the last epoch).
    settings_ : dict
        The values that ran for the parameters a preset may set.
    labels_ : ndarray of shape (n_samples,)
        Clusters of the training images.
    proba_ : ndarray of shape (n_samples, n_clusters)
        Their cluster probabilities from the head that predicts (what
        :meth:`predict_proba` gives for the training images, without another
        pass over them).
    scan_head_ : SCAN or None
        The SCAN head that predicts (``cluster_head="scan"``), else None.
    history_ : list of dict
        One entry per epoch: losses (main, auxiliary, every sub-head's in
        ``head_losses``), seconds, the chosen head, the sub-heads restarted
        after it (``restarted``), and ``accuracy``/``nmi``/``ari`` and every
        sub-head's accuracy (``head_accuracies``) when ``y`` was given.
    n_epochs_ : int
        Epochs trained.
    image_shape_ : tuple of int
        ``(H, W, C)`` of the training images; ``predict`` needs the same.
    device_ : str
        The device that ran.

    Notes
    -----
    Ji, Henriques and Vedaldi, "Invariant Information Clustering for
    Unsupervised Image Classification and Segmentation", ICCV 2019. One epoch
    costs ``n_samples * (1 + n_repeats)`` forward and backward passes plus
    one forward pass for evaluation.
    """

    # What the model and checkpoint files are; subclasses (IICSegmenter) set
    # their own so that one kind of model is never read as the other.
    _model_format = MODEL_FORMAT
    _ckpt_format = CKPT_FORMAT
    _ckpt_name = CKPT_NAME
    _what = "IIC model"
    _command = "clusterlens iic"
    # None means "the preset's value, else ours" here (see _settings);
    # subclasses (IICSegmenter) store plain values in the same attributes.
    n_clusters_over: Any
    n_heads: Any
    n_repeats: Any
    batch_size: Any
    lr: Any
    width: Any

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        preset: str | None = None,
        n_clusters_over: int | None = None,
        n_heads: int | None = None,
        head_restarts: int = 0,
        aux_mode: str = "joint",
        n_repeats: int | None = None,
        batch_size: int | None = None,
        epochs: int = 3,
        self_label_epochs: int = 0,
        confidence: float = 0.99,
        cluster_head: str = "scan",
        pixel_neighbors: int = 5,
        student_epochs: int = 0,
        lr: float | None = None,
        lamb: float = 1.0,
        backbone: str = "vgg4",
        width: float | None = None,
        kernel_size: int | None = None,
        transforms: Transforms | None = None,
        device: str = "auto",
        n_threads: int | None = 2,
        random_state: Any = None,
        verbose: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
    ):
        self.n_clusters = n_clusters
        self.preset = preset
        self.n_clusters_over = n_clusters_over
        self.n_heads = n_heads
        self.head_restarts = head_restarts
        self.aux_mode = aux_mode
        self.n_repeats = n_repeats
        self.batch_size = batch_size
        self.epochs = epochs
        self.self_label_epochs = self_label_epochs
        self.confidence = confidence
        self.cluster_head = cluster_head
        self.pixel_neighbors = pixel_neighbors
        self.student_epochs = student_epochs
        self.lr = lr
        self.lamb = lamb
        self.backbone = backbone
        self.width = width
        self.kernel_size = kernel_size
        self.transforms = transforms
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume

    # ------------------------------------------------------------------ #
    def _settings(self) -> dict[str, Any]:
        """Each preset-able parameter: the argument, else the preset's, else ours."""
        preset = get_preset(self.preset, _OWNER)
        out = {}
        for key, default in DEFAULTS.items():
            value = getattr(self, key)
            if value is None:
                value = preset.params.get(key, default) if preset else default
            out[key] = value
        return out

    def _validate_params(self) -> None:
        check_int(self.n_clusters, "n_clusters", _OWNER, low=2)
        cfg = self._settings()
        check_int(cfg["n_clusters_over"], "n_clusters_over", _OWNER, low=0)
        if cfg["n_clusters_over"] == 1:
            raise InvalidParameterError(
                "The 'n_clusters_over' parameter of IIC must be 0 (no auxiliary "
                "head) or an int >= 2. Got 1 instead."
            )
        check_int(cfg["n_heads"], "n_heads", _OWNER, low=1)
        check_int(self.head_restarts, "head_restarts", _OWNER, low=0)
        if self.head_restarts > max(cfg["n_heads"] - 1, 0):
            raise InvalidParameterError(
                f"The 'head_restarts' parameter of IIC must be < n_heads="
                f"{cfg['n_heads']} (the chosen sub-head is never restarted). Got "
                f"{self.head_restarts} instead."
            )
        check_options(self.aux_mode, "aux_mode", _OWNER, ("alternate", "joint"))
        check_int(cfg["n_repeats"], "n_repeats", _OWNER, low=1)
        check_int(cfg["batch_size"], "batch_size", _OWNER, low=2)
        check_int(self.epochs, "epochs", _OWNER, low=1)
        check_int(self.self_label_epochs, "self_label_epochs", _OWNER, low=0)
        check_real(
            self.confidence, "confidence", _OWNER, low=0.0, high=1.0, closed="neither"
        )
        if hasattr(self, "cluster_head"):  # not IICSegmenter's
            check_options(self.cluster_head, "cluster_head", _OWNER, CLUSTER_HEADS)
            check_int(self.pixel_neighbors, "pixel_neighbors", _OWNER, low=0)
            check_int(self.student_epochs, "student_epochs", _OWNER, low=0)
        check_real(cfg["lr"], "lr", _OWNER, low=0.0, closed="neither")
        check_real(self.lamb, "lamb", _OWNER, low=0.0)
        check_options(self.backbone, "backbone", _OWNER, BACKBONES)
        check_real(cfg["width"], "width", _OWNER, low=0.0, closed="neither")
        check_int(cfg["kernel_size"], "kernel_size", _OWNER, low=1)
        if cfg["kernel_size"] % 2 == 0:
            raise InvalidParameterError(
                "The 'kernel_size' parameter of IIC must be an odd int (3, 5, ...). "
                f"Got {cfg['kernel_size']} instead."
            )
        if cfg["kernel_size"] != 3 and self.backbone == "resnet":
            raise InvalidParameterError(
                f"kernel_size={cfg['kernel_size']} applies to the vgg backbones "
                "only; the resnet backbone's convolutions are 3x3. Leave "
                "kernel_size out or pick backbone='vgg4'."
            )
        check_int(self.n_threads, "n_threads", _OWNER, low=1, allow_none=True)
        if self.transforms is not None and not isinstance(self.transforms, Transforms):
            raise InvalidParameterError(
                "The 'transforms' parameter of IIC must be a Transforms or None. "
                f"Got {self.transforms!r} instead."
            )
        if self.resume and self.checkpoint_dir is None:
            raise InvalidParameterError(
                "resume=True needs checkpoint_dir: the folder of the checkpoint to "
                "continue from."
            )

    def _fingerprint_params(self) -> dict[str, Any]:
        p = {k: v for k, v in self.get_params().items() if k not in _RESUME_FREE}
        p["transforms"] = None if self.transforms is None else self.transforms.to_dict()
        p["random_state"] = (
            p["random_state"] if isinstance(p["random_state"], int | None) else "gen"
        )
        return p

    def _build(self, shape: tuple[int, int, int]) -> None:
        h, w, c = shape
        preset = get_preset(self.preset, _OWNER)
        cfg = self.settings_ = self._settings()
        tf = self.transforms or default_transforms(
            h, w, c, **(preset.transforms if preset else {})
        )
        self.transforms_ = tf
        self.image_shape_ = shape
        self.net_ = IICNet(
            self.backbone,
            tf.out_channels(c),
            tf.input_size,
            self.n_clusters,
            cfg["n_clusters_over"],
            cfg["n_heads"],
            cfg["width"],
            cfg["kernel_size"],
        )

    # ------------------------------------------------------------------ #
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> IIC:
        """Train on images ``X``; ``y`` (optional) is used only for monitoring.

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W) or (n_samples, H, W, C)
            uint8 images (or floats in [0, 1]), C in {1, 3}.
        y : array-like of shape (n_samples,), default=None
            Known labels: reported per epoch (accuracy, NMI, ARI) and never
            used for training or for choosing the sub-head.
        callback : callable, default=None
            Called with each epoch's history entry.

        Returns
        -------
        self : IIC
        """
        from clusterlens.metrics import clustering_accuracy, evaluate_clustering

        self._validate_params()
        images = as_image_tensor(X, "X")
        n = images.shape[0]
        if n < self.n_clusters:
            raise DataValidationError(
                f"n_samples={n} should be >= n_clusters={self.n_clusters}."
            )
        if getattr(self, "cluster_head", "iic") == "scan" and n <= self.n_clusters:
            raise DataValidationError(
                f"n_samples={n} should be > n_clusters={self.n_clusters} for "
                f"{arg('cluster_head', 'scan')}: the SCAN head needs more "
                f"images than clusters (or give {arg('cluster_head', 'iic')})."
            )
        labels_true = None if y is None else np.asarray(y)
        if labels_true is not None and labels_true.shape != (n,):
            raise DataValidationError(
                f"y must have one label per image ({n}); got shape {labels_true.shape}."
            )
        shape = (int(images.shape[2]), int(images.shape[3]), int(images.shape[1]))
        device = _resolve_device(self.device)
        self.device_ = str(device)
        rng = check_random_state(self.random_state)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        scan_seed = int(rng.integers(2**31))
        student_seed = int(rng.integers(2**62))
        fp = fingerprint(images.numpy(), self._fingerprint_params())
        self.scan_head_: Any = None
        self.student_: Any = None
        self.student_history_: list[dict[str, Any]] = []

        with _torch_threads(self.n_threads), _deterministic(device):
            self._build(shape)
            cfg = self.settings_
            n_heads = cfg["n_heads"]
            net = self.net_
            net.reset_parameters(gen)
            net.to(device)
            opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
            self.history_: list[dict[str, Any]] = []
            start = 0
            if self.resume:
                start = self._load_checkpoint(opt, gen, fp)
            heads = ["main", "over"] if cfg["n_clusters_over"] else ["main"]
            bs = min(cfg["batch_size"], n)
            n_batches = max(1, n // bs)  # drop the ragged last batch
            total = self.epochs + self.self_label_epochs

            def end_epoch(entry: dict[str, Any], epoch: int, t0: float) -> None:
                """Record, log, checkpoint and report a finished epoch."""
                entry["seconds"] = time.perf_counter() - t0
                self.history_.append(entry)
                self.n_epochs_ = epoch + 1
                what = "self-labelling epoch" if epoch >= self.epochs else "epoch"
                logger.info("IIC %s %d: %s", what, epoch + 1, entry)
                if self.checkpoint_dir is not None:
                    self._save_checkpoint(opt, gen, fp)
                if callback is not None:
                    callback(entry)

            for epoch in range(start, total):
                t0 = time.perf_counter()
                if epoch >= self.epochs:
                    entry = self._self_label_epoch(
                        net, opt, images, epoch, gen, labels_true
                    )
                    end_epoch(entry, epoch, t0)
                    continue
                perm = torch.randperm(n, generator=gen)
                sums = {h: torch.zeros(n_heads, dtype=torch.float64) for h in heads}
                counts = dict.fromkeys(heads, 0)
                net.train()
                bar = progress(
                    total=n_batches,
                    desc=f"epoch {epoch + 1}/{self.epochs}",
                    verbose=self.verbose,
                    unit="batch",
                )
                for b in range(n_batches):
                    step_heads = (
                        heads if self.aux_mode == "joint" else [heads[b % len(heads)]]
                    )
                    xb = images[perm[b * bs : (b + 1) * bs]].to(device)
                    losses = self._step(net, opt, xb, step_heads, gen)
                    for head, per_head in losses.items():
                        _check_finite_loss(
                            float(per_head.sum()), cfg["lr"], epoch + 1, b + 1
                        )
                        sums[head] += per_head
                        counts[head] += 1
                    bar.update(1)
                    if b % 5 == 0 or b == n_batches - 1:
                        running = float(sums["main"].min()) / max(counts["main"], 1)
                        bar.set_postfix_str(f"loss {running:.4f}")
                entry = self._epoch_entry(epoch, heads, sums, counts)
                proba = self._predict_all(images, all_heads=True)  # (n, h, k)
                if not np.isfinite(proba).all():  # the last step broke the weights
                    _check_finite_loss(float("nan"), cfg["lr"], epoch + 1, n_batches)
                self.head_ = int(entry["head"])
                self.proba_ = proba[:, self.head_]
                self.labels_ = self.proba_.argmax(axis=1).astype(np.int64)
                entry["n_clusters_used"] = int(np.unique(self.labels_).size)
                if labels_true is not None:
                    s = evaluate_clustering(labels_true, self.labels_)
                    entry.update(accuracy=s["accuracy"], nmi=s["nmi"], ari=s["ari"])
                    entry["head_accuracies"] = [
                        clustering_accuracy(labels_true, proba[:, i].argmax(axis=1))
                        for i in range(n_heads)
                    ]
                    bar.set_postfix_str(
                        f"loss {entry['loss']:.4f} acc {s['accuracy']:.4f} "
                        f"NMI {s['nmi']:.4f} ARI {s['ari']:.4f}"
                    )
                entry["restarted"] = []
                if self.head_restarts:  # also after the last: resume = one run
                    entry["restarted"] = self._restart_heads(net, opt, entry, gen)
                bar.close()
                end_epoch(entry, epoch, t0)
            if start >= total:  # resumed a finished run: predict only
                self.head_ = int(self.history_[-1]["head"])
                self.proba_ = self._predict_all(images)
                self.labels_ = self.proba_.argmax(axis=1).astype(np.int64)
            if getattr(self, "cluster_head", "iic") == "scan":
                self._fit_scan_head(images, labels_true, scan_seed)
            if getattr(self, "student_epochs", 0):
                self._fit_student(images, labels_true, student_seed)
        self.n_epochs_ = max(start, total)
        return self

    def _fit_scan_head(
        self,
        images: torch.Tensor,
        labels_true: npt.NDArray[Any] | None,
        seed: int,
    ) -> None:
        """``cluster_head="scan"``: a SCAN head on the trunk's embeddings predicts
        (its neighbours from the trunk, ``pixel_neighbors`` of them from the
        images themselves)."""
        from clusterlens.deep._scan import SCAN

        scan = SCAN(
            self.n_clusters,
            device=self.device_,
            # SCAN's own default (one thread): its matrices are small, and a
            # second spinning OpenMP thread made the head's fit many times
            # slower on a loaded machine (the tests' two workers)
            random_state=seed,
            verbose=self.verbose,
        )
        k_nn = min(scan.n_neighbors, images.shape[0] - 1)
        n_pixel = min(int(getattr(self, "pixel_neighbors", 0)), k_nn)
        extra = None
        if n_pixel:
            extra = _pixel_neighbors(scan, pixel_rows(images), n_pixel, seed)
        scan.fit(self._trunk_features(images), labels_true, extra_neighbors=extra)
        logger.info("IIC's SCAN head: %s", scan.history_[-1])
        self.scan_head_ = scan
        self.proba_ = scan.proba_
        self.labels_ = scan.labels_

    def _fit_student(
        self, images: torch.Tensor, labels_true: npt.NDArray[Any] | None, seed: int
    ) -> None:
        """``student_epochs``: a fresh network learns the clusters' confident
        images and then predicts (see :mod:`clusterlens.deep._student`)."""
        from clusterlens.deep._student import fit_student

        confident = self.proba_.max(axis=1) > self.confidence
        if int(confident.sum()) < 2:
            logger.warning(
                "IIC student: %d image(s) above confidence=%s, too few to learn "
                "from; the clusters stay the %s's (lower --confidence).",
                int(confident.sum()),
                self.confidence,
                "SCAN head" if self.scan_head_ is not None else "sub-head",
            )
            return
        net, proba, history = fit_student(
            images,
            self.labels_,
            confident,
            self.n_clusters,
            self.student_epochs,
            generator=torch.Generator().manual_seed(seed),
            flip=bool(self.transforms_.flip),
            device=self.device_,
            labels_true=labels_true,
            verbose=self.verbose,
        )
        for h in history:
            h["confident_share"] = float(confident.mean())
        logger.info("IIC's student: %s", history[-1])
        self.student_ = net
        self.student_history_ = history
        self.proba_ = proba
        self.labels_ = proba.argmax(axis=1).astype(np.int64)

    def _self_label_epoch(
        self,
        net: IICNet,
        opt: torch.optim.Optimizer,
        images: torch.Tensor,
        epoch: int,
        gen: torch.Generator,
        labels_true: npt.NDArray[Any] | None,
    ) -> dict[str, Any]:
        """One pass of self-labelling on the chosen sub-head; its history entry.

        Each batch (``batch_size * n_repeats`` images, the images of one IIC
        step): targets are the chosen sub-head's arg-max on the clean view
        (network in eval mode) where its probability exceeds ``confidence``;
        the loss is the cross-entropy of those images' random transformation,
        each class weighted by the inverse of its count among the targets
        (SCAN's balancing, so a large cluster cannot swallow a small one),
        minus the entropy of the whole batch's mean assignment (IIC's H(z)
        term, which keeps every cluster in use).
        """
        import torch.nn.functional as F

        cfg, tf, head = self.settings_, self.transforms_, int(self.head_)
        main: ClusterHeads = net.heads["main"]  # type: ignore[assignment]
        device = next(net.parameters()).device
        n = images.shape[0]
        m = min(cfg["batch_size"] * cfg["n_repeats"], n)
        n_batches = max(1, n // m)
        if epoch == self.epochs:
            # a new objective starts with fresh Adam moments at a tenth of
            # the learning rate (SCAN gives this step its own optimizer): the
            # IIC momentum would keep moving every sub-head (a zero gradient
            # leaves a fresh moment at 0, so only the trunk and the chosen
            # sub-head change), and fresh moments at the full rate take
            # sign-sized first steps that collapsed the clusters in tests
            opt.state.clear()
            for g in opt.param_groups:
                g["lr"] = cfg["lr"] * SELF_LABEL_LR_FACTOR
        perm = torch.randperm(n, generator=gen)
        loss_sum, steps, n_conf, n_seen = 0.0, 0, 0, 0
        done = epoch + 1 - self.epochs
        bar = progress(
            total=n_batches,
            desc=f"self-labelling {done}/{self.self_label_epochs}",
            verbose=self.verbose,
            unit="batch",
        )
        for b in range(n_batches):
            xb = images[perm[b * m : (b + 1) * m]].to(device)
            net.eval()
            with torch.no_grad():
                conf, target = net(tf.clean(xb), "main")[:, head].max(dim=1)
            net.train()
            mask = conf > self.confidence
            n_seen += int(xb.shape[0])
            bar.update(1)
            if int(mask.sum()) < 2:  # batch norm needs two images
                continue
            n_conf += int(mask.sum())
            t = target[mask]
            feats = net.trunk(tf.random(xb, gen))
            logits = main.linear(feats).view(-1, main.n_heads, main.k)[:, head]
            present, counts = torch.unique(t, return_counts=True)
            weight = torch.ones(main.k, device=logits.device)
            weight[present] = t.numel() / counts.float()
            ce = F.cross_entropy(logits[mask], t, weight=weight)
            # minus the entropy of the batch's mean assignment (IIC's own
            # H(z)): without it, a head confident about one cluster only
            # taught every image that cluster (a collapse seen in tests)
            mean_p = torch.softmax(logits, dim=1).mean(dim=0)
            loss = ce + (mean_p * torch.log(mean_p.clamp_min(1e-12))).sum()
            _check_finite_loss(float(loss.detach()), cfg["lr"], epoch + 1, b + 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(ce.detach())
            steps += 1
            if b % 5 == 0 or b == n_batches - 1:
                bar.set_postfix_str(
                    f"cross-entropy {loss_sum / steps:.4f} "
                    f"confident {n_conf / max(n_seen, 1):.3f}"
                )
        bar.close()
        if not steps:
            logger.warning(
                "IIC self-labelling epoch %d: no image above confidence=%s; the "
                "network did not change (lower --confidence or train IIC longer).",
                epoch + 1,
                self.confidence,
            )
        proba = self._predict_all(images)
        if not np.isfinite(proba).all():
            _check_finite_loss(float("nan"), cfg["lr"], epoch + 1, n_batches)
        self.proba_ = proba
        self.labels_ = proba.argmax(axis=1).astype(np.int64)
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "phase": "self-label",
            "head": head,
            "self_label_loss": loss_sum / steps if steps else None,
            "confident_share": n_conf / max(n_seen, 1),
            "n_clusters_used": int(np.unique(self.labels_).size),
        }
        if labels_true is not None:
            from clusterlens.metrics import evaluate_clustering

            sc = evaluate_clustering(labels_true, self.labels_)
            entry.update(accuracy=sc["accuracy"], nmi=sc["nmi"], ari=sc["ari"])
        return entry

    def _step(
        self,
        net: IICNet,
        opt: torch.optim.Optimizer,
        xb: torch.Tensor,
        heads: list[str],
        gen: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """One optimisation step on ``heads``; returns per-sub-head losses."""
        tf, r = self.transforms_, self.settings_["n_repeats"]
        n_heads = self.settings_["n_heads"]
        x = tf.first(xb, gen)
        tx = tf.random(xb.repeat(r, 1, 1, 1), gen)
        fx, ftx = net.trunk(x), net.trunk(tx)
        total = fx.new_zeros(())
        out = {}
        for head in heads:
            z = net.heads[head](fx).repeat(
                r, 1, 1
            )  # row i*n + j pairs with tx[i*n + j]
            zt = net.heads[head](ftx)
            plain = torch.zeros(n_heads, dtype=torch.float64)
            for i in range(n_heads):
                loss, loss_plain = iid_loss(z[:, i], zt[:, i], lamb=self.lamb)
                total = total + loss / n_heads
                plain[i] = float(loss_plain)
            out[head] = plain
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return out

    def _restart_heads(
        self,
        net: IICNet,
        opt: torch.optim.Optimizer,
        entry: dict[str, Any],
        gen: torch.Generator,
    ) -> list[int]:
        """Re-initialise the worst main sub-heads of the epoch (and their Adam
        moments); returns their indices, worst first."""
        losses = np.asarray(entry["head_losses"])
        previous = set(self.history_[-1].get("restarted", [])) if self.history_ else ()
        order = np.argsort(-losses, kind="stable")
        pick = [
            int(i) for i in order if int(i) != entry["head"] and int(i) not in previous
        ][: self.head_restarts]
        if not pick:
            return []
        main: ClusterHeads = net.heads["main"]  # type: ignore[assignment]
        lin, k = main.linear, main.k
        rows = torch.cat([torch.arange(i * k, (i + 1) * k) for i in pick])
        rows = rows.to(lin.weight.device)
        bound = 1.0 / float(np.sqrt(lin.in_features))
        with torch.no_grad():
            fresh = torch.rand(len(rows), lin.in_features, generator=gen)
            lin.weight[rows] = ((fresh * 2 - 1) * bound).to(lin.weight)
            lin.bias[rows] = 0.0
            for param in (lin.weight, lin.bias):
                state = opt.state.get(param, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key][rows] = 0.0
        logger.info("IIC epoch %d: restarted sub-heads %s", entry["epoch"], pick)
        return pick

    def _epoch_entry(
        self,
        epoch: int,
        heads: list[str],
        sums: dict[str, torch.Tensor],
        counts: dict[str, int],
    ) -> dict[str, Any]:
        main = (sums["main"] / max(counts["main"], 1)).tolist()
        best = int(np.argmin(main))
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": main[best],
            "head": best,
            "head_losses": main,
        }
        if "over" in heads:
            over = (sums["over"] / max(counts["over"], 1)).tolist()
            entry["loss_over"] = float(np.mean(over))
        return entry

    # ------------------------------------------------------------------ #
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_") or not hasattr(self, "head_"):
            raise NotFittedError(
                "This IIC instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def _predict_all(
        self, images: torch.Tensor, *, all_heads: bool = False, chunk: int = 1024
    ) -> npt.NDArray[np.float32]:
        net, tf = self.net_, self.transforms_
        device = next(net.parameters()).device
        net.eval()
        out = []
        with torch.inference_mode():
            for s in range(0, images.shape[0], chunk):
                x = tf.clean(images[s : s + chunk].to(device))
                p = net(x, "main")
                out.append(p if all_heads else p[:, self.head_])
        net.train()
        return torch.cat(out).float().cpu().numpy()

    def _trunk_features(
        self, images: torch.Tensor, chunk: int = 1024
    ) -> npt.NDArray[np.float32]:
        """Trunk embeddings of the clean view of ``images`` (N, C, H, W)."""
        net, tf = self.net_, self.transforms_
        device = next(net.parameters()).device
        was_training = net.training
        out = []
        net.eval()
        try:
            with torch.inference_mode():
                for s in range(0, images.shape[0], chunk):
                    x = tf.clean(images[s : s + chunk].to(device))
                    out.append(net.trunk(x).float().cpu())
        finally:
            net.train(was_training)
        return np.ascontiguousarray(torch.cat(out).numpy(), dtype=np.float32)

    def predict_proba(self, X: Any) -> npt.NDArray[np.float32]:
        """Cluster probabilities ``(n_samples, n_clusters)`` from the chosen head
        (the SCAN head on the trunk's embeddings when ``cluster_head="scan"``)."""
        self._check_fitted()
        images = as_image_tensor(X, "X")
        shape = (int(images.shape[2]), int(images.shape[3]), int(images.shape[1]))
        if shape != tuple(self.image_shape_):
            h, w, c = self.image_shape_
            raise DataValidationError(
                f"X holds {shape[0]}x{shape[1]} images with {shape[2]} channel(s); "
                f"this model was trained on {h}x{w} with {c}. Resize the images first."
            )
        with _torch_threads(self.n_threads):
            student = getattr(self, "student_", None)
            if student is not None:
                from clusterlens.deep._student import predict_student, student_input

                return predict_student(student, student_input(images))
            scan = getattr(self, "scan_head_", None)
            if scan is not None:
                return scan.predict_proba(self._trunk_features(images))
            return self._predict_all(images)

    def predict(self, X: Any) -> npt.NDArray[np.int64]:
        """Cluster of each image (arg-max of :meth:`predict_proba`)."""
        return self.predict_proba(X).argmax(axis=1).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
        """Fit, then return ``labels_``."""
        return self.fit(X, y, **kwargs).labels_

    # ------------------------------------------------------------------ #
    def _meta(self) -> tuple[dict[str, Any], dict[str, Any]]:
        params = self._fingerprint_params()
        params.update(
            epochs=self.epochs,
            self_label_epochs=self.self_label_epochs,
            confidence=self.confidence,
        )
        if "cluster_head" in self.get_params():  # not IICSegmenter's
            params["cluster_head"] = self.cluster_head
            params["pixel_neighbors"] = self.pixel_neighbors
            params["student_epochs"] = self.student_epochs
        attrs = {
            "head": getattr(self, "head_", None),
            "image_shape": list(self.image_shape_),
            "transforms": self.transforms_.to_dict(),
            "settings": getattr(self, "settings_", None),
            "history": self.history_,
            "n_epochs": getattr(self, "n_epochs_", 0),
        }
        return params, attrs

    def save(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``path.npz`` (weights as arrays) + ``path.json``; no pickle."""
        self._check_fitted()
        params, attrs = self._meta()
        arrays = {
            f"model/{k}": v.detach().cpu().numpy()
            for k, v in self.net_.state_dict().items()
        }
        scan = getattr(self, "scan_head_", None)
        if scan is not None:
            s_arrays, s_params, s_attrs = scan.state()
            arrays.update({f"scan/{k}": v for k, v in s_arrays.items()})
            attrs["scan_head"] = {"params": s_params, "attributes": s_attrs}
        student = getattr(self, "student_", None)
        if student is not None:
            st_arrays, st_params = student.state()
            arrays.update({f"student/{k}": v for k, v in st_arrays.items()})
            attrs["student"] = {
                "params": st_params,
                "history": getattr(self, "student_history_", []),
            }
        return write_model(
            path,
            arrays,
            fmt=self._model_format,
            version=FORMAT_VERSION,
            params=params,
            attributes=attrs,
            kind=type(self).__name__,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "auto") -> IIC:
        """Read a model written by :meth:`save`."""
        fix = f"train and save it again with `{cls._command}` ({cls.__name__}.save)"
        meta, arrays = read_model(
            path,
            fmt=cls._model_format,
            version=FORMAT_VERSION,
            what=cls._what,
            fix=fix,
            other_formats=MODEL_KINDS,
        )
        json_path = model_paths(path)[1]
        try:
            params = dict(meta["params"])
            attrs = meta["attributes"]
            model = cls._from_meta(params, attrs, device)
            model.scan_head_ = _scan_head(model, arrays, attrs, device)
            model.student_, model.student_history_ = _student(model, attrs)
        except (KeyError, TypeError, ValueError) as e:
            reason = f"no {e}" if isinstance(e, KeyError) else str(e).rstrip(".")
            raise DataValidationError(
                invalid_file(json_path, f"{cls._what} description", reason, fix)
            ) from e
        _load_state(model.net_, arrays, "model/", path)
        model.net_.to(_resolve_device(device))
        if model.student_ is not None:
            _load_state(model.student_, arrays, "student/", path)
            model.student_.to(_resolve_device(device))
        model.device_ = str(_resolve_device(device))
        return model

    @classmethod
    def _from_meta(
        cls, params: dict[str, Any], attrs: dict[str, Any], device: str
    ) -> IIC:
        """An unfitted-weights model with the saved parameters and attributes."""
        tf = params.pop("transforms", None)
        known = cls().get_params()
        if "cluster_head" in known:  # not IICSegmenter's
            # files written before the options predict with the sub-head,
            # and their SCAN heads (if any) learnt from the trunk's neighbours
            params.setdefault("cluster_head", "iic")
            params.setdefault("pixel_neighbors", 0)
            params.setdefault("student_epochs", 0)
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"unknown parameters {', '.join(unknown)}")
        model = cls(**params, device=device)
        model._validate_params()
        model.transforms = None if tf is None else Transforms.from_dict(tf)
        shape = _image_shape(attrs["image_shape"])
        model._build(shape)
        model.transforms_ = Transforms.from_dict(attrs["transforms"])
        model.head_ = _int_in(attrs["head"], "head", 0, model.settings_["n_heads"] - 1)
        model.history_ = _history(attrs["history"])
        model.n_epochs_ = _int_in(attrs["n_epochs"], "n_epochs", 0, None)
        return model

    # ------------------------------------------------------------------ #
    def _save_checkpoint(
        self, opt: torch.optim.Optimizer, gen: torch.Generator, fp: str
    ) -> None:
        params, attrs = self._meta()
        attrs["fingerprint"] = fp
        arrays: dict[str, Any] = {
            f"model/{k}": v.detach().cpu().numpy()
            for k, v in self.net_.state_dict().items()
        }
        opt_arrays, opt_attrs = optimizer_arrays(opt)
        arrays.update(opt_arrays)
        attrs.update(opt_attrs)
        arrays["rng/torch"] = gen.get_state().numpy()
        write_model(
            Path(self.checkpoint_dir) / self._ckpt_name,  # type: ignore[arg-type]
            arrays,
            fmt=self._ckpt_format,
            version=FORMAT_VERSION,
            params=params,
            attributes=attrs,
            kind=f"{type(self).__name__} checkpoint",
        )

    def _load_checkpoint(
        self, opt: torch.optim.Optimizer, gen: torch.Generator, fp: str
    ) -> int:
        name = self._ckpt_name
        path = Path(self.checkpoint_dir) / name  # type: ignore[arg-type]
        if not path.with_name(name + ".json").is_file():
            raise DataValidationError(
                f"No IIC checkpoint in {self.checkpoint_dir} to resume from. Run "
                "once without --resume (with this checkpoint folder) first."
            )
        fix = (
            "start again without resuming (leave out --resume), or in a new "
            "checkpoint folder"
        )
        meta, arrays = read_model(
            path,
            fmt=self._ckpt_format,
            version=FORMAT_VERSION,
            what="IIC checkpoint",
            fix=fix,
            keys=("rng/torch",),
        )
        json_path = model_paths(path)[1]
        try:
            attrs = meta["attributes"]
            history = _history(attrs["history"])
            done = _int_in(attrs["n_epochs"], "n_epochs", 1, None)
            if done != len(history):
                raise ValueError(
                    f"'n_epochs' is {done} but 'history' holds {len(history)} epochs"
                )
            check_optimizer_attrs(attrs)
        except (KeyError, TypeError, ValueError) as e:
            reason = f"no {e}" if isinstance(e, KeyError) else str(e).rstrip(".")
            raise DataValidationError(
                invalid_file(json_path, "IIC checkpoint description", reason, fix)
            ) from e
        if attrs.get("fingerprint") != fp:
            raise DataValidationError(
                f"The checkpoint in {self.checkpoint_dir} was written for other data "
                "or other parameters; resume with the same data and options, or use "
                "a new checkpoint folder."
            )
        planned = self.epochs + int(getattr(self, "self_label_epochs", 0))
        if done > planned:
            raise InvalidParameterError(
                f"The checkpoint in {self.checkpoint_dir} has {done} epochs done, more "
                f"than the {planned} planned (epochs={self.epochs}, --epochs on the "
                "command line, plus self_label_epochs): resume with as many to "
                "continue it, or start again in a new checkpoint folder."
            )
        phases = [h.get("phase", "iic") for h in history]
        if "self-label" in phases[: self.epochs]:
            raise InvalidParameterError(
                f"The checkpoint in {self.checkpoint_dir} started self-labelling "
                f"after epoch {phases.index('self-label')}; resume with that "
                f"--epochs, not {self.epochs}."
            )
        _load_state(self.net_, arrays, "model/", path)
        try:
            restore_optimizer(opt, arrays, attrs)
            gen.set_state(torch.from_numpy(arrays["rng/torch"].astype(np.uint8)))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise DataValidationError(
                invalid_file(
                    path.with_name(name + ".npz"),
                    "IIC checkpoint",
                    f"its optimizer or random state cannot be restored: {e}",
                    fix,
                )
            ) from e
        self.history_ = history
        if self.history_:
            self.head_ = int(self.history_[-1]["head"])
        logger.info("Resumed IIC from %s after epoch %d", path, done)
        return done


def pixel_rows(
    images: torch.Tensor, side: int = PIXEL_SIDE, chunk: int = 4096
) -> npt.NDArray[np.float32]:
    """The images (N, C, H, W) as rows of pixels in [0, 1], shrunk (area
    averaging) so that neither side exceeds ``side``: the student's input
    (:func:`~clusterlens.deep._student.student_input`), flattened."""
    from clusterlens.deep._student import student_input

    x = student_input(images, side, chunk)
    return np.ascontiguousarray(x.reshape(x.shape[0], -1).numpy())


def _pixel_neighbors(
    scan: Any, X: npt.NDArray[np.float32], k: int, seed: int
) -> npt.NDArray[np.int64]:
    """The ``k`` nearest other rows of each row of pixels ``X`` after
    ``scan``'s preprocessing (centre, top principal axes, L2), as it mines
    its own in the trunk's embeddings."""
    from clusterlens.deep._scan import EmbeddingPreprocessor, mine_neighbors

    n, d = X.shape
    n_comp = None if scan.n_components is None else min(scan.n_components, d, n)
    pre = EmbeddingPreprocessor(n_comp, bool(scan.whiten), bool(scan.l2))
    return mine_neighbors(pre.fit(X).transform(X), k, seed=seed)


def _scan_head(
    model: IIC, arrays: dict[str, Any], attrs: dict[str, Any], device: str
) -> Any:
    """The saved SCAN head of a ``cluster_head="scan"`` model, else None."""
    if getattr(model, "cluster_head", "iic") != "scan":
        return None
    if not isinstance(attrs.get("scan_head"), dict):
        raise ValueError("'cluster_head' is 'scan' but the file holds no SCAN head")
    from clusterlens.deep._scan import SCAN

    saved = attrs["scan_head"]
    scan = SCAN.from_state(
        {k[len("scan/") :]: v for k, v in arrays.items() if k.startswith("scan/")},
        saved["params"],
        saved["attributes"],
        device=str(_resolve_device(device)),
    )
    if scan.n_clusters != model.n_clusters:
        raise ValueError(
            f"the SCAN head has {scan.n_clusters} clusters, the model "
            f"{model.n_clusters}"
        )
    return scan


def _student(model: IIC, attrs: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The saved student network (weights not yet loaded) and its history,
    or ``(None, [])`` for a model without one."""
    saved = attrs.get("student")
    if saved is None:
        return None, []
    if not isinstance(saved, dict) or not isinstance(saved.get("params"), dict):
        raise ValueError("'student' is not an object with 'params'")
    from clusterlens.deep._student import StudentNet

    p = saved["params"]
    k = _int_in(p.get("k"), "student.k", model.n_clusters, model.n_clusters)
    net = StudentNet(
        _int_in(p.get("in_channels"), "student.in_channels", 1, 3),
        k,
        _int_in(p.get("width"), "student.width", 1, None),
    )
    history = saved.get("history", [])
    if not isinstance(history, list):
        raise ValueError("'student.history' is not a list")
    return net, history


def _int_in(value: Any, name: str, low: int, high: int | None) -> int:
    """``value`` as an int in ``[low, high]``; ValueError naming ``name`` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name!r} is {value!r}, not an integer")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{name!r} is {value}, expected >= {low}{upper}")
    return value


def _image_shape(value: Any) -> tuple[int, int, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"'image_shape' is {value!r}, not [height, width, channels]")
    h, w, c = (_int_in(v, "image_shape", 1, None) for v in value)
    if c not in (1, 3):
        raise ValueError(f"'image_shape' has {c} channels, expected 1 or 3")
    return h, w, c


def _history(value: Any) -> list[dict[str, Any]]:
    """Per-epoch entries: epoch i (1-based) with its chosen sub-head."""
    if not isinstance(value, list) or not all(isinstance(h, dict) for h in value):
        raise ValueError("'history' is not a list of per-epoch objects")
    for i, h in enumerate(value):
        _int_in(h.get("epoch"), f"history[{i}].epoch", i + 1, i + 1)
        _int_in(h.get("head"), f"history[{i}].head", 0, None)
    return list(value)


def _load_state(
    net: torch.nn.Module, arrays: dict[str, Any], prefix: str, path: Any
) -> None:
    state = {
        k[len(prefix) :]: torch.from_numpy(np.array(v))
        for k, v in arrays.items()
        if k.startswith(prefix)
    }
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DataValidationError(
            f"{path} does not match this network ({str(e).splitlines()[0]})."
        ) from e
