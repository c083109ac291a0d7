"""The export menu in a real headless Chromium: each format loaded back (#19)."""

from __future__ import annotations

import json
import threading

import pytest
from tests._browser import chromium, sync_api

pytest.importorskip("flask")
playwright = sync_api()
CHROMIUM = chromium()


@pytest.fixture
def server(digits_ws):
    from werkzeug.serving import make_server

    from clusterlens.app import create_app

    app = create_app(digits_ws[0])
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}", app.config["STORE"], digits_ws[0]
    srv.shutdown()
    t.join()


def _export(page, fmt):
    page.click("details.menu summary")
    page.click(f'button.export-btn[data-format="{fmt}"]')
    page.locator("#status", has_text=f"export/{fmt}").wait_for(timeout=60000)
    return page.locator("#status").inner_text()


def test_export_menu_writes_each_format_and_says_what_it_skipped(server):
    COCO = pytest.importorskip("pycocotools.coco").COCO
    url, store, ws = server
    for c in (0, 1, 2):
        store.name_cluster(c, f"digit {c}")
    a, b = (int(i) for i in store.cluster_items(0)[:2])
    store.keep_one(a, [a, b])
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.goto(url + "/cluster/1")
        offered = page.locator("button.export-btn").evaluate_all(
            "bs => bs.map(b => b.dataset.format)"
        )
        assert offered == ["csv", "coco", "imagefolder", "labelstudio"]
        said = _export(page, "coco")
        assert "exported 59 labels" in said
        assert "skipped 1 item: 1 marked duplicate (keep one)" in said
        api = COCO(str(ws / "export" / "coco" / "annotations.json"))
        assert len(api.getAnnIds()) == 59 and len(api.getImgIds()) == 59
        names = {c["name"] for c in api.loadCats(api.getCatIds())}
        assert names == {"digit 0", "digit 1", "digit 2"}
        _export(page, "labelstudio")
        tasks = json.loads((ws / "export" / "labelstudio" / "tasks.json").read_text())
        assert len(tasks) == 59 and b not in {t["data"]["index"] for t in tasks}
        assert all(t["predictions"][0]["model_version"] for t in tasks)
        # again: the page asks before replacing the earlier export; declined here
        page.once("dialog", lambda d: d.dismiss())
        page.click("details.menu summary")
        page.click('button.export-btn[data-format="coco"]')
        page.locator("#status", has_text="export kept as it was").wait_for()
        browser.close()
