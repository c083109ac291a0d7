"""What the review app reads: a workspace, one clustering, its features, suspects."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.io._results import read_results
from clusterlens.io._safe import load_npy
from clusterlens.io._workspace import Workspace, open_workspace

__all__ = [
    "ReviewData",
    "find_results",
    "load_review_data",
    "open_review",
    "reset_review",
    "stored_source",
]

logger = logging.getLogger(__name__)

#: run.json schemas whose results.parquet the app understands (version 1).
KNOWN_RESULT_SCHEMAS = (
    "clusterlens.cluster-images/1",
    "clusterlens.topics/1",
    "clusterlens.iic/1",
    "clusterlens.iic-predict/1",
    "clusterlens.kmeans/1",
)
ISSUES_SCHEMA = "clusterlens.label_issues/1"


@dataclass(frozen=True)
class ReviewData:
    """One workspace's clustering as the review app sees it.

    Attributes
    ----------
    workspace : Workspace
    results_path : Path
        The results Parquet the clusters come from.
    cluster : ndarray of shape (n_items,), int64
        Initial cluster of each item (-1: none).
    distance : ndarray of shape (n_items,) or None
        Distance of each item to its cluster centre (smaller is more typical).
    features : ndarray of shape (n_items, d) or None
        The feature matrix the clustering used, when it can still be read.
    suspects : dict of str to ndarray or None
        ``index``, ``issue_rank``, ``given``, ``suggested`` (and
        ``label_quality`` when the run wrote it) of a label-issues run.
    """

    workspace: Workspace
    results_path: Path
    cluster: npt.NDArray[np.int64]
    distance: npt.NDArray[np.float64] | None
    features: npt.NDArray[np.float32] | None
    suspects: dict[str, npt.NDArray[Any]] | None

    def __len__(self) -> int:
        """Number of items."""
        return int(self.cluster.shape[0])


def _candidates(root: Path, name: str) -> list[Path]:
    out = []
    for p in root.rglob(name):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue  # staging folders of runs in progress
        out.append(p)
    return sorted(out, key=lambda p: p.stat().st_mtime, reverse=True)


def find_results(ws: str | os.PathLike[str]) -> Path:
    """The newest ``results.parquet`` with a ``cluster`` or ``topic`` column in WS.

    Raises
    ------
    DataValidationError
        If the workspace has no clustering results.
    """
    root = Path(os.fspath(ws))
    found = _candidates(root, "results.parquet")
    if not found:
        raise DataValidationError(
            f"Workspace {str(root)!r} has no clustering results (no results.parquet "
            "under it). Run one first, e.g.: clusterlens features pixels WS --pca 50 "
            "&& clusterlens cluster WS --features pixels-pca50 -k 100"
        )
    return found[0]


def _read_run_json(folder: Path) -> dict[str, Any] | None:
    p = folder / "run.json"
    if not p.is_file():
        return None
    try:
        out = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataValidationError(f"Cannot read {str(p)!r}: {e}.") from e
    return out if isinstance(out, dict) else None


def _check_schema(
    path: Path, run: dict[str, Any] | None, known: tuple[str, ...]
) -> None:
    if run is None:
        return
    schema = run.get("schema")
    if schema not in known:
        raise DataValidationError(
            f"Results {str(path)!r} were written with schema {schema!r}, which this "
            f"clusterlens version does not read (it reads {', '.join(known)}). "
            "Re-run the stage that wrote them with this version."
        )


def _load_features(ws: Workspace, run: dict[str, Any] | None) -> Any:
    if run is None:
        return None
    feat = run.get("parameters", {}).get("features")
    if not isinstance(feat, str) or not feat.endswith(".npy"):
        return None
    p = Path(feat)
    if not p.is_absolute():
        p = ws.root / p
    if not p.is_file():
        logger.info("features %s of the results are gone; no feature actions", p)
        return None
    X = load_npy(
        p,
        what="feature matrix",
        fix="re-run the clusterlens features command that wrote it",
        mmap=True,
    )
    if X.ndim != 2 or X.shape[0] != len(ws):
        return None
    return np.ascontiguousarray(X, dtype=np.float32)


def load_suspects(
    path: str | os.PathLike[str], n_items: int
) -> dict[str, npt.NDArray[Any]]:
    """Read a ``label_issues.parquet`` as the queue of suspects, worst first.

    Only the rows flagged as issues (``is_label_issue``) are kept when that
    column exists.

    Raises
    ------
    DataValidationError
        If the file is not a label-issues result for these items.
    """
    p = Path(os.fspath(path))
    _check_schema(p, _read_run_json(p.parent), (ISSUES_SCHEMA,))
    cols = read_results(
        p,
        what="label-issues table given to --issues",
        fix="re-create it with `clusterlens label-issues`, or pass another --issues",
    )
    need = {"index", "label", "suggested_label", "issue_rank"}
    if not need <= set(cols):
        raise DataValidationError(
            f"{str(p)!r} is not a label-issues result of this clusterlens version "
            f"(columns {sorted(cols)}; expected {sorted(need)}). Re-run "
            "clusterlens label-issues."
        )
    index = cols["index"].astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= n_items):
        raise DataValidationError(
            f"{str(p)!r} refers to item {int(index.max())} but the workspace has "
            f"{n_items} items; it belongs to another data set."
        )
    keep = (
        cols["is_label_issue"].astype(bool)
        if "is_label_issue" in cols
        else np.ones(index.size, dtype=bool)
    )
    order = np.argsort(cols["issue_rank"][keep], kind="stable")
    out = {
        "index": index[keep][order],
        "issue_rank": cols["issue_rank"][keep][order].astype(np.int64),
        "given": cols["label"][keep][order].astype(str),
        "suggested": cols["suggested_label"][keep][order].astype(str),
    }
    if "label_quality" in cols:  # the score of the suggestion an export writes
        out["label_quality"] = cols["label_quality"][keep][order].astype(np.float64)
    return out


def load_review_data(
    ws: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] | None = None,
    issues: str | os.PathLike[str] | None = None,
) -> ReviewData:
    """Open a workspace and the clustering to review.

    Parameters
    ----------
    ws : str or os.PathLike
        The workspace (``clusterlens ingest``).
    results : str or os.PathLike, default=None
        A results Parquet with ``index`` and ``cluster`` (or ``topic``) columns;
        default: the newest ``results.parquet`` under WS.
    issues : str or os.PathLike, default=None
        A ``label_issues.parquet`` whose flagged rows become the suspects queue;
        default: the newest one under WS, if any.

    Raises
    ------
    DataValidationError
        If WS is not a workspace, has no results, or the results are from an
        unknown schema or another data set.
    """
    wsp = open_workspace(ws)
    path = Path(os.fspath(results)) if results is not None else find_results(wsp.root)
    if not path.is_file():
        raise DataValidationError(
            f"Results file {str(path)!r} does not exist. Pass a results.parquet "
            "written by clusterlens cluster, topics or iic."
        )
    run = _read_run_json(path.parent)
    _check_schema(path, run, KNOWN_RESULT_SCHEMAS)
    cols = read_results(
        path,
        what="results table",
        fix="re-run the clusterlens cluster, topics or iic command that wrote it, "
        "or pass another --results",
    )
    col = "cluster" if "cluster" in cols else ("topic" if "topic" in cols else None)
    if "index" not in cols or col is None:
        raise DataValidationError(
            f"Results {str(path)!r} have no 'index' and 'cluster' columns (found "
            f"{sorted(cols)}); they come from an older or unknown clusterlens "
            "version. Re-run the stage that wrote them."
        )
    n = len(wsp)
    index = cols["index"].astype(np.int64)
    if index.size != n or not np.array_equal(np.sort(index), np.arange(n)):
        raise DataValidationError(
            f"Results {str(path)!r} have {index.size} rows but the workspace has {n} "
            "items; they belong to another workspace."
        )
    cluster = np.full(n, -1, dtype=np.int64)
    cluster[index] = cols[col].astype(np.int64)
    distance = None
    if "distance" in cols:
        distance = np.zeros(n, dtype=np.float64)
        distance[index] = cols["distance"].astype(np.float64)
    elif "topic_prob" in cols:
        distance = np.zeros(n, dtype=np.float64)
        distance[index] = 1.0 - cols["topic_prob"].astype(np.float64)
    features = _load_features(wsp, run)
    if issues is None:
        found = _candidates(wsp.root, "label_issues.parquet")
        issues = found[0] if found else None
    suspects = load_suspects(issues, n) if issues is not None else None
    return ReviewData(
        workspace=wsp,
        results_path=path,
        cluster=cluster,
        distance=distance,
        features=features,
        suspects=suspects,
    )


STORE_NAME = "review.sqlite"


def stored_source(path: str | os.PathLike[str]) -> str | None:
    """The results file a ``review.sqlite`` reviews (None: no such store)."""
    import sqlite3

    p = Path(os.fspath(path))
    if not p.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'source'").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return None  # not a store: ReviewStore says so
    return str(row[0]) if row and row[0] else None


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return Path(os.fspath(a)).resolve() == Path(os.fspath(b)).resolve()


def reset_review(ws: str | os.PathLike[str]) -> Path | None:
    """Move ``WS/review.sqlite`` aside (to ``review-<time>.sqlite.bak``).

    Returns
    -------
    backup : Path or None
        Where the old review now is; None when there was none.
    """
    import time

    root = Path(os.fspath(ws))
    path = root / STORE_NAME
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = root / f"review-{stamp}.sqlite.bak"
    n = 1
    while backup.exists():
        n += 1
        backup = root / f"review-{stamp}-{n}.sqlite.bak"
    for suffix in ("-wal", "-shm"):  # a store closed unsafely: keep it whole
        side = root / (STORE_NAME + suffix)
        if side.exists():
            side.replace(backup.with_name(backup.name + suffix))
    path.replace(backup)
    return backup


def open_review(
    ws: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] | None = None,
    issues: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    random_state: int = 0,
    create: bool = True,
    switch: bool = True,
) -> tuple[ReviewData, Any]:
    """Load a workspace's clustering and open (or create) its ``review.sqlite``.

    Parameters
    ----------
    results : str or os.PathLike, default=None
        The results to review. None: the ones the existing review reviews
        (or, for a new review, the newest under WS). Results other than the
        existing review's switch it to them: the labels given so far are
        kept, the clusters are the new ones
        (:meth:`ReviewStore.switch_results`).
    create : bool, default=True
        Whether to create the store when it does not exist yet; if False, a
        missing store gives ``store=None`` and no file is written.
    switch : bool, default=True
        Whether ``results`` other than the existing review's may switch it;
        if False they are refused (a DataValidationError saying how to
        switch).

    Returns
    -------
    data : ReviewData
    store : ReviewStore or None
        ``store.switched`` is the switch's result when opening switched the
        results, else None.

    Raises
    ------
    DataValidationError
        If the existing review's results are gone and no ``results`` is given,
        or ``switch`` is False and ``results`` are not the review's.
    """
    from clusterlens.app._store import ReviewStore

    root = Path(os.fspath(ws))
    path = Path(os.fspath(store)) if store is not None else root / STORE_NAME
    old = stored_source(path)
    if results is None and old is not None:
        if not Path(old).is_file():
            raise DataValidationError(
                f"{str(path)!r} reviews the results {old!r}, which are gone. Pass "
                "--results with the results to review now (the labels given are "
                "kept), or start over with --reset."
            )
        results = old
    data = load_review_data(ws, results=results, issues=issues)
    other = old is not None and not _same_file(old, data.results_path)
    if other and not switch:
        raise DataValidationError(
            f"{str(path)!r} reviews the results {old!r}, not "
            f"{str(data.results_path)!r}. Leave out --results to use the review's "
            f"own, or switch the review first (its labels are kept): clusterlens "
            f"review {root} --results {data.results_path}"
        )
    if not create and not path.exists():
        return data, None
    st = ReviewStore(
        path,
        cluster=data.cluster,
        distance=data.distance,
        features=data.features,
        suspects=data.suspects,
        source=str(data.results_path),
        random_state=random_state,
    )
    st.switched = None
    if other:
        try:
            st.switched = st.switch_results(data.cluster, source=str(data.results_path))
        except BaseException:
            st.close()
            raise
    return data, st
