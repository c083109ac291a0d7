"""Cluster-then-label vs one image, one action: a simulated annotator replaying the app.

The annotator knows the true labels but may only use the review app's actions
(``clusterlens.app.ReviewStore``), exactly what the page sends: name a cluster
(type a class, Enter), split a cluster (key ``s``: 2-means on its features),
label one image (shift-click it, type its class, Enter: "Label selected", one
``label_items`` action per image). It sees what the page shows: one cluster as
a grid of at most ``PAGE`` thumbnails, closest to the centre first, outliers
last. Per cluster, in the app's order:

- a cluster larger than a page, or one showing at least ``--split-min``
  images of another class than its majority, is split (up to ``--max-depth``
  times) and both halves are visited;
- otherwise the images of another class are labelled one by one (one action
  each) unless there are at most ``--tolerate`` of them (a few stray digits
  in a grid of hundreds are left: they stay wrong and count against the final
  accuracy), and the cluster is named after its majority (one action).

The baseline labels each image with one action (1 correct label per action,
100 %). A second, careful annotator (``--tolerate 0``: every wrong image seen
is fixed) is replayed on the same clusters for comparison.

The clusters: k-means (``clusterlens.cluster.KMeans``) over-clustering the
features of ``_annotation_features.py``: by default the trunk of a clusterlens
IIC network (``--iic-model`` a saved ``IIC``; else one is trained here) on
the clean view of each image, L2-normalised, PCA 128, then 6 rounds of
10-nearest-neighbour averaging.

    # an IIC model of MNIST (clusterlens iic; the figures below: 9 epochs, 97.0 %)
    nice -n 19 clusterlens iic ../shared/data/mnist --k 10 --epochs 9 --out iic
    nice -n 19 python benchmarks/annotation.py --iic-model iic/model --repeat 5
    nice -n 19 python benchmarks/annotation.py --iic-epochs 2   # trains IIC here
    python benchmarks/annotation.py --data PATH -k 300           # IDX, folder, .npz
    python benchmarks/annotation.py --smoke --json               # CI

Measured on MNIST (70,000; 2 shared CPU cores), k = 300, defaults otherwise
(--tolerate 4), with the 9-epoch IIC model (97.0 % at k = 10): over 5 k-means
seeds 103.5 to 106.4 correct labels per action (mean 105.1) at 99.53 to 99.61 %
(mean 99.57 %): the target is met on each seed, with little margin. The
careful annotator (--tolerate 0): 69.9 to 75.2 labels per action at 100 %.
--tolerate 5 gives 109 to 123 labels per action but 99.48 to 99.52 %.
With IIC trained here for 2 epochs on 20,000 images: 71.8 labels per action
at 99.39 % (not met): the target needs the better-trained network.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:  # the thumbnails the page shows per cluster
    from clusterlens.app._server import _PAGE as PAGE
except ImportError:  # Flask missing: the page's constant
    PAGE = 400


def load(data_path: str, n_limit: int, seed: int) -> tuple[Any, Any]:
    from clusterlens.io import load_image_array

    p = Path(data_path)
    folder = p.is_dir() and not any("idx" in q.name for q in p.iterdir())
    arr = load_image_array(p, size=(28, 28) if folder else None)
    if arr.labels is None:
        sys.exit(f"{data_path} has no labels; the simulated annotator needs them.")
    images, labels = arr.images, np.asarray(arr.labels).astype(np.int64)
    if n_limit:
        rng = np.random.default_rng(seed)
        keep = np.sort(
            rng.choice(len(labels), min(n_limit, len(labels)), replace=False)
        )
        images, labels = images[keep], labels[keep]
    return images, labels


def build(images, labels, args, work: Path) -> tuple[Path, dict[str, Any]]:
    """A workspace of the images with the feature matrix the clusters are made of."""
    from _annotation_features import make_features
    from clusterlens.io import create_workspace

    npz = work / "data.npz"
    np.savez(npz, images=images, labels=labels)
    ws_dir = work / "ws"
    ws_dir.mkdir()
    create_workspace(npz, ws_dir)
    Z, info = make_features(
        args.features,
        images,
        int(np.unique(labels).size),
        pca=args.pca,
        seed=args.seed,
        iic_model=args.iic_model,
        iic_epochs=args.iic_epochs,
        iic_train_limit=args.iic_train_limit,
        iic_save=args.iic_save,
        smooth=args.smooth,
        n_neighbours=args.neighbours,
    )
    feat = ws_dir / "features" / "annotation"
    feat.mkdir(parents=True)
    np.save(feat / "features.npy", Z)
    return ws_dir, info


def cluster(ws_dir: Path, k: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """k-means (``clusterlens cluster``'s pipeline): results the app can open."""
    from clusterlens.io import open_workspace
    from clusterlens.pipelines.cluster_images import run_cluster_images

    stage = ws_dir / "clusters" / f"run-{seed}"
    stage.mkdir(parents=True)
    t0 = time.perf_counter()
    summary = run_cluster_images(
        open_workspace(ws_dir),
        stage,
        features="annotation",
        n_clusters=k,
        n_init=1,
        max_iter=100,
        random_state=seed,
        report=False,
    )
    return stage / "results.parquet", {
        "kmeans_seconds": time.perf_counter() - t0,
        "purity": summary.get("purity"),
    }


def annotate(
    ws_dir: Path,
    truth,
    *,
    results: Path,
    store_path: Path,
    split_min: int,
    max_depth: int,
    tolerate: int,
    seed: int,
) -> dict[str, Any]:
    """Replay the annotator through the store; counts, accuracy, labels/action."""
    from clusterlens.app import open_review

    t0 = time.perf_counter()
    _, store = open_review(ws_dir, results=results, store=store_path, random_state=seed)
    counts: Counter[str] = Counter(name_cluster=0, split=0, label_items=0)
    depth: dict[int, int] = {}
    left_wrong = 0
    queue = deque(c["id"] for c in store.clusters())
    while queue:
        c = queue.popleft()
        items = store.cluster_items(c)
        if items.size == 0:
            continue
        shown = items[:PAGE]  # what the page shows, closest to the centre first
        t = truth[shown]
        major = int(np.bincount(t).argmax())
        wrong = shown[t != major]
        d = depth.get(c, 0)
        if (
            (items.size > PAGE or wrong.size >= split_min)
            and d < max_depth
            and items.size >= 8
        ):
            new = store.split(c)["new_cluster"]
            counts["split"] += 1
            depth[new] = depth[c] = d + 1
            queue.extendleft([new, c])
            continue
        if wrong.size > tolerate:
            for i in wrong.tolist():
                store.label_items([i], str(int(truth[i])))
                counts["label_items"] += 1
        else:
            left_wrong += int(wrong.size)
        store.name_cluster(c, str(major))
        counts["name_cluster"] += 1
    labels = np.array(store.labels(), dtype=object)
    n_actions = store.n_actions()
    store.close()
    n = truth.size
    correct = int((labels == truth.astype(str).astype(object)).sum())
    return {
        "tolerate": tolerate,
        "actions": {**counts, "total": n_actions},
        "correct_labels": correct,
        "wrong_left_in_named_clusters": left_wrong,
        "final_accuracy": correct / n,
        "correct_labels_per_action": correct / max(n_actions, 1),
        "speedup_actions": n / max(n_actions, 1),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=str(MNIST), help="IDX folder, image folder or .npz"
    )
    ap.add_argument("--features", choices=("iic", "pixels"), default="iic")
    ap.add_argument(
        "--iic-model", help="a saved clusterlens IIC (IIC.save / clusterlens iic --out)"
    )
    ap.add_argument("--iic-save", help="save the IIC trained here (path, no suffix)")
    ap.add_argument("--iic-epochs", type=int, default=2, help="without --iic-model")
    ap.add_argument(
        "--iic-train-limit", type=int, default=20000, help="without --iic-model"
    )
    ap.add_argument("--pca", type=int, default=128)
    ap.add_argument("--smooth", type=int, default=6, help="rounds of k-NN averaging")
    ap.add_argument("--neighbours", type=int, default=10)
    ap.add_argument("-k", "--n-clusters", type=int, default=300)
    ap.add_argument(
        "--split-min",
        type=int,
        default=15,
        help="split a cluster showing this many images of another class",
    )
    ap.add_argument("--max-depth", type=int, default=4)
    ap.add_argument(
        "--tolerate",
        type=int,
        default=4,
        help="leave a cluster's wrong images when it shows at most this many",
    )
    ap.add_argument("--limit", type=int, default=0, help="use this many items")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeat", type=int, default=1, help="k-means seeds seed..seed+N-1"
    )
    ap.add_argument(
        "--smoke", action="store_true", help="2,000 MNIST digits, pixels, k=40"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.limit, args.n_clusters, args.features, args.smooth = 2000, 40, "pixels", 1
        args.split_min, args.tolerate = 6, 0
    images, truth = load(args.data, args.limit, args.seed)
    n = truth.size
    tols = list(dict.fromkeys([args.tolerate, 0]))  # the annotator, then a careful one
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ws_dir, info = build(images, truth, args, Path(tmp))
        t_build = time.perf_counter() - t0
        for seed in range(args.seed, args.seed + args.repeat):
            results, kinfo = cluster(ws_dir, args.n_clusters, seed)
            for tol in tols:
                r = annotate(
                    ws_dir,
                    truth,
                    results=results,
                    store_path=Path(tmp) / f"review-{seed}-{tol}.sqlite",
                    split_min=args.split_min,
                    max_depth=args.max_depth,
                    tolerate=tol,
                    seed=seed,
                )
                runs.append({"seed": seed, **kinfo, **r})
    main_runs = [r for r in runs if r["tolerate"] == args.tolerate]
    first = main_runs[0]
    lpa = [r["correct_labels_per_action"] for r in main_runs]
    acc = [r["final_accuracy"] for r in main_runs]
    out = {
        "data": args.data,
        "n_items": n,
        "n_clusters": args.n_clusters,
        "features": info["features"],
        "cluster_purity": first["purity"],
        "page": PAGE,
        "policy": {
            "split_min": args.split_min,
            "max_depth": args.max_depth,
            "tolerate": args.tolerate,
        },
        **{
            k: first[k]
            for k in (
                "actions",
                "correct_labels",
                "final_accuracy",
                "correct_labels_per_action",
                "speedup_actions",
            )
        },
        "runs": runs,
        "baseline": {
            "actions": n,
            "correct_labels_per_action": 1.0,
            "final_accuracy": 1.0,
        },
        "target": {"correct_labels_per_action": 100, "final_accuracy": 0.995},
        "seconds": {
            "build": t_build,
            **{k: v for k, v in info.items() if k.endswith("seconds")},
            "kmeans": first["kmeans_seconds"],
            "annotate": first["seconds"],
        },
    }
    out["target_met"] = bool(min(lpa) >= 100 and min(acc) >= 0.995)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{n:,} items, k={args.n_clusters}, {out['features']}")
    print(f"page of {PAGE} thumbnails; policy {out['policy']}")
    for r in runs:
        print(
            f"k-means seed {r['seed']} (purity {r['purity']:.4f}), annotator "
            f"tolerating <= {r['tolerate']} wrong per cluster: "
            f"{r['correct_labels_per_action']:.1f} correct labels per action, final "
            f"accuracy {r['final_accuracy']:.4%}; actions {r['actions']}"
        )
    print(
        f"baseline (one image, one action): 1.0 correct label per action, {n:,} "
        f"actions; {out['speedup_actions']:.1f}x fewer actions (seed {args.seed})"
    )
    if len(main_runs) > 1:
        print(
            f"over {len(main_runs)} k-means seeds: labels/action min {min(lpa):.1f} "
            f"mean {np.mean(lpa):.1f}; accuracy min {min(acc):.4%} "
            f"mean {np.mean(acc):.4%}"
        )
    print(
        "target: >= 100 labels/action at >= 99.5 % (every seed): "
        f"{'met' if out['target_met'] else 'NOT met'}"
    )
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in out["seconds"].items()))


if __name__ == "__main__":
    main()
