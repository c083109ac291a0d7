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

from clusterlens.app import create_app  # noqa: E402
from clusterlens.cli.main import cli  # noqa: E402


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
            if i % 25 == 7:  # a refused action: must leave nothing behind
                payload = {"kind": "label_items", "items": [item], "name": "  "}
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
    n_refused = n_threads * len([i for i in range(n_actions) if i % 25 == 7])
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
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]
    assert store.n_actions() == 120
    store.close()
