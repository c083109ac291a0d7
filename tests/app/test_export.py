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
