"""Exports of reviewed labels: COCO, ImageFolder, Label Studio, CSV."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from clusterlens.exceptions import InvalidParameterError
from clusterlens.io import create_workspace, open_workspace
from clusterlens.io._export import export_labels


def _folder_ws(tmp_path):
    src = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (src / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(
                src / cls / f"{i}.png"
            )
    (tmp_path / "ws").mkdir()
    return create_workspace(src, tmp_path / "ws")


LABELS = ["a", "a", None, "b <&>", "b <&>", None]


def test_csv(tmp_path):
    ws = _folder_ws(tmp_path)
    out = export_labels(
        ws,
        LABELS,
        tmp_path / "o",
        fmt="csv",
        cluster=[0, 0, 1, 1, 2, -1],
        cluster_names={0: "a", 1: None, 2: "b <&>"},
    )
    assert out["n_labelled"] == 4
    rows = list(csv.DictReader(open(tmp_path / "o" / "labels.csv")))
    assert [r["label"] for r in rows] == [lab or "" for lab in LABELS]
    assert rows[1]["cluster_name"] == "a" and rows[5]["cluster"] == "-1"
    assert rows[0]["path"] == ws.items["path"][0]


def test_coco(tmp_path):
    ws = _folder_ws(tmp_path)
    export_labels(ws, LABELS, tmp_path / "o", fmt="coco")
    doc = json.loads((tmp_path / "o" / "annotations.json").read_text())
    assert {c["name"] for c in doc["categories"]} == {"a", "b <&>"}
    assert len(doc["images"]) == 6 and len(doc["annotations"]) == 4
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    imgs = {im["id"]: im for im in doc["images"]}
    for a in doc["annotations"]:
        im = imgs[a["image_id"]]
        assert a["bbox"] == [0.0, 0.0, im["width"], im["height"]] == [0, 0, 12, 10]
        i = a["id"] - 1
        assert cats[a["category_id"]] == LABELS[i]
        assert im["file_name"] == ws.items["path"][i]
    try:
        from pycocotools.coco import COCO
    except ImportError:
        return
    coco = COCO(str(tmp_path / "o" / "annotations.json"))
    assert len(coco.getAnnIds()) == 4


def test_imagefolder_links_and_copies(tmp_path):
    ws = _folder_ws(tmp_path)
    export_labels(ws, LABELS, tmp_path / "links", fmt="imagefolder")
    export_labels(ws, LABELS, tmp_path / "copies", fmt="imagefolder", files="copy")
    for root, link in ((tmp_path / "links", True), (tmp_path / "copies", False)):
        folders = sorted(p.name for p in root.iterdir())
        assert folders == ["a", "b _"]  # unsafe characters never make a path
        files = sorted(root.glob("*/*"))
        assert len(files) == 4
        assert all(f.is_symlink() == link for f in files)
        assert all(Image.open(f).size == (12, 10) for f in files)


def test_imagefolder_array_source_writes_pngs(digits_ws):
    ws = open_workspace(digits_ws[0])
    labels = ["x" if i % 2 else None for i in range(len(ws))]
    out = export_labels(ws, labels, digits_ws[0] / "o", fmt="imagefolder")
    files = sorted((digits_ws[0] / "o" / "x").iterdir())
    assert out["n_images"] == 30 == len(files)
    np.testing.assert_array_equal(np.asarray(Image.open(files[0])), ws.read_item(1))


def test_labelstudio_predictions_are_cluster_names(tmp_path):
    ws = _folder_ws(tmp_path)
    export_labels(
        ws,
        LABELS,
        tmp_path / "o",
        fmt="labelstudio",
        cluster=[0, 0, 1, 1, 1, -1],
        cluster_names={0: "a", 1: "b <&>"},
        final=tmp_path / "final",
    )
    tasks = json.loads((tmp_path / "o" / "tasks.json").read_text())
    assert len(tasks) == 6
    preds = [t.get("predictions", [{}])[0] for t in tasks]
    got = [p["result"][0]["value"]["choices"][0] if p else None for p in preds]
    assert got == ["a", "a", "b <&>", "b <&>", "b <&>", None]
    assert tasks[0]["data"]["image"].startswith("/data/local-files/?d=")
    assert tasks[0]["data"]["image"].endswith(ws.items["path"][0])
    xml = (tmp_path / "o" / "label_config.xml").read_text()
    assert '<Choice value="b &lt;&amp;&gt;"/>' in xml


def test_unknown_format(tmp_path):
    ws = _folder_ws(tmp_path)
    with pytest.raises(InvalidParameterError, match="Did you mean 'coco'"):
        export_labels(ws, LABELS, tmp_path / "o", fmt="cocoo")


# --------------------------------------------------------------------------- #
# What a review leaves out of every export: keep-one duplicates, rejected items
# --------------------------------------------------------------------------- #
def _reviewed(ws_dir):
    from clusterlens.app import open_review

    data, store = open_review(ws_dir)
    for c in (0, 1, 2):
        store.name_cluster(c, f"c{c}")
    a, b, d = (int(i) for i in store.cluster_items(0)[:3])
    store.keep_one(a, [a, b, d])  # b and d are marked duplicate
    x = int(store.cluster_items(1)[0])
    store.reject([x], to="pool")  # rejected with nowhere to go
    y = int(store.cluster_items(2)[0])
    store.reject([y], to="nearest")  # moved to another cluster: still exported
    return data, store, {"kept": a, "dup": {b, d}, "rejected": x, "moved": y}


def test_excluded_follows_keep_one_reject_and_undo(digits_ws):
    """#19: the items the review marked duplicate or rejected into the pool."""
    _, store, it = _reviewed(digits_ws[0])
    want = dict.fromkeys(it["dup"], "duplicate") | {it["rejected"]: "rejected"}
    assert store.excluded() == want
    store.undo(2)  # both rejects: the pool item is back in its cluster
    assert store.excluded() == dict.fromkeys(it["dup"], "duplicate")
    store.redo(1)
    assert store.excluded() == want
    store.label_items([it["rejected"]], "c1")  # labelled again: exported again
    assert store.excluded() == dict.fromkeys(it["dup"], "duplicate")
    store.close()


@pytest.mark.parametrize("fmt", ["csv", "coco", "imagefolder", "labelstudio"])
def test_every_format_skips_duplicates_and_rejected(digits_ws, fmt):
    from clusterlens.app._export import export_review

    data, store, it = _reviewed(digits_ws[0])
    out = digits_ws[0] / "o"
    s = export_review(data, store, out, fmt=fmt)
    assert s["skipped"] == {"duplicate": 2, "rejected": 1} and s["n_skipped"] == 3
    gone = it["dup"] | {it["rejected"]}
    ws = data.workspace
    if fmt == "csv":
        rows = list(csv.DictReader(open(out / "labels.csv")))
        idx = {int(r["index"]) for r in rows}
        assert len(rows) == 57 and not idx & gone and it["moved"] in idx
    elif fmt == "coco":
        doc = json.loads((out / "annotations.json").read_text())
        files = {im["file_name"] for im in doc["images"]}
        # the item rejected into a named cluster has no label until re-named
        assert len(doc["annotations"]) == 56 and len(doc["images"]) == 57
        assert not files & {f"images/{i:07d}.png" for i in gone}
    elif fmt == "imagefolder":
        idx = {int(p.name[:7]) for p in out.glob("*/*.png")}
        assert len(idx) == 56 and not idx & gone and it["moved"] not in idx
    else:
        tasks = json.loads((out / "tasks.json").read_text())
        idx = {t["data"]["index"] for t in tasks}
        assert len(tasks) == 57 and not idx & gone
        scores = [p["score"] for t in tasks for p in t.get("predictions", [])]
        assert scores and all(0 < s <= 1 for s in scores)
        assert max(scores) == 1.0  # the item closest to its cluster's centre
        unlabelled = [t["data"]["index"] for t in tasks if "annotations" not in t]
        assert unlabelled == [it["moved"]]  # its new cluster's name: a prediction
        assert s["n_annotated"] == 56 and s["n_predicted"] == 57
    assert len(ws) == 60
    store.close()
