"""End to end in a real headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import csv
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


def test_label_reject_reload_export_in_chromium(server):
    url, store, ws = server
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.goto(url + "/")
        assert page.url.endswith("/cluster/0")
        # nothing takes the focus on load: the keyboard shortcuts work at once
        assert page.evaluate("document.activeElement.tagName") == "BODY"
        n0 = page.locator("figure.item").count()
        assert n0 == 20
        # a plain click opens the detail view and rejects nothing
        last = page.locator("figure.item").last
        rejected = int(last.get_attribute("data-idx"))
        last.locator("img").click()
        page.locator("#detail[open]").wait_for()
        assert page.locator("#d-title").inner_text() == f"Item {rejected}"
        assert "images.npy row" in page.locator("#d-file").inner_text()
        assert "cluster" in page.locator("#d-kv").inner_text()
        assert store.n_actions() == 0
        page.keyboard.press("Escape")
        page.locator("#detail[open]").wait_for(state="detached")
        assert page.locator("figure.item").count() == n0
        # rejecting is explicit: the item's reject button
        last.hover()
        last.locator("button.rej").click()
        page.wait_for_selector(f'figure.item[data-idx="{rejected}"]', state="detached")
        assert store.n_actions() == 1
        # name the cluster: Enter reaches the name box, Enter again labels
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "name"
        page.keyboard.type("zero <i>")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.url.endswith("/cluster/1")
        # reload cluster 0: the state is kept
        page.goto(url + "/cluster/0")
        page.reload()
        assert page.locator("#cluster-name").inner_text() == "zero <i>"
        assert page.locator("figure.item").count() == n0 - 1
        assert page.locator(f'figure[data-idx="{rejected}"]').count() == 0
        captions = page.locator("figure.item figcaption").all_inner_texts()
        assert set(captions) == {"zero <i>"}
        history = page.locator("#history").inner_text()
        assert 'Named cluster #0 "zero <i>"' in history and "Rejected 1 item" in history
        # u undoes the naming, r redoes it
        with page.expect_navigation():
            page.keyboard.press("u")
        assert page.locator("#cluster-name").inner_text() == ""
        assert "undone, can redo" in page.locator("#history").inner_text()
        assert (
            store.labels()[
                int(page.locator("figure.item").first.get_attribute("data-idx"))
            ]
            is None
        )
        with page.expect_navigation():
            page.click("#redo")
        assert page.locator("#cluster-name").inner_text() == "zero <i>"
        assert page.locator("#redo").is_disabled()
        # export from the page
        page.click("details.menu summary")
        page.click('button.export-btn[data-format="csv"]')
        # a locator wait: the page's CSP forbids the eval that a string
        # wait_for_function needs once it has to poll
        page.locator("#status", has_text="exported").wait_for()
        # exporting again asks before replacing the first export
        first = (ws / "export" / "csv").stat().st_mtime_ns
        asked: list[str] = []
        page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
        page.click("details.menu summary")
        page.click('button.export-btn[data-format="csv"]')
        for _ in range(100):
            if (ws / "export" / "csv").stat().st_mtime_ns != first:
                break
            page.wait_for_timeout(100)
        assert asked and "replace it?" in asked[0], asked
        assert (ws / "export" / "csv").stat().st_mtime_ns != first
        browser.close()
    rows = list(csv.DictReader(open(ws / "export" / "csv" / "labels.csv")))
    labelled = [r for r in rows if r["label"]]
    assert len(labelled) == n0 - 1
    assert {r["label"] for r in labelled} == {"zero <i>"}
    assert rows[rejected]["label"] == "" and rows[rejected]["cluster"] != "0"
    assert store.n_actions() == 2


_COLOURS = "e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]"


def _rgb(css):
    return [int(float(v)) for v in css[css.index("(") + 1 : -1].split(",")[:3]]


def _contrast(fg, bg):
    def lum(rgb):
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    a, b = sorted((lum(fg), lum(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_header_buttons_are_readable_light_and_dark(server):
    url, _store, _ws = server
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        for scheme in ("light", "dark"):
            page = browser.new_page(color_scheme=scheme)
            page.goto(url + "/cluster/0")
            for sel in (
                "#undo",
                "#redo",
                "details.menu summary",
                "#report-link",
                "button[type=submit].primary",
                "#split",
                "#reject-selected",
            ):
                if page.locator(sel).count() == 0:
                    continue
                fg, bg = page.locator(sel).first.evaluate(_COLOURS)
                ratio = _contrast(_rgb(fg), _rgb(bg))
                assert ratio >= 4.5, (scheme, sel, fg, bg, ratio)  # WCAG AA
            page.close()
        browser.close()


def test_shift_click_selects_and_labels_single_images_in_a_cluster(server):
    url, store, _ws = server
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.goto(url + "/cluster/0")
        figs = page.locator("figure.item")
        n0 = figs.count()
        a, b = (int(figs.nth(i).get_attribute("data-idx")) for i in (0, n0 - 1))
        # shift-click selects (nothing is rejected), a second shift-click unselects
        figs.nth(0).click(modifiers=["Shift"])
        figs.nth(1).click(modifiers=["Shift"])
        figs.nth(1).click(modifiers=["Shift"])
        figs.nth(n0 - 1).click(modifiers=["Shift"])
        assert page.locator("figure.picked").count() == 2
        assert store.n_actions() == 0
        page.fill("#fix-name", "seven")
        with page.expect_navigation():
            page.press("#fix-name", "Enter")
        # one action labelled both images; naming the cluster keeps their label
        assert store.n_actions() == 1
        assert store.history(1)[0]["kind"] == "label_items"
        page.fill("#name", "zero")
        with page.expect_navigation():
            page.press("#name", "Enter")
        browser.close()
    labels = store.labels()
    assert labels[a] == labels[b] == "seven"
    members = [int(i) for i in store.cluster_items(0)]
    assert len(members) == n0 and {labels[i] for i in members} == {"seven", "zero"}
    assert sum(labels[i] == "zero" for i in members) == n0 - 2


def _serve(app):
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, t, f"http://127.0.0.1:{srv.server_port}"


def test_keep_one_all_items_and_switch_results_in_chromium(tmp_path):
    from tests.app.test_flow import _second_results
    from tests.app.test_views import _explored

    from clusterlens.app import create_app

    ws = _explored(tmp_path)
    app = create_app(ws)
    store = app.config["STORE"]
    srv, t, url = _serve(app)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page()
            # keep one copy of the first duplicate group
            page.goto(url + "/view/duplicates")
            group = page.locator("section.group").first
            members = [
                int(x)
                for x in group.locator("figure.item").evaluate_all(
                    "fs => fs.map(f => f.dataset.idx)"
                )
            ]
            assert len(members) >= 2
            keep = group.locator("button.keep-one").nth(1)
            kept = int(keep.get_attribute("data-idx"))
            with page.expect_navigation():
                keep.click()
            assert store.marks() == {i: "duplicate" for i in members if i != kept}
            assert "settled" in page.locator("section.group").first.inner_text()
            # all items: filter by the marks, then label what is shown
            page.goto(url + "/items")
            page.select_option("select[name=issue]", "marked")
            with page.expect_navigation():
                page.click("#filters button[type=submit]")
            assert page.locator("figure.item").count() == len(members) - 1
            page.click("#select-all")
            page.fill("#name", "copy")
            with page.expect_navigation():
                page.press("#name", "Enter")
            labels = store.labels()
            assert {labels[i] for i in members if i != kept} == {"copy"}
            assert labels[kept] is None
            browser.close()
    finally:
        srv.shutdown()
        t.join()
        store.close()
    # switch to other results: the page says which, and the labels stay
    other = _second_results(ws)
    app = create_app(ws, results=other)
    store = app.config["STORE"]
    srv, t, url = _serve(app)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page()
            page.goto(url + "/")
            assert (
                "pixels-k2/results.parquet" in page.locator("#reviewing").inner_text()
            )
            assert "kept" in page.locator("#status").inner_text()
            assert page.locator("#clusters li").count() == 2
            assert (
                "Switched to results pixels-k2" in page.locator("#history").inner_text()
            )
            browser.close()
    finally:
        srv.shutdown()
        t.join()
    assert {store.labels()[i] for i in members if i != kept} == {"copy"}
