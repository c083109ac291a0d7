"""Thumbnails cached on disk (``WS/app-cache/thumbs.sqlite``), filled in the background.

The scan keeps 64-px previews of collections up to 16,384 items only; for a
larger one every grid thumbnail would be a decode of the image on request.
The cache keeps each thumbnail once encoded (WebP or PNG, a few KB), keyed by
item and size, in one SQLite file: a lookup is a primary-key read, a miss is
made once and stored, and a background process makes the grid's size for every
item, in order, so that after one pass every page is served from disk.

The cache belongs to the items it was made from: when ``items.parquet``
changes (the workspace was ingested again) it starts empty.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CACHE_DIR", "ThumbCache", "make_thumbnail", "open_thumb_cache"]

logger = logging.getLogger(__name__)

#: The app's cache folder in the workspace (safe to delete at any time).
CACHE_DIR = "app-cache"

Maker = Callable[[int, int], "tuple[bytes, str] | None"]


class ThumbCache:
    """Encoded thumbnails of one workspace, by (item, size), on disk.

    Parameters
    ----------
    path : Path
        The SQLite file (created with its folder).
    fingerprint : str
        What the thumbnails depend on (items table, image root); a cache with
        another fingerprint is emptied.
    n_items : int
    make : callable
        ``make(item, size) -> (bytes, mime) or None`` (None: unreadable).
    """

    def __init__(self, path: Path, fingerprint: str, n_items: int, make: Maker):
        self.path = Path(path)
        self.n_items = n_items
        self._make = make
        self._local = threading.local()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fill_size = 0
        self._filled = 0
        self._fingerprint = fingerprint
        self._proc: Any = None
        self._counter: Any = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._con()
        con.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)")
        con.execute(
            "CREATE TABLE IF NOT EXISTS thumbs(idx INTEGER, size INTEGER, "
            "mime TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY(idx, size)) "
            "WITHOUT ROWID"
        )
        row = con.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        if row is None or row[0] != fingerprint:
            with con:
                con.execute("DELETE FROM thumbs")
                con.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)",
                    (fingerprint,),
                )

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")  # a cache: a crash loses a few
            self._local.con = con
        return con

    def get(self, idx: int, size: int) -> tuple[bytes, str] | None:
        """Item ``idx``'s thumbnail at ``size``: from disk, else made and stored."""
        con = self._con()
        row = con.execute(
            "SELECT data, mime FROM thumbs WHERE idx = ? AND size = ?", (idx, size)
        ).fetchone()
        if row is not None:
            return bytes(row[0]), str(row[1])
        got = self._make(idx, size)
        if got is not None:
            try:
                with con:
                    con.execute(
                        "INSERT OR IGNORE INTO thumbs VALUES (?, ?, ?, ?)",
                        (idx, size, got[1], got[0]),
                    )
            except sqlite3.Error as e:  # full disk, locked past the timeout
                logger.info("thumbnail cache: not stored (%s)", e)
        return got

    def count(self, size: int) -> int:
        """How many thumbnails of ``size`` are on disk."""
        row = (
            self._con()
            .execute("SELECT COUNT(*) FROM thumbs WHERE size = ?", (size,))
            .fetchone()
        )
        return int(row[0])

    def progress(self) -> dict[str, int | bool]:
        """The background fill: ``size``, ``done``, ``total``, ``running``."""
        worker = self._proc if self._proc is not None else self._thread
        running = worker is not None and worker.is_alive()
        done = self._counter.value if self._counter is not None else self._filled
        return {
            "size": self._fill_size,
            "done": int(done),
            "total": self.n_items,
            "running": running,
        }

    def start_fill(
        self, size: int, *, batch: int = 256, workspace: str | None = None
    ) -> None:
        """Make every item's thumbnail at ``size`` in the background.

        With ``workspace`` (its folder) in a child process at the lowest CPU
        priority, which opens the workspace itself: a thread would share the
        server's GIL, and on 2 cores made the API 2-3x slower while it ran.
        Without, in a thread of this process with this cache's ``make``.
        """
        if self._thread is not None or self._proc is not None:
            return
        self._fill_size = size
        if workspace is not None:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # no fork of a threaded server
            self._counter = ctx.Value("q", 0, lock=False)
            self._proc = ctx.Process(
                target=_fill_in_process,
                args=(
                    str(self.path),
                    self._fingerprint,
                    self.n_items,
                    size,
                    batch,
                    workspace,
                    self._counter,
                    os.getpid(),
                ),
                name="clusterlens-thumbs",
                daemon=True,
            )
            self._proc.start()
            return
        self._thread = threading.Thread(
            target=self._fill,
            args=(size, batch),
            name="clusterlens-thumbs",
            daemon=True,
        )
        self._thread.start()

    def _fill(
        self, size: int, batch: int, counter: Any = None, parent: int | None = None
    ) -> None:
        try:
            con = self._con()
            have = np.zeros(self.n_items, dtype=bool)
            done = np.fromiter(
                (
                    r[0]
                    for r in con.execute(
                        "SELECT idx FROM thumbs WHERE size = ?", (size,)
                    )
                ),
                dtype=np.int64,
            )
            have[done[(done >= 0) & (done < self.n_items)]] = True
            self._filled = int(have.sum())
            if counter is not None:
                counter.value = self._filled
            todo = np.flatnonzero(~have)
            t0 = time.perf_counter()
            for start in range(0, todo.size, batch):
                if self._stop.is_set() or (
                    parent is not None and os.getppid() != parent
                ):
                    return  # stopped, or the server is gone
                rows = []
                for i in todo[start : start + batch].tolist():
                    got = self._make(i, size)
                    if got is not None:
                        rows.append((i, size, got[1], got[0]))
                with con:
                    con.executemany(
                        "INSERT OR IGNORE INTO thumbs VALUES (?, ?, ?, ?)", rows
                    )
                self._filled += len(rows)
                if counter is not None:
                    counter.value = self._filled
                time.sleep(0.001)  # let request threads in between batches
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a small file left
            logger.info(
                "thumbnail cache: %d thumbnails of %d px made in %.1f s",
                todo.size,
                size,
                time.perf_counter() - t0,
            )
        except (sqlite3.Error, OSError) as e:  # the workspace went away
            logger.info("thumbnail cache: background fill stopped (%s)", e)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background fill (the thumbnails made so far stay)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(timeout)


def make_thumbnail(
    wsp: Any, facts: Any, idx: int, size: int
) -> tuple[bytes, str] | None:
    """Item ``idx`` fitted into ``size`` px, encoded: (bytes, mime), None if unreadable.

    Up to 64 px from the scan's previews where there are some; above 128 px a
    JPEG (the detail view's large photo); else the reports' rule: PNG for
    flat images (digits), WebP for photos.
    """
    from PIL import Image

    if (
        size <= 64
        and facts.previews is not None
        and facts.preview_sizes is not None
        and facts.preview_sizes[idx].min() > 0
    ):
        w, h = (int(v) for v in facts.preview_sizes[idx])
        img = Image.fromarray(np.asarray(facts.previews[idx][:h, :w]))
    else:
        try:
            img = Image.fromarray(wsp.read_item(idx, min_size=(size, size)))
        except (OSError, ValueError):
            return None
        img.thumbnail((size, size))
    if size > 128:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=88)
        return buf.getvalue(), "image/jpeg"
    from clusterlens.report._thumbs import thumbnail_bytes

    return thumbnail_bytes(img, 85)


def open_thumb_cache(wsp: Any, make: Maker) -> ThumbCache | None:
    """The workspace's on-disk thumbnail cache, or None where it cannot be kept."""
    items = wsp.root / "items.parquet"
    st = items.stat() if items.is_file() else None
    fp = json.dumps(
        {
            "n_items": len(wsp),
            "items_mtime_ns": st.st_mtime_ns if st else 0,
            "items_size": st.st_size if st else 0,
            "image_root": str(wsp.image_root),
        },
        sort_keys=True,
    )
    try:
        return ThumbCache(wsp.root / CACHE_DIR / "thumbs.sqlite", fp, len(wsp), make)
    except (OSError, sqlite3.Error) as e:  # a read-only workspace: no cache
        logging.getLogger(__name__).info("no thumbnail cache (%s)", e)
        return None


class _NoPreviews:
    previews = None
    preview_sizes = None


def _fill_in_process(
    db: str,
    fingerprint: str,
    n_items: int,
    size: int,
    batch: int,
    root: str,
    counter: Any,
    parent: int,
) -> None:
    """The background fill in a child process (see :meth:`ThumbCache.start_fill`)."""
    import functools

    try:
        os.nice(19)
    except OSError:
        pass
    from clusterlens.io import open_workspace

    wsp = open_workspace(root)
    make = functools.partial(make_thumbnail, wsp, _NoPreviews)
    cache = ThumbCache(Path(db), fingerprint, n_items, make)
    cache._fill(size, batch, counter=counter, parent=parent)
