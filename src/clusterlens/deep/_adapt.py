"""Self-supervised adaptation of an EfficientNet-Lite backbone (SimCLR) to images.

The whole backbone is fine-tuned from its ImageNet weights with a contrastive
pretext on the user's own images: two random views of every image go through
the backbone and a 2-layer projection head, and NT-Xent pulls each pair
together against the other images of the batch (Chen et al., ICML 2020). What
comes out is the backbone alone, as a state dict under the names of the
packaged ``.pth``, so ``CnnEmbedder(weights=...)`` and ``clusterlens features
cnn --weights`` embed with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.base import BaseEstimator

from clusterlens.deep._iic import _load_state, as_image_tensor
from clusterlens.deep._loss import nt_xent_loss
from clusterlens.deep._optim_state import (
    check_optimizer_attrs,
    optimizer_arrays,
    restore_optimizer,
)
from clusterlens.deep._runtime import _resolve_device, _torch_threads
from clusterlens.deep._transforms import ContrastiveViews
from clusterlens.exceptions import (
    DataValidationError,
    InvalidParameterError,
    NotFittedError,
)
from clusterlens.features import build_efficientnet_lite
from clusterlens.features._effnet import BACKBONES, INPUT_MEAN, INPUT_STD
from clusterlens.io._checkpoint import fingerprint
from clusterlens.io._persist import model_paths, read_model, write_model
from clusterlens.io._safe import invalid_file
from clusterlens.utils._fs import atomic_write_bytes, atomic_write_text
from clusterlens.utils._names import arg
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import (
    check_int,
    check_options,
    check_random_state,
    check_real,
)

__all__ = ["ContrastiveAdapter", "check_device"]

logger = logging.getLogger(__name__)

_OWNER = "ContrastiveAdapter"
MODEL_FORMAT = "clusterlens.adapt"
CKPT_FORMAT = "clusterlens.adapt.checkpoint"
FORMAT_VERSION = 1
CKPT_NAME = "adapt-checkpoint"
#: Parameters that may differ between a checkpoint and the run resuming it.
_RESUME_FREE = (
    "epochs",
    "minutes",
    "verbose",
    "checkpoint_dir",
    "resume",
    "device",
    "n_threads",
)
#: Multiplier of ``lr`` for the freshly initialised projection head.
HEAD_LR_SCALE = 10.0
#: A uint8 image cache up to this share of the free GPU memory is moved onto
#: the GPU (no host-to-device copy per batch); a larger one stays in pinned
#: host memory and each batch is copied asynchronously.
_GPU_CACHE_SHARE = 0.3


@contextlib.contextmanager
def _fast_cudnn(device: torch.device) -> Iterator[None]:
    """cuDNN's autotuner on for the fixed input shape of training (restored)."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    old = cudnn.benchmark
    cudnn.benchmark = True
    try:
        yield
    finally:
        cudnn.benchmark = old


def _freeze_bn_statistics(net: torch.nn.Module) -> None:
    """Batch norm of ``net`` normalises with its running (ImageNet) statistics
    and never updates them; its scale and shift still train."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def _projection_head(
    dim: int, hidden: int, out: int, gen: torch.Generator
) -> torch.nn.Module:
    """Linear-BN-ReLU-Linear (SimCLR's 2-layer MLP), seeded from ``gen``."""
    nn = torch.nn
    head = nn.Sequential(
        nn.Linear(dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out),
    )
    layers: list[Any] = [head[0], head[3]]
    with torch.no_grad():
        for layer in layers:
            bound = 1.0 / float(np.sqrt(layer.in_features))
            w = torch.rand(layer.weight.shape, generator=gen) * 2 - 1
            layer.weight.copy_(w * bound)
            if layer.bias is not None:
                layer.bias.zero_()
    return head


class ContrastiveAdapter(BaseEstimator):  # type: ignore[misc]
    """Fine-tune an EfficientNet-Lite on a set of images with SimCLR.

    Parameters
    ----------
    backbone : {"lite0", "lite1", "lite2"}, default="lite0"
        Which packaged EfficientNet-Lite starts from its ImageNet weights.
    weights : path, default=None
        Start from this EfficientNet-Lite state dict (``.pth`` or ``.npz``)
        instead (e.g. an earlier adaptation); the variant is read from it.
    image_size : int, default=96
        Side of the square views the network trains on (and embeds at).
    epochs : int, default=10
        Passes over the images (each image gives one positive pair per pass).
    minutes : float or None, default=None
        Wall-clock budget of the training loop: training stops after the
        first step past it, and that epoch counts as done (recorded as
        ``stopped_early`` in its history entry). None: no budget.
    batch_size : int, default=256
        Images per step (two views each); each image's negatives are the
        other ``2 * batch_size - 2`` views, so larger is better, memory
        allowing. The data must hold at least one batch.
    lr : float, default=1e-4
        AdamW learning rate of the backbone; the new projection head learns
        at ``10 * lr``.
    weight_decay : float, default=1e-5
        AdamW weight decay.
    temperature : float, default=0.2
        NT-Xent temperature.
    hidden_dim, proj_dim : int, default=512, 128
        Widths of the projection head (pooled features -> hidden -> proj).
    bn : {"frozen", "train"}, default="frozen"
        Batch norm of the backbone while training: "frozen" normalises with
        its ImageNet running statistics and never updates them (its scale and
        shift still train); "train" normalises with each batch's statistics
        and updates the running ones (SimCLR from scratch). Measured on 2,000
        CIFAR-10 images at 96 px: 31 steps with "train" and a learning rate
        of 1e-30 (so only the statistics change) lowered the 10-NN label
        purity from 0.533 to 0.360, and recomputing the statistics on the
        clean images to 0.326: the ImageNet statistics embed these images
        better than their own.
    views : ContrastiveViews or None, default=None
        Augmentation settings (their ``size`` is replaced by ``image_size``);
        None is SimCLR's: crops of 20-100 % of the area, flips, colour jitter
        (p 0.8), greyscale (p 0.2).
    device : str, default="auto"
        ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) or ``"auto"`` (CUDA when
        present, else the ``device`` configuration, else CPU). On CUDA the
        network runs channels-last under bfloat16 autocast, and the uint8
        image cache lives on the GPU when it fits.
    n_threads : int or None, default=2
        torch CPU threads while fitting and embedding (restored afterwards).
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the head, the batches and every view: on the CPU the same seed
        gives the same weights.
    verbose : int, default=0
        1 shows a progress bar per epoch with the running loss.
    checkpoint_dir : path or None, default=None
        Folder for a checkpoint (``adapt-checkpoint.npz`` + ``.json``: the
        backbone, the head, the optimizer and the random state) written
        after every epoch.
    resume : bool, default=False
        Continue from the checkpoint in ``checkpoint_dir`` (same images and
        parameters; ``epochs`` and ``minutes`` may change). A resumed run
        ends with the weights an uninterrupted one would have.

    Attributes
    ----------
    model_ : torch.nn.Module
        The adapted backbone, in eval mode (``model_.embed(x)``: the pooled
        features).
    head_ : torch.nn.Module
        The projection head (used only for training).
    history_ : list of dict
        One entry per epoch: ``epoch``, ``loss`` (mean NT-Xent), ``steps``,
        ``seconds``, ``images_per_second``, ``stopped_early``.
    n_epochs_ : int
        Epochs done.
    dim_ : int
        Width of the embeddings (1280).
    arch_ : str
        The variant's name (``efficientnet-lite0`` ...).
    device_ : str
        The device that ran.
    cache_device_ : str
        Where the uint8 image cache lived while training.

    Notes
    -----
    One step costs a forward and a backward pass of ``2 * batch_size`` views;
    EfficientNet-Lite0 is about 0.39 G multiply-adds per 224-px image, so
    about 0.07 G at 96 px, and an epoch about ``6 * 0.07 * 2 * n_samples``
    GFLOP. Batch norm trains on the views' statistics; the saved backbone is
    in eval mode with the running statistics of the adapted network.
    """

    def __init__(
        self,
        backbone: str = "lite0",
        *,
        weights: str | os.PathLike[str] | None = None,
        image_size: int = 96,
        epochs: int = 10,
        minutes: float | None = None,
        batch_size: int = 256,
        lr: float = 1e-4,
        weight_decay: float = 1e-5,
        temperature: float = 0.2,
        hidden_dim: int = 512,
        proj_dim: int = 128,
        bn: str = "frozen",
        views: ContrastiveViews | None = None,
        device: str = "auto",
        n_threads: int | None = 2,
        random_state: Any = None,
        verbose: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
    ) -> None:
        self.backbone = backbone
        self.weights = weights
        self.image_size = image_size
        self.epochs = epochs
        self.minutes = minutes
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.hidden_dim = hidden_dim
        self.proj_dim = proj_dim
        self.bn = bn
        self.views = views
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume

    # ------------------------------------------------------------------ #
    def _validate_params(self) -> None:
        check_options(self.backbone, "backbone", _OWNER, tuple(BACKBONES))
        check_int(self.image_size, "image_size", _OWNER, low=32, high=1024)
        check_int(self.epochs, "epochs", _OWNER, low=1)
        if self.minutes is not None:
            check_real(self.minutes, "minutes", _OWNER, low=0.0, closed="neither")
        check_int(self.batch_size, "batch_size", _OWNER, low=2)
        check_real(self.lr, "lr", _OWNER, low=0.0, closed="neither")
        check_real(self.weight_decay, "weight_decay", _OWNER, low=0.0)
        check_real(self.temperature, "temperature", _OWNER, low=0.0, closed="neither")
        check_int(self.hidden_dim, "hidden_dim", _OWNER, low=1)
        check_int(self.proj_dim, "proj_dim", _OWNER, low=1)
        check_options(self.bn, "bn", _OWNER, ("frozen", "train"))
        check_int(self.n_threads, "n_threads", _OWNER, low=1, allow_none=True)
        if self.views is not None and not isinstance(self.views, ContrastiveViews):
            raise InvalidParameterError(
                f"The 'views' parameter of {_OWNER} must be a ContrastiveViews or "
                f"None. Got {self.views!r} instead."
            )
        if self.resume and self.checkpoint_dir is None:
            raise InvalidParameterError(
                "resume=True needs checkpoint_dir: the folder of the checkpoint to "
                "continue from."
            )

    def _views(self) -> ContrastiveViews:
        base = self.views if self.views is not None else ContrastiveViews()
        return dataclasses.replace(base, size=int(self.image_size))

    def _fingerprint_params(self) -> dict[str, Any]:
        p = {k: v for k, v in self.get_params().items() if k not in _RESUME_FREE}
        p["views"] = self._views().to_dict()
        p["weights"] = None if self.weights is None else _sha256(self.weights)
        p["random_state"] = (
            p["random_state"] if isinstance(p["random_state"], int | None) else "gen"
        )
        return p

    def _images(self, X: Any) -> torch.Tensor:
        """(n, 3, H, W) uint8 tensor of ``X`` (grey images get 3 channels)."""
        images = as_image_tensor(X, "X")
        if min(images.shape[2:]) < 32:
            raise DataValidationError(
                f"X holds {images.shape[2]}x{images.shape[3]}-pixel images; "
                "EfficientNet-Lite needs at least 32x32. Resize them first."
            )
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1).contiguous()
        return images

    # ------------------------------------------------------------------ #
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> ContrastiveAdapter:
        """Fine-tune the backbone on the images ``X`` (no labels are used).

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W) or (n_samples, H, W, C)
            uint8 images (or floats in [0, 1]), C in {1, 3}, at least 32x32;
            the views are cropped from them and resampled to ``image_size``.
        y : None
            Ignored.
        callback : callable, default=None
            Called with each epoch's history entry.

        Returns
        -------
        self : ContrastiveAdapter
        """
        self._validate_params()
        images = self._images(X)
        n, bs = int(images.shape[0]), int(self.batch_size)
        if n < bs:
            raise DataValidationError(
                f"X holds {n} images, fewer than {arg('batch_size', str(bs))}: "
                "contrastive training needs a full batch (each image's negatives "
                f"are the others of its batch). Pass {arg('batch_size', str(n))} "
                "or less, or adapt on more images."
            )
        device = _resolve_device(self.device)
        self.device_ = str(device)
        rng = check_random_state(self.random_state)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        fp = fingerprint(images.numpy(), self._fingerprint_params())
        views = self._views()
        cuda = device.type == "cuda"
        with _torch_threads(self.n_threads), _fast_cudnn(device):
            net = build_efficientnet_lite(self.weights, backbone=self.backbone)
            self.arch_ = str(net.arch)
            self.dim_ = int(net._conv_head.weight.shape[0])
            head = _projection_head(self.dim_, self.hidden_dim, self.proj_dim, gen)
            net.to(device, memory_format=torch.channels_last)
            head.to(device)
            self.model_, self.head_ = net, head
            opt = torch.optim.AdamW(
                [
                    {"params": list(net.parameters()), "lr": self.lr},
                    {"params": list(head.parameters()), "lr": self.lr * HEAD_LR_SCALE},
                ],
                weight_decay=self.weight_decay,
            )
            self.history_: list[dict[str, Any]] = []
            start = self._load_checkpoint(opt, gen, fp) if self.resume else 0
            data = self._cache(images, device)
            mean = torch.tensor(INPUT_MEAN, device=device).view(1, 3, 1, 1)
            std = torch.tensor(INPUT_STD, device=device).view(1, 3, 1, 1)
            n_batches = n // bs  # the ragged last batch is dropped
            t_start = time.perf_counter()
            budget = None if self.minutes is None else 60.0 * float(self.minutes)
            for epoch in range(start, self.epochs):
                t0 = time.perf_counter()
                net.train()
                head.train()
                if self.bn == "frozen":
                    _freeze_bn_statistics(net)
                perm = torch.randperm(n, generator=gen)
                total = torch.zeros((), device=device)
                bar = progress(
                    total=n_batches,
                    desc=f"adapt epoch {epoch + 1}/{self.epochs}",
                    verbose=self.verbose,
                    unit="batch",
                )
                steps, stopped = 0, False
                for b in range(n_batches):
                    idx = perm[b * bs : (b + 1) * bs]
                    xb = data[idx.to(data.device)].to(device, non_blocking=True)
                    x = torch.cat([views(xb, gen), views(xb, gen)])
                    x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
                    with torch.autocast(
                        device.type, dtype=torch.bfloat16, enabled=cuda
                    ):
                        z = head(net.embed(x))
                    loss = nt_xent_loss(z[:bs], z[bs:], self.temperature)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.detach()
                    steps += 1
                    bar.update(1)
                    if b % 10 == 0 or b == n_batches - 1:
                        running = float(total) / steps
                        _check_finite_loss(running, self.lr, epoch + 1, b + 1)
                        bar.set_postfix_str(f"loss {running:.4f}")
                    if budget is not None and time.perf_counter() - t_start > budget:
                        stopped = b < n_batches - 1
                        break
                bar.close()
                seconds = time.perf_counter() - t0
                entry = {
                    "epoch": epoch + 1,
                    "loss": float(total) / max(steps, 1),
                    "steps": steps,
                    "seconds": seconds,
                    "images_per_second": steps * bs / max(seconds, 1e-9),
                    "stopped_early": stopped,
                }
                _check_finite_loss(entry["loss"], self.lr, epoch + 1, steps)
                self.history_.append(entry)
                self.n_epochs_ = epoch + 1
                logger.info("adapt epoch %d: %s", epoch + 1, entry)
                if self.checkpoint_dir is not None:
                    self._save_checkpoint(opt, gen, fp)
                if callback is not None:
                    callback(entry)
                if budget is not None and time.perf_counter() - t_start > budget:
                    logger.info("adapt: the %.1f-minute budget is spent", self.minutes)
                    break
        self.n_epochs_ = len(self.history_)
        net.eval()
        head.eval()
        return self

    def _cache(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The uint8 images where batches are gathered from (see ``cache_device_``)."""
        if device.type != "cuda":
            self.cache_device_ = "cpu"
            return images
        free, _ = torch.cuda.mem_get_info(device)
        if images.numel() <= _GPU_CACHE_SHARE * free:
            self.cache_device_ = str(device)
            return images.to(device)
        self.cache_device_ = "cpu (pinned)"
        return images.pin_memory()

    # ------------------------------------------------------------------ #
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This {_OWNER} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def embed(self, X: Any, *, batch_size: int = 128) -> npt.NDArray[np.float32]:
        """Pooled features (n_samples, 1280) of the adapted backbone.

        Each image is resized (bilinear, antialiased) to ``image_size`` when it
        has another size and normalised as the EfficientNet-Lite weights
        expect, as :class:`~clusterlens.features.CnnEmbedder` does.
        """
        self._check_fitted()
        images = self._images(X)
        net = self.model_
        device = next(net.parameters()).device
        mean = torch.tensor(INPUT_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(INPUT_STD, device=device).view(1, 3, 1, 1)
        s = int(self.image_size)
        out = []
        net.eval()
        with _torch_threads(self.n_threads), torch.inference_mode():
            for lo in range(0, images.shape[0], batch_size):
                x = images[lo : lo + batch_size].to(device).float().div_(255.0)
                if tuple(x.shape[2:]) != (s, s):
                    x = torch.nn.functional.interpolate(
                        x, size=(s, s), mode="bilinear", antialias=True
                    )
                x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
                out.append(net.embed(x).float().cpu())
        return torch.cat(out).numpy()

    def state_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The backbone's state dict as arrays, under the packaged ``.pth``'s names."""
        self._check_fitted()
        return {
            k: v.detach().cpu().contiguous().numpy()
            for k, v in self.model_.state_dict().items()
        }

    def save(self, folder: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``folder/weights.npz`` (the backbone) and ``folder/model.json``.

        ``weights.npz`` holds one array per parameter and buffer, no pickle;
        ``CnnEmbedder(weights=folder/"weights.npz")`` and ``clusterlens
        features cnn --weights`` read it. ``model.json`` holds the settings,
        the seed, the loss and seconds per epoch and the device.
        """
        import io

        from clusterlens import __version__

        self._check_fitted()
        folder = Path(os.fspath(folder))
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **self.state_arrays())  # type: ignore[arg-type]
        data = buf.getvalue()
        weights = atomic_write_bytes(folder / "weights.npz", data)
        params = self.get_params()
        params["views"] = self._views().to_dict()
        params["weights"] = None if self.weights is None else os.fspath(self.weights)
        params["checkpoint_dir"] = (
            None if self.checkpoint_dir is None else os.fspath(self.checkpoint_dir)
        )
        if not isinstance(params["random_state"], int | None):
            params["random_state"] = repr(params["random_state"])
        meta = {
            "format": MODEL_FORMAT,
            "format_version": FORMAT_VERSION,
            "clusterlens_version": __version__,
            "backbone": self.backbone if self.weights is None else None,
            "arch": self.arch_,
            "embedding_dim": self.dim_,
            "image_size": int(self.image_size),
            "normalize": "inception",
            "weights": "weights.npz",
            "weights_sha256": hashlib.sha256(data).hexdigest(),
            "seed": params["random_state"],
            "device": self.device_,
            "cache_device": getattr(self, "cache_device_", None),
            "n_epochs": self.n_epochs_,
            "loss_per_epoch": [h["loss"] for h in self.history_],
            "seconds_per_epoch": [h["seconds"] for h in self.history_],
            "settings": params,
            "history": self.history_,
        }
        path = atomic_write_text(folder / "model.json", json.dumps(meta, indent=2))
        return weights, path

    # ------------------------------------------------------------------ #
    def _save_checkpoint(
        self, opt: torch.optim.Optimizer, gen: torch.Generator, fp: str
    ) -> None:
        arrays: dict[str, Any] = {
            f"backbone/{k}": v for k, v in self.state_arrays().items()
        }
        for k, v in self.head_.state_dict().items():
            arrays[f"head/{k}"] = v.detach().cpu().numpy()
        opt_arrays, opt_attrs = optimizer_arrays(opt)
        arrays.update(opt_arrays)
        arrays["rng/torch"] = gen.get_state().numpy()
        params = self._fingerprint_params()
        attrs = {
            "fingerprint": fp,
            "history": self.history_,
            "n_epochs": self.n_epochs_,
            **opt_attrs,
        }
        write_model(
            Path(os.fspath(self.checkpoint_dir)) / CKPT_NAME,  # type: ignore[arg-type]
            arrays,
            fmt=CKPT_FORMAT,
            version=FORMAT_VERSION,
            params=params,
            attributes=attrs,
            kind=f"{_OWNER} checkpoint",
        )

    def _load_checkpoint(
        self, opt: torch.optim.Optimizer, gen: torch.Generator, fp: str
    ) -> int:
        folder = Path(os.fspath(self.checkpoint_dir))  # type: ignore[arg-type]
        path = folder / CKPT_NAME
        if not model_paths(path)[1].is_file():
            raise DataValidationError(
                f"No adaptation checkpoint in {folder} to resume from. Run once "
                "without --resume (it writes one after every epoch) first."
            )
        fix = "start again without --resume, or with another checkpoint folder"
        meta, arrays = read_model(
            path,
            fmt=CKPT_FORMAT,
            version=FORMAT_VERSION,
            what="adaptation checkpoint",
            fix=fix,
            keys=("rng/torch",),
        )
        json_path = model_paths(path)[1]
        try:
            attrs = meta["attributes"]
            history = attrs["history"]
            done = attrs["n_epochs"]
            if not isinstance(history, list) or not all(
                isinstance(h, dict) and h.get("epoch") == i + 1
                for i, h in enumerate(history)
            ):
                raise ValueError("'history' is not a list of epochs 1, 2, ...")
            if done != len(history):
                raise ValueError(
                    f"'n_epochs' is {done!r} but 'history' holds {len(history)}"
                )
            check_optimizer_attrs(attrs)
        except (KeyError, TypeError, ValueError) as e:
            reason = f"no {e}" if isinstance(e, KeyError) else str(e).rstrip(".")
            raise DataValidationError(
                invalid_file(
                    json_path, "adaptation checkpoint description", reason, fix
                )
            ) from e
        if attrs.get("fingerprint") != fp:
            raise DataValidationError(
                f"The checkpoint in {folder} was written by another adaptation "
                "run (other images or other settings: backbone, image size, batch "
                "size, learning rate, seed, ...). Resume with the same workspace and "
                "options, or start again without --resume."
            )
        _load_state(self.model_, arrays, "backbone/", path)
        _load_state(self.head_, arrays, "head/", path)
        try:
            restore_optimizer(opt, arrays, attrs)
            gen.set_state(torch.from_numpy(arrays["rng/torch"].astype(np.uint8)))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise DataValidationError(
                invalid_file(
                    model_paths(path)[0],
                    "adaptation checkpoint",
                    f"its optimizer or random state cannot be restored: {e}",
                    fix,
                )
            ) from e
        self.history_ = list(history)
        self.n_epochs_ = int(done)
        logger.info("Resumed the adaptation from %s after epoch %d", path, done)
        return int(done)


def check_device(device: str) -> str:
    """The torch device ``device`` names ("auto" resolved), or a clear error.

    Raises
    ------
    InvalidParameterError
        If CUDA is asked for where there is none, or ``device`` is not a
        torch device.
    """
    return str(_resolve_device(device))


def _sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_finite_loss(value: float, lr: float, epoch: int, batch: int) -> None:
    """Stop a diverging run: a non-finite loss only ever gives NaN weights."""
    if np.isfinite(value):
        return
    raise InvalidParameterError(
        f"The adaptation diverged: the loss became {value} at epoch {epoch}, batch "
        f"{batch}, with a learning rate of {lr:g}. Lower the learning rate, e.g. "
        f"{arg('lr', '1e-4')} (the default)."
    )
