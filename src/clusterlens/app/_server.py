"""The review web app (Flask): one cluster at a time, every click saved at once.

What the app accepts (it may be reachable by any web page the annotator opens):

- only requests whose ``Host`` is where the app is served (see
  :func:`host_allowed`), so a DNS-rebinding page cannot reach it; a request with
  an ``Origin`` header must come from that same origin. Others get 403.
- state changes only by ``POST`` with a JSON object body of at most
  :data:`MAX_BODY_BYTES`; ``GET`` requests never change anything.
- an action names at most as many items as the workspace has.
"""

from __future__ import annotations

import difflib
import functools
import io
import ipaddress
import json
import math
import os
import socket
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from clusterlens.app._data import open_review
from clusterlens.app._store import POOL, ReviewStore
from clusterlens.exceptions import ClusterlensError
from clusterlens.utils._optional import import_optional

__all__ = ["MAX_BODY_BYTES", "create_app", "host_allowed", "safe_image_path"]

_PAGE = 400  # thumbnails per page

#: Largest request body the app reads (2 MiB): the page sends at most a page of
#: thumbnails (400 indices, a few KB) per action.
MAX_BODY_BYTES = 2 * 1024 * 1024

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_ACTIONS = "name_cluster, reject, label_items, merge, split, resolve_suspect or undo"


class _Refused(Exception):
    """A request the app refuses: answered as ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _split_host(netloc: str) -> tuple[str, int | None]:
    """``"Name:port"`` -> ``("name", port)``; IPv6 literals keep their brackets."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        name, _, rest = netloc.partition("]")
        name += "]"
        port_s = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            return "", None
    else:
        name, _, port_s = netloc.partition(":")
    name = name.rstrip(".")
    if not port_s:
        return name, None
    if not port_s.isdigit() or not port_s.isascii():
        return "", None
    return name, int(port_s)


def _bracket(host: str) -> str:
    host = host.strip().lower()
    if ":" in host and not host.startswith("["):
        return f"[{host}]"  # an IPv6 literal, as it appears in a Host header
    return host


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def host_allowed(netloc: str, host: str, port: int | None) -> bool:
    """Whether a request's ``Host`` header names the app served at host:port.

    Parameters
    ----------
    netloc : str
        The ``Host`` header (``name[:port]``).
    host : str
        The address the server was started on (``--host``).
    port : int or None
        Its port; None accepts any port (a server whose port is not known yet).

    Returns
    -------
    allowed : bool
        True for ``host`` itself; for ``localhost``, ``127.0.0.1`` and ``[::1]``
        when ``host`` is a loopback address; and, when ``host`` is a wildcard
        (``0.0.0.0``, ``::``), for any IP address and this machine's name. A
        domain name that merely resolves here (DNS rebinding) is refused.
    """
    name, req_port = _split_host(netloc)
    if not name:
        return False
    if port is not None and (req_port if req_port is not None else 80) != port:
        return False
    bound = _bracket(host)
    if name == bound:
        return True
    ip = _ip(bound)
    if bound == "localhost" or (ip is not None and ip.is_loopback):
        return name in _LOOPBACK_NAMES
    if ip is not None and ip.is_unspecified:
        return (
            name in _LOOPBACK_NAMES
            or _ip(name) is not None
            or name == socket.gethostname().lower()
        )
    return False


def _json_kind(v: object) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    names = {dict: "object", list: "array", str: "string", int: "number"}
    return names.get(type(v), "number")


def _short(v: object) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (numbers must be finite)")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text} is too large for a number")
    return v


def _json_body(request: Any) -> dict[str, Any]:
    """The request's body as a JSON object, or :class:`_Refused` saying why not."""
    if not request.is_json:
        raise _Refused(
            415,
            "Send the request body as JSON (Content-Type: application/json); got "
            f"{request.mimetype or 'no Content-Type'}.",
        )
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Refused(
            400, f"The request body is not UTF-8 text (bad byte at offset {e.start})."
        ) from e
    if not text.strip():
        raise _Refused(400, "The request body is empty; send a JSON object.")
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError as e:
        raise _Refused(
            400,
            "The request body is not a valid action: its JSON is nested too deeply.",
        ) from e
    except ValueError as e:  # json.JSONDecodeError, too-long integers, Infinity
        raise _Refused(400, f"The request body is not valid JSON: {e}.") from e
    if not isinstance(body, dict):
        raise _Refused(
            400,
            "The request body must be a JSON object such as "
            f'{{"kind": "undo"}}; got a JSON {_json_kind(body)} ({_short(body)}).',
        )
    return body


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
    host: str = "127.0.0.1",
    port: int | None = None,
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
    host : str, default="127.0.0.1"
        The address the app is served on: requests naming another host in
        their ``Host`` header are refused (see :func:`host_allowed`).
    port : int, default=None
        The port it is served on (None: any port).

    Returns
    -------
    app : flask.Flask
        ``app.config["STORE"]`` is the :class:`ReviewStore`. Request bodies
        are limited to :data:`MAX_BODY_BYTES` (``MAX_CONTENT_LENGTH``).
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
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["SERVED_AT"] = (host, port)
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(_Refused)
    def refused(e: _Refused) -> Any:
        return flask.jsonify({"error": e.message}), e.status

    @app.errorhandler(413)
    def too_large(e: Exception) -> Any:
        n = flask.request.content_length
        got = f"is {n:,} bytes" if n is not None else "is too large"
        return (
            flask.jsonify(
                {
                    "error": f"The request body {got}; the review app reads at "
                    f"most {MAX_BODY_BYTES:,} bytes per request. Send fewer "
                    "items per action."
                }
            ),
            413,
        )

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Any:
        if not flask.request.path.startswith("/api/"):
            return e
        return flask.jsonify({"error": f"{e.code} {e.name}: {e.description}"}), e.code

    @app.before_request
    def same_origin_only() -> None:
        req = flask.request
        served_host, served_port = app.config["SERVED_AT"]
        if not host_allowed(req.host, served_host, served_port):
            where = _bracket(served_host) + (
                f":{served_port}" if served_port is not None else ""
            )
            raise _Refused(
                403,
                f"Refused: the request is for host {req.host!r}, but this review "
                f"app is served at {where}. Open it by that address (a web page "
                "on another domain cannot use it).",
            )
        origin = req.headers.get("Origin")
        own = f"{req.scheme}://{req.host}".lower()
        if origin is not None:
            parts = urlsplit(origin.strip().lower())
            if f"{parts.scheme}://{parts.netloc}" != own:
                raise _Refused(
                    403,
                    f"Refused a cross-origin request from {origin!r}: the review "
                    f"app only answers its own page ({own}).",
                )
        site = req.headers.get("Sec-Fetch-Site")
        if req.method not in ("GET", "HEAD", "OPTIONS") and site not in (
            None,
            "same-origin",
            "none",
        ):
            raise _Refused(
                403,
                f"Refused a {site} {req.method} request: only the review app's "
                "own page can change the review.",
            )

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clusterlens.app", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    page = env.get_template("review.html.j2")
    image_root = wsp.image_root if str(wsp.image_root) not in ("", ".") else None
    item_paths = frozenset(str(p) for p in wsp.items["path"] if p)

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
        captions = extra.pop("captions", None)
        extra.setdefault("curation", None)
        html = page.render(
            view=view,
            current=current,
            clusters=clusters,
            items=[
                {
                    "index": int(i),
                    "label": labels[int(i)],
                    "caption": captions[k] if captions is not None else "",
                }
                for k, i in enumerate(items[:_PAGE])
            ],
            views=_view_links(),
            has_report=(wsp.root / "report.html").is_file(),
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
        return _render("cluster", cid, store.cluster_items(cid))

    @app.get("/pool")
    def pool_view() -> Any:
        return _render("pool", None, store.cluster_items(POOL))

    @app.get("/suspects")
    def suspects_view() -> Any:
        sus = store.suspects()
        return _render(
            "suspects",
            None,
            np.array([s["index"] for s in sus], dtype=np.int64),
            suspects=sus[:_PAGE],
        )

    def _view_links() -> list[dict[str, Any]]:
        from clusterlens.app._views import available_views

        return [{"name": v, "title": v} for v in available_views(wsp)]

    @app.get("/view/<name>")
    def curation_view(name: str) -> Any:
        from clusterlens.app._views import VIEWS, load_view

        if name not in VIEWS or not (wsp.root / VIEWS[name][0]).is_file():
            flask.abort(404)
        try:
            v = load_view(wsp, name)
        except ClusterlensError as e:
            return flask.Response(str(e), status=409, mimetype="text/plain")
        return _render(
            "curate",
            None,
            v.indices,
            captions=v.captions,
            curation=v,
        )

    #: The explore report and the two reports it links to (nothing else).
    _REPORTS = ("report.html", "clusters/cnn/report.html", "label-issues/report.html")

    @app.get("/report/")
    @app.get("/report/<path:rel>")
    def report(rel: str = "report.html") -> Any:
        if rel not in _REPORTS or not (wsp.root / rel).is_file():
            flask.abort(404)
        resp = flask.Response(
            (wsp.root / rel).read_bytes(), mimetype="text/html; charset=utf-8"
        )
        # self-contained pages: inline style, script and data: images only
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            "script-src 'unsafe-inline'"
        )
        return resp

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
        if rel not in item_paths:  # only the workspace's own images
            flask.abort(404)
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

    @app.post("/api/cursor")
    def set_cursor() -> Any:
        """Remember the page the annotator is on (``/`` reopens it)."""
        at = _json_body(flask.request).get("at")
        live = [c["id"] for c in store.clusters()]
        if at not in ("pool", "suspects") and (
            isinstance(at, bool) or not isinstance(at, int) or at not in live
        ):
            raise _Refused(
                400,
                f"'at' must be a cluster id of this review, \"pool\" or "
                f'"suspects"; got {_short(at)}.',
            )
        store.set_cursor(at)
        return flask.jsonify({"cursor": store.cursor()})

    @app.post("/api/action")
    def action() -> Any:
        body = _json_body(flask.request)
        try:
            out = _dispatch(store, body)
        except ClusterlensError as e:
            return flask.jsonify({"error": str(e)}), 400
        return flask.jsonify({"result": out, "progress": store.progress()})

    @app.post("/api/export")
    def export() -> Any:
        from clusterlens.io._export import EXPORT_FORMATS, export_labels
        from clusterlens.utils._fs import staged_output_dir

        fmt = _json_body(flask.request).get("format", "csv")
        if not isinstance(fmt, str) or fmt not in EXPORT_FORMATS:
            close = difflib.get_close_matches(str(fmt), EXPORT_FORMATS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise _Refused(
                400,
                f"Unknown export format {_short(fmt)}.{hint} Available: "
                f"{', '.join(EXPORT_FORMATS)}.",
            )

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


_MISSING = object()


class _Body:
    """Typed access to an action's fields: wrong types are refused, never coerced."""

    def __init__(self, body: dict[str, Any], kind: str) -> None:
        self.body = body
        self.kind = kind

    def _get(self, key: str, default: Any, what: str) -> Any:
        if key in self.body:
            return self.body[key]
        if default is _MISSING:
            raise _Refused(400, f"The {self.kind!r} action needs {key!r} ({what}).")
        return default

    def integer(self, key: str, default: Any = _MISSING) -> int:
        v = self._get(key, default, "an integer")
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Refused(
                400,
                f"{key!r} of the {self.kind!r} action must be an integer; got "
                f"{_short(v)}.",
            )
        return v

    def string(self, key: str, default: Any = _MISSING) -> Any:
        v = self._get(key, default, "a string")
        if v is not default and not isinstance(v, str):
            raise _Refused(
                400,
                f"{key!r} of the {self.kind!r} action must be a string; got "
                f"{_short(v)}.",
            )
        return v

    def items(self, n_items: int) -> list[int]:
        v = self._get("items", _MISSING, "a list of item indices")
        v = v if isinstance(v, list) else [v]
        if not v:
            raise _Refused(
                400, f"'items' of the {self.kind!r} action lists no item indices."
            )
        if len(v) > n_items:
            raise _Refused(
                400,
                f"'items' of the {self.kind!r} action lists {len(v):,} indices but "
                f"the workspace has {n_items:,} items; send at most {n_items:,}.",
            )
        bad = next(
            (x for x in v if isinstance(x, bool) or not isinstance(x, int)), None
        )
        if bad is not None:
            raise _Refused(
                400,
                f"'items' of the {self.kind!r} action must be integer indices; got "
                f"{_short(bad)}.",
            )
        return list(v)


def _dispatch(store: ReviewStore, body: dict[str, Any]) -> Any:
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise _Refused(
            400, f"Unknown action {_short(kind)}: 'kind' must be one of {_ACTIONS}."
        )
    b = _Body(body, kind)
    if kind == "name_cluster":
        return store.name_cluster(b.integer("cluster"), b.string("name"))
    if kind == "reject":
        return store.reject(b.items(store.n_items), to=b.string("to", "auto"))
    if kind == "label_items":
        return store.label_items(b.items(store.n_items), b.string("name"))
    if kind == "merge":
        return store.merge(b.integer("into"), b.integer("other"))
    if kind == "split":
        return store.split(b.integer("cluster"))
    if kind == "resolve_suspect":
        return store.resolve_suspect(
            b.integer("item"), b.string("decision"), b.string("label", None)
        )
    if kind == "undo":
        return store.undo(b.integer("n", 1))
    raise _Refused(400, f"Unknown action {kind!r}; use {_ACTIONS}.")
