"""The label-issues report: whole-image galleries, and its geometry in Chromium."""

from __future__ import annotations

import base64
import io
import itertools
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tests._browser import chromium
from tests.cli.test_label_issues_cli import _labelled_ws, _tiny_coco

from clusterlens.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class _Gallery(HTMLParser):
    """Per gallery row: its sample index and the images in it."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[int, list[dict[str, str]]]] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-index" in a:
            self.rows.append((int(a["data-index"]), []))
        if tag == "img" and self.rows:
            self.rows[-1][1].append(a)


def _gallery(path):
    g = _Gallery()
    g.feed(path.read_text())
    return g.rows


def _decode(src):
    head, data = src.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def _digits(root, n=240, *, with_path=True):
    """8x8 digits saved as PNG files, their pixels as features, a labels CSV
    with a path column (relative to the CSV); some labels flipped."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:n], y[:n].copy()
    rng = np.random.default_rng(0)
    flip = rng.choice(n, 20, replace=False)
    y[flip] = (y[flip] + 1) % 10
    (root / "img").mkdir(parents=True)
    pix = (X.reshape(-1, 8, 8) * 15).astype(np.uint8)
    for i in range(n):
        Image.fromarray(pix[i]).save(root / "img" / f"{i:04d}.png")
    np.save(root / "X.npy", X.astype(np.float32))
    head = "path,label\n" if with_path else "label\n"
    body = "".join(
        (f"img/{i:04d}.png,{y[i]}\n" if with_path else f"{y[i]}\n") for i in range(n)
    )
    (root / "labels.csv").write_text(head + body)
    return pix


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A features+labels report with image paths, and a COCO boxes report."""
    root = tmp_path_factory.mktemp("li")
    pix = _digits(root / "digits")
    d = root / "digits"
    r = run("label-issues", d / "X.npy", d / "labels.csv", "--out", root / "fl",
            "--top", 8, "--folds", 3, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    ann, images = _tiny_coco(root / "coco")
    r = run("label-issues", ann, "--images", images, "--embed", "pixels",
            "--out", root / "boxes", "--top", 4, "--folds", 2, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    return root, pix


def test_features_labels_gallery_shows_each_samples_image(reports):
    """#19: FEATURES LABELS with a path column: the gallery shows the image,
    not only "sample 359"."""
    root, pix = reports
    rows = _gallery(root / "fl" / "report.html")
    assert len(rows) == 16
    for i, imgs in rows:
        (img,) = imgs
        assert img["alt"] == f"sample {i}"
        got = _decode(img["src"])
        assert got.shape[:2] == (96, 96)  # 8 px enlarged to 96, sharp
        want = np.kron(pix[i], np.ones((12, 12), np.uint8))
        np.testing.assert_array_equal(got if got.ndim == 2 else got[..., 0], want)


def test_features_labels_without_paths_and_an_images_folder(tmp_path):
    _digits(tmp_path / "d", n=120, with_path=False)
    d = tmp_path / "d"
    r = run("label-issues", d / "X.npy", d / "labels.csv", "--out", tmp_path / "o",
            "--top", 3, "--folds", 3, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert all(not imgs for _, imgs in _gallery(tmp_path / "o" / "report.html"))
    # paths relative to --images, the folder the CSV names them from
    moved = tmp_path / "elsewhere"
    shutil.move(d / "img", moved / "img")
    lines = (d / "labels.csv").read_text().splitlines()[1:]
    (d / "l2.csv").write_text(
        "label,path\n" + "".join(f"{v},img/{i:04d}.png\n" for i, v in enumerate(lines))
    )
    r = run("label-issues", d / "X.npy", d / "l2.csv", "--images", moved,
            "--out", tmp_path / "o2", "--top", 3, "--folds", 3, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = _gallery(tmp_path / "o2" / "report.html")
    assert rows and all(len(imgs) == 1 for _, imgs in rows)


def test_whole_image_workspace_gallery_shows_images(tmp_path):
    ws, wsp = _labelled_ws(tmp_path)
    r = run("label-issues", ws, "--folds", 2, "--top", 3, "--class", "a", "-q")
    assert r.exit_code == 0, r.output
    rows = _gallery(ws / "label-issues" / "report.html")
    assert len(rows) == 6
    for i, (img,) in ((i, imgs) for i, imgs in rows):
        got = _decode(img["src"])
        assert got.shape[:2] == (96, 96)
        assert tuple(got[48, 48, :3]) == tuple(wsp.read_item(i)[8, 8])


# --------------------------------------------------------------------------- #
# In a real browser
# --------------------------------------------------------------------------- #
_GEOMETRY = """() => {
  const hists = [...document.querySelectorAll('svg.hist')].map(svg => {
    const box = svg.getBoundingClientRect();
    const bars = [...svg.querySelectorAll('rect')].map(r => {
      const b = r.getBoundingClientRect();
      return {x: b.x, y: b.y, w: b.width, h: b.height};
    });
    return {box: {x: box.x, y: box.y, w: box.width, h: box.height}, bars};
  });
  const imgs = [...document.querySelectorAll('.gallery img')].map(i => {
    const b = i.getBoundingClientRect();
    return {ok: i.complete && i.naturalWidth > 0, nw: i.naturalWidth,
            nh: i.naturalHeight, w: b.width, h: b.height};
  });
  const cards = [...document.querySelectorAll('section.card')].map(c => {
    const b = c.getBoundingClientRect();
    const inner = [...c.querySelectorAll('table, svg, img')]
      .filter(e => !e.closest('.gallery-scroll'))
      .map(e => e.getBoundingClientRect().right);
    const scroller = c.querySelector('.gallery-scroll');
    const sb = scroller ? scroller.getBoundingClientRect() : null;
    return {right: b.right, left: b.left, sw: c.scrollWidth, cw: c.clientWidth,
            inner: Math.max(0, ...inner), scroller: sb ? sb.right : 0};
  });
  return {hists, imgs, cards};
}"""


def _check_geometry(g):
    assert len(g["hists"]) == 2
    for h in g["hists"]:
        bars = sorted(h["bars"], key=lambda b: b["x"])
        assert len(bars) >= 5
        # vertical bins: as wide as each other, side by side, standing on one axis
        widths = [b["w"] for b in bars]
        assert max(widths) - min(widths) < 1.0, f"bins of unequal widths {widths}"
        assert 0 < widths[0] < h["box"]["w"] / 4, "bins are not vertical bars"
        assert all(b["h"] >= 0 for b in bars) and max(b["h"] for b in bars) > 20
        for a, b in itertools.pairwise(bars):
            assert a["x"] + a["w"] <= b["x"] + 0.5, "histogram bins overlap"
        bottoms = [b["y"] + b["h"] for b in bars if b["h"] > 0]
        assert max(bottoms) - min(bottoms) < 1.0
        box = h["box"]
        for b in bars:
            assert box["x"] - 0.5 <= b["x"] and b["x"] + b["w"] <= box["x"] + box["w"]
            assert box["y"] - 0.5 <= b["y"] and b["y"] + b["h"] <= box["y"] + box["h"]
    assert g["imgs"], "the gallery shows no image"
    for im in g["imgs"]:
        assert im["ok"], "a gallery image did not load"
        # shown at its own aspect ratio (never squeezed by a CSS rule)
        assert abs(im["w"] / im["h"] - im["nw"] / im["nh"]) < 0.03
    for c in g["cards"]:
        assert c["sw"] <= c["cw"] + 1, "content overflows its card"
        assert c["inner"] <= c["right"] + 0.5 and c["scroller"] <= c["right"] + 0.5


@pytest.mark.parametrize("which", ["fl", "boxes"])
@pytest.mark.parametrize("width", [1400, 900])
def test_report_geometry_in_chromium(reports, which, width):
    """#19: histogram bins are vertical bars that do not overlap, gallery images
    load at their own aspect ratio, nothing spills out of a card."""
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = chromium()
    root, _ = reports
    url = (root / which / "report.html").resolve().as_uri()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        g = page.evaluate(_GEOMETRY)
        browser.close()
    _check_geometry(g)
    assert not errors
    n_per_row = 3 if which == "boxes" else 1  # crop, image with the box, mask
    assert len(g["imgs"]) == n_per_row * (8 if which == "boxes" else 16)
    if which == "boxes":
        summary = json.loads((root / which / "run.json").read_text())
        assert summary
