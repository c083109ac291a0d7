"""``clusterlens iic-seg`` / ``iic-seg-predict`` as a user runs them (issue #21)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("torch")

from clusterlens.cli.main import cli

FAST = [
    "--epochs",
    1,
    "--width",
    0.25,
    "--heads",
    1,
    "--k-over",
    0,
    "--image-size",
    "32x48",
    "--quiet",
]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(r, *needles):
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines[0].startswith("Error"), r.output
    assert len(lines) == 2 and lines[1].startswith("hint:"), r.output
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in r.output


@pytest.fixture
def photos(tmp_path):
    """6 photos (two sizes) split sky (id 0) over road (id 3), void (11) rows."""
    rng = np.random.default_rng(0)
    img_dir, lab_dir = tmp_path / "images", tmp_path / "labels"
    img_dir.mkdir()
    lab_dir.mkdir()
    for i in range(6):
        h, w = (36, 48) if i % 2 else (30, 40)
        cut = rng.integers(h // 3, 2 * h // 3)
        img = np.empty((h, w, 3), np.uint8)
        img[:cut] = (120, 170, 230)
        img[cut:] = (90, 80, 70)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        lab = np.where(np.arange(h)[:, None] < cut, 0, 3) * np.ones((1, w), int)
        lab[-1] = 11
        Image.fromarray(img).save(img_dir / f"f{i:02d}.jpg", quality=95)
        Image.fromarray(lab.astype(np.uint8)).save(lab_dir / f"f{i:02d}.png")
    return img_dir, lab_dir


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.alts, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.alts.append(dict(attrs).get("alt", ""))

    def handle_data(self, data):
        self.text.append(data)


def test_iic_seg_writes_masks_summary_model_and_report(photos, tmp_path):
    img_dir, lab_dir = photos
    out = tmp_path / "seg"
    r = run(
        "iic-seg", img_dir, "--k", 2, "--labels", lab_dir, "--classes",
        "sky=0; road=3; ignore=11", "--out", out, "--format", "json", *FAST,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["schema"] == "clusterlens.iic-seg/1"
    assert 0.5 <= s["accuracy"] <= 1.0 and 0.0 <= s["miou"] <= 1.0
    assert s["n_images_scored"] == 6
    for stem in ("f00", "f01"):  # one cluster id per pixel at the image's size
        mask = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        assert mask.shape == np.asarray(Image.open(img_dir / f"{stem}.jpg")).shape[:2]
        assert set(np.unique(mask)) <= {0, 1}
    t = pq.read_table(out / "segments.parquet").to_pandas()
    assert list(t["stem"]) == [f"f{i:02d}" for i in range(6)]
    assert {"height", "width", "accuracy", "confidence", "share_0", "share_1"} <= set(
        t.columns
    )
    np.testing.assert_allclose(t["share_0"] + t["share_1"], 1.0)
    assert (out / "model.npz").is_file() and (out / "model.json").is_file()
    p = _Parser()
    p.feed((out / "report.html").read_text())
    assert sum(a.startswith("prediction") for a in p.alts) == 6
    assert sum(a.startswith("ground truth") for a in p.alts) == 6
    assert "Confusion table" in "".join(p.text)
    # the saved model segments new photos and scores them the same way
    r = run(
        "iic-seg-predict", out / "model", img_dir, "--labels", lab_dir,
        "--classes", "sky=0; road=3; ignore=11", "--out", tmp_path / "pred",
        "--format", "json", "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["accuracy"] == pytest.approx(s["accuracy"])
    for stem in ("f00", "f03"):
        np.testing.assert_array_equal(
            np.asarray(Image.open(out / "masks" / f"{stem}.png")),
            np.asarray(Image.open(tmp_path / "pred" / "masks" / f"{stem}.png")),
        )


def test_kmeans_baseline_and_resume(photos, tmp_path):
    img_dir, lab_dir = photos
    r = run(
        "iic-seg", img_dir, "--k", 2, "--method", "kmeans", "--labels", lab_dir,
        "--classes", "sky=0; road=3; ignore=11", "--out", tmp_path / "km",
        "--format", "json", "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["accuracy"] >= 0.9  # two flat colours
    ck = tmp_path / "ck"
    args = ["iic-seg", img_dir, "--k", 2, "--checkpoint", ck, *FAST]
    assert run(*args, "--out", tmp_path / "a").exit_code == 0
    two = [str(a) for a in args]
    two[two.index("--epochs") + 1] = "2"
    r = run(*two, "--resume", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    full = run(*two[:4], *two[6:], "--out", tmp_path / "c")  # no checkpoint
    assert full.exit_code == 0, full.output
    h_b = json.loads((tmp_path / "b" / "run.json").read_text())["history"]
    h_c = json.loads((tmp_path / "c" / "run.json").read_text())["history"]
    assert [h["loss"] for h in h_b] == [h["loss"] for h in h_c] and len(h_b) == 2


def test_label_map_of_another_size_is_one_clear_error(photos, tmp_path):
    img_dir, lab_dir = photos
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(lab_dir / "f02.png")
    out = tmp_path / "seg"
    r = run("iic-seg", img_dir, "--k", 2, "--labels", lab_dir, "--out", out, *FAST)
    _one_line_error(r, "f02.png", "10x10", "40x30", "its image's size")
    assert not out.exists()


def test_label_ids_outside_the_class_table_are_one_clear_error(photos, tmp_path):
    img_dir, lab_dir = photos
    lab = np.asarray(Image.open(lab_dir / "f01.png")).copy()
    lab[0, 0] = 37
    Image.fromarray(lab).save(lab_dir / "f01.png")
    out = tmp_path / "seg"
    r = run(
        "iic-seg", img_dir, "--k", 3, "--method", "kmeans", "--labels", lab_dir,
        "--classes", "camvid3", "--out", out, "--quiet",
    )  # fmt: skip
    _one_line_error(r, "f01.png", "37", "outside the class table 'camvid3'")
    assert not out.exists()
    r = run(
        "iic-seg", img_dir, "--k", 3, "--method", "kmeans", "--labels", lab_dir,
        "--classes", "camvid4", "--out", out, "--quiet",
    )  # fmt: skip
    _one_line_error(r, "Unknown class table 'camvid4'", "Did you mean")


def test_models_of_the_other_kind_are_refused(photos, tmp_path):
    img_dir, _ = photos
    seg = tmp_path / "seg"
    assert run("iic-seg", img_dir, "--k", 2, "--out", seg, *FAST).exit_code == 0
    r = run("iic-predict", seg / "model", img_dir, "--out", tmp_path / "p1", "--quiet")
    _one_line_error(r, "IIC segmentation model", "iic-seg-predict")
    assert not (tmp_path / "p1").exists()
    rng = np.random.default_rng(0)
    npz = tmp_path / "digits.npz"
    np.savez(npz, images=rng.integers(0, 255, (40, 16, 16), dtype=np.uint8))
    clf = tmp_path / "clf"
    r = run(
        "iic", npz, "--k", 2, "--k-over", 0, "--epochs", 1, "--width", 0.25,
        "--heads", 1, "--repeats", 1, "--input-size", 16, "--out", clf, "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run("iic-seg-predict", clf / "model", img_dir, "--out", tmp_path / "p2")
    _one_line_error(r, "image-classification model", "iic-predict")
    assert not (tmp_path / "p2").exists()


def test_train_on_classes_counts_only_the_labelled_pixels(photos, tmp_path):
    img_dir, lab_dir = photos
    table = "sky=0; road=3; ignore=11"
    r = run(
        "iic-seg", img_dir, "--k", 2, "--labels", lab_dir, "--classes", table,
        "--train-on-classes", "--out", tmp_path / "a", "--format", "json", *FAST,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["train_on_classes"] is True
    r = run("iic-seg", img_dir, "--k", 2, "--train-on-classes", "--out",
            tmp_path / "b", *FAST)  # fmt: skip
    _one_line_error(r, "needs --labels")
    assert not (tmp_path / "b").exists()


def test_cnn_layers_option(photos, tmp_path):
    """--cnn-layers picks the frozen maps (k-means on them records which);
    a bad list or a CNN option with --features rgb is a usage error."""
    img_dir, _ = photos
    out = tmp_path / "km"
    r = run(
        "iic-seg", img_dir, "--k", 2, "--method", "kmeans", "--features", "cnn",
        "--cnn-layers", "s16,head", "--image-size", "32x48", "--out", out,
        "--format", "json", "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    params = json.loads((out / "model.json").read_text())["params"]
    assert params["cnn_layers"] == ["s16", "head"] and params["backbone"] == "lite0"
    run_params = json.loads((out / "run.json").read_text())["parameters"]
    assert run_params["cnn_layers"] == ["s16", "head"]
    p = _Parser()
    p.feed((out / "report.html").read_text())
    text = " ".join(p.text)
    assert "CNN maps" in text and "s16, head" in text
    assert "moved onto the photo's edges (guided filter)" in text
    r = run(
        "iic-seg", img_dir, "--k", 2, "--features", "cnn", "--cnn-layers",
        "s8,s4", "--out", tmp_path / "bad",
    )  # fmt: skip
    assert r.exit_code == 2 and "--cnn-layers" in r.output and "s8, s16" in r.output
    assert not (tmp_path / "bad").exists()
    r = run(
        "iic-seg", img_dir, "--k", 2, "--backbone", "lite2", "--out", tmp_path / "b"
    )
    assert r.exit_code == 2 and "--features cnn only" in r.output


def test_refine_is_the_default_and_no_refine_keeps_the_network_masks(photos, tmp_path):
    """--no-refine writes the network's upsampled arg-max; the default moves
    the boundaries with the guided filter (refine_segmentation)."""
    from clusterlens.deep import IICSegmenter, refine_segmentation

    img_dir, _ = photos
    out = tmp_path / "seg"
    r = run("iic-seg", img_dir, "--k", 2, "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "run.json").read_text())["parameters"]["refine"] is True
    r = run(
        "iic-seg-predict", out / "model", img_dir, "--no-refine", "--out",
        tmp_path / "raw", "--format", "json", "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["refine"] is False
    model = IICSegmenter.load(out / "model", device="cpu")
    for stem in ("f00", "f01"):
        photo = np.asarray(Image.open(img_dir / f"{stem}.jpg").convert("RGB"))
        small = np.asarray(
            Image.fromarray(photo).resize((48, 32), Image.Resampling.BILINEAR)
        )
        raw = np.asarray(Image.open(tmp_path / "raw" / "masks" / f"{stem}.png"))
        want = model.predict(small[None], size=photo.shape[:2])[0]
        assert (raw == want).mean() > 0.99
        refined = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        np.testing.assert_array_equal(refined, refine_segmentation(raw, photo, 2))


def test_kmeans_over_clustering_option(photos, tmp_path):
    """--k-over with --method kmeans: k-means into more clusters, merged into
    --k segments (default none, recorded); not above --k is one clear error."""
    img_dir, lab_dir = photos
    table = "sky=0; road=3; ignore=11"
    for k_over, want in ((None, 0), (6, 6), (5, 5)):
        extra = [] if k_over is None else ["--k-over", k_over]
        out = tmp_path / f"km{k_over}"
        r = run(
            "iic-seg", img_dir, "--k", 2, "--method", "kmeans", "--labels", lab_dir,
            "--classes", table, "--out", out, "--format", "json", "--quiet", *extra,
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        s = json.loads(r.output)
        assert s["accuracy"] >= 0.9 and s["n_clusters_used"] == 2
        run_params = json.loads((out / "run.json").read_text())["parameters"]
        assert run_params["k_over"] == want
        pred = tmp_path / f"pred{k_over}"
        r = run("iic-seg-predict", out / "model", img_dir, "--out", pred)
        assert r.exit_code == 0, r.output
        said = f"merged from {want} k-means clusters"
        assert (said in r.output) == bool(want), r.output
        np.testing.assert_array_equal(
            np.asarray(Image.open(out / "masks" / "f01.png")),
            np.asarray(Image.open(pred / "masks" / "f01.png")),
        )
    r = run(
        "iic-seg", img_dir, "--k", 3, "--method", "kmeans", "--k-over", 3,
        "--out", tmp_path / "bad", "--quiet",
    )  # fmt: skip
    _one_line_error(r, "--k-over", "larger than k = 3")
    assert not (tmp_path / "bad").exists()
