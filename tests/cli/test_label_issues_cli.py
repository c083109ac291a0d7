"""``clusterlens label-issues`` end to end, on real data and bad inputs."""

from __future__ import annotations

import json
from html.parser import HTMLParser

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
    tags.feed((out / "report.html").read_text())
    assert len(tags.rows) == 24  # top 12 + bottom 12
    assert not any(s.startswith("http") for s in tags.srcs)


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
    out = tmp_path / "coco"
    r = run(
        "label-issues", coco / "instances_coco128_train2017.json", "--images",
        coco / "images", "--out", out, "--class", "person", "--top", 3,
        "--export", "--format", "json", "--folds", 3,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    table = pq.read_table(out / "label_issues.parquet")
    assert table.num_rows == payload["n_samples"] == 929  # non-crowd boxes
    assert payload["class"] == "person"
    tags = _Tags()
    tags.feed((out / "report.html").read_text())
    assert tags.imgs_in_row == [3] * 6  # mask, raw image, image + box + label
    assert all(s.startswith("data:image/png;base64,") for s in tags.srcs)
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
