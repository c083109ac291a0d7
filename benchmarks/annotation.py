"""Cluster-then-label vs one image, one action: a simulated annotator replaying the app.

The annotator knows the true labels but may only use the review app's actions
(``clusterlens.app.ReviewStore``: name a cluster, reject an image, split a
cluster, label single images), exactly what the page sends. Per cluster, in
the app's order: a cluster mixing classes is split (2-means, one action); in
a cluster that is nearly pure, every image of another class is rejected (one
action each; it moves to its nearest other cluster) and the cluster is named
(one action). Clusters that received rejected images are visited again; what
is left at the end is labelled one image at a time. The baseline labels each
image with one action (1 correct label per action at 100 %).

    python benchmarks/annotation.py                      # MNIST, all 70,000
    python benchmarks/annotation.py --data PATH -k 500   # IDX, image folder, .npz
    python benchmarks/annotation.py --smoke --json       # CI
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def build(data_path, n_limit, k, pca, seed, work):
    """Ingest, pixels + PCA features, k-means: a workspace the app can open."""
    from clusterlens.features import fit_pca, pixel_features
    from clusterlens.io import create_workspace, load_image_array
    from clusterlens.pipelines.cluster_images import run_cluster_images

    t0 = time.perf_counter()
    arr = load_image_array(
        data_path,
        size=(28, 28)
        if Path(data_path).is_dir()
        and not any("idx" in p.name for p in Path(data_path).iterdir())
        else None,
    )
    if arr.labels is None:
        sys.exit(f"{data_path} has no labels; the simulated annotator needs them.")
    images, labels = arr.images, arr.labels.astype(np.int64)
    if n_limit:
        rng = np.random.default_rng(seed)
        keep = np.sort(
            rng.choice(len(labels), min(n_limit, len(labels)), replace=False)
        )
        images, labels = images[keep], labels[keep]
    npz = work / "data.npz"
    np.savez(npz, images=images, labels=labels)
    ws_dir = work / "ws"
    ws_dir.mkdir()
    ws = create_workspace(npz, ws_dir)
    X = pixel_features(images)
    Z = fit_pca(X, pca, random_state=seed).transform(X)
    feat = ws_dir / "features" / f"pixels-pca{pca}"
    feat.mkdir(parents=True)
    np.save(feat / "features.npy", Z.astype(np.float32))
    stage = ws_dir / "clusters" / "run"
    stage.mkdir(parents=True)
    summary = run_cluster_images(
        ws,
        stage,
        features=f"pixels-pca{pca}",
        n_clusters=k,
        n_init=1,
        max_iter=50,
        random_state=seed,
        report=False,
    )
    return ws_dir, labels, summary, time.perf_counter() - t0


def annotate(ws_dir, truth, *, split_min, max_depth, seed):
    """Replay the annotator through the store; returns the store and counts."""
    from clusterlens.app import open_review

    _, store = open_review(ws_dir, random_state=seed)
    counts = {"name_cluster": 0, "reject": 0, "split": 0, "label_items": 0}
    depth: dict[int, int] = {}
    queue = deque(c["id"] for c in store.clusters())
    for _ in range(3):  # passes: clusters that received rejected images are revisited
        while queue:
            c = queue.popleft()
            items = store.cluster_items(c)
            if items.size == 0:
                continue
            t = truth[items]
            major = int(np.bincount(t).argmax())
            wrong = items[t != major]
            if (
                wrong.size >= split_min
                and depth.get(c, 0) < max_depth
                and items.size > 2
            ):
                new = store.split(c)["new_cluster"]
                counts["split"] += 1
                depth[new] = depth[c] = depth.get(c, 0) + 1
                queue.extendleft([new, c])
                continue
            for i in wrong.tolist():
                store.reject(i)
                counts["reject"] += 1
            labels = np.array(store.labels(), dtype=object)
            if (labels[store.cluster_items(c)] == None).any():  # noqa: E711
                store.name_cluster(c, str(major))
                counts["name_cluster"] += 1
        labels = np.array(store.labels(), dtype=object)
        todo = sorted({int(c) for c in store.assignment()[labels == None]})  # noqa: E711
        queue.extend(c for c in todo if c >= 0)
    labels = np.array(store.labels(), dtype=object)
    for i in np.flatnonzero(labels == None).tolist():  # noqa: E711
        store.label_items([i], str(int(truth[i])))
        counts["label_items"] += 1
    return store, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=str(MNIST), help="IDX folder, image folder or .npz"
    )
    ap.add_argument("-k", "--n-clusters", type=int, default=1000)
    ap.add_argument("--pca", type=int, default=50)
    ap.add_argument(
        "--split-min",
        type=int,
        default=6,
        help="split a cluster when this many of its images are of another class",
    )
    ap.add_argument("--max-depth", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="use this many items")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="2,000 MNIST digits, k=40")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.limit, args.n_clusters = 2000, 40
    with tempfile.TemporaryDirectory() as tmp:
        ws_dir, truth, summary, t_build = build(
            args.data, args.limit, args.n_clusters, args.pca, args.seed, Path(tmp)
        )
        t0 = time.perf_counter()
        store, counts = annotate(
            ws_dir,
            truth,
            split_min=args.split_min,
            max_depth=args.max_depth,
            seed=args.seed,
        )
        t_ann = time.perf_counter() - t0
        labels = np.array(store.labels(), dtype=object)
        n_actions = store.n_actions()
        store.close()
    n = truth.size
    correct = int((labels == truth.astype(str).astype(object)).sum())
    out = {
        "data": args.data,
        "n_items": n,
        "n_clusters": args.n_clusters,
        "features": f"pixels + PCA {args.pca}",
        "cluster_purity": summary.get("purity"),
        "actions": {**counts, "total": n_actions},
        "correct_labels": correct,
        "final_accuracy": correct / n,
        "correct_labels_per_action": correct / max(n_actions, 1),
        "baseline": {
            "actions": n,
            "correct_labels_per_action": 1.0,
            "final_accuracy": 1.0,
        },
        "speedup_actions": n / max(n_actions, 1),
        "target": {"correct_labels_per_action": 100, "final_accuracy": 0.995},
        "seconds": {"build": t_build, "annotate": t_ann},
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(
        f"{n:,} items, k={args.n_clusters}, {out['features']}, k-means purity "
        f"{out['cluster_purity']:.4f}"
    )
    print(f"actions: {counts} = {n_actions:,} in all")
    print(
        f"cluster-then-label: {out['correct_labels_per_action']:.1f} correct labels "
        f"per action, final accuracy {out['final_accuracy']:.4%}"
    )
    print(
        f"baseline (one image, one action): 1.0 correct label per action, {n:,} "
        f"actions; ratio {out['speedup_actions']:.1f}x fewer actions"
    )
    met = out["correct_labels_per_action"] >= 100 and out["final_accuracy"] >= 0.995
    print(f"target: >= 100 labels/action at >= 99.5 %: {'met' if met else 'NOT met'}")
    print(f"time: build {t_build:.1f} s, annotate {t_ann:.1f} s")


if __name__ == "__main__":
    main()
