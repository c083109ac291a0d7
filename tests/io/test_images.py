"""Tests of the image readers: folders, IDX (MNIST) and .npz."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clusterlens.exceptions import (
    DataQualityWarning,
    DataValidationError,
    InvalidParameterError,
)
from clusterlens.io import ImageArray, list_image_folder, load_image_array, read_idx


def _write_folder(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Two classes under train/ and one file under val/, all 12x10 RGB."""
    written = {}
    for rel in [
        "train/cat/a.png",
        "train/cat/b.png",
        "train/dog/c.png",
        "val/dog/d.png",
    ]:
        arr = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(p)
        written[rel] = arr
    return written


def test_folder_labels_split_and_pixels(tmp_path, global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    written = _write_folder(tmp_path, rng)
    data = load_image_array(tmp_path)
    assert isinstance(data, ImageArray)
    assert data.images.shape == (4, 12, 10, 3) and data.images.dtype == np.uint8
    assert data.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1])
    assert data.labels.dtype == np.int64
    assert data.split == ["train", "train", "train", "val"]
    assert data.paths is not None and data.paths[2].endswith("c.png")
    # PNG is lossless: pixels round-trip exactly
    np.testing.assert_array_equal(data.images[3], written["val/dog/d.png"])
    val = load_image_array(tmp_path, split="val")
    assert len(val) == 1 and val.split == ["val"]
    np.testing.assert_array_equal(val.labels, [1])


def test_folder_mode_and_size(tmp_path):
    rng = np.random.default_rng(0)
    written = _write_folder(tmp_path, rng)
    gray = load_image_array(tmp_path, mode="L")
    assert gray.images.shape == (4, 12, 10) and gray.mode == "L"
    ref = np.asarray(Image.fromarray(written["train/cat/a.png"]).convert("L"))
    np.testing.assert_array_equal(gray.images[0], ref)
    small = load_image_array(tmp_path, size=(6, 5))
    assert small.images.shape == (4, 6, 5, 3)


def test_mixed_sizes_need_size(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (10, 12)).save(tmp_path / "a" / "x.png")
    Image.new("RGB", (20, 8)).save(tmp_path / "a" / "y.png")
    with pytest.raises(
        DataValidationError, match=r"2 different sizes.*size=\(height, width\)"
    ):
        load_image_array(tmp_path)
    assert load_image_array(tmp_path, size=(8, 8)).images.shape == (2, 8, 8, 3)


def test_mixed_gray_and_colour_become_rgb(tmp_path):
    Image.new("L", (4, 4), 7).save(tmp_path / "g.png")
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "c.png")
    data = load_image_array(tmp_path)
    assert data.images.shape == (2, 4, 4, 3)
    assert data.labels is None and data.class_names is None and data.split is None
    np.testing.assert_array_equal(data.images[1, 0, 0], [7, 7, 7])  # g.png sorts second


def test_empty_folder_raises(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataValidationError, match="holds no image files"):
        load_image_array(tmp_path)
    with pytest.raises(DataValidationError, match="does not exist"):
        load_image_array(tmp_path / "missing")


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    (tmp_path / "ok").mkdir()
    Image.new("RGB", (5, 5), (9, 9, 9)).save(tmp_path / "ok" / "good.png")
    (tmp_path / "ok" / "bad.jpg").write_bytes(b"this is not a jpeg")
    with pytest.warns(
        DataQualityWarning, match=r"Skipped 1 of 2 image files.*bad\.jpg"
    ):
        data = load_image_array(tmp_path)
    assert len(data) == 1 and data.skipped[0].endswith("bad.jpg")
    (tmp_path / "ok" / "good.png").unlink()
    # more than half unreadable: an error naming the first file and why (#17)
    with pytest.raises(
        DataValidationError, match=r"1 of the 1 image files.*bad\.jpg.*cannot identify"
    ):
        load_image_array(tmp_path)


def test_missing_split_raises(tmp_path):
    _write_folder(tmp_path, np.random.default_rng(0))
    with pytest.raises(DataValidationError, match=r"no 'test' split.*train, val"):
        load_image_array(tmp_path, split="test")


def test_bad_parameters(tmp_path):
    _write_folder(tmp_path, np.random.default_rng(0))
    with pytest.raises(
        InvalidParameterError, match=r"'mode' parameter.*among \{'L', 'RGB'\}"
    ):
        load_image_array(tmp_path, mode="rgb")
    with pytest.raises(InvalidParameterError, match="'size' parameter"):
        load_image_array(tmp_path, size=(0, 4))
    with pytest.raises(InvalidParameterError, match="'size' parameter"):
        load_image_array(tmp_path, size=32)  # type: ignore[arg-type]


def _write_idx(path: Path, arr: np.ndarray, code: int) -> None:
    header = bytes([0, 0, code, arr.ndim]) + np.array(arr.shape, ">i4").tobytes()
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def test_idx_folder_train_then_test(tmp_path):
    rng = np.random.default_rng(1)
    tr = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    te = rng.integers(0, 256, (2, 4, 3), dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", te, 0x08)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([3, 4], np.uint8), 0x08)
    _write_idx(tmp_path / "train-images-idx3-ubyte", tr, 0x08)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(5, dtype=np.uint8), 0x08)
    data = load_image_array(tmp_path)
    np.testing.assert_array_equal(data.images, np.concatenate([tr, te]))
    np.testing.assert_array_equal(data.labels, [0, 1, 2, 3, 4, 3, 4])
    assert data.split == ["train"] * 5 + ["test"] * 2
    test = load_image_array(tmp_path, split="test", mode="RGB", size=(8, 6))
    assert test.images.shape == (2, 8, 6, 3)
    np.testing.assert_array_equal(test.labels, [3, 4])


def test_idx_truncated_raises(tmp_path):
    p = tmp_path / "x-images-idx3-ubyte"
    _write_idx(p, np.zeros((3, 2, 2), np.uint8), 0x08)
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(DataValidationError, match="truncated or corrupt"):
        read_idx(p)


def test_real_mnist_test_digits(shared_data):
    data = load_image_array(shared_data / "mnist", split="test")
    assert data.images.shape == (10000, 28, 28) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(
        data.labels[:5], [7, 2, 1, 0, 4]
    )  # canonical first labels
    assert np.bincount(data.labels).tolist()[:2] == [980, 1135]


def test_npz_source(tmp_path):
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=imgs, labels=np.array([1, 0, 1]))
    data = load_image_array(tmp_path / "d.npz")
    np.testing.assert_array_equal(data.images, imgs)
    np.testing.assert_array_equal(data.labels, [1, 0, 1])
    gray = load_image_array(tmp_path / "d.npz", mode="L")
    ref = np.stack([np.asarray(Image.fromarray(i).convert("L")) for i in imgs])
    assert np.abs(gray.images.astype(int) - ref).max() <= 1
    np.savez(tmp_path / "bad.npz", pixels=imgs)
    with pytest.raises(DataValidationError, match="no 'images' array"):
        load_image_array(tmp_path / "bad.npz")


def test_real_hymenoptera_subset(shared_data, tmp_path):
    tar = shared_data / "hymenoptera" / "hymenoptera_data.tar"
    with tarfile.open(tar) as tf:
        members = [m for m in tf.getmembers() if m.isfile()]
        pick = [m for m in members if "/val/ants/" in m.name][:3]
        pick += [m for m in members if "/train/bees/" in m.name][:3]
        tf.extractall(tmp_path, members=pick, filter="data")
    listing = list_image_folder(tmp_path)
    assert listing.class_names == ["ants", "bees"]
    data = load_image_array(tmp_path, size=(48, 64))
    assert data.images.shape == (6, 48, 64, 3)
    assert sorted(data.split or []) == ["train"] * 3 + ["val"] * 3
    assert data.labels is not None and int(data.labels.sum()) == 3


def test_min_size_decodes_a_jpeg_at_a_reduced_dct_scale(tmp_path):
    """min_size: the smallest JPEG DCT scale still >= it in both sides (close
    to the whole decode shrunk); PNG and box crops decode whole."""
    from clusterlens.io._images import decode_image, read_image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    px = np.clip(base + rng.integers(0, 8, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(px).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(px).save(tmp_path / "a.png")
    assert decode_image(tmp_path / "a.jpg").size == (640, 480)
    for want, got in [
        ((60, 60), (80, 60)),
        ((64, 64), (160, 120)),
        ((224, 224), (320, 240)),
        ((400, 100), (640, 480)),
    ]:
        assert decode_image(tmp_path / "a.jpg", min_size=want).size == got
    assert decode_image(tmp_path / "a.png", min_size=(64, 64)).size == (640, 480)
    small = read_image(tmp_path / "a.jpg", size=(60, 80), min_size=(60, 80))
    whole = read_image(tmp_path / "a.jpg", size=(60, 80))
    assert small.shape == whole.shape == (60, 80, 3)
    assert np.abs(small.astype(int) - whole.astype(int)).mean() < 6


def test_probe_image_fails_where_a_full_decode_fails(tmp_path):
    """probe_image (ingest's check, a JPEG at 1/8 scale) gives the header's size
    and refuses exactly the files a full decode refuses: truncated at several
    points, bytes overwritten mid-stream, a PNG cut short, not an image."""
    from clusterlens.io._images import UnreadableImageError, decode_image, probe_image

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:300, 0:410]
    px = np.stack([xx % 256, yy % 256, (xx * yy) % 256], -1).astype(np.uint8)
    px = np.clip(px + rng.integers(0, 20, px.shape), 0, 255).astype(np.uint8)
    Image.fromarray(px).save(tmp_path / "ok.jpg", quality=90)
    Image.fromarray(px).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.jpg").read_bytes()
    files = {"ok.jpg": data, "ok.png": (tmp_path / "ok.png").read_bytes()}
    for frac in (0.2, 0.5, 0.9, 0.995):
        files[f"cut{frac}.jpg"] = data[: int(len(data) * frac)]
    smashed = bytearray(data)
    smashed[len(data) // 2 : len(data) // 2 + 400] = rng.integers(0, 256, 400).tobytes()
    files["smashed.jpg"] = bytes(smashed)
    files["cut.png"] = files["ok.png"][: len(files["ok.png"]) // 2]
    files["text.jpg"] = b"not an image"

    def outcome(fn, p):
        try:
            return fn(p)
        except UnreadableImageError:
            return None

    for name, raw in files.items():
        p = tmp_path / "t" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(raw)
        full = outcome(decode_image, p)
        probed = outcome(probe_image, p)
        assert (full is None) == (probed is None), name
        if full is not None:
            assert probed == full.size == (410, 300), name
    assert outcome(probe_image, tmp_path / "t" / "cut0.5.jpg") is None
