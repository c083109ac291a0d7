"""Segmentation scores: Hungarian pixel accuracy, mIoU and class tables (#21)."""

from __future__ import annotations

import numpy as np
import pytest

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.metrics import (
    SegmentationConfusion,
    parse_class_table,
    segmentation_scores,
)


def test_scores_by_hand():
    # classes x clusters; best matching: a->1, b->0, c->2 (40 + 30 + 5 = 75 of 100)
    m = np.array([[10, 40, 0], [30, 5, 5], [0, 5, 5]])
    s = segmentation_scores(m, ["a", "b", "c"])
    assert s["match"] == {"a": 1, "b": 0, "c": 2}
    assert s["accuracy"] == pytest.approx(75 / 100)
    iou = {"a": 40 / (50 + 50 - 40), "b": 30 / (40 + 40 - 30), "c": 5 / (10 + 10 - 5)}
    assert s["iou"] == pytest.approx(iou)
    assert s["miou"] == pytest.approx(np.mean(list(iou.values())))


def test_more_classes_than_clusters_leave_a_class_unmatched():
    s = segmentation_scores(np.array([[9, 0], [0, 9], [1, 1]]), ["a", "b", "c"])
    assert s["match"]["c"] == -1 and s["iou"]["c"] == 0.0
    assert s["accuracy"] == pytest.approx(18 / 20)


def test_presets_merge_and_ignore_the_camvid_ids():
    t3 = parse_class_table("camvid3")
    assert t3.class_names == ("sky", "ground", "plants")
    ids = np.arange(12)
    np.testing.assert_array_equal(
        t3.map(ids, "x"), [0, -1, -1, 1, 1, 2, -1, -1, -1, -1, -1, -1]
    )
    t6 = parse_class_table("CamVid-6")
    np.testing.assert_array_equal(
        t6.map(ids, "x"), [0, 1, 1, 2, 3, 4, 1, 1, 5, 5, 5, -1]
    )
    t11 = parse_class_table("camvid11")
    np.testing.assert_array_equal(t11.map(ids, "x"), [*range(11), -1])
    with pytest.raises(DataValidationError, match=r"label id\(s\) 12 outside"):
        t11.map(np.array([[0, 12]]), "Label map 'a.png'")


def test_confusion_ignores_pixels_and_checks_sizes():
    t = parse_class_table("sky=0; road=3,4; ignore=11")
    c = SegmentationConfusion(t, 2)
    lab = np.array([[0, 0, 3], [4, 11, 11]])
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    counts = c.add(lab, pred, "x")
    np.testing.assert_array_equal(counts, [[0, 2], [2, 0]])
    with pytest.raises(DataValidationError, match="its image's size"):
        c.add(lab, pred[:, :2], "Label map 'b.png'")
    with pytest.raises(DataValidationError, match="outside the class table"):
        c.add(np.array([[5]]), np.array([[0]]), "Label map 'c.png'")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("camvd3", "Did you mean 'camvid3'"),
        ("sky=0", "at least 2"),
        ("sky=0; road=0", "in both"),
        ("sky=x; road=1", "not a label id"),
        ("sky=0; road=9-3", "not a range"),
        ("sky", "Unknown class table"),
    ],
)
def test_bad_class_tables(spec, message):
    with pytest.raises(InvalidParameterError, match=message):
        parse_class_table(spec)
