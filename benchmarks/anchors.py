"""Anchor boxes, side by side: seed notebook vs YOLOv5 kmean_anchors vs clusterlens.

The 30,638 PASCAL VOC 2007 boxes (train + val + test, letterboxed so each
image's long side is 640 pixels, as YOLOv5 does) and an 860,000-box set (the
VOC boxes tiled with 5% log-normal jitter: the size of COCO 2017 train + val),
at k = 5 and k = 9. Each method gets the same boxes and seed in one process;
every figure comes from the same metrics() (benchmarks/_anchor_baselines.py):
mean IoU of each box with its best anchor, BPR and AAT at ratio threshold 4.0,
and Ultralytics' ratio-metric fitness. The published YOLOv2 (VOC, k = 5) and
YOLOv3 (COCO, k = 9) anchors are evaluated on the same boxes.

    python benchmarks/anchors.py            # the issue's sizes
    python benchmarks/anchors.py --smoke    # seconds, for CI
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "voc2007" / "annotations"
SPLITS = ("train", "val", "test")
IMG_SIZE = 640
THR = 4.0
N_BIG = 860_000  # COCO 2017 train + val boxes

PUBLISHED_NOTE = (
    "published anchors are used as published, in pixels of the network input, "
    "unchanged on boxes letterboxed to 640 (as YOLOv5 uses the YOLOv3 anchors "
    "in models/yolov5*.yaml): YOLOv3 anchors are from darknet cfg/yolov3.cfg "
    "(416/608 input), YOLOv2 anchors from cfg/yolo-voc.cfg in grid cells x "
    "stride 32 (416 input)"
)


@functools.cache
def baselines() -> ModuleType:
    """benchmarks/_anchor_baselines.py, loaded by path (benchmarks/ is no package)."""
    path = Path(__file__).resolve().parent / "_anchor_baselines.py"
    spec = importlib.util.spec_from_file_location("_anchor_baselines", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _letterbox_json(paths: list[Path], img_size: int) -> np.ndarray:
    """[w, h] of every COCO-format box, scaled so its image's long side is img_size."""
    out = []
    for p in paths:
        d = json.loads(p.read_text())
        scale = {
            im["id"]: img_size / max(im["width"], im["height"]) for im in d["images"]
        }
        bb = np.array([a["bbox"][2:4] for a in d["annotations"]], dtype=np.float64)
        s = np.array([scale[a["image_id"]] for a in d["annotations"]])
        out.append(bb * s[:, None])
    return np.concatenate(out)


def load_voc(data_dir: Path, img_size: int) -> tuple[np.ndarray, str]:
    """Letterboxed VOC 2007 box sizes and the name of the loader that read them."""
    paths = [data_dir / f"pascal_{s}2007.json" for s in SPLITS]
    try:
        from clusterlens.io import read_coco_boxes
    except ImportError:
        loader = "json (clusterlens.io.read_coco_boxes not importable)"
        return _letterbox_json(paths, img_size), loader
    wh = np.asarray(read_coco_boxes(paths).letterboxed_wh(img_size), np.float64)
    return wh, "clusterlens.io.read_coco_boxes"


def _timed(fn, repeats: int):
    """Best wall time of ``repeats`` calls and the last result."""
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run_table(
    wh: np.ndarray, k: int, gen: int, seed: int, repeats: int
) -> tuple[dict, str | None]:
    """One (dataset, k) table: rows by method, and a note if clusterlens is absent."""
    B = baselines()
    fits = {
        "notebook kmeans_iou": lambda: B.notebook_kmeans_iou(wh, k, seed),
        "ultralytics kmean_anchors": lambda: B.ultralytics_kmean_anchors(
            wh, k, img_size=IMG_SIZE, thr=THR, gen=gen, seed=seed
        ),
    }
    note = None
    try:
        from clusterlens.anchors import anchor_boxes
    except ImportError as e:
        note = f"clusterlens rows skipped: clusterlens.anchors not importable ({e})"
    else:
        fits["clusterlens"] = lambda: (
            anchor_boxes(
                wh,
                n_anchors=k,
                n_init=10,
                random_state=seed,
                evolve=gen,
                fitness="both",
                ratio_thr=THR,
            ).anchors
        )
    rows: dict[str, dict] = {}
    for name, fn in fits.items():
        sec, anchors = _timed(fn, repeats)
        anchors = np.asarray(anchors, dtype=np.float64)
        rows[name] = {**B.metrics(wh, anchors, THR), "seconds": sec}
        rows[name]["anchors"] = np.round(anchors, 2).tolist()
    published = {
        5: ("YOLOv2 VOC (416)", B.YOLOV2_VOC_ANCHORS),
        9: ("YOLOv3 COCO (416/608)", B.YOLOV3_COCO_ANCHORS),
    }
    if k in published:
        name, anchors = published[k]
        rows[name] = {**B.metrics(wh, anchors, THR), "seconds": None}
        rows[name]["anchors"] = np.round(anchors, 2).tolist()
    base = rows.get("clusterlens", {}).get("seconds")
    for r in rows.values():
        r["ratio_vs_clusterlens"] = (
            r["seconds"] / base if base and r["seconds"] is not None else None
        )
    return rows, note


def _fmt(v, spec: str, width: int) -> str:
    return f"{'-' if v is None else format(v, spec):>{width}}"


def print_table(t: dict) -> None:
    print(
        f"\n{t['dataset']}: {t['n_boxes']:,} boxes, k={t['k']} "
        f"(img_size {IMG_SIZE}, thr {THR}, {t['gen']} generations)"
    )
    print(
        f"{'method':<27}{'mean IoU':>9}{'BPR':>8}{'AAT':>7}{'fitness':>9}"
        f"{'seconds':>9}{'x time vs clusterlens':>23}"
    )
    for name, r in t["rows"].items():
        print(
            f"{name:<27}{r['mean_iou']:>9.4f}{r['bpr']:>8.4f}{r['aat']:>7.2f}"
            f"{r['fitness']:>9.4f}{_fmt(r['seconds'], '.2f', 9)}"
            f"{_fmt(r['ratio_vs_clusterlens'], '.2f', 23)}"
        )
    if t["note"]:
        print(f"note: {t['note']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    p.add_argument("--gen", type=int, default=1000, help="evolution generations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="best of N timings")
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--json", action="store_true", help="print JSON only")
    a = p.parse_args(argv)

    voc, loader = load_voc(a.data_dir, IMG_SIZE)
    datasets = {"VOC 2007": voc}
    if a.smoke:
        a.gen = 50
        rng = np.random.default_rng(a.seed)
        datasets = {
            "VOC 2007 (smoke subsample)": voc[rng.choice(len(voc), 3000, replace=False)]
        }
    else:
        big = baselines().synthetic_boxes(voc, N_BIG, seed=a.seed)
        datasets[f"VOC x{N_BIG / len(voc):.0f} jittered"] = big

    if not a.json:
        print(f"boxes read with {loader}; seconds = best of {a.repeats}")
        print(f"note: {PUBLISHED_NOTE}")
    tables = []
    for ds, wh in datasets.items():
        for k in (5, 9):
            rows, note = run_table(wh, k, a.gen, a.seed, a.repeats)
            tables.append(
                {
                    "dataset": ds,
                    "n_boxes": len(wh),
                    "k": k,
                    "gen": a.gen,
                    "rows": rows,
                    "note": note,
                }
            )
            if not a.json:
                print_table(tables[-1])
    if a.json:
        out = {
            "img_size": IMG_SIZE,
            "thr": THR,
            "gen": a.gen,
            "seed": a.seed,
            "repeats": a.repeats,
            "loader": loader,
            "n_voc_boxes": len(voc),
            "published_anchors": PUBLISHED_NOTE,
            "tables": tables,
        }
        print(json.dumps(out, indent=2))
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
