"""The map view's data: 2-D coordinates and colour codes as compact binary arrays.

The page draws up to hundreds of thousands of points in one pass from typed
arrays, so the server sends them as raw little-endian arrays rather than JSON:
the coordinates as ``uint16`` pairs (the map's unit square quantised to
1/65,535: finer than any screen pixel at any zoom the page allows; 4 bytes a
point), the colour of each point as a ``uint16`` code into a legend that is
sent beside it.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.app._facts import ItemFacts
from clusterlens.exceptions import DataValidationError
from clusterlens.io._workspace import Workspace

__all__ = ["COLOUR_BY", "colour_codes", "load_map_xy", "pack_colours", "quantize_xy"]

#: What the map can colour its points by.
COLOUR_BY = ("cluster", "label", "issue")

#: Issue categories of the "issue" colouring, in order of precedence: an item
#: with several issues takes the first.
_ISSUE_ORDER = (
    ("duplicate", "duplicate"),
    ("label_issue", "label issue"),
    ("outlier", "outlier"),
    ("quality", "quality issue"),
)


def load_map_xy(ws: Workspace) -> npt.NDArray[np.float32] | None:
    """The map's (n_items, 2) coordinates in [0, 1], or None when there is no map.

    Raises
    ------
    DataValidationError
        If ``WS/map/map.parquet`` exists but is damaged or belongs to other items.
    """
    if not (ws.root / "map" / "map.parquet").is_file():
        return None
    from clusterlens.pipelines.curate import read_stage_table

    cols = read_stage_table(ws, "map", "map.parquet")
    if not {"index", "x", "y"} <= set(cols):
        raise DataValidationError(
            f"{ws.root / 'map' / 'map.parquet'} has no index, x and y columns; "
            f"recompute it with: clusterlens map {ws.root} --overwrite"
        )
    index = np.asarray(cols["index"], dtype=np.int64)
    n = len(ws)
    if not np.array_equal(np.sort(index), np.arange(n)):
        raise DataValidationError(
            f"{ws.root / 'map' / 'map.parquet'} does not list each item once; "
            f"recompute it with: clusterlens map {ws.root} --overwrite"
        )
    xy = np.empty((n, 2), dtype=np.float32)
    xy[index, 0] = np.asarray(cols["x"], dtype=np.float32)
    xy[index, 1] = np.asarray(cols["y"], dtype=np.float32)
    if not np.isfinite(xy).all():
        raise DataValidationError(
            f"{ws.root / 'map' / 'map.parquet'} holds NaN or infinite coordinates; "
            f"recompute it with: clusterlens map {ws.root} --overwrite"
        )
    return xy


def quantize_xy(xy: npt.NDArray[np.floating[Any]]) -> bytes:
    """Coordinates rescaled into [0, 65535] as interleaved little-endian uint16.

    The map is scaled to fill the unit square first (the stage writes it so;
    this keeps any other input in range).
    """
    a = np.asarray(xy, dtype=np.float64)
    lo = a.min(axis=0) if a.size else np.zeros(2)
    span = np.maximum(a.max(axis=0) - lo, 1e-12) if a.size else np.ones(2)
    q = np.rint((a - lo) / span * 65535.0).astype("<u2")
    return np.ascontiguousarray(q).tobytes()


def colour_codes(
    by: str,
    *,
    assignment: npt.NDArray[np.int64],
    labels: list[str | None],
    facts: ItemFacts,
    cluster_names: dict[int, str | None],
) -> tuple[npt.NDArray[np.uint16], list[dict[str, Any]]]:
    """Each item's colour code and the legend the codes index.

    Parameters
    ----------
    by : {"cluster", "label", "issue"}
        "cluster": the item's current cluster (the pool is one entry);
        "label": its label in the review (unlabelled items are one entry);
        "issue": the first of duplicate, label issue, outlier, quality issue
        that explore flagged it with, or none.
    assignment, labels
        The review's current clusters and labels (``ReviewStore``).
    facts, cluster_names
        What explore found; the clusters' names.

    Returns
    -------
    codes : ndarray of shape (n_items,), uint16
    legend : list of dict
        Entry ``codes == j`` is ``legend[j]``: ``name``, ``count`` and
        ``muted`` (True for the "nothing" entry: the pool, unlabelled, no
        issue), drawn grey on the page.

    Raises
    ------
    DataValidationError
        If ``by`` is not one of :data:`COLOUR_BY`.
    """
    n = assignment.shape[0]
    if by == "cluster":
        ids, inv = np.unique(assignment, return_inverse=True)
        names = [
            "pool"
            if c < 0
            else f"#{int(c)}"
            + (f" {cluster_names.get(int(c))}" if cluster_names.get(int(c)) else "")
            for c in ids
        ]
        muted = [bool(c < 0) for c in ids]
    elif by == "label":
        # Arrow's hash-based encoding: ~10 ms for 100,000 labels, where
        # np.unique over Python strings took ~100 ms
        import pyarrow as pa

        enc = pa.array(labels, type=pa.string()).dictionary_encode()
        got = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        words = enc.dictionary.to_pylist()
        order = np.argsort(np.asarray(words, dtype=str)) if words else np.zeros(0, int)
        rank = np.empty(len(words) + 1, dtype=np.int64)
        rank[order] = np.arange(1, len(words) + 1)
        rank[-1] = 0  # no label: the first entry
        inv = rank[np.asarray(got, dtype=np.int64)]
        ids = np.arange(len(words) + 1)
        names = ["unlabelled", *(words[j] for j in order)]
        muted = [True, *([False] * len(words))]
    elif by == "issue":
        code = np.zeros(n, dtype=np.int64)
        names, muted = ["no issue"], [True]
        for key, title in _ISSUE_ORDER:
            flag = facts.flags.get(key)
            if flag is None:
                continue
            names.append(title)
            muted.append(False)
            code[(code == 0) & flag] = len(names) - 1
        ids, inv = np.arange(len(names)), code
    else:
        raise DataValidationError(
            f"Unknown colouring {by!r}; colour the map by {', '.join(COLOUR_BY)}."
        )
    if len(ids) > 65535:
        raise DataValidationError(
            f"The map cannot colour {len(ids):,} distinct {by}s (at most 65,535)."
        )
    counts = np.bincount(inv, minlength=len(ids))
    legend = [
        {"name": str(nm), "count": int(c), "muted": m}
        for nm, c, m in zip(names, counts, muted, strict=True)
    ]
    return inv.astype("<u2"), legend


def pack_colours(codes: npt.NDArray[np.uint16], legend: list[dict[str, Any]]) -> bytes:
    """One binary message: uint32 length L, L bytes of JSON legend, then the codes.

    The codes start at the first multiple of 4 after the legend, so the page
    reads them as a ``Uint16Array`` view without copying.
    """
    head = json.dumps({"legend": legend}, ensure_ascii=False).encode("utf-8")
    pad = (-(4 + len(head))) % 4
    return (
        struct.pack("<I", len(head))
        + head
        + b" " * pad
        + np.ascontiguousarray(codes, dtype="<u2").tobytes()
    )
