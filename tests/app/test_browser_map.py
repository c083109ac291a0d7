"""The map and search by example in a real headless Chromium (#19)."""

from __future__ import annotations

import base64
import threading

import numpy as np
import pytest
from tests._browser import chromium, sync_api
from tests.app.conftest import make_ws
from tests.app.test_map_search import add_map_and_index, digit_images, gray_embed, png

pytest.importorskip("flask")
playwright = sync_api()
CHROMIUM = chromium()


@pytest.fixture
def server(tmp_path):
    """The digits with a PCA map and a search index, served on a free port."""
    from werkzeug.serving import make_server

    from clusterlens.app import create_app

    ws, _ = make_ws(tmp_path)
    images = digit_images(ws)
    add_map_and_index(ws, images)
    app = create_app(ws, embed=gray_embed)
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}", app.config["STORE"], ws, images
    srv.shutdown()
    t.join()


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True)


def test_lasso_on_the_map_labels_exactly_the_items_inside(server):
    url, store, _, _ = server
    with playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1300, "height": 850})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/map")
        page.wait_for_selector("#map-canvas[data-ready='1']")
        n = page.evaluate("window.__mapStats.n")
        assert n == 60
        # where the page drew each item (CSS px inside the canvas)
        xy = np.array(
            page.evaluate(f"[...Array({n}).keys()].map(window.__map.screenOf)")
        )
        box = page.locator("#map-canvas").bounding_box()
        # a lasso (a diamond) around the left part of the map: the items whose
        # screen x lies left of the widest gap between sorted x positions
        xs = np.sort(xy[:, 0])
        gap = int(np.argmax(np.diff(xs)))
        cut = (xs[gap] + xs[gap + 1]) / 2
        inside = np.flatnonzero(xy[:, 0] < cut)
        assert 0 < inside.size < n
        # the map leaves 24 px around its dots: the lasso stays on the canvas
        x0, x1 = max(2, xy[:, 0].min() - 18), cut
        y0 = max(2, xy[:, 1].min() - 18)
        y1 = min(box["height"] - 2, xy[:, 1].max() + 18)
        poly = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        page.keyboard.press("l")  # the lasso tool
        assert page.get_attribute(".tool[data-tool=lasso]", "aria-pressed") == "true"
        page.mouse.move(box["x"] + poly[0][0], box["y"] + poly[0][1])
        page.mouse.down()
        for a, b in poly[1:]:
            page.mouse.move(box["x"] + a, box["y"] + b, steps=6)
        page.mouse.up()
        assert page.inner_text("#sel-n") == str(inside.size)
        page.fill("#sel-name", "left")
        page.click("#sel-label")
        page.locator("#status", has_text="labelled").wait_for()
        labels = store.labels()
        assert [i for i, lab in enumerate(labels) if lab == "left"] == inside.tolist()
        # coloured by label, the legend counts the new label
        page.select_option("#map-colour", "label")
        page.wait_for_selector(".legend-entry:has-text('left')")
        assert str(inside.size) in page.inner_text(".legend-entry:has-text('left')")
        # the store's undo takes the whole lasso back
        with page.expect_navigation():
            page.keyboard.press("u")
        assert all(lab is None for lab in store.labels())
        # open a selection as a grid: the same items, labelled there
        page.wait_for_selector("#map-canvas[data-ready='1']")
        page.select_option("#map-colour", "label")
        page.click(".legend-entry:has-text('unlabelled')")  # all its items
        assert page.inner_text("#sel-n") == "60"
        with page.expect_navigation():
            page.click("#sel-grid")
        assert "/selection/" in page.url
        assert page.locator("figure.item").count() == 60
        assert not errors
        browser.close()


def test_hover_shows_the_thumbnail_and_panning_redraws(server):
    url, _, _, _ = server
    with playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1300, "height": 850})
        page.goto(url + "/map")
        page.wait_for_selector("#map-canvas[data-ready='1']")
        box = page.locator("#map-canvas").bounding_box()
        sx, sy = page.evaluate("window.__map.screenOf(17)")
        page.mouse.move(box["x"] + sx, box["y"] + sy)
        page.wait_for_selector("#map-tip:not([hidden])")
        assert page.get_attribute("#map-tip-img", "src") == "/thumb/17?size=64"
        assert page.inner_text("#map-tip-text").startswith("item 17")
        assert page.evaluate("window.__map.tipLoaded()")
        before = page.evaluate("window.__map.view()")
        draws = page.evaluate("window.__mapStats.draws")
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + 220, box["y"] + 120, steps=10)
        page.mouse.up()
        after = page.evaluate("window.__map.view()")
        assert after["cx"] < before["cx"] and after["cy"] > before["cy"]
        assert page.evaluate("window.__mapStats.draws") > draws
        # a box around the whole map selects every item
        page.keyboard.press("0")
        page.keyboard.press("b")
        page.mouse.move(box["x"] + 3, box["y"] + 3)
        page.mouse.down()
        page.mouse.move(
            box["x"] + box["width"] - 3, box["y"] + box["height"] - 3, steps=5
        )
        page.mouse.up()
        assert page.inner_text("#sel-n") == "60"
        page.keyboard.press("Escape")
        assert page.inner_text("#sel-n") == "0"
        page.keyboard.press("p")
        # the keyboard zooms and pans too
        page.keyboard.press("0")
        s0 = page.evaluate("window.__map.view()")
        page.keyboard.press("+")
        page.keyboard.press("ArrowRight")
        s1 = page.evaluate("window.__map.view()")
        assert s1["scale"] > s0["scale"] and s1["cx"] > s0["cx"]
        # a click on a dot opens its detail view
        page.keyboard.press("0")
        sx, sy = page.evaluate("window.__map.screenOf(17)")
        page.mouse.click(box["x"] + sx, box["y"] + sy)
        page.locator("#detail[open]").wait_for()
        assert page.inner_text("#d-title") == "Item 17"
        browser.close()


def test_search_by_example_returns_the_items_own_copy_first(server, tmp_path):
    url, store, _, images = server
    query = tmp_path / "query.png"
    query.write_bytes(png(images[41]))
    with playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(url + "/pool")
        # an image file picked in the header: its own copy comes first
        with page.expect_navigation():
            page.set_input_files("#search-image", str(query))
        assert "/selection/" in page.url
        first = page.locator("figure.item").first
        assert first.get_attribute("data-idx") == "41"
        assert "similarity 1.00" in first.inner_text()
        # the results are a grid to label
        first.click(modifiers=["Shift"])
        page.fill("#name", "found")
        with page.expect_navigation():
            page.click("#pool-form button[type=submit]")
        assert store.labels()[41] == "found"
        # an image file dropped on the page searches too
        page.goto(url + "/cluster/1")
        data = base64.b64encode(png(images[5])).decode()
        dt = page.evaluate_handle(
            """(b64) => {
              const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
              const dt = new DataTransfer();
              dt.items.add(new File([bytes], "q.png", { type: "image/png" }));
              return dt;
            }""",
            data,
        )
        with page.expect_navigation():
            page.dispatch_event("main", "drop", {"dataTransfer": dt})
        assert page.locator("figure.item").first.get_attribute("data-idx") == "5"
        # more like this from the detail view: the query, then its neighbours
        page.goto(url + "/cluster/0")
        fig = page.locator("figure.item").nth(2)
        idx = fig.get_attribute("data-idx")
        fig.locator("img").click()
        page.locator("#detail[open]").wait_for()
        with page.expect_navigation():
            page.keyboard.press("m")
        assert page.url.endswith(f"/similar/{idx}")
        assert page.locator("figure.item").first.get_attribute("data-idx") == idx
        assert page.locator("figure.item").count() == 49
        browser.close()


def test_an_upload_over_the_limit_is_refused_in_the_page(server):
    from clusterlens.app._search import MAX_UPLOAD_BYTES

    url, _, _, _ = server
    with playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(url + "/pool")
        page.set_input_files(
            "#search-image",
            files=[
                {
                    "name": "huge.png",
                    "mimeType": "image/png",
                    "buffer": b"\x89PNG" + b"\0" * MAX_UPLOAD_BYTES,
                }
            ],
        )
        page.locator("#status", has_text="at most").wait_for()
        assert f"{MAX_UPLOAD_BYTES:,} bytes" in page.inner_text("#status")
        assert page.url.endswith("/pool")
        page.set_input_files(
            "#search-image",
            files=[{"name": "a.txt", "mimeType": "text/plain", "buffer": b"hello"}],
        )
        page.locator("#status", has_text="not an image").wait_for()
        browser.close()
