"""Review flow over HTTP: undo and redo, switching results, keep-one, all items."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("flask")

from tests.app.test_views import _explored

from clusterlens.app import create_app, open_review
from clusterlens.app._data import reset_review
from clusterlens.exceptions import DataValidationError


def _act(c, **body):
    r = c.post("/api/action", json=body)
    assert r.status_code == 200, r.json
    return r.json


def test_undo_redo_and_a_readable_history(digits_ws):
    app = create_app(digits_ws[0])
    c, store = app.test_client(), app.config["STORE"]
    _act(c, kind="name_cluster", cluster=0, name="zero")
    item = int(store.cluster_items(1)[0])
    _act(c, kind="label_items", items=[item], name="odd")
    _act(c, kind="split", cluster=2)
    n_clusters = len(store.clusters())
    assert n_clusters == 4
    out = _act(c, kind="undo", n=2)
    assert [u["kind"] for u in out["result"]] == ["split", "label_items"]
    assert out["can_redo"] is True
    assert len(store.clusters()) == 3 and store.labels()[item] is None
    out = _act(c, kind="redo")
    assert [u["kind"] for u in out["result"]] == ["label_items"]
    assert store.labels()[item] == "odd" and len(store.clusters()) == 3
    out = _act(c, kind="redo")
    assert [u["kind"] for u in out["result"]] == ["split"]
    assert len(store.clusters()) == 4 and out["can_redo"] is False
    assert _act(c, kind="redo")["result"] == []  # nothing left
    # a new action after an undo ends what could be redone
    _act(c, kind="undo")
    _act(c, kind="name_cluster", cluster=1, name="one")
    assert _act(c, kind="redo")["result"] == []
    page = c.get("/cluster/0").get_data(as_text=True)
    history = re.search(r'<section id="history".*?</section>', page, re.S).group(0)
    assert "Named cluster #1 &#34;one&#34;" in history or 'Named cluster #1 "one"' in (
        history.replace("&#34;", '"')
    )
    assert "Labelled 1 item" in history and "Split cluster #2 in two" in history
    assert "{" not in history  # no raw JSON
    assert history.count('<li class="undone') == 1  # the split, undone for good
    assert "can redo" not in history


def _second_results(ws_dir, k=2):
    from clusterlens.io import open_workspace
    from clusterlens.pipelines.cluster_images import run_cluster_images

    stage = ws_dir / "clusters" / f"pixels-k{k}"
    stage.mkdir(parents=True)
    run_cluster_images(
        open_workspace(ws_dir),
        stage,
        features="pixels",
        n_clusters=k,
        n_init=2,
        random_state=1,
        report=False,
    )
    return stage / "results.parquet"


def test_switch_results_keeps_labels_and_says_so(digits_ws):
    ws = digits_ws[0]
    first, store = open_review(ws)
    src = first.results_path
    store.name_cluster(0, "zero")
    labelled = [i for i, lab in enumerate(store.labels()) if lab]
    store.close()
    other = _second_results(ws)
    # without --results the review goes on with its own results, even though
    # newer ones exist now
    data, store = open_review(ws)
    assert data.results_path.resolve() == src.resolve() and store.switched is None
    store.close()
    app = create_app(ws, results=other)
    store = app.config["STORE"]
    assert store.switched["n_kept"] == len(labelled) == 20
    assert store.switched["n_clusters"] == 2 and len(store.clusters()) == 2
    labels = store.labels()
    assert all(labels[i] == "zero" for i in labelled)
    assert sum(lab is not None for lab in labels) == 20
    c = app.test_client()
    page = c.get("/cluster/0").get_data(as_text=True)
    assert "clusters/pixels-k2/results.parquet" in page  # which results
    assert "kept 20 labels" in page
    # naming a new cluster does not overwrite the labels kept
    big = max(store.clusters(), key=lambda c_: c_["size"])["id"]
    _act(c, kind="name_cluster", cluster=big, name="new")
    assert all(store.labels()[i] == "zero" for i in labelled)
    # the switch cannot be undone, nor what came before it
    _act(c, kind="undo", n=5)
    assert all(store.labels()[i] == "zero" for i in labelled)
    assert len(store.clusters()) == 2
    store.close()
    # reopening keeps reviewing the new results
    data, store = open_review(ws)
    assert data.results_path.resolve() == other.resolve() and store.switched is None
    store.close()


def test_review_of_vanished_results_says_what_to_do(digits_ws):
    ws = digits_ws[0]
    other = _second_results(ws)
    _, store = open_review(ws, results=other)
    store.close()
    other.unlink()
    with pytest.raises(DataValidationError, match=r"--results.*--reset"):
        open_review(ws)
    backup = reset_review(ws)
    assert backup is not None and backup.is_file()
    assert not (ws / "review.sqlite").exists()
    _, store = open_review(ws)  # a fresh review of the newest results
    assert store.n_actions() == 0
    store.close()


@pytest.fixture
def explored(tmp_path):
    ws = _explored(tmp_path)
    app = create_app(ws)
    return app.test_client(), app.config["STORE"]


def test_keep_one_marks_the_other_copies(explored):
    c, store = explored
    page = c.get("/view/duplicates").get_data(as_text=True)
    groups = re.findall(r'<section class="group[^"]*" data-group="(\d+)"', page)
    assert groups, "the planted copy makes a group"
    first = page.split('data-group="', 1)[1].split("</section>", 1)[0]
    members = [
        int(x) for x in re.findall(r'figure class="item[^"]*" data-idx="(\d+)"', first)
    ]
    assert len(members) >= 2 and {0, 59} <= set(members)
    _act(c, kind="keep_one", keep=59, items=members)
    assert store.marks() == {i: "duplicate" for i in members if i != 59}
    page = c.get("/view/duplicates").get_data(as_text=True)
    assert "settled" in page
    marked = c.get("/items?issue=marked").get_data(as_text=True)
    assert sorted(
        int(x) for x in re.findall(r'figure class="item[^"]*" data-idx="(\d+)"', marked)
    ) == sorted(i for i in members if i != 59)
    _act(c, kind="undo")
    assert store.marks() == {}
    _act(c, kind="redo")
    assert set(store.marks()) == set(members) - {59}


def _shown(c, url):
    r = c.get(url)
    assert r.status_code == 200, url
    return [
        int(x)
        for x in re.findall(
            r'figure class="item[^"]*" data-idx="(\d+)"', r.get_data(as_text=True)
        )
    ]


def test_all_items_filters_sorts_and_pages(explored, monkeypatch):
    c, store = explored
    assert _shown(c, "/items") == list(range(60))
    _act(c, kind="name_cluster", cluster=1, name="one")
    ones = set(np.flatnonzero(store.assignment() == 1).tolist())
    assert set(_shown(c, "/items?label=one")) == ones
    assert set(_shown(c, "/items?label=(none)")) == set(range(60)) - ones
    assert set(_shown(c, "/items?cluster=1")) == ones
    from clusterlens.io import read_results

    root = c.application.config["DATA"].workspace.root
    d = read_results(root / "duplicates" / "duplicates.parquet")
    copies = np.flatnonzero((d["group"] >= 0) & ~d["representative"]).tolist()
    assert copies and _shown(c, "/items?issue=duplicate") == copies
    z = _shown(c, "/items?score=outlier_z&sort=score-desc")
    o = read_results(root / "outliers" / "outliers.parquet")
    assert z == np.argsort(-o["outlier_z"], kind="stable").tolist()
    hi = float(np.sort(o["outlier_z"])[-5])
    assert set(_shown(c, f"/items?score=outlier_z&min={hi}")) == set(
        np.flatnonzero(o["outlier_z"] >= hi).tolist()
    )
    assert c.get("/items?issue=nonsense").status_code == 400
    assert c.get("/items?score=outlier_z&min=abc").status_code == 400
    # pages
    import clusterlens.app._server as srv

    monkeypatch.setattr(srv, "_PAGE", 25)
    app = create_app(c.application.config["DATA"].workspace.root)
    c2 = app.test_client()
    pages = [_shown(c2, f"/items?page={p}") for p in (1, 2, 3)]
    assert [len(p) for p in pages] == [25, 25, 10]
    assert [i for p in pages for i in p] == list(range(60))
    assert "page 2 of 3" in c2.get("/items?page=2").get_data(as_text=True)


def test_detail_of_an_item(explored):
    c, store = explored
    d = c.get("/api/item/3").json
    assert d["index"] == 3 and d["cluster"] == int(store.assignment()[3])
    assert d["label"] is None and d["large"].startswith("/thumb/3?size=")
    assert d["box"] is None and d["whole"] is None
    assert len(d["neighbors"]) >= 5 and all(n["index"] != 3 for n in d["neighbors"])
    assert "outlier z" in d["scores"]
    assert c.get("/thumb/3?size=300").mimetype == "image/jpeg"
    assert c.get("/thumb/3").mimetype == "image/png"
