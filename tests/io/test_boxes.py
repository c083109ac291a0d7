"""Tests for the annotated-box readers (COCO, YOLO, Pascal VOC) in clusterlens.io."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io import (
    BoxTable,
    read_boxes,
    read_coco_boxes,
    read_voc_boxes,
    read_yolo_boxes,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
VOC_DIR = DATA / "voc2007"
COCO128 = DATA / "coco-sample" / "instances_coco128_train2017.json"


# --------------------------------------------------------------------------- #
# Fixture writers
# --------------------------------------------------------------------------- #
def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _coco_a() -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "one.jpg", "width": 640, "height": 480},
            {"id": 2, "file_name": "two.jpg", "width": 100, "height": 200},
            {"id": 3, "file_name": "three.jpg", "width": 50, "height": 50},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 48]},
            {
                "id": 11,
                "image_id": 1,
                "category_id": 2,
                "bbox": [10, 10, 32, 96],
                "iscrowd": 0,
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 2,
                "bbox": [0, 0, 50, 20],
                "iscrowd": 1,
            },
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [5, 5, 2.5, 10]},
        ],
    }


def _coco_b() -> dict:
    # Same image id 1 as in a.json, and "dog" under another category id.
    return {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 300, "height": 300}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 8, "name": "bird"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 8, "bbox": [0, 0, 30, 60]},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [0, 0, 150, 300]},
        ],
    }


@pytest.fixture
def coco_files(tmp_path: Path) -> tuple[Path, Path]:
    return (
        _write_json(tmp_path / "a.json", _coco_a()),
        _write_json(tmp_path / "b.json", _coco_b()),
    )


def _make_image(path: Path, size: tuple[int, int], exif_orientation: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (120, 30, 200))
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(path, exif=exif)
    else:
        img.save(path)


@pytest.fixture
def yolo_root(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    labels = root / "labels"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.1 0.2\n1 0.3 0.3 0.5 0.25\n")
    (labels / "b.txt").write_text("1 0.5 0.5 0.3 0.1\n\n")
    (labels / "c.txt").write_text("")
    _make_image(root / "images" / "a.jpg", (640, 480))
    _make_image(root / "images" / "b.png", (100, 200))
    _make_image(root / "images" / "c.jpg", (10, 10))
    return root


_VOC_OBJECT = """  <object>
    <name>{name}</name>
    <difficult>{difficult}</difficult>
    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>
  </object>
"""


def _voc_xml(width: object, height: object, objects: list[tuple]) -> str:
    body = "".join(
        _VOC_OBJECT.format(name=n, difficult=d, x0=a, y0=b, x1=c, y1=e)
        for n, d, a, b, c, e in objects
    )
    return (
        "<annotation>\n  <folder>VOC2007</folder>\n"
        f"  <size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>\n{body}</annotation>\n"
    )


@pytest.fixture
def voc_dir(tmp_path: Path) -> Path:
    d = tmp_path / "Annotations"
    d.mkdir()
    (d / "000001.xml").write_text(
        _voc_xml(
            500,
            375,
            [("dog", 0, 48, 240, 195, 371), ("person", 1, 8, 12, 352, 374)],
        )
    )
    (d / "000002.xml").write_text(_voc_xml(353, 500, [("cat", 0, 1, 1, 100, 50)]))
    return d


# --------------------------------------------------------------------------- #
# BoxTable
# --------------------------------------------------------------------------- #
def _table() -> BoxTable:
    return BoxTable(
        w=np.array([64.0, 32.0, 2.5]),
        h=np.array([48.0, 96.0, 10.0]),
        img_w=np.array([640.0, 640.0, 100.0]),
        img_h=np.array([480.0, 480.0, 200.0]),
        category=np.array([0, 1, 0]),
        category_names=("cat", "dog"),
        image_id=np.array(["1", "1", "2"]),
        source="hand",
    )


def test_boxtable_normalized_and_letterboxed_wh_by_hand():
    t = _table()
    assert len(t) == 3
    assert_allclose(t.normalized_wh(), [[0.1, 0.1], [0.05, 0.2], [0.025, 0.05]])
    # 640x480 -> scale 320/640 = 0.5; 100x200 -> long side 200 -> scale 1.6.
    assert_allclose(t.letterboxed_wh(320), [[32, 24], [16, 48], [4, 16]])
    assert t.letterboxed_wh(320).dtype == np.float64


def test_boxtable_select_mask_and_indices():
    t = _table()
    s = t.select(t.category == 0)
    assert len(s) == 2
    assert_array_equal(s.w, [64.0, 2.5])
    assert_array_equal(s.image_id, ["1", "2"])
    assert s.category_names == ("cat", "dog")
    assert s.source == "hand"
    i = t.select([2, 0])
    assert_array_equal(i.h, [10.0, 48.0])
    assert len(t.select(np.zeros(3, dtype=bool))) == 0
    assert len(t.select([])) == 0


def test_boxtable_select_errors():
    t = _table()
    with pytest.raises(DataValidationError, match=r"shape \(3,\), one entry per box"):
        t.select(np.array([True, False]))
    with pytest.raises(DataValidationError, match="boolean mask or integer indices"):
        t.select(np.array([0.5, 1.0]))


def test_boxtable_repr_is_short():
    assert repr(_table()) == (
        "BoxTable(n_boxes=3, n_images=2, n_categories=2, source='hand')"
    )


def test_boxtable_validates_columns():
    kw = {
        "img_w": [10.0, 10.0],
        "img_h": [10.0, 10.0],
        "category": [0, 0],
        "category_names": ("a",),
        "image_id": ["x", "y"],
    }
    with pytest.raises(
        DataValidationError,
        match=re.escape(
            "boxes must have positive width and height; 1 rows have w <= 0 or not "
            "finite (first at index 1)"
        ),
    ):
        BoxTable(w=[1.0, 0.0], h=[1.0, 1.0], **kw)
    with pytest.raises(DataValidationError, match="1-D with one row per box"):
        BoxTable(w=[1.0], h=[1.0, 1.0], **kw)
    with pytest.raises(DataValidationError, match="out of range"):
        BoxTable(w=[1.0, 1.0], h=[1.0, 1.0], **{**kw, "category": [0, 1]})
    with pytest.raises(DataValidationError, match="integer indices"):
        BoxTable(w=[1.0, 1.0], h=[1.0, 1.0], **{**kw, "category": [0.0, 0.0]})


def test_letterboxed_wh_rejects_bad_img_size():
    with pytest.raises(InvalidParameterError, match="'img_size' parameter"):
        _table().letterboxed_wh(0)


# --------------------------------------------------------------------------- #
# COCO
# --------------------------------------------------------------------------- #
def test_coco_single_file_by_hand(coco_files):
    t = read_coco_boxes(coco_files[0])
    # Crowd annotation 12 is excluded by default; image 3 has no boxes.
    assert_array_equal(t.w, [64.0, 32.0, 2.5])
    assert_array_equal(t.h, [48.0, 96.0, 10.0])
    assert_array_equal(t.img_w, [640.0, 640.0, 100.0])
    assert_array_equal(t.img_h, [480.0, 480.0, 200.0])
    assert_array_equal(t.category, [0, 1, 0])
    assert t.category_names == ("cat", "dog")
    assert_array_equal(t.image_id, ["1", "1", "2"])
    assert t.category.dtype == np.int64
    assert t.source == "COCO JSON a.json"


def test_coco_include_crowd(coco_files):
    t = read_coco_boxes(coco_files[0], include_crowd=True)
    assert len(t) == 4
    assert_array_equal(t.w, [64.0, 32.0, 50.0, 2.5])


def test_coco_two_files_merged_by_category_name(coco_files):
    t = read_coco_boxes(list(coco_files))
    assert t.category_names == ("cat", "dog", "bird")
    assert_array_equal(t.w, [64.0, 32.0, 2.5, 30.0, 150.0])
    assert_array_equal(t.h, [48.0, 96.0, 10.0, 60.0, 300.0])
    # "dog" is id 2 in a.json and id 7 in b.json: both map to index 1.
    assert_array_equal(t.category, [0, 1, 0, 2, 1])
    # Image id 1 is in both files: the prefixes keep them apart.
    assert_array_equal(t.image_id, ["a:1", "a:1", "a:2", "b:1", "b:1"])
    assert np.unique(t.image_id).size == 3
    assert t.source == "COCO JSON a.json + b.json"
    assert_allclose(
        t.normalized_wh(),
        [[0.1, 0.1], [0.05, 0.2], [0.025, 0.05], [0.1, 0.2], [0.5, 1.0]],
    )
    assert_allclose(
        t.letterboxed_wh(320),
        [[32, 24], [16, 48], [4, 16], [32, 64], [160, 320]],
    )


def test_coco_categories_filter_keeps_requested_order(coco_files):
    t = read_coco_boxes(list(coco_files), categories=["dog"])
    assert t.category_names == ("dog",)
    assert_array_equal(t.w, [32.0, 150.0])
    assert_array_equal(t.category, [0, 0])
    t = read_coco_boxes(list(coco_files), categories=["bird", "cat"])
    assert t.category_names == ("bird", "cat")
    assert_array_equal(t.w, [64.0, 2.5, 30.0])
    assert_array_equal(t.category, [1, 1, 0])
    assert (
        len(read_coco_boxes(coco_files[0], categories=["dog"], include_crowd=True)) == 2
    )


def test_coco_min_size(coco_files):
    t = read_coco_boxes(list(coco_files), min_size=5)
    assert_array_equal(t.w, [64.0, 32.0, 30.0, 150.0])
    assert len(read_coco_boxes(list(coco_files), min_size=2.5)) == 5


def test_coco_min_size_must_be_non_negative(coco_files):
    with pytest.raises(InvalidParameterError, match="'min_size' parameter"):
        read_coco_boxes(coco_files[0], min_size=-1)


def test_coco_unknown_category_suggests_close_match(coco_files):
    with pytest.raises(
        DataValidationError,
        match=r"Unknown category 'dgo'.*did you mean 'dog'\?.*Available: cat, dog",
    ):
        read_coco_boxes(coco_files[0], categories=["dgo"])


def test_coco_empty_selection_says_what_filters_removed(coco_files):
    with pytest.raises(
        DataValidationError,
        match=r"No boxes left .*4 boxes read, removed 1 by include_crowd=False, "
        r"1 by categories=\['cat'\], 2 by min_size=100\.0",
    ):
        read_coco_boxes(coco_files[0], categories=["cat"], min_size=100)


def test_coco_file_without_annotations(tmp_path):
    data = _coco_a()
    data["annotations"] = []
    path = _write_json(tmp_path / "image_info.json", data)
    with pytest.raises(
        DataValidationError, match=r"holds no boxes\. It lists 3 images"
    ):
        read_coco_boxes(path)


def test_coco_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match=r"nope\.json' does not exist"):
        read_coco_boxes(tmp_path / "nope.json")


def test_coco_not_json(tmp_path):
    path = tmp_path / "trunc.json"
    path.write_text('{"images": [')
    with pytest.raises(DataValidationError, match=r"trunc\.json' is not valid JSON"):
        read_coco_boxes(path)


def test_coco_binary_file(tmp_path):
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(DataValidationError, match=r"bin\.json' is not UTF-8"):
        read_coco_boxes(path)


def test_coco_results_file(tmp_path):
    path = _write_json(tmp_path / "dets.json", [{"image_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(DataValidationError, match="looks like a COCO results"):
        read_coco_boxes(path)


def test_coco_not_coco(tmp_path):
    path = _write_json(tmp_path / "other.json", {"images": [], "foo": 1})
    with pytest.raises(
        DataValidationError,
        match=r"other\.json' is not a COCO instances file: it has no 'annotations' "
        r"or 'categories' key \(found keys: 'images', 'foo'\)",
    ):
        read_coco_boxes(path)


def test_coco_annotation_with_missing_image(tmp_path):
    data = _coco_a()
    data["annotations"][2]["image_id"] = 99
    path = _write_json(tmp_path / "a.json", data)
    with pytest.raises(
        DataValidationError,
        match=r"a\.json'.*1 annotations refer to an image that is not in its "
        r"'images' list \(first: annotation id 12 has image_id 99\)",
    ):
        read_coco_boxes(path)


def test_coco_image_without_size(tmp_path):
    data = _coco_a()
    del data["images"][1]["width"]
    path = _write_json(tmp_path / "a.json", data)
    with pytest.raises(
        DataValidationError,
        match=r"a\.json'.*image id 2 \(file_name 'two\.jpg'\) has no valid size "
        r"\(width=None, height=200\)",
    ):
        read_coco_boxes(path)


def test_coco_image_size_ignored_when_not_annotated(tmp_path):
    data = _coco_a()
    del data["images"][2]["width"]  # image 3 has no annotations
    assert len(read_coco_boxes(_write_json(tmp_path / "a.json", data))) == 3


def test_coco_non_positive_bbox_counts_and_names_first(tmp_path):
    data = _coco_a()
    data["annotations"][1]["bbox"] = [0, 0, 0, 5]
    data["annotations"][2]["bbox"] = [0, 0, -3, 5]
    data["annotations"][3]["bbox"] = [0, 0, 4, 0]
    path = _write_json(tmp_path / "a.json", data)
    with pytest.raises(
        DataValidationError,
        match=r"a\.json': boxes must have positive width and height; 2 have w <= 0, "
        r"1 have h <= 0 \(first: annotation id 11, bbox=\[0, 0, 0, 5\]\)",
    ):
        read_coco_boxes(path)


def test_coco_missing_bbox(tmp_path):
    data = _coco_a()
    del data["annotations"][3]["bbox"]
    data["annotations"][0]["bbox"] = [1, 2, 3]
    path = _write_json(tmp_path / "a.json", data)
    with pytest.raises(
        DataValidationError,
        match=r"2 have no valid bbox \(first: annotation id 10, bbox=\[1, 2, 3\]\)",
    ):
        read_coco_boxes(path)


def test_coco_unknown_category_id(tmp_path):
    data = _coco_a()
    data["annotations"][0]["category_id"] = 5
    path = _write_json(tmp_path / "a.json", data)
    with pytest.raises(
        DataValidationError,
        match=r"annotation id 10 has category_id 5; known ids: 1, 2",
    ):
        read_coco_boxes(path)


def test_coco_string_ids(tmp_path):
    data = _coco_a()
    for im in data["images"]:
        im["id"] = f"img{im['id']}"
    for a in data["annotations"]:
        a["image_id"] = f"img{a['image_id']}"
    data["categories"][1]["id"] = "d"
    data["annotations"][1]["category_id"] = "d"
    data["annotations"][2]["category_id"] = "d"
    t = read_coco_boxes(_write_json(tmp_path / "s.json", data))
    assert_array_equal(t.image_id, ["img1", "img1", "img2"])
    assert_array_equal(t.category, [0, 1, 0])


@pytest.mark.parametrize("key", ["images", "categories"])
def test_coco_duplicate_ids(tmp_path, key):
    data = _coco_a()
    data[key].append(dict(data[key][0]))
    path = _write_json(tmp_path / "a.json", data)
    with pytest.raises(
        DataValidationError,
        match=rf"a\.json': id '1' appears more than once in its '{key}' list",
    ):
        read_coco_boxes(path)


def test_coco_no_categories_listed(tmp_path):
    data = _coco_a()
    data["categories"] = []
    path = _write_json(tmp_path / "a.json", data)
    with pytest.raises(DataValidationError, match=r"4 annotations have a category_id"):
        read_coco_boxes(path)


def test_coco_empty_path_list():
    with pytest.raises(DataValidationError, match="at least one COCO"):
        read_coco_boxes([])


# --------------------------------------------------------------------------- #
# YOLO
# --------------------------------------------------------------------------- #
def test_yolo_with_images_by_hand(yolo_root):
    t = read_yolo_boxes(yolo_root / "labels", class_names=["cat", "dog"])
    # a.jpg is 640x480, b.png is 100x200, c.txt is empty.
    assert_allclose(t.w, [64.0, 320.0, 30.0])
    assert_allclose(t.h, [96.0, 120.0, 20.0])
    assert_array_equal(t.img_w, [640.0, 640.0, 100.0])
    assert_array_equal(t.img_h, [480.0, 480.0, 200.0])
    assert_array_equal(t.category, [0, 1, 1])
    assert t.category_names == ("cat", "dog")
    assert_array_equal(t.image_id, ["a", "a", "b"])
    assert_allclose(t.normalized_wh(), [[0.1, 0.2], [0.5, 0.25], [0.3, 0.1]])
    assert_allclose(t.letterboxed_wh(320), [[32, 48], [160, 60], [48, 32]])


def test_yolo_default_class_names_and_explicit_images_dir(yolo_root, tmp_path):
    moved = tmp_path / "pics"
    (yolo_root / "images").rename(moved)
    t = read_yolo_boxes(yolo_root / "labels", images_dir=moved)
    assert t.category_names == ("0", "1")
    assert_allclose(t.w, [64.0, 320.0, 30.0])


def test_yolo_with_img_size(yolo_root):
    t = read_yolo_boxes(yolo_root / "labels", img_size=640)
    assert_allclose(t.w, [64.0, 320.0, 192.0])
    assert_allclose(t.h, [128.0, 160.0, 64.0])
    assert_array_equal(t.img_w, [640.0] * 3)
    t = read_yolo_boxes(yolo_root / "labels", img_size=(320, 240))
    assert_allclose(t.w, [32.0, 160.0, 96.0])
    assert_allclose(t.h, [48.0, 60.0, 24.0])
    assert "img_size=320x240" in t.source


def test_yolo_filters(yolo_root):
    t = read_yolo_boxes(yolo_root / "labels", categories=["1"], min_size=25)
    assert t.category_names == ("1",)
    assert_allclose(t.w, [320.0])
    assert_allclose(t.h, [120.0])


def test_yolo_exif_rotated_image_swaps_size(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "r.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    _make_image(tmp_path / "images" / "r.jpg", (200, 100), exif_orientation=6)
    t = read_yolo_boxes(tmp_path / "labels")
    assert_array_equal(t.img_w, [100.0])
    assert_array_equal(t.img_h, [200.0])


def test_yolo_nested_split_folders_and_classes_txt(tmp_path):
    labels = tmp_path / "labels"
    (labels / "train").mkdir(parents=True)
    (labels / "val").mkdir()
    (labels / "classes.txt").write_text("person\ncar\n")
    (labels / "train" / "x.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (labels / "val" / "x.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    _make_image(tmp_path / "images" / "train" / "x.jpg", (40, 20))
    _make_image(tmp_path / "images" / "val" / "x.jpeg", (80, 80))
    t = read_yolo_boxes(labels)
    assert t.category_names == ("person", "car")
    assert_array_equal(t.image_id, ["train/x", "val/x"])
    assert_allclose(t.w, [20.0, 20.0])
    assert_allclose(t.h, [10.0, 20.0])
    # The Ultralytics layout: labels/train -> images/train.
    t = read_yolo_boxes(labels / "val")
    assert_array_equal(t.image_id, ["x"])
    assert_array_equal(t.img_w, [80.0])


def _bad_label(tmp_path: Path, third_line: str) -> Path:
    labels = tmp_path / "labels"
    labels.mkdir(exist_ok=True)
    good = "0 0.5 0.5 0.1 0.1\n"
    (labels / "bad.txt").write_text(good + good + third_line + "\n")
    return labels


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0 0.5 0.5 0.1", "expected 5 fields, found 4"),
        ("0 0.5 0.5 0.1 0.1 0.3", "expected 5 fields, found 6"),
        ("0 0.5 0.5 abc 0.1", "a value is not a number"),
        ("1.5 0.5 0.5 0.1 0.1", "class '1.5' is not an integer"),
        ("-1 0.5 0.5 0.1 0.1", "the class is negative"),
        ("0 0.5 1.5 0.1 0.1", r"a value is outside \[0, 1\]"),
        ("0 0.5 0.5 0 0.1", "width or height is <= 0"),
        ("0 0.5 nan 0.1 0.1", "a value is not finite"),
        (
            "0 0.1 0.1 0.2 0.1 0.2 0.2",
            r"expected 5 fields, found 7 \(this looks like a segmentation polygon",
        ),
    ],
)
def test_yolo_malformed_line_names_file_and_line(tmp_path, line, reason):
    labels = _bad_label(tmp_path, line)
    with pytest.raises(DataValidationError, match=rf"bad\.txt', line 3: {reason}"):
        read_yolo_boxes(labels, img_size=640)


def test_yolo_class_without_name(tmp_path):
    labels = _bad_label(tmp_path, "2 0.5 0.5 0.1 0.1")
    with pytest.raises(
        DataValidationError, match=r"bad\.txt', line 3: the class has no name \(2 class"
    ):
        read_yolo_boxes(labels, img_size=640, class_names=["a", "b"])


def test_yolo_counts_bad_lines(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "v.txt").write_text(
        "0 0.5 0.5 0.1 0.1\n0 2 0.5 0.1 0.1\n0 0.5 3 0.1 0.1\n"
    )
    with pytest.raises(
        DataValidationError, match=r"v\.txt', line 2: .*\(2 lines are like this\)"
    ):
        read_yolo_boxes(labels, img_size=64)


def test_yolo_no_label_files(tmp_path):
    (tmp_path / "labels").mkdir()
    _make_image(tmp_path / "x.jpg", (4, 4))
    with pytest.raises(DataValidationError, match="It has a 'labels' folder"):
        read_yolo_boxes(tmp_path)
    with pytest.raises(DataValidationError, match=r"No YOLO label files \(\*\.txt\)"):
        read_yolo_boxes(tmp_path / "labels")


def test_yolo_all_files_empty(tmp_path):
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(DataValidationError, match="1 label files but no boxes"):
        read_yolo_boxes(tmp_path, img_size=64)


def test_yolo_missing_labels_dir(tmp_path):
    with pytest.raises(DataValidationError, match=r"labels' does not exist"):
        read_yolo_boxes(tmp_path / "labels")


def test_yolo_without_images_needs_img_size(tmp_path):
    labels = _bad_label(tmp_path, "0 0.5 0.5 0.1 0.1")
    with pytest.raises(
        DataValidationError, match=r"Cannot find the images.*Pass images_dir=.*img_size"
    ):
        read_yolo_boxes(labels)


def test_yolo_missing_image(yolo_root):
    (yolo_root / "images" / "b.png").unlink()
    (yolo_root / "images" / "c.jpg").unlink()  # c.txt is empty: no size needed
    with pytest.raises(
        DataValidationError,
        match=r"1 YOLO label files have no image with the same name.*b\.txt'",
    ):
        read_yolo_boxes(yolo_root / "labels")


def test_yolo_unreadable_image(yolo_root):
    (yolo_root / "images" / "b.png").write_bytes(b"not an image")
    with pytest.raises(
        DataValidationError, match=r"Cannot read the size of image .*b\.png'"
    ):
        read_yolo_boxes(yolo_root / "labels")


def test_yolo_images_dir_and_img_size_exclusive(yolo_root):
    with pytest.raises(InvalidParameterError, match="not both"):
        read_yolo_boxes(
            yolo_root / "labels", images_dir=yolo_root / "images", img_size=640
        )


@pytest.mark.parametrize("bad", [0, (640,), (640, 0), 1.5])
def test_yolo_bad_img_size(yolo_root, bad):
    with pytest.raises(InvalidParameterError, match="img_size"):
        read_yolo_boxes(yolo_root / "labels", img_size=bad)


# --------------------------------------------------------------------------- #
# Pascal VOC
# --------------------------------------------------------------------------- #
def test_voc_by_hand(voc_dir):
    t = read_voc_boxes(voc_dir)
    # 1-based inclusive: w = xmax - xmin + 1.
    assert_array_equal(t.w, [148.0, 345.0, 100.0])
    assert_array_equal(t.h, [132.0, 363.0, 50.0])
    assert_array_equal(t.img_w, [500.0, 500.0, 353.0])
    assert_array_equal(t.img_h, [375.0, 375.0, 500.0])
    assert t.category_names == ("cat", "dog", "person")
    assert_array_equal(t.category, [1, 2, 0])
    assert_array_equal(t.image_id, ["000001", "000001", "000002"])
    assert_allclose(t.letterboxed_wh(1000), [[296, 264], [690, 726], [200, 100]])


def test_voc_filters(voc_dir):
    t = read_voc_boxes(voc_dir, include_difficult=False)
    assert_array_equal(t.w, [148.0, 100.0])
    t = read_voc_boxes(voc_dir, categories=["person", "cat"], min_size=60)
    assert t.category_names == ("person", "cat")
    assert_array_equal(t.w, [345.0])
    assert_array_equal(t.category, [0])
    with pytest.raises(DataValidationError, match=r"1 by include_difficult=False"):
        read_voc_boxes(voc_dir, include_difficult=False, categories=["person"])


def test_voc_root_with_annotations_folder(voc_dir):
    assert len(read_voc_boxes(voc_dir.parent)) == 3


def test_voc_unknown_category(voc_dir):
    with pytest.raises(
        DataValidationError, match=r"Unknown category 'persn'.*did you mean 'person'"
    ):
        read_voc_boxes(voc_dir, categories=["persn"])


def test_voc_unparseable_xml(voc_dir):
    (voc_dir / "000003.xml").write_text("<annotation><size>")
    with pytest.raises(DataValidationError, match=r"000003\.xml' is not valid XML"):
        read_voc_boxes(voc_dir)


def test_voc_wrong_root(voc_dir):
    (voc_dir / "000003.xml").write_text("<cvat><size/></cvat>")
    with pytest.raises(DataValidationError, match=r"root element is <cvat>"):
        read_voc_boxes(voc_dir)


@pytest.mark.parametrize(
    ("xml", "match"),
    [
        ("<annotation><object/></annotation>", "no <size> element"),
        (_voc_xml("", 10, []), "width='', height='10'"),
        (_voc_xml(0, 10, []), "width='0', height='10'"),
    ],
)
def test_voc_missing_size(voc_dir, xml, match):
    (voc_dir / "000003.xml").write_text(xml)
    with pytest.raises(
        DataValidationError, match=rf"000003\.xml' has no valid image size \({match}"
    ):
        read_voc_boxes(voc_dir)


def test_voc_malformed_bndbox(voc_dir):
    (voc_dir / "000003.xml").write_text(
        _voc_xml(10, 10, [("dog", 0, 1, 1, 5, 5), ("cat", 0, "abc", 1, 5, 5)])
    )
    with pytest.raises(
        DataValidationError,
        match=r"000003\.xml': object 2 \('cat'\) has a malformed bndbox "
        r"\(xmin='abc', ymin='1', xmax='5', ymax='5'\)",
    ):
        read_voc_boxes(voc_dir)
    (voc_dir / "000003.xml").write_text(
        "<annotation><size><width>9</width><height>9</height></size>"
        "<object><name>dog</name></object></annotation>"
    )
    with pytest.raises(DataValidationError, match=r"\('dog'\) has a malformed bndbox"):
        read_voc_boxes(voc_dir)


def test_voc_object_without_name(voc_dir):
    (voc_dir / "000003.xml").write_text(_voc_xml(10, 10, [("", 0, 1, 1, 5, 5)]))
    with pytest.raises(DataValidationError, match=r"object 1 has no <name>"):
        read_voc_boxes(voc_dir)


def test_voc_inverted_box(voc_dir):
    (voc_dir / "000003.xml").write_text(
        _voc_xml(10, 10, [("dog", 0, 6, 1, 4, 5), ("cat", 0, 1, 7, 5, 5)])
    )
    with pytest.raises(
        DataValidationError,
        match=r"boxes must have positive width and height; .*1 objects have w <= 0 "
        r"and 1 have h <= 0 \(first: object 1 of .*000003\.xml'",
    ):
        read_voc_boxes(voc_dir)


def test_voc_empty_folder(tmp_path):
    with pytest.raises(DataValidationError, match=r"No Pascal VOC annotation files"):
        read_voc_boxes(tmp_path)


# --------------------------------------------------------------------------- #
# read_boxes
# --------------------------------------------------------------------------- #
def test_read_boxes_dispatch(coco_files, yolo_root, voc_dir):
    assert len(read_boxes(coco_files[0])) == 3
    assert len(read_boxes(list(coco_files), include_crowd=True)) == 6
    assert read_boxes(voc_dir).source.startswith("Pascal VOC XML")
    assert len(read_boxes(voc_dir.parent, include_difficult=False)) == 2
    t = read_boxes(yolo_root / "labels", class_names=["cat", "dog"])
    assert t.source.startswith("YOLO labels")
    assert len(t) == 3
    assert len(read_boxes(yolo_root, img_size=64)) == 3
    assert_allclose(read_boxes(yolo_root).w, [64.0, 320.0, 30.0])


def test_read_boxes_filter_for_other_format(voc_dir):
    with pytest.raises(
        InvalidParameterError,
        match=r"as VOC annotations, which do not take 'include_crowd'.*"
        r"Options for VOC: categories, include_difficult, min_size",
    ):
        read_boxes(voc_dir, include_crowd=True)
    with pytest.raises(InvalidParameterError, match="Did you mean 'min_size'"):
        read_boxes(voc_dir, min_szie=3)


def test_read_boxes_unsupported(tmp_path, coco_files):
    with pytest.raises(DataValidationError, match=r"does not exist"):
        read_boxes(tmp_path / "missing")
    csv_file = tmp_path / "boxes.csv"
    csv_file.write_text("a,b\n")
    with pytest.raises(
        DataValidationError, match=r"a \.csv file is not a supported .*Supported: COCO"
    ):
        read_boxes(csv_file)
    with pytest.raises(
        DataValidationError,
        match=r"Cannot tell the annotation format.*a\.json, b\.json",
    ):
        read_boxes(tmp_path)
    with pytest.raises(DataValidationError, match="only be COCO JSON files"):
        read_boxes([coco_files[0], tmp_path])


# --------------------------------------------------------------------------- #
# Real data
# --------------------------------------------------------------------------- #
def _voc_csv() -> dict[str, np.ndarray]:
    with open(VOC_DIR / "boxes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "image": np.array([int(r["image_id"]) for r in rows]),
        "class": np.array([r["class"] for r in rows]),
        **{
            k: np.array([float(r[k]) for r in rows])
            for k in ("width", "height", "xmin", "ymin", "xmax", "ymax")
        },
    }


def _sorted_rows(image, cls, w, h, img_w, img_h) -> np.ndarray:
    order = np.lexsort((h, w, cls, image))
    return np.column_stack(
        [a[order].astype(float) for a in (image, cls, w, h, img_w, img_h)]
    )


@pytest.mark.skipif(not VOC_DIR.is_dir(), reason="shared/data/voc2007 not present")
def test_real_voc2007_coco_json_matches_boxes_csv():
    """The three VOC2007 COCO-format files give all 30,638 boxes of boxes.csv."""
    ann = VOC_DIR / "annotations"
    t = read_coco_boxes(
        [ann / f"pascal_{s}2007.json" for s in ("train", "val", "test")]
    )
    assert len(t) == 30_638
    assert len(t.category_names) == 20
    assert np.unique(t.image_id).size == 9_963
    ref = _voc_csv()
    w_ref = ref["xmax"] - ref["xmin"] + 1
    h_ref = ref["ymax"] - ref["ymin"] + 1
    assert_array_equal(np.sort(t.w), np.sort(w_ref))
    assert_array_equal(np.sort(t.h), np.sort(h_ref))
    # Box by box: (image, class, w, h, image size) as multisets.
    image = np.array([int(s.split(":")[1]) for s in t.image_id])
    names = np.array(t.category_names)[t.category]
    classes = np.unique(ref["class"])
    ours = _sorted_rows(
        image, np.searchsorted(classes, names), t.w, t.h, t.img_w, t.img_h
    )
    theirs = _sorted_rows(
        ref["image"],
        np.searchsorted(classes, ref["class"]),
        w_ref,
        h_ref,
        ref["width"],
        ref["height"],
    )
    assert_array_equal(ours, theirs)
    assert (t.normalized_wh() <= 1).all()


@pytest.mark.skipif(not VOC_DIR.is_dir(), reason="shared/data/voc2007 not present")
def test_real_voc2007_as_xml_matches_coco_reader(tmp_path):
    """boxes.csv written back as VOC XML reads the same as the COCO JSON."""
    ref = _voc_csv()
    keep = ref["image"] <= 400
    xml_dir = tmp_path / "Annotations"
    xml_dir.mkdir()
    for img in np.unique(ref["image"][keep]):
        rows = np.flatnonzero(ref["image"] == img)
        objs = [
            (
                ref["class"][i],
                0,
                *(int(ref[k][i]) for k in ("xmin", "ymin", "xmax", "ymax")),
            )
            for i in rows
        ]
        (xml_dir / f"{img:06d}.xml").write_text(
            _voc_xml(int(ref["width"][rows[0]]), int(ref["height"][rows[0]]), objs)
        )
    t = read_voc_boxes(xml_dir)
    assert len(t) == int(keep.sum())
    ann = VOC_DIR / "annotations"
    c = read_coco_boxes(
        [ann / f"pascal_{s}2007.json" for s in ("train", "val", "test")]
    )
    c = c.select(np.array([int(s.split(":")[1]) <= 400 for s in c.image_id]))
    names_t = np.array(t.category_names)[t.category]
    names_c = np.array(c.category_names)[c.category]
    classes = np.unique(names_c)
    assert_array_equal(
        _sorted_rows(
            t.image_id.astype(int),
            np.searchsorted(classes, names_t),
            t.w,
            t.h,
            t.img_w,
            t.img_h,
        ),
        _sorted_rows(
            np.array([int(s.split(":")[1]) for s in c.image_id]),
            np.searchsorted(classes, names_c),
            c.w,
            c.h,
            c.img_w,
            c.img_h,
        ),
    )


@pytest.mark.skipif(not COCO128.is_file(), reason="shared/data/coco-sample not present")
def test_real_coco128_crowd_and_categories():
    raw = json.loads(COCO128.read_text())
    n_crowd = sum(bool(a.get("iscrowd", 0)) for a in raw["annotations"])
    assert len(raw["annotations"]) == 939
    assert n_crowd == 10
    everything = read_coco_boxes(COCO128, include_crowd=True)
    assert len(everything) == 939
    default = read_coco_boxes(COCO128)
    assert len(default) == 939 - n_crowd
    assert len(default.category_names) == 80
    assert default.category_names[0] == "person"
    names = {c["id"]: c["name"] for c in raw["categories"]}
    expected = Counter(
        names[a["category_id"]] for a in raw["annotations"] if not a["iscrowd"]
    )
    got = Counter(np.array(default.category_names)[default.category].tolist())
    assert got == expected
    assert got["person"] <= 259
    # Every box is inside its 640-long-side image at letterbox size 640.
    lb = everything.letterboxed_wh(640)
    assert (lb > 0).all()
    assert (lb <= 640 + 1e-9).all()


@pytest.mark.skipif(not COCO128.is_file(), reason="shared/data/coco-sample not present")
def test_real_coco128_as_yolo_matches_coco_reader(tmp_path):
    """COCO128 written as YOLO labels reads back the same boxes, sizes from JPEGs."""
    raw = json.loads(COCO128.read_text())
    images = {im["id"]: im for im in raw["images"]}
    cat_ids = [c["id"] for c in raw["categories"]]
    lines: dict[str, list[str]] = {
        Path(im["file_name"]).stem: [] for im in raw["images"]
    }
    for a in raw["annotations"]:
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        W, H = im["width"], im["height"]
        lines[Path(im["file_name"]).stem].append(
            f"{cat_ids.index(a['category_id'])} {(x + w / 2) / W!r} "
            f"{(y + h / 2) / H!r} {w / W!r} {h / H!r}"
        )
    labels = tmp_path / "labels"
    labels.mkdir()
    for stem, ls in lines.items():
        (labels / f"{stem}.txt").write_text("\n".join(ls) + "\n" if ls else "")
    names = [c["name"] for c in raw["categories"]]
    y = read_yolo_boxes(labels, images_dir=COCO128.parent / "images", class_names=names)
    c = read_coco_boxes(COCO128, include_crowd=True)
    assert len(y) == len(c) == 939
    assert y.category_names == c.category_names
    # Both in (image, annotation) order: sort by image then by the COCO order.
    file_of = {str(im["id"]): Path(im["file_name"]).stem for im in raw["images"]}
    c_stem = np.array([file_of[s] for s in c.image_id])
    order_c = np.argsort(c_stem, kind="stable")
    assert_array_equal(y.image_id, c_stem[order_c])
    assert_array_equal(y.img_w, c.img_w[order_c])
    assert_array_equal(y.img_h, c.img_h[order_c])
    assert_array_equal(y.category, c.category[order_c])
    assert_allclose(y.w, c.w[order_c], rtol=1e-12)
    assert_allclose(y.h, c.h[order_c], rtol=1e-12)
