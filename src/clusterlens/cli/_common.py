"""Options shared by commands: output folder, format, quiet, seed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: Upper bound of thread-count options: more threads than this only thrash.
MAX_THREADS = 256

_DEVICE_RE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")
_SCHEME_RE = re.compile(r"(tcp|tls|ucx|ws|wss)://")


class _DeviceType(click.ParamType):
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (checked at parse time)."""

    name = "device"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        text = str(value).strip().lower()
        if not _DEVICE_RE.fullmatch(text):
            self.fail(
                f"{value!r} is not a device. Use auto (CUDA when present), cpu, "
                "cuda, cuda:N (the N-th GPU) or mps.",
                param,
                ctx,
            )
        return text

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "[auto|cpu|cuda|cuda:N|mps]"


#: The type of ``--device`` options.
DEVICE = _DeviceType()


def check_scheduler_address(address: str) -> str:
    """``address`` if it reads as a Dask scheduler address, else ``ValueError``.

    Accepted: ``[tcp|tls|ucx|ws|wss]://host:port``, ``host:port`` and
    ``inproc://name``; the port is an int in [1, 65535].
    """
    text = address.strip()
    if text.startswith("inproc://") and len(text) > len("inproc://"):
        return address
    rest = _SCHEME_RE.sub("", text, count=1) if _SCHEME_RE.match(text) else text
    host, sep, port = rest.rpartition(":")
    ok = bool(sep and host and "/" not in rest and port.isdigit())
    if ok and not 1 <= int(port) <= 65535:
        ok = False
    if not ok:
        raise ValueError(
            f"{address!r} is not a scheduler address; expected tcp://HOST:PORT "
            "(e.g. tcp://10.0.0.5:8786) or HOST:PORT, as `dask scheduler` prints it."
        )
    return address


def _scheduler_callback(ctx: Any, param: Any, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_scheduler_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from e


__all__ = [
    "DEVICE",
    "MAX_THREADS",
    "backend_context",
    "backend_options",
    "check_scheduler_address",
    "checkpoint_options",
    "common_options",
    "descriptor_options",
    "resolve_backend_options",
    "resolve_checkpoint",
    "verbosity",
]


def common_options(
    default_out: str | None = None,
    *,
    out_required: bool | None = None,
    out_help: str = "Output folder (written only when the run succeeds).",
) -> Callable[[F], F]:
    """``--out``, ``--overwrite``, ``--format``, ``--quiet`` and ``--seed``.

    ``--out`` is required unless it has a default or ``out_required=False``
    (a command that picks its own folder when none is given).
    """
    required = default_out is None if out_required is None else out_required

    def deco(f: F) -> F:
        f = click.option(
            "--seed",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Seed for every random choice; the same seed gives the same output.",
        )(f)
        f = click.option(
            "-q", "--quiet", is_flag=True, help="No progress bar and no summary text."
        )(f)
        f = click.option(
            "--format",
            "fmt",
            type=click.Choice(["human", "json"]),
            default="human",
            show_default=True,
            help="What to print on stdout (json implies no progress).",
        )(f)
        f = click.option(
            "--overwrite", is_flag=True, help="Replace the output folder if it exists."
        )(f)
        f = click.option(
            "-o",
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            required=required,
            default=default_out,
            show_default=True,
            help=out_help,
        )(f)
        return f

    return deco


def checkpoint_options(every: str = "iteration") -> Callable[[F], F]:
    """``--checkpoint DIR`` and ``--resume [DIR]`` (see :func:`resolve_checkpoint`)."""

    def deco(f: F) -> F:
        f = click.option(
            "--resume",
            "resume",
            is_flag=False,
            flag_value="",
            default=None,
            metavar="[DIR]",
            help="Continue an interrupted run from the checkpoint in DIR "
            "(default: --checkpoint); it ends as an uninterrupted run would.",
        )(f)
        f = click.option(
            "--checkpoint",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=f"Folder for a checkpoint written after every {every}.",
        )(f)
        return f

    return deco


def resolve_checkpoint(
    checkpoint: Path | None, resume: str | None
) -> tuple[Path | None, bool]:
    """The checkpoint folder and whether to resume, from the two options.

    Resuming needs an existing folder: it is never created, and a file is
    refused (usage errors, exit code 2).
    """
    if resume is None:
        return checkpoint, False
    folder = Path(resume) if resume else checkpoint
    if folder is None:
        raise click.BadParameter(
            "give the checkpoint folder: --resume DIR, or --checkpoint DIR --resume",
            param_hint="--resume",
        )
    if not folder.is_dir():
        found = (
            "it is a file, not a checkpoint folder"
            if folder.exists()
            else "the folder does not exist"
        )
        raise click.BadParameter(
            f"no checkpoint in {str(folder)!r}: {found}. Give the folder a previous "
            "run wrote its checkpoint to (its --checkpoint DIR)",
            param_hint="--resume",
        )
    return folder, True


def backend_options(f: F) -> F:
    """``--backend local|dask`` and ``--scheduler ADDRESS``.

    The command receives ``backend`` ("local" or "dask") and ``scheduler``;
    use :func:`backend_context` around the heavy work.
    """
    f = click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        callback=_scheduler_callback,
        help="A running dask.distributed scheduler (tcp://host:8786) for "
        "--backend dask; without it a local Dask cluster is started and closed.",
    )(f)
    f = click.option(
        "--backend",
        type=click.Choice(["local", "dask"]),
        default=None,
        help="Run the heavy work in this process (local, the default) or on a "
        "Dask cluster (dask; implied by --scheduler).",
    )(f)
    return f


def resolve_backend_options(backend: str | None, scheduler: str | None) -> str:
    """The backend the two options ask for (``--scheduler`` implies dask)."""
    if scheduler is not None and backend == "local":
        raise click.BadParameter(
            "--scheduler needs --backend dask (or leave --backend out)",
            param_hint="--scheduler",
        )
    if scheduler is not None:
        return "dask"
    return backend or "local"


def backend_context(backend: str | None, scheduler: str | None) -> Any:
    """A config context in which library calls run on the chosen backend."""
    from clusterlens._config import config_context

    return config_context(
        backend=resolve_backend_options(backend, scheduler), scheduler=scheduler
    )


def descriptor_options(f: F) -> F:
    """``--format-in``, ``--dim`` and ``--key``: how to read a descriptor file."""
    f = click.option(
        "--key",
        default=None,
        help="Array to use in an .npz archive (default: its only array, or "
        "'descriptors', 'features', 'X').",
    )(f)
    f = click.option(
        "--dim",
        type=click.IntRange(min=1),
        default=128,
        show_default=True,
        help="Row length of a raw Oxford .bin file.",
    )(f)
    f = click.option(
        "--format-in",
        "format_in",
        type=click.Choice(["npy", "npz", "fvecs", "bvecs", "ivecs", "bin"]),
        default=None,
        help="Input format when the suffix does not say it.",
    )(f)
    return f


def verbosity(quiet: bool, fmt: str) -> int:
    """Progress bars only for a person reading human output."""
    return 0 if quiet or fmt == "json" else 1
