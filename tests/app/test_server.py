"""The review web app through Flask's test client: pages, actions, security."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask")

from clusterlens.app import create_app
from clusterlens.io import read_results, write_results


@pytest.fixture
def client(digits_ws):
    app = create_app(digits_ws[0])
    return app.test_client(), app.config["STORE"]


def test_page_shows_cluster_closest_first(client):
    c, store = client
    r = c.get("/")
    assert r.status_code == 302 and r.location.endswith("/cluster/0")
    html = c.get("/cluster/0").get_data(as_text=True)
    shown = [int(x) for x in re.findall(r'data-idx="(\d+)"', html)]
    assert shown == store.cluster_items(0).tolist()
    assert c.get("/cluster/77").status_code == 404


def test_actions_through_the_api(client):
    c, store = client
    r = c.post(
        "/api/action", json={"kind": "name_cluster", "cluster": 1, "name": "one"}
    )
    assert r.status_code == 200 and r.json["result"]["n_labelled"] == 20
    item = int(store.cluster_items(1)[-1])
    r = c.post("/api/action", json={"kind": "reject", "items": [item]})
    assert r.json["result"]["moved_to"][str(item)] in (0, 2)
    assert (
        c.post("/api/action", json={"kind": "split", "cluster": 0}).status_code == 200
    )
    r = c.post("/api/action", json={"kind": "merge", "into": 0, "other": 3})
    assert r.status_code == 200
    r = c.post("/api/action", json={"kind": "undo", "n": 3})
    assert [u["kind"] for u in r.json["result"]] == ["merge", "split", "reject"]
    assert store.progress()["n_labelled"] == 20
    r = c.post("/api/action", json={"kind": "name_cluster", "cluster": 99, "name": "x"})
    assert r.status_code == 400 and "does not exist" in r.json["error"]
    assert c.post("/api/action", json={"kind": "fly"}).status_code == 400
    # a form post from another site is not JSON: refused
    r = c.post("/api/action", data={"kind": "undo"})
    assert r.status_code == 415


def test_label_names_are_escaped(client):
    c, _ = client
    evil = '<script>alert("x")</script>'
    c.post("/api/action", json={"kind": "name_cluster", "cluster": 0, "name": evil})
    html = c.get("/cluster/0").get_data(as_text=True)
    assert evil not in html
    assert "&lt;script&gt;alert(" in html
    assert "script-src" not in html  # the CSP is a header
    r = c.get("/cluster/0")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_page_has_no_external_urls(client):
    c, _ = client
    html = c.get("/cluster/0").get_data(as_text=True)
    urls = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            urls.extend(v for k, v in attrs if k in ("src", "href") and v)

    P().feed(html)
    assert urls and all(u.startswith("/") or u == "#" for u in urls), urls
    js = c.get("/static/review.js").get_data(as_text=True)
    assert "http" not in js
    assert c.get("/static/../_store.py").status_code == 404


def test_thumbnails(client, digits_ws):
    c, _ = client
    r = c.get("/thumb/5")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert c.get("/thumb/60").status_code == 404


def test_images_only_from_inside_the_dataset_root(tmp_path):
    from clusterlens.io import create_workspace
    from clusterlens.pipelines.cluster_images import run_cluster_images

    src = tmp_path / "data"
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(
                src / cls / f"{i}.png"
            )
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "secret.png")
    ws = tmp_path / "ws"
    ws.mkdir()
    wsp = create_workspace(src, ws)
    (ws / "features" / "f").mkdir(parents=True)
    np.save(ws / "features" / "f" / "features.npy", np.eye(6, dtype=np.float32))
    (ws / "clusters" / "f").mkdir(parents=True)
    run_cluster_images(
        wsp, ws / "clusters" / "f", features="f", n_clusters=2, report=False
    )
    items = read_results(ws / "items.parquet")
    items["path"][0] = "../secret.png"  # a tampered items table
    write_results(ws / "items.parquet", items)
    c = create_app(ws).test_client()
    assert c.get("/thumb/1").status_code == 200
    assert c.get("/thumb/0").status_code == 404
    assert c.get("/image/a/1.png").status_code == 200
    for bad in (
        "/image/../secret.png",
        "/image/a/../../secret.png",
        "/image/..%2Fsecret.png",
        "/image/%2E%2E/secret.png",
        f"/image/{tmp_path}/secret.png",
    ):
        assert c.get(bad, follow_redirects=True).status_code == 404, bad


def test_export_from_the_page(client, digits_ws):
    c, _ = client
    c.post("/api/action", json={"kind": "name_cluster", "cluster": 2, "name": "two"})
    r = c.post("/api/export", json={"format": "csv"})
    assert r.status_code == 200 and r.json["n_labelled"] == 20
    text = (digits_ws[0] / "export" / "csv" / "labels.csv").read_text()
    assert text.count(",two,") == 20
    # an earlier export is never replaced silently: 409 until asked to
    c.post("/api/action", json={"kind": "name_cluster", "cluster": 2, "name": "deux"})
    r = c.post("/api/export", json={"format": "csv"})
    assert r.status_code == 409 and "replace it?" in r.json["error"]
    assert (digits_ws[0] / "export" / "csv" / "labels.csv").read_text() == text
    r = c.post("/api/export", json={"format": "csv", "overwrite": True})
    assert r.status_code == 200
    text = (digits_ws[0] / "export" / "csv" / "labels.csv").read_text()
    assert text.count(",deux,") == 20 and ",two," not in text
    r = c.post("/api/export", json={"format": "pdf"})
    assert r.status_code == 400 and "Unknown export format" in r.json["error"]


def test_export_menu_offers_yolo_for_boxes_only(client, digits_ws):
    """#19: the page's export menu; YOLO refused with a reason on whole images."""
    c, store = client
    html = c.get("/cluster/0").get_data(as_text=True)
    offered = re.findall(r'class="export-btn btn" data-format="(\w+)"', html)
    assert offered == ["csv", "coco", "imagefolder", "labelstudio"]
    r = c.post("/api/export", json={"format": "yolo"})
    assert r.status_code == 400 and "YOLO labels are boxes" in r.json["error"]
    assert not (digits_ws[0] / "export" / "yolo").exists()
    a, b = (int(i) for i in store.cluster_items(0)[:2])
    c.post("/api/action", json={"kind": "keep_one", "keep": a, "items": [a, b]})
    r = c.post("/api/export", json={"format": "labelstudio"})
    assert r.status_code == 200 and r.json["skipped"] == {"duplicate": 1}
    assert r.json["skipped_text"] == "skipped 1 item: 1 marked duplicate (keep one)"
