"""ONNX Runtime for the CNN: export once to a cached ONNX file, run it on the CPU.

The network is exported with ``torch.onnx.export`` (the ``torch.export``-based
exporter, which needs ``onnxscript``; TorchScript modules go through the older
TorchScript-based one) with a dynamic batch axis, for one image size. The file
is cached under ``$XDG_CACHE_HOME/clusterlens/onnx`` (default
``~/.cache/clusterlens/onnx``), keyed by the SHA-256 of the weights file, the
image size, the torch version and the exporter, and written atomically beside
a small JSON file with its own SHA-256: a damaged or half-copied cache file is
detected, warned about and exported again. Nothing is ever downloaded.

On two shared cores ONNX Runtime ran EfficientNet-Lite0 about 4x faster than
torch's eager CPU kernels (224 px, batch 32): it fuses batch norm and ReLU6
into the convolutions and constant-folds the "SAME" padding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataQualityWarning
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils._fs import process_umask as _umask
from clusterlens.utils._optional import import_optional

__all__ = [
    "OrtNet",
    "OvNet",
    "cache_problem",
    "cached_model",
    "default_cache_dir",
    "export_onnx",
    "file_digest",
    "mark_checked",
    "model_key",
    "openvino_available",
    "quantize_int8",
]

logger = logging.getLogger(__name__)

#: Bumped when the exported graph changes for the same weights and torch.
_FORMAT = 1
_OPSET = 18


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/clusterlens/onnx``, or ``~/.cache/clusterlens/onnx``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clusterlens" / "onnx"


@lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, hashed once per (path, size, mtime) in a process."""
    st = os.stat(path)
    return _digest(os.fspath(path), st.st_size, st.st_mtime_ns)


def model_key(**parts: Any) -> str:
    """A short cache key for the JSON-able ``parts`` (and the format version)."""
    body = json.dumps({"format": _FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def cache_problem(model: Path, meta: Path) -> str | None:
    """Why a cached model cannot be used (None: it can)."""
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"its record {meta.name} is unreadable ({e})"
    want = info.get("sha256") if isinstance(info, dict) else None
    try:
        got = file_digest(model)
    except OSError as e:
        return f"it is unreadable ({e})"
    if got != want:
        return "its content does not match the SHA-256 recorded when it was written"
    return None


def cached_model(
    folder: Path,
    key: str,
    make: Callable[[Path], None],
    *,
    what: str,
    record: dict[str, Any] | None = None,
) -> tuple[Path, bool]:
    """The cached ``folder/key.onnx``, made by ``make(path)`` if absent or damaged.

    Returns the path and whether it was made now. ``make`` writes a temporary
    file that is moved into place only when complete, then the record
    ``key.json`` (with the file's SHA-256) is written; a reader that finds the
    two disagreeing treats the model as missing.
    """
    model, meta = folder / f"{key}.onnx", folder / f"{key}.json"
    if model.exists() or meta.exists():
        problem = cache_problem(model, meta)
        if problem is None:
            logger.debug("%s: cached ONNX model %s", what, model)
            return model, False
        warnings.warn(
            f"The cached ONNX model {str(model)!r} of {what} is damaged "
            f"({problem}); exporting it again.",
            DataQualityWarning,
            stacklevel=4,
        )
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".onnx.tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        make(tmp)
        digest = file_digest(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it private
        os.replace(tmp, model)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    atomic_write_text(meta, json.dumps({**(record or {}), "sha256": digest}, indent=1))
    logger.info("%s: exported to ONNX at %s", what, model)
    return model, True


def mark_checked(meta: Path, dim: int, probe: npt.ArrayLike | None = None) -> None:
    """Note in a model's record that its embeddings (``dim`` wide) were
    checked against torch's, so later runs may open it without torch; with
    the float embeddings of the seeded probe inputs (``probe``), what a
    runtime of another precision is checked against then."""
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(info, dict):
        return
    new = {**info, "checked_dim": dim}
    if probe is not None:
        new["checked_probe"] = np.asarray(probe, dtype=np.float64).round(7).tolist()
    if new == info:
        return
    with contextlib.suppress(OSError):
        atomic_write_text(meta, json.dumps(new, indent=1))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings and log lines (nothing may print)."""
    names = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(torch: Any, net: Any, kind: str, image_size: int, path: Path) -> None:
    """Write ``net`` as ONNX with a dynamic batch axis to ``path`` (one file).

    ``kind`` is "module" (an ``nn.Module`` in eval mode), "export" (an
    ``ExportedProgram``, whose batch dimension is already dynamic) or
    "torchscript".
    """
    x = torch.zeros((2, 3, image_size, image_size))
    names = {"input_names": ["x"], "output_names": ["y"]}
    with _quiet_exporter():
        if kind == "torchscript":
            # the torch.export-based exporter cannot trace a ScriptModule
            torch.onnx.export(
                net,
                (x,),
                str(path),
                dynamo=False,
                dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                opset_version=17,
                **names,
            )
            return
        import_optional("onnxscript", extra="deep", feature="Exporting a CNN to ONNX")
        dynamic = None
        if kind == "module":
            dynamic = ({0: torch.export.Dim("batch", min=1)},)
        torch.onnx.export(
            net,
            (x,),
            str(path),
            dynamo=True,
            dynamic_shapes=dynamic,
            external_data=False,
            optimize=True,
            verbose=False,
            opset_version=_OPSET,
            **names,
        )


class OrtNet:
    """An ONNX model in an ONNX Runtime CPU session: ``net(x) -> output``."""

    def __init__(self, path: Path, n_threads: int) -> None:
        ort = import_optional(
            "onnxruntime", extra="deep", feature="CnnEmbedder(runtime='onnx')"
        )
        so = ort.SessionOptions()
        so.intra_op_num_threads = n_threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: the library prints nothing
        # idle threads sleep instead of spinning: the decode threads share the
        # cores (CNN stage on 3,000 CIFAR images: 25-30 % less CPU time,
        # less wall time on a busy machine)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self._session = ort.InferenceSession(
            str(path), so, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        return np.asarray(self._session.run(None, {self._input: x})[0])


def openvino_available() -> bool:
    """Whether the OpenVINO runtime is installed (``pip install openvino``)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


class OvNet:
    """An ONNX model compiled by OpenVINO for the CPU: ``net(x) -> output``.

    The precision is bfloat16 where the CPU computes it natively (AMX or
    AVX-512 BF16: OpenVINO's own default there), float32 elsewhere;
    ``precision`` says which. On this project's 2-core Sapphire Rapids
    machine, EfficientNet-Lite0 at 224 px: 2.3x less CPU time per image than
    ONNX Runtime in float32; embeddings at a median cosine of 0.997 to
    float32's (0.95 at worst on real photos; the 5 nearest neighbours 92-95 %
    the same).
    """

    def __init__(self, path: Path, n_threads: int, precision: str = "auto") -> None:
        ov = import_optional("openvino", extra="deep", feature="CNN on OpenVINO")
        core = ov.Core()
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "auto":
            precision = "bf16" if "BF16" in caps else "f32"
        self.precision = precision
        self.path = path
        # One stream per thread, each running its share of a batch on one
        # core: the depthwise layers of a small network split poorly over
        # cores (2 cores, Lite0 at 224 px, bfloat16: ~7 % less CPU per image
        # than one stream of two threads).
        self.n_streams = max(1, int(n_threads))
        config = {"CACHE_DIR": cache} if (cache := _openvino_cache_dir()) else {}
        # From the file, with a cache: a run after the first loads the
        # compiled network (~0.15 s) instead of compiling it (~0.4 s);
        # OpenVINO keys the cache on the model, the settings and its version.
        self._compiled = core.compile_model(
            str(path),
            "CPU",
            {
                **config,
                "INFERENCE_NUM_THREADS": str(int(n_threads)),
                "INFERENCE_PRECISION_HINT": precision,
                "PERFORMANCE_HINT": "LATENCY" if self.n_streams == 1 else "THROUGHPUT",
                "NUM_STREAMS": str(self.n_streams),
            },
        )
        self._requests = [
            self._compiled.create_infer_request() for _ in range(self.n_streams)
        ]

    #: Images per inference request. The streams take turns on chunks this
    #: small: the activations of a few images stay in a core's cache (Lite0
    #: at 224 px, bfloat16, 2 streams: 15-25 % less CPU per image than
    #: halves of a batch of 32).
    CHUNK = 4

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        starts = range(0, len(x), self.CHUNK)
        outs: list[npt.NDArray[np.float32]] = []
        busy: list[Any] = []  # requests in flight, oldest first

        def collect() -> None:
            r = busy.pop(0)
            r.wait()
            outs.append(np.array(r.get_output_tensor(0).data, dtype=np.float32))

        for j, lo in enumerate(starts):
            r = self._requests[j % self.n_streams]
            if len(busy) == self.n_streams:
                collect()  # the oldest is this request: done before its reuse
            r.start_async({0: x[lo : lo + self.CHUNK]})
            busy.append(r)
        while busy:
            collect()
        return outs[0] if len(outs) == 1 else np.concatenate(outs)


def _openvino_cache_dir() -> str | None:
    """Where OpenVINO keeps compiled networks (beside the ONNX cache), or
    None where that folder cannot be made (the network is then compiled in
    every run, as without a cache)."""
    path = default_cache_dir().parent / "openvino"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(path) if os.access(path, os.W_OK) else None


def quantize_int8(
    float_path: Path,
    calibration: npt.NDArray[np.float32],
    path: Path,
    *,
    input_name: str = "x",
    batch_size: int = 8,
) -> None:
    """Write an int8 copy of an ONNX model to ``path`` (static, QDQ).

    Weights are quantised per output channel to int8, activations to uint8
    with ranges calibrated (min/max) on ``calibration`` (n, 3, S, S), the
    preprocessed inputs of a sample of the data itself.
    """
    import_optional("onnx", extra="deep", feature="CnnEmbedder(runtime='onnx-int8')")
    q = import_optional(
        "onnxruntime.quantization",
        extra="deep",
        feature="CnnEmbedder(runtime='onnx-int8')",
    )
    shapes = import_optional(
        "onnxruntime.quantization.shape_inference",
        extra="deep",
        feature="CnnEmbedder(runtime='onnx-int8')",
    )

    class Batches(q.CalibrationDataReader):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            if self.start >= len(calibration):
                return None
            stop = self.start + batch_size
            batch = np.ascontiguousarray(calibration[self.start : stop])
            self.start = stop
            return {input_name: batch}

    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.ERROR)  # the quantiser logs through the root logger
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            pre = Path(tmp) / "pre.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shapes.quant_pre_process(
                    str(float_path), str(pre), skip_symbolic_shape=True
                )
                q.quantize_static(
                    str(pre),
                    str(path),
                    Batches(),
                    quant_format=q.QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    calibrate_method=q.CalibrationMethod.MinMax,
                )
    finally:
        root.setLevel(level)
