"""Tests for clusterlens.report.build_cluster_report, read back with html.parser."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.report import build_cluster_report

EVIL = "<script>alert(1)</script>"


class ReportParser(HTMLParser):
    """Collect the parts of a report the tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[dict[str, str | None]] = []
        self.imgs: dict[int, list[dict[str, str | None]]] = {}
        self.urls: list[str] = []
        self.polylines: list[dict[str, str | None]] = []
        self.scripts = 0
        self.figures: dict[str, str] = {}
        self.title_text = ""
        self._cluster: int | None = None
        self._depth = 0
        self._in_figures = False
        self._in_title = False
        self._cell: list[str] | None = None
        self._row: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(a[key])
        classes = (a.get("class") or "").split()
        if tag == "section":
            if "cluster" in classes:
                self.sections.append(a)
                self._cluster = int(a["data-cluster"])
                self._depth = 0
            elif self._cluster is not None:
                self._depth += 1
        elif tag == "img" and self._cluster is not None:
            self.imgs.setdefault(self._cluster, []).append(a)
        elif tag == "polyline":
            self.polylines.append(a)
        elif tag == "script":
            self.scripts += 1
        elif tag == "table" and "figures" in classes:
            self._in_figures = True
        elif tag == "tr" and self._in_figures:
            self._row = []
        elif tag in ("th", "td") and self._in_figures:
            self._cell = []
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "section" and self._cluster is not None:
            if self._depth == 0:
                self._cluster = None
            else:
                self._depth -= 1
        elif tag in ("th", "td") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._in_figures and len(self._row) == 2:
            self.figures[self._row[0]] = self._row[1]
        elif tag == "table":
            self._in_figures = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title_text += data


def parse(path) -> tuple[ReportParser, str]:
    text = path.read_text(encoding="utf-8")
    parser = ReportParser()
    parser.feed(text)
    parser.close()
    return parser, text


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 30
    labels_pred = np.repeat([0, 1, 2], [14, 10, 6])
    rng.shuffle(labels_pred)
    return {
        "labels_pred": labels_pred,
        "images": rng.random((n, 8, 8)) * 16.0,
        "labels_true": rng.integers(0, 4, n),
        "distances": rng.random(n),
    }


def test_one_section_per_cluster_largest_first(tmp_path, data):
    p, _ = parse(build_cluster_report(tmp_path / "r.html", **data))
    assert [s["data-cluster"] for s in p.sections] == ["0", "1", "2"]
    assert [s["data-size"] for s in p.sections] == ["14", "10", "6"]
    assert p.scripts == 0


def test_thumbnail_count_is_capped_per_cluster(tmp_path, data):
    out = build_cluster_report(tmp_path / "r.html", **data, max_thumbnails=8)
    p, _ = parse(out)
    sizes = np.bincount(data["labels_pred"])
    assert {c: len(v) for c, v in p.imgs.items()} == {0: 8, 1: 8, 2: 6}
    assert sum(len(v) for v in p.imgs.values()) == np.minimum(sizes, 8).sum()


def test_thumbnails_are_png_data_uris_upscaled(tmp_path, data):
    from PIL import Image

    p, _ = parse(build_cluster_report(tmp_path / "r.html", **data, thumb_size=40))
    img = p.imgs[0][0]
    assert img["src"].startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
    assert png.size == (40, 40)
    assert (img["width"], img["height"]) == ("40", "40")
    # Nearest-neighbour upscaling keeps 5x5 blocks of one value.
    arr = np.asarray(png)
    assert np.all(arr[:5, :5] == arr[0, 0])


def test_thumbnails_ordered_by_distance(tmp_path, data):
    p, _ = parse(build_cluster_report(tmp_path / "r.html", **data, max_thumbnails=5))
    dist, pred = data["distances"], data["labels_pred"]
    for c, imgs in p.imgs.items():
        idx = np.array([int(a["data-index"]) for a in imgs])
        assert np.all(pred[idx] == c)
        assert np.all(np.diff(dist[idx]) >= 0)
        # The shown ones are the closest of the cluster.
        members = np.flatnonzero(pred == c)
        expected = members[np.argsort(dist[members])][: idx.size]
        np.testing.assert_array_equal(idx, expected)


def test_thumbnail_title_gives_index_label_and_distance(tmp_path, data):
    p, _ = parse(build_cluster_report(tmp_path / "r.html", **data))
    img = p.imgs[0][0]
    i = int(img["data-index"])
    assert f"item {i}" in img["title"]
    assert f"label {data['labels_true'][i]}" in img["title"]
    assert "distance " in img["title"]


def test_user_strings_are_escaped(tmp_path, data):
    labels = np.array([EVIL, "cat"], dtype=object)[data["labels_true"] % 2]
    out = build_cluster_report(
        tmp_path / "r.html",
        labels_pred=data["labels_pred"],
        images=data["images"],
        labels_true=labels,
        figures={EVIL: EVIL},
        params={"note": EVIL},
        title=EVIL,
    )
    p, text = parse(out)
    assert EVIL not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert p.scripts == 0
    assert p.title_text == EVIL
    assert p.figures[EVIL] == EVIL


def test_class_names_are_escaped_and_used(tmp_path, data):
    names = ["zero", EVIL, "two", "three"]
    p, text = parse(
        build_cluster_report(tmp_path / "r.html", **data, class_names=names)
    )
    assert EVIL not in text
    assert "zero" in text
    assert p.scripts == 0


def test_no_external_urls(tmp_path, data):
    out = build_cluster_report(
        tmp_path / "r.html",
        **data,
        history=[{"iteration": i, "inertia": 10.0 / (i + 1)} for i in range(5)],
        params={"n_clusters": 3},
    )
    p, text = parse(out)
    assert p.urls, "expected thumbnails and anchors"
    for url in p.urls:
        assert not url.startswith(("http://", "https://", "//")), url
        assert url.startswith(
            ("data:image/png;base64,", "data:image/webp;base64,", "#")
        ), url
    assert "http://" not in text and "https://" not in text


def test_figures_table_contains_values(tmp_path, data):
    figures = {"accuracy": 0.875, "NMI": 0.5, "seconds": 1.25, "engine": "numpy"}
    p, _ = parse(build_cluster_report(tmp_path / "r.html", **data, figures=figures))
    assert p.figures == {
        "figure": "value",
        "accuracy": "0.875",
        "NMI": "0.5",
        "seconds": "1.25",
        "engine": "numpy",
    }


def test_history_draws_svg_polyline(tmp_path, data):
    history = [{"iteration": i, "inertia": 100.0 / (i + 1)} for i in range(6)]
    p, text = parse(build_cluster_report(tmp_path / "r.html", **data, history=history))
    assert len(p.polylines) == 1
    points = p.polylines[0]["points"].split()
    assert len(points) == 6
    ys = [float(pt.split(",")[1]) for pt in points]
    assert ys == sorted(ys), "falling inertia is drawn going down the page (y grows)"
    assert ">iteration<" in text and ">inertia<" in text


def test_no_history_no_chart(tmp_path, data):
    p, _ = parse(build_cluster_report(tmp_path / "r.html", **data))
    assert p.polylines == []


def test_purity_and_majority(tmp_path):
    pred = np.array([0, 0, 0, 0, 1, 1])
    true = np.array(["a", "a", "a", "b", "b", "c"])
    _, text = parse(
        build_cluster_report(tmp_path / "r.html", labels_pred=pred, labels_true=true)
    )
    assert "purity 0.75" in text
    assert "purity 0.50" in text
    assert '<strong class="majority">a</strong>' in text


def test_images_none_has_no_thumbnails(tmp_path, data):
    data = {**data, "images": None}
    p, _ = parse(build_cluster_report(tmp_path / "r.html", **data))
    assert len(p.sections) == 3
    assert p.imgs == {}


def test_rgb_uint8_images(tmp_path, data):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30, 64, 32, 3), dtype=np.uint8)
    p, _ = parse(
        build_cluster_report(
            tmp_path / "r.html", labels_pred=data["labels_pred"], images=images
        )
    )
    assert (p.imgs[0][0]["width"], p.imgs[0][0]["height"]) == ("24", "48")


def test_overwrites_atomically_and_leaves_no_temp_file(tmp_path, data):
    out = tmp_path / "r.html"
    out.write_text("old", encoding="utf-8")
    assert build_cluster_report(out, **data) == out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [f.name for f in tmp_path.iterdir()] == ["r.html"]


@pytest.mark.parametrize("name", ["images", "labels_true", "distances"])
def test_length_mismatch_raises(tmp_path, data, name):
    data[name] = data[name][:-1]
    with pytest.raises(
        DataValidationError, match=rf"{name} has 29 items but labels_pred has 30"
    ):
        build_cluster_report(tmp_path / "r.html", **data)
    assert not (tmp_path / "r.html").exists()


def test_images_wrong_ndim_raises(tmp_path, data):
    with pytest.raises(
        DataValidationError, match=r"images must be 3-D .* got shape \(30, 64\)"
    ):
        build_cluster_report(
            tmp_path / "r.html",
            labels_pred=data["labels_pred"],
            images=data["images"].reshape(30, 64),
        )


def test_history_missing_key_raises(tmp_path, data):
    with pytest.raises(
        DataValidationError, match=r"history\[1\] lacks the key 'inertia'"
    ):
        build_cluster_report(
            tmp_path / "r.html",
            **data,
            history=[{"iteration": 0, "inertia": 1.0}, {"iteration": 1}],
        )


def test_bad_max_thumbnails_raises(tmp_path, data):
    with pytest.raises(InvalidParameterError, match=r"'max_thumbnails' parameter"):
        build_cluster_report(tmp_path / "r.html", **data, max_thumbnails=-1)


def test_nan_images_raise(tmp_path, data):
    images = data["images"].copy()
    images[3, 2, 2] = np.nan
    with pytest.raises(DataValidationError, match="NaN or infinity"):
        build_cluster_report(tmp_path / "r.html", **{**data, "images": images})
