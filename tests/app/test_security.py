"""The review app's security rules over HTTP: token, Origin, traversal, body size."""

from __future__ import annotations

import pytest

pytest.importorskip("flask")

from clusterlens.app import create_app
from clusterlens.app._server import MAX_BODY_BYTES, TOKEN_COOKIE, TOKEN_HEADER
from clusterlens.exceptions import InvalidParameterError

TOKEN = "s3cret-token-for-tests"


def test_network_host_needs_a_token(digits_ws):
    with pytest.raises(InvalidParameterError, match="access token"):
        create_app(digits_ws[0], host="0.0.0.0")
    # loopback needs none
    create_app(digits_ws[0], host="localhost").config["STORE"].close()


def test_token_is_checked_on_every_request(digits_ws):
    app = create_app(digits_ws[0], host="0.0.0.0", port=80, token=TOKEN)
    c = app.test_client()
    for path in ("/", "/cluster/0", "/thumb/0", "/api/state", "/static/review.js"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert "access token" in r.get_data(as_text=True)
    r = c.post("/api/action", json={"kind": "name_cluster", "cluster": 0, "name": "x"})
    assert r.status_code == 401 and "access token" in r.json["error"]
    assert app.config["STORE"].n_actions() == 0
    assert c.get("/?token=wrong").status_code == 401
    assert c.get("/", headers={TOKEN_HEADER: "wrong"}).status_code == 401
    # the header works for scripts
    assert c.get("/api/state", headers={TOKEN_HEADER: TOKEN}).status_code == 200
    # the printed address: its token becomes a cookie and leaves the address
    r = c.get(f"/cluster/0?token={TOKEN}")
    assert r.status_code == 302 and r.location.endswith("/cluster/0")
    cookie = r.headers["Set-Cookie"]
    assert f"{TOKEN_COOKIE}={TOKEN}" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert c.get("/cluster/0").status_code == 200  # the cookie is sent now
    r = c.post("/api/action", json={"kind": "name_cluster", "cluster": 0, "name": "x"})
    assert r.status_code == 200
    assert app.config["STORE"].n_actions() == 1


def test_loopback_app_needs_no_token(digits_ws):
    c = create_app(digits_ws[0]).test_client()
    assert c.get("/cluster/0").status_code == 200


@pytest.fixture
def client(digits_ws):
    app = create_app(digits_ws[0])
    return app.test_client(), app.config["STORE"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost:9999"},  # another port: another origin
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Referer": "http://evil.example/page.html"},
    ],
)
def test_state_changes_only_from_the_apps_own_page(client, headers):
    c, store = client
    body = {"kind": "name_cluster", "cluster": 0, "name": "pwned"}
    r = c.post("/api/action", json=body, headers=headers)
    assert r.status_code == 403 and "Refused" in r.json["error"]
    r = c.post("/api/cursor", json={"at": 1}, headers=headers)
    assert r.status_code == 403
    r = c.post("/api/export", json={"format": "csv"}, headers=headers)
    assert r.status_code == 403
    assert store.n_actions() == 0 and store.labels()[0] is None


def test_own_origin_is_accepted(client):
    c, store = client
    body = {"kind": "name_cluster", "cluster": 0, "name": "ok"}
    r = c.post(
        "/api/action",
        json=body,
        headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 200 and store.n_actions() == 1


@pytest.mark.parametrize(
    "path",
    [
        "/image/../items.parquet",
        "/image/..%2F..%2Fetc%2Fpasswd",
        "/image/%2E%2E/%2E%2E/etc/passwd",
        "/image//etc/passwd",
        "/report/../items.parquet",
        "/report/%2E%2E/review.sqlite",
        "/static/..%2Freview.html.j2",
        "/static/../_server.py",
        "/thumb/-1",
        "/thumb/60",
        "/api/item/60",
    ],
)
def test_no_path_traversal(client, path):
    c, _ = client
    assert c.get(path, follow_redirects=True).status_code == 404, path


def test_request_bodies_are_size_limited(client):
    c, store = client
    big = (
        b'{"kind": "label_items", "name": "x", "items": ['
        + b"0, " * (MAX_BODY_BYTES // 3 + 10)
        + b"0]}"
    )
    assert len(big) > MAX_BODY_BYTES
    r = c.post("/api/action", data=big, content_type="application/json")
    assert r.status_code == 413 and f"{MAX_BODY_BYTES:,}" in r.json["error"]
    assert store.n_actions() == 0
    # a form post (what another site can send without asking) is refused
    r = c.post("/api/action", data={"kind": "undo"})
    assert r.status_code == 415


def test_over_real_http_with_waitress(digits_ws):
    """The server the CLI runs: waitress, the token checked on the wire."""
    waitress = pytest.importorskip("waitress")
    import json
    import threading
    import urllib.error
    import urllib.request

    app = create_app(digits_ws[0], host="127.0.0.1", token=TOKEN)
    srv = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{srv.effective_port}"
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/api/state", timeout=10)
        assert e.value.code == 401
        req = urllib.request.Request(base + "/api/state", headers={TOKEN_HEADER: TOKEN})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200 and "progress" in json.loads(r.read())
        post = urllib.request.Request(
            base + "/api/action",
            data=json.dumps({"kind": "undo"}).encode(),
            headers={
                TOKEN_HEADER: TOKEN,
                "Content-Type": "application/json",
                "Origin": "http://evil.example",
            },
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(post, timeout=10)
        assert e.value.code == 403
    finally:
        srv.close()
