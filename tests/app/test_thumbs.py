"""Thumbnails cached on disk in WS/app-cache/, made in the background (#19)."""

from __future__ import annotations

import os
import time

import pytest

from clusterlens.app._thumbs import CACHE_DIR, ThumbCache


def maker(calls):
    def make(i, size):
        calls.append((i, size))
        if i == 3:
            return None  # an unreadable item
        return (f"{i}:{size}".encode() * 10, "image/png")

    return make


def test_a_thumbnail_is_made_once_then_read_from_disk(tmp_path):
    calls = []
    c = ThumbCache(tmp_path / "t.sqlite", "fp", 10, maker(calls))
    assert c.get(5, 96) == (b"5:96" * 10, "image/png")
    assert c.get(5, 96) == (b"5:96" * 10, "image/png")
    assert calls == [(5, 96)]
    assert c.get(3, 96) is None and c.count(96) == 1
    # a new process (a new cache object) reads it from disk: no decode
    calls2 = []
    c2 = ThumbCache(tmp_path / "t.sqlite", "fp", 10, maker(calls2))
    assert c2.get(5, 96) == (b"5:96" * 10, "image/png") and calls2 == []
    # other items (a re-ingested workspace): the cache starts empty
    c3 = ThumbCache(tmp_path / "t.sqlite", "other", 10, maker([]))
    assert c3.count(96) == 0


def test_the_background_fill_makes_every_readable_item(tmp_path):
    calls = []
    c = ThumbCache(tmp_path / "t.sqlite", "fp", 1000, maker(calls))
    c.get(7, 64)
    c.get(8, 96)  # made already: not made again
    c.start_fill(96, batch=64)
    deadline = time.monotonic() + 60
    while c.progress()["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    p = c.progress()
    assert not p["running"] and p["total"] == 1000 and p["size"] == 96
    assert c.count(96) == 999 and p["done"] == 999  # all but the unreadable one
    made = [i for i, s in calls if s == 96]
    assert sorted(made) == sorted(set(range(1000)))  # each once, 8 once too
    assert c.count(64) == 1


def test_the_app_serves_grid_thumbnails_from_the_disk_cache(digits_ws):
    pytest.importorskip("flask")
    from clusterlens.app import create_app

    ws = digits_ws[0]
    app = create_app(ws)
    r = app.test_client().get("/thumb/4")
    assert r.status_code == 200
    cache = app.config["THUMBS"]
    assert cache.path == ws / CACHE_DIR / "thumbs.sqlite" and cache.count(96) == 1
    # a second app on the same workspace serves the bytes stored on disk
    app2 = create_app(ws)
    assert app2.config["THUMBS"].get(4, 96)[0] == r.data
    # 16,384 items or fewer: nothing is made in the background
    assert not cache.progress()["running"] and cache.progress()["size"] == 0
    assert app.test_client().get("/api/state").json["thumbnails"]["total"] == 60


def test_above_the_preview_limit_a_child_process_makes_every_thumbnail(
    digits_ws, monkeypatch
):
    """Above 16,384 items (here: above 10) the app fills the cache at start, in a
    process of its own (not a thread sharing the server's GIL)."""
    pytest.importorskip("flask")
    import clusterlens.curate._previews as previews
    from clusterlens.app import create_app

    monkeypatch.setattr(previews, "MAX_PREVIEW_ITEMS", 10)
    app = create_app(digits_ws[0])
    cache = app.config["THUMBS"]
    assert cache._proc is not None and cache._proc.pid != os.getpid()
    deadline = time.monotonic() + 120
    while cache.progress()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    p = cache.progress()
    assert p == {"size": 96, "done": 60, "total": 60, "running": False}
    assert cache._proc.exitcode == 0 and cache.count(96) == 60
    # the child's thumbnails are the bytes the server would make itself
    from clusterlens.app._thumbs import make_thumbnail

    ws = app.config["DATA"].workspace
    for i in (0, 31, 59):
        got = app.test_client().get(f"/thumb/{i}").data
        assert got == make_thumbnail(ws, app.config["FACTS"], i, 96)[0]
