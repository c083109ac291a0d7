"""VisualVocabulary and ``clusterlens vocab``."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterlens.cli.main import cli
from clusterlens.exceptions import DataValidationError, NotFittedError
from clusterlens.io import write_bvecs
from clusterlens.vocab import VisualVocabulary


def _sift_like(seed, n=3000, d=32, k=12):
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, 200, (k, d))
    X = centers[rng.integers(k, size=n)] + rng.integers(-8, 8, (n, d))
    return np.clip(X, 0, 255).astype(np.uint8)


def test_transform_is_the_exact_nearest_word(global_random_seed):
    X = _sift_like(global_random_seed)
    vocab = VisualVocabulary(16, random_state=global_random_seed).fit(X)
    C = vocab.centers_.astype(np.float64)
    Xf = X.astype(np.float64)
    d2 = (Xf**2).sum(1)[:, None] - 2 * Xf @ C.T + (C**2).sum(1)[None, :]
    words = vocab.transform(X)
    agree = np.mean(words == d2.argmin(axis=1))
    assert agree >= 0.999, agree  # float32 scores: only exact ties may differ
    assert words.dtype == np.int64


def test_sample_fits_on_a_subset_and_assigns_all(tmp_path):
    X = _sift_like(0, n=5000)
    path = tmp_path / "x.bvecs"
    write_bvecs(path, X)
    vocab = VisualVocabulary(12, sample=1000, random_state=0).fit(path)
    assert vocab.n_fit_samples_ == 1000
    assert vocab.transform(path).shape == (5000,)


def test_save_load_and_from_centers(tmp_path):
    X = _sift_like(1)
    vocab = VisualVocabulary(8, random_state=0).fit(X)
    vocab.save(tmp_path / "v")
    back = VisualVocabulary.load(tmp_path / "v.npz")
    np.testing.assert_array_equal(back.centers_, vocab.centers_)
    np.testing.assert_array_equal(back.transform(X), vocab.transform(X))
    wrapped = VisualVocabulary.from_centers(vocab.centers_)
    np.testing.assert_array_equal(wrapped.transform(X), vocab.transform(X))


def test_errors():
    X = _sift_like(2)
    with pytest.raises(NotFittedError):
        VisualVocabulary(4).transform(X)
    vocab = VisualVocabulary(4, random_state=0).fit(X)
    with pytest.raises(
        DataValidationError, match="16 dimensions but the vocabulary's words have 32"
    ):
        vocab.transform(np.zeros((5, 16), np.uint8))
    with pytest.raises(DataValidationError, match="finite 2-D"):
        VisualVocabulary.from_centers(np.zeros(5))


def test_vocab_cli_on_real_sift(tmp_path, shared_data):
    path = shared_data / "sift" / "coco128_sift_opencv.npz"
    out = tmp_path / "v"
    r = CliRunner().invoke(
        cli,
        [
            "vocab",
            str(path),
            "-k",
            "64",
            "--sample",
            "20000",
            "--max-iter",
            "5",
            "--out",
            str(out),
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["schema"] == "clusterlens.vocab/1"
    assert payload["n_descriptors"] == 103311 and payload["n_fit_samples"] == 20000
    table = pq.read_table(out / "assignments.parquet")
    assert table.num_rows == 103311 and table["word"].to_numpy().max() < 64
    assert VisualVocabulary.load(out / "vocab").centers_.shape == (64, 128)


def test_vocab_cli_k_too_large(tmp_path):
    np.save(tmp_path / "x.npy", _sift_like(3, n=50))
    r = CliRunner().invoke(
        cli,
        ["vocab", str(tmp_path / "x.npy"), "-k", "100", "--out", str(tmp_path / "o")],
    )
    assert r.exit_code == 1 and "larger than the number of descriptors" in r.stderr
    assert not (tmp_path / "o").exists()


def _vocab_cli(*args):
    return CliRunner().invoke(cli, ["vocab", *map(str, args)])


def test_index_quantizer_agrees_with_brute_force(shared_data):
    with np.load(shared_data / "sift" / "coco128_sift_opencv.npz") as z:
        X = z["descriptors"][:30_000]
    vocab = VisualVocabulary(4096, max_iter=3, random_state=0).fit(X)
    assert vocab.mode_ == "large" and vocab.quantizer_ == "index"
    C = vocab.centers_.astype(np.float64)
    Xq = X[:5000].astype(np.float64)
    d2 = (Xq**2).sum(1)[:, None] - 2 * Xq @ C.T + (C**2).sum(1)[None, :]
    words = vocab.transform(X[:5000])
    rate = np.mean(words == d2.argmin(1))
    assert rate >= 0.99, rate
    assert vocab.agreement(X[:5000], sample=5000) == pytest.approx(rate, abs=0.002)
    exact = VisualVocabulary.from_centers(vocab.centers_)
    exact.quantizer = "exact"
    assert np.mean(exact.transform(X[:5000]) == d2.argmin(1)) >= 0.999


def test_vocab_cli_large_k_checkpoint_and_resume(tmp_path):
    rng = np.random.default_rng(0)
    X = np.clip(rng.normal(100, 30, (6000, 16)), 0, 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", X)
    common = ["-k", 512, "--mode", "large", "--seed", 1, "--format", "json"]
    r = _vocab_cli(
        tmp_path / "x.npy", *common, "--max-iter", 8, "--out", tmp_path / "a"
    )
    assert r.exit_code == 0, r.output
    full = json.loads(r.stdout)
    assert full["mode"] == "large" and full["quantizer"] == "fit"
    assert 0.9 <= full["quantizer_agreement"] <= 1.0
    ck = tmp_path / "ck"
    r = _vocab_cli(
        tmp_path / "x.npy",
        *common,
        "--max-iter",
        3,
        "--checkpoint",
        ck,
        "--out",
        tmp_path / "b",
    )
    assert r.exit_code == 0, r.output
    r = _vocab_cli(
        tmp_path / "x.npy",
        *common,
        "--max-iter",
        8,
        "--resume",
        ck,
        "--out",
        tmp_path / "c",
    )
    assert r.exit_code == 0, r.output
    a = VisualVocabulary.load(tmp_path / "a" / "vocab")
    c = VisualVocabulary.load(tmp_path / "c" / "vocab")
    np.testing.assert_array_equal(a.centers_, c.centers_)
    wa = pq.read_table(tmp_path / "a" / "assignments.parquet")["word"].to_numpy()
    wc = pq.read_table(tmp_path / "c" / "assignments.parquet")["word"].to_numpy()
    np.testing.assert_array_equal(wa, wc)
    run = json.loads((tmp_path / "c" / "run.json").read_text())
    assert run["parameters"]["mode"] == "large"
    # a checkpoint of other parameters, or a corrupt one: one message, exit 1
    r = _vocab_cli(
        tmp_path / "x.npy",
        "-k",
        256,
        "--mode",
        "large",
        "--seed",
        1,
        "--resume",
        ck,
        "--out",
        tmp_path / "d",
    )
    assert r.exit_code == 1 and "fingerprint" in r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "d").exists()
    npz = next(ck.glob("checkpoint-*.npz"))
    npz.write_bytes(b"garbage")
    r = _vocab_cli(
        tmp_path / "x.npy",
        *common,
        "--max-iter",
        8,
        "--resume",
        ck,
        "--out",
        tmp_path / "e",
    )
    assert r.exit_code == 1 and "corrupt" in r.stderr
    assert not (tmp_path / "e").exists()


def test_vocab_cli_more_words_than_distinct_descriptors(tmp_path):
    X = np.repeat(_sift_like(4, n=40), 10, axis=0)  # 40 distinct rows, 400 in all
    np.save(tmp_path / "x.npy", X)
    r = _vocab_cli(tmp_path / "x.npy", "-k", 100, "--out", tmp_path / "o")
    assert r.exit_code == 1
    assert "larger than the 40 distinct descriptors" in r.stderr
    assert not (tmp_path / "o").exists()
