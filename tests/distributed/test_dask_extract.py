"""Feature extraction and bag-of-words quantization on a 2-worker Dask LocalCluster,
against the local backend: the same files, a killed worker, resume, the CLI."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip(
    "distributed", reason="the Dask backend needs dask[distributed] (the [dist] extra)"
)
pytest.importorskip("cv2")

from clusterlens._config import config_context
from clusterlens.cli.main import cli
from clusterlens.distributed import dask_client
from clusterlens.distributed._map import map_shards, shard_bounds
from clusterlens.exceptions import DataValidationError
from clusterlens.io import create_workspace, open_workspace
from clusterlens.pipelines import features as feat
from clusterlens.pipelines.bow import run_bow
from clusterlens.pipelines.features import _sift

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SIFT_FILES = ("descriptors.npy", "offsets.npy", "keypoints.npy")
SIFT_KW = {"max_keypoints": 150, "max_size": 160}


@pytest.fixture(scope="module")
def client():
    with dask_client(n_workers=2, threads_per_worker=1) as c:
        yield c


@pytest.fixture
def on_dask(client):
    """Library calls in the block run on the fixture's cluster (as --scheduler)."""
    with config_context(backend="dask", scheduler=client.scheduler_info()["address"]):
        yield client


@pytest.fixture(scope="module")
def coco_ws(tmp_path_factory):
    """The 128 real COCO photos as a workspace (images read from shared data)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the repository")
    root = tmp_path_factory.mktemp("coco") / "ws"
    root.mkdir()
    create_workspace(
        SHARED_DATA / "coco-sample" / "instances_coco128_train2017.json", root
    )
    return open_workspace(root)


@pytest.fixture(scope="module")
def local_sift(coco_ws, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "sift"
    summary = feat.run_sift_features(coco_ws, out, n_jobs=2, backend="local", **SIFT_KW)
    return out, summary


@pytest.fixture(scope="module")
def small_ws(tmp_path_factory):
    """24 synthetic images (textured, so SIFT finds keypoints), one unreadable-free."""
    d = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    base = rng.random((24, 12, 12))
    imgs = np.kron(base, np.ones((6, 6)))  # 72x72 blocks: corners for SIFT
    imgs = (imgs * 200 + rng.random(imgs.shape) * 55).astype(np.uint8)
    np.savez(d / "d.npz", images=imgs)
    (d / "ws").mkdir()
    return create_workspace(d / "d.npz", d / "ws")


def _same_bytes(a: Path, b: Path, names) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_shard_bounds_and_ordered_results(client):
    assert shard_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_bounds(0, 4) == []
    # range(lo, hi, 1) on the workers: results come back in shard order
    got = map_shards(range, shard_bounds(10, 3), 1, client=client)
    assert [list(r) for r in got] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    seen: dict[int, list[int]] = {}
    none = map_shards(
        range,
        shard_bounds(7, 2),
        1,
        client=client,
        consume=lambda i, r: seen.update({i: list(r)}),
    )
    assert none == [None] * 4
    assert seen == {0: [0, 1], 1: [2, 3], 2: [4, 5], 3: [6]}


def test_sift_dask_equals_local_byte_for_byte(coco_ws, local_sift, on_dask, tmp_path):
    ref, ref_summary = local_sift
    summary = feat.run_sift_features(coco_ws, tmp_path / "sift", **SIFT_KW)
    _same_bytes(tmp_path / "sift", ref, SIFT_FILES)
    assert summary["n_descriptors"] == ref_summary["n_descriptors"] > 5_000
    params = json.loads((tmp_path / "sift" / "run.json").read_text())["parameters"]
    assert params["backend"] == "dask" and params["shard_items"] == 8
    assert not (tmp_path / ".sift.work").exists()
    ref_params = json.loads((ref / "run.json").read_text())["parameters"]
    assert ref_params["backend"] == "local"


def test_killed_worker_mid_extraction_gives_undisturbed_output(
    coco_ws, local_sift, on_dask, tmp_path
):
    """SIGKILL a worker process once some shards are done: the run ends as
    an undisturbed one (its lost task reruns; part files are whole or absent)."""
    client = on_dask
    ref, _ = local_sift
    parts = tmp_path / ".sift.work" / "shards"
    n_shards = len(shard_bounds(len(coco_ws), 4))
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    out: dict[str, object] = {}

    address = client.scheduler_info()["address"]

    def run() -> None:
        try:  # (the configuration is per thread)
            with config_context(backend="dask", scheduler=address):
                out["res"] = feat.run_sift_features(
                    coco_ws, tmp_path / "sift", shard_items=4, **SIFT_KW
                )
        except BaseException as e:  # reported below
            out["err"] = e

    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 60
    while not (parts.is_dir() and len(list(parts.glob("shard-*.npz"))) >= 3):
        assert time.monotonic() < deadline and th.is_alive(), out.get("err")
        time.sleep(0.01)
    done_at_kill = len(list(parts.glob("shard-*.npz")))
    os.kill(victim, signal.SIGKILL)
    assert done_at_kill < n_shards and th.is_alive()  # killed in the middle
    th.join(timeout=120)
    assert not th.is_alive()
    assert "err" not in out, out.get("err")
    _same_bytes(tmp_path / "sift", ref, SIFT_FILES)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert victim not in client.run(os.getpid).values()


def test_interrupted_dask_run_resumes_from_finished_shards(
    small_ws, on_dask, tmp_path, monkeypatch
):
    ref = tmp_path / "ref"
    feat.run_sift_features(small_ws, ref, backend="local", max_keypoints=40)
    real = _sift._write_sift

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(_sift, "_write_sift", crash)
    with pytest.raises(KeyboardInterrupt):
        feat.run_sift_features(
            small_ws, tmp_path / "sift", shard_items=4, max_keypoints=40
        )
    assert not (tmp_path / "sift").exists()
    parts = sorted((tmp_path / ".sift.work" / "shards").glob("shard-*.npz"))
    assert len(parts) == 6
    for p in parts[::2]:  # as if the run had stopped with half the shards done
        p.unlink()
    monkeypatch.setattr(_sift, "_write_sift", real)
    summary = feat.run_sift_features(
        small_ws, tmp_path / "sift", shard_items=4, max_keypoints=40
    )
    assert summary["resumed_from_item"] == 12
    _same_bytes(tmp_path / "sift", ref, SIFT_FILES)
    assert not (tmp_path / ".sift.work").exists()
    # Another shard size starts over instead of misreading the part files.
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(_sift, "_write_sift", crash)
        feat.run_sift_features(
            small_ws, tmp_path / "s2", shard_items=4, max_keypoints=40
        )
    monkeypatch.setattr(_sift, "_write_sift", real)
    summary = feat.run_sift_features(
        small_ws, tmp_path / "s2", shard_items=5, max_keypoints=40
    )
    assert summary["resumed_from_item"] == 0
    _same_bytes(tmp_path / "s2", ref, SIFT_FILES)


def test_bow_quantization_dask_equals_local(coco_ws, local_sift, client, tmp_path):
    from clusterlens.vocab import VisualVocabulary

    sift, _ = local_sift
    X = np.load(sift / "descriptors.npy")
    voc = VisualVocabulary(n_words=40, random_state=0, max_iter=5).fit(X[::5])
    voc.save(tmp_path / "vocab")
    (tmp_path / "loc").mkdir()
    (tmp_path / "dsk").mkdir()
    kw = {"vocab": tmp_path / "vocab.npz", "sift_dir": sift}
    a = run_bow(coco_ws, tmp_path / "loc", backend="local", **kw)
    address = client.scheduler_info()["address"]
    with config_context(scheduler=address):
        b = run_bow(coco_ws, tmp_path / "dsk", backend="dask", shard_rows=4000, **kw)
    words = np.load(tmp_path / "dsk" / "words.npy")
    np.testing.assert_array_equal(words, voc.transform(X))  # a real quantization
    assert len(np.unique(words)) > 30
    _same_bytes(
        tmp_path / "loc",
        tmp_path / "dsk",
        ("words.npy", "counts.npz", "tfidf.npz", "idf.npy"),
    )
    assert a["words_used"] == b["words_used"]
    params = json.loads((tmp_path / "dsk" / "run.json").read_text())["parameters"]
    assert params["backend"] == "dask" and params["shard_rows"] == 4000


def test_pixels_dask_equal_local(small_ws, on_dask, tmp_path):
    kw = {"size": 16, "mode": "L"}
    (tmp_path / "pl").mkdir()
    (tmp_path / "pd").mkdir()
    a = feat.run_pixel_features(small_ws, tmp_path / "pl", backend="local", **kw)
    b = feat.run_pixel_features(small_ws, tmp_path / "pd", shard_items=5, **kw)
    _same_bytes(tmp_path / "pl", tmp_path / "pd", ("features.npy",))
    assert a["dim"] == b["dim"] == 256
    assert np.load(tmp_path / "pd" / "features.npy").std() > 0.1


def test_cnn_dask_equals_local(small_ws, on_dask, tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "cl").mkdir()
    (tmp_path / "cd").mkdir()
    kw = {"image_size": 64, "batch_size": 4}
    feat.run_cnn_features(small_ws, tmp_path / "cl", backend="local", **kw)
    feat.run_cnn_features(small_ws, tmp_path / "cd", shard_items=12, **kw)
    a = np.load(tmp_path / "cl" / "features.npy")
    b = np.load(tmp_path / "cd" / "features.npy")
    assert a.shape == (24, 1280) and np.abs(a).max() > 0.1
    # Equal up to float rounding (torch may order sums differently per batch).
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    run = json.loads((tmp_path / "cd" / "run.json").read_text())["parameters"]
    assert run["backend"] == "dask" and run["shard_items"] == 12


def test_cnn_dask_with_an_exported_network_equals_local(small_ws, on_dask, tmp_path):
    """Workers load a torch.export file themselves; a bad file fails before any task."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 6, 3, stride=2)
    net = torch.nn.Sequential(conv, torch.nn.ReLU()).eval()
    model = tmp_path / "net.pt2"
    batch = torch.export.Dim("batch", min=1)
    ep = torch.export.export(
        net, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(ep, str(model))
    kw = {"image_size": 32, "batch_size": 4, "weights": model}
    for d in ("el", "ed"):
        (tmp_path / d).mkdir()
    feat.run_cnn_features(small_ws, tmp_path / "el", backend="local", **kw)
    feat.run_cnn_features(small_ws, tmp_path / "ed", shard_items=12, **kw)
    a = np.load(tmp_path / "el" / "features.npy")
    b = np.load(tmp_path / "ed" / "features.npy")
    assert a.shape == (24, 6) and np.abs(a).max() > 0.01
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    run = json.loads((tmp_path / "ed" / "run.json").read_text())["parameters"]
    assert run["arch"] == "torch.export" and run["backend"] == "dask"
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a model")
    (tmp_path / "ej").mkdir()
    with pytest.raises(DataValidationError, match=r"junk\.pth"):
        feat.run_cnn_features(small_ws, tmp_path / "ej", weights=junk, image_size=32)


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_sift_and_bow_on_dask(small_ws, tmp_path):
    ws = small_ws.root
    r = _run("features", "sift", ws, "--out", tmp_path / "loc", "-q")
    assert r.exit_code == 0, r.output
    # No scheduler: a LocalCluster is started and closed by the command.
    r = _run(
        "features", "sift", ws, "--backend", "dask", "--out", tmp_path / "dsk", "-q"
    )
    assert r.exit_code == 0, r.output
    _same_bytes(tmp_path / "loc", tmp_path / "dsk", SIFT_FILES)
    run = json.loads((tmp_path / "dsk" / "run.json").read_text())
    assert run["parameters"]["backend"] == "dask"


def test_cli_bow_on_a_scheduler(coco_ws, local_sift, client, tmp_path):
    from clusterlens.vocab import VisualVocabulary

    sift, _ = local_sift
    X = np.load(sift / "descriptors.npy")
    VisualVocabulary(n_words=16, random_state=0, max_iter=3).fit(X[::9]).save(
        tmp_path / "v" / "vocab"
    )
    base = ["bow", coco_ws.root, "--sift", sift, "--vocab", tmp_path / "v", "-q"]
    assert _run(*base, "--out", tmp_path / "a").exit_code == 0
    address = client.scheduler_info()["address"]
    r = _run(*base, "--out", tmp_path / "b", "--scheduler", address)
    assert r.exit_code == 0, r.output
    _same_bytes(tmp_path / "a", tmp_path / "b", ("words.npy", "counts.npz"))
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["parameters"]["backend"] == "dask"


def test_cli_unreachable_scheduler_fails_fast_with_one_line(small_ws, tmp_path):
    t0 = time.perf_counter()
    r = _run(
        "features",
        "sift",
        small_ws.root,
        "--out",
        tmp_path / "x",
        "--scheduler",
        "tcp://127.0.0.1:1",
        "-q",
    )
    assert time.perf_counter() - t0 < 30
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    errors = [ln for ln in r.output.splitlines() if "tcp://127.0.0.1:1" in ln]
    assert len(errors) == 1 and "Cannot reach the Dask scheduler" in errors[0]
    assert not (tmp_path / "x").exists()
    r = _run(
        "features",
        "sift",
        small_ws.root,
        "--backend",
        "local",
        "--scheduler",
        "tcp://h:1",
    )
    assert r.exit_code == 2 and "--scheduler needs --backend dask" in r.output
