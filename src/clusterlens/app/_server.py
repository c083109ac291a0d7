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
import hmac
import ipaddress
import json
import math
import os
import socket
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import numpy as np

from clusterlens.app._data import open_review
from clusterlens.app._store import POOL, ReviewStore
from clusterlens.exceptions import ClusterlensError, InvalidParameterError
from clusterlens.utils._optional import import_optional

__all__ = [
    "MAX_BODY_BYTES",
    "TOKEN_COOKIE",
    "TOKEN_HEADER",
    "create_app",
    "host_allowed",
    "is_loopback",
    "safe_image_path",
]

_PAGE = 200  # thumbnails per page

#: Largest request body the app reads (2 MiB): the page sends at most a page of
#: thumbnails (400 indices, a few KB) per action.
MAX_BODY_BYTES = 2 * 1024 * 1024

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_ACTIONS = (
    "name_cluster, reject, label_items, merge, split, resolve_suspect, keep_one, "
    "undo or redo"
)


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a ``--host`` value) reaches this machine only."""
    h = host.strip().lower().strip("[]")
    ip = _ip(h)
    return h == "localhost" or (ip is not None and ip.is_loopback)


#: Name of the cookie that carries the access token once the page has it.
TOKEN_COOKIE = "clusterlens_token"
#: Header a script may send the access token in instead.
TOKEN_HEADER = "X-Clusterlens-Token"


def create_app(
    ws: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] | None = None,
    issues: str | os.PathLike[str] | None = None,
    thumb_size: int = 96,
    random_state: int = 0,
    host: str = "127.0.0.1",
    port: int | None = None,
    token: str | None = None,
    embed: Any = None,
    thumb_cache: bool = True,
) -> Any:
    """The Flask app reviewing workspace ``ws`` (state in ``WS/review.sqlite``).

    Parameters
    ----------
    ws : str or os.PathLike
        The workspace.
    results, issues : str or os.PathLike, default=None
        See :func:`clusterlens.app.open_review` (results other than those of
        an existing review switch it, keeping its labels).
    thumb_size : int, default=96
        Longest side of the thumbnails the grid shows, in pixels.
    random_state : int, default=0
        Seed of the split action.
    host : str, default="127.0.0.1"
        The address the app is served on: requests naming another host in
        their ``Host`` header are refused (see :func:`host_allowed`).
    port : int, default=None
        The port it is served on (None: any port).
    token : str, default=None
        Access token every request must carry (``?token=`` once, then a
        cookie; or the ``X-Clusterlens-Token`` header). Required when
        ``host`` is not a loopback address.
    embed : callable, default=None
        How search by image embeds an uploaded image ((H, W, 3) uint8 ->
        (1, d) float32); default: the workspace's CNN with the settings that
        made its embeddings.
    thumb_cache : bool, default=True
        Keep thumbnails on disk in ``WS/app-cache/`` (and, above
        16,384 items, make them all in a background thread).

    Returns
    -------
    app : flask.Flask
        ``app.config["STORE"]`` is the :class:`ReviewStore`. Request bodies
        are limited to :data:`MAX_BODY_BYTES` (``MAX_CONTENT_LENGTH``).

    Raises
    ------
    InvalidParameterError
        If ``host`` is not a loopback address and no ``token`` is given.
    """
    if not is_loopback(host) and not token:
        raise InvalidParameterError(
            f"Serving the review app on {host!r} exposes it to the network: it "
            "needs an access token (clusterlens review makes one and prints it)."
        )
    flask = import_optional("flask", extra="app", feature="clusterlens review")
    import jinja2

    from clusterlens.app._facts import ISSUES, load_facts
    from clusterlens.app._search import Searcher
    from clusterlens.app._thumbs import make_thumbnail, open_thumb_cache
    from clusterlens.app._views import VIEWS, available_views, load_view

    data, store = open_review(
        ws, results=results, issues=issues, random_state=random_state
    )
    wsp = data.workspace
    facts = load_facts(wsp)
    searcher = Searcher(wsp, embed=embed)
    app = flask.Flask("clusterlens.app", static_folder=None)
    app.config["STORE"] = store
    app.config["DATA"] = data
    app.config["FACTS"] = facts
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["SERVED_AT"] = (host, port)
    app.config["TOKEN"] = token
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(_Refused)
    def refused(e: _Refused) -> Any:
        if not flask.request.path.startswith("/api/") and e.status == 401:
            return flask.Response(e.message, status=401, mimetype="text/plain")
        return flask.jsonify({"error": e.message}), e.status

    @app.errorhandler(413)
    def too_large(e: Exception) -> Any:
        n = flask.request.content_length
        got = f"is {n:,} bytes" if n is not None else "is too large"
        if flask.request.path == "/api/search/image":
            from clusterlens.app._search import MAX_UPLOAD_BYTES

            msg = (
                f"The upload {got}; the review app takes image files of at most "
                f"{MAX_UPLOAD_BYTES:,} bytes. Shrink the image first."
            )
            return flask.jsonify({"error": msg}), 413
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
    def same_origin_only() -> Any:
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
        if req.method not in ("GET", "HEAD", "OPTIONS"):
            if site not in (None, "same-origin", "none"):
                raise _Refused(
                    403,
                    f"Refused a {site} {req.method} request: only the review "
                    "app's own page can change the review.",
                )
            ref = req.headers.get("Referer")
            if origin is None and site is None and ref:
                parts = urlsplit(ref.strip().lower())
                if f"{parts.scheme}://{parts.netloc}" != own:
                    raise _Refused(
                        403,
                        f"Refused a {req.method} request referred by another "
                        "site: only the review app's own page can change the "
                        "review.",
                    )
        want = app.config["TOKEN"]
        if want is None:
            return None
        given = req.args.get("token")
        if given is not None and req.method == "GET":
            if not hmac.compare_digest(given.encode(), want.encode()):
                raise _Refused(401, "Wrong access token in the address.")
            # the token leaves the address bar (and the history) at once
            resp = flask.redirect(req.path)
            resp.set_cookie(
                TOKEN_COOKIE, want, httponly=True, samesite="Strict", path="/"
            )
            return resp
        got = req.headers.get(TOKEN_HEADER) or req.cookies.get(TOKEN_COOKIE) or ""
        if not hmac.compare_digest(got.encode(), want.encode()):
            raise _Refused(
                401,
                "This review app needs its access token: open the address that "
                "`clusterlens review` printed (it ends in ?token=...), or send the "
                f"token in the {TOKEN_HEADER} header.",
            )
        return None

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clusterlens.app", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["hm"] = lambda ts: time.strftime("%H:%M", time.localtime(ts))
    page = env.get_template("review.html.j2")
    image_root = wsp.image_root if str(wsp.image_root) not in ("", ".") else None
    item_paths = frozenset(str(p) for p in wsp.items["path"] if p)
    try:
        results_rel = str(data.results_path.resolve().relative_to(wsp.root.resolve()))
    except ValueError:
        results_rel = str(data.results_path)
    # the export menu: YOLO labels are boxes, offered for box workspaces only
    has_boxes = bool(np.isfinite(np.asarray(wsp.items["bbox_w"], float)).any())
    export_formats = [
        ("csv", "labels.csv: index, item, label, cluster"),
        ("coco", "COCO annotations.json (boxes stay boxes of their images)"),
        *([("yolo", "YOLO labels/*.txt + data.yaml")] if has_boxes else []),
        ("imagefolder", "one folder of images per label"),
        (
            "labelstudio",
            "Label Studio tasks: labels as annotations, suggestions "
            "as scored predictions",
        ),
    ]

    def _page_no() -> int:
        raw = flask.request.args.get("page", "1")
        return max(1, int(raw)) if raw.isdigit() else 1

    def _render(
        view: str,
        cluster: int | None,
        items: np.ndarray,
        *,
        captions: list[str] | None = None,
        page_size: int = _PAGE,
        **extra: Any,
    ) -> Any:
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
        marks = store.marks()
        progress = store.progress()
        n_total = int(items.size)
        n_pages = max(1, -(-n_total // page_size))
        pno = min(_page_no(), n_pages)
        lo = (pno - 1) * page_size
        shown = items[lo : lo + page_size]
        extra.setdefault("curation", None)
        extra.setdefault("groups", None)
        args = {k: v for k, v in flask.request.args.items() if k != "page"}
        html = page.render(
            view=view,
            current=current,
            clusters=clusters,
            items=[
                {
                    "index": int(i),
                    "label": labels[int(i)],
                    "mark": marks.get(int(i)),
                    "caption": captions[lo + k] if captions is not None else "",
                }
                for k, i in enumerate(shown)
            ],
            views=_view_links(),
            has_report=(wsp.root / "report.html").is_file(),
            n_total=n_total,
            page_no=pno,
            n_pages=n_pages,
            first=lo,
            page_url=lambda n: (
                flask.request.path + "?" + urlencode({**args, "page": n})
            ),
            next_id=nxt,
            prev_id=prv,
            progress=progress,
            can_undo=progress["n_actions"] > 0,
            can_redo=store.can_redo(),
            n_suspects=len(store.suspects()),
            names=sorted(
                {lab for lab in labels if lab}
                | {c["name"] for c in clusters if c["name"]}
            ),
            css=_read_static("review.css"),
            history=store.history(30),
            ws_name=wsp.root.name,
            results_rel=results_rel,
            can_search=searcher.unavailable() is None,
            has_map=(wsp.root / "map" / "map.parquet").is_file(),
            switched=store.switched,
            export_formats=export_formats,
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
        if cur not in {str(c["id"]) for c in store.clusters()}:
            live = store.clusters()
            return flask.redirect(f"/cluster/{live[0]['id']}" if live else "/pool")
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
        pno = _page_no()
        return _render(
            "suspects",
            None,
            np.array([s["index"] for s in sus], dtype=np.int64),
            suspects=sus[(pno - 1) * _PAGE : pno * _PAGE],
        )

    def _view_links() -> list[dict[str, Any]]:
        titles = {
            "duplicates": "Duplicates",
            "outliers": "Outliers",
            "quality": "Image quality",
            "sample": "Sample to label",
        }
        return [{"name": v, "title": titles.get(v, v)} for v in available_views(wsp)]

    @app.get("/view/<name>")
    def curation_view(name: str) -> Any:
        if name not in VIEWS or not (wsp.root / VIEWS[name][0]).is_file():
            flask.abort(404)
        try:
            v = load_view(wsp, name)
        except ClusterlensError as e:
            return flask.Response(str(e), status=409, mimetype="text/plain")
        if name == "duplicates" and facts.dup_group is not None:
            return _duplicate_groups(v)
        return _render("curate", None, v.indices, captions=v.captions, curation=v)

    _GROUPS_PER_PAGE = 40

    def _duplicate_groups(v: Any) -> Any:
        assert facts.dup_group is not None and facts.dup_keep is not None
        group = facts.dup_group[v.indices]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])[: group.size]
        bounds = list(zip(starts, np.r_[starts[1:], group.size], strict=True))
        labels = store.labels()
        marks = store.marks()
        n_pages = max(1, -(-len(bounds) // _GROUPS_PER_PAGE))
        pno = min(_page_no(), n_pages)
        groups = []
        for a, b in bounds[(pno - 1) * _GROUPS_PER_PAGE : pno * _GROUPS_PER_PAGE]:
            members = [int(i) for i in v.indices[a:b]]
            groups.append(
                {
                    "id": int(group[a]),
                    "members": [
                        {
                            "index": i,
                            "label": labels[i],
                            "mark": marks.get(i),
                            "caption": v.captions[a + k].split(" · ", 1)[-1],
                            "suggested": bool(facts.dup_keep[i]),
                        }
                        for k, i in enumerate(members)
                    ],
                    "settled": any(marks.get(i) for i in members),
                }
            )
        # the grid pages by groups: one page per _GROUPS_PER_PAGE groups
        fake = np.arange(len(bounds) * _PAGE // _GROUPS_PER_PAGE, dtype=np.int64)
        return _render(
            "duplicates",
            None,
            fake,
            curation=v,
            groups=groups,
            n_groups=len(bounds),
        )

    def _filters() -> dict[str, str]:
        keys = ("label", "given", "cluster", "issue", "score", "min", "max", "sort")
        return {k: flask.request.args.get(k, "") for k in keys}

    @app.get("/items")
    def all_items() -> Any:
        f = _filters()
        n = store.n_items
        keep = np.ones(n, dtype=bool)
        labels = store.labels_array()
        assign = store.assignment()
        if f["label"] == "(none)":
            keep &= np.equal(labels, None)  # type: ignore[call-overload]
        elif f["label"]:
            keep &= labels == f["label"]
        if f["given"] == "(none)":
            keep &= facts.given == ""
        elif f["given"]:
            keep &= facts.given == f["given"]
        if f["cluster"] == "pool":
            keep &= assign == POOL
        elif f["cluster"].lstrip("-").isdigit():
            keep &= assign == int(f["cluster"])
        if f["issue"] == "marked":
            marked = np.zeros(n, dtype=bool)
            marked[list(store.marks())] = True
            keep &= marked
        elif f["issue"] in facts.flags:
            keep &= facts.flags[f["issue"]]
        elif f["issue"]:
            raise _Refused(400, f"Unknown issue filter {_short(f['issue'])}.")
        score = facts.scores.get(f["score"])
        if f["score"] and score is None:
            raise _Refused(400, f"Unknown score {_short(f['score'])}.")
        for key, cmp in (("min", np.greater_equal), ("max", np.less_equal)):
            if f[key] and score is not None:
                try:
                    bound = float(f[key])
                except ValueError as e:
                    raise _Refused(
                        400, f"'{key}' must be a number; got {_short(f[key])}."
                    ) from e
                with np.errstate(invalid="ignore"):
                    keep &= cmp(score, bound)
        idx = np.flatnonzero(keep)
        sort = f["sort"] or "index"
        if sort in ("score-asc", "score-desc") and score is not None:
            s = score[idx]
            s = np.where(np.isnan(s), np.inf, s if sort == "score-asc" else -s)
            idx = idx[np.argsort(s, kind="stable")]
        elif sort == "cluster":
            idx = idx[np.argsort(assign[idx], kind="stable")]
        elif sort == "label":
            by = np.array([lab or "\uffff" for lab in labels[idx]], dtype=str)
            idx = idx[np.argsort(by, kind="stable")]
        caps = None
        if score is not None:
            title = facts.score_titles[f["score"]]
            caps = [""] * idx.size
            pno = _page_no()
            for k in range((pno - 1) * _PAGE, min(pno * _PAGE, idx.size)):
                v = score[idx[k]]
                caps[k] = f"{title} {v:.2f}" if np.isfinite(v) else ""
        return _render(
            "items",
            None,
            idx.astype(np.int64),
            captions=caps,
            filters=f,
            issue_names={
                **{k: t for k, t in ISSUES.items() if k in facts.flags},
                "marked": "marked duplicate",
            },
            score_names=facts.score_titles,
            given_names=sorted(set(facts.given.tolist()) - {""}),
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
        if name not in ("review.js", "review.css", "map.js"):
            flask.abort(404)
        mime = "text/javascript" if name.endswith(".js") else "text/css"
        return flask.Response(_read_static(name), mimetype=mime)

    def _make_thumb(idx: int, size: int) -> tuple[bytes, str] | None:
        return make_thumbnail(wsp, facts, idx, size)

    cache = open_thumb_cache(wsp, _make_thumb) if thumb_cache else None
    app.config["THUMBS"] = cache
    if cache is not None and facts.previews is None and len(wsp) > 1:
        from clusterlens.curate._previews import MAX_PREVIEW_ITEMS

        if len(wsp) > MAX_PREVIEW_ITEMS:  # no scan previews: make them all now
            cache.start_fill(thumb_size, workspace=str(wsp.root))

    @functools.lru_cache(maxsize=2048)
    def _thumb_bytes(idx: int, size: int) -> tuple[bytes, str] | None:
        if cache is None or size > 256 or (size <= 64 and facts.previews is not None):
            return _make_thumb(idx, size)
        return cache.get(idx, size)

    @app.get("/thumb/<int:idx>")
    def thumb(idx: int) -> Any:
        if not 0 <= idx < len(wsp):
            flask.abort(404)
        rel = str(wsp.items["path"][idx])
        if rel and (image_root is None or safe_image_path(image_root, rel) is None):
            flask.abort(404)  # the items table points outside the dataset root
        raw = flask.request.args.get("size", "")
        size = min(max(int(raw), 16), 1024) if raw.isdigit() else thumb_size
        got = _thumb_bytes(idx, size)
        if got is None:
            flask.abort(404)
        assert got is not None
        resp = flask.Response(got[0], mimetype=got[1])
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

    @app.get("/api/item/<int:idx>")
    def item_detail(idx: int) -> Any:
        """Everything about one item, for the detail view."""
        if not 0 <= idx < len(wsp):
            flask.abort(404)
        it = wsp.items
        cl = int(store.assignment()[idx])
        names = store.cluster_names()
        rel = str(it["path"][idx])
        box = None
        bx = [float(it[c][idx]) for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]
        if math.isfinite(bx[2]):
            box = {
                "x": bx[0],
                "y": bx[1],
                "w": bx[2],
                "h": bx[3],
                "width": int(it["width"][idx]),
                "height": int(it["height"][idx]),
            }
        labels = store.labels()
        nb = []
        if facts.neighbors is not None:
            nb = [
                {"index": int(j), "label": labels[int(j)]}
                for j in facts.neighbors[idx][:12]
                if 0 <= int(j) < len(wsp) and int(j) != idx
            ]
        return flask.jsonify(
            {
                "index": idx,
                "item_id": str(it["item_id"][idx]),
                "file": rel or wsp.item_path(idx),
                "given": str(facts.given[idx]) or None,
                "suggested": (
                    str(facts.suggested[idx]) or None
                    if facts.suggested is not None
                    else None
                ),
                "label": labels[idx],
                "cluster": cl,
                "cluster_name": names.get(cl) if cl >= 0 else "pool",
                "mark": store.marks().get(idx),
                "issues": [ISSUES[k] for k in facts.issues_of(idx)],
                "scores": facts.scores_of(idx),
                "neighbors": nb,
                "box": box,
                "large": f"/thumb/{idx}?size=640",
                "similar": (
                    f"/similar/{idx}" if searcher.unavailable() is None else None
                ),
                "whole": (
                    f"/image/{quote(rel)}"
                    if box is not None and rel and image_root is not None
                    else None
                ),
            }
        )

    @app.get("/api/state")
    def state() -> Any:
        return flask.jsonify(
            {
                "cursor": store.cursor(),
                "progress": store.progress(),
                "clusters": store.clusters(),
                "results": results_rel,
                "can_redo": store.can_redo(),
                "thumbnails": None if cache is None else cache.progress(),
            }
        )

    @app.get("/api/history")
    def history() -> Any:
        return flask.jsonify({"history": store.history(50)})

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
        return flask.jsonify(
            {
                "result": out,
                "progress": store.progress(),
                "can_redo": store.can_redo(),
            }
        )

    @app.post("/api/export")
    def export() -> Any:
        from clusterlens.app._export import export_review
        from clusterlens.io._export import EXPORT_FORMATS, describe_skipped
        from clusterlens.utils._fs import staged_output_dir

        body = _json_body(flask.request)
        fmt = body.get("format", "csv")
        if not isinstance(fmt, str) or fmt not in EXPORT_FORMATS:
            close = difflib.get_close_matches(str(fmt), EXPORT_FORMATS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise _Refused(
                400,
                f"Unknown export format {_short(fmt)}.{hint} Available: "
                f"{', '.join(EXPORT_FORMATS)}.",
            )

        dst = wsp.root / "export" / str(fmt)
        # the CLI's rule: an earlier export is replaced only when asked to
        if dst.exists() and body.get("overwrite") is not True:
            return (
                flask.jsonify(
                    {
                        "error": f"{dst} holds an earlier {fmt} export; replace it?",
                        "exists": str(dst),
                    }
                ),
                409,
            )
        try:
            with staged_output_dir(
                dst, overwrite=True, kind=f"export/{fmt}", workspace=wsp.root
            ) as stage:
                summary = export_review(data, store, stage, fmt=str(fmt), final=dst)
        except ClusterlensError as e:
            return flask.jsonify({"error": str(e)}), 400
        return flask.jsonify(
            {
                **summary,
                "out": str(dst),
                "skipped_text": describe_skipped(summary["skipped"]),
            }
        )

    from clusterlens.app._routes_map import add_map_routes

    add_map_routes(
        app,
        flask,
        store=store,
        wsp=wsp,
        facts=facts,
        render=_render,
        refused=_Refused,
        json_body=_json_body,
        searcher=searcher,
    )
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
    if kind == "keep_one":
        return store.keep_one(b.integer("keep"), b.items(store.n_items))
    if kind == "undo":
        return store.undo(b.integer("n", 1))
    if kind == "redo":
        return store.redo(b.integer("n", 1))
    raise _Refused(400, f"Unknown action {kind!r}; use {_ACTIONS}.")
