"""Issue #17, rows 18-27: corrupt workspace, intermediate and checkpoint files.

Every corrupt file a command reads gives exit code 1 (2 for a bad --resume),
one ``Error (...)`` line naming the file, no traceback, untouched inputs and no
output folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from clusterlens.cli.main import cli
from clusterlens.exceptions import DataQualityWarning


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def digest_tree(root: Path) -> dict[str, str]:
    """Content hash of every file under ``root`` (to prove inputs are untouched)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_clean_failure(
    r, names: str, out: Path | None = None, code: int = 1, kind: str = "invalid input"
):
    """Exit ``code``, one error line of ``kind`` naming ``names``, no traceback,
    no output (exit code 2 is click's usage error)."""
    text = r.output
    assert r.exit_code == code, text
    assert "Traceback" not in text, text
    assert r.exception is None or isinstance(r.exception, SystemExit), text
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1, r.stderr
    prefix = "Error: Invalid value" if code == 2 else f"Error ({kind}): "
    assert errors[0].startswith(prefix), errors[0]
    assert names in errors[0], errors[0]
    assert "Aborted" not in text
    if out is not None:
        assert not out.exists(), f"{out} was written"
        leftovers = [p.name for p in out.parent.glob(f".{out.name}*")]
        assert not leftovers, leftovers


# --------------------------------------------------------------------------- #
# Fixtures: one small workspace (array images), pixel features, a clustering
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers")
    rng = np.random.default_rng(0)
    imgs = (rng.random((24, 28, 28)) * 60).astype(np.uint8)
    for i in range(24):
        imgs[i, 4:20, 4 + i % 8 : 10 + i % 8] = 255
    np.savez(root / "d.npz", images=imgs, labels=np.arange(24) % 2)
    ws = root / "ws"
    for args in (
        ("ingest", root / "d.npz", "--out", ws, "-q"),
        ("features", "pixels", ws, "--size", 8, "-q"),
        ("cluster", ws, "--features", "pixels", "-k", 2, "-q", "--no-report"),
    ):
        r = run(*args)
        assert r.exit_code == 0, r.output
    return root


@pytest.fixture
def ws(base, tmp_path):
    """A private copy of the workspace."""
    shutil.copytree(base / "ws", tmp_path / "ws")
    return tmp_path / "ws"


def truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


# --------------------------------------------------------------------------- #
# Row 18-19: items.parquet and workspace.json
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "cmd",
    [
        ("features", "pixels", "{ws}", "--size", "8", "--out", "{out}"),
        ("cluster", "{ws}", "--features", "pixels", "-k", "2", "--out", "{out}"),
    ],
    ids=["features", "cluster"],
)
def test_truncated_items_parquet_is_named(ws, tmp_path, cmd):
    """Row 18: a truncated items.parquet was an ArrowInvalid traceback."""
    truncate(ws / "items.parquet")
    before = digest_tree(ws)
    out = tmp_path / "out"
    r = run(*(a.format(ws=ws, out=out) for a in cmd))
    assert_clean_failure(r, "items.parquet", out)
    assert "clusterlens ingest" in r.stderr
    assert digest_tree(ws) == before


@pytest.mark.parametrize(
    "content", ["[1]", '"ws"', "null", "{", "", '{"schema": 1'], ids=repr
)
def test_workspace_json_that_is_not_an_object_is_named(ws, tmp_path, content):
    """Row 19: workspace.json = [1] was an AttributeError traceback."""
    (ws / "workspace.json").write_text(content)
    out = tmp_path / "out"
    r = run("cluster", ws, "--features", "pixels", "-k", 2, "--out", out)
    assert_clean_failure(r, "workspace.json", out)


def test_items_parquet_without_needed_columns_is_named(ws, tmp_path):
    from clusterlens.io import read_results, write_results

    items = read_results(ws / "items.parquet")
    del items["array_row"]
    write_results(ws / "items.parquet", items)
    r = run("features", "pixels", ws, "--size", 8, "--out", tmp_path / "o")
    assert_clean_failure(r, "items.parquet", tmp_path / "o")
    assert "array_row" in r.stderr


def test_zero_byte_workspace_image_array_is_named(ws, tmp_path):
    (ws / "images.npy").write_bytes(b"")
    r = run("features", "pixels", ws, "--size", 8, "--out", tmp_path / "o")
    assert_clean_failure(r, "images.npy", tmp_path / "o")


# --------------------------------------------------------------------------- #
# Row 20: results.parquet in evaluate, --labels, review --issues
# --------------------------------------------------------------------------- #
def test_truncated_results_in_evaluate_is_named(ws):
    res = ws / "clusters" / "pixels" / "results.parquet"
    truncate(res)
    r = run("evaluate", ws / "clusters" / "pixels")
    assert_clean_failure(r, "results.parquet")
    assert not (ws / "clusters" / "pixels" / "evaluation.json").exists()


def test_truncated_labels_in_evaluate_is_named(ws, tmp_path):
    labels = tmp_path / "labels.parquet"
    shutil.copy(ws / "items.parquet", labels)
    truncate(labels)
    r = run("evaluate", ws / "clusters" / "pixels", "--labels", labels)
    assert_clean_failure(r, "labels.parquet")
    assert "--labels" in r.stderr


def test_truncated_issues_in_review_is_named(ws, tmp_path, monkeypatch):
    import clusterlens.cli.review as review_cli

    def no_serving(*a, **k):
        raise AssertionError("the app must not be served")

    monkeypatch.setattr(review_cli, "serve", no_serving, raising=False)
    issues = tmp_path / "label_issues.parquet"
    shutil.copy(ws / "clusters" / "pixels" / "results.parquet", issues)
    truncate(issues)
    r = run("review", ws, "--issues", issues)
    assert_clean_failure(r, "label_issues.parquet")
    assert "--issues" in r.stderr
    assert not (ws / "review.sqlite").exists()


# --------------------------------------------------------------------------- #
# Row 21: cluster --features on a text file, topics on bad counts.npz
# --------------------------------------------------------------------------- #
def test_cluster_features_text_file_is_named(ws, tmp_path):
    txt = tmp_path / "features.txt"
    txt.write_text("1 2 3\n4 5 6\n")
    r = run("cluster", ws, "--features", txt, "-k", 2, "--out", tmp_path / "o")
    assert_clean_failure(r, "features.txt", tmp_path / "o")
    assert "--features" in r.stderr


def _bow(ws: Path, counts) -> Path:
    (ws / "bow").mkdir(exist_ok=True)
    sp.save_npz(ws / "bow" / "counts.npz", sp.csr_matrix(counts))
    return ws / "bow" / "counts.npz"


@pytest.mark.parametrize("bad", ["garbage", "nan", "inf", "negative", "dense"])
def test_topics_on_bad_counts_is_named(ws, tmp_path, bad):
    """Row 21: a garbage or NaN counts.npz was a ValueError traceback."""
    counts = np.ones((24, 5))
    if bad == "garbage":
        (ws / "bow").mkdir()
        (ws / "bow" / "counts.npz").write_bytes(b"garbage\n" * 10)
    elif bad == "dense":
        (ws / "bow").mkdir()
        np.savez(ws / "bow" / "counts.npz", counts=counts)
    else:
        counts[3, 2] = {"nan": np.nan, "inf": np.inf, "negative": -2}[bad]
        _bow(ws, counts)
    r = run("topics", ws, "-k", 2, "--no-report", "--out", tmp_path / "t")
    assert_clean_failure(r, "counts.npz", tmp_path / "t")
    assert "clusterlens bow" in r.stderr


def test_topics_on_valid_counts_still_runs(ws, tmp_path):
    _bow(ws, np.random.default_rng(0).integers(0, 5, (24, 6)))
    r = run("topics", ws, "-k", 2, "--no-report", "--out", tmp_path / "t", "-q")
    assert r.exit_code == 0, r.output


# --------------------------------------------------------------------------- #
# Rows 22-23: truncated, damaged and zero-byte .npz / .npy
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def iic_run(base):
    """A 2-epoch IIC model and its checkpoint, trained once (tiny, CPU)."""
    pytest.importorskip("torch")
    out, ckpt = base / "iic", base / "iic-ckpt"
    r = run(
        "iic",
        base / "d.npz",
        "--k",
        2,
        "--k-over",
        0,
        "--heads",
        1,
        "--epochs",
        2,
        "--width",
        0.125,
        "--threads",
        1,
        "--device",
        "cpu",
        "--checkpoint",
        ckpt,
        "--out",
        out,
        "-q",
    )
    assert r.exit_code == 0, r.output
    return out, ckpt


IIC_FAST = ("--k-over", 0, "--heads", 1, "--width", 0.125, "--threads", 1)
IIC_FAST += ("--device", "cpu", "-q")


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_iic_model_is_named(base, iic_run, tmp_path, damage):
    """Rows 22-23: iic-predict / features iic on a truncated or empty model.npz."""
    model = tmp_path / "m"
    shutil.copytree(iic_run[0], model)
    truncate(model / "model.npz", None if damage == "truncated" else 0)
    r = run("iic-predict", model / "model", base / "d.npz", "--out", tmp_path / "p")
    assert_clean_failure(r, "model.npz", tmp_path / "p")
    ws = tmp_path / "ws"
    shutil.copytree(base / "ws", ws)
    out = ws / "features" / "iic"
    r = run("features", "iic", ws, "--model", model / "model", "--out", out)
    assert_clean_failure(r, "model.npz", out)


def test_flipped_byte_in_iic_checkpoint_is_named(base, iic_run, tmp_path):
    """Row 22: a flipped byte in an IIC checkpoint was a BadZipFile traceback."""
    ckpt = tmp_path / "ck"
    shutil.copytree(iic_run[1], ckpt)
    npz = ckpt / "iic-checkpoint.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    before = digest_tree(ckpt)
    r = run(
        "iic", base / "d.npz", "--k", 2, "--epochs", 3, *IIC_FAST,
        "--resume", ckpt, "--out", tmp_path / "o",
    )  # fmt: skip
    assert_clean_failure(r, "iic-checkpoint.npz", tmp_path / "o")
    assert digest_tree(ckpt) == before


def test_truncated_vocab_is_named(ws, tmp_path):
    """Row 22: bow --vocab on a truncated vocab.npz was a BadZipFile traceback."""
    rng = np.random.default_rng(0)
    sift = ws / "features" / "sift"
    sift.mkdir(parents=True)
    counts = rng.integers(1, 4, 24)
    n = int(counts.sum())
    np.save(sift / "descriptors.npy", rng.integers(0, 255, (n, 128), dtype=np.uint8))
    np.save(sift / "offsets.npy", np.concatenate([[0], np.cumsum(counts)]))
    np.save(sift / "keypoints.npy", rng.random((n, 4), dtype=np.float32))
    r = run("vocab", sift / "descriptors.npy", "-k", 3, "--out", tmp_path / "v", "-q")
    assert r.exit_code == 0, r.output
    ok = run("bow", ws, "--vocab", tmp_path / "v", "--out", tmp_path / "b0", "-q")
    assert ok.exit_code == 0, ok.output
    truncate(tmp_path / "v" / "vocab.npz")
    r = run("bow", ws, "--vocab", tmp_path / "v", "--out", tmp_path / "b")
    assert_clean_failure(r, "vocab.npz", tmp_path / "b")
    assert "clusterlens vocab" in r.stderr


def _empty(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


@pytest.mark.parametrize(
    "case", ["iic", "iic-predict", "ingest", "bow", "topics", "cluster"]
)
def test_zero_byte_arrays_say_which_file(base, ws, tmp_path, case):
    """Row 23: a zero-byte .npz/.npy ended as a bare "Aborted!" (EOFError)."""
    out = tmp_path / "out"
    if case == "iic":
        f = _empty(tmp_path / "e.npz")
        args = ["iic", f, "--k", 2, *IIC_FAST, "--out", out]
    elif case == "iic-predict":
        pytest.importorskip("torch")
        (tmp_path / "model.json").write_text('{"format": "clusterlens.iic"}')
        f = _empty(tmp_path / "model.npz")
        args = ["iic-predict", tmp_path / "model", base / "d.npz", "--out", out]
    elif case == "ingest":
        f = _empty(tmp_path / "e.npz")
        args = ["ingest", f, "--out", out]
    elif case == "bow":
        f = _empty(tmp_path / "v" / "vocab.npz")
        from clusterlens.vocab._vocabulary import FORMAT

        (tmp_path / "v" / "vocab.json").write_text(json.dumps({"format": FORMAT}))
        args = ["bow", ws, "--vocab", tmp_path / "v", "--out", out]
        sift = ws / "features" / "sift"
        sift.mkdir(parents=True)
        np.save(sift / "descriptors.npy", np.zeros((24, 128), np.uint8))
        np.save(sift / "offsets.npy", np.arange(25))
        np.save(sift / "keypoints.npy", np.zeros((24, 4), np.float32))
    elif case == "topics":
        f = _empty(ws / "bow" / "counts.npz")
        args = ["topics", ws, "-k", 2, "--out", out]
    else:
        f = _empty(tmp_path / "x.npy")
        args = ["cluster", ws, "--features", f, "-k", 2, "--out", out]
    r = run(*args)
    assert_clean_failure(r, f.name, out)
    assert "empty" in r.stderr


# --------------------------------------------------------------------------- #
# Rows 24-25: checkpoint.json by schema and by digest
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def km_checkpoint(base):
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(c, 1.0, (100, 4)) for c in (0, 6, 12)])
    np.save(base / "X.npy", X.astype(np.float32))
    ckpt = base / "km-ckpt"
    r = run(
        "kmeans", base / "X.npy", "-k", 3, "--init", "random", "--n-init", 1,
        "--max-iter", 2, "--checkpoint", ckpt, "--out", base / "km", "-q",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert meta["iteration"] == 2 and "meta_sha256" in meta
    return base / "X.npy", ckpt


def _resume(X, ckpt, out):
    return run(
        "kmeans", X, "-k", 3, "--init", "random", "--n-init", 1,
        "--resume", ckpt, "--out", out, "--format", "json",
    )  # fmt: skip


BAD_FIELDS = {
    "iteration-abc": ("iteration", "abc"),
    "iteration-null": ("iteration", None),
    "iteration-1e309": ("iteration", float("inf")),
    "iteration-1000": ("iteration", 1000),
    "iteration-minus-1": ("iteration", -1),
    "iteration-float": ("iteration", 2.0),
    "best_inertia-zz": ("best_inertia", "zz"),
    "best_inertia-nan": ("best_inertia", float("nan")),
    "best_it-99": ("best_it", 99),
    "history-5": ("history", 5),
    "history-list": ("history", [1, 2]),
    "converged-str": ("converged", "yes"),
    "arrays-traversal": ("arrays", "../../etc/passwd"),
}


@pytest.mark.parametrize("redigest", [False, True], ids=["edited", "redigested"])
@pytest.mark.parametrize("field", list(BAD_FIELDS))
def test_bad_checkpoint_json_is_refused(km_checkpoint, tmp_path, field, redigest):
    """Rows 24-25: bad or edited fields were tracebacks, or exit 0 with n_iter 1000.

    An edit is caught by the digest; a re-digested edit (or an old, digest-less
    file) by the schema, which ties ``iteration`` to the history.
    """
    from clusterlens.io._checkpoint import _meta_digest

    X, orig = km_checkpoint
    ckpt = tmp_path / "ck"
    shutil.copytree(orig, ckpt)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    key, value = BAD_FIELDS[field]
    meta[key] = value
    if redigest:
        meta["meta_sha256"] = _meta_digest(meta)
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    before = digest_tree(ckpt)
    r = _resume(X, ckpt, tmp_path / "o")
    assert_clean_failure(r, "checkpoint.json", tmp_path / "o")
    assert ("digest" in r.stderr) != redigest, r.stderr
    assert digest_tree(ckpt) == before


@pytest.mark.parametrize("content", ["[1, 2]", "", "{", '"x"'], ids=repr)
def test_checkpoint_json_not_an_object_is_refused(km_checkpoint, tmp_path, content):
    X, orig = km_checkpoint
    ckpt = tmp_path / "ck"
    shutil.copytree(orig, ckpt)
    (ckpt / "checkpoint.json").write_text(content)
    r = _resume(X, ckpt, tmp_path / "o")
    assert_clean_failure(r, "checkpoint.json", tmp_path / "o")


def test_version_1_checkpoint_is_checked_by_schema(km_checkpoint, tmp_path):
    """A digest-less (format 1) checkpoint is still read, and still validated."""
    X, orig = km_checkpoint
    ckpt = tmp_path / "ck"
    shutil.copytree(orig, ckpt)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    meta["format_version"] = 1
    del meta["meta_sha256"]
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    good = _resume(X, ckpt, tmp_path / "ok")
    full = run(
        "kmeans", X, "-k", 3, "--init", "random", "--n-init", 1,
        "--out", tmp_path / "full", "--format", "json",
    )  # fmt: skip
    assert good.exit_code == 0 and full.exit_code == 0, good.output + full.output
    assert json.loads(good.stdout)["inertia"] == json.loads(full.stdout)["inertia"]
    meta["iteration"] = 1000
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    r = _resume(X, ckpt, tmp_path / "o")
    assert_clean_failure(r, "checkpoint.json", tmp_path / "o")
    assert "1000" in r.stderr and "history" in r.stderr


def test_resume_from_a_missing_folder_fails_without_creating_it(
    km_checkpoint, tmp_path
):
    X, _ = km_checkpoint
    missing = tmp_path / "nope"
    r = _resume(X, missing, tmp_path / "o")
    assert_clean_failure(r, "nope", tmp_path / "o", code=2)
    assert "no checkpoint" in r.stderr and "does not exist" in r.stderr
    assert not missing.exists()


def test_resume_from_a_file_says_it_is_not_a_checkpoint_folder(km_checkpoint, tmp_path):
    X, _ = km_checkpoint
    r = _resume(X, X, tmp_path / "o")
    assert_clean_failure(r, X.name, tmp_path / "o", code=2)
    assert "not a checkpoint folder" in r.stderr and "File exists" not in r.stderr


def test_resume_from_an_empty_folder_says_no_checkpoint(km_checkpoint, tmp_path):
    X, _ = km_checkpoint
    (tmp_path / "empty").mkdir()
    r = _resume(X, tmp_path / "empty", tmp_path / "o")
    assert_clean_failure(r, "No readable checkpoint", tmp_path / "o")
    assert list((tmp_path / "empty").iterdir()) == []


def test_library_resume_does_not_create_the_folder(tmp_path):
    from clusterlens.cluster import KMeans
    from clusterlens.exceptions import DataValidationError

    X = np.random.default_rng(0).normal(size=(50, 3))
    km = KMeans(2, n_init=1, random_state=0, checkpoint_dir=tmp_path / "c", resume=True)
    with pytest.raises(DataValidationError, match=r"No readable checkpoint.*no such"):
        km.fit(X)
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- #
# Row 26: the resumable SIFT work folder
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def sift_ws(tmp_path_factory):
    """A 70-image workspace, its uninterrupted SIFT, and a crashed run's work."""
    pytest.importorskip("cv2")
    import clusterlens.features._sift as sift_mod
    from clusterlens.io import create_workspace
    from clusterlens.pipelines import features as feat

    root = tmp_path_factory.mktemp("sift")
    rng = np.random.default_rng(0)
    np.savez(root / "d.npz", images=(rng.random((70, 48, 48)) * 255).astype(np.uint8))
    (root / "ws").mkdir()
    ws = create_workspace(root / "d.npz", root / "ws")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        feat.run_sift_features(ws, root / "fresh", max_keypoints=20, n_jobs=1)
    real = sift_mod.sift_descriptors
    calls = {"n": 0}

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] > 66:
            raise KeyboardInterrupt
        return real(*a, **k)

    sift_mod.sift_descriptors = crashing
    try:
        with pytest.raises(KeyboardInterrupt):
            feat.run_sift_features(ws, root / "crashed", max_keypoints=20, n_jobs=1)
    finally:
        sift_mod.sift_descriptors = real
    assert (root / ".crashed.work" / "state.json").is_file()
    return root, ws


def _resume_sift(sift_ws, tmp_path, damage):
    from clusterlens.pipelines import features as feat

    root, ws = sift_ws
    work = tmp_path / ".out.work"
    shutil.copytree(root / ".crashed.work", work)
    damage(work)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = feat.run_sift_features(
            ws, tmp_path / "out", max_keypoints=20, n_jobs=1
        )
    for name in ("descriptors.npy", "offsets.npy", "keypoints.npy"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "out" / name), np.load(root / "fresh" / name)
        )
    return summary, [
        str(w.message) for w in caught if issubclass(w.category, DataQualityWarning)
    ]


def test_sift_resume_is_still_bit_for_bit(sift_ws, tmp_path):
    summary, said = _resume_sift(sift_ws, tmp_path, lambda work: None)
    assert summary["resumed_from_item"] == 64
    assert not any("work folder" in m for m in said)


def _truncate_raw(work: Path) -> None:
    truncate(work / "descriptors.raw")


def _state_list(work: Path) -> None:
    (work / "state.json").write_text("[1, 2]")


def _tamper_offsets(work: Path) -> None:
    state = json.loads((work / "state.json").read_text())
    state["offsets"][5] += 3
    (work / "state.json").write_text(json.dumps(state))


def _offsets_backwards_redigested(work: Path) -> None:
    from clusterlens.pipelines.features._sift import _state_digest

    state = json.loads((work / "state.json").read_text())
    state["offsets"][5] = state["offsets"][4] - 1
    state["digest"] = _state_digest(state)
    (work / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize(
    "damage",
    [_truncate_raw, _state_list, _tamper_offsets, _offsets_backwards_redigested],
    ids=lambda f: f.__name__.strip("_"),
)
def test_damaged_sift_work_folder_starts_over_and_says_so(sift_ws, tmp_path, damage):
    """Row 26: a truncated descriptors.raw gave rows of zeros silently, tampered
    offsets were copied into offsets.npy, state.json = [1,2] was a traceback.
    Now the damaged work is dropped with a warning and the output is exact."""
    summary, said = _resume_sift(sift_ws, tmp_path, damage)
    assert summary["resumed_from_item"] == 0
    assert any("work folder" in m and "damaged" in m for m in said), said


# --------------------------------------------------------------------------- #
# Row 27: IIC resumed with fewer epochs than the checkpoint has done
# --------------------------------------------------------------------------- #
def test_iic_resume_with_fewer_epochs_is_refused(base, iic_run, tmp_path):
    ckpt = tmp_path / "ck"
    shutil.copytree(iic_run[1], ckpt)
    r = run(
        "iic", base / "d.npz", "--k", 2, "--epochs", 1, *IIC_FAST,
        "--resume", ckpt, "--out", tmp_path / "o",
    )  # fmt: skip
    assert_clean_failure(r, "epochs", tmp_path / "o", kind="invalid parameter")
    assert "2 epochs done" in r.stderr and "--epochs" in r.stderr
    assert "epochs=1" in r.stderr


def test_iic_resume_from_missing_folder_is_usage_error(base, tmp_path):
    r = run(
        "iic", base / "d.npz", "--k", 2, "--epochs", 1, *IIC_FAST,
        "--resume", tmp_path / "nope", "--out", tmp_path / "o",
    )  # fmt: skip
    assert_clean_failure(r, "nope", tmp_path / "o", code=2)
    assert not (tmp_path / "nope").exists()
