"""Large-k k-means and visual-word quantization against faiss and pqkmeans.

Sections (all by default except ``--full``; pick with ``--only``):

``kmeans``
    1,000,000 x 128 float32 from a seeded Gaussian mixture over 50,000
    isotropic centres (the hard case for any candidate search), k = 16,384,
    the same iterations from the same random rows: clusterlens large-k (its
    defaults, and ``refresh_every=0``, the fastest setting) against faiss flat
    k-means; pqkmeans (the seed's method) and faiss's HNSW-assignment recipe
    run fewer iterations (``--slow-iters``) as they are far slower. Final SSE
    is computed the same way for every method: exact nearest centre (faiss
    flat) on a fixed 100,000-row subsample.
``realsift``
    The 103,311 real SIFT descriptors of ``../shared/data/sift``, k = 8,192:
    SSE of clusterlens large-k vs exact Lloyd from the same init.
``quantize``
    200,000 held-out SIFT-like descriptors against a 131,072-word vocabulary
    (``--vocab`` from the full run, else words fitted on 1 M SIFT-like
    descriptors): descriptors/s of clusterlens's index quantizer vs
    ``faiss.IndexFlatL2`` (timed on 20,000 of them), and agreement with the
    exact nearest word.
``full``
    The seed's workload: 16,334,970 x 128 uint8 SIFT-like descriptors
    (``benchmarks/_sift_like.py``, written once to ``--data``), k = 131,072,
    ``--full-iters`` iterations, through the CLI in a child process; wall time,
    peak RSS, SSE per descriptor (exact on a 200,000-row subsample).

Every ratio is computed inside this one run; the machine is noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _sift_like import sift_like, write_sift_like  # noqa: E402

SIFT = HERE.parent / "../shared/data/sift/coco128_sift_opencv.npz"


def mixture(n: int, d: int, n_comp: int, seed: int) -> np.ndarray:
    """Seeded isotropic Gaussian mixture: centres N(0, 3^2), unit noise."""
    rng = np.random.default_rng(seed)
    M = rng.normal(0, 3, (n_comp, d)).astype(np.float32)
    X = np.empty((n, d), np.float32)
    for a in range(0, n, 1 << 18):
        b = min(n, a + (1 << 18))
        X[a:b] = M[rng.integers(n_comp, size=b - a)]
        X[a:b] += rng.standard_normal((b - a, d), dtype=np.float32)
    return X


def exact_sse(X: np.ndarray, C: np.ndarray) -> float:
    """Sum of squared distances to the nearest of C (faiss flat, exact)."""
    import faiss

    D, _ = faiss.knn(
        np.ascontiguousarray(X, np.float32), np.ascontiguousarray(C, np.float32), 1
    )
    return float(D[:, 0].astype(np.float64).sum())


def run_faiss_flat(X, init, iters):
    import faiss

    km = faiss.Kmeans(
        X.shape[1], init.shape[0], niter=iters, seed=1, max_points_per_centroid=10**9
    )
    t = time.perf_counter()
    km.train(X, init_centroids=np.ascontiguousarray(init, np.float32))
    return km.centroids, time.perf_counter() - t


def run_faiss_hnsw(X, init, iters):
    import faiss

    d, k = X.shape[1], init.shape[0]
    cp = faiss.ClusteringParameters()
    cp.niter = iters
    cp.max_points_per_centroid = 10**9
    clus = faiss.Clustering(d, k, cp)
    faiss.copy_array_to_vector(
        np.ascontiguousarray(init, np.float32).ravel(), clus.centroids
    )
    index = faiss.IndexHNSWFlat(d, 32)
    index.hnsw.efSearch = 64
    t = time.perf_counter()
    clus.train(X, index)
    return faiss.vector_to_array(clus.centroids).reshape(k, d), time.perf_counter() - t


def run_pqkmeans(X, k, iters, seed):
    import pqkmeans

    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    enc = pqkmeans.encoder.PQEncoder(num_subdim=4, Ks=256)
    enc.fit(X[rng.choice(len(X), min(len(X), 100_000), replace=False)])
    codes = enc.transform(X)
    t_enc = time.perf_counter() - t
    km = pqkmeans.clustering.PQKMeans(encoder=enc, k=k, iteration=iters, verbose=False)
    t = time.perf_counter()
    km.fit(codes)
    t_fit = time.perf_counter() - t
    C = enc.inverse_transform(np.asarray(km.cluster_centers_, np.uint8))
    return np.asarray(C, np.float32), t_fit, t_enc


def run_clusterlens(X, init, iters, **kw):
    from clusterlens.cluster import kmeans

    t = time.perf_counter()
    res = kmeans(X, init.shape[0], init=init, max_iter=iters, tol=0, mode="large", **kw)
    return res, time.perf_counter() - t


def section_kmeans(args) -> dict[str, Any]:
    n, k, iters = args.n, args.k, args.iters
    if args.kmeans_data == "sift-like":
        X = sift_like(n, seed=args.seed + 3).astype(np.float32)
    else:
        X = mixture(n, 128, args.components, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    init = X[np.sort(rng.choice(n, k, replace=False))].astype(np.float64)
    sub = X[np.sort(rng.choice(n, min(n, 100_000), replace=False))]
    rows = []

    def add(name, C, seconds, its, extra=None):
        sse = exact_sse(sub, C)
        rows.append(
            {
                "method": name,
                "iters": its,
                "seconds": seconds,
                "s_per_iter": seconds / its,
                "sse_sub": sse,
                **(extra or {}),
            }
        )
        print(
            f"  {name:34s} {its:3d} it {seconds:8.1f} s {seconds / its:7.2f} s/it "
            f"SSE(sub) {sse:.6g}",
            flush=True,
        )

    print(
        f"kmeans: {n:,} x 128 float32 ({args.kmeans_data}), k={k:,}, "
        f"{iters} iterations",
        flush=True,
    )
    res, t = run_clusterlens(X, init, iters)
    add(
        "clusterlens large (default)",
        res.centers,
        t,
        iters,
        {"passes": [h["pass"] for h in res.history]},
    )
    res0, t0 = run_clusterlens(X, init, iters, refresh_every=0)
    add("clusterlens large (refresh_every=0)", res0.centers, t0, iters)
    C, t = run_faiss_flat(X, init, iters)
    add("faiss flat", C, t, iters)
    s = args.slow_iters
    if s > 0:
        res_s, t_s = run_clusterlens(X, init, s)
        add(f"clusterlens large ({s} it)", res_s.centers, t_s, s)
        C, t_f = run_faiss_flat(X, init, s)
        add(f"faiss flat ({s} it)", C, t_f, s)
        try:
            C, t_h = run_faiss_hnsw(X, init, s)
            add(f"faiss HNSW assignment ({s} it)", C, t_h, s)
        except Exception as e:
            print(f"  faiss HNSW failed: {e}", flush=True)
        try:
            C, t_p, t_enc = run_pqkmeans(X, k, s, args.seed)
            add(f"pqkmeans ({s} it, own init)", C, t_p, s, {"encoder_seconds": t_enc})
        except Exception as e:
            print(f"  pqkmeans failed: {e}", flush=True)
    by = {r["method"]: r for r in rows}
    ff = by["faiss flat"]
    for r in rows:
        base = (
            by.get(f"faiss flat ({r['iters']} it)", ff) if r["iters"] != iters else ff
        )
        r["speedup_vs_faiss_flat"] = base["s_per_iter"] / r["s_per_iter"]
        r["sse_vs_faiss_flat"] = r["sse_sub"] / base["sse_sub"] - 1
        print(
            f"  {r['method']:34s} {r['speedup_vs_faiss_flat']:6.2f}x faster than faiss "
            f"flat, SSE {100 * r['sse_vs_faiss_flat']:+.2f} %",
            flush=True,
        )
    return {"n": n, "k": k, "iters": iters, "data": args.kmeans_data, "rows": rows}


def section_realsift(args) -> dict[str, Any]:
    from clusterlens.cluster import kmeans

    with np.load(SIFT) as z:
        X = z["descriptors"]
    k = args.real_k
    rng = np.random.default_rng(args.seed)
    init = X[np.sort(rng.choice(len(X), k, replace=False))].astype(np.float64)
    out = {}
    for mode, kw in [("exact", {}), ("large", {}), ("large-r0", {"refresh_every": 0})]:
        t = time.perf_counter()
        r = kmeans(
            X,
            k,
            init=init,
            max_iter=args.iters,
            tol=0,
            mode="exact" if mode == "exact" else "large",
            **kw,
        )
        out[mode] = {"seconds": time.perf_counter() - t, "sse": exact_sse(X, r.centers)}
    for mode in out:
        out[mode]["sse_vs_exact"] = out[mode]["sse"] / out["exact"]["sse"] - 1
        out[mode]["speedup"] = out["exact"]["seconds"] / out[mode]["seconds"]
        print(
            f"realsift k={k}: {mode:9s} {out[mode]['seconds']:7.1f} s "
            f"({out[mode]['speedup']:.2f}x) "
            f"SSE {100 * out[mode]['sse_vs_exact']:+.3f} % "
            "vs exact Lloyd",
            flush=True,
        )
    return out


def section_quantize(args) -> dict[str, Any]:
    import faiss

    from clusterlens.vocab import VisualVocabulary

    if args.vocab and Path(args.vocab).with_suffix(".npz").exists():
        vocab = VisualVocabulary.load(args.vocab)
        source = str(args.vocab)
    elif args.smoke:  # real SIFT only: no 1 M-row generator block
        with np.load(SIFT) as z:
            train = z["descriptors"][: args.quant_train]
        vocab = VisualVocabulary(args.quant_k, max_iter=2, random_state=0).fit(train)
        source = f"fitted on {len(train):,} real SIFT rows"
    else:
        train = sift_like(args.quant_train, seed=args.seed + 7)
        vocab = VisualVocabulary(args.quant_k, max_iter=4, random_state=0).fit(train)
        source = f"fitted on {len(train):,} SIFT-like rows, 4 iterations"
    k = vocab.centers_.shape[0]
    if args.smoke:
        with np.load(SIFT) as z:
            Q = z["descriptors"][-args.quant_n :]
    else:
        Q = sift_like(args.quant_n, seed=args.seed + 99)  # held out
    if args.probe:
        vocab.n_probe = args.probe
    t = time.perf_counter()
    vocab._index()
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    words = vocab.transform(Q)
    t_ours = time.perf_counter() - t
    m = args.flat_n
    index = faiss.IndexFlatL2(128)
    index.add(np.ascontiguousarray(vocab.centers_, np.float32))
    t = time.perf_counter()
    _, ref = index.search(np.ascontiguousarray(Q[:m], np.float32), 1)
    t_flat = time.perf_counter() - t
    C = vocab.centers_.astype(np.float64)

    def same(Xq, ours, ref):  # distances of both words recomputed in float64
        Xf = Xq.astype(np.float64)
        a = ((Xf - C[ours]) ** 2).sum(1)
        b = ((Xf - C[ref]) ** 2).sum(1)
        return float(np.mean(a <= b * (1 + 1e-12)))

    agree = same(Q[:m], words[:m], ref[:, 0])
    rate_ours, rate_flat = len(Q) / t_ours, m / t_flat
    with np.load(SIFT) as z:
        R = z["descriptors"][:20000]
    _, ref_r = index.search(R.astype(np.float32), 1)
    real = same(R, vocab.transform(R), ref_r[:, 0])
    out = {
        "k": k,
        "vocabulary": source,
        "n_probe": vocab._index().n_probe,
        "n_groups": vocab._index().n_groups,
        "index_build_s": t_build,
        "ours_desc_per_s": rate_ours,
        "flat_desc_per_s": rate_flat,
        "speedup": rate_ours / rate_flat,
        "agreement_sift_like": agree,
        "agreement_real_sift": real,
    }
    print(
        f"quantize {len(Q):,} vs {k:,} words ({source}): clusterlens "
        f"{rate_ours:,.0f}/s (index built in {t_build:.1f} s), faiss IndexFlatL2 "
        f"{rate_flat:,.0f}/s -> {rate_ours / rate_flat:.1f}x; agreement with exact "
        f"{100 * agree:.2f} % (SIFT-like), {100 * real:.2f} % (real SIFT queries); "
        f"n_probe {out['n_probe']} of {out['n_groups']} groups",
        flush=True,
    )
    return out


def section_full(args) -> dict[str, Any]:
    data = Path(args.data)
    if not data.exists():
        print(f"writing {data} ...", flush=True)
        write_sift_like(data, 16_334_970, seed=0)
    out = Path(args.full_out)
    cmd = [
        sys.executable,
        "-m",
        "clusterlens.cli.main",
        "vocab",
        str(data),
        "-k",
        str(args.full_k),
        "--max-iter",
        str(args.full_iters),
        "--seed",
        "0",
        "--out",
        str(out),
        "--overwrite",
        "--format",
        "json",
        "--checkpoint",
        str(out) + "-ckpt",
        "--refresh-every",
        str(args.full_refresh),
    ]
    if args.full_resume:
        cmd.append("--resume")
    print("full:", " ".join(cmd), flush=True)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    if p.returncode != 0:
        print(p.stderr[-3000:], flush=True)
        return {"error": p.stderr[-500:]}
    summary = json.loads(p.stdout)
    from clusterlens.vocab import VisualVocabulary

    vocab = VisualVocabulary.load(out / "vocab")
    X = np.load(data, mmap_mode="r")
    rows = np.sort(np.random.default_rng(5).choice(len(X), 200_000, replace=False))
    sub = np.asarray(X[rows])
    sse = exact_sse(sub, vocab.centers_)
    res = {
        "wall_s": wall,
        "peak_rss_gib": peak,
        "iters": summary["n_iter"],
        "fit_seconds": summary["fit_seconds"],
        "sse_per_desc_sub": sse / len(sub),
        "agreement": summary["quantizer_agreement"],
        "empty_words": summary["empty_words"],
        "history": vocab.history_,
    }
    print(
        f"full: {len(X):,} x 128 uint8, k={args.full_k:,}: {wall / 60:.1f} min wall, "
        f"peak RSS {peak:.2f} GiB, {summary['n_iter']} iterations, SSE/descriptor "
        f"(exact, 200k sample) {sse / len(sub):.1f}, assignment "
        f"{100 * summary['quantizer_agreement']:.2f} % exact",
        flush=True,
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=["kmeans", "realsift", "quantize", "full"],
    )
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=16_384)
    ap.add_argument("--components", type=int, default=50_000)
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument(
        "--kmeans-data", choices=["mixture", "sift-like"], default="mixture"
    )
    ap.add_argument("--slow-iters", type=int, default=2)
    ap.add_argument("--real-k", type=int, default=8192)
    ap.add_argument("--quant-k", type=int, default=131_072)
    ap.add_argument("--quant-n", type=int, default=200_000)
    ap.add_argument("--quant-train", type=int, default=1_000_000)
    ap.add_argument("--flat-n", type=int, default=20_000)
    ap.add_argument("--probe", type=int, default=None)
    ap.add_argument("--vocab", default=None, help="vocabulary path (no suffix)")
    ap.add_argument("--data", default="/tmp/clb/sift_like_16M.npy")
    ap.add_argument("--full-k", type=int, default=131_072)
    ap.add_argument("--full-iters", type=int, default=10)
    ap.add_argument("--full-out", default="/tmp/clb/full")
    ap.add_argument("--full-refresh", type=int, default=5)
    ap.add_argument("--full-resume", action="store_true")
    ap.add_argument(
        "--json", action="store_true", help="JSON on stdout, text on stderr"
    )
    ap.add_argument("--save", default=None, help="also write the JSON to this file")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.k, args.components, args.iters, args.slow_iters = (
            20_000,
            512,
            2000,
            4,
            0,
        )
        args.real_k, args.quant_k, args.quant_n = 256, 4096, 5000
        args.quant_train, args.flat_n = 20_000, 2000
    only = args.only or ["kmeans", "realsift", "quantize"]
    os.environ.setdefault("CLUSTERLENS_DISABLE_PROGRESS_BARS", "1")
    results = {}
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        for name in only:
            results[name] = globals()[f"section_{name}"](args)
    text = json.dumps(results, indent=1, default=float)
    if args.save:
        Path(args.save).write_text(text)
    if args.json:
        print(text)


if __name__ == "__main__":
    main()
