"""Issue #17 (parameters, box readers, messages): bad input fails once, clearly.

Each test builds its bad input in ``tmp_path``, runs the CLI and checks the
exit code, one message naming the input, no traceback, and no output written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterlens.cli.main import cli


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def usage_error(r, *needles: str) -> None:
    """Exit 2 (click usage error) whose message names every needle."""
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    for n in needles:
        assert n in r.output, r.output


def one_line_error(r, *needles: str, kind: str | None = None) -> str:
    """Exit 1, one ``Error (...)`` line plus the hint; returns the line."""
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert "Traceback" not in r.output, r.output
    assert len(lines) == 2, r.output
    assert lines[0].startswith("Error"), r.output
    assert lines[1].startswith("hint:"), r.output
    if kind is not None:
        assert lines[0].startswith(f"Error ({kind})"), lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def no_output(out: Path) -> None:
    assert not out.exists(), sorted(p.name for p in out.parent.iterdir())
    hidden = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert not hidden, hidden


# --------------------------------------------------------------------------- #
# inputs
# --------------------------------------------------------------------------- #
@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 16, 16), dtype=np.uint8)
    path = tmp_path / "in" / "digits.npz"
    path.parent.mkdir()
    np.savez(path, images=images)
    return path


@pytest.fixture
def ws(tmp_path, npz):
    """A workspace of 40 small grey images."""
    ws = tmp_path / "ws"
    r = run("ingest", npz, "--out", ws, "--quiet")
    assert r.exit_code == 0, r.output
    return ws


def write_images(folder: Path, sizes: dict[str, tuple[int, int]]) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, (w, h) in sizes.items():
        Image.new("RGB", (w, h), (90, 120, 150)).save(folder / name)


def coco(
    path: Path,
    bboxes: list[list[float]],
    *,
    size: tuple[int, int] = (640, 480),
    category_ids: list[int] | None = None,
) -> Path:
    """A COCO file with one image and one annotation per bbox."""
    cats = category_ids or [1] * len(bboxes)
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": size[0], "height": size[1]}
        ],
        "annotations": [
            {
                "id": 100 + i,
                "image_id": 1,
                "category_id": c,
                "bbox": b,
                "area": 1.0,
                "iscrowd": 0,
            }
            for i, (b, c) in enumerate(zip(bboxes, cats, strict=True))
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def voc(folder: Path, name: str, size: tuple[int, int], boxes: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    objs = "".join(
        f"<object><name>{c}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for c, (x0, y0, x1, y1) in boxes
    )
    (folder / f"{name}.xml").write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


# --------------------------------------------------------------------------- #
# G 28: numeric and named options have bounds
# --------------------------------------------------------------------------- #
def test_cnn_image_size_too_large_is_a_usage_error(ws):
    """#17 row 28: features cnn --image-size 100000 was a traceback."""
    before = snapshot(ws)
    r = run("features", "cnn", ws, "--image-size", 100000)
    usage_error(r, "--image-size", "100000")
    assert snapshot(ws) == before


@pytest.mark.parametrize(
    "args, flag",
    [
        (("--input-size", 4000), "--input-size"),
        (("--threads", 100000), "--threads"),
        (("--device", "tpu"), "--device"),
    ],
)
def test_iic_out_of_range_options_are_usage_errors(tmp_path, npz, args, flag):
    """#17 row 28: iic --input-size 4000 / --threads 100000 / --device tpu."""
    out = tmp_path / "iic"
    r = run("iic", npz, "--k", 2, "--out", out, *args)
    usage_error(r, flag, str(args[1]))
    no_output(out)


def test_iic_predict_unknown_device_is_a_usage_error(tmp_path, npz):
    out = tmp_path / "pred"
    r = run("iic-predict", tmp_path / "model", npz, "--device", "tpu", "--out", out)
    usage_error(r, "--device", "tpu")
    no_output(out)


@pytest.mark.parametrize("device", ["cuda:x", "cpu:0:1", ""])
def test_malformed_device_strings_are_usage_errors(tmp_path, npz, device):
    out = tmp_path / "iic"
    r = run("iic", npz, "--k", 2, "--out", out, "--device", device)
    usage_error(r, "--device")


def test_kmeans_malformed_scheduler_is_a_usage_error(tmp_path):
    """#17 row 28: kmeans --scheduler notaurl printed a traceback at exit."""
    data = tmp_path / "X.npy"
    np.save(data, np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32))
    out = tmp_path / "km"
    r = run("kmeans", data, "-k", 2, "--scheduler", "notaurl", "--out", out)
    usage_error(r, "--scheduler", "notaurl")
    no_output(out)


def test_scheduler_address_forms():
    from clusterlens.cli._common import check_scheduler_address

    for ok in ("tcp://10.0.0.5:8786", "10.0.0.5:8786", "tls://host:1", "localhost:8786",
               "tcp://[::1]:8786", "inproc://abc"):  # fmt: skip
        assert check_scheduler_address(ok) == ok
    for bad in ("notaurl", "tcp://", "host:port", "http//x:1", "tcp://h:99999", ""):
        with pytest.raises(ValueError, match="scheduler"):
            check_scheduler_address(bad)


# --------------------------------------------------------------------------- #
# G 29: a diverging IIC run fails
# --------------------------------------------------------------------------- #
def test_iic_diverging_learning_rate_fails_and_writes_nothing(tmp_path, npz):
    """#17 row 29: iic --lr 1e30 exited 0 with NaN weights and probabilities."""
    pytest.importorskip("torch")
    out = tmp_path / "iic"
    r = run(
        "iic", npz, "--k", 2, "--lr", "1e30", "--epochs", 2, "--batch-size", 20,
        "--heads", 1, "--repeats", 1, "--k-over", 0, "--input-size", 16,
        "--width", 0.125, "--quiet", "--out", out,
    )  # fmt: skip
    one_line_error(r, "--lr", "1e+30", kind="invalid parameter")
    no_output(out)


# --------------------------------------------------------------------------- #
# G 30: a network with a useless output fails at load time
# --------------------------------------------------------------------------- #
def _exported(tmp_path: Path, body: str) -> Path:
    """A torch.export network (dynamic batch) whose output is useless."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = x.mean(dim=(2, 3))
            if body == "nan":
                return pooled * float("nan")
            if body == "zero":
                return pooled[:, :0]
            # finite on the blank probe, inf where a pixel is bright
            bright = (x.amax(dim=(1, 2, 3)) >= 1.0).to(x.dtype)
            return pooled / (1.0 - bright)[:, None]

    batch = torch.export.Dim("batch", min=1)
    ep = torch.export.export(
        Net().eval(), (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: batch},)
    )
    path = tmp_path / f"{body}.pt2"
    torch.export.save(ep, str(path))
    return path


@pytest.mark.parametrize("body, needle", [("nan", "NaN"), ("zero", "0-wide")])
def test_cnn_weights_with_useless_output_fail_naming_the_file(
    tmp_path, ws, body, needle
):
    """#17 row 30: a NaN / zero-width network passed, then `cluster` crashed."""
    weights = _exported(tmp_path, body)
    before = snapshot(ws)
    r = run("features", "cnn", ws, "--weights", weights, "--image-size", 32, "-q")
    line = one_line_error(r, str(weights), needle, kind="invalid input")
    assert "--weights" in line
    assert snapshot(ws) == before


def test_cnn_weights_non_finite_on_real_images_fail_at_embed_time(tmp_path, ws):
    """Blank probe inputs pass; bright real pixels give inf: still a clear error."""
    weights = _exported(tmp_path, "inf-on-bright")
    before = snapshot(ws)
    r = run("features", "cnn", ws, "--weights", weights, "--image-size", 32, "-q")
    one_line_error(r, str(weights), "not finite", kind="invalid input")
    assert snapshot(ws) == before


# --------------------------------------------------------------------------- #
# G 31: constant features
# --------------------------------------------------------------------------- #
def test_label_issues_on_constant_features_is_a_data_error(tmp_path):
    """#17 row 31: all-constant features raised LinAlgError (a traceback)."""
    X = np.ones((60, 5), dtype=np.float32)
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "X.npy", X)
    labels = np.repeat([0, 1, 2], 20)
    (tmp_path / "in" / "y.csv").write_text(
        "label\n" + "\n".join(map(str, labels)) + "\n"
    )
    before = snapshot(tmp_path / "in")
    out = tmp_path / "issues"
    r = run("label-issues", tmp_path / "in" / "X.npy", tmp_path / "in" / "y.csv",
            "--out", out, "--quiet")  # fmt: skip
    one_line_error(r, "X.npy", "constant", kind="invalid input")
    assert snapshot(tmp_path / "in") == before
    no_output(out)


# --------------------------------------------------------------------------- #
# H 32-33: boxes are clipped to their image, boxes outside it are dropped
# --------------------------------------------------------------------------- #
def test_anchors_clip_a_coco_box_wider_than_its_image(tmp_path):
    """#17 row 32: bbox [10, 10, 100000, 20] on a 640-wide image."""
    path = coco(tmp_path / "in" / "a.json",
                [[10, 10, 100000, 20], [0, 0, 50, 40], [5, 5, 30, 60]])  # fmt: skip
    out = tmp_path / "anchors"
    r = run("anchors", path, "-k", 2, "--n-init", 1, "--levels", 1, "--normalized",
            "--out", out, "--format", "json", "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    boxes = pq.read_table(out / "boxes.parquet").to_pydict()
    assert max(boxes["w"]) == pytest.approx(630.0 / 640.0)  # --normalized
    summary = json.loads(r.stdout)
    assert np.max(summary["anchors"]) <= 640.0  # not 100000 * 640 / 640
    assert summary["n_clipped"] == 1 and summary["n_outside"] == 0


def test_anchors_drop_a_voc_box_outside_its_image_and_say_so(tmp_path):
    """#17 row 33: VOC xmax=90000 / boxes wholly outside a 500-wide image."""
    xml = tmp_path / "Annotations"
    voc(xml, "a", (500, 400), [
        ("cat", (10, 10, 90000, 60)),     # clipped to x in [10, 500]
        ("dog", (600, 10, 700, 60)),      # wholly right of the image: dropped
        ("cat", (20, 30, 120, 200)),
    ])  # fmt: skip
    out = tmp_path / "anchors"
    r = run("anchors", xml, "-k", 2, "--n-init", 1, "--levels", 1, "--out", out,
            "--format", "json", "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["n_boxes"] == 2
    assert summary["n_clipped"] == 1 and summary["n_outside"] == 1
    boxes = pq.read_table(out / "boxes.parquet").to_pydict()
    # x from 9 (0-based) to 500, letterboxed from 500 to 640 pixels
    assert max(boxes["w"]) == pytest.approx(491 * 640 / 500)


def test_anchors_all_boxes_outside_the_image_is_a_clear_error(tmp_path):
    xml = tmp_path / "Annotations"
    voc(xml, "a", (500, 400), [("dog", (600, 10, 700, 60))])
    out = tmp_path / "anchors"
    r = run("anchors", xml, "-k", 1, "--out", out)
    one_line_error(r, "outside", kind="invalid input")
    no_output(out)


def test_label_issues_clips_coco_boxes_and_drops_those_outside(tmp_path):
    """#17 row 33 for label-issues: the same rule as the readers."""
    images = tmp_path / "in" / "images"
    write_images(images, {"a.png": (64, 48)})
    bboxes = [[2, 2, 10, 10]] * 12 + [[1, 1, 9000, 10]] + [[200, 200, 5, 5]]
    cats = [1, 2] * 6 + [1, 2]
    path = coco(tmp_path / "in" / "a.json", bboxes, size=(64, 48), category_ids=cats)
    from clusterlens.io import coco_box_samples

    with pytest.warns(UserWarning, match="1 box.*clipped.*1 .*outside"):
        boxes = coco_box_samples(path, images)
    assert len(boxes) == 13
    assert boxes.bbox[:, 0].min() >= 0
    assert (boxes.bbox[:, 0] + boxes.bbox[:, 2]).max() <= 64
    assert "113" not in set(boxes.annotation_id.tolist())


def test_ingest_boxes_clips_and_drops_like_the_readers(tmp_path):
    images = tmp_path / "in" / "images"
    write_images(images, {"a.png": (64, 48)})
    bboxes = [[2, 2, 10, 10], [1, 1, 9000, 12], [200, 200, 20, 20]]
    path = coco(tmp_path / "in" / "a.json", bboxes, size=(64, 48))
    out = tmp_path / "ws"
    r = run("ingest", path, "--boxes", "--out", out, "--format", "json", "--quiet")
    assert r.exit_code == 0, r.output
    items = pq.read_table(out / "items.parquet").to_pydict()
    assert len(items["item_id"]) == 2
    right = np.add(items["bbox_x"], items["bbox_w"])
    assert right.max() <= 64
    summary = json.loads(r.stdout)
    assert summary["n_clipped"] == 1 and summary["n_outside"] == 1


# --------------------------------------------------------------------------- #
# H 34: an unknown category id is rejected by every command
# --------------------------------------------------------------------------- #
def test_ingest_boxes_rejects_an_unknown_category_id(tmp_path):
    """#17 row 34: ingest --boxes dropped it silently; anchors rejected it."""
    images = tmp_path / "in" / "images"
    write_images(images, {"a.png": (64, 48)})
    path = coco(tmp_path / "in" / "a.json", [[2, 2, 10, 10], [3, 3, 12, 12]],
                size=(64, 48), category_ids=[1, 7])  # fmt: skip
    before = snapshot(tmp_path / "in")
    out = tmp_path / "ws"
    r = run("ingest", path, "--boxes", "--out", out)
    one_line_error(r, "a.json", "101", "category_id 7", kind="invalid input")
    assert snapshot(tmp_path / "in") == before
    no_output(out)
    r = run("anchors", path, "--out", tmp_path / "anchors")
    one_line_error(r, "a.json", "101", "category_id 7", kind="invalid input")


# --------------------------------------------------------------------------- #
# H 36: evaluate with a NaN cluster id
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("column", ["cluster", "label"])
def test_evaluate_nan_in_a_column_names_file_and_column(tmp_path, column):
    """#17 row 36: a NaN cluster id was counted as cluster -2**63."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cols = {
        "index": np.arange(6, dtype=np.int64),
        "cluster": np.array([0, 0, 1, 1, 2, 2], dtype=np.float64),
        "label": np.array([0, 0, 1, 1, 1, 1], dtype=np.float64),
    }
    cols[column][3] = np.nan
    pq.write_table(pa.table(cols), run_dir / "results.parquet")
    before = snapshot(run_dir)
    r = run("evaluate", run_dir, "--save")
    one_line_error(r, "results.parquet", repr(column), kind="invalid input")
    assert snapshot(run_dir) == before


def test_evaluate_fractional_cluster_id_is_an_error(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pq.write_table(
        pa.table({"index": [0, 1, 2], "cluster": [0.0, 1.5, 1.0], "label": [0, 1, 1]}),
        run_dir / "results.parquet",
    )
    r = run("evaluate", run_dir)
    one_line_error(r, "'cluster'", "integer", kind="invalid input")


# --------------------------------------------------------------------------- #
# H 37: the same file twice
# --------------------------------------------------------------------------- #
def test_anchors_refuse_the_same_file_twice(tmp_path, monkeypatch):
    """#17 row 37: `anchors good.json good.json` counted every box twice."""
    path = coco(tmp_path / "in" / "good.json", [[0, 0, 50, 40], [5, 5, 30, 60]])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "anchors"
    r = run("anchors", path, "in/good.json", "-k", 1, "--out", out)
    usage_error(r, "good.json", "twice")
    no_output(out)


# --------------------------------------------------------------------------- #
# Messages: CLI flags, not keyword arguments; hints that fit the command
# --------------------------------------------------------------------------- #
def test_kmeans_unknown_suffix_names_format_in_flag(tmp_path):
    data = tmp_path / "X.dat"
    data.write_bytes(b"\x00" * 64)
    r = run("kmeans", data, "-k", 2, "--out", tmp_path / "km")
    line = one_line_error(r, "--format-in")
    assert "format=" not in line


def test_anchors_yolo_without_images_names_the_flags(tmp_path):
    labels = tmp_path / "data" / "labels"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    r = run("anchors", labels, "--out", tmp_path / "a")
    line = one_line_error(r, "--images", "--label-img-size")
    assert "images_dir=" not in line and "img_size=" not in line


def test_library_messages_keep_keyword_names(tmp_path):
    from clusterlens.exceptions import DataValidationError
    from clusterlens.io import read_boxes

    labels = tmp_path / "data" / "labels"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataValidationError, match=r"images_dir=.*img_size="):
        read_boxes(labels)


@pytest.mark.parametrize(
    "command, args, target, has_wm",
    [
        ("evaluate", ["RUN"], "clusterlens.pipelines.evaluate.evaluate_run", False),
        ("kmeans", ["X", "-k", 2, "--out", "OUT"], "clusterlens.cluster.KMeans.fit",
         True),
    ],
)  # fmt: skip
def test_out_of_memory_hint_fits_the_command(
    tmp_path, monkeypatch, command, args, target, has_wm
):
    np.save(tmp_path / "X.npy", np.zeros((10, 2), np.float32))
    (tmp_path / "run").mkdir()

    def boom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(target, boom)
    subs = {"RUN": tmp_path / "run", "X": tmp_path / "X.npy", "OUT": tmp_path / "o"}
    r = run(command, *[subs.get(a, a) if isinstance(a, str) else a for a in args])
    line = one_line_error(r, "out of memory")
    assert ("--working-memory" in line) is has_wm, line


@pytest.mark.parametrize(
    "command, target, has_ckpt",
    [
        ("evaluate", "clusterlens.pipelines.evaluate.evaluate_run", False),
        ("kmeans", "clusterlens.cluster.KMeans.fit", True),
    ],
)
def test_interrupt_hint_mentions_checkpoint_only_where_there_is_one(
    tmp_path, monkeypatch, command, target, has_ckpt
):
    np.save(tmp_path / "X.npy", np.zeros((10, 2), np.float32))
    (tmp_path / "run").mkdir()

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupt)
    args = (
        [tmp_path / "run"]
        if command == "evaluate"
        else [tmp_path / "X.npy", "-k", 2, "--out", tmp_path / "o"]
    )
    r = run(command, *args)
    assert r.exit_code == 130, r.output
    assert "Interrupted" in r.output
    assert ("--checkpoint" in r.output) is has_ckpt, r.output
    assert not (tmp_path / "o").exists()


def test_voc_infinite_coordinate_is_reported_as_not_finite(tmp_path):
    xml = tmp_path / "Annotations"
    voc(xml, "a", (500, 400), [("cat", ("inf", 10, 90, 60))])
    r = run("anchors", xml, "--out", tmp_path / "a")
    line = one_line_error(r, "a.xml", "not finite", kind="invalid input")
    assert "<= 0" not in line


def test_huge_finite_coco_size_is_not_called_nan_or_infinity(tmp_path):
    """1e38 is finite: say what is wrong with it (it was 'NaN or infinity')."""
    path = coco(tmp_path / "a.json", [[0, 0, 50, 40]], size=(int(1e38), 480))
    r = run("anchors", path, "-k", 1, "--levels", 1, "--out", tmp_path / "a")
    line = one_line_error(r, "a.json", "larger than any image", kind="invalid input")
    assert "NaN" not in line and "infinit" not in line, line
