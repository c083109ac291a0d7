"""The IIC report: cluster grids, training curves, escaping, self-contained."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest

from clusterlens.exceptions import DataValidationError
from clusterlens.report._iic import build_iic_report


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections = []
        self.imgs = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append((a.get("class", ""), a.get("data-size")))
        if tag == "img":
            self.imgs += 1


def _history(n):
    return [
        {
            "epoch": e + 1,
            "loss": -0.5 * (e + 1),
            "loss_over": -0.7 * (e + 1),
            "accuracy": 0.5 + 0.1 * e,
            "nmi": 0.4 + 0.1 * e,
            "ari": 0.3 + 0.1 * e,
        }
        for e in range(n)
    ]


def test_report_has_a_card_per_cluster_and_curves(tmp_path):
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=30)
    proba[:, 2] = 0  # an empty cluster still gets a card
    proba /= proba.sum(axis=1, keepdims=True)
    images = rng.integers(0, 256, (30, 12, 12), dtype=np.uint8)
    labels = rng.integers(0, 2, 30)
    out = build_iic_report(
        tmp_path / "r.html",
        proba=proba,
        images=images,
        labels_true=labels,
        class_names=["<cat>", "dog"],
        history=_history(3),
        figures={"note": "<script>x</script>"},
        max_thumbnails=5,
    )
    html = out.read_text()
    p = _Collect()
    p.feed(html)
    clusters = [s for s in p.sections if "cluster" in s[0].split()]
    assert sorted(int(s[1]) for s in clusters) == sorted(
        np.bincount(proba.argmax(1), minlength=3).tolist()
    )
    assert sum("training-curve" in s[0] for s in p.sections) == 2
    assert p.imgs == sum(min(5, int(s[1])) for s in clusters)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;cat&gt;" in html
    assert "http://" not in html and "https://" not in html


def test_report_without_labels_or_images_has_one_curve(tmp_path):
    proba = np.eye(2)[[0, 1, 1, 0]]
    hist = [{"epoch": 1, "loss": -0.3}, {"epoch": 2, "loss": -0.6}]
    html = build_iic_report(tmp_path / "r.html", proba=proba, history=hist).read_text()
    assert html.count("training-curve") == 1 and "<img" not in html


def test_report_rejects_bad_shapes(tmp_path):
    with pytest.raises(DataValidationError, match="proba"):
        build_iic_report(tmp_path / "r.html", proba=np.ones(3))
    with pytest.raises(DataValidationError, match="labels_true"):
        build_iic_report(tmp_path / "r.html", proba=np.eye(2), labels_true=[0])
