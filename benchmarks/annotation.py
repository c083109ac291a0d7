"""Cluster-then-label vs one image, one action: a simulated annotator replaying the app.

The annotator knows the true labels but may only use the review app, as a
person does: the real server is started (``clusterlens review WS --results R``,
waitress on loopback, in a subprocess) and driven over HTTP with the requests
its page makes. It reads a cluster's page (``GET /cluster/<id>``: the grid's
items, in order) and the cluster sizes (``GET /api/state``), and posts what the
page posts (``POST /api/action`` with the page's own Origin): name a cluster
(type a class, Enter), split a cluster (key ``s``: 2-means on its features),
label a selection (shift-click each image, type a class, Enter: "Label
selected", one ``label_items`` action). It sees what the page shows: one
cluster as a grid of at most ``PAGE`` thumbnails, closest to the centre first,
outliers last. The labels are then taken away with the page's CSV export
(``POST /api/export``) and scored. Per cluster, in the app's order:

- a cluster larger than a page (or, with ``--split-min N``, one showing at
  least N images of another class than its majority) is split (up to
  ``--max-depth`` times) and both halves are visited;
- otherwise the images of another class are labelled, those of one class
  together (``--strays grouped``, the default: shift-click each, one action
  per class; ``--strays each``: one action per image), unless there are at
  most ``--tolerate`` of them (a few strays in a grid of hundreds are left:
  they stay wrong and count against the final accuracy), and the cluster is
  named after its majority (one action). The shift-clicks are counted too.

The baseline labels each image with one action (1 correct label per action,
100 %). A second, careful annotator (``--tolerate 0``: every wrong image seen
is fixed) is replayed on the same clusters for comparison.

The clusters: k-means (``clusterlens.cluster.KMeans``) over-clustering the
features of ``_annotation_features.py``: by default the trunk of a clusterlens
IIC network (``--iic-model`` a saved ``IIC``; else one is trained here) on
the clean view of each image, L2-normalised, PCA 128, then 6 rounds of
10-nearest-neighbour averaging.

    # CIFAR-10 (#20): a labelled workspace with its CNN embeddings, used read-only
    clusterlens ingest cifar10-images/ --out cifar-ws    # class sub-folders
    clusterlens features cnn cifar-ws
    nice -n 19 python benchmarks/annotation.py --workspace cifar-ws -k 300
    # its features are those of (the same library steps, the same seed); its
    # k-means is this with one start of at most 100 iterations:
    clusterlens features cnn cifar-ws --l2 --pca 128 --smooth 6
    clusterlens cluster cifar-ws --features cnn-l2-pca128-smooth6 -k 300
    clusterlens review cifar-ws
    # an IIC model of MNIST (clusterlens iic; the figures below: 9 epochs, 97.0 %)
    nice -n 19 clusterlens iic ../shared/data/mnist --k 10 --epochs 9 --out iic
    nice -n 19 python benchmarks/annotation.py --iic-model iic/model --repeat 5
    nice -n 19 python benchmarks/annotation.py --iic-epochs 2   # trains IIC here
    python benchmarks/annotation.py --data PATH -k 300           # IDX, folder, .npz
    python benchmarks/annotation.py --smoke --json               # CI

Measured on all 60,000 CIFAR-10 images (#20; 2 shared CPU cores, load 10-15),
``--workspace`` of the 60,000 JPEGs with ``features cnn`` (EfficientNet-Lite0),
k = 300, defaults (L2, PCA 128, 6 rounds of 10-NN averaging; strays grouped;
split only clusters larger than a page of 200; --tolerate 4), k-means seed 0:
**22.8 correct labels per action at 99.76 %** (2,621 actions: 456 names, 156
splits, 2,009 selections labelled; 17,210 shift-clicks selecting the 29 % of
images not of their cluster's majority; cluster purity 0.708); the careful
annotator (--tolerate 0): 22.2 labels per action at 100 % (2,698 actions,
17,353 shift-clicks). Seeds 1 and 2 (``--seed 1 --repeat 2``): 23.1 and 23.0
labels per action at 99.77 and 99.82 % (2,588 / 2,608 actions, 17,224 / 17,236
shift-clicks). #20's target, >= 15 labels per action at >= 99 %, is met;
the image-by-image baseline is 60,000 actions (each a click and a typed class).
Over HTTP p50 / p95: a cluster's page 101 / 281 ms, label_items 20 / 64 ms,
name_cluster 20 / 68 ms, split 130 / 342 ms; the annotation 214 s.
On the 10,000 test images (k = 50): 20.1 labels per action at 99.87 %. What
did not help, measured on those 10,000: splitting mixed clusters as well
(``--split-min 15``, k = 100: 5.7 labels per action: each half still holds
several classes, and every half costs a name and its own selections); an
order of the page that puts similar images side by side (Ward leaf order of
the page: 8 % fewer clicks with range selection, 3x slower pages; dropped).

The MNIST figures below were measured before #20 with one action per stray
image and mixed clusters split (``--strays each --split-min 15``).
Measured on MNIST (70,000; 2 shared CPU cores), k = 300, defaults otherwise
(--tolerate 4), with the 9-epoch IIC model (97.0 % at k = 10): over 5 k-means
seeds 103.5 to 106.4 correct labels per action (mean 105.1) at 99.53 to 99.61 %
(mean 99.57 %): the target is met on each seed, with little margin. The
careful annotator (--tolerate 0): 69.9 to 75.2 labels per action at 100 %.
--tolerate 5 gives 109 to 123 labels per action but 99.48 to 99.52 %.
With IIC trained here for 2 epochs on 20,000 images: 71.8 labels per action
at 99.39 % (not met): the target needs the better-trained network.

On 10,000 MNIST digits with pixels (``--limit 10000 --features pixels -k 100
--smooth 1``) the #20 defaults give 31.3 labels per action at 98.95 % (790
shift-clicks), against 11.5 at 98.74 % one image per action with splits.

Through HTTP (#19) the annotator makes the same decisions as it did calling
the store: on 10,000 MNIST digits (``--limit 10000 --features pixels -k 100
--smooth 1 --strays each --split-min 15``) both give 858 actions (139 names,
39 splits, 680 single labels), 11.5 correct labels per action at 98.74 %,
and 984 actions at 100 % for the careful annotator. Over HTTP (loopback,
waitress, 2 busy shared cores) p50 / p95: a cluster's page 24 / 42 ms,
name_cluster 10 / 22 ms, label_items 8 / 18 ms, split 54 / 87 ms; the
annotation took 50 s instead of 7 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
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


def from_workspace(src: Path, work: Path) -> tuple[Path, Any, Any]:
    """A scratch copy of the labelled workspace ``src`` (its item table; its
    images and ``features/cnn`` are read where they are), its labels and CNN
    embeddings. Nothing is written into ``src``."""
    from clusterlens.exceptions import ClusterlensError
    from clusterlens.io import open_workspace

    try:
        ws = open_workspace(src)
    except ClusterlensError as e:
        sys.exit(f"--workspace {src}: {e}")
    if ws.labels is None or (np.asarray(ws.labels) < 0).any():
        sys.exit(
            f"--workspace {src} has unlabelled items; the simulated annotator needs "
            "the true label of every item (ingest a folder of class sub-folders)."
        )
    emb = src / "features" / "cnn" / "features.npy"
    if not emb.is_file():
        sys.exit(
            f"{emb} is missing: run `clusterlens features cnn {src}` first "
            "(the clusters are made of those embeddings)."
        )
    ws_dir = work / "ws"
    (ws_dir / "features").mkdir(parents=True)
    for name in ("workspace.json", "items.parquet"):
        shutil.copy2(src / name, ws_dir / name)
    if (src / "images.npy").is_file():  # an array workspace's pixels
        (ws_dir / "images.npy").symlink_to((src / "images.npy").resolve())
    (ws_dir / "features" / "cnn").symlink_to((src / "features" / "cnn").resolve())
    return ws_dir, np.asarray(ws.labels).astype(np.int64), np.load(emb, mmap_mode="r")


def from_workspace_labels(ws_dir: Path) -> Any:
    from clusterlens.io import open_workspace

    return np.asarray(open_workspace(ws_dir).labels).astype(np.int64)


def build(images, labels, args, work: Path) -> tuple[Path, dict[str, Any]]:
    """A workspace of the images with the feature matrix the clusters are made of."""
    from _annotation_features import make_features
    from clusterlens.io import create_workspace

    embeddings = None
    if args.workspace:
        ws_dir, _, embeddings = from_workspace(Path(args.workspace), work)
    else:
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
        embeddings=embeddings,
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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_IDX = re.compile(r'<figure class="item[^"]*" data-idx="(\d+)"')


class App:
    """The review app, started as a person starts it (``clusterlens review``,
    waitress on loopback), and driven over HTTP with the requests its page
    makes: GET a cluster's page, POST /api/action, POST /api/export."""

    def __init__(self, ws_dir: Path, results: Path, seed: int, log: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "clusterlens.cli.main", "review", str(ws_dir),
            "--results", str(results), "--port", str(self.port),
            "--seed", str(seed), "--reset", "--yes",
        ]  # fmt: skip
        self.log = log
        self._err = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._err, stderr=self._err)
        self.latency: dict[str, list[float]] = {}
        deadline = time.monotonic() + 300
        while True:
            try:
                self.get("/api/state", kind="start")
                break
            except OSError as e:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    sys.exit(
                        f"the review app did not start ({e}):\n"
                        + log.read_text(errors="replace")[-2000:]
                    )
                time.sleep(0.2)

    def _send(self, req: urllib.request.Request, kind: str) -> bytes:
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            raise SystemExit(
                f"{req.get_method()} {req.full_url} answered {e.code}: "
                f"{e.read().decode(errors='replace')[:500]}"
            ) from e
        self.latency.setdefault(kind, []).append(time.perf_counter() - t0)
        return body

    def get(self, path: str, *, kind: str) -> bytes:
        return self._send(urllib.request.Request(self.base + path), kind)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            method="POST",
            # what the browser sends with the page's fetch(): its own origin
            headers={"Content-Type": "application/json", "Origin": self.base},
        )
        return json.loads(self._send(req, str(body.get("kind", path))))

    def state(self) -> dict[str, Any]:
        return json.loads(self.get("/api/state", kind="state"))

    def shown(self, cluster: int) -> np.ndarray:
        """The items the cluster's page shows (its first page), in grid order."""
        html = self.get(f"/cluster/{cluster}", kind="page").decode()
        return np.array([int(x) for x in _IDX.findall(html)], dtype=np.int64)

    def act(self, **body: Any) -> Any:
        return self.post("/api/action", body)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl+C, as a person stops it
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def annotate(
    ws_dir: Path,
    truth,
    *,
    results: Path,
    split_min: int,
    max_depth: int,
    tolerate: int,
    seed: int,
    log: Path,
    grouped: bool = True,
) -> dict[str, Any]:
    """Replay the annotator through the app over HTTP; counts, accuracy,
    labels/action, and the latency of each kind of request."""
    t0 = time.perf_counter()
    app = App(ws_dir, results, seed, log)
    try:
        counts: Counter[str] = Counter(name_cluster=0, split=0, label_items=0)
        depth: dict[int, int] = {}
        left_wrong = 0
        clicks = 0
        sizes = {c["id"]: c["size"] for c in app.state()["clusters"]}
        queue = deque(sorted(sizes))
        while queue:
            c = queue.popleft()
            shown = app.shown(c)  # at most a page, closest to the centre first
            if shown.size == 0:
                continue
            size = sizes.get(c, shown.size)
            t = truth[shown]
            major = int(np.bincount(t).argmax())
            wrong = shown[t != major]
            d = depth.get(c, 0)
            mixed = split_min > 0 and wrong.size >= split_min
            if (size > PAGE or mixed) and d < max_depth and size >= 8:
                out = app.act(kind="split", cluster=c)  # key s
                counts["split"] += 1
                new = out["result"]["new_cluster"]
                sizes = {k["id"]: k["size"] for k in app.state()["clusters"]}
                depth[new] = depth[c] = d + 1
                queue.extendleft([new, c])
                continue
            if wrong.size > tolerate:
                if grouped:  # those of one class together: type it, Enter
                    for cls in np.unique(truth[wrong]).tolist():
                        pick = wrong[truth[wrong] == cls]
                        clicks += int(pick.size)  # shift-click each
                        app.act(kind="label_items", items=pick.tolist(), name=str(cls))
                        counts["label_items"] += 1
                else:
                    for i in wrong.tolist():  # one by one: click, type, Enter
                        clicks += 1
                        app.act(kind="label_items", items=[i], name=str(int(truth[i])))
                        counts["label_items"] += 1
            else:
                left_wrong += int(wrong.size)
            app.act(kind="name_cluster", cluster=c, name=str(major))  # type, Enter
            counts["name_cluster"] += 1
        n_actions = int(app.state()["progress"]["n_actions"])
        # the labels as a person takes them away: the page's CSV export
        ex = app.post("/api/export", {"format": "csv", "overwrite": True})
        with open(Path(ex["out"]) / "labels.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    finally:
        app.close()
    labels = np.full(truth.size, "", dtype=object)
    for r in rows:
        labels[int(r["index"])] = r["label"]
    n = truth.size
    correct = int((labels == truth.astype(str).astype(object)).sum())
    lat = {
        k: {
            "n": len(v),
            "p50_ms": 1000 * float(np.percentile(v, 50)),
            "p95_ms": 1000 * float(np.percentile(v, 95)),
        }
        for k, v in app.latency.items()
        if k != "start"
    }
    return {
        "tolerate": tolerate,
        "actions": {**counts, "total": n_actions},
        "selection_clicks": clicks,
        "correct_labels": correct,
        "wrong_left_in_named_clusters": left_wrong,
        "final_accuracy": correct / n,
        "correct_labels_per_action": correct / max(n_actions, 1),
        "speedup_actions": n / max(n_actions, 1),
        "http": lat,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=str(MNIST), help="IDX folder, image folder or .npz"
    )
    ap.add_argument(
        "--workspace",
        help="a labelled workspace with `clusterlens features cnn` done (e.g. CIFAR-10:"
        " ingest the class folders); implies --features cnn; used read-only",
    )
    ap.add_argument("--features", choices=("iic", "pixels", "cnn"), default="iic")
    ap.add_argument(
        "--strays",
        choices=("grouped", "each"),
        default="grouped",
        help="grouped: a cluster's wrong images of one class are selected "
        "(shift-click each) and labelled in one action; each: one action per image",
    )
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
        default=0,
        help="also split a cluster showing this many images of another class "
        "(0: split only the clusters larger than a page)",
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
    if args.workspace:
        args.features = "cnn"
        if args.limit:
            sys.exit("--limit does not apply to --workspace (it uses every item)")
    elif args.features == "cnn":
        sys.exit("--features cnn needs --workspace (a workspace with CNN embeddings)")
    images, truth = None, None
    if not args.workspace:
        images, truth = load(args.data, args.limit, args.seed)
    tols = list(dict.fromkeys([args.tolerate, 0]))  # the annotator, then a careful one
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ws_dir, info = build(images, truth, args, Path(tmp))
        if truth is None:
            truth = from_workspace_labels(ws_dir)
        t_build = time.perf_counter() - t0
        for seed in range(args.seed, args.seed + args.repeat):
            results, kinfo = cluster(ws_dir, args.n_clusters, seed)
            for tol in tols:
                r = annotate(
                    ws_dir,
                    truth,
                    results=results,
                    log=Path(tmp) / f"server-{seed}-{tol}.log",
                    split_min=args.split_min,
                    max_depth=args.max_depth,
                    tolerate=tol,
                    seed=seed,
                    grouped=args.strays == "grouped",
                )
                runs.append({"seed": seed, **kinfo, **r})
    n = truth.size
    main_runs = [r for r in runs if r["tolerate"] == args.tolerate]
    first = main_runs[0]
    lpa = [r["correct_labels_per_action"] for r in main_runs]
    acc = [r["final_accuracy"] for r in main_runs]
    # the MNIST target of the annotation issue; #20's on photos (CIFAR-10)
    want_lpa, want_acc = (15, 0.99) if args.features == "cnn" else (100, 0.995)
    out = {
        "data": args.workspace or args.data,
        "n_items": n,
        "n_clusters": args.n_clusters,
        "features": info["features"],
        "cluster_purity": first["purity"],
        "page": PAGE,
        "policy": {
            "split_min": args.split_min,
            "max_depth": args.max_depth,
            "tolerate": args.tolerate,
            "strays": args.strays,
        },
        **{
            k: first[k]
            for k in (
                "actions",
                "correct_labels",
                "final_accuracy",
                "correct_labels_per_action",
                "speedup_actions",
                "selection_clicks",
                "http",
            )
        },
        "runs": runs,
        "baseline": {
            "actions": n,
            "correct_labels_per_action": 1.0,
            "final_accuracy": 1.0,
        },
        "target": {"correct_labels_per_action": want_lpa, "final_accuracy": want_acc},
        "seconds": {
            "build": t_build,
            **{k: v for k, v in info.items() if k.endswith("seconds")},
            "kmeans": first["kmeans_seconds"],
            "annotate": first["seconds"],
        },
    }
    out["target_met"] = bool(min(lpa) >= want_lpa and min(acc) >= want_acc)
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
            f"accuracy {r['final_accuracy']:.4%}; actions {r['actions']}, "
            f"{r['selection_clicks']:,} shift-clicks selecting wrong images"
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
        f"target: >= {want_lpa} labels/action at >= {want_acc:.1%} (every seed): "
        f"{'met' if out['target_met'] else 'NOT met'}"
    )
    print(
        f"over HTTP (seed {args.seed}), p50 / p95 ms: "
        + "; ".join(
            f"{k} {v['p50_ms']:.0f} / {v['p95_ms']:.0f} (n={v['n']})"
            for k, v in first["http"].items()
        )
    )
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in out["seconds"].items()))


if __name__ == "__main__":
    main()
