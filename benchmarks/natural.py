"""Natural photos, side by side: k-means, PCA+L2 k-means, SCAN and IIC heads.

On a labelled image folder (default: CIFAR-10 from
../shared/data/cifar10/cifar10-jpg.tar.gz, its 10,000 test images), the same
CNN embeddings (EfficientNet-Lite0, ``clusterlens features cnn``) clustered
four ways, each scored by Hungarian accuracy, NMI and ARI against the folder
labels, with the seconds of every stage:

- k-means as the CLI runs it (``clusterlens cluster WS --features cnn -k K --l2``);
- PCA to 128 axes + L2, k-means with 10 starts;
- the SCAN head (``cluster --method scan``): 20 mined neighbours per image,
  neighbour-consistency + entropy training of 10 heads, self-labelling;
- the IIC head (``cluster --method iic``): IIC's objective on the same pairs.

The mirrored images' embeddings (``--views flip``, the default) are the
heads' augmentation. The 10-NN purity of the features (the share of an
image's 10 nearest neighbours of its class) is printed beside them: the heads
learn from those neighbours, so it bounds what they reach. The published
figures (IIC 0.617, SCAN 0.883, each with its own network trained on
CIFAR-10) are in the table for scale.

Embedding is the slow part; it is done once per folder, for every image, and
cached in ``--cache`` (default /tmp/natural-cache, never in the repository):
``--split`` / ``--n`` take rows of it, and a cached run reports the measured
CNN seconds of its rows.

    python benchmarks/natural.py                 # CIFAR-10 test, 10,000 images
    python benchmarks/natural.py --split all     # all 60,000
    python benchmarks/natural.py --n 2000        # a stratified 2,000 of the test set
    python benchmarks/natural.py --folder DIR    # any folder of class sub-folders
    python benchmarks/natural.py --smoke         # seconds, for CI

Measured here, seed 0, 2 shared cores (loaded by other sessions, so seconds
are wall time and vary), CIFAR-10 test (10,000 images), EfficientNet-Lite0
embeddings; ``python benchmarks/natural.py`` (mirrored images as the heads'
view), and ``--views none`` in brackets:

    10-NN purity of the features (PCA 128 + L2): 0.633
    method                              accuracy   NMI    ARI  seconds
    k-means (CLI: --features cnn --l2)     0.466  0.396  0.275     59.9
    PCA 128 + L2, k-means, 10 starts       0.509  0.413  0.297     16.5
    SCAN head (--method scan)              0.597  0.461  0.375     31.0
                                          (0.588  0.456  0.365     39.0)
    IIC head (--method iic)                0.554  0.453  0.353     31.1
                                          (0.517  0.445  0.332     57.7)
    published: IIC (ResNet from pixels)    0.617
    published: SCAN (own ResNet-18)        0.883

CNN stage: 60,000 images in 2,684 s while loaded (22-200 images/s), the
mirrored ones in 489 s (about 120 images/s).

The mirrored images, same 10,000, SCAN head with its defaults (library calls):
as a view 0.597 (NMI 0.461, ARI 0.375, as in the table); the
flip-averaged embedding as the features instead (20-NN purity 0.618 against
0.611) 0.583; both 0.571: within a point of each other, so a seed's spread.

All 60,000 (train + test), the SCAN head alone with its defaults (library
call on the cached embeddings, the same as ``--method scan``): accuracy 0.596,
NMI 0.472, ARI 0.391, 316 s (80 s of it the exact 20-NN search), 20-NN purity
0.669. End to end under that load: ingest 289 s + CNN 2,684 s (22-200
images/s as the other sessions came and went; about 300 s at the 200 images/s
of a quiet moment) + SCAN 316 s = 55 minutes.

The SCAN head is 1.28x the CLI's k-means on the same features and below the
10-NN purity, which bounds it: with 37 % of an image's neighbours in another
class, the heads learn those confusions too. The #20 target (0.80) needs
better features (the issue's backbone/augmentation items), not a better head.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CIFAR_TAR = DATA / "cifar10" / "cifar10-jpg.tar.gz"
PUBLISHED = [
    ("published: IIC (ResNet trained from pixels)", 0.617),
    ("published: SCAN (own self-supervised ResNet-18)", 0.883),
]


# --------------------------------------------------------------------------- #
# the images, the workspace, the embeddings (cached)
# --------------------------------------------------------------------------- #
def cifar_folder(cache: Path) -> Path:
    """All 60,000 CIFAR-10 JPEGs as ``<class>/<split>-NNNN.jpg`` (once)."""
    root = cache / "cifar10" / "images"
    done = root.parent / "images.done"
    if done.is_file():
        return root
    if root.exists():
        shutil.rmtree(root)
    with tarfile.open(CIFAR_TAR) as tf:
        for m in tf.getmembers():
            if not (m.isfile() and m.name.endswith(".jpg")):
                continue
            split, cls, name = m.name.split("/")[-3:]
            dst = root / cls / f"{split}-{name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(tf.extractfile(m).read())  # type: ignore[union-attr]
    done.write_text("60000\n")
    return root


def cifar_sample(root: Path, per_class: int) -> Path:
    """The first ``per_class`` test JPEGs of each CIFAR-10 class (smoke runs)."""
    with tarfile.open(CIFAR_TAR) as tf:
        for m in tf.getmembers():
            parts = m.name.split("/")
            if not (m.isfile() and len(parts) >= 3 and parts[-3] == "test"):
                continue
            if int(parts[-1].split(".")[0]) >= per_class:
                continue
            dst = root / parts[-2] / f"test-{parts[-1]}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(tf.extractfile(m).read())  # type: ignore[union-attr]
    return root


def embed_folder(folder: Path, cache: Path, mirror: bool) -> dict[str, Any]:
    """Ingest + CNN embeddings of every image of ``folder`` (cached), timed."""
    from clusterlens.io._workspace import create_workspace, open_workspace
    from clusterlens.pipelines.features import run_cnn_features

    ws_dir = cache / "ws"
    timing_file = cache / "timings.json"
    timings = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    if not (ws_dir / "items.parquet").is_file():
        t = time.perf_counter()
        create_workspace(folder, ws_dir)
        timings["ingest"] = time.perf_counter() - t
    ws = open_workspace(ws_dir)
    cnn = ws_dir / "features" / "cnn"
    if not (cnn / "features.npy").is_file():
        t = time.perf_counter()
        cnn.mkdir(parents=True, exist_ok=True)
        run_cnn_features(ws, cnn, verbose=1)
        timings["cnn"] = time.perf_counter() - t
    if mirror and not (ws_dir / "features" / "cnn-mirror" / "features.npy").is_file():
        t = time.perf_counter()
        embed_mirrored(ws, ws_dir / "features" / "cnn-mirror")
        timings["cnn-mirror"] = time.perf_counter() - t
    timings["n_items"] = len(ws)
    timing_file.write_text(json.dumps(timings, indent=1))
    return {"ws": ws, "timings": timings}


def embed_mirrored(ws: Any, out: Path, batch_size: int = 64) -> None:
    """The same CNN on the left-right mirrored images -> ``out/features.npy``."""
    from clusterlens.features import CnnEmbedder
    from clusterlens.utils._progress import progress

    emb = CnnEmbedder()
    n = len(ws)
    X = np.zeros((n, emb.dim), dtype=np.float32)
    side = (emb.image_size, emb.image_size)
    bar = progress(total=n, desc="cnn (mirrored)", unit="img", verbose=1)
    for lo in range(0, n, batch_size):
        idx = list(range(lo, min(n, lo + batch_size)))
        batch = [
            emb.preprocess(img)[..., ::-1]
            for _, img in ws.iter_items(idx, mode="RGB", min_size=side)
        ]
        X[lo : lo + len(idx)] = emb.embed_batch(np.ascontiguousarray(np.stack(batch)))
        bar.update(len(idx))
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "features.npy", X)


def select_rows(ws: Any, split: str, n: int | None, seed: int) -> np.ndarray:
    """Rows of ``split`` ("all", or the file-name prefix "test"/"train"), then a
    stratified seeded ``n`` of them (each class its share, largest remainders)."""
    ids = ws.items["item_id"].astype(str)
    rows = np.arange(ids.size)
    if split != "all":
        keep = np.array([i.rsplit("/", 1)[-1].startswith(split + "-") for i in ids])
        rows = rows[keep]
    if n is None or n >= rows.size:
        return rows
    labels = ws.items["label"].astype(np.int64)[rows]
    classes, counts = np.unique(labels, return_counts=True)
    want = counts * n / rows.size
    take = np.floor(want).astype(int)
    rest = n - take.sum()
    take[np.argsort(-(want - take), kind="stable")[:rest]] += 1
    rng = np.random.default_rng(seed)
    pick = [
        np.sort(rng.choice(rows[labels == c], size=t, replace=False))
        for c, t in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(pick))


def subset_workspace(full: Any, rows: np.ndarray, tmp: Path) -> Any:
    """A workspace of ``rows`` of ``full`` (its images hard-linked or copied)
    with those rows of every cached feature matrix."""
    from clusterlens.io._workspace import create_workspace, open_workspace

    folder = tmp / "images"
    paths = full.items["path"].astype(str)
    for p in paths[rows]:
        dst = folder / p
        dst.parent.mkdir(parents=True, exist_ok=True)
        src = full.image_root / p
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    create_workspace(folder, tmp / "ws")
    ws = open_workspace(tmp / "ws")
    where = {p: r for r, p in zip(rows, paths[rows], strict=True)}
    order = np.array([where[p] for p in ws.items["path"].astype(str)])
    for feat in ("cnn", "cnn-mirror"):
        src = full.root / "features" / feat / "features.npy"
        if src.is_file():
            (tmp / "ws" / "features" / feat).mkdir(parents=True)
            X = np.load(src, mmap_mode="r")
            np.save(tmp / "ws" / "features" / feat / "features.npy", X[order])
    return ws


# --------------------------------------------------------------------------- #
# the methods
# --------------------------------------------------------------------------- #
def knn_purity(X: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Share of each row's ``k`` nearest neighbours (PCA 128 + L2) of its class."""
    from clusterlens.deep import EmbeddingPreprocessor, mine_neighbors

    Z = EmbeddingPreprocessor(min(128, X.shape[1])).fit(X).transform(X)
    nb = mine_neighbors(Z, k)
    return float((y[nb] == y[:, None]).mean())


def pca_kmeans(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """PCA 128 + L2, k-means with 10 starts."""
    from clusterlens.cluster import KMeans
    from clusterlens.deep import EmbeddingPreprocessor

    Z = EmbeddingPreprocessor(min(128, X.shape[1])).fit(X).transform(X)
    return np.asarray(KMeans(k, n_init=10, random_state=seed).fit(Z).labels_)


def run_methods(
    ws: Any, k: int, seed: int, views: tuple[str, ...], head: dict[str, Any], tmp: Path
) -> list[dict[str, Any]]:
    """Every method on ``ws``'s CNN features: scores and seconds."""
    from clusterlens.metrics import evaluate_clustering
    from clusterlens.pipelines.cluster_images import run_cluster_images

    X = np.load(ws.root / "features" / "cnn" / "features.npy")
    y = ws.items["label"].astype(np.int64)
    rows: list[dict[str, Any]] = []

    def score(name: str, labels: np.ndarray, seconds: float, **extra: Any) -> None:
        s = evaluate_clustering(y, labels)
        rows.append(
            {
                "method": name,
                "accuracy": s["accuracy"],
                "nmi": s["nmi"],
                "ari": s["ari"],
                "seconds": seconds,
                **extra,
            }
        )

    def cli(method: str, **kw: Any) -> tuple[np.ndarray, float, dict[str, Any]]:
        import pyarrow.parquet as pq

        out = tmp / f"out-{method}"
        out.mkdir()
        t = time.perf_counter()
        summary = run_cluster_images(
            ws,
            out,
            features="cnn",
            n_clusters=k,
            method=method,
            random_state=seed,
            report=False,
            **kw,
        )
        sec = time.perf_counter() - t
        labels = pq.read_table(out / "results.parquet").column("cluster").to_numpy()
        return labels, sec, summary

    labels, sec, _ = cli("kmeans", l2_normalize=True)
    score("k-means (CLI: --features cnn --l2)", labels, sec)
    t = time.perf_counter()
    labels = pca_kmeans(X, k, seed)
    score("PCA 128 + L2, k-means, 10 starts", labels, time.perf_counter() - t)
    for method in ("scan", "iic"):
        labels, sec, s = cli(method, views=views, head_params=head)
        name = "SCAN head" if method == "scan" else "IIC head"
        score(f"{name} (--method {method})", labels, sec, head=s.get("head"))
    return rows


# --------------------------------------------------------------------------- #
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="a labelled image folder (class sub-folders); default CIFAR-10",
    )
    p.add_argument(
        "--split",
        default=None,
        help="CIFAR-10: test (default), train or all; a folder: all",
    )
    p.add_argument("--n", type=int, default=None, help="a stratified subset")
    p.add_argument("-k", type=int, default=None, help="clusters (default: classes)")
    p.add_argument(
        "--views",
        choices=["flip", "none"],
        default="flip",
        help="augment the heads with the mirrored images' embeddings",
    )
    p.add_argument("--epochs", type=int, default=None, help="head training epochs")
    p.add_argument("--self-label-epochs", type=int, default=None)
    p.add_argument("--cache", type=Path, default=Path("/tmp/natural-cache"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="200 test images, few epochs")
    p.add_argument("--json", action="store_true", help="print JSON only")
    a = p.parse_args(argv)
    if a.json:
        os.environ.setdefault("CLUSTERLENS_DISABLE_PROGRESS_BARS", "1")
    head: dict[str, Any] = {}
    if a.smoke:
        a.n = a.n or 200
        head = {"epochs": 5, "self_label_epochs": 2}
    if a.epochs is not None:
        head["epochs"] = a.epochs
    if a.self_label_epochs is not None:
        head["self_label_epochs"] = a.self_label_epochs
    t_all = time.perf_counter()
    stages: dict[str, float] = {}
    if a.folder is None:
        if not CIFAR_TAR.is_file():
            print(f"no CIFAR-10 at {CIFAR_TAR}; pass --folder", file=sys.stderr)
            return 2
        split = a.split or "test"
        name = "cifar10"
        t = time.perf_counter()
        folder = cifar_folder(a.cache) if not a.smoke else Path()
        stages["extract"] = time.perf_counter() - t
    else:
        split, name = a.split or "all", a.folder.resolve().name
        folder = a.folder
    cache = a.cache / name
    if a.smoke:  # a fresh, small cache: CI embeds its images itself
        cache = Path(tempfile.mkdtemp(prefix="natural-smoke-", dir="/tmp"))
        folder = cifar_sample(cache / "images", per_class=a.n // 10)
    t = time.perf_counter()
    emb = embed_folder(folder, cache / "embed" if a.smoke else cache, a.views == "flip")
    full, timings = emb["ws"], emb["timings"]
    stages["embed (this run)"] = time.perf_counter() - t
    rows = select_rows(full, split, a.n, a.seed)
    share = rows.size / max(1, timings["n_items"])
    cnn_s = share * (timings.get("cnn", 0.0) + timings.get("ingest", 0.0))
    mirror_s = share * timings.get("cnn-mirror", 0.0)
    with tempfile.TemporaryDirectory(prefix="natural-", dir="/tmp") as tmp:
        ws = subset_workspace(full, rows, Path(tmp)) if rows.size < len(full) else full
        X = np.load(ws.root / "features" / "cnn" / "features.npy")
        y = ws.items["label"].astype(np.int64)
        k = a.k or int(np.unique(y[y >= 0]).size)
        t = time.perf_counter()
        purity = knn_purity(X, y)
        stages["10-NN purity"] = time.perf_counter() - t
        views = ("cnn-mirror",) if a.views == "flip" else ()
        results = run_methods(ws, k, a.seed, views, head, Path(tmp))
    if a.smoke:
        shutil.rmtree(cache, ignore_errors=True)
    out = {
        "set": name,
        "split": split,
        "n_items": int(rows.size),
        "k": k,
        "features": "EfficientNet-Lite0 (clusterlens features cnn)",
        "views": list(views),
        "knn10_purity": purity,
        "cnn_seconds_for_these_rows": cnn_s,
        "cnn_mirror_seconds_for_these_rows": mirror_s,
        "stages": stages,
        "methods": results,
        "published": [{"method": m, "accuracy": v} for m, v in PUBLISHED],
        "seconds_this_run": time.perf_counter() - t_all,
    }
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{name} {split}: {rows.size:,} images, k = {k}, {out['features']}")
    print(
        f"CNN stage for these rows: {cnn_s:.0f} s (+ {mirror_s:.0f} s mirrored)"
        f"; 10-NN purity of the features: {purity:.3f}"
    )
    print(f"{'method':<52} {'accuracy':>8} {'NMI':>6} {'ARI':>6} {'seconds':>8}")
    for r in results:
        print(
            f"{r['method']:<52} {r['accuracy']:>8.3f} {r['nmi']:>6.3f} "
            f"{r['ari']:>6.3f} {r['seconds']:>8.1f}"
        )
    for m, v in PUBLISHED:
        print(f"{m:<52} {v:>8.3f} {'':>6} {'':>6} {'':>8}")
    best = max(results, key=lambda r: r["accuracy"])
    base = results[0]["accuracy"]
    print(
        f"best: {best['method']} at {best['accuracy']:.3f} = "
        f"{best['accuracy'] / base:.2f}x the CLI k-means; "
        f"end to end (CNN + mirrored + best method): "
        f"{cnn_s + mirror_s + best['seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
