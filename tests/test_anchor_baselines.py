"""Tests of the anchor benchmark's baselines (benchmarks/_anchor_baselines.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_anchor_baselines.py"


def _load():
    spec = importlib.util.spec_from_file_location("_anchor_baselines", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


B = _load()


def _brute_force_metrics(wh, anchors, thr):
    """Per-box, per-anchor Python loops: the definitions written out."""
    ious, bests, counts = [], [], []
    for w, h in wh:
        best_iou, best_r, count = 0.0, 0.0, 0
        for wa, ha in anchors:
            inter = min(w, wa) * min(h, ha)
            best_iou = max(best_iou, inter / (w * h + wa * ha - inter))
            r = min(w / wa, wa / w, h / ha, ha / h)
            best_r = max(best_r, r)
            count += r > 1 / thr
        ious.append(best_iou)
        bests.append(best_r)
        counts.append(count)
    n = len(wh)
    return {
        "mean_iou": sum(ious) / n,
        "bpr": sum(b > 1 / thr for b in bests) / n,
        "aat": sum(counts) / n,
        "fitness": sum(b * (b > 1 / thr) for b in bests) / n,
    }


def test_metrics_match_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    wh = rng.uniform(1, 300, size=(257, 2))
    wh[:5] = [[10, 13], [1, 200], [300, 2], [62, 45], [5, 5]]  # exact hit, outliers
    anchors = np.array([[10, 13], [33, 23], [62, 45], [156, 198]], dtype=float)
    expected = _brute_force_metrics(wh.tolist(), anchors.tolist(), 4.0)
    # Odd chunk size: the chunked sums must reproduce the unchunked definitions.
    for rows in (B._METRIC_CHUNK_ROWS, 7):
        monkeypatch.setattr(B, "_METRIC_CHUNK_ROWS", rows)
        got = B.metrics(wh, anchors, thr=4.0)
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key], rel=1e-12), key


def test_metrics_toy_case_by_hand():
    # Box 10x10 vs anchors 10x10 and 20x40: IoU 1 and 0.125; ratios 1 and 0.25.
    got = B.metrics(np.array([[10.0, 10.0]]), np.array([[10.0, 10.0], [20.0, 40.0]]))
    assert got == pytest.approx({"mean_iou": 1.0, "bpr": 1.0, "aat": 1.0, "fitness": 1})


def test_published_anchor_constants():
    assert B.YOLOV3_COCO_ANCHORS.shape == (9, 2)
    assert B.YOLOV2_VOC_ANCHORS.shape == (5, 2)
    assert B.YOLOV3_COCO_ANCHORS[0].tolist() == [10, 13]
    assert B.YOLOV3_COCO_ANCHORS[-1].tolist() == [373, 326]
    np.testing.assert_allclose(B.YOLOV2_VOC_ANCHORS[0], [1.3221 * 32, 1.73145 * 32])
    for a in (B.YOLOV3_COCO_ANCHORS, B.YOLOV2_VOC_ANCHORS):
        assert np.all(a > 0)
        assert np.all(np.diff(a.prod(1)) > 0)  # both are published small to large


def test_synthetic_boxes_size_and_positivity():
    wh = np.array([[1.0, 2.0], [30.0, 40.0], [500.0, 3.0]])
    big = B.synthetic_boxes(wh, 1001, seed=0)
    assert big.shape == (1001, 2)
    assert np.all(big > 0)
    # Multiplicative jitter around the tiled originals.
    ratio = big / wh[np.arange(1001) % 3]
    assert np.all(np.abs(np.log(ratio)) < 0.5)
    np.testing.assert_array_equal(big, B.synthetic_boxes(wh, 1001, seed=0))


def _small_set(seed=0, n=400):
    rng = np.random.default_rng(seed)
    base = np.array([[12.0, 16.0], [40.0, 90.0], [120.0, 60.0], [300.0, 280.0]])
    wh = base[rng.integers(4, size=n)] * np.exp(0.2 * rng.standard_normal((n, 2)))
    wh[:3] = [[1.0, 1.5], [0.5, 1.9], [2.0, 1.0]]  # two are dropped (< 2 px)
    return wh


def test_ultralytics_port_is_deterministic_and_sorted():
    wh = _small_set()
    a1 = B.ultralytics_kmean_anchors(wh, 5, img_size=640, gen=20, seed=3)
    a2 = B.ultralytics_kmean_anchors(wh, 5, img_size=640, gen=20, seed=3)
    assert a1.shape == (5, 2)
    assert a1.dtype == np.float32
    np.testing.assert_array_equal(a1, a2)
    assert np.all(np.diff(a1.prod(1)) >= 0)
    assert np.all(a1 > 0)


def test_ultralytics_port_evolution_does_not_lower_fitness():
    wh = _small_set(1)
    a0 = B.ultralytics_kmean_anchors(wh, 4, gen=0, seed=0)
    a20 = B.ultralytics_kmean_anchors(wh, 4, gen=20, seed=0)
    kept = wh[(wh >= 2.0).any(1)]
    assert B.metrics(kept, a20)["fitness"] >= B.metrics(kept, a0)["fitness"] - 1e-6


def test_ultralytics_port_falls_back_to_random_init():
    wh = np.array([[10.0, 10.0], [20.0, 30.0]])  # fewer boxes than anchors
    a = B.ultralytics_kmean_anchors(wh, 3, img_size=64, gen=5, seed=0)
    assert a.shape == (3, 2)
    assert np.all(np.diff(a.prod(1)) >= 0)


def test_notebook_kmeans_iou_shape_and_determinism():
    wh = _small_set(2)[3:]
    a1 = B.notebook_kmeans_iou(wh, 4, seed=0)
    a2 = B.notebook_kmeans_iou(wh, 4, seed=0)
    assert a1.shape == (4, 2)
    np.testing.assert_array_equal(a1, a2)
    assert np.all(np.diff(a1[:, 0]) >= 0)  # sorted by width, as the notebook
    assert B.metrics(wh, a1)["mean_iou"] > 0.5
