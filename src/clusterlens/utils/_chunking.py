"""Chunk sizes from a memory budget, and row batches."""

from __future__ import annotations

from collections.abc import Iterator

from clusterlens._config import get_config

__all__ = ["gen_batches", "get_chunk_n_rows"]


def get_chunk_n_rows(
    row_bytes: int,
    *,
    max_n_rows: int | None = None,
    working_memory: float | None = None,
) -> int:
    """Rows per chunk so that ``rows * row_bytes`` fits the working memory (MiB).

    At least one row is always returned, as in scikit-learn's helper of the
    same name.
    """
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    rows = int(working_memory * 2**20) // max(1, int(row_bytes))
    if max_n_rows is not None:
        rows = min(rows, int(max_n_rows))
    return max(1, rows)


def gen_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Yield ``slice(start, stop)`` covering ``range(n)`` in ``batch_size`` steps."""
    batch_size = max(1, int(batch_size))
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
