"""Issue #17, B (review app): what a browser, an attacker or a bad body can do.

Each test builds its own small workspace, attacks the app (Flask's test client, a
real threaded server, or the CLI) and checks the refusal is clear, in JSON, and
that nothing was changed or written.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading

import pytest
from click.testing import CliRunner

pytest.importorskip("flask")

from clusterlens.app import create_app
from clusterlens.cli.main import cli


def _ws(tmp_path, *, n_per=20, features=True):
    from tests.app.conftest import make_ws

    return make_ws(tmp_path, n_per=n_per, features=features)[0]


def _dump(path):
    """Every row of every table of a review store (the state GETs must not touch)."""
    con = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
            )
        ]
        return {t: con.execute(f"SELECT * FROM {t}").fetchall() for t in tables}
    finally:
        con.close()


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _error(r, status):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert r.is_json, r.get_data(as_text=True)
    msg = r.json["error"]
    assert isinstance(msg, str) and msg and "Traceback" not in msg
    return msg


@pytest.fixture
def app_ws(tmp_path):
    ws = _ws(tmp_path)
    app = create_app(ws)
    return app, ws


# ---------------------------------------------------------------------------- #
# row 4: concurrent writers against a real threaded server
# ---------------------------------------------------------------------------- #
class _Server:
    def __init__(self, app):
        from werkzeug.serving import make_server

        self.srv = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.srv.server_port
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def post(self, path, payload, headers=None):
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            body = json.dumps(payload).encode()
            h = {"Content-Type": "application/json", **(headers or {})}
            con.request("POST", path, body=body, headers=h)
            r = con.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw)
            except ValueError:  # an HTML error page (a 500)
                return r.status, raw.decode("utf-8", "replace")
        finally:
            con.close()

    def close(self):
        self.srv.shutdown()
        self.t.join()


def test_concurrent_writers_every_acknowledged_action_is_stored(tmp_path):
    ws = _ws(tmp_path)
    app = create_app(ws)
    srv = _Server(app)
    n_threads, n_actions = 3, 300
    acked: dict[int, tuple[str, list[int], str]] = {}
    statuses: list[int] = []
    lock = threading.Lock()

    def work(t):
        for i in range(n_actions):
            item = (t * 20 + i) % 60
            if i % 25 == 7:  # refused actions must leave nothing behind:
                payload = {"kind": "label_items", "items": [item], "name": "  "}
            elif i % 25 == 19:  # ... refused inside the store's transaction too
                payload = {"kind": "label_items", "items": [item, 60], "name": "x"}
            elif i % 3 == 0:
                payload = {"kind": "name_cluster", "cluster": t, "name": f"c{t}-{i}"}
            else:
                payload = {"kind": "label_items", "items": [item], "name": f"{t}-{i}"}
            status, out = srv.post("/api/action", payload)
            with lock:
                statuses.append(status)
                if status == 200:
                    acked[out["result"]["action"]] = (payload["kind"], payload)

    try:
        ts = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        # the request threads are gone, and with them their connections
        assert len(app.config["STORE"]._conns) <= 2
    finally:
        srv.close()
        app.config["STORE"].close()
    n_refused = n_threads * len([i for i in range(n_actions) if i % 25 in (7, 19)])
    assert statuses.count(400) == n_refused
    assert statuses.count(200) == n_threads * n_actions - n_refused, {
        s: statuses.count(s) for s in set(statuses)
    }
    con = sqlite3.connect(ws / "review.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT id, kind, args FROM actions").fetchall()
    finally:
        con.close()
    stored = {aid: (kind, json.loads(args)) for aid, kind, args in rows}
    assert set(stored) == set(acked)  # every acknowledged action, nothing else
    for aid, (kind, payload) in acked.items():
        assert stored[aid][0] == kind
        assert stored[aid][1]["name"] == payload["name"]


def test_store_one_connection_per_thread(tmp_path):
    """Threads sharing one ReviewStore never share a transaction."""
    from clusterlens.app import open_review

    ws = _ws(tmp_path)
    _, store = open_review(ws)
    errors = []
    barrier = threading.Barrier(3)

    def work(t):
        try:
            barrier.wait()
            for i in range(40):
                store.label_items([(t * 7 + i) % 60], f"{t}-{i}")
                store.labels()
                store.history(3)
        except Exception as e:  # collected for the assertion
            errors.append(e)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]
    assert store.n_actions() == 120
    store.close()


# ---------------------------------------------------------------------------- #
# row 5: Host / Origin checks; GET never changes state
# ---------------------------------------------------------------------------- #
NAME = {"kind": "name_cluster", "cluster": 0, "name": "zero"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://attacker.test"},
        {"Origin": "null"},
        {"Origin": "http://localhost:9999"},
        {"Host": "evil.example"},
        {"Host": "evil.example", "Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_origin_and_rebinding_posts_are_refused(app_ws, headers):
    app, ws = app_ws
    store = app.config["STORE"]
    before = _dump(ws / "review.sqlite")
    c = app.test_client()
    for path, payload in (("/api/action", NAME), ("/api/export", {"format": "csv"})):
        msg = _error(c.post(path, json=payload, headers=headers), 403)
        assert "Refused" in msg
    assert not (ws / "export").exists()
    assert store.n_actions() == 0 and _dump(ws / "review.sqlite") == before
    # the same request from the app's own page goes through
    r = c.post("/api/action", json=NAME, headers={"Origin": "http://localhost"})
    assert r.status_code == 200 and store.n_actions() == 1


def test_rebinding_reads_are_refused_too(app_ws):
    app, _ = app_ws
    c = app.test_client()
    for path in ("/", "/cluster/0", "/api/state", "/thumb/0", "/static/review.js"):
        r = c.get(path, headers={"Host": "evil.example:8765"})
        assert r.status_code == 403, path
        assert "evil.example:8765" in r.json["error"]


def test_allowed_hosts_follow_where_the_server_listens(tmp_path):
    from clusterlens.app._server import host_allowed

    ok = [
        ("127.0.0.1:8765", "127.0.0.1", 8765),
        ("localhost:8765", "127.0.0.1", 8765),
        ("[::1]:8765", "127.0.0.1", 8765),
        ("LOCALHOST:8765", "localhost", 8765),
        ("localhost:8765", "::1", 8765),
        ("192.168.1.5:8765", "0.0.0.0", 8765),
        ("192.168.1.5:8765", "192.168.1.5", 8765),
        ("localhost:41234", "127.0.0.1", None),
        ("localhost", "127.0.0.1", None),
    ]
    refused = [
        ("evil.example:8765", "127.0.0.1", 8765),
        ("localhost:8766", "127.0.0.1", 8765),
        ("localhost", "127.0.0.1", 8765),  # port 80
        ("evil.example:8765", "0.0.0.0", 8765),
        ("localhost:8765", "192.168.1.5", 8765),
        ("127.0.0.1.evil.example:8765", "127.0.0.1", 8765),
        ("localhost:87x65", "127.0.0.1", 8765),
        ("", "127.0.0.1", None),
    ]
    for args in ok:
        assert host_allowed(*args), args
    for args in refused:
        assert not host_allowed(*args), args
    # the CLI hands its --host/--port to the app
    ws = _ws(tmp_path)
    seen = []
    import clusterlens.cli.review as review_cli

    orig = review_cli.serve
    try:
        review_cli.serve = lambda app, host, port: seen.append(app)
        r = CliRunner().invoke(cli, ["review", str(ws), "--port", "9123"])
    finally:
        review_cli.serve = orig
    assert r.exit_code == 0, r.output
    c = seen[0].test_client()
    assert c.get("/api/state", base_url="http://localhost:9123").status_code == 200
    assert c.get("/api/state", base_url="http://localhost:9124").status_code == 403
    assert c.get("/api/state", base_url="http://evil.test:9123").status_code == 403
    seen[0].config["STORE"].close()


def test_get_requests_never_change_state(app_ws):
    app, ws = app_ws
    c = app.test_client()
    before = _dump(ws / "review.sqlite")
    for path in (
        "/",
        "/cluster/2",
        "/cluster/1",
        "/pool",
        "/suspects",
        "/api/state",
        "/thumb/3",
        "/static/review.js",
        "/api/action",
        "/api/export",
        "/api/cursor",
    ):
        c.get(path)
    assert _dump(ws / "review.sqlite") == before
    assert not (ws / "export").exists()
    # the page remembers where the annotator is by a POST
    assert c.post("/api/cursor", json={"at": 2}).status_code == 200
    assert c.get("/").location.endswith("/cluster/2")
    assert c.post("/api/cursor", json={"at": "pool"}).json == {"cursor": "pool"}
    for bad in (99, "x", True, 1.0, None):
        _error(c.post("/api/cursor", json={"at": bad}), 400)
    assert c.get("/").location.endswith("/pool")
    js = c.get("/static/review.js").get_data(as_text=True)
    assert '"/api/cursor"' in js


# ---------------------------------------------------------------------------- #
# row 6: the export format never makes a path
# ---------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "fmt", ["../../../x/y/z", "csv/../../escape", "/tmp/abs", ["csv"], 3, None, ""]
)
def test_export_format_is_validated_before_touching_the_disk(app_ws, fmt):
    app, ws = app_ws
    root = ws.parent
    before = _tree(root)
    msg = _error(app.test_client().post("/api/export", json={"format": fmt}), 400)
    assert "Unknown export format" in msg and "csv" in msg
    assert _tree(root) == before


# ---------------------------------------------------------------------------- #
# row 7: request size limits
# ---------------------------------------------------------------------------- #
def test_request_body_is_limited(app_ws):
    from clusterlens.app._server import MAX_BODY_BYTES

    app, _ = app_ws
    store = app.config["STORE"]
    c = app.test_client()
    assert app.config["MAX_CONTENT_LENGTH"] == MAX_BODY_BYTES <= 8 * 2**20
    big = (
        b'{"kind": "label_items", "name": "x", "items": ['
        + b"1," * (MAX_BODY_BYTES // 2)
        + b"1]}"
    )
    r = c.post("/api/action", data=big, content_type="application/json")
    msg = _error(r, 413)
    assert f"{MAX_BODY_BYTES:,}" in msg
    # fewer bytes, but more indices than the workspace has items
    many = {"kind": "label_items", "name": "x", "items": [1] * 61}
    msg = _error(c.post("/api/action", json=many), 400)
    assert "61 indices" in msg and "60 items" in msg
    many = {"kind": "reject", "items": list(range(60)) * 2}
    _error(c.post("/api/action", json=many), 400)
    assert store.n_actions() == 0 and store.progress()["n_labelled"] == 0
    ok = {"kind": "label_items", "name": "x", "items": list(range(60))}
    assert c.post("/api/action", json=ok).status_code == 200


# ---------------------------------------------------------------------------- #
# row 8: malformed bodies
# ---------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (b"[1,2,3]", "JSON object"),
        (b'"hello"', "JSON object"),
        (b"42", "JSON object"),
        (b"null", "JSON object"),
        (b"Infinity", "finite"),
        (b'{"kind": "undo", "n": NaN}', "finite"),
        (b'{"kind": "undo", "n": 1e999}', "too large"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"{" * 50_000, "not valid JSON"),
        (b'{"kind": "undo"', "not valid JSON"),
        (b'{"kind": "name_cluster", "cluster": 0, "na', "not valid JSON"),
        (b"", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"{}", "Unknown action"),
        (b'{"kind": ["undo"]}', "Unknown action"),
        (b'{"kind": "fly"}', "Unknown action"),
        (b'{"kind": "name_cluster", "name": "x"}', "needs 'cluster'"),
        (b'{"kind": "label_items", "name": "x", "items": []}', "no item"),
        (b'{"kind": "label_items", "name": 3, "items": [1]}', "must be a string"),
    ],
)
def test_malformed_bodies_get_a_400_saying_what_is_wrong(app_ws, body, expect):
    app, ws = app_ws
    before = _dump(ws / "review.sqlite")
    r = app.test_client().post(
        "/api/action", data=body, content_type="application/json"
    )
    msg = _error(r, 400)
    assert expect in msg, msg
    assert len(msg) < 400
    assert _dump(ws / "review.sqlite") == before


def test_a_form_post_is_refused_as_not_json(app_ws):
    app, _ = app_ws
    r = app.test_client().post("/api/action", data={"kind": "undo"})
    assert "application/json" in _error(r, 415)


# ---------------------------------------------------------------------------- #
# row 9: only the workspace's images are served
# ---------------------------------------------------------------------------- #
def test_image_route_serves_only_workspace_items(tmp_path):
    import numpy as np
    from PIL import Image

    from clusterlens.io import create_workspace
    from clusterlens.pipelines.cluster_images import run_cluster_images

    src = tmp_path / "data"
    (src / "a").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(src / "a" / f"{i}.png")
    ws = tmp_path / "ws"
    ws.mkdir()
    wsp = create_workspace(src, ws)
    (src / "notes.txt").write_text("secret notes")  # under the root, not an item
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(src / "a" / "late.png")
    (ws / "features" / "f").mkdir(parents=True)
    np.save(ws / "features" / "f" / "features.npy", np.eye(4, dtype=np.float32))
    (ws / "clusters" / "f").mkdir(parents=True)
    run_cluster_images(
        wsp, ws / "clusters" / "f", features="f", n_clusters=2, report=False
    )
    c = create_app(ws).test_client()
    assert c.get("/image/a/1.png").status_code == 200
    for bad in ("notes.txt", "a/late.png", "a/../a/1.png", "a//1.png", "a"):
        assert c.get(f"/image/{bad}").status_code == 404, bad


# ---------------------------------------------------------------------------- #
# row 10: ints only
# ---------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "payload",
    [
        {"kind": "name_cluster", "cluster": 1.9, "name": "x"},
        {"kind": "name_cluster", "cluster": True, "name": "x"},
        {"kind": "name_cluster", "cluster": "1", "name": "x"},
        {"kind": "name_cluster", "cluster": None, "name": "x"},
        {"kind": "split", "cluster": 0.0},
        {"kind": "merge", "into": 0, "other": 1.5},
        {"kind": "merge", "into": False, "other": 1},
        {"kind": "reject", "items": [1.9]},
        {"kind": "reject", "items": [True]},
        {"kind": "reject", "items": 2.0},
        {"kind": "label_items", "items": [1, "2"], "name": "x"},
        {"kind": "undo", "n": 1.0},
        {"kind": "undo", "n": True},
    ],
)
def test_ids_must_be_ints_never_coerced(app_ws, payload):
    app, ws = app_ws
    c = app.test_client()
    c.post("/api/action", json={"kind": "name_cluster", "cluster": 2, "name": "two"})
    before = _dump(ws / "review.sqlite")
    msg = _error(c.post("/api/action", json=payload), 400)
    assert "integer" in msg, msg
    assert _dump(ws / "review.sqlite") == before


# ---------------------------------------------------------------------------- #
# Messages: export never creates review.sqlite
# ---------------------------------------------------------------------------- #
def test_export_of_an_unreviewed_workspace_creates_no_store(tmp_path):
    ws = _ws(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli, ["export", str(ws), "--format", "csv", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert not (ws / "review.sqlite").exists()
    assert not list(ws.glob("review.sqlite*"))
    assert "nothing reviewed yet" in r.output and "clusterlens review" in r.output
    rows = (out / "labels.csv").read_text().splitlines()
    assert len(rows) == 61  # every item, with its cluster, no label
    r = CliRunner().invoke(
        cli,
        [
            "export",
            str(ws),
            "--format",
            "csv",
            "--out",
            str(tmp_path / "o2"),
            "--print",
            "json",
        ],
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["n_labelled"] == 0
    assert not (ws / "review.sqlite").exists()
