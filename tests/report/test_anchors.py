"""Tests for build_anchor_report, read back with html.parser."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.report._anchors import _PALETTE, build_anchor_report

EVIL = "<script>x</script>"
TIMES = "\u00d7"  # MULTIPLICATION SIGN


class AnchorReportParser(HTMLParser):
    """Collect the parts of an anchor report the tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.svgs: list[dict[str, str | None]] = []
        self.dots: list[tuple[int, float, float]] = []  # (anchor, cx, cy)
        self.groups: list[dict[str, str | None]] = []
        self.markers: list[dict[str, str | None]] = []
        self.shapes: list[dict[str, str | None]] = []
        self.guides: list[dict[str, str | None]] = []
        self.urls: list[str] = []
        self.scripts = 0
        self.details = 0
        self.title_text = ""
        self.texts: dict[str, list[str]] = {}  # svg <text> by class
        self.tables: dict[str, list[list[str]]] = {}  # rows by table class
        self.figcaptions: list[str] = []
        self._svg: str | None = None
        self._group: int | None = None
        self._text: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_title = False
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for value in a.values():
            if value and re.search(r"(https?:)?//", value):
                self.urls.append(value)
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(a[key])
        classes = (a.get("class") or "").split()
        if tag == "svg":
            self.svgs.append(a)
            self._svg = classes[0] if classes else ""
        elif tag == "g" and "box-dots" in classes:
            self.groups.append(a)
            self._group = int(a["data-anchor"])
        elif tag == "g" and "anchor-marker" in classes:
            self.markers.append(a)
        elif tag == "circle" and "box-dot" in classes:
            self.dots.append((self._group, float(a["cx"]), float(a["cy"])))
        elif tag == "rect" and "anchor-shape" in classes:
            self.shapes.append(a)
        elif tag == "line" and "guide" in classes:
            self.guides.append(a)
        elif tag == "text" and self._svg is not None:
            self._text = classes[0] if classes else ""
            self.texts.setdefault(self._text, []).append("")
        elif tag == "script":
            self.scripts += 1
        elif tag == "details":
            self.details += 1
        elif tag == "table":
            self._table = classes[-1] if classes else ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("th", "td") and self._row is not None:
            self._cell = []
        elif tag == "title" and self._svg is None:
            self._in_title = True
        elif tag == "figcaption":
            self._in_caption = True
            self.figcaptions.append("")

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = None
        elif tag == "g":
            self._group = None
        elif tag == "text":
            self._text = None
        elif tag in ("th", "td") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "title":
            self._in_title = False
        elif tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title_text += data
        if self._text is not None:
            self.texts[self._text][-1] += data
        if self._in_caption:
            self.figcaptions[-1] += data


def parse(path) -> tuple[AnchorReportParser, str]:
    text = path.read_text(encoding="utf-8")
    parser = AnchorReportParser()
    parser.feed(text)
    parser.close()
    return parser, text


@pytest.fixture
def data(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    n = 300
    wh = np.exp(rng.normal(np.log(40.0), 0.8, (n, 2)))
    anchors = np.array([[12.0, 15.0], [30.0, 40.0], [80.0, 60.0], [150.0, 200.0]])
    inter = np.minimum(wh[:, None, 0], anchors[:, 0]) * np.minimum(
        wh[:, None, 1], anchors[:, 1]
    )
    iou = inter / (wh.prod(1)[:, None] + anchors.prod(1) - inter)
    return {"boxes_wh": wh, "labels": iou.argmax(1), "anchors": anchors}


def build(tmp_path, data, **kwargs):
    return parse(build_anchor_report(tmp_path / "anchors.html", **data, **kwargs))


# --------------------------------------------------------------------------- #
# Scatter plot
# --------------------------------------------------------------------------- #
def test_scatter_draws_every_box_and_one_marker_per_anchor(tmp_path, data):
    p, _ = build(tmp_path, data)
    assert [s["class"] for s in p.svgs] == ["anchor-scatter", "anchor-shapes"]
    assert len(p.dots) == 300
    assert [int(m["data-anchor"]) for m in p.markers] == [0, 1, 2, 3]
    counts = np.bincount([a for a, _, _ in p.dots], minlength=4)
    np.testing.assert_array_equal(counts, np.bincount(data["labels"], minlength=4))
    assert p.figcaptions[0].startswith("All 300 boxes shown.")
    assert p.scripts == 0


def test_scatter_subsample_is_capped_and_captioned(tmp_path, data):
    p, _ = build(tmp_path, data, max_points=120)
    assert len(p.dots) == 120
    assert len(p.markers) == 4
    assert p.figcaptions[0].startswith(
        "120 of 300 boxes shown (uniform random subsample, random_state=0)."
    )


def test_generator_random_state_is_accepted(tmp_path, data):
    p, _ = build(tmp_path, data, max_points=50, random_state=np.random.default_rng(3))
    assert len(p.dots) == 50
    assert p.figcaptions[0].startswith(
        "50 of 300 boxes shown (uniform random subsample)."
    )


def test_caption_uses_thousands_separators(tmp_path):
    rng = np.random.default_rng(0)
    wh = rng.uniform(5, 50, (12_345, 2))
    p, _ = parse(
        build_anchor_report(
            tmp_path / "a.html",
            boxes_wh=wh,
            labels=np.zeros(12_345, dtype=int),
            anchors=[[20.0, 20.0]],
            max_points=1000,
        )
    )
    assert len(p.dots) == 1000
    assert "1,000 of 12,345 boxes shown" in p.figcaptions[0]


def test_max_points_zero_draws_no_dots_but_all_markers(tmp_path, data):
    p, _ = build(tmp_path, data, max_points=0)
    assert p.dots == []
    assert len(p.markers) == 4


def test_subsample_is_deterministic_for_same_random_state(tmp_path, data):
    a, _ = build(tmp_path, data, max_points=50, random_state=7)
    b, _ = build(tmp_path, data, max_points=50, random_state=7)
    c, _ = build(tmp_path, data, max_points=50, random_state=8)
    assert a.dots == b.dots
    assert a.dots != c.dots


def test_dots_sit_at_log10_w_h_with_equal_scales(tmp_path, data):
    p, _ = build(tmp_path, data)
    # Dots are grouped by anchor, in input order inside each group.
    order = np.argsort(data["labels"], kind="stable")
    lw, lh = np.log10(data["boxes_wh"][order]).T
    cx = np.array([x for _, x, _ in p.dots])
    cy = np.array([y for _, _, y in p.dots])
    sx, ox = np.polyfit(lw, cx, 1)
    sy, oy = np.polyfit(lh, cy, 1)
    assert sx > 0 and sy < 0, "width grows to the right, height grows upwards"
    assert sx == pytest.approx(-sy, rel=1e-3), "one decade is as long on both axes"
    np.testing.assert_allclose(cx, sx * lw + ox, atol=0.06)
    np.testing.assert_allclose(cy, sy * lh + oy, atol=0.06)


def test_coordinates_rounded_to_one_decimal(tmp_path, data):
    _, text = build(tmp_path, data)
    coords = re.findall(r'c[xy]="([^"]+)"', text)
    assert len(coords) == 600
    assert all(re.fullmatch(r"-?\d+(\.\d)?", c) for c in coords)


def test_ticks_are_1_2_5_multiples_in_data_units(tmp_path, data):
    p, _ = build(tmp_path, data)
    ticks = p.texts["tick"]
    assert {"10", "20", "50", "100"} <= set(ticks)
    for t in ticks:
        v = float(t.replace(",", ""))
        mantissa = v / 10 ** np.floor(np.log10(v))
        assert round(mantissa, 6) in (1, 2, 5), t
    assert p.texts["axis-label"] == ["width (pixels)", "height (pixels)"]


def test_fraction_units_give_decimal_ticks(tmp_path, data):
    scaled = {
        **data,
        "boxes_wh": data["boxes_wh"] / 1000,
        "anchors": data["anchors"] / 1000,
    }
    p, _ = build(tmp_path, scaled, units="fraction of image")
    assert {"0.01", "0.02", "0.05", "0.1"} <= set(p.texts["tick"])
    assert p.texts["axis-label"] == [
        "width (fraction of image)",
        "height (fraction of image)",
    ]


def test_guides_for_three_aspect_ratios(tmp_path, data):
    p, _ = build(tmp_path, data)
    assert p.texts["guide-label"] == ["1:2", "1:1", "2:1"]
    for g in p.guides:
        dx = float(g["x2"]) - float(g["x1"])
        dy = float(g["y2"]) - float(g["y1"])
        assert dx > 0 and dy == pytest.approx(-dx, abs=0.15)


def test_anchor_labels_give_index_and_size(tmp_path, data):
    p, _ = build(tmp_path, data)
    assert p.texts["anchor-label"] == [
        f"#0 12{TIMES}15",
        f"#1 30{TIMES}40",
        f"#2 80{TIMES}60",
        f"#3 150{TIMES}200",
    ]


def test_palette_has_12_colours_and_cycles(tmp_path):
    k = 14
    anchors = np.column_stack([np.arange(1, k + 1) * 10.0] * 2)
    p, _ = parse(
        build_anchor_report(
            tmp_path / "a.html", boxes_wh=anchors, labels=np.arange(k), anchors=anchors
        )
    )
    colors = [m["stroke"] for m in p.markers]
    assert len(set(colors[:12])) == 12 == len(_PALETTE)
    assert colors[12:] == colors[:2]
    assert [g["fill"] for g in p.groups] == colors


# --------------------------------------------------------------------------- #
# Anchor shapes and tables
# --------------------------------------------------------------------------- #
def test_shapes_are_centred_and_fit_the_square(tmp_path, data):
    p, _ = build(tmp_path, data)
    assert sorted(int(r["data-anchor"]) for r in p.shapes) == [0, 1, 2, 3]
    assert p.shapes[0]["data-anchor"] == "3", "largest drawn first, under the others"
    for r in p.shapes:
        x, y, w, h = (float(r[k]) for k in ("x", "y", "width", "height"))
        assert x + w / 2 == pytest.approx(150, abs=0.1)
        assert y + h / 2 == pytest.approx(150, abs=0.1)
        assert 0 <= x and x + w <= 300 and 0 <= y and y + h <= 300
    big = p.shapes[0]
    assert float(big["width"]) / float(big["height"]) == pytest.approx(0.75, abs=0.01)


def test_anchor_table_counts_and_mean_iou(tmp_path, data):
    box_iou = np.linspace(0.2, 0.9, 300)
    p, _ = build(tmp_path, data, box_iou=box_iou)
    header, *rows = p.tables["anchors"]
    assert header == ["#", "w", "h", "w / h", "area", "boxes", "share", "mean IoU"]
    labels = data["labels"]
    counts = np.bincount(labels, minlength=4)
    assert [r[0] for r in rows] == ["#0", "#1", "#2", "#3"]
    assert [r[5] for r in rows] == [f"{c:,}" for c in counts]
    for i, r in enumerate(rows):
        expected = f"{box_iou[labels == i].mean():.3f}" if counts[i] else "—"
        assert r[7] == expected
    assert rows[2][1:5] == ["80", "60", "1.33", "4,800"]


def test_mean_iou_computed_by_hand_without_box_iou(tmp_path):
    # IoU([10, 10], [10, 10]) = 1; IoU([20, 10], [10, 10]) = 100 / 200 = 0.5.
    p, text = parse(
        build_anchor_report(
            tmp_path / "a.html",
            boxes_wh=[[10.0, 10.0], [20.0, 10.0], [50.0, 50.0]],
            labels=[0, 0, 1],
            anchors=[[10.0, 10.0], [40.0, 50.0]],
        )
    )
    rows = p.tables["anchors"][1:]
    assert rows[0][7] == "0.750"
    assert rows[1][7] == "0.800"
    assert rows[0][6] == "66.7%"
    assert '<span class="stat-value">0.767</span>' in text  # (1 + 0.5 + 0.8) / 3


def test_anchor_without_boxes_shows_dash(tmp_path):
    p, _ = parse(
        build_anchor_report(
            tmp_path / "a.html",
            boxes_wh=[[10.0, 10.0]],
            labels=[0],
            anchors=[[10.0, 10.0], [40.0, 50.0]],
        )
    )
    assert p.tables["anchors"][2][5:] == ["0", "0.0%", "—"]


def test_per_category_mapping_is_escaped(tmp_path, data):
    per_category = {
        "person": {"boxes": 100, "mean_iou": 0.61},
        EVIL: {"boxes": 3, "mean_iou": 0.5, "note": EVIL},
    }
    p, text = build(tmp_path, data, per_category=per_category, title=EVIL)
    assert EVIL not in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text
    assert p.scripts == 0
    assert p.title_text == EVIL
    assert p.tables["per-category"] == [
        ["category", "boxes", "mean_iou", "note"],
        ["person", "100", "0.61", "—"],
        [EVIL, "3", "0.5", EVIL],
    ]


def test_per_size_sequence_of_mappings(tmp_path, data):
    per_size = [
        {"bucket": "small", "boxes": 10, "mean_iou": 0.4},
        {"bucket": "large", "boxes": 1234, "bpr": 0.99},
    ]
    p, text = build(tmp_path, data, per_size=per_size)
    assert p.tables["per-size"] == [
        ["bucket", "boxes", "mean_iou", "bpr"],
        ["small", "10", "0.4", "—"],
        ["large", "1,234", "—", "0.99"],
    ]
    assert 'id="per-category"' not in text


def test_figures_table_contains_values(tmp_path, data):
    figures = {"mean IoU": 0.6512, "BPR": 0.9931, "n boxes": 860000, "seconds": 1.5}
    p, _ = build(tmp_path, data, figures=figures)
    assert p.tables["figures"] == [
        ["figure", "value"],
        ["mean IoU", "0.6512"],
        ["BPR", "0.9931"],
        ["n boxes", "860,000"],
        ["seconds", "1.5"],
    ]


def test_params_in_collapsible_details(tmp_path, data):
    p, text = build(tmp_path, data, params={"n_clusters": 4, "note": EVIL})
    assert p.details == 1
    assert "<summary>Parameters" in text
    assert EVIL not in text
    p, _ = build(tmp_path, data)
    assert p.details == 0


def test_no_external_urls(tmp_path, data):
    p, text = build(
        tmp_path,
        data,
        figures={"a": 1},
        per_category={"x": {"n": 1}},
        per_size=[{"s": "small"}],
        params={"k": 4},
    )
    assert p.urls == []
    assert "http://" not in text and "https://" not in text
    assert "<style>" in text, "CSS is inlined"


def test_overwrites_atomically_and_leaves_no_temp_file(tmp_path, data):
    out = tmp_path / "anchors.html"
    out.write_text("old", encoding="utf-8")
    assert build_anchor_report(out, **data) == out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [f.name for f in tmp_path.iterdir()] == ["anchors.html"]


def test_inputs_are_not_modified(tmp_path, data):
    boxes = data["boxes_wh"].copy()
    boxes.flags.writeable = False
    build_anchor_report(
        tmp_path / "a.html", **{**data, "boxes_wh": boxes}, max_points=10
    )
    np.testing.assert_array_equal(boxes, data["boxes_wh"])


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def _bad(data, **changes):
    return {**data, **changes}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda d: {"boxes_wh": d["boxes_wh"][:, :1]},
            r"boxes_wh must be 2-D of shape \(n_boxes, 2\) .* got shape \(300, 1\)",
        ),
        (
            lambda d: {"boxes_wh": d["boxes_wh"][:0], "labels": d["labels"][:0]},
            r"boxes_wh is empty",
        ),
        (
            lambda d: {"labels": d["labels"][:-1]},
            r"labels has 299 items but boxes_wh has 300 rows",
        ),
        (
            lambda d: {"labels": d["labels"].reshape(-1, 1)},
            r"labels must be 1-D of shape \(n_boxes,\); got shape \(300, 1\)",
        ),
        (
            lambda d: {"anchors": d["anchors"].ravel()},
            r"anchors must be 2-D of shape \(n_anchors, 2\)",
        ),
        (
            lambda d: {"labels": np.where(np.arange(300) == 17, 4, d["labels"])},
            r"labels holds 1 values outside \[0, 4\).*first at index 17: 4",
        ),
        (
            lambda d: {"labels": np.where(np.arange(300) == 5, -1, d["labels"])},
            r"labels holds 1 values outside \[0, 4\).*first at index 5: -1",
        ),
        (
            lambda d: {"labels": d["labels"].astype(str)},
            r"labels must hold integer anchor indices",
        ),
        (
            lambda d: {"box_iou": np.full(300, 1.5)},
            r"box_iou must lie in \[0, 1\]; 300 values do not",
        ),
        (
            lambda d: {"box_iou": np.ones(299)},
            r"box_iou must be 1-D of shape \(n_boxes,\) = \(300,\)",
        ),
        (
            lambda d: {"per_category": ["person"]},
            r"per_category\[0\] must be a mapping of column name to value; got str",
        ),
        (
            lambda d: {"per_size": {"small": 3}},
            r"per_size\['small'\] must be a mapping of figure name to value",
        ),
        (
            lambda d: {"per_size": "small"},
            r"per_size must be a mapping of size to a mapping of figures",
        ),
    ],
)
def test_bad_input_raises(tmp_path, data, change, match):
    with pytest.raises(DataValidationError, match=match):
        build_anchor_report(tmp_path / "a.html", **_bad(data, **change(data)))
    assert not (tmp_path / "a.html").exists()


@pytest.mark.parametrize(("col", "dim"), [(0, "w"), (1, "h")])
@pytest.mark.parametrize("value", [0.0, -3.0])
def test_non_positive_sizes_raise(tmp_path, data, col, dim, value):
    boxes = data["boxes_wh"].copy()
    boxes[[17, 40], col] = value
    with pytest.raises(
        DataValidationError,
        match=rf"boxes_wh must have positive width and height; 2 rows have {dim} <= 0 "
        r"\(first at index 17\)",
    ):
        build_anchor_report(tmp_path / "a.html", **{**data, "boxes_wh": boxes})


def test_non_positive_anchor_raises(tmp_path, data):
    anchors = data["anchors"].copy()
    anchors[2, 1] = 0
    with pytest.raises(
        DataValidationError,
        match=r"anchors must have positive .* h <= 0 \(first at index 2\)",
    ):
        build_anchor_report(tmp_path / "a.html", **{**data, "anchors": anchors})


def test_nan_boxes_raise(tmp_path, data):
    boxes = data["boxes_wh"].copy()
    boxes[3, 0] = np.nan
    with pytest.raises(
        DataValidationError, match=r"boxes_wh must be finite; 1 rows .* index 3"
    ):
        build_anchor_report(tmp_path / "a.html", **{**data, "boxes_wh": boxes})


def test_bad_parameters_raise(tmp_path, data):
    with pytest.raises(InvalidParameterError, match=r"'max_points' parameter"):
        build_anchor_report(tmp_path / "a.html", **data, max_points=-1)
    with pytest.raises(InvalidParameterError, match=r"'title' parameter .* str"):
        build_anchor_report(tmp_path / "a.html", **data, title=3)
    with pytest.raises(InvalidParameterError, match=r"'units' parameter .* str"):
        build_anchor_report(tmp_path / "a.html", **data, units=None)
