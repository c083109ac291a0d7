"""IIC for unsupervised segmentation: per-pixel clusters from paired views.

The second view of each image is a known random geometric transformation of
the first (a crop rescaled to the full frame, and a horizontal flip) with
colour jitter; the network's output on it is mapped back onto the first
view's grid (:func:`invert_geometry`), and IIC's objective is taken between a
pixel and its neighbours within a local window (paper eq. 5,
:func:`~clusterlens.deep.iid_segmentation_loss`) over the pixels both views
see.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from clusterlens.deep._iic import IIC, _check_finite_loss, _history, _int_in
from clusterlens.deep._loss import iid_segmentation_loss
from clusterlens.deep._runtime import _deterministic, _resolve_device, _torch_threads
from clusterlens.deep._seg_nets import (
    IIC_CNN_LAYERS,
    LEGACY_CNN_LAYERS,
    SEG_FEATURES,
    SegNet,
    check_cnn_layers,
)
from clusterlens.deep._transforms import jitter, sobel
from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.features._effnet import check_backbone
from clusterlens.io._checkpoint import fingerprint
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import (
    check_int,
    check_options,
    check_random_state,
    check_real,
)

__all__ = [
    "IICSegmenter",
    "SegTransforms",
    "apply_geometry",
    "invert_geometry",
    "random_geometry",
    "segmentation_step_loss",
]

logger = logging.getLogger(__name__)

_OWNER = "IICSegmenter"


@dataclass(frozen=True)
class SegTransforms:
    """Settings of the second view and of the network input.

    Parameters
    ----------
    crop_min : float
        Smallest side of the random crop that the second view rescales to
        the full frame, as a fraction of the image's side (1 is no crop).
    flip : bool
        Random horizontal flips of the second view (p = 0.5).
    brightness, contrast, saturation, hue : float
        Colour jitter of the second view (torchvision's meaning).
    sobel : bool
        Feed the Sobel responses of the grey image (2 channels) to the
        ``"rgb"`` trunk, with the colour kept when ``include_rgb``.
    include_rgb : bool
        With ``sobel``: 5 channels, the colour and the edges.
    """

    crop_min: float = 0.6
    flip: bool = True
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    sobel: bool = False
    include_rgb: bool = True

    def in_channels(self) -> int:
        """Channels the network reads."""
        return (2 + 3 * self.include_rgb) if self.sobel else 3

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Float RGB in [0, 1] -> the network input (Sobel when asked)."""
        if not self.sobel:
            return x
        edges = sobel(x)
        return torch.cat([edges, x], dim=1) if self.include_rgb else edges

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegTransforms:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


# --------------------------------------------------------------------------- #
# The known geometric transformation and its inverse
# --------------------------------------------------------------------------- #
def random_geometry(
    n: int, generator: torch.Generator, *, crop_min: float, flip: bool
) -> torch.Tensor:
    """Random affine maps ``theta`` (n, 2, 3) from second-view to first-view
    coordinates (torch's normalised [-1, 1] grid): a crop of side ``s`` in
    ``[crop_min, 1]`` of the frame at a random place, mirrored with p = 0.5."""
    g = generator
    s = crop_min + (1.0 - crop_min) * torch.rand(n, generator=g)
    tx = (torch.rand(n, generator=g) * 2 - 1) * (1 - s)
    ty = (torch.rand(n, generator=g) * 2 - 1) * (1 - s)
    f = torch.ones(n)
    if flip:
        f = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    zero = torch.zeros(n)
    return torch.stack(
        [torch.stack([s * f, zero, tx], 1), torch.stack([zero, s, ty], 1)], 1
    )


def apply_geometry(
    x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear"
) -> torch.Tensor:
    """The second view: ``x`` (n, C, H, W) resampled through ``theta``."""
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)


def invert_geometry(
    z: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map the second view's output ``z`` (n, C, h, w) back onto the first
    view's grid: ``(z_back, mask)``, where ``mask`` (n, 1, h, w) is 1 at the
    pixels the second view saw and ``z_back`` is 0 elsewhere."""
    a = theta[:, :, :2]
    a_inv = torch.linalg.inv(a)
    t_inv = -(a_inv @ theta[:, :, 2:])
    theta_inv = torch.cat([a_inv, t_inv], dim=2).to(z)
    grid = F.affine_grid(theta_inv, list(z.shape), align_corners=False)
    back = F.grid_sample(z, grid, mode=mode, padding_mode="border", align_corners=False)
    inside = (grid.abs() <= 1.0 + 1e-6).all(dim=-1).unsqueeze(1).to(z.dtype)
    return back * inside, inside


def segmentation_step_loss(
    z: torch.Tensor,
    zt_back: torch.Tensor,
    mask: torch.Tensor,
    *,
    half_window: int,
    lamb: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IIC segmentation loss of every sub-head: ``(total, per_head_plain)``.

    ``z`` and ``zt_back`` are ``(n, n_heads, k, h, w)``: the first view's
    probabilities and the second view's mapped back; ``mask`` (n, 1, h, w)
    keeps the pixels both views see. ``total`` averages the sub-heads'
    losses (minus I_λ over the window); ``per_head_plain`` holds each
    sub-head's -I (λ = 1), detached.
    """
    n_heads = z.shape[1]
    total = z.new_zeros(())
    plain = torch.zeros(n_heads, dtype=torch.float64)
    for i in range(n_heads):
        loss, loss_plain = iid_segmentation_loss(
            z[:, i] * mask, zt_back[:, i] * mask, half_window=half_window, lamb=lamb
        )
        total = total + loss / n_heads
        plain[i] = float(loss_plain)
    return total, plain


def _as_rgb_tensor(images: Any, name: str) -> torch.Tensor:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[3] != 3 or arr.dtype != np.uint8:
        raise DataValidationError(
            f"{name} must be uint8 RGB images of shape (n_images, H, W, 3); got "
            f"shape {arr.shape} and dtype {arr.dtype}."
        )
    if arr.shape[0] == 0:
        raise DataValidationError(f"{name} is empty; there is nothing to segment.")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


class IICSegmenter(IIC):
    """IIC for unsupervised segmentation: a cluster for every pixel.

    A fully convolutional network maps an image and a known random
    transformation of it (crop-and-rescale, flip, colour jitter) to
    per-pixel cluster probabilities; the transformation is undone on the
    second output and IIC's mutual information is maximised between each
    pixel and its neighbours within ``half_window`` (Ji et al., ICCV 2019,
    eq. 5). No label is used for training or for choosing the sub-head.

    Parameters
    ----------
    n_clusters : int, default=3
        Clusters of the main head (the number of classes), at least 2.
    n_clusters_over : int, default=15
        Clusters of the overclustering head trained beside it (0: none).
    n_heads : int, default=3
        Sub-heads per head; the main sub-head with the lowest loss over the
        last epoch predicts (``head_``).
    features : {"rgb", "cnn"}, default="rgb"
        ``"rgb"``: a 6-layer VGG-style trunk learnt from the pixels (stride
        4); ``"cnn"``: the frozen ImageNet EfficientNet-Lite feature maps
        (``cnn_layers``, upsampled to stride 8) under two trainable
        convolutions.
    cnn_layers : sequence of {"s8", "s16", "s32", "head"} or None, default=None
        The frozen maps the ``"cnn"`` trunk reads (see
        :class:`~clusterlens.deep.CnnFeatureMaps`); None is ``("s8", "s16")``,
        the trunk of the models written before this parameter existed: on
        CamVid test (one 14-minute run per task, seed 0) adding the head
        lowered IIC to 0.808 / 0.488 (CamVid-3 / -6) from 0.851 / 0.569,
        though it lifts k-means on the maps (benchmarks/iic_seg.py).
    backbone : {"lite0", "lite1", "lite2"}, default="lite0"
        Whose packaged ImageNet weights the ``"cnn"`` trunk loads.
    image_size : (height, width) or None, default=None
        Every image is resized to this before the network (both multiples of
        16); None: (120, 160) for "rgb", (240, 320) for "cnn".
    half_window : int, default=2
        Largest displacement ``T`` (output pixels) between paired pixels.
    batch_size : int, default=8
        Images per step.
    epochs : int, default=3
        Passes over the images.
    lr : float, default=1e-3
        Adam learning rate.
    lamb : float, default=1.0
        Entropy coefficient λ (1: plain mutual information).
    width : float, default=0.5
        Channel multiplier of the "rgb" trunk (1.0: 64-128-256).
    transforms : SegTransforms or None, default=None
        Second-view settings; None is ``SegTransforms()``.
    device, n_threads, random_state, verbose, checkpoint_dir, resume
        As for :class:`IIC`.

    Attributes
    ----------
    net_ : SegNet
    transforms_ : SegTransforms
    image_size_ : tuple of int
        ``(height, width)`` of the network input.
    head_ : int
    history_ : list of dict
        Per epoch: ``loss``, ``head_losses``, ``loss_over``, ``seconds``.
    n_epochs_ : int
    device_ : str

    Notes
    -----
    Ji, Henriques and Vedaldi, "Invariant Information Clustering for
    Unsupervised Image Classification and Segmentation", ICCV 2019, section
    3.3. One step costs two forward and backward passes of ``batch_size``
    images.
    """

    _model_format = "clusterlens.iic-seg"
    _ckpt_format = "clusterlens.iic-seg.checkpoint"
    _ckpt_name = "iic-seg-checkpoint"
    _what = "IIC segmentation model"
    _command = "clusterlens iic-seg"
    transforms: SegTransforms | None  # type: ignore[assignment]
    transforms_: SegTransforms  # type: ignore[assignment]

    def __init__(
        self,
        n_clusters: int = 3,
        *,
        n_clusters_over: int = 15,
        n_heads: int = 3,
        features: str = "rgb",
        cnn_layers: tuple[str, ...] | None = None,
        backbone: str = "lite0",
        image_size: tuple[int, int] | None = None,
        half_window: int = 2,
        batch_size: int = 8,
        epochs: int = 3,
        lr: float = 1e-3,
        lamb: float = 1.0,
        width: float = 0.5,
        transforms: SegTransforms | None = None,
        device: str = "auto",
        n_threads: int | None = 2,
        random_state: Any = None,
        verbose: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
    ):
        self.n_clusters = n_clusters
        self.n_clusters_over = n_clusters_over
        self.n_heads = n_heads
        self.features = features
        self.cnn_layers = cnn_layers
        self.backbone = backbone
        self.image_size = image_size
        self.half_window = half_window
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.lamb = lamb
        self.width = width
        self.transforms = transforms
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume

    # ------------------------------------------------------------------ #
    def _validate_params(self) -> None:
        check_int(self.n_clusters, "n_clusters", _OWNER, low=2)
        check_int(self.n_clusters_over, "n_clusters_over", _OWNER, low=0)
        if self.n_clusters_over == 1:
            raise InvalidParameterError(
                "The 'n_clusters_over' parameter of IICSegmenter must be 0 (no "
                "overclustering head) or an int >= 2. Got 1 instead."
            )
        check_int(self.n_heads, "n_heads", _OWNER, low=1)
        check_options(self.features, "features", _OWNER, SEG_FEATURES)
        self._cnn_layers()
        check_backbone(self.backbone, _OWNER)
        check_int(self.half_window, "half_window", _OWNER, low=0, high=16)
        check_int(self.batch_size, "batch_size", _OWNER, low=1)
        check_int(self.epochs, "epochs", _OWNER, low=1)
        check_real(self.lr, "lr", _OWNER, low=0.0, closed="neither")
        check_real(self.lamb, "lamb", _OWNER, low=0.0)
        check_real(self.width, "width", _OWNER, low=0.0, closed="neither")
        check_int(self.n_threads, "n_threads", _OWNER, low=1, allow_none=True)
        self._image_size()
        tf = self.transforms
        if tf is not None and not isinstance(tf, SegTransforms):
            raise InvalidParameterError(
                "The 'transforms' parameter of IICSegmenter must be a SegTransforms "
                f"or None. Got {tf!r} instead."
            )
        if tf is not None:
            check_real(tf.crop_min, "crop_min", _OWNER, low=0.1, high=1.0)
            if tf.sobel and self.features == "cnn":
                raise InvalidParameterError(
                    "Sobel input applies to the 'rgb' trunk only: the CNN features "
                    "read colour images. Leave out --sobel or use --features rgb."
                )
        if self.resume and self.checkpoint_dir is None:
            raise InvalidParameterError(
                "resume=True needs checkpoint_dir: the folder of the checkpoint to "
                "continue from."
            )

    def _cnn_layers(self) -> tuple[str, ...]:
        if self.cnn_layers is None:
            return IIC_CNN_LAYERS
        return check_cnn_layers(self.cnn_layers)

    def _image_size(self) -> tuple[int, int]:
        size = self.image_size
        if size is None:
            return (240, 320) if self.features == "cnn" else (120, 160)
        ok = (
            isinstance(size, tuple | list)
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
            and all(16 <= v <= 4096 and v % 16 == 0 for v in size)
        )
        if not ok:
            raise InvalidParameterError(
                "The 'image_size' parameter of IICSegmenter must be (height, width) "
                f"with both multiples of 16 in [16, 4096]. Got {size!r} instead."
            )
        return int(size[0]), int(size[1])

    def _fingerprint_params(self) -> dict[str, Any]:
        p = {
            k: v
            for k, v in self.get_params().items()
            if k
            not in (
                "epochs",
                "verbose",
                "checkpoint_dir",
                "resume",
                "device",
                "n_threads",
            )
        }
        p["transforms"] = None if self.transforms is None else self.transforms.to_dict()
        p["image_size"] = None if self.image_size is None else list(self.image_size)
        p["random_state"] = (
            p["random_state"] if isinstance(p["random_state"], int | None) else "gen"
        )
        # the CNN's maps: resolved, and left out where they change nothing
        # (the "rgb" trunk) or are those of the models written before the
        # option (so their checkpoints resume with cnn_layers=("s8", "s16"))
        layers = list(self._cnn_layers())
        del p["cnn_layers"], p["backbone"]
        if self.features == "cnn" and (
            tuple(layers) != LEGACY_CNN_LAYERS or self.backbone != "lite0"
        ):
            p["cnn_layers"], p["backbone"] = layers, self.backbone
        return p

    def _build(self, shape: Any = None) -> None:
        tf = self.transforms or SegTransforms()
        self.transforms_ = tf
        self.image_size_ = self._image_size()
        self.net_ = SegNet(  # type: ignore[assignment]
            self.features,
            tf.in_channels(),
            self.n_clusters,
            self.n_clusters_over,
            self.n_heads,
            self.width,
            self._cnn_layers(),
            self.backbone,
        )

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (n, 3, H, W) -> float in [0, 1] at ``image_size_``."""
        x = images.float().div_(255.0)
        if tuple(x.shape[-2:]) == self.image_size_:
            return x
        return F.interpolate(
            x, size=self.image_size_, mode="bilinear", antialias=True
        ).clamp_(0.0, 1.0)

    # ------------------------------------------------------------------ #
    def fit(  # type: ignore[override]
        self,
        X: Any,
        y: Any = None,
        *,
        pixel_mask: Any = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> IICSegmenter:
        """Train on RGB images ``X`` (n_images, H, W, 3) uint8 (``y`` unused).

        Every image is resized to ``image_size`` once; the network sees
        ``n_images // batch_size`` batches an epoch.

        Parameters
        ----------
        X : array-like of shape (n_images, H, W, 3), uint8
        y : None
            Unused (no label is used for training).
        pixel_mask : array-like of shape (n_images, H, W), bool, default=None
            Pixels the objective counts (all when None). IIC's COCO-Stuff-3
            protocol trains on the pixels of the evaluated classes only: the
            label maps choose which pixels count, never their cluster.
        callback : callable, default=None
            Called with each epoch's history entry.
        """
        self._validate_params()
        images = _as_rgb_tensor(X, "X")
        n = images.shape[0]
        keep = None
        if pixel_mask is not None:
            pm = np.asarray(pixel_mask)
            want = (n, *images.shape[-2:])
            if pm.shape != want or pm.dtype != bool:
                raise DataValidationError(
                    f"pixel_mask must be a bool array of shape {want} (one flag per "
                    f"pixel of X); got {pm.dtype} {pm.shape}."
                )
            keep = torch.from_numpy(np.ascontiguousarray(pm)).float()[:, None]
        device = _resolve_device(self.device)
        self.device_ = str(device)
        rng = check_random_state(self.random_state)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        # the jitter of the cached CNN maps has its own stream: a resumed run
        # rebuilds the same cache without moving the training stream
        cache_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with _torch_threads(self.n_threads), _deterministic(device):
            self._build()
            data = self._resize(images)  # float32 in [0, 1], (n, 3, h, w)
            fp_params = self._fingerprint_params()
            if keep is not None:
                keep = F.interpolate(keep, size=self.image_size_, mode="area")
                fp_params["pixel_mask"] = fingerprint(
                    (keep > 0.5).numpy(), {"what": "pixel_mask"}
                )
            fp = fingerprint((data * 255).round().to(torch.uint8).numpy(), fp_params)
            net = self.net_
            net.reset_parameters(gen)  # type: ignore[arg-type]
            net.to(device)
            opt = torch.optim.Adam(
                net.trainable_parameters(),  # type: ignore[operator]
                lr=self.lr,
            )
            self.history_: list[dict[str, Any]] = []
            start = 0
            if self.resume:
                start = self._load_checkpoint(opt, gen, fp)
            heads = ["main", "over"] if self.n_clusters_over else ["main"]
            cache = None
            if self.features == "cnn":
                cache = self._frozen_cache(data, cache_gen)
            bs = min(self.batch_size, n)
            n_batches = max(1, n // bs)
            for epoch in range(start, self.epochs):
                t0 = time.perf_counter()
                perm = torch.randperm(n, generator=gen)
                sums = {
                    h: torch.zeros(self.n_heads, dtype=torch.float64) for h in heads
                }
                net.train()
                bar = progress(
                    total=n_batches,
                    desc=f"epoch {epoch + 1}/{self.epochs}",
                    verbose=self.verbose,
                    unit="batch",
                )
                for b in range(n_batches):
                    idx = perm[b * bs : (b + 1) * bs]
                    kb = None if keep is None else keep[idx].to(device)
                    if cache is None:
                        losses = self._seg_step(
                            opt, data[idx].to(device), heads, gen, keep=kb
                        )
                    else:
                        losses = self._seg_step(
                            opt,
                            tuple(m[idx].to(device, torch.float32) for m in cache[0]),
                            heads,
                            gen,
                            tuple(m[idx].to(device, torch.float32) for m in cache[1]),
                            keep=kb,
                        )
                    for head, per_head in losses.items():
                        _check_finite_loss(
                            float(per_head.sum()), self.lr, epoch + 1, b + 1
                        )
                        sums[head] += per_head
                    bar.update(1)
                    if b % 5 == 0 or b == n_batches - 1:
                        running = float(sums["main"].min()) / (b + 1)
                        bar.set_postfix_str(f"loss {running:.4f}")
                bar.close()
                main = (sums["main"] / n_batches).tolist()
                entry: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "loss": float(np.min(main)),
                    "head": int(np.argmin(main)),
                    "head_losses": main,
                }
                if "over" in heads:
                    entry["loss_over"] = float((sums["over"] / n_batches).mean())
                entry["seconds"] = time.perf_counter() - t0
                self.history_.append(entry)
                self.head_ = int(entry["head"])
                self.n_epochs_ = epoch + 1
                logger.info("IICSegmenter epoch %d: %s", epoch + 1, entry)
                if self.checkpoint_dir is not None:
                    self._save_checkpoint(opt, gen, fp)
                if callback is not None:
                    callback(entry)
            if start >= self.epochs and self.history_:
                self.head_ = int(self.history_[-1]["head"])
        self.n_epochs_ = max(start, self.epochs)
        net.eval()
        return self

    def _load_checkpoint(
        self, opt: torch.optim.Optimizer, gen: torch.Generator, fp: str
    ) -> int:
        try:
            return super()._load_checkpoint(opt, gen, fp)
        except DataValidationError as e:
            if "other parameters" not in str(e) or not self._legacy_checkpoint():
                raise
            raise DataValidationError(
                f"The checkpoint in {self.checkpoint_dir} was written with the CNN "
                "trunk on the stride-8 and stride-16 maps only (IIC's default, and "
                "every checkpoint from before --cnn-layers), not on "
                f"{','.join(self._cnn_layers())}. Resume it with --cnn-layers s8,s16 "
                "(or without the option), or start again in a new checkpoint "
                "folder."
            ) from e

    def _legacy_checkpoint(self) -> bool:
        """Whether the checkpoint is a "cnn" one on the stride-8/16 maps (its
        parameters then hold no ``cnn_layers``, as before the option)."""
        from clusterlens.io._safe import read_json

        if self.features != "cnn" or self._cnn_layers() == LEGACY_CNN_LAYERS:
            return False
        path = Path(self.checkpoint_dir) / f"{self._ckpt_name}.json"  # type: ignore[arg-type]
        try:
            params = read_json(path, what="checkpoint", fix="").get("params", {})
        except DataValidationError:
            return False
        return (
            isinstance(params, dict)
            and params.get("features") == "cnn"
            and "cnn_layers" not in params
        )

    def _frozen_cache(
        self, data: torch.Tensor, gen: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """The frozen CNN's maps of every image and of a colour-jittered copy.

        Computed once (float16, each map at its own grid): a step then runs
        only the trainable layers, and the second view is the geometric
        transformation of the jittered copy's maps (the frozen network is not
        retrained, so its maps of a view equal the view of its maps up to
        resampling and borders).
        """
        net: SegNet = self.net_  # type: ignore[assignment]
        tf = self.transforms_
        device = net.trainable_parameters()[0].device
        clean: list[tuple[torch.Tensor, ...]] = []
        jittered: list[tuple[torch.Tensor, ...]] = []
        chunk = 16
        bar = progress(
            total=(data.shape[0] + chunk - 1) // chunk,
            desc="CNN feature maps",
            verbose=self.verbose,
            unit="batch",
        )
        for s in range(0, data.shape[0], chunk):
            x = data[s : s + chunk].to(device)
            xj = jitter(x, gen, tf.brightness, tf.contrast, tf.saturation, tf.hue)
            for out, img in ((clean, x), (jittered, xj)):
                maps = net.frozen.maps(img)  # type: ignore[union-attr]
                out.append(tuple(m.to("cpu", torch.float16) for m in maps))
            bar.update(1)
        bar.close()
        return (
            tuple(torch.cat(parts) for parts in zip(*clean, strict=True)),
            tuple(torch.cat(parts) for parts in zip(*jittered, strict=True)),
        )

    def _seg_step(
        self,
        opt: torch.optim.Optimizer,
        x: torch.Tensor | tuple[torch.Tensor, ...],
        heads: list[str],
        gen: torch.Generator,
        x_jittered: tuple[torch.Tensor, ...] | None = None,
        keep: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One optimisation step; returns each head's per-sub-head -I.

        ``x`` is a batch of images, or of the frozen CNN's maps (a tuple, one
        tensor per layer) when ``x_jittered`` (the maps of colour-jittered
        copies) is given.
        """
        net: SegNet = self.net_  # type: ignore[assignment]
        tf = self.transforms_
        first = x[0] if isinstance(x, tuple) else x
        theta = random_geometry(
            first.shape[0], gen, crop_min=tf.crop_min, flip=tf.flip
        ).to(first.device)
        if x_jittered is None:
            x = cast(torch.Tensor, x)
            xt = apply_geometry(x, theta)
            xt = jitter(xt, gen, tf.brightness, tf.contrast, tf.saturation, tf.hue)
            f = net.features(tf.finish(x))
            ft = net.features(tf.finish(xt))
        else:
            f = net.features(x, frozen_done=True)
            ft = net.features(
                tuple(apply_geometry(m, theta) for m in x_jittered), frozen_done=True
            )
        total = f.new_zeros(())
        out: dict[str, torch.Tensor] = {}
        for head in heads:
            z = net.head(f, head)
            zt = net.head(ft, head)
            n, h_, k, hh, ww = zt.shape
            zt_back, mask = invert_geometry(zt.reshape(n, h_ * k, hh, ww), theta)
            if keep is not None:  # the pixels that count, on the output grid
                mask = mask * F.interpolate(keep, size=(hh, ww), mode="area")
            loss, plain = segmentation_step_loss(
                z,
                zt_back.view(n, h_, k, hh, ww),
                mask,
                half_window=self.half_window,
                lamb=self.lamb,
            )
            total = total + loss
            out[head] = plain
        opt.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        opt.step()
        return out

    # ------------------------------------------------------------------ #
    def _chunks(self, images: torch.Tensor, chunk: int) -> Iterator[torch.Tensor]:
        """Per-pixel probabilities of the chosen head at the network's grid."""
        net: SegNet = self.net_  # type: ignore[assignment]
        device = next(net.parameters()).device
        tf = self.transforms_
        net.eval()
        with torch.inference_mode():
            for s in range(0, images.shape[0], chunk):
                x = self._resize(images[s : s + chunk]).to(device)
                yield net(tf.finish(x), "main")[:, self.head_].float().cpu()

    def predict_proba(  # type: ignore[override]
        self, X: Any, *, size: tuple[int, int] | None = None, chunk: int = 8
    ) -> npt.NDArray[np.float32]:
        """Per-pixel probabilities ``(n, n_clusters, H, W)``.

        ``H, W`` is ``size`` when given, else the images' own size; the
        network's coarser output is upsampled bilinearly.
        """
        self._check_fitted()
        images = _as_rgb_tensor(X, "X")
        out_size = tuple(size) if size is not None else tuple(images.shape[-2:])
        with _torch_threads(self.n_threads):
            parts = [
                F.interpolate(p, size=out_size, mode="bilinear", align_corners=False)
                for p in self._chunks(images, chunk)
            ]
        return torch.cat(parts).numpy()

    def predict(  # type: ignore[override]
        self, X: Any, *, size: tuple[int, int] | None = None, chunk: int = 8
    ) -> npt.NDArray[np.int64]:
        """Cluster of every pixel ``(n, H, W)`` (see :meth:`predict_proba`)."""
        return self.predict_proba(X, size=size, chunk=chunk).argmax(axis=1)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
        """Fit, then return the per-pixel clusters of ``X``."""
        return self.fit(X, y, **kwargs).predict(X)

    # ------------------------------------------------------------------ #
    def _meta(self) -> tuple[dict[str, Any], dict[str, Any]]:
        params = self._fingerprint_params()
        params.update(epochs=self.epochs)
        attrs = {
            "head": getattr(self, "head_", None),
            "image_size": list(self.image_size_),
            "transforms": self.transforms_.to_dict(),
            "history": self.history_,
            "n_epochs": getattr(self, "n_epochs_", 0),
        }
        return params, attrs

    @classmethod
    def _from_meta(  # type: ignore[override]
        cls, params: dict[str, Any], attrs: dict[str, Any], device: str
    ) -> IICSegmenter:
        tf = params.pop("transforms", None)
        size = params.pop("image_size", None)
        if params.get("features") == "cnn" and "cnn_layers" not in params:
            # written before cnn_layers existed: the maps of that time
            params["cnn_layers"] = LEGACY_CNN_LAYERS
        if isinstance(params.get("cnn_layers"), list):
            params["cnn_layers"] = tuple(params["cnn_layers"])
        unknown = sorted(set(params) - set(cls().get_params()))
        if unknown:
            raise ValueError(f"unknown parameters {', '.join(unknown)}")
        model = cls(**params, device=device)
        model.transforms = None if tf is None else SegTransforms.from_dict(tf)
        model.image_size = None if size is None else tuple(size)  # type: ignore[assignment]
        model._validate_params()
        model._build()
        model.transforms_ = SegTransforms.from_dict(attrs["transforms"])
        if list(model.image_size_) != attrs["image_size"]:
            raise ValueError("'image_size' does not match the parameters")
        model.head_ = _int_in(attrs["head"], "head", 0, model.n_heads - 1)
        model.history_ = _history(attrs["history"])
        model.n_epochs_ = _int_in(attrs["n_epochs"], "n_epochs", 0, None)
        return model
