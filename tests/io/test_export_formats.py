"""Every export format, loaded back: COCO (pycocotools), YOLO, ImageFolder, Label
Studio; the items left out (duplicates, rejected) and the safe folder names."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io import create_workspace, read_yolo_boxes
from clusterlens.io._export import export_labels, safe_folder_name

COCO_JSON = "coco-sample/instances_coco128_train2017.json"


@pytest.fixture(scope="module")
def box_ws(tmp_path_factory):
    """The coco128 sample ingested with --boxes (one item per box)."""
    from tests.conftest import SHARED_DATA

    src = SHARED_DATA / COCO_JSON
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    out = tmp_path_factory.mktemp("boxes") / "ws"
    out.mkdir()
    ws = create_workspace(src, out, boxes=True, images=src.parent / "images")
    coco = json.loads(src.read_text())
    return ws, coco


def _folder_ws(tmp_path, n=3):
    src = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (src / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(
                src / cls / f"{i}.png"
            )
    (tmp_path / "ws").mkdir()
    return create_workspace(src, tmp_path / "ws")


def _ann_id(item_id: str) -> int:
    return int(item_id.rsplit("#box", 1)[1])


def _review(ws, coco):
    """A review of the boxes: the source category as the reviewed label, except
    item 0 (duplicate), item 1 (rejected) and the boxes of one image (unlabelled)."""
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    anns = {a["id"]: a for a in coco["annotations"]}
    ids = [_ann_id(s) for s in ws.items["item_id"]]
    labels = [cats[anns[a]["category_id"]] for a in ids]
    paths = ws.items["path"].astype(str)
    # an image with several boxes, none of them item 0 or 1
    counts = {p: int((paths == p).sum()) for p in set(paths.tolist())}
    open_img = next(
        p for p in sorted(counts) if counts[p] >= 3 and p not in paths[:2].tolist()
    )
    for i in np.flatnonzero(paths == open_img).tolist():
        labels[i] = None
    # the last box of another image: that image is partly reviewed
    partial = next(
        p for p in sorted(counts) if counts[p] >= 2 and p not in (open_img, *paths[:2])
    )
    labels[int(np.flatnonzero(paths == partial)[-1])] = None
    return labels, {0: "duplicate", 1: "rejected"}, anns, open_img, partial


def test_coco_boxes_round_trip_with_pycocotools(box_ws, tmp_path):
    """#19: box items stay boxes of their source images, loaded back by pycocotools."""
    COCO = pytest.importorskip("pycocotools.coco").COCO
    ws, coco = box_ws
    labels, skip, anns, _, _ = _review(ws, coco)
    out = export_labels(ws, labels, tmp_path / "o", fmt="coco", skip=skip)
    assert out["skipped"] == {"duplicate": 1, "rejected": 1} and out["n_skipped"] == 2
    api = COCO(str(tmp_path / "o" / "annotations.json"))
    # one image entry per source image (not one per box)
    kept = np.ones(len(ws), bool)
    kept[[0, 1]] = False
    src_images = set(ws.items["path"][kept].astype(str).tolist())
    imgs = api.loadImgs(api.getImgIds())
    assert len(imgs) == len(src_images) == len({im["file_name"] for im in imgs})
    assert {im["file_name"] for im in imgs} == src_images
    by_file = {im["file_name"]: im for im in coco["images"]}
    for im in imgs:
        assert (im["width"], im["height"]) == (
            by_file[im["file_name"]]["width"],
            by_file[im["file_name"]]["height"],
        )
    got = api.loadAnns(api.getAnnIds())
    assert len(got) == sum(lab is not None for lab in labels) - 2
    cat_name = {c["id"]: c["name"] for c in api.loadCats(api.getCatIds())}
    n_exact = 0
    for a in got:
        src = anns[_ann_id(a["item_id"])]
        assert cat_name[a["category_id"]] == labels[a["id"] - 1]
        assert api.loadImgs(a["image_id"])[0]["file_name"] == next(
            im["file_name"] for im in coco["images"] if im["id"] == src["image_id"]
        )
        # the box as in the source (ingest clips the few boxes past the border)
        np.testing.assert_allclose(a["bbox"], src["bbox"], atol=1.0)
        n_exact += np.allclose(a["bbox"], src["bbox"], atol=1e-6)
    assert n_exact >= 0.95 * len(got), f"only {n_exact}/{len(got)} boxes as in source"
    # the skipped boxes are nowhere
    assert not {a["item_id"] for a in got} & set(ws.items["item_id"][:2].tolist())


def test_coco_whole_images_skip_duplicates(tmp_path):
    ws = _folder_ws(tmp_path)
    labels = ["a", "a", None, "b", "b", None]
    out = export_labels(
        ws, labels, tmp_path / "o", fmt="coco", skip={1: "duplicate", 5: "rejected"}
    )
    doc = json.loads((tmp_path / "o" / "annotations.json").read_text())
    names = {im["file_name"] for im in doc["images"]}
    assert len(doc["images"]) == 4 and ws.items["path"][1] not in names
    assert len(doc["annotations"]) == 3 and out["n_labelled"] == 3


def _read_yolo_lines(path):
    arr = np.loadtxt(path, ndmin=2)
    return arr[:, 0].astype(int), arr[:, 1:]


def test_yolo_round_trip(box_ws, tmp_path):
    """#19: YOLO labels, one .txt per image, class cx cy w h normalised."""
    ws, coco = box_ws
    labels, skip, anns, open_img, partial = _review(ws, coco)
    out = export_labels(ws, labels, tmp_path / "y", fmt="yolo", skip=skip)
    root = tmp_path / "y"
    classes = (root / "labels" / "classes.txt").read_text().splitlines()
    assert classes == sorted(set(classes))
    # the images with a box not labelled yet are left out, and counted
    assert out["n_images_incomplete"] == 2
    stems = {p.stem for p in (root / "labels").glob("*.txt")} - {"classes"}
    assert os.path.splitext(open_img)[0] not in stems
    assert os.path.splitext(partial)[0] not in stems
    assert out["n_images"] == len(stems)
    # every image is there, a link to the original
    for s in stems:
        (img,) = (root / "images").glob(s + ".*")
        assert img.is_symlink()
        assert img.resolve() == (ws.image_root / img.name).resolve()
    # read back by the YOLO reader of clusterlens (sizes from the image files)
    table = read_yolo_boxes(root / "labels")
    assert table.category_names == tuple(classes)
    assert len(table.w) == out["n_boxes"]
    # positions and classes against the source annotations
    paths = ws.items["path"].astype(str)
    for s in sorted(stems)[:20]:
        cls, xywhn = _read_yolo_lines(root / "labels" / f"{s}.txt")
        rows = [
            i
            for i in np.flatnonzero(np.char.startswith(paths, s + ".")).tolist()
            if i not in skip
        ]
        assert [classes[c] for c in cls] == [labels[i] for i in rows]
        W, H = int(ws.items["width"][rows[0]]), int(ws.items["height"][rows[0]])
        with Image.open(ws.image_root / paths[rows[0]]) as im:
            assert im.size == (W, H)
        for j, i in enumerate(rows):
            x, y, w, h = anns[_ann_id(ws.items["item_id"][i])]["bbox"]
            want = [(x + w / 2) / W, (y + h / 2) / H, w / W, h / H]
            np.testing.assert_allclose(xywhn[j], np.clip(want, 0, 1), atol=2e-3)
    yaml = (root / "data.yaml").read_text()
    assert "train: images" in yaml and f'0: "{classes[0]}"' in yaml
    assert f"path: {json.dumps(str(root.resolve()))}" in yaml  # absolute
    yaml_mod = pytest.importorskip("yaml")
    doc = yaml_mod.safe_load(yaml)  # what Ultralytics reads
    assert doc["names"] == dict(enumerate(classes))
    assert doc["path"] == str(root.resolve()) and doc["train"] == "images"


def test_yolo_needs_boxes(tmp_path):
    ws = _folder_ws(tmp_path)
    with pytest.raises(
        DataValidationError, match=r"YOLO labels are boxes.*imagefolder"
    ):
        export_labels(ws, ["a"] * 6, tmp_path / "o", fmt="yolo")


def test_imagefolder_copy_symlink_hardlink(tmp_path):
    ws = _folder_ws(tmp_path)
    labels = ["a", "a", None, "b", "b", None]
    skip = {0: "duplicate"}
    for mode in ("symlink", "hardlink", "copy"):
        out = export_labels(
            ws, labels, tmp_path / mode, fmt="imagefolder", files=mode, skip=skip
        )
        assert out["n_images"] == 3 and out["skipped"] == {"duplicate": 1}
        files = sorted((tmp_path / mode).glob("*/*"))
        assert [f.parent.name for f in files] == ["a", "b", "b"]
        for f in files:
            orig = ws.image_root / ws.items["path"][int(f.name[:7])]
            assert f.is_symlink() == (mode == "symlink")
            same = os.stat(f).st_ino == os.stat(orig).st_ino
            assert same == (mode != "copy")  # a symlink resolves to the original
            assert f.read_bytes() == orig.read_bytes()


def test_imagefolder_folder_names_are_safe(tmp_path):
    ws = _folder_ws(tmp_path)
    labels = ["../up", "a/b", "CON", ".hidden", "é" * 150, None]
    export_labels(ws, labels, tmp_path / "o", fmt="imagefolder")
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == sorted(
        ["_up", "a_b", "CON_", "hidden", safe_folder_name("é" * 150)]
    )
    assert all(len(n.encode()) <= 200 for n in names)
    assert all(
        (tmp_path / "o" / n).resolve().parent == (tmp_path / "o").resolve()
        for n in names
    )
    with pytest.raises(DataValidationError, match="same folder name"):
        export_labels(
            ws,
            ["Cat", "cat", None, None, None, None],
            tmp_path / "o2",
            fmt="imagefolder",
        )


def test_unknown_file_mode(tmp_path):
    ws = _folder_ws(tmp_path)
    with pytest.raises(InvalidParameterError, match="'files' parameter"):
        export_labels(ws, [None] * 6, tmp_path / "o", fmt="imagefolder", files="move")


# --------------------------------------------------------------------------- #
# Label Studio: checked against its labelling config, as Label Studio would
# --------------------------------------------------------------------------- #
def _check_label_studio(folder):
    """Load tasks.json and label_config.xml back and check the import rules:
    each result names the config's control and object, its values are the
    config's labels, and result ids are unique within a task."""
    tasks = json.loads((folder / "tasks.json").read_text())
    cfg = ET.fromstring((folder / "label_config.xml").read_text())
    (ctrl,) = [e for e in cfg if e.tag in ("Choices", "RectangleLabels")]
    (obj,) = [e for e in cfg if e.tag == "Image"]
    allowed = {e.get("value") for e in ctrl}
    kind = "choices" if ctrl.tag == "Choices" else "rectanglelabels"
    for t in tasks:
        assert t["data"]["image"].startswith("/data/local-files/?d=")
        assert os.path.isfile("/" + t["data"]["image"].split("?d=", 1)[1])
        groups = [a["result"] for a in t.get("annotations", [])]
        groups += [p["result"] for p in t.get("predictions", [])]
        ids = [r["id"] for g in groups for r in g]
        assert len(ids) == len(set(ids))
        for g in groups:
            for r in g:
                assert r["from_name"] == ctrl.get("name") and r["type"] == kind
                assert r["to_name"] == obj.get("name") == ctrl.get("toName")
                assert set(r["value"][kind]) <= allowed
        for p in t.get("predictions", []):
            assert isinstance(p["model_version"], str) and p["model_version"]
            assert "score" not in p or 0.0 <= p["score"] <= 1.0
    return tasks


def test_labelstudio_annotations_and_scored_predictions(tmp_path):
    """#19: reviewed labels as annotations, suggestions as predictions with
    model_version and score."""
    ws = _folder_ws(tmp_path)
    labels = ["a", None, None, "b", "b", None]
    out = export_labels(
        ws,
        labels,
        tmp_path / "o",
        fmt="labelstudio",
        cluster=[0, 0, 1, 1, 1, -1],
        cluster_names={0: "a", 1: "b"},
        scores=[1.0, 0.5, 1.0, 0.6, 0.2, np.nan],
        suggestions={2: ("c", 0.9)},
        skip={4: "duplicate"},
    )
    tasks = _check_label_studio(tmp_path / "o")
    assert out["n_tasks"] == len(tasks) == 5 and out["skipped"] == {"duplicate": 1}
    by_index = {t["data"]["index"]: t for t in tasks}
    assert 4 not in by_index
    ann = {
        i: t["annotations"][0]["result"][0]["value"]["choices"]
        for i, t in by_index.items()
        if "annotations" in t
    }
    assert ann == {0: ["a"], 3: ["b"]}
    p1 = by_index[1]["predictions"]
    assert [(p["model_version"], p["score"]) for p in p1] == [
        ("clusterlens-clusters", 0.5)
    ]
    assert p1[0]["result"][0]["value"]["choices"] == ["a"]
    p2 = {p["model_version"]: p for p in by_index[2]["predictions"]}
    assert p2["clusterlens-label-issues"]["score"] == 0.9
    assert p2["clusterlens-label-issues"]["result"][0]["value"]["choices"] == ["c"]
    assert "predictions" not in by_index[5]  # no cluster, no suggestion
    xml = (tmp_path / "o" / "label_config.xml").read_text()
    assert all(f'<Choice value="{c}"/>' in xml for c in "abc")


def test_labelstudio_boxes_are_rectangles_on_their_image(box_ws, tmp_path):
    ws, coco = box_ws
    labels, skip, anns, open_img, _ = _review(ws, coco)
    n = len(ws)
    cluster = np.arange(n) % 3
    export_labels(
        ws,
        labels,
        tmp_path / "o",
        fmt="labelstudio",
        cluster=cluster,
        cluster_names={0: "person", 1: "car", 2: None},
        scores=np.linspace(0, 1, n),
        skip=skip,
    )
    tasks = _check_label_studio(tmp_path / "o")
    assert len(tasks) == len(set(ws.items["path"][2:].astype(str).tolist()))
    by_item = {}
    for t in tasks:
        for a in t.get("annotations", []):
            for r in a["result"]:
                by_item[r["id"]] = r
    assert len(by_item) == sum(lab is not None for lab in labels) - 2
    for rid, r in list(by_item.items())[:50]:
        i = int(rid.split("-")[0])
        x, y, w, h = anns[_ann_id(ws.items["item_id"][i])]["bbox"]
        v, W, H = r["value"], r["original_width"], r["original_height"]
        back = [
            v["x"] * W / 100,
            v["y"] * H / 100,
            v["width"] * W / 100,
            v["height"] * H / 100,
        ]
        np.testing.assert_allclose(back, [x, y, w, h], atol=1.0)
        assert v["rectanglelabels"] == [labels[i]]
    # the boxes of the image nobody reviewed come as predictions only
    (t,) = [t for t in tasks if t["data"]["image"].endswith("/" + open_img)]
    assert "annotations" not in t
    (pred,) = t["predictions"]
    assert pred["model_version"] == "clusterlens-clusters"
    assert all(0 <= r["score"] <= 1 for r in pred["result"])
    assert pred["score"] == pytest.approx(np.mean([r["score"] for r in pred["result"]]))


def test_csv_skips_duplicates_and_rejected(tmp_path):
    import csv

    ws = _folder_ws(tmp_path)
    out = export_labels(
        ws, ["a"] * 6, tmp_path / "o", fmt="csv", skip={2: "rejected", 3: "rejected"}
    )
    rows = list(csv.DictReader(open(tmp_path / "o" / "labels.csv")))
    assert [int(r["index"]) for r in rows] == [0, 1, 4, 5]
    assert out["skipped"] == {"rejected": 2} and out["n_labelled"] == 4


def test_skip_names_a_missing_item(tmp_path):
    ws = _folder_ws(tmp_path)
    with pytest.raises(DataValidationError, match="skip names item 9"):
        export_labels(ws, [None] * 6, tmp_path / "o", fmt="csv", skip={9: "rejected"})


def test_hardlink_across_file_systems_says_what_to_do(tmp_path, monkeypatch):
    import errno

    ws = _folder_ws(tmp_path)

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    with pytest.raises(DataValidationError, match="Use --link symlink or --copy"):
        export_labels(
            ws, ["a"] * 6, tmp_path / "o", fmt="imagefolder", files="hardlink"
        )


def test_imagefolder_box_crops_equal_read_item(box_ws, tmp_path):
    """Box crops are cut from one decode per image; the pixels are the item's."""
    ws, coco = box_ws
    labels, skip, _, _, _ = _review(ws, coco)
    out = export_labels(ws, labels, tmp_path / "o", fmt="imagefolder", skip=skip)
    files = sorted((tmp_path / "o").glob("*/*.png"))
    assert out["n_images"] == len(files) == sum(lab is not None for lab in labels) - 2
    for f in files[:: max(1, len(files) // 25)]:
        i = int(f.name[:7])
        assert f.parent.name == safe_folder_name(labels[i])
        np.testing.assert_array_equal(np.asarray(Image.open(f)), ws.read_item(i))
