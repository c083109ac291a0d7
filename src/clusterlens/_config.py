"""Global configuration: working memory, progress bars, threads and device."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from clusterlens.exceptions import InvalidParameterError

__all__ = ["BACKENDS", "config_context", "get_config", "resolve_backend", "set_config"]

#: Where heavy stages can run.
BACKENDS = ("local", "dask")

_DEFAULTS: dict[str, Any] = {
    # MiB that a chunked computation may use for its temporary buffers.
    "working_memory": 1024,
    # Whether progress bars may be shown at all (verbose still has to ask).
    "show_progress": True,
    # Threads for chunked numeric loops; None means every core this process may use.
    "n_threads": None,
    # Device for torch-based methods: "cpu", "cuda" or None (auto).
    "device": None,
    # Where heavy stages run: "local" (this process) or "dask" (a Dask cluster).
    "backend": "local",
    # Address of a running dask.distributed scheduler for backend="dask"; None:
    # the current client if there is one, else a LocalCluster started and closed
    # by clusterlens.
    "scheduler": None,
}
_local = threading.local()


def _config() -> dict[str, Any]:
    if not hasattr(_local, "config"):
        _local.config = dict(_DEFAULTS)
    cfg: dict[str, Any] = _local.config
    return cfg


def get_config() -> dict[str, Any]:
    """Return a copy of the current configuration.

    Returns
    -------
    config : dict
        Keys ``working_memory`` (MiB), ``show_progress`` (bool), ``n_threads``
        (int or None), ``device`` (str or None), ``backend`` ("local" or
        "dask") and ``scheduler`` (a Dask scheduler address or None).
    """
    return dict(_config())


def set_config(**params: Any) -> None:
    """Set configuration values for the current thread.

    Parameters
    ----------
    **params
        Any of the keys returned by :func:`get_config`.

    Raises
    ------
    InvalidParameterError
        If a key is unknown or a value is out of range.
    """
    cfg = _config()
    for key, value in params.items():
        if key not in _DEFAULTS:
            raise InvalidParameterError(
                f"Unknown configuration key {key!r}. Available: {', '.join(_DEFAULTS)}."
            )
        if key == "working_memory" and (
            not isinstance(value, int | float) or value <= 0
        ):
            raise InvalidParameterError(
                f"working_memory must be a positive number of MiB; got {value!r}."
            )
        if (
            key == "n_threads"
            and value is not None
            and (not isinstance(value, int) or value < 1)
        ):
            raise InvalidParameterError(
                f"n_threads must be None or an int >= 1; got {value!r}."
            )
        if key == "backend" and value not in BACKENDS:
            raise InvalidParameterError(
                f"backend must be one of {', '.join(map(repr, BACKENDS))}; "
                f"got {value!r}."
            )
        if key == "scheduler" and value is not None and not isinstance(value, str):
            raise InvalidParameterError(
                f"scheduler must be an address such as 'tcp://host:8786' or None; "
                f"got {value!r}."
            )
        cfg[key] = value


@contextlib.contextmanager
def config_context(**params: Any) -> Iterator[None]:
    """Temporarily set configuration values, restoring them on exit.

    Examples
    --------
    >>> from clusterlens import config_context, get_config
    >>> with config_context(working_memory=8):
    ...     get_config()["working_memory"]
    8
    """
    old = get_config()
    set_config(**params)
    try:
        yield
    finally:
        _config().clear()
        _config().update(old)


def effective_n_threads() -> int:
    """Number of threads chunked loops use under the current configuration."""
    n = _config()["n_threads"]
    if n is not None:
        return int(n)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_backend(backend: str | None = None) -> str:
    """``backend`` if given, else the configured default ("local" or "dask")."""
    b = _config()["backend"] if backend is None else backend
    if b not in BACKENDS:
        raise InvalidParameterError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {b!r}."
        )
    return str(b)
