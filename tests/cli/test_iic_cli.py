"""``clusterlens iic`` / ``iic-predict`` as a user runs them: outputs and bad input."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from clusterlens.cli.main import cli

FAST = [
    "--epochs",
    1,
    "--width",
    0.25,
    "--batch-size",
    25,
    "--heads",
    2,
    "--repeats",
    1,
    "--k-over",
    6,
    "--input-size",
    16,
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
def npz(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    X = rng.integers(0, 60, (100, 16, 16), dtype=np.uint8)
    for c in range(4):  # one bright quadrant per class
        X[y == c, (c // 2) * 8 : (c // 2) * 8 + 8, (c % 2) * 8 : (c % 2) * 8 + 8] = 220
    path = tmp_path / "shapes.npz"
    np.savez(path, images=X, labels=y)
    return path


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.classes = []

    def handle_starttag(self, tag, attrs):
        self.classes += (dict(attrs).get("class") or "").split()


def test_iic_writes_every_output(tmp_path, npz):
    out = tmp_path / "run"
    r = run("iic", npz, "--k", 4, "--out", out, "--seed", 0, *FAST)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        ".clusterlens-output.json",
        "assignments.parquet",
        "model.json",
        "model.npz",
        "report.html",
        "run.json",
    ]
    table = pq.read_table(out / "assignments.parquet").to_pydict()
    assert {
        "index",
        "item_id",
        "label",
        "cluster",
        "probability",
        "prob_0",
        "prob_3",
    } <= set(table)
    probs = np.column_stack([table[f"prob_{c}"] for c in range(4)])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=1), table["cluster"])
    np.testing.assert_array_equal(table["label"], np.load(npz)["labels"])
    info = json.loads((out / "run.json").read_text())
    assert info["seed"] == 0
    assert 0 <= info["head"] < 2 and "lowest" in info["head_selection"]
    assert info["results"]["head"] == info["head"]
    assert {"accuracy", "nmi", "ari"} <= set(info["history"][0])
    # grey images: no pointer to the photo CNN
    assert info["results"]["hint"] is None and "Note:" not in r.output
    parser = _Tags()
    html = (out / "report.html").read_text()
    parser.feed(html)
    assert parser.classes.count("cluster") >= 1
    assert "training-curve" in parser.classes
    assert "http://" not in html and "https://" not in html

    # The saved model predicts the same clusters on the same images.
    pred_out = tmp_path / "pred"
    r = run("iic-predict", out / "model", npz, "--out", pred_out, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["schema"] == "clusterlens.iic-predict/1"
    again = pq.read_table(pred_out / "assignments.parquet").to_pydict()
    np.testing.assert_array_equal(again["cluster"], table["cluster"])


def test_iic_json_output_and_checkpoint_resume(tmp_path, npz):
    ckpt = tmp_path / "ckpt"
    r = run(
        "iic",
        npz,
        "--k",
        4,
        "--out",
        tmp_path / "a",
        "--checkpoint",
        ckpt,
        "--format",
        "json",
        *FAST,
    )
    assert r.exit_code == 0, r.output
    first = json.loads(r.output)
    assert first["schema"] == "clusterlens.iic/1" and first["epochs"] == 1
    assert (ckpt / "iic-checkpoint.npz").is_file()
    fast2 = [a if a != 1 else 2 for a in FAST[:2]] + FAST[2:]
    r = run(
        "iic",
        npz,
        "--k",
        4,
        "--out",
        tmp_path / "b",
        "--checkpoint",
        ckpt,
        "--resume",
        "--format",
        "json",
        *fast2,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["epochs"] == 2


def test_k_below_two_is_one_line_error(tmp_path, npz):
    r = run("iic", npz, "--k", 1, "--out", tmp_path / "o", *FAST)
    _one_line_error(r, "--k must be >= 2")
    assert not (tmp_path / "o").exists()


def test_empty_folder_is_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("iic", empty, "--k", 3, "--out", tmp_path / "o", *FAST)
    assert r.exit_code != 0
    _one_line_error(r, str(empty.name))


def _image_folder(folder, shapes):
    """Six random PNGs of each class's shape, one sub-folder per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, shape in shapes.items():
        (folder / cls).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(arr).save(folder / cls / f"{i}.png")
    return folder


def test_mixed_sizes_need_resize(tmp_path):
    folder = _image_folder(tmp_path / "imgs", {"a": (16, 16), "b": (20, 20)})
    r = run("iic", folder, "--k", 2, "--out", tmp_path / "o", *FAST)
    assert r.exit_code != 0
    _one_line_error(r)
    assert "size" in r.output.lower()
    r = run(
        "iic",
        folder,
        "--k",
        2,
        "--size",
        "16x16",
        "--out",
        tmp_path / "o",
        "--batch-size",
        6,
        *FAST[4:],
    )
    assert r.exit_code == 0, r.output


def test_photos_point_to_the_cnn_features(tmp_path):
    folder = _image_folder(tmp_path / "photos", {"a": (16, 16, 3), "b": (16, 16, 3)})
    out = tmp_path / "o"
    r = run(
        "iic", folder, "--k", 2, "--out", out, "--batch-size", 6, *FAST[:4], *FAST[6:-1]
    )
    assert r.exit_code == 0, r.output
    assert "Note: IIC trains its network from scratch; on photos" in r.output
    command = (
        f"clusterlens ingest {folder} --out ws && clusterlens features cnn ws && "
        "clusterlens cluster ws --features cnn -k 2 --method scan"
    )
    assert command in " ".join(r.output.split())
    hint = json.loads((out / "run.json").read_text())["results"]["hint"]
    assert command in hint
    assert "IIC trains its network from scratch" in (out / "report.html").read_text()


def test_resume_without_checkpoint_is_usage_error(tmp_path, npz):
    r = run("iic", npz, "--k", 4, "--resume", "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 2
    assert "--checkpoint" in r.output


def test_missing_torch_names_the_extra(tmp_path, npz, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    r = run("iic", npz, "--k", 4, "--out", tmp_path / "o", *FAST)
    _one_line_error(r, "requires torch", "clusterlens[deep]")


def test_package_and_cli_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('No module named torch')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import clusterlens, clusterlens.cli.main, clusterlens.pipelines.iic\n"
        "import clusterlens.report._iic\n"
        "try:\n"
        "    import clusterlens.deep\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e)\n"
        "assert 'torch' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("MissingDependencyError")
    assert "pip install 'clusterlens[deep]'" in r.stdout


def test_preset_with_overrides_runs_and_reports_every_subhead(tmp_path, npz):
    """Issue #21: --preset ji2019-mnist; explicit options win over it."""
    out = tmp_path / "p"
    args = [a for a in FAST if a != "--quiet"]
    r = run(
        "iic", npz, "--k", 4, "--preset", "ji2019-mnist", "--out", out, *args,
        "--heads", 3, "--head-restarts", 1,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    # the human summary lists every sub-head, lowest loss first
    assert r.output.count("  sub-head ") == 3, r.output
    info = json.loads((out / "run.json").read_text())
    p = info["parameters"]
    assert p["preset"] == "ji2019-mnist"
    assert (p["kernel_size"], p["lr"], p["n_repeats"]) == (5, 1e-4, 1)  # --repeats 1
    assert (p["n_heads"], p["n_clusters_over"], p["head_restarts"]) == (3, 6, 1)
    assert p["transforms"]["rotation_p"] == 0.5
    assert p["transforms"]["first_random_p"] == 0.5
    res = info["results"]
    assert len(res["head_losses"]) == len(res["head_accuracies"]) == 3
    assert res["head"] == int(np.argmin(res["head_losses"]))
    html = (out / "report.html").read_text()
    parser = _Tags()
    parser.feed(html)
    assert "subheads" in parser.classes and parser.classes.count("chosen") == 1


def test_unknown_preset_is_one_line_error(tmp_path, npz):
    r = run("iic", npz, "--k", 4, "--preset", "ji2019", "--out", tmp_path / "o", *FAST)
    _one_line_error(r, "Unknown preset 'ji2019'", "ji2019-mnist")
    assert not (tmp_path / "o").exists()


def test_self_labelling_from_the_cli_and_its_report(tmp_path, npz):
    r = run(
        "iic",
        npz,
        "--k",
        4,
        "--out",
        tmp_path / "a",
        "--self-label-epochs",
        2,
        "--confidence",
        0.6,
        "--format",
        "json",
        *FAST,
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["epochs"] == 3 and s["self_label_epochs"] == 2
    assert 0 <= s["confident_share"] <= 1
    run_json = json.loads((tmp_path / "a" / "run.json").read_text())
    phases = [h.get("phase", "iic") for h in run_json["history"]]
    assert phases == ["iic", "self-label", "self-label"]
    html = (tmp_path / "a" / "report.html").read_text()
    assert "Self-labelling per epoch" in html
    assert "self-labelling epochs" in html
    r = run("iic", npz, "--k", 4, "--out", tmp_path / "b", "--confidence", 1, *FAST)
    assert r.exit_code == 2 and "--confidence" in r.output
    assert "Traceback" not in r.output


def test_scan_cluster_head_from_the_cli_and_predict_with_it(tmp_path, npz):
    out = tmp_path / "a"
    r = run("iic", npz, "--k", 4, "--out", out, *FAST[:-1])  # the default head
    assert r.exit_code == 0, r.output
    assert "clusters from the SCAN head on the trunk's embeddings" in r.output
    info = json.loads((out / "run.json").read_text())
    s = info["results"]
    assert s["cluster_head"] == "scan"
    assert info["parameters"]["cluster_head"] == "scan"
    assert s["pixel_neighbors"] == info["parameters"]["pixel_neighbors"] == 5
    assert 0 <= s["iic_head_accuracy"] <= 1
    html = (out / "report.html").read_text()
    assert "a SCAN head on the trunk" in html
    assert "5 of each image&#39;s 20 neighbours from its pixels" in html
    # the report tells the clusters' head from IIC's sub-heads
    assert "The SCAN head&#39;s agreement with the known labels" in html
    assert "The IIC sub-head&#39;s agreement" in html
    assert "the clusters come from the SCAN head" in html
    table = pq.read_table(out / "assignments.parquet").to_pydict()
    # iic-predict goes through the saved SCAN head: the same clusters.
    r = run("iic-predict", out / "model", npz, "--out", tmp_path / "p", "--quiet")
    assert r.exit_code == 0, r.output
    again = pq.read_table(tmp_path / "p" / "assignments.parquet").to_pydict()
    np.testing.assert_array_equal(again["cluster"], table["cluster"])
    r = run(
        "iic", npz, "--k", 4, "--out", tmp_path / "b", "--cluster-head", "knn", *FAST
    )
    assert r.exit_code == 2 and "--cluster-head" in r.output
    assert "Traceback" not in r.output
    r = run("iic", npz, "--k", 4, "--out", tmp_path / "c", "--pixel-neighbors", 21)
    assert r.exit_code == 2 and "--pixel-neighbors" in r.output
    # 0: the head's neighbours from the trunk only
    out = tmp_path / "d"
    r = run("iic", npz, "--k", 4, "--out", out, "--pixel-neighbors", 0, *FAST[:-1])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "run.json").read_text())["results"]["pixel_neighbors"] == 0
    assert "its neighbours from the trunk only" in (out / "report.html").read_text()


def test_iic_student_epochs_predict_and_report(npz, tmp_path):
    out = tmp_path / "s"
    r = run("iic", npz, "--k", 4, "--out", out, "--student-epochs", 1, *FAST[:-1])
    assert r.exit_code == 0, r.output
    assert (
        "predicted by a student network (1 epoch) that learnt the SCAN head's "
        "clusters (accuracy" in r.output
    )
    info = json.loads((out / "run.json").read_text())
    s = info["results"]
    assert s["student_epochs"] == info["parameters"]["student_epochs"] == 1
    assert 0 <= s["teacher_accuracy"] <= 1 and 0 <= s["accuracy"] <= 1
    html = (out / "report.html").read_text()
    assert "student network" in html
    assert "The student network&#39;s agreement with the known labels" in html
    assert (
        "The SCAN head&#39;s agreement with the known labels per epoch (the student"
        in html
    )
    # iic-predict goes through the saved student: the same clusters
    table = pq.read_table(out / "assignments.parquet").to_pydict()
    r = run("iic-predict", out / "model", npz, "--out", tmp_path / "p", "--quiet")
    assert r.exit_code == 0, r.output
    again = pq.read_table(tmp_path / "p" / "assignments.parquet").to_pydict()
    np.testing.assert_array_equal(again["cluster"], table["cluster"])
    r = run("iic", npz, "--k", 4, "--out", tmp_path / "b", "--student-epochs", -1)
    assert r.exit_code == 2 and "--student-epochs" in r.output
    assert "Traceback" not in r.output
