"""The map's data, selections, search by example, upload rules, over HTTP (#19)."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from PIL import Image
from tests.app.conftest import make_ws

from clusterlens.app._map import colour_codes, pack_colours, quantize_xy
from clusterlens.app._search import MAX_UPLOAD_BYTES

pytest.importorskip("flask")


def gray_embed(pixels):
    """The digits' features are their raw 8x8 pixels: embed an image the same way."""
    a = np.asarray(pixels, dtype=np.float32)
    return (a[..., 0] if a.ndim == 3 else a).reshape(1, -1)


def add_map_and_index(ws_dir, images):
    """Embeddings (the pixels), a PCA map and a search index, by the stages' code."""
    from clusterlens.io import open_workspace
    from clusterlens.pipelines.curate import run_index, run_map

    cnn = ws_dir / "features" / "cnn"
    cnn.mkdir(parents=True)
    np.save(cnn / "features.npy", images.reshape(len(images), -1).astype(np.float32))
    ws = open_workspace(ws_dir)
    run_map(ws, ws_dir / "map", method="pca")
    run_index(ws, ws_dir / "index")


def digit_images(ws_dir):
    from clusterlens.io import open_workspace

    ws = open_workspace(ws_dir)
    return np.stack([ws.read_item(i) for i in range(len(ws))])


@pytest.fixture
def mapped(tmp_path):
    """(app, workspace folder, images): the digits with a map and an index."""
    from clusterlens.app import create_app

    ws_dir, _ = make_ws(tmp_path)
    images = digit_images(ws_dir)
    add_map_and_index(ws_dir, images)
    return create_app(ws_dir, embed=gray_embed), ws_dir, images


def png(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def unpack_colours(data, n):
    (L,) = struct.unpack("<I", data[:4])
    legend = json.loads(data[4 : 4 + L].decode("utf-8"))["legend"]
    off = 4 + L + (-(4 + L)) % 4
    return legend, np.frombuffer(data[off:], dtype="<u2")


def test_map_coordinates_are_the_map_files_quantised(mapped):
    import pyarrow.parquet as pq

    app, ws_dir, _ = mapped
    c = app.test_client()
    r = c.get("/api/map/xy")
    assert r.status_code == 200 and r.mimetype == "application/octet-stream"
    q = np.frombuffer(r.data, dtype="<u2").reshape(-1, 2)
    t = pq.read_table(ws_dir / "map" / "map.parquet").to_pydict()
    xy = np.zeros((len(t["index"]), 2))
    xy[t["index"]] = np.c_[t["x"], t["y"]]
    lo, hi = xy.min(0), xy.max(0)
    np.testing.assert_allclose(q / 65535.0, (xy - lo) / (hi - lo), atol=1.0 / 65535)
    assert len(r.data) == 4 * len(xy)  # 4 bytes a point


def test_map_colours_follow_the_review_and_its_actions(mapped):
    app, _, _ = mapped
    c = app.test_client()
    store = app.config["STORE"]
    legend, codes = unpack_colours(c.get("/api/map/colours?by=cluster").data, 60)
    assign = store.assignment()
    names = [e["name"] for e in legend]
    # every item's code names its cluster; the counts add up
    assert [names[k] for k in codes] == [f"#{a}" for a in assign]
    assert sum(e["count"] for e in legend) == 60
    act = {"kind": "label_items", "items": [3, 5], "name": "a"}
    r = c.post("/api/action", json=act)
    assert r.status_code == 200
    legend, codes = unpack_colours(c.get("/api/map/colours?by=label").data, 60)
    got = [legend[k]["name"] for k in codes]
    assert got[3] == got[5] == "a" and got.count("unlabelled") == 58
    assert [e["muted"] for e in legend if e["name"] == "unlabelled"] == [True]
    r = c.get("/api/map/colours?by=colour")
    assert r.status_code == 400 and "cluster, label, issue" in r.json["error"]


def test_issue_colouring_takes_the_first_issue_in_order():
    from clusterlens.app._facts import ItemFacts

    f = ItemFacts(n=5, given=np.array([""] * 5))
    f.flags["outlier"] = np.array([1, 1, 0, 0, 0], bool)
    f.flags["duplicate"] = np.array([1, 0, 0, 0, 0], bool)
    f.flags["quality"] = np.array([0, 1, 1, 0, 0], bool)
    codes, legend = colour_codes(
        "issue",
        assignment=np.zeros(5, np.int64),
        labels=[None] * 5,
        facts=f,
        cluster_names={},
    )
    names = [legend[k]["name"] for k in codes]
    assert names == ["duplicate", "outlier", "quality issue", "no issue", "no issue"]
    # the packed message is aligned so the codes read as a Uint16Array view
    data = pack_colours(codes, legend)
    back_legend, back = unpack_colours(data, 5)
    assert back.tolist() == codes.tolist() and back_legend == legend
    assert (len(data) - 2 * 5) % 4 == 0


def test_quantize_keeps_order_and_range():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(1000, 2))
    q = np.frombuffer(quantize_xy(xy), dtype="<u2").reshape(-1, 2)
    assert q.min() == 0 and q.max() == 65535
    # quantising is monotone per axis
    assert np.all(np.diff(q[np.argsort(xy[:, 0]), 0].astype(int)) >= 0)


def test_without_a_map_the_view_says_how_to_make_one(digits_ws):
    from clusterlens.app import create_app

    app = create_app(digits_ws[0])
    c = app.test_client()
    r = c.get("/map")
    assert r.status_code == 200
    assert b"clusterlens map" in r.data and b"map-canvas" not in r.data
    r = c.get("/api/map/xy")
    assert r.status_code == 404 and "clusterlens map" in r.json["error"]


def test_a_selection_opens_as_a_grid_and_bad_ones_are_refused(mapped):
    app, _, _ = mapped
    c = app.test_client()
    r = c.post("/api/selection", json={"items": [4, 9, 2], "title": "left <b>"})
    assert r.status_code == 200 and r.json["n"] == 3
    page = c.get(r.json["url"]).data.decode()
    assert page.count('class="item') == 3
    for i in (4, 9, 2):
        assert f'data-idx="{i}"' in page
    assert "left &lt;b&gt;" in page  # escaped
    for bad in ([], [1, True], [60], [-1], "3", [1.5]):
        r = c.post("/api/selection", json={"items": bad})
        assert r.status_code == 400, bad
    assert c.get("/selection/999").status_code == 404


def test_more_like_this_ranks_as_exact_cosine_search(mapped):
    app, _, images = mapped
    c = app.test_client()
    r = c.get("/api/similar/7?k=10")
    assert r.status_code == 200
    res = r.json["results"]
    assert res[0] == {"index": 7, "similarity": 1.0, "query": True}
    E = images.reshape(60, -1).astype(np.float64)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    sims = E @ E[7]
    sims[7] = -np.inf
    want = np.argsort(-sims, kind="stable")[:10]
    got = [x["index"] for x in res[1:]]
    got_sims = [x["similarity"] for x in res[1:]]
    np.testing.assert_allclose(got_sims, sims[want], atol=1e-5)
    assert set(got) == set(want.tolist()) or np.allclose(sims[got], sims[want])
    page = c.get("/similar/7").data.decode()
    assert page.index('data-idx="7"') < page.index(f'data-idx="{got[0]}"')
    assert c.get("/api/similar/60").status_code == 404


def test_an_uploaded_copy_of_an_item_finds_that_item_first(mapped):
    app, _, images = mapped
    c = app.test_client()
    for i in (0, 33):
        r = c.post(
            "/api/search/image?k=5",
            data=png(images[i]),
            headers={"Content-Type": "image/png"},
        )
        assert r.status_code == 200, r.json
        assert r.json["results"][0]["index"] == i
        assert r.json["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
        page = c.get(r.json["url"]).data.decode()
        assert page.index(f'data-idx="{i}"') < page.index("</main>")
    # a multipart form works too
    r = c.post(
        "/api/search/image",
        data={"image": (io.BytesIO(png(images[12])), "q.png")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 200 and r.json["results"][0]["index"] == 12


def test_uploads_over_the_limit_empty_or_not_images_are_refused(mapped):
    app, _, _ = mapped
    c = app.test_client()
    big = b"\x89PNG" + b"\0" * MAX_UPLOAD_BYTES
    r = c.post("/api/search/image", data=big, headers={"Content-Type": "image/png"})
    assert r.status_code == 413
    assert f"at most {MAX_UPLOAD_BYTES:,} bytes" in r.json["error"]
    r = c.post(
        "/api/search/image",
        data=b"GIF89a but not really",
        headers={"Content-Type": "image/gif"},
    )
    assert r.status_code == 400
    assert r.json["error"].startswith("The upload is not an image clusterlens can read")
    r = c.post("/api/search/image", data=b"", headers={"Content-Type": "image/png"})
    assert r.status_code == 400 and "empty" in r.json["error"]
    # a truncated PNG: decoded by the project's reader, refused
    r = c.post(
        "/api/search/image",
        data=png(np.zeros((8, 8), np.uint8))[:40],
        headers={"Content-Type": "image/png"},
    )
    assert r.status_code == 400 and "not an image" in r.json["error"]
    # a page on another site cannot post one
    r = c.post(
        "/api/search/image",
        data=png(np.zeros((8, 8), np.uint8)),
        headers={"Content-Type": "image/png", "Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    # the other routes keep the 2 MiB body limit
    r = c.post(
        "/api/selection",
        data=b"[" + b"1," * (1_100_000) + b"1]",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "2,097,152 bytes" in r.json["error"]


def test_search_without_an_index_says_how_to_make_one(digits_ws):
    from clusterlens.app import create_app

    app = create_app(digits_ws[0], embed=gray_embed)
    c = app.test_client()
    r = c.post(
        "/api/search/image",
        data=png(np.zeros((8, 8), np.uint8)),
        headers={"Content-Type": "image/png"},
    )
    assert r.status_code == 409 and "clusterlens index" in r.json["error"]
    r = c.get("/api/similar/3")
    assert r.status_code == 409 and "clusterlens index" in r.json["error"]
    assert b"search-image" not in c.get("/pool").data  # no search button
    assert c.get("/api/item/3").json["similar"] is None


def test_label_colouring_names_each_items_label():
    from clusterlens.app._facts import ItemFacts

    rng = np.random.default_rng(0)
    words = np.array(["zebra", "ant", None, "bee", "é"], dtype=object)
    labels = words[rng.integers(0, 5, size=1000)].tolist()
    codes, legend = colour_codes(
        "label",
        assignment=np.zeros(1000, np.int64),
        labels=labels,
        facts=ItemFacts(n=1000, given=np.array([""] * 1000)),
        cluster_names={},
    )
    names = [e["name"] for e in legend]
    assert names == ["unlabelled", "ant", "bee", "zebra", "é"]  # sorted after it
    assert [names[k] for k in codes] == [lab or "unlabelled" for lab in labels]
    assert [e["count"] for e in legend] == [
        sum(lab == w for lab in labels) for w in (None, "ant", "bee", "zebra", "é")
    ]
    codes, legend = colour_codes(
        "label",
        assignment=np.zeros(3, np.int64),
        labels=[None] * 3,
        facts=ItemFacts(n=3, given=np.array([""] * 3)),
        cluster_names={},
    )
    assert codes.tolist() == [0, 0, 0] and legend[0]["name"] == "unlabelled"


def test_a_map_made_while_the_app_runs_is_shown_on_reload(digits_ws):
    from clusterlens.app import create_app

    ws_dir = digits_ws[0]
    app = create_app(ws_dir)
    c = app.test_client()
    assert c.get("/api/map/xy").status_code == 404
    add_map_and_index(ws_dir, digit_images(ws_dir))
    assert b"map-canvas" in c.get("/map").data
    assert len(c.get("/api/map/xy").data) == 4 * 60


def test_a_damaged_map_is_named_with_the_fix(digits_ws):
    from clusterlens.app import create_app

    ws_dir = digits_ws[0]
    (ws_dir / "map").mkdir()
    (ws_dir / "map" / "map.parquet").write_bytes(b"not parquet")
    c = create_app(ws_dir).test_client()
    r = c.get("/api/map/xy")
    assert r.status_code == 404 and "--overwrite" in r.json["error"]
    assert b"clusterlens map" in c.get("/map").data
