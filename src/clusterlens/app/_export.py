"""Export a review: its labels, what it left out, and its suggestions, in one call."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from clusterlens.app._data import ReviewData
from clusterlens.app._store import ReviewStore
from clusterlens.io._export import export_labels

__all__ = ["export_review"]


def _suggestions(
    data: ReviewData, store: ReviewStore
) -> dict[int, tuple[str, float | None]]:
    """The label-issues fixes still open: item -> (suggested label, score)."""
    sus = data.suspects
    if sus is None:
        return {}
    open_ = {int(s["index"]) for s in store.suspects("open")}
    quality = sus.get("label_quality")
    out: dict[int, tuple[str, float | None]] = {}
    for j, i in enumerate(sus["index"].tolist()):
        if int(i) in open_:
            # the label-issues export's score: 1 - quality of the given label
            sc = None if quality is None else float(1.0 - quality[j])
            out[int(i)] = (str(sus["suggested"][j]), sc)
    return out


def export_review(
    data: ReviewData,
    store: ReviewStore | None,
    out: str | os.PathLike[str],
    *,
    fmt: str,
    files: str = "symlink",
    final: str | os.PathLike[str] | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Export what a review decided (the CLI's ``export`` and the app's buttons).

    Reviewed labels are exported; items marked duplicate (keep one) or
    rejected into the pool are left out (:meth:`ReviewStore.excluded`);
    Label Studio tasks carry the cluster names (scored by
    :meth:`ReviewStore.typicality`) and the open label-issues suggestions as
    predictions. With no store (nothing reviewed yet) the clusters are
    exported without labels.

    See :func:`clusterlens.io._export.export_labels` for the formats and the
    summary returned.
    """
    if store is None:
        return export_labels(
            data.workspace,
            [None] * len(data),
            out,
            fmt=fmt,
            cluster=data.cluster,
            cluster_names={int(c): None for c in np.unique(data.cluster)},
            files=files,
            final=final,
            verbose=verbose,
        )
    return export_labels(
        data.workspace,
        store.labels(),
        out,
        fmt=fmt,
        cluster=store.assignment(),
        cluster_names=store.cluster_names(),
        skip=store.excluded(),
        scores=store.typicality() if fmt == "labelstudio" else None,
        suggestions=_suggestions(data, store) if fmt == "labelstudio" else None,
        files=files,
        final=final,
        verbose=verbose,
    )
