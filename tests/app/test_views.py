"""The explore views in the review app: duplicates, outliers, quality and the
sample, read from the workspace, each selectable and labelled like the pool."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from tests._browser import chromium, sync_api

pytest.importorskip("flask")

from tests.app.conftest import make_ws


def _explored(tmp_path):
    """The digits workspace with every curation view computed on its pixels."""
    from clusterlens.io import open_workspace
    from clusterlens.pipelines import curate as cv
    from clusterlens.utils._fs import staged_output_dir

    ws_dir, _labels = make_ws(tmp_path)
    cnn = ws_dir / "features" / "cnn"
    cnn.mkdir(parents=True)
    X = np.load(ws_dir / "features" / "pixels" / "features.npy")
    X = np.vstack([X[:-1], X[:1]])  # the last item: an exact copy of the first
    np.save(cnn / "features.npy", X)
    ws = open_workspace(ws_dir)
    for name, fn in (
        ("scan", cv.run_scan),
        ("neighbors", cv.run_neighbors),
        ("duplicates", cv.run_duplicates),
        ("outliers", cv.run_outliers),
        ("quality", cv.run_quality),
        # budget 3: the noisy copies of each blob are near duplicates of each
        # other, so the sample may pick only one representative per group (4 or
        # 5 groups, depending on float rounding at the threshold; never < 3)
        ("sample", lambda w, st: cv.run_sample(w, st, budget=3)),
    ):
        with staged_output_dir(ws_dir / name, kind=name, workspace=ws_dir) as st:
            fn(ws, st)
    (ws_dir / "report.html").write_text("<!DOCTYPE html><title>r</title><p>report")
    return ws_dir


@pytest.fixture
def client(tmp_path):
    from clusterlens.app import create_app

    ws_dir = _explored(tmp_path)
    app = create_app(ws_dir)
    return app.test_client(), app.config["STORE"], ws_dir


def test_every_view_is_linked_and_shown(client):
    c, store, _ws = client
    page = c.get("/cluster/0").get_data(as_text=True)
    for v in ("duplicates", "outliers", "quality", "sample"):
        assert f'href="/view/{v}"' in page
    assert 'href="/report/"' in page
    dup = c.get("/view/duplicates").get_data(as_text=True)
    assert "Duplicates" in dup and 'data-group="0"' in dup
    group0 = dup.split('data-group="0"', 1)[1].split("</section>", 1)[0]
    assert "Keep (suggested)" in group0 and ">keep</span>" in group0
    sample = c.get("/view/sample")
    assert sample.status_code == 200
    html = sample.get_data(as_text=True)
    assert html.count('<figure class="item') == 3 and "#1 · covers" in html
    assert c.get("/view/outliers").status_code == 200
    assert c.get("/view/quality").status_code == 200
    assert c.get("/view/nonsense").status_code == 404
    # GETs change nothing
    assert store.progress()["n_actions"] == 0


def test_missing_view_is_not_linked_and_404s(client):
    c, _, ws = client
    shutil.rmtree(ws / "sample")
    assert 'href="/view/sample"' not in c.get("/cluster/0").get_data(as_text=True)
    assert c.get("/view/sample").status_code == 404


def test_stale_view_says_so(client):
    c, _, ws = client
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"index": [0, 1], "pick": [0, -1], "covers": [2, 0]}),
        ws / "sample" / "sample.parquet",
    )
    r = c.get("/view/sample")
    assert r.status_code == 409 and "rows but the workspace has" in r.get_data(
        as_text=True
    )


def test_reports_are_served_and_nothing_else(client):
    c, _, _ws = client
    r = c.get("/report/")
    assert r.status_code == 200 and b"report" in r.data
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    for bad in ("items.parquet", "workspace.json", "../x", "scan/scan.parquet"):
        assert c.get(f"/report/{bad}").status_code == 404


def test_label_the_sample_in_chromium(tmp_path):
    exe = chromium()
    playwright = sync_api()
    from werkzeug.serving import make_server

    from clusterlens.app import create_app

    ws_dir = _explored(tmp_path)
    app = create_app(ws_dir)
    store = app.config["STORE"]
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{srv.server_port}/view/sample")
            figs = page.locator("figure.item")
            assert figs.count() == 3
            picked = [int(figs.nth(i).get_attribute("data-idx")) for i in (0, 2)]
            # shift-click selects; Space selects the focused image
            figs.nth(0).click(modifiers=["Shift"])
            figs.nth(2).focus()
            page.keyboard.press(" ")
            assert page.locator("figure.picked").count() == 2
            page.fill("#name", "blob")
            with page.expect_navigation():
                page.press("#name", "Enter")
            browser.close()
    finally:
        srv.shutdown()
        t.join()
    labels = store.labels()
    assert [labels[i] for i in picked] == ["blob", "blob"]
    assert sum(x == "blob" for x in labels) == 2


def test_empty_views_say_so(client):
    c, _, ws = client
    page = c.get("/suspects").get_data(as_text=True)
    assert "No label-issue suspects" in page
    import pyarrow.parquet as pq

    t = pq.read_table(ws / "sample" / "sample.parquet").to_pydict()
    t["pick"] = [-1] * len(t["pick"])
    import pyarrow as pa

    pq.write_table(pa.table(t), ws / "sample" / "sample.parquet")
    assert "Nothing in this view" in c.get("/view/sample").get_data(as_text=True)
