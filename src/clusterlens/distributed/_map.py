"""Map a pure function over fixed, contiguous shards of items on a Dask cluster.

The stages that transform items one by one (SIFT and CNN features of images,
quantization of descriptors) cut their items into contiguous shards fixed by
the item count alone, and submit one task per shard: a pure function of the
shard range and small parameters (file paths, settings). Each worker reads
its inputs from the files itself; only the shard's results come back, or go
to a per-shard part file the worker writes atomically. The client writes the
outputs in shard order, exactly where the local backend writes them.

A task lost with its worker is rerun by Dask (the tasks keep no state), and a
part file is either absent or whole (written to a temporary name, then
renamed), so a killed worker costs time but never changes the result.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import BackendError, DataValidationError
from clusterlens.io._safe import READ_ERRORS, describe_error
from clusterlens.utils._fs import atomic_write_bytes
from clusterlens.utils._progress import progress

__all__ = ["load_part", "map_shards", "part_path", "save_part", "shard_bounds"]

logger = logging.getLogger(__name__)


def shard_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` ranges of ``size`` items covering ``range(n)``."""
    size = max(1, int(size))
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def map_shards(
    fn: Callable[..., Any],
    bounds: Sequence[tuple[int, int]],
    *args: Any,
    client: Any = None,
    consume: Callable[[int, Any], None] | None = None,
    desc: str = "shards",
    unit: str = "item",
    verbose: int = 0,
) -> list[Any]:
    """Run ``fn(lo, hi, *args)`` for every shard on a Dask cluster.

    Parameters
    ----------
    fn : callable
        A module-level function (workers import it by name), pure in its
        arguments: Dask reruns it when a worker dies.
    bounds : sequence of (lo, hi)
        The shards, see :func:`shard_bounds`.
    *args
        Small arguments shared by every task (paths, settings); never large
        arrays, which the workers should read from files themselves.
    client : distributed.Client, optional
        See :func:`clusterlens.distributed.dask_client` for the default.
    consume : callable, optional
        Called on the client as ``consume(shard_index, result)`` as each shard
        finishes (in completion order; the shard index says where its result
        goes), after which the result is dropped. Without it the results are
        returned, in shard order.
    desc, unit, verbose
        The progress bar, which counts items (``hi - lo`` per shard).

    Returns
    -------
    list
        The results in shard order (``None`` for each when ``consume`` is given).

    Raises
    ------
    Exception
        The first error a task raised (the other tasks are cancelled).
    """
    from clusterlens.distributed._client import _distributed, dask_client

    distributed = _distributed()
    out: list[Any] = [None] * len(bounds)
    if not bounds:
        return out
    total = int(sum(hi - lo for lo, hi in bounds))
    with dask_client(client) as c:
        bar = progress(total=total, desc=desc, unit=unit, verbose=verbose)
        futures = [c.submit(fn, lo, hi, *args, pure=False) for lo, hi in bounds]
        where = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in distributed.as_completed(futures, loop=c.loop):
                i = where[fut.key]
                try:
                    res = fut.result()
                except distributed.KilledWorker as e:
                    lo, hi = bounds[i]
                    raise BackendError(
                        f"Dask workers died again and again running {desc} items "
                        f"{lo}:{hi} ({e}). Check the workers' memory and logs, or "
                        "use smaller shards."
                    ) from e
                fut.release()
                if consume is not None:
                    consume(i, res)
                else:
                    out[i] = res
                lo, hi = bounds[i]
                bar.update(hi - lo)
        except BaseException:
            c.cancel(futures)
            raise
        finally:
            bar.close()
    return out


# --------------------------------------------------------------------------- #
# Per-shard part files: absent or whole
# --------------------------------------------------------------------------- #
def part_path(folder: str | os.PathLike[str], lo: int, hi: int) -> Path:
    """The part file of shard ``[lo, hi)`` in ``folder`` (names sort in shard order)."""
    return Path(os.fspath(folder)) / f"shard-{lo:012d}-{hi:012d}.npz"


def save_part(path: str | os.PathLike[str], **arrays: npt.ArrayLike) -> Path:
    """Write ``arrays`` as an uncompressed ``.npz`` atomically (temp file + rename).

    A worker killed while writing leaves at most a hidden temporary file,
    never a part file that looks finished; two writers of the same shard
    (a task rerun while the first copy still ran) write the same bytes.
    """
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return atomic_write_bytes(path, buf.getvalue())


def load_part(
    path: str | os.PathLike[str], keys: Sequence[str] | None = None
) -> dict[str, npt.NDArray[Any]]:
    """The arrays (all, or those named in ``keys``) of a :func:`save_part` file.

    Raises
    ------
    DataValidationError
        If the file cannot be read (remove the work folder and run again).
    """
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            return {k: z[k] for k in (z.files if keys is None else keys)}
    except READ_ERRORS as e:
        raise DataValidationError(
            f"Cannot read the shard file {str(path)!r} ({describe_error(e, '.npz')})."
            " Remove its work folder and run again."
        ) from e
