"""CI runs only a tiny smoke version of each benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _smoke(script, *extra):
    """Run ``benchmarks/SCRIPT --smoke --json [EXTRA]`` and return its JSON output."""
    env = {**os.environ, "CLUSTERLENS_DISABLE_PROGRESS_BARS": "1"}
    r = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_kmeans_exact_smoke():
    out = _smoke("kmeans_exact.py")
    rows = out["speed"]["rows"]
    assert set(rows) == {"clusterlens", "faiss.Kmeans", "sklearn"}
    # Same init, same iterations: the same SSE as scikit-learn's Lloyd.
    assert abs(rows["clusterlens"]["sse"] / rows["sklearn"]["sse"] - 1) < 1e-4
    mem = out["memory"]
    assert mem["extra_peak_bytes"] < mem["float32_copy_bytes"] + 64 * 2**20


def test_anchors_smoke():
    out = json.dumps(_smoke("anchors.py"))
    assert "clusterlens" in out and "ultralytics" in out


def test_pipeline_smoke():
    out = _smoke("pipeline.py")["sets"][0]
    assert out["set"] == "hymenoptera" and out["n_items"] == 16
    assert "reference: SIFT-BoVW300 + LDA20" in out["pipelines"]
    assert {"sift", "cnn", "lda20"} <= set(out["stages"])


def test_label_issues_smoke():
    out = _smoke("label_issues.py")
    row = out["quality"][0]
    assert row["setting"] == "digits uniform 10%"
    # The combined ranking is at least as good as cleanlab on the same pred_probs.
    assert row["clusterlens"]["auroc"] >= row["cleanlab"]["auroc"]
    assert row["clusterlens"]["precision_at_k"] >= row["cleanlab"]["precision_at_k"]


def test_iic_mnist_smoke():
    import pytest

    pytest.importorskip("torch")
    out = _smoke("iic_mnist.py")
    run = out["runs"][0]
    assert run["epochs"] == 1 and len(run["curve"]) == 1
    assert 0.0 <= run["curve"][0]["accuracy"] <= 1.0
    # every sub-head is in the table, and the chosen one has the lowest loss
    losses = [h["loss"] for h in run["subheads"]]
    assert len(losses) == len(run["curve"][0]["head_accuracies"]) == 2
    assert run["subheads"][int(np.argmin(losses))]["chosen"]
    assert {"accuracy", "nmi", "ari"} <= set(out["kmeans_pixels"])
    assert out["ratios"]["iic_mean_over_paper"] > 0


def test_iic_mnist_ab_smoke():
    import pytest

    pytest.importorskip("torch")
    out = _smoke("iic_mnist_ab.py")
    assert set(out["summary"]) == {
        "defaults",
        "ji-tf",
        "ji-tf-25h",
        "ji-tf-25h-restart",
    }
    for run in out["runs"]:
        accs = run["head_accuracies"]
        assert len(accs) == run["n_heads"] == len(run["head_losses"])
        assert run["worst_subhead_accuracy"] <= run["chosen_accuracy"]
        assert run["chosen_accuracy"] <= run["best_subhead_accuracy"]


def test_vocab_smoke():
    out = _smoke("vocab.py")
    rows = {r["method"]: r for r in out["kmeans"]["rows"]}
    assert {"faiss flat", "clusterlens large (default)"} <= set(rows)
    # same init and iterations: the large-k mode's SSE stays near faiss flat's
    assert rows["clusterlens large (default)"]["sse_vs_faiss_flat"] < 0.03
    assert out["realsift"]["large"]["sse_vs_exact"] < 0.01
    assert out["quantize"]["agreement_real_sift"] >= 0.98


def test_annotation_smoke():
    out = _smoke("annotation.py")
    assert out["n_items"] == 2000
    # every action went through the review store; all items end up labelled
    assert out["actions"]["total"] == sum(
        v for k, v in out["actions"].items() if k != "total"
    )
    assert out["final_accuracy"] == 1.0
    # clustering saves actions against one image, one action
    assert out["correct_labels_per_action"] > 1.0
    # #19: every action went to the real server over HTTP, as the page posts it
    http = out["http"]
    assert http["page"]["n"] >= out["actions"]["name_cluster"]
    for kind in ("name_cluster", "split", "label_items"):
        assert http.get(kind, {"n": 0})["n"] == out["actions"][kind]
    assert http["/api/export"]["n"] == 1


def test_distributed_smoke():
    import pytest

    pytest.importorskip("distributed")
    out = _smoke("distributed.py")
    rows = out["rows"]
    assert {"local", "dask"} <= set(rows)  # dask-ml only when installed
    assert rows["local"]["n_iter"] == rows["dask"]["n_iter"] == out["iters"]
    # Same file, init and iterations: exact Lloyd on both backends, same SSE.
    assert abs(out["ratios"]["dask_vs_local_sse_rel"]) < 1e-6
    # Measured traffic: at least the centres out and the sums back, far from the data.
    sent = rows["dask"]["bytes_sent_per_iter_median"]
    th = out["theory_bytes_per_iter"]
    assert th["centres_bytes"] + th["sums_counts_bytes"] <= sent < out["n"] * 128
    assert {"client+scheduler", "worker0", "worker1"} <= set(rows["dask"]["peak_rss"])


def test_knn_scale_smoke():
    import pytest

    pytest.importorskip("distributed")
    out = _smoke("knn_scale.py")
    assert set(out["rows"]) == {"local", "dask"}
    assert out["rows"]["local"]["method"].startswith("approximate")
    # the Dask search equals the local one (distances up to rounding)
    assert out["equal"]["indices_fraction"] == 1.0
    assert out["equal"]["distances_max_abs_diff"] <= 1e-6
    for r in out["rows"].values():
        assert r["seconds"] > 0 and r["peak_tree_rss"] >= r["peak_tree_pss"] > 0
    assert out["ratios"]["dask_over_local_seconds"] > 0


def test_curate_smoke():
    """benchmarks/curate.py --smoke: clusterlens explore on a tiny planted set (#18).

    fastdup and cleanvision run only where their separate environment exists
    (.venv-peers); without it they are skipped and the output says so.
    """
    out = _smoke("curate.py")
    s = out["sets"][0]
    assert s["set"] == "cifar10" and s["n_base"] == 60
    assert (
        s["n_items"]
        == 60 + s["counts"]["exact"] + s["counts"]["near"] + s["counts"]["ood"]
    )
    us = s["tools"]["clusterlens"]
    assert us["seconds"] > 0 and us["peak_rss_mib"] > 0
    assert (
        set(us["default"])
        == set(us["best"])
        == {
            "duplicates",
            "blurry",
            "dark",
            "bright",
            "low_information",
            "outliers",
        }
    )
    # byte copies are found by their content hash, whatever the embeddings say
    assert us["default"]["duplicates"]["recall_by_kind"]["exact"] == 1.0
    for view, m in us["best"].items():
        assert 0.0 <= m["f1"] <= 1.0, view
    # the duplicate sweep includes the default threshold, the outlier sweep
    # the default flags' order: the best is at least the default
    for view in ("duplicates", "outliers"):
        assert us["best"][view]["f1"] >= us["default"][view]["f1"] - 1e-9, view
    for tool in ("fastdup", "cleanvision"):
        assert tool in s["tools"] or tool in s["skipped"]
    knn = out["knn"]
    assert knn["method"].startswith("approximate") and knn["recall_at_15"] > 0.3
    assert knn["planted_near_copies_found"] > 0.9


def test_app_smoke():
    """benchmarks/app.py --smoke: the real review server on 2,000 items (#19)."""
    data = BENCH.parent.parent / "shared" / "data"
    if not (data / "mnist").is_dir() or not (data / "cifar10").is_dir():
        import pytest

        pytest.skip("../shared/data (MNIST, CIFAR-10) is not present")
    out = _smoke("app.py")
    assert out["n_items"] == 2000
    calls = out["api"]["calls"]
    assert {"GET /api/map/xy", "GET /api/similar/<i>", "POST undo"} <= set(calls)
    assert all(v["n"] == 5 and v["p50_ms"] > 0 for v in calls.values())
    # 4 bytes a point; 2 a colour code, after the legend
    assert out["api"]["map_transfer"]["xy_bytes"] == 4 * 2000
    assert out["api"]["map_transfer"]["colours_bytes"] > 2 * 2000
    assert out["memory_mib"]["VmRSS"] > 50
    b = out["browser"]
    if "skipped" not in b:
        assert b["frames"] > 10 and b["frame_draw_p50_ms"] > 0
        assert int(b["lasso_selected"].replace(",", "")) > 0


def test_iic_seg_smoke():
    import pytest

    pytest.importorskip("torch")
    if not (
        BENCH.parent.parent / "shared" / "data" / "camvid" / "camvid.tar"
    ).is_file():
        pytest.skip("CamVid is not in ../shared/data")
    out = _smoke("iic_seg.py")
    rows = {r["method"]: r for r in out["rows"]}
    assert set(rows) == {"kmeans-rgb", "kmeans-cnn", "iic-rgb", "iic-cnn"}
    for r in rows.values():
        assert 0.0 <= r["miou"] <= 1.0
        # the best of the 3! matchings is at least their mean, 1/3 of the pixels
        assert 1.0 / 3.0 - 1e-9 <= r["accuracy"] <= 1.0


def test_natural_smoke():
    """Issue #20: k-means, PCA+L2 k-means, SCAN and IIC heads on CIFAR-10 CNN
    embeddings (200 test images in CI), with the published figures beside;
    then the rows for Lite0 adapted on the images (clusterlens adapt, one tiny
    CPU epoch) beside the frozen Lite0 at the same image size. One run: the
    sample and its embeddings are made once."""
    import pytest

    pytest.importorskip("torch")
    if not (BENCH.parents[1] / "shared" / "data" / "cifar10").is_dir():
        pytest.skip("../shared/data/cifar10 is absent")
    out = _smoke("natural.py", "--adapt-minutes", "0.5", "--device", "cpu")
    assert out["n_items"] == 200 and out["k"] == 10
    methods = [r["method"] for r in out["methods"]]
    assert methods[0].startswith("k-means (CLI") and len(methods) == 4
    assert any(m.startswith("SCAN head") for m in methods)
    assert [p["accuracy"] for p in out["published"]] == [0.617, 0.883]
    for r in out["methods"]:
        # far above chance (0.1) on 10 balanced classes even at 200 images
        assert r["accuracy"] > 0.2, r
    assert 0.2 < out["knn10_purity"] <= 1.0
    # one table row per backbone, a concatenation included (#20), then the
    # frozen and the adapted Lite0 at the adaptation's image size
    rows = out["backbones"]
    assert [r["backbone"] for r in rows] == [
        "lite0",
        "lite0+lite1",
        "lite0@64px frozen",
        "lite0@64px adapted",
    ]
    assert [r["dim"] for r in rows] == [1280, 2560, 1280, 1280]
    for r in rows[:2]:
        assert 0.2 < r["knn10_vote"] <= 1.0 and 0.2 < r["linear_probe"] <= 1.0, r
        assert r["images_per_second"] > 0 and len(r["methods"]) == 4
    adapted = rows[-1]["adaptation"]
    assert adapted["epochs"] == 1 and adapted["steps"] >= 1
    assert adapted["device"] == "cpu" and adapted["train_seconds"] > 0
    for r in rows[2:]:
        assert 0.1 < r["knn10_purity"] <= 1.0 and len(r["methods"]) == 4, r


def test_annotation_on_a_workspace_with_cnn_embeddings(tmp_path):
    """``--workspace``: a labelled workspace's CNN embeddings make the clusters
    (the CIFAR-10 run); the workspace itself is only read."""
    import numpy as np

    from clusterlens.io import create_workspace

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 60)
    images = rng.integers(0, 256, size=(labels.size, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    ws = tmp_path / "ws"
    ws.mkdir()
    create_workspace(tmp_path / "data.npz", ws)
    centres = rng.normal(size=(4, 32)) * 4
    emb = centres[labels] + rng.normal(size=(labels.size, 32))
    # 5 % of the items sit in another class's cloud: strays a person must fix
    stray = rng.choice(labels.size, 12, replace=False)
    emb[stray] = centres[(labels[stray] + 1) % 4] + rng.normal(size=(12, 32))
    (ws / "features" / "cnn").mkdir(parents=True)
    np.save(ws / "features" / "cnn" / "features.npy", emb.astype(np.float32))
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    env = {**os.environ, "CLUSTERLENS_DISABLE_PROGRESS_BARS": "1"}
    r = subprocess.run(
        [sys.executable, str(BENCH / "annotation.py"), "--workspace", str(ws),
         "-k", "4", "--pca", "16", "--smooth", "0", "--tolerate", "0", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before
    assert out["n_items"] == labels.size and out["final_accuracy"] == 1.0
    # the strays of a cluster's other class were labelled together
    acts = out["actions"]
    assert acts["name_cluster"] >= 4
    assert acts["label_items"] < out["selection_clicks"] == 12
    assert out["target"] == {"correct_labels_per_action": 15, "final_accuracy": 0.99}


def test_cnn_speed_smoke():
    """benchmarks/cnn_speed.py --smoke (#20): the GEMM peak, the network's FLOPs
    by layer kind and each runtime's rate as a fraction of that peak."""
    import pytest

    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    out = _smoke("cnn_speed.py")
    assert out["gemm"]["peak_gflop_per_second"] > 0
    row = out["backbones"]["lite0"]
    # EfficientNet-Lite0: 0.39 G multiply-adds at 224 px, so ~0.062 GFLOP at 64 px
    assert 0.05 < row["gflop_per_image"] < 0.08, row["gflop_per_image"]
    kinds = row["flops_by_kind"]
    assert abs(sum(k["share"] for k in kinds.values()) - 1) < 1e-9
    # depthwise convolutions are the memory-bound kind
    assert kinds["depthwise"]["flop_per_byte"] < kinds["pointwise 1x1"]["flop_per_byte"]
    for name, r in row["network"].items():
        assert r["images_per_second"] > 0 and 0 < r["fraction_of_peak"] < 1, name
