"""The review store: every annotator action saved at once to SQLite, with undo.

``WS/review.sqlite`` holds the current state (each item's cluster and label, each
cluster's name, each suspect's decision) and the log of actions that led there.
Every action runs in one ``BEGIN IMMEDIATE`` transaction in WAL mode with
``synchronous=FULL``: a crash, a killed server or a closed tab loses nothing,
and two writers (two browser tabs, two processes) are serialised by SQLite, so
the last write wins and the file stays consistent. Each thread gets its own
connection (a connection's transaction is never shared by two request
threads), so an action the store acknowledged is committed and an action that
raised left nothing behind. Each logged action keeps the
rows it changed as they were before, which is what :meth:`ReviewStore.undo`
restores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.app._history import describe_action
from clusterlens.exceptions import DataValidationError, InvalidParameterError

__all__ = ["STORE_SCHEMA", "ReviewStore"]

logger = logging.getLogger(__name__)

STORE_SCHEMA = "clusterlens.review/1"
POOL = -1  # the cluster id of items rejected with nowhere to go

_DDL = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items(
    idx INTEGER PRIMARY KEY, cluster INTEGER NOT NULL, label TEXT,
    manual INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS items_cluster ON items(cluster);
CREATE TABLE IF NOT EXISTS clusters(
    id INTEGER PRIMARY KEY, name TEXT, merged_into INTEGER);
CREATE TABLE IF NOT EXISTS suspects(
    idx INTEGER PRIMARY KEY, rank INTEGER NOT NULL, given TEXT NOT NULL,
    suggested TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open');
CREATE TABLE IF NOT EXISTS actions(
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    args TEXT NOT NULL, undo TEXT NOT NULL, undone INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS marks(idx INTEGER PRIMARY KEY, mark TEXT NOT NULL);
"""

_DECISIONS = ("accept", "keep", "fix")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError(
            f"A label name must be a non-empty string; got {name!r}."
        )
    name = name.strip()
    if len(name) > 200:
        raise InvalidParameterError(
            f"A label name must be at most 200 characters; got {len(name)}."
        )
    return name


class _Connection:
    """One thread's connection: closed when its thread ends (and its local goes)."""

    __slots__ = ("__weakref__", "con")

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def close(self) -> None:
        with contextlib.suppress(sqlite3.ProgrammingError):  # closed already
            self.con.close()

    def __del__(self) -> None:
        self.close()


@dataclass
class _Tx:
    """A write transaction of :meth:`ReviewStore._transaction`."""

    con: sqlite3.Connection
    changed: bool = False  # count one more revision at commit
    stale: bool = False  # re-read every row on next use


class ReviewStore:
    """The state of one review and its action log, in an SQLite file.

    Parameters
    ----------
    path : str or os.PathLike
        The SQLite file (``WS/review.sqlite``); created on first use.
    cluster : array-like of shape (n_items,), int
        Initial cluster of each item; used only when the file is created,
        and checked against the file (same number of items) when it exists.
    distance : array-like of shape (n_items,), default=None
        Distance of each item to its initial cluster centre: orders the grid
        (closest first, outliers last).
    features : ndarray of shape (n_items, d), default=None
        The features behind the clustering: rejected items go to their nearest
        other cluster, ``split`` runs 2-means, and the grid is ordered by the
        distance to the current cluster mean.
    suspects : dict, default=None
        ``index``, ``issue_rank``, ``given``, ``suggested`` of a label-issues run;
        loaded once, when the file is created.
    source : str, default=""
        What the clusters come from (recorded in the file).
    random_state : int, default=0
        Seed of ``split``.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> store = ReviewStore(os.path.join(d, "review.sqlite"), cluster=[0, 0, 1])
    >>> _ = store.name_cluster(0, "cat")
    >>> store.labels()
    ['cat', 'cat', None]
    >>> _ = store.undo()
    >>> store.labels()
    [None, None, None]
    >>> store.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cluster: npt.ArrayLike,
        distance: npt.ArrayLike | None = None,
        features: npt.NDArray[Any] | None = None,
        suspects: dict[str, npt.NDArray[Any]] | None = None,
        source: str = "",
        random_state: int = 0,
    ) -> None:
        self.path = Path(os.fspath(path))
        init = np.asarray(cluster, dtype=np.int64).ravel()
        self.n_items = int(init.shape[0])
        self._distance = (
            None if distance is None else np.asarray(distance, dtype=np.float64)
        )
        self._features = features
        self.random_state = random_state
        # One connection per thread (a request thread of the web app, a worker):
        # sqlite3 connections hold one transaction at a time, so sharing one
        # across threads nests BEGINs and commits other threads' writes.
        self._local = threading.local()
        self._conns: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._closed = False
        # Guards the in-memory copy of the items (shared by the threads) and
        # serialises this process's actions (SQLite serialises processes).
        self._lock = threading.RLock()
        try:
            self._con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as e:
            self.close()
            raise DataValidationError(
                f"{str(self.path)!r} is not a review store ({e}). Move it away "
                "to start a new review."
            ) from e
        self._create(init, suspects, source)
        self._version: tuple[int, int] | None = None
        #: the result of :meth:`switch_results` when opening switched results
        self.switched: dict[str, Any] | None = None
        self._cluster = np.empty(0, dtype=np.int64)
        self._label: npt.NDArray[Any] = np.empty(0, dtype=object)
        self._manual = np.empty(0, dtype=bool)
        self._reload()

    # ------------------------------------------------------------------ #
    # set-up and caching
    # ------------------------------------------------------------------ #
    def _create(
        self,
        init: npt.NDArray[np.int64],
        suspects: dict[str, npt.NDArray[Any]] | None,
        source: str,
    ) -> None:
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _DDL.split(";"):
                if stmt.strip():
                    con.execute(stmt)
        except sqlite3.DatabaseError as e:
            con.execute("ROLLBACK")
            raise DataValidationError(
                f"{str(self.path)!r} is not a review store ({e}). Move it away "
                "to start a new review."
            ) from e
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta:
            con.execute("COMMIT")
            if meta.get("schema") != STORE_SCHEMA:
                raise DataValidationError(
                    f"{str(self.path)!r} has schema {meta.get('schema')!r}; this "
                    f"version reads {STORE_SCHEMA!r}. Move it away to start anew."
                )
            if int(meta.get("n_items", -1)) != self.n_items:
                raise DataValidationError(
                    f"{str(self.path)!r} holds a review of {meta.get('n_items')} "
                    f"items but the clustering has {self.n_items}; it belongs to "
                    "another workspace. Move it away to start a new review."
                )
            return
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("schema", STORE_SCHEMA),
                ("n_items", str(self.n_items)),
                ("source", source),
                ("created", str(time.time())),
                ("cursor", str(int(init[init >= 0].min()) if (init >= 0).any() else 0)),
            ],
        )
        con.executemany(
            "INSERT INTO items(idx, cluster) VALUES (?, ?)",
            zip(range(self.n_items), init.tolist(), strict=True),
        )
        con.executemany(
            "INSERT INTO clusters(id) VALUES (?)",
            [(int(c),) for c in np.unique(init[init >= 0]).tolist()],
        )
        if suspects is not None:
            con.executemany(
                "INSERT INTO suspects(idx, rank, given, suggested) VALUES (?,?,?,?)",
                zip(
                    suspects["index"].tolist(),
                    suspects["issue_rank"].tolist(),
                    [str(s) for s in suspects["given"]],
                    [str(s) for s in suspects["suggested"]],
                    strict=True,
                ),
            )
        con.execute("COMMIT")

    @property
    def _con(self) -> sqlite3.Connection:
        """This thread's connection (opened on its first use)."""
        held = getattr(self._local, "held", None)
        if held is None:
            if self._closed:
                raise sqlite3.ProgrammingError(
                    f"The review store {str(self.path)!r} is closed."
                )
            con = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA synchronous=FULL")
            held = _Connection(con)
            self._local.held = held
            with self._lock:
                self._conns.add(held)
        return held.con

    def _revision(self) -> tuple[int, int]:
        """Changes whenever an action or an undo commits (in any process)."""
        rev, last = self._con.execute(
            "SELECT (SELECT value FROM meta WHERE key = 'rev'), "
            "(SELECT MAX(id) FROM actions)"
        ).fetchone()
        return int(rev or 0), int(last or 0)

    def _bump_revision(self) -> tuple[int, int]:
        """Count one more change; call inside the action's transaction."""
        self._con.execute(
            "INSERT INTO meta VALUES ('rev', '1') ON CONFLICT(key) DO UPDATE "
            "SET value = CAST(value AS INTEGER) + 1"
        )
        return self._revision()

    def _reload(self) -> None:
        """Re-read the items when an action committed since last time."""
        with self._lock:
            con = self._con
            own = not con.in_transaction
            if own:  # one read snapshot: the revision and the rows agree
                con.execute("BEGIN")
            try:
                v = self._revision()
                if v == self._version:
                    return
                rows = con.execute(
                    "SELECT cluster, label, manual FROM items ORDER BY idx"
                ).fetchall()
            finally:
                if own:
                    con.execute("COMMIT")
            self._cluster = np.array([r[0] for r in rows], dtype=np.int64)
            self._label = np.array([r[1] for r in rows], dtype=object)
            self._manual = np.array([bool(r[2]) for r in rows], dtype=bool)
            self._version = v

    def close(self) -> None:
        """Close every thread's connection (the file keeps everything)."""
        with self._lock:
            self._closed = True
            for held in list(self._conns):
                held.close()
            self._local.held = None

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ #
    # the transaction every action goes through
    # ------------------------------------------------------------------ #
    def _snapshot(
        self,
        items: Sequence[int],
        clusters: Sequence[int],
        suspects: Sequence[int],
        marks: Sequence[int] = (),
    ) -> dict[str, Any]:
        con = self._con
        snap: dict[str, Any] = {"items": [], "clusters": [], "new_clusters": []}
        if marks:
            snap["marks_idx"] = sorted(set(marks))
            snap["marks"] = []
            for chunk in _chunks(snap["marks_idx"]):
                q = ",".join("?" * len(chunk))
                snap["marks"] += con.execute(
                    f"SELECT idx, mark FROM marks WHERE idx IN ({q})", chunk
                ).fetchall()
        for chunk in _chunks(sorted(set(items))):
            q = ",".join("?" * len(chunk))
            snap["items"] += con.execute(
                f"SELECT idx, cluster, label, manual FROM items WHERE idx IN ({q})",
                chunk,
            ).fetchall()
        for c in sorted(set(clusters)):
            row = con.execute(
                "SELECT id, name, merged_into FROM clusters WHERE id = ?", (c,)
            ).fetchone()
            if row is None:
                snap["new_clusters"].append(c)
            else:
                snap["clusters"].append(list(row))
        snap["suspects"] = [
            list(r)
            for s in sorted(set(suspects))
            for r in con.execute(
                "SELECT idx, status FROM suspects WHERE idx = ?", (s,)
            ).fetchall()
        ]
        return snap

    def _begin(self) -> sqlite3.Connection:
        """Take the write lock (call under ``self._lock``)."""
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        self._reload()  # under the write lock: decisions use the newest state
        return con

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Tx]:
        """One write transaction under the lock, committed when the block ends.

        The block sets ``tx.changed`` when it changed something (the revision
        is then counted once, inside the transaction) and reloads the rows it
        touched. If it raises, everything is rolled back and the in-memory
        copy is re-read on next use (it may hold rolled-back rows).
        """
        with self._lock:
            con = self._begin()
            tx = _Tx(con)
            try:
                yield tx
                version = self._bump_revision() if tx.changed else self._version
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                self._version = None
                raise
            self._version = None if tx.stale else version

    def _run(self, kind: str, args: dict[str, Any], fn: Any) -> dict[str, Any]:
        """Run ``fn() -> (items, clusters, suspects, writes)`` as one action.

        Returns only once the action is committed; raises with nothing applied.
        """
        with self._transaction() as tx:
            con = tx.con
            items, clusters, suspects, writes, result = fn()
            marked = result.pop("_marked", ())
            snap = self._snapshot(items, clusters, suspects, marked)
            # a new action ends what could be redone (undone = 2: for good)
            con.execute("UPDATE actions SET undone = 2 WHERE undone = 1")
            for sql, rows in writes:
                con.executemany(sql, rows)
            cur = con.execute(
                "INSERT INTO actions(ts, kind, args, undo) VALUES (?, ?, ?, ?)",
                (
                    time.time(),
                    kind,
                    json.dumps(args, default=_plain),
                    json.dumps(snap),
                ),
            )
            action_id = int(cur.lastrowid or 0)
            tx.changed = True
            self._reload_rows(items)
        return {"action": action_id, "kind": kind, **result}

    def _reload_rows(self, items: Iterable[int]) -> None:
        idx = sorted(set(items))
        for chunk in _chunks(idx):
            q = ",".join("?" * len(chunk))
            for i, c, lab, man in self._con.execute(
                f"SELECT idx, cluster, label, manual FROM items WHERE idx IN ({q})",
                chunk,
            ):
                self._cluster[i] = c
                self._label[i] = lab
                self._manual[i] = bool(man)

    # ------------------------------------------------------------------ #
    # validation helpers
    # ------------------------------------------------------------------ #
    def _live_clusters(self) -> list[int]:
        return [
            int(r[0])
            for r in self._con.execute(
                "SELECT id FROM clusters WHERE merged_into IS NULL ORDER BY id"
            )
        ]

    def _check_cluster(self, c: object) -> int:
        if isinstance(c, bool) or not isinstance(c, int | np.integer):
            raise InvalidParameterError(f"A cluster id must be an int; got {c!r}.")
        row = self._con.execute(
            "SELECT merged_into FROM clusters WHERE id = ?", (int(c),)
        ).fetchone()
        if row is None:
            raise InvalidParameterError(f"Cluster {c} does not exist.")
        if row[0] is not None:
            raise InvalidParameterError(
                f"Cluster {c} was merged into cluster {row[0]}; act on that one."
            )
        return int(c)

    def _check_items(self, idx: object) -> list[int]:
        arr = np.atleast_1d(np.asarray(idx))
        if arr.size == 0 or arr.dtype.kind not in "iu":
            raise InvalidParameterError(
                f"Items must be given as non-empty integer indices; got {idx!r}."
            )
        if arr.min() < 0 or arr.max() >= self.n_items:
            raise InvalidParameterError(
                f"Item indices must lie in [0, {self.n_items}); got {arr.tolist()}."
            )
        return sorted(set(arr.astype(np.int64).tolist()))

    def _centres(
        self, clusters: Sequence[int]
    ) -> npt.NDArray[np.float64]:  # (len(clusters), d)
        """Means of the features of each given cluster under the current state."""
        import scipy.sparse as sp

        assert self._features is not None
        ids = np.asarray(clusters, dtype=np.int64)
        order = np.argsort(ids)
        at = np.clip(np.searchsorted(ids[order], self._cluster), 0, ids.size - 1)
        hit = ids[order][at] == self._cluster
        col = np.where(hit, order[at], -1)
        keep = np.flatnonzero(col >= 0)
        onehot = sp.csr_matrix(
            (np.ones(keep.size), (col[keep], keep)),
            shape=(len(clusters), self.n_items),
        )
        counts = np.asarray(onehot.sum(axis=1)).ravel()
        sums = onehot @ np.asarray(self._features, dtype=np.float64)
        return np.asarray(sums / np.maximum(counts, 1)[:, None])

    # ------------------------------------------------------------------ #
    # actions
    # ------------------------------------------------------------------ #
    def name_cluster(self, cluster: int, name: str) -> dict[str, Any]:
        """Name a cluster and label every item in it (items labelled one by one
        keep their own label).

        Returns
        -------
        result : dict
            ``action`` (its id), ``kind``, ``n_labelled`` (items whose label
            changed).
        """
        name = _check_name(name)

        def fn() -> Any:
            c = self._check_cluster(cluster)
            members = np.flatnonzero((self._cluster == c) & ~self._manual)
            change = members[self._label[members] != name].tolist()
            writes = [
                ("UPDATE clusters SET name = ? WHERE id = ?", [(name, c)]),
                (
                    "UPDATE items SET label = ? WHERE idx = ?",
                    [(name, i) for i in change],
                ),
            ]
            return change, [c], [], writes, {"n_labelled": len(change)}

        return self._run("name_cluster", {"cluster": cluster, "name": name}, fn)

    def reject(self, items: int | Sequence[int], *, to: str = "auto") -> dict[str, Any]:
        """Take items out of their cluster and clear their labels.

        Parameters
        ----------
        items : int or sequence of int
        to : {"auto", "nearest", "pool"}, default="auto"
            "nearest" moves each item to the nearest other cluster (by the
            distance of its features to the cluster means; needs features);
            "pool" puts them in the pool of unclustered items (cluster -1);
            "auto" is "nearest" when features are known, else "pool".

        Returns
        -------
        result : dict
            ``action``, ``kind``, ``moved_to`` (the new cluster of each item).
        """
        if to not in ("auto", "nearest", "pool"):
            raise InvalidParameterError(
                f"The 'to' parameter of reject must be one of 'auto', 'nearest', "
                f"'pool'. Got {to!r} instead."
            )
        if to == "nearest" and self._features is None:
            raise InvalidParameterError(
                "reject(to='nearest') needs the clustering's features, which this "
                "review has not got; use to='pool'."
            )
        mode = "nearest" if to == "auto" and self._features is not None else to

        def fn() -> Any:
            idx = self._check_items(items)
            target = np.full(len(idx), POOL, dtype=np.int64)
            live = self._live_clusters()
            if mode == "nearest" and len(live) > 1:
                cent = self._centres(live)
                x = np.asarray(self._features[idx], dtype=np.float64)  # type: ignore[index]
                d2 = (cent**2).sum(1)[
                    None, :
                ] - 2.0 * x @ cent.T  # + |x|^2, same for all
                live_arr = np.asarray(live)
                d2[live_arr[None, :] == self._cluster[idx][:, None]] = np.inf
                target = live_arr[np.argmin(d2, axis=1)]
            writes = [
                (
                    "UPDATE items SET cluster = ?, label = NULL, manual = 0 "
                    "WHERE idx = ?",
                    list(zip(target.tolist(), idx, strict=True)),
                )
            ]
            moved = dict(zip(idx, target.tolist(), strict=True))
            return idx, [], [], writes, {"moved_to": moved}

        return self._run("reject", {"items": items, "to": mode}, fn)

    def label_items(self, items: int | Sequence[int], name: str) -> dict[str, Any]:
        """Label items one by one (e.g. from the pool); naming their cluster
        later does not overwrite these labels."""
        name = _check_name(name)

        def fn() -> Any:
            idx = self._check_items(items)
            writes = [
                (
                    "UPDATE items SET label = ?, manual = 1 WHERE idx = ?",
                    [(name, i) for i in idx],
                )
            ]
            return idx, [], [], writes, {"n_labelled": len(idx)}

        return self._run("label_items", {"items": items, "name": name}, fn)

    def merge(self, into: int, other: int) -> dict[str, Any]:
        """Move every item of cluster ``other`` into cluster ``into``.

        Items keep their labels; those without one are labelled with
        ``into``'s name, if it has one.
        """

        def fn() -> Any:
            a, b = self._check_cluster(into), self._check_cluster(other)
            if a == b:
                raise InvalidParameterError(f"Cannot merge cluster {a} with itself.")
            name = self._con.execute(
                "SELECT name FROM clusters WHERE id = ?", (a,)
            ).fetchone()[0]
            members = np.flatnonzero(self._cluster == b).tolist()
            writes: list[tuple[str, list[Any]]] = [
                (
                    "UPDATE items SET cluster = ? WHERE idx = ?",
                    [(a, i) for i in members],
                ),
                ("UPDATE clusters SET merged_into = ? WHERE id = ?", [(a, b)]),
            ]
            if name is not None:
                writes.append(
                    (
                        "UPDATE items SET label = ? WHERE idx = ? AND label IS NULL",
                        [(name, i) for i in members],
                    )
                )
            return members, [a, b], [], writes, {"n_moved": len(members)}

        return self._run("merge", {"into": into, "other": other}, fn)

    def split(self, cluster: int) -> dict[str, Any]:
        """Split a cluster in two: 2-means on its features when known, else the
        closer and the farther half by distance. The half farther from the old
        centre becomes a new cluster, unlabelled.

        Returns
        -------
        result : dict
            ``action``, ``kind``, ``new_cluster``, ``n_moved``.
        """

        def fn() -> Any:
            c = self._check_cluster(cluster)
            members = np.flatnonzero(self._cluster == c)
            if members.size < 2:
                raise InvalidParameterError(
                    f"Cluster {c} has {members.size} item(s); it needs 2 to split."
                )
            if self._features is not None:
                from clusterlens.cluster import KMeans

                X = np.asarray(self._features[members], dtype=np.float32)
                if np.ptp(X, axis=0).max() == 0:
                    raise InvalidParameterError(
                        f"The items of cluster {c} all have the same features; "
                        "it cannot be split."
                    )
                km = KMeans(2, n_init=3, random_state=self.random_state).fit(X)
                part = np.asarray(km.labels_, dtype=np.int64)
                centre = X.mean(0)
                far = int(np.argmax(((km.cluster_centers_ - centre) ** 2).sum(1)))
                moved = members[part == far]
            else:
                dist = self._grid_distance(members, c)
                order = np.argsort(dist, kind="stable")
                moved = members[order[members.size // 2 :]]
            new = (
                int(
                    self._con.execute("SELECT MAX(id) FROM clusters").fetchone()[0] or 0
                )
                + 1
            )
            ids = moved.tolist()
            writes = [
                ("INSERT INTO clusters(id) VALUES (?)", [(new,)]),
                (
                    "UPDATE items SET cluster = ?, label = CASE WHEN manual = 1 "
                    "THEN label ELSE NULL END WHERE idx = ?",
                    [(new, i) for i in ids],
                ),
            ]
            return ids, [new], [], writes, {"new_cluster": new, "n_moved": len(ids)}

        return self._run("split", {"cluster": cluster}, fn)

    def keep_one(self, keep: int, others: int | Sequence[int]) -> dict[str, Any]:
        """Keep one copy of a group of duplicates: mark the others "duplicate"
        (and clear any mark on the one kept). Labels and clusters are left
        as they are; :meth:`marks` lists the marked items.

        Returns
        -------
        result : dict
            ``action``, ``kind``, ``n_marked``.
        """

        def fn() -> Any:
            (k,) = self._check_items(keep)
            rest = [i for i in self._check_items(others) if i != k]
            writes = [
                ("DELETE FROM marks WHERE idx = ?", [(k,)]),
                (
                    "INSERT OR REPLACE INTO marks VALUES (?, 'duplicate')",
                    [(i,) for i in rest],
                ),
            ]
            return [], [], [], writes, {"n_marked": len(rest), "_marked": [k, *rest]}

        return self._run("keep_one", {"keep": keep, "items": others}, fn)

    def marks(self) -> dict[int, str]:
        """The items marked by :meth:`keep_one` (index -> "duplicate")."""
        return {
            int(i): str(m)
            for i, m in self._con.execute("SELECT idx, mark FROM marks").fetchall()
        }

    def excluded(self) -> dict[int, str]:
        """The items every export leaves out, and why.

        ``"duplicate"``: marked by :meth:`keep_one` (the copy kept is not);
        ``"rejected"``: rejected into the pool (cluster -1) and not labelled
        since. An item rejected into its nearest other cluster is not
        excluded: it stays in the data set under that cluster.
        """
        with self._lock:
            self._reload()
            rows = self._con.execute(
                "SELECT args FROM actions WHERE kind = 'reject' AND undone = 0"
            ).fetchall()
            named: list[int] = []
            for (args,) in rows:
                items = json.loads(args).get("items", [])
                named += items if isinstance(items, list) else [items]
            idx = np.unique(np.asarray(named, dtype=np.int64))
            idx = idx[(idx >= 0) & (idx < self.n_items)]
            gone = idx[
                (self._cluster[idx] == POOL) & np.equal(self._label[idx], None)  # type: ignore[call-overload]
            ]
            out = dict.fromkeys(gone.tolist(), "rejected")
        out.update({i: m for i, m in self.marks().items() if m == "duplicate"})
        return out

    def typicality(self) -> npt.NDArray[np.float64]:
        """How typical each item is of its current cluster, in (0, 1].

        The share of the cluster's items at least as far from its centre
        (by the order of the grid): 1 for the closest, ``1/size`` for the
        farthest; NaN for items in the pool. The ``score`` of the cluster-name
        predictions an export writes.
        """
        out = np.full(self.n_items, np.nan)
        with self._lock:
            self._reload()
            for c in self._live_clusters():
                members = self.cluster_items(c)
                out[members] = 1.0 - np.arange(members.size) / max(members.size, 1)
        return out

    def resolve_suspect(
        self, item: int, decision: str, label: str | None = None
    ) -> dict[str, Any]:
        """Decide on one suspect of the label-issues queue.

        Parameters
        ----------
        item : int
        decision : {"accept", "keep", "fix"}
            "accept" takes the suggested label; "keep" confirms the given
            label; "fix" sets ``label``.
        label : str, default=None
            The right label, for "fix".
        """
        if decision not in _DECISIONS:
            raise InvalidParameterError(
                "The 'decision' parameter of resolve_suspect must be one of "
                f"'accept', 'keep', 'fix'. Got {decision!r} instead."
            )
        if decision == "fix":
            label = _check_name(label)

        def fn() -> Any:
            (i,) = self._check_items(item)
            row = self._con.execute(
                "SELECT given, suggested FROM suspects WHERE idx = ?", (i,)
            ).fetchone()
            if row is None:
                raise InvalidParameterError(f"Item {i} is not in the suspects queue.")
            new = {"accept": row[1], "keep": row[0], "fix": label}[decision]
            writes = [
                ("UPDATE items SET label = ?, manual = 1 WHERE idx = ?", [(new, i)]),
                ("UPDATE suspects SET status = ? WHERE idx = ?", [(decision, i)]),
            ]
            return [i], [], [i], writes, {"label": new}

        return self._run(
            "resolve_suspect",
            {"item": item, "decision": decision, "label": label},
            fn,
        )

    def _barrier(self) -> int:
        """Id of the last results switch: actions before it cannot be undone."""
        row = self._con.execute(
            "SELECT value FROM meta WHERE key = 'barrier'"
        ).fetchone()
        return int(row[0]) if row else 0

    def undo(self, n: int = 1) -> list[dict[str, Any]]:
        """Undo the last ``n`` actions not yet undone (newest first), whoever
        made them. Actions taken before a switch of results
        (:meth:`switch_results`) are not undone.

        Returns
        -------
        undone : list of dict
            ``action``, ``kind`` and ``args`` of each action undone.
        """
        _check_n("undo", n)
        out = []
        touched: set[int] = set()
        with self._transaction() as tx:
            con = tx.con
            rows = con.execute(
                "SELECT id, kind, args, undo FROM actions WHERE undone = 0 "
                "AND id > ? AND kind != 'switch_results' ORDER BY id DESC LIMIT ?",
                (self._barrier(), n),
            ).fetchall()
            for aid, kind, args, undo in rows:
                snap = json.loads(undo)
                snap["redo"] = self._redo_snapshot(snap)
                self._apply(con, snap)
                touched.update(r[0] for r in snap["items"])
                con.execute(
                    "UPDATE actions SET undone = 1, undo = ? WHERE id = ?",
                    (json.dumps(snap), aid),
                )
                out.append({"action": aid, "kind": kind, "args": json.loads(args)})
            tx.changed = bool(rows)
            self._reload_rows(touched)  # only the rows it changed
        return out

    def redo(self, n: int = 1) -> list[dict[str, Any]]:
        """Redo the last ``n`` undone actions (oldest first), as long as no
        new action was taken since they were undone.

        Returns
        -------
        redone : list of dict
            ``action``, ``kind`` and ``args`` of each action redone.
        """
        _check_n("redo", n)
        out = []
        touched: set[int] = set()
        with self._transaction() as tx:
            con = tx.con
            rows = con.execute(
                "SELECT id, kind, args, undo FROM actions WHERE undone = 1 "
                "AND id > ? ORDER BY id ASC LIMIT ?",
                (self._barrier(), n),
            ).fetchall()
            for aid, kind, args, undo in rows:
                snap = json.loads(undo)
                redo = snap.pop("redo", None)
                if redo is None:  # undone by an older version: not redoable
                    break
                self._apply(con, redo)
                touched.update(r[0] for r in redo["items"])
                con.execute(
                    "UPDATE actions SET undone = 0, undo = ? WHERE id = ?",
                    (json.dumps(snap), aid),
                )
                out.append({"action": aid, "kind": kind, "args": json.loads(args)})
            tx.changed = bool(out)
            self._reload_rows(touched)
        return out

    def can_redo(self) -> bool:
        """Whether :meth:`redo` has an action to redo."""
        row = self._con.execute(
            "SELECT COUNT(*) FROM actions WHERE undone = 1 AND id > ?",
            (self._barrier(),),
        ).fetchone()
        return bool(row[0])

    def _redo_snapshot(self, snap: dict[str, Any]) -> dict[str, Any]:
        """The rows an undo of ``snap`` is about to change, as they are now."""
        redo = self._snapshot(
            [r[0] for r in snap["items"]],
            [r[0] for r in snap["clusters"]] + list(snap["new_clusters"]),
            [r[0] for r in snap["suspects"]],
            snap.get("marks_idx", ()),
        )
        redo["new_clusters"] = []  # redo re-creates them from "clusters"
        return redo

    @staticmethod
    def _apply(con: sqlite3.Connection, snap: dict[str, Any]) -> None:
        """Write back the rows of a snapshot (an undo's or a redo's)."""
        con.executemany(
            "UPDATE items SET cluster = ?, label = ?, manual = ? WHERE idx = ?",
            [(c, lab, m, i) for i, c, lab, m in snap["items"]],
        )
        con.executemany(
            "INSERT OR REPLACE INTO clusters(id, name, merged_into) VALUES (?, ?, ?)",
            [(cid, name, mi) for cid, name, mi in snap["clusters"]],
        )
        con.executemany(
            "DELETE FROM clusters WHERE id = ?",
            [(c,) for c in snap["new_clusters"]],
        )
        con.executemany(
            "UPDATE suspects SET status = ? WHERE idx = ?",
            [(st, i) for i, st in snap["suspects"]],
        )
        if "marks_idx" in snap:
            con.executemany(
                "DELETE FROM marks WHERE idx = ?", [(i,) for i in snap["marks_idx"]]
            )
            con.executemany("INSERT INTO marks VALUES (?, ?)", snap["marks"])

    def source(self) -> str:
        """The results file under review (as recorded when it was opened)."""
        row = self._con.execute(
            "SELECT value FROM meta WHERE key = 'source'"
        ).fetchone()
        return str(row[0]) if row else ""

    def switch_results(self, cluster: npt.ArrayLike, *, source: str) -> dict[str, Any]:
        """Review another clustering of the same items, keeping every label.

        Items keep the labels already given (as their own labels: naming a
        new cluster does not overwrite them); the clusters, their names and
        the pool are replaced by ``cluster``. The switch is logged as an
        action that cannot be undone (nor can the actions before it).

        Returns
        -------
        result : dict
            ``action``, ``kind``, ``from``, ``to``, ``n_kept`` (labels kept),
            ``n_clusters``.
        """
        new = np.asarray(cluster, dtype=np.int64).ravel()
        if new.shape[0] != self.n_items:
            raise DataValidationError(
                f"The new results have {new.shape[0]:,} items but the review "
                f"{str(self.path)!r} has {self.n_items:,}; they belong to another "
                "workspace."
            )
        with self._transaction() as tx:
            con = tx.con
            old = self.source()
            n_kept = int(
                con.execute(
                    "SELECT COUNT(*) FROM items WHERE label IS NOT NULL"
                ).fetchone()[0]
            )
            con.execute("UPDATE items SET manual = 1 WHERE label IS NOT NULL")
            con.executemany(
                "UPDATE items SET cluster = ? WHERE idx = ?",
                zip(new.tolist(), range(self.n_items), strict=True),
            )
            con.execute("DELETE FROM clusters")
            ids = np.unique(new[new >= 0]).tolist()
            con.executemany(
                "INSERT INTO clusters(id) VALUES (?)", [(int(c),) for c in ids]
            )
            con.execute("UPDATE actions SET undone = 2 WHERE undone = 1")
            args = {"from": old, "to": source, "n_kept": n_kept}
            cur = con.execute(
                "INSERT INTO actions(ts, kind, args, undo) VALUES (?, ?, ?, ?)",
                (time.time(), "switch_results", json.dumps(args), "{}"),
            )
            aid = int(cur.lastrowid or 0)
            con.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [
                    ("source", source),
                    ("barrier", str(aid)),
                    ("cursor", str(ids[0] if ids else "pool")),
                ],
            )
            tx.changed = True
            tx.stale = True  # every row changed: re-read on next use
        return {
            "action": aid,
            "kind": "switch_results",
            **args,
            "n_clusters": len(ids),
        }

    # ------------------------------------------------------------------ #
    # navigation (remembered, not an undoable action)
    # ------------------------------------------------------------------ #
    def set_cursor(self, where: str | int) -> None:
        """Remember where the annotator is (a cluster id, "pool" or "suspects")."""
        self._con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('cursor', ?)", (str(where),)
        )

    def cursor(self) -> str:
        """Where the annotator was last (a cluster id as text, "pool", "suspects")."""
        row = self._con.execute("SELECT value FROM meta WHERE key='cursor'").fetchone()
        return str(row[0]) if row else "0"

    # ------------------------------------------------------------------ #
    # queries
    # ------------------------------------------------------------------ #
    def _grid_distance(
        self, members: npt.NDArray[np.int64], cluster: int
    ) -> npt.NDArray[np.float64]:
        if self._features is not None and members.size:
            X = np.asarray(self._features[members], dtype=np.float64)
            return np.asarray(np.sqrt(((X - X.mean(0)) ** 2).sum(1)))
        if self._distance is not None:
            return self._distance[members]
        return np.zeros(members.size)

    def cluster_items(self, cluster: int) -> npt.NDArray[np.int64]:
        """Items of a cluster (or of the pool, -1): closest to the centre first,
        outliers last."""
        with self._lock:
            self._reload()
            members = np.flatnonzero(self._cluster == int(cluster))
            dist = self._grid_distance(members, int(cluster))
            order = np.argsort(dist, kind="stable")
            return members[order].astype(np.int64)

    def clusters(self) -> list[dict[str, Any]]:
        """Every live cluster: ``id``, ``name``, ``size``, ``n_unlabelled``."""
        with self._lock:
            self._reload()
            live = self._live_clusters()
            names = dict(
                self._con.execute(
                    "SELECT id, name FROM clusters WHERE merged_into IS NULL"
                ).fetchall()
            )
            ids = np.asarray(live, dtype=np.int64)
            # cluster id -> its row, by a lookup table (np.searchsorted of
            # 100,000 ids took 5-40 ms; the gather takes well under 1 ms)
            top = max(int(ids.max(initial=-1)), int(self._cluster.max(initial=-1)))
            lut = np.full(top + 1, -1, dtype=np.int64)
            lut[ids] = np.arange(ids.size)
            ok = self._cluster >= 0
            pos = np.full(self._cluster.shape, -1, dtype=np.int64)
            pos[ok] = lut[self._cluster[ok]]
            ok &= pos >= 0
            size = np.bincount(pos[ok], minlength=ids.size)
            unl = np.bincount(
                pos[ok],
                weights=np.equal(self._label[ok], None).astype(np.float64),  # type: ignore[call-overload]
                minlength=ids.size,
            )
            return [
                {
                    "id": int(c),
                    "name": names.get(int(c)),
                    "size": int(size[j]),
                    "n_unlabelled": int(unl[j]),
                }
                for j, c in enumerate(live)
            ]

    def labels(self) -> list[str | None]:
        """The label of each item (None: not labelled yet)."""
        with self._lock:
            self._reload()
            return list(self._label.tolist())

    def labels_array(self) -> npt.NDArray[np.object_]:
        """:meth:`labels` as an object array (a copy; no Python list built)."""
        with self._lock:
            self._reload()
            return self._label.copy()

    def assignment(self) -> npt.NDArray[np.int64]:
        """The current cluster of each item (-1: the pool)."""
        with self._lock:
            self._reload()
            return self._cluster.copy()

    def cluster_names(self) -> dict[int, str | None]:
        """The name of every cluster, merged ones included."""
        return {
            int(c): n
            for c, n in self._con.execute("SELECT id, name FROM clusters").fetchall()
        }

    def suspects(self, status: str | None = "open") -> list[dict[str, Any]]:
        """The suspects queue, worst first (``status`` None: all of them)."""
        sql = "SELECT idx, rank, given, suggested, status FROM suspects"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status,)
        rows = self._con.execute(sql + " ORDER BY rank", args).fetchall()
        return [
            dict(zip(("index", "rank", "given", "suggested", "status"), r, strict=True))
            for r in rows
        ]

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest actions, newest first.

        Each is a dict: ``action`` (id), ``ts``, ``kind``, ``args``,
        ``undone`` (bool), ``redoable`` (undone and :meth:`redo` would bring
        it back), ``final`` (before a results switch: neither undone nor
        redone any more) and ``text`` (what it did, in words).
        """
        barrier = self._barrier()
        rows = self._con.execute(
            "SELECT id, ts, kind, args, undone FROM actions ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        out = []
        for aid, ts, kind, args, undone in rows:
            a = json.loads(args)
            out.append(
                {
                    "action": aid,
                    "ts": ts,
                    "kind": kind,
                    "args": a,
                    "undone": bool(undone),
                    "redoable": undone == 1 and aid > barrier,
                    "final": aid <= barrier,
                    "text": describe_action(kind, a),
                }
            )
        return out

    def n_actions(self) -> int:
        """Number of actions taken and not undone."""
        return int(
            self._con.execute(
                "SELECT COUNT(*) FROM actions WHERE undone = 0 "
                "AND kind != 'switch_results'"
            ).fetchone()[0]
        )

    def progress(self) -> dict[str, int]:
        """``n_items``, ``n_labelled``, ``n_pool``, ``n_actions``."""
        with self._lock:
            self._reload()
            return {
                "n_items": self.n_items,
                "n_labelled": int((self._label != None).sum()),  # noqa: E711
                "n_pool": int((self._cluster == POOL).sum()),
                "n_actions": self.n_actions(),
            }


def _check_n(what: str, n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameterError(
            f"The 'n' parameter of {what} must be an int in the range [1, inf). "
            f"Got {n!r} instead."
        )


def _plain(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _chunks(seq: Sequence[int], size: int = 900) -> Iterable[list[int]]:
    for s in range(0, len(seq), size):
        yield list(seq[s : s + size])
