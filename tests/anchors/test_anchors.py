"""Anchor boxes: IoU distance, k-means under 1 - IoU, evolution, figures, exports."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import adjusted_rand_score

from clusterlens.anchors import (
    AnchorKMeans,
    IoUEngine,
    IoUMedianEngine,
    anchor_boxes,
    evaluate_anchors,
    format_darknet_cfg,
    format_yolov5_yaml,
    iou_wh,
    parse_anchors,
    ratio_metric,
    split_levels,
)
from clusterlens.cluster import kmeans
from clusterlens.exceptions import DataValidationError

PLANTED = np.array([[12, 10], [30, 60], [64, 32], [120, 150], [300, 200]], float)


def _planted_boxes(seed, n=2000, jitter=0.06):
    rng = np.random.default_rng(seed)
    y = rng.integers(len(PLANTED), size=n)
    return PLANTED[y] * np.exp(rng.normal(0, jitter, (n, 2))), y


def _iou_brute(b, a):
    out = np.zeros((len(b), len(a)))
    for i, (w, h) in enumerate(b):
        for j, (wa, ha) in enumerate(a):
            inter = min(w, wa) * min(h, ha)
            out[i, j] = inter / (w * h + wa * ha - inter)
    return out


def test_iou_and_ratio_match_brute_force(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    b = rng.uniform(1, 100, (30, 2))
    a = rng.uniform(1, 100, (7, 2))
    np.testing.assert_allclose(iou_wh(b, a), _iou_brute(b, a), rtol=1e-12)
    brute = np.array(
        [[min(w / wa, wa / w, h / ha, ha / h) for wa, ha in a] for w, h in b]
    )
    np.testing.assert_allclose(ratio_metric(b, a), brute, rtol=1e-12)


@settings(deadline=None, max_examples=50)
@given(
    arrays(np.float64, (6, 2), elements=st.floats(0.01, 1e4)),
    arrays(np.float64, (4, 2), elements=st.floats(0.01, 1e4)),
)
def test_iou_in_unit_interval_and_symmetric(b, a):
    iou = iou_wh(b, a)
    assert np.all((iou >= 0) & (iou <= 1 + 1e-12))
    np.testing.assert_allclose(iou, iou_wh(a, b).T)
    np.testing.assert_allclose(np.diag(iou_wh(b, b)), 1.0)


def test_iou_engine_assigns_best_iou_and_sums_inertia(global_random_seed):
    boxes, _ = _planted_boxes(global_random_seed, n=500)
    res = kmeans(boxes, 5, engine=IoUEngine(), random_state=global_random_seed, tol=0)
    iou = _iou_brute(boxes, res.centers)
    np.testing.assert_array_equal(res.labels, iou.argmax(axis=1))
    np.testing.assert_allclose(res.inertia, (1 - iou.max(axis=1)).sum(), rtol=1e-6)
    # The mean update can lower the mean IoU: the best centres seen are kept.
    assert res.inertia <= min(h["inertia"] for h in res.history) * (1 + 1e-6)


def test_median_engine_moves_anchors_to_medians():
    boxes, _ = _planted_boxes(0, n=600)
    init = PLANTED * 1.1
    res = kmeans(boxes, 5, init=init, engine=IoUMedianEngine(), max_iter=1)
    labels0 = iou_wh(boxes, init).argmax(axis=1)
    for c in range(5):
        np.testing.assert_allclose(
            res.centers[c], np.median(boxes[labels0 == c], axis=0), rtol=1e-12
        )


@pytest.mark.parametrize("update", ["mean", "median"])
def test_planted_anchors_recovered(global_random_seed, update):
    boxes, y = _planted_boxes(global_random_seed)
    res = anchor_boxes(boxes, 5, update=update, random_state=global_random_seed)
    np.testing.assert_allclose(res.anchors, PLANTED, rtol=0.08)
    assert adjusted_rand_score(y, res.labels) > 0.99
    assert res.figures["mean_iou"] > 0.85 and res.figures["bpr"] == 1.0


def test_same_seed_same_anchors(global_random_seed):
    boxes, _ = _planted_boxes(global_random_seed, jitter=0.4)
    a = anchor_boxes(boxes, 6, random_state=global_random_seed, evolve=30)
    b = anchor_boxes(boxes, 6, random_state=global_random_seed, evolve=30)
    np.testing.assert_array_equal(a.anchors, b.anchors)
    np.testing.assert_array_equal(a.labels, b.labels)
    areas = a.anchors.prod(axis=1)
    assert np.all(np.diff(areas) >= 0)  # sorted by area


def test_sample_restarts_match_full_restarts_closely():
    boxes, _ = _planted_boxes(1, n=20000, jitter=0.3)
    full = anchor_boxes(boxes, 5, random_state=0, sample_size=None)
    sampled = anchor_boxes(boxes, 5, random_state=0, sample_size=3000)
    assert sampled.figures["mean_iou"] >= full.figures["mean_iou"] - 0.002


@pytest.mark.parametrize("fitness", ["iou", "ratio", "both"])
def test_evolution_never_loses_fitness(fitness):
    boxes, _ = _planted_boxes(2, jitter=0.35)
    res = anchor_boxes(boxes, 4, random_state=0, evolve=200, fitness=fitness)
    curve = np.array(res.evolve_curve)
    assert curve.shape == ((400,) if fitness == "both" else (200,))
    if fitness != "both":  # "both" chains two curves of different figures
        assert np.all(np.diff(curve) >= 0)
    keys = {"iou": ["mean_iou"], "ratio": ["fitness"], "both": ["mean_iou", "fitness"]}
    for key in keys[fitness]:
        # float32 search, float64 figures: equal up to rounding
        assert res.figures[key] >= res.kmeans_figures[key] - 1e-6
    assert res.figures[keys[fitness][0]] > res.kmeans_figures[keys[fitness][0]]


def test_incremental_objective_matches_full_recomputation(global_random_seed):
    from clusterlens.anchors._evolve import Objective

    boxes, _ = _planted_boxes(global_random_seed, n=300, jitter=0.5)
    rng = np.random.default_rng(global_random_seed)
    anchors = PLANTED.copy()
    for kind in ("iou", "ratio"):
        obj = Objective.build(kind, boxes, anchors, 4.0)
        for _ in range(20):
            j = int(rng.integers(len(anchors)))
            cand = anchors.copy()
            cand[j] *= np.exp(rng.normal(0, 0.3, 2))
            col = obj.column(*cand[j])
            fresh = Objective.build(kind, boxes, cand, 4.0).current()
            assert obj.with_column(j, col) == pytest.approx(fresh, rel=1e-6)
            if rng.random() < 0.5:
                obj.accept(j, col)
                anchors = cand
        full = evaluate_anchors(boxes, anchors)
        key = "mean_iou" if kind == "iou" else "fitness"
        assert obj.current() == pytest.approx(full[key], rel=1e-5)


def test_evaluate_anchors_by_hand():
    boxes = np.array([[10, 10], [20, 40], [100, 10]], float)
    anchors = np.array([[10, 10], [20, 20]], float)
    f = evaluate_anchors(boxes, anchors, ratio_thr=4.0)
    # best IoUs: 1, 400/800 = 0.5, vs 20x20: 200/(1000 + 400 - 200) = 1/6
    assert f["mean_iou"] == pytest.approx((1 + 0.5 + 1 / 6) / 3)
    # best ratios: 1, 0.5 (vs 20x20), 0.1 (vs 10x10) -> the last is below 1/4
    assert f["bpr"] == pytest.approx(2 / 3)
    assert f["fitness"] == pytest.approx((1 + 0.5) / 3)
    # anchors above 1/4: box 1 -> both (10x10 gives 0.5), box 2 -> 20x20 only
    # (10x10 gives 0.25, not above), box 3 -> none
    assert f["aat"] == pytest.approx((2 + 1 + 0) / 3)


def test_estimator_contract():
    boxes, _ = _planted_boxes(3, n=400)
    est = AnchorKMeans(5, random_state=0).fit(boxes)
    np.testing.assert_array_equal(est.predict(boxes), est.labels_)
    assert est.get_params()["n_anchors"] == 5 and est.anchors_.shape == (5, 2)


def test_exports_round_trip():
    anchors = parse_anchors("10,13, 16,30, 33,23, 30,61, 62,45, 59,119")
    assert anchors.shape == (6, 2)
    assert (
        format_darknet_cfg(anchors)
        == "anchors = 10,13, 16,30, 33,23, 30,61, 62,45, 59,119"
    )
    levels = split_levels(anchors, 3)
    assert [len(lv) for lv in levels] == [2, 2, 2]
    assert format_yolov5_yaml(anchors, 2).splitlines() == [
        "anchors:",
        "  - [10,13, 16,30, 33,23]  # P3/8",
        "  - [30,61, 62,45, 59,119]  # P4/16",
    ]
    np.testing.assert_array_equal(
        parse_anchors(format_darknet_cfg(anchors)[10:]), anchors
    )


@pytest.mark.parametrize(
    ("boxes", "match"),
    [
        (
            np.array([[10.0, 0.0], [5.0, 5.0]]),
            "positive, finite width and height; 1 rows",
        ),
        (np.array([[10.0, np.nan]]), "positive, finite"),
        (np.zeros((0, 2)), "empty"),
        (np.ones((3, 3)), "shape \\(n_boxes, 2\\)"),
    ],
)
def test_bad_boxes(boxes, match):
    with pytest.raises(DataValidationError, match=match):
        anchor_boxes(boxes, 1)


def test_k_larger_than_distinct_sizes():
    boxes = np.array([[10, 10], [10, 10], [20, 20], [20, 20]], float)
    with pytest.raises(DataValidationError, match="distinct box sizes \\(2 among 4"):
        anchor_boxes(boxes, 3)


@pytest.mark.parametrize(
    ("text", "match"),
    [("10,13, 16", "pairs"), ("10,x", "numbers"), ("10,-3", "positive")],
)
def test_parse_anchors_errors(text, match):
    with pytest.raises(DataValidationError, match=match):
        parse_anchors(text)
