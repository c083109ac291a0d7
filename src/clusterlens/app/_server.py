"""The review web app (Flask): one cluster at a time, every click saved at once."""

from __future__ import annotations

import functools
import io
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.app._data import open_review
from clusterlens.app._store import POOL, ReviewStore
from clusterlens.exceptions import ClusterlensError
from clusterlens.utils._optional import import_optional

__all__ = ["create_app", "safe_image_path"]

_PAGE = 400  # thumbnails per page


@functools.cache
def _read_static(name: str) -> str:
    return (
        resources.files("clusterlens.app").joinpath("static", name).read_text("utf-8")
    )


def safe_image_path(root: Path, rel: str) -> Path | None:
    """``root / rel`` if it is a file inside ``root`` (links resolved), else None."""
    if not rel or "\x00" in rel or os.path.isabs(rel):
        return None
    base = root.resolve()
    p = (base / rel).resolve()
    if not p.is_relative_to(base) or not p.is_file():
        return None
    return p


def create_app(
    ws: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] | None = None,
    issues: str | os.PathLike[str] | None = None,
    thumb_size: int = 96,
    random_state: int = 0,
) -> Any:
    """The Flask app reviewing workspace ``ws`` (state in ``WS/review.sqlite``).

    Parameters
    ----------
    ws : str or os.PathLike
        The workspace.
    results, issues : str or os.PathLike, default=None
        See :func:`clusterlens.app.load_review_data`.
    thumb_size : int, default=96
        Longest side of the thumbnails, in pixels.
    random_state : int, default=0
        Seed of the split action.

    Returns
    -------
    app : flask.Flask
        ``app.config["STORE"]`` is the :class:`ReviewStore`.
    """
    flask = import_optional("flask", extra="app", feature="clusterlens review")
    import jinja2

    data, store = open_review(
        ws, results=results, issues=issues, random_state=random_state
    )
    wsp = data.workspace
    app = flask.Flask("clusterlens.app", static_folder=None)
    app.config["STORE"] = store
    app.config["DATA"] = data
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clusterlens.app", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    page = env.get_template("review.html.j2")
    image_root = wsp.image_root if str(wsp.image_root) not in ("", ".") else None

    def _render(view: str, cluster: int | None, items: np.ndarray, **extra: Any) -> Any:
        clusters = store.clusters()
        ids = [c["id"] for c in clusters]
        pos = ids.index(cluster) if cluster in ids else -1
        current = clusters[pos] if pos >= 0 else None
        nxt = next(
            (c["id"] for c in clusters[pos + 1 :] if c["n_unlabelled"]),
            ids[pos + 1] if 0 <= pos < len(ids) - 1 else None,
        )
        prv = ids[pos - 1] if pos > 0 else None
        labels = store.labels()
        html = page.render(
            view=view,
            current=current,
            clusters=clusters,
            items=[{"index": int(i), "label": labels[int(i)]} for i in items[:_PAGE]],
            n_hidden=max(0, int(items.size) - _PAGE),
            next_id=nxt,
            prev_id=prv,
            progress=store.progress(),
            n_suspects=len(store.suspects()),
            names=sorted({c["name"] for c in clusters if c["name"]}),
            css=_read_static("review.css"),
            history=store.history(8),
            ws_name=wsp.root.name,
            **extra,
        )
        resp = flask.make_response(html)
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'"
        )
        return resp

    @app.get("/")
    def index() -> Any:
        cur = store.cursor()
        if cur in ("pool", "suspects"):
            return flask.redirect(f"/{cur}")
        return flask.redirect(f"/cluster/{cur}")

    @app.get("/cluster/<int:cid>")
    def cluster_view(cid: int) -> Any:
        ids = [c["id"] for c in store.clusters()]
        if cid not in ids:
            names = store.cluster_names()
            if cid in names:  # merged away
                return flask.redirect("/")
            flask.abort(404)
        store.set_cursor(cid)
        return _render("cluster", cid, store.cluster_items(cid))

    @app.get("/pool")
    def pool_view() -> Any:
        store.set_cursor("pool")
        return _render("pool", None, store.cluster_items(POOL))

    @app.get("/suspects")
    def suspects_view() -> Any:
        store.set_cursor("suspects")
        sus = store.suspects()
        return _render(
            "suspects",
            None,
            np.array([s["index"] for s in sus], dtype=np.int64),
            suspects=sus[:_PAGE],
        )

    @app.get("/static/<name>")
    def static_file(name: str) -> Any:
        if name not in ("review.js", "review.css"):
            flask.abort(404)
        mime = "text/javascript" if name.endswith(".js") else "text/css"
        return flask.Response(_read_static(name), mimetype=mime)

    @app.get("/thumb/<int:idx>")
    def thumb(idx: int) -> Any:
        if not 0 <= idx < len(wsp):
            flask.abort(404)
        rel = str(wsp.items["path"][idx])
        if rel and (image_root is None or safe_image_path(image_root, rel) is None):
            flask.abort(404)  # the items table points outside the dataset root
        from PIL import Image

        try:
            pix = wsp.read_item(idx)
        except (OSError, ValueError):
            flask.abort(404)
        img = Image.fromarray(pix)
        img.thumbnail((thumb_size, thumb_size))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        resp = flask.Response(buf.getvalue(), mimetype="image/png")
        resp.headers["Cache-Control"] = "max-age=3600"
        return resp

    @app.get("/image/<path:rel>")
    def image(rel: str) -> Any:
        p = None if image_root is None else safe_image_path(image_root, rel)
        if p is None:
            flask.abort(404)
        return flask.send_file(p)

    @app.get("/api/state")
    def state() -> Any:
        return flask.jsonify(
            {
                "cursor": store.cursor(),
                "progress": store.progress(),
                "clusters": store.clusters(),
            }
        )

    @app.post("/api/action")
    def action() -> Any:
        if not flask.request.is_json:
            return flask.jsonify({"error": "send JSON (application/json)"}), 415
        body = flask.request.get_json(silent=True) or {}
        kind = body.get("kind")
        try:
            out = _dispatch(store, kind, body)
        except ClusterlensError as e:
            return flask.jsonify({"error": str(e)}), 400
        except (KeyError, TypeError, ValueError) as e:
            return flask.jsonify({"error": f"bad request for {kind!r}: {e}"}), 400
        return flask.jsonify({"result": out, "progress": store.progress()})

    @app.post("/api/export")
    def export() -> Any:
        if not flask.request.is_json:
            return flask.jsonify({"error": "send JSON (application/json)"}), 415
        fmt = (flask.request.get_json(silent=True) or {}).get("format", "csv")
        from clusterlens.io._export import export_labels
        from clusterlens.utils._fs import staged_output_dir

        dst = wsp.root / "export" / str(fmt)
        try:
            with staged_output_dir(
                dst, overwrite=True, kind=f"export/{fmt}", workspace=wsp.root
            ) as stage:
                summary = export_labels(
                    wsp,
                    store.labels(),
                    stage,
                    fmt=str(fmt),
                    cluster=store.assignment(),
                    cluster_names=store.cluster_names(),
                    final=dst,
                )
        except ClusterlensError as e:
            return flask.jsonify({"error": str(e)}), 400
        return flask.jsonify({**summary, "out": str(dst)})

    return app


def _dispatch(store: ReviewStore, kind: Any, body: dict[str, Any]) -> Any:
    if kind == "name_cluster":
        return store.name_cluster(int(body["cluster"]), body["name"])
    if kind == "reject":
        return store.reject(_ints(body["items"]), to=body.get("to", "auto"))
    if kind == "label_items":
        return store.label_items(_ints(body["items"]), body["name"])
    if kind == "merge":
        return store.merge(int(body["into"]), int(body["other"]))
    if kind == "split":
        return store.split(int(body["cluster"]))
    if kind == "resolve_suspect":
        return store.resolve_suspect(
            int(body["item"]), body["decision"], body.get("label")
        )
    if kind == "undo":
        return store.undo(int(body.get("n", 1)))
    raise ValueError(
        "unknown action; use name_cluster, reject, label_items, merge, split, "
        "resolve_suspect or undo"
    )


def _ints(v: Any) -> list[int]:
    return [int(x) for x in (v if isinstance(v, list) else [v])]
