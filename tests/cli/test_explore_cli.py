"""``clusterlens explore`` and the view commands on real photos with planted cases:
copies are grouped with their source, the odd image ranks first among the outliers,
search finds an image's own copy, reruns reuse what is done, bad input is refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image, ImageEnhance, ImageOps

from clusterlens.cli.main import cli

pytest.importorskip("torch")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def table(path):
    return pq.read_table(path).to_pydict()


@pytest.fixture(scope="module")
def planted(tmp_path_factory, request):
    """16 ant/bee photos + copies and an out-of-distribution image."""
    shared = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    tar = shared / "hymenoptera" / "hymenoptera_data.tar"
    if not tar.is_file():
        pytest.skip("../shared/data is not present beside the repository")
    root = tmp_path_factory.mktemp("planted")
    src = root / "photos"
    with tarfile.open(tar) as tf:
        files = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        pick = [m for m in files if "/val/ants/" in m.name][:8]
        pick += [m for m in files if "/val/bees/" in m.name][:8]
        tf.extractall(root / "raw", members=pick, filter="data")
    raw = sorted((root / "raw").rglob("*.jpg"))
    for p in raw:
        cls = p.parent.name
        (src / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, src / cls / p.name)
    a, b, c = raw[0], raw[3], raw[9]
    plan = {}
    # an exact copy, and augmented copies of two more photos
    shutil.copy(a, a_copy := src / a.parent.name / "copy_exact.jpg")
    plan["exact"] = (a.name, a_copy.name)
    img = Image.open(b).convert("RGB")
    w, h = img.size
    img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize(
        (w // 2, h // 2)
    ).save(src / b.parent.name / "copy_crop.jpg", quality=70)
    ImageOps.mirror(Image.open(c).convert("RGB")).save(
        src / c.parent.name / "copy_flip.jpg"
    )
    ImageEnhance.Brightness(Image.open(c).convert("RGB")).enhance(1.3).save(
        src / c.parent.name / "copy_bright.jpg", quality=85
    )
    plan["crop"] = (b.name, "copy_crop.jpg")
    plan["flip"] = (c.name, "copy_flip.jpg")
    plan["bright"] = (c.name, "copy_bright.jpg")
    # out of distribution: a handwritten digit among insect photos
    digit = np.zeros((224, 224), np.uint8)
    digit[40:184, 100:124] = 255
    digit[40:64, 80:124] = 255
    Image.fromarray(digit).convert("RGB").save(src / "ants" / "odd_digit.png")
    return root, src, plan


@pytest.fixture(scope="module")
def explored(planted):
    root, src, plan = planted
    ws = root / "ws"
    r = run("explore", src, "--out", ws, "--image-size", 128, "--format", "json")
    assert r.exit_code == 0, r.output
    return ws, json.loads(r.output), plan


def _ids(ws):
    items = table(ws / "items.parquet")
    return {Path(p).name: i for i, p in enumerate(items["path"])}


def test_explore_writes_every_view_and_a_report(explored):
    ws, summary, _ = explored
    for name in (
        "scan",
        "neighbors",
        "duplicates",
        "outliers",
        "quality",
        "map",
        "index",
        "sample",
    ):
        assert (ws / name / "run.json").is_file(), name
    assert (ws / "clusters" / "cnn" / "results.parquet").is_file()
    assert (ws / "label-issues" / "label_issues.parquet").is_file()  # ants / bees
    assert (ws / "report.html").is_file()
    assert summary["n_items"] == 21 and summary["reused"] == []


def test_copies_are_grouped_with_their_source(explored):
    ws, _, plan = explored
    ids = _ids(ws)
    d = table(ws / "duplicates" / "duplicates.parquet")
    for how, (orig, copy) in plan.items():
        g = d["group"][ids[orig]]
        assert g >= 0 and d["group"][ids[copy]] == g, how
    assert d["kind"][ids["copy_exact.jpg"]] in ("exact", "keep")
    assert {d["kind"][ids["copy_exact.jpg"]], d["kind"][ids[plan["exact"][0]]]} == {
        "exact",
        "keep",
    }
    # nothing but the planted copies is grouped
    grouped = {n for n, i in ids.items() if d["group"][i] >= 0}
    assert grouped == {n for pair in plan.values() for n in pair}


def test_the_odd_image_is_the_top_outlier(explored):
    ws, _, _ = explored
    o = table(ws / "outliers" / "outliers.parquet")
    ids = _ids(ws)
    assert o["outlier_rank"][ids["odd_digit.png"]] == 0
    # the lowest similarity to its neighbours of all, by a margin
    score = np.asarray(o["outlier_score"])
    assert score[ids["odd_digit.png"]] < 0.75 * np.sort(score)[1]


def test_similar_finds_the_copy_first(explored, planted):
    ws, _, plan = explored
    _, src, _ = planted
    orig, copy = plan["flip"]
    ids = _ids(ws)
    r = run("similar", ws, "--item", ids[orig], "-k", 3, "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)["results"]
    assert Path(res[0]["path"]).name in (copy, "copy_bright.jpg")
    query = next(src.rglob(copy))
    r = run("similar", ws, query, "-k", 2, "--format", "json")
    assert r.exit_code == 0, r.output
    top = [Path(x["path"]).name for x in json.loads(r.output)["results"]]
    assert top[0] == copy and res[0]["similarity"] > 0.9


def test_rerun_reuses_everything_and_redoes_what_is_missing(explored):
    ws, _, _ = explored
    before = {
        p: hashlib.sha1(p.read_bytes()).hexdigest() for p in ws.rglob("*.parquet")
    }
    r = run("explore", ws, "--image-size", 128, "--format", "json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert set(s["reused"]) >= {
        "ingest",
        "embeddings",
        "scan",
        "neighbors",
        "duplicates",
        "outliers",
        "quality",
        "map",
        "index",
        "sample",
        "clusters",
        "label-issues",
    }
    shutil.rmtree(ws / "map")
    r = run("explore", ws, "--image-size", 128, "--format", "json")
    s = json.loads(r.output)
    assert "map" not in s["reused"] and "duplicates" in s["reused"]
    after = {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in ws.rglob("*.parquet")}
    assert after == before  # the same seed gives the same files


def test_an_interrupted_run_continues(planted, monkeypatch):
    root, src, _ = planted
    ws = root / "ws-interrupted"
    import clusterlens.pipelines.curate as cv

    real = cv.run_map

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cv, "run_map", boom)
    r = run("explore", src, "--out", ws, "--image-size", 128, "-q")
    assert r.exit_code == 130
    assert not (ws / "map").exists() and (ws / "duplicates" / "run.json").is_file()
    assert not list(ws.glob(".map.partial-*"))
    monkeypatch.setattr(cv, "run_map", real)
    r = run("explore", src, "--out", ws, "--image-size", 128, "--format", "json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert "duplicates" in s["reused"] and "map" not in s["reused"]


def test_view_commands_on_a_workspace(explored):
    ws, _, _ = explored
    r = run("duplicates", ws, "--threshold", 0.999, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["threshold"] == 0.999
    r = run("sample", ws, "--budget", 5, "--format", "json")
    assert r.exit_code == 0, r.output
    s = table(ws / "sample" / "sample.parquet")
    assert sorted(p for p in s["pick"] if p >= 0) == [0, 1, 2, 3, 4]
    tasks = json.loads((ws / "sample" / "label_studio.json").read_text())
    assert len(tasks) == 5 and Path(tasks[0]["data"]["image"]).is_file()


def test_a_changed_folder_is_not_continued_silently(planted, tmp_path):
    _, src, _ = planted
    ws = tmp_path / "ws"
    r = run("explore", src, "--out", ws, "--image-size", 64, "-q", "-k", 2)
    assert r.exit_code == 0, r.output
    extra = src / "bees" / "zz_new.png"
    Image.new("RGB", (40, 40), (9, 99, 9)).save(extra)
    try:
        r = run("explore", src, "--out", ws, "--image-size", 64, "-q", "-k", 2)
        assert r.exit_code == 1 and "1 new and 0 missing" in r.output
        assert "--overwrite" in r.output and "Traceback" not in r.output
    finally:
        extra.unlink()
    r = run(
        "explore", src, "--out", ws, "--image-size", 64, "--format", "json", "-k", 2
    )
    assert r.exit_code == 0 and "embeddings" in json.loads(r.output)["reused"]


def bad(r, *words):
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output
    for w in words:
        assert w in r.output, r.output


def test_bad_input_is_refused_and_leaves_the_workspace(explored, tmp_path):
    ws, _, _ = explored
    empty = tmp_path / "empty"
    empty.mkdir()
    bad(run("explore", empty, "--out", tmp_path / "w1"), "no image files")
    assert not (tmp_path / "w1").exists()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"not a jpeg")
    (junk / "b.png").write_bytes(b"")
    bad(run("explore", junk, "--out", tmp_path / "w2"))
    assert not (tmp_path / "w2").exists()
    (tmp_path / "notes.txt").write_text("hello")
    bad(run("explore", tmp_path / "notes.txt", "--out", tmp_path / "w3"))
    before = {p: p.stat().st_mtime_ns for p in ws.rglob("*") if p.is_file()}
    bad(run("sample", ws, "--budget", 10_000), "--budget 10,000", "larger")
    q = tmp_path / "q.jpg"
    q.write_bytes(b"\xff\xd8 broken")
    bad(run("similar", ws, q), "cannot be decoded", str(q))
    after = {p: p.stat().st_mtime_ns for p in ws.rglob("*") if p.is_file()}
    assert after == before
    other = tmp_path / "ws-copy"
    shutil.copytree(ws, other)
    shutil.rmtree(other / "index")
    bad(run("similar", other, "--item", 0), "no search index")
    X = np.load(other / "features" / "cnn" / "features.npy")
    np.save(other / "features" / "cnn" / "features.npy", X[:-2])
    bad(run("duplicates", other), "no longer match")


@pytest.mark.parametrize(
    ("side", "expected"), [(32, 160), (48, 192), (64, 224), (500, 224)]
)
def test_image_size_follows_the_items(tmp_path, side, expected):
    from clusterlens.io import create_workspace
    from clusterlens.pipelines.explore import auto_image_size

    images = np.zeros((4, side, side + 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=images)
    (tmp_path / "ws").mkdir()
    ws = create_workspace(tmp_path / "x.npz", tmp_path / "ws")
    assert auto_image_size(ws) == expected


def test_the_scan_made_beside_the_cnn_equals_the_scan_alone(explored, tmp_path):
    """explore decodes each image once for the CNN and the scan: its scan (hashes,
    properties, duplicate thumbnails, report previews) is the one the scan
    command makes by decoding on its own; the previews are fitted copies."""
    from clusterlens.curate._previews import PREVIEW_SIDE, load_previews
    from clusterlens.io import open_workspace
    from clusterlens.pipelines.curate import run_scan

    ws_path, _, _ = explored
    ws = open_workspace(ws_path)
    run_scan(ws, tmp_path)
    joint, alone = (
        table(ws_path / "scan" / "scan.parquet"),
        table(tmp_path / "scan.parquet"),
    )
    assert joint == alone
    for f in ("thumbs.npy", "previews.npy", "preview_sizes.npy"):
        assert np.array_equal(np.load(ws_path / "scan" / f), np.load(tmp_path / f)), f
    previews, sizes = load_previews(ws)
    w, h = np.asarray(joint["prop_width"]), np.asarray(joint["prop_height"])
    f = np.minimum(1.0, PREVIEW_SIDE / np.maximum(w, h))
    assert np.array_equal(sizes[:, 0], np.maximum(1, np.round(w * f)))
    assert np.array_equal(sizes[:, 1], np.maximum(1, np.round(h * f)))
    # the block outside each preview stays empty
    for i, (pw, ph) in enumerate(sizes):
        assert previews[i, ph:].max(initial=0) == 0
        assert previews[i, :, pw:].max(initial=0) == 0
