"""The review app's map, selections and search-by-example routes.

- ``/map``: the 2-D map page; ``/api/map`` (what it can show),
  ``/api/map/xy`` (coordinates, binary) and ``/api/map/colours?by=`` (legend and
  codes, binary; see :mod:`clusterlens.app._map`).
- ``POST /api/selection`` keeps a set of items (a lasso on the map, search
  results) under an id; ``/selection/<id>`` shows it as a grid to label or
  reject. Selections live in the server's memory (the last
  :data:`MAX_SELECTIONS`).
- ``/similar/<item>`` and ``/api/similar/<item>``: "more like this";
  ``POST /api/search/image``: an image file as the body (or a multipart
  ``image`` field), at most :data:`~clusterlens.app._search.MAX_UPLOAD_BYTES`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from clusterlens.app._map import (
    COLOUR_BY,
    colour_codes,
    load_map_xy,
    pack_colours,
    quantize_xy,
)
from clusterlens.app._search import MAX_UPLOAD_BYTES, Searcher, SearchUnavailable
from clusterlens.exceptions import ClusterlensError

__all__ = ["MAX_SELECTIONS", "add_map_routes"]

#: Selections the server remembers (older ones are dropped first).
MAX_SELECTIONS = 64
logger = logging.getLogger(__name__)

_K_DEFAULT = 48
_K_MAX = 1000


def add_map_routes(
    app: Any,
    flask: Any,
    *,
    store: Any,
    wsp: Any,
    facts: Any,
    render: Any,
    refused: Any,
    json_body: Any,
    searcher: Searcher,
) -> None:
    """Register the routes on ``app`` (called by ``create_app``)."""
    xy_cache: dict[str, Any] = {}
    xy_lock = threading.Lock()
    selections: OrderedDict[str, dict[str, Any]] = OrderedDict()
    sel_lock = threading.Lock()
    sel_ids = itertools.count(1)

    def _xy() -> Any:
        with xy_lock:
            if "xy" not in xy_cache:
                try:
                    xy = load_map_xy(wsp)
                except ClusterlensError as e:
                    xy_cache["error"] = str(e)
                    xy = None
                if xy is None and "error" not in xy_cache:
                    return None  # no map yet: looked for again next time
                xy_cache["bytes"] = None if xy is None else quantize_xy(xy)
                xy_cache["xy"] = xy
            return xy_cache["xy"]

    def _warm() -> None:
        """Read the map and load the index now, not on the first request."""
        try:
            _xy()
            searcher.load()
        except (ClusterlensError, OSError) as e:  # said again on request
            logger.info("review app: not preloaded (%s)", e)

    threading.Thread(target=_warm, name="clusterlens-warm", daemon=True).start()

    def _no_map() -> str:
        return xy_cache.get("error") or (
            f"This workspace has no map yet. Make one with: clusterlens map "
            f"{wsp.root} (or clusterlens explore), then reload this page."
        )

    def _k() -> int:
        raw = flask.request.args.get("k", "")
        return min(max(int(raw), 1), _K_MAX) if raw.isdigit() else _K_DEFAULT

    def _keep(items: Any, title: str, captions: list[str] | None = None) -> str:
        with sel_lock:
            sid = str(next(sel_ids))
            selections[sid] = {"items": items, "title": title, "captions": captions}
            while len(selections) > MAX_SELECTIONS:
                selections.popitem(last=False)
        return sid

    @app.get("/map")
    def map_view() -> Any:
        xy = _xy()
        return render(
            "map",
            None,
            np.zeros(0, dtype=np.int64),
            map_ok=xy is not None,
            map_error=xy_cache.get("error"),
            map_cmd=f"clusterlens map {wsp.root}",
            colour_by=COLOUR_BY,
        )

    @app.get("/api/map")
    def map_meta() -> Any:
        if _xy() is None:
            raise refused(404, _no_map())
        return flask.jsonify(
            {
                "n": store.n_items,
                "colour_by": list(COLOUR_BY),
                "xy": "/api/map/xy",
                "colours": "/api/map/colours",
                "format": "xy: uint16 little-endian (x, y) pairs, y up; colours: "
                "uint32 L, L bytes of JSON legend, padding to 4, uint16 codes",
            }
        )

    @app.get("/api/map/xy")
    def map_xy() -> Any:
        if _xy() is None:
            raise refused(404, _no_map())
        resp = flask.Response(xy_cache["bytes"], mimetype="application/octet-stream")
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @app.get("/api/map/colours")
    def map_colours() -> Any:
        by = flask.request.args.get("by", "cluster")
        if by not in COLOUR_BY:
            raise refused(
                400, f"Unknown colouring {by!r}; use one of {', '.join(COLOUR_BY)}."
            )
        codes, legend = colour_codes(
            by,
            assignment=store.assignment(),
            labels=store.labels(),
            facts=facts,
            cluster_names=store.cluster_names(),
        )
        resp = flask.Response(
            pack_colours(codes, legend), mimetype="application/octet-stream"
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.post("/api/selection")
    def new_selection() -> Any:
        body = json_body(flask.request)
        items = body.get("items")
        if (
            not isinstance(items, list)
            or not items
            or len(items) > store.n_items
            or any(isinstance(x, bool) or not isinstance(x, int) for x in items)
        ):
            raise refused(
                400,
                "'items' must be a non-empty list of at most "
                f"{store.n_items:,} item indices.",
            )
        idx = np.asarray(items, dtype=np.int64)
        if idx.min() < 0 or idx.max() >= store.n_items:
            raise refused(
                400, f"Item indices must lie in [0, {store.n_items}); got {idx.max()}."
            )
        title = body.get("title")
        title = title if isinstance(title, str) and title else "Selection"
        sid = _keep(idx, title[:80])
        return flask.jsonify({"id": sid, "url": f"/selection/{sid}", "n": idx.size})

    @app.get("/selection/<sid>")
    def selection_view(sid: str) -> Any:
        with sel_lock:
            sel = selections.get(sid)
        if sel is None:
            return flask.Response(
                "This selection is gone (the review app keeps the last "
                f"{MAX_SELECTIONS} while it runs); select again on the map.",
                status=404,
                mimetype="text/plain",
            )
        return render(
            "selection",
            None,
            sel["items"],
            captions=sel["captions"],
            sel_title=sel["title"],
        )

    def _similar(idx: int) -> list[dict[str, Any]]:
        if not 0 <= idx < store.n_items:
            raise refused(404, f"No item {idx}; items are 0 to {store.n_items - 1}.")
        try:
            return searcher.by_item(idx, _k())
        except ClusterlensError as e:
            raise refused(409, str(e)) from e

    @app.get("/api/similar/<int:idx>")
    def similar_api(idx: int) -> Any:
        return flask.jsonify({"query": {"item": idx}, "results": _similar(idx)})

    @app.get("/similar/<int:idx>")
    def similar_view(idx: int) -> Any:
        try:
            res = _similar(idx)
        except refused as e:
            return flask.Response(e.message, status=e.status, mimetype="text/plain")
        return render(
            "selection",
            None,
            np.asarray([r["index"] for r in res], dtype=np.int64),
            captions=[
                "query" if r.get("query") else f"similarity {r['similarity']:.2f}"
                for r in res
            ],
            sel_title=f"More like item {idx}",
        )

    @app.post("/api/search/image")
    def search_image() -> Any:
        req = flask.request
        req.max_content_length = MAX_UPLOAD_BYTES  # this route only
        why = searcher.unavailable()
        if why is not None:
            raise refused(409, why)
        if req.mimetype == "multipart/form-data":
            f = req.files.get("image")
            if f is None:
                raise refused(400, "Send the image in a form field named 'image'.")
            data = f.read(MAX_UPLOAD_BYTES + 1)
        else:
            data = req.get_data(cache=False)
        try:
            res = searcher.by_image(data, _k())
        except SearchUnavailable as e:
            raise refused(409, str(e)) from e
        except ClusterlensError as e:
            raise refused(400, str(e)) from e
        sid = _keep(
            np.asarray([r["index"] for r in res], dtype=np.int64),
            "Most similar to the uploaded image",
            [f"similarity {r['similarity']:.2f}" for r in res],
        )
        return flask.jsonify(
            {
                "query": {"image": "(uploaded)"},
                "results": res,
                "url": f"/selection/{sid}",
            }
        )
