"""Prototype large-k Lloyd (neighbour graph over centres) vs exact k-means.

Same data (seeded Gaussian mixture), same random-row init, same number of
iterations, one process. For every method: median seconds per iteration
(and the first iteration separately, which for the prototype is the initial
assignment), and the final SSE computed exactly, the same way for all (one
chunked exact pass over all points against the final centres, float64
accumulation). For the prototype also the fraction of points whose
candidate-search label (one more pass of the prototype against the final
centres, from its last labels) differs from the exact nearest centre.

    python benchmarks/large_k_prototype.py                     # n=200k, k=4096
    python benchmarks/large_k_prototype.py --ms 0 --top-rs 3 4 \
        --exact-iters 1 2 --refresh 0 4       # per-point candidate variants
    python benchmarks/large_k_prototype.py --ms 16 32 64 --top-rs 0 \
        --first exact two_level               # the centre-graph-only variant
    python benchmarks/large_k_prototype.py --n 1000000 --k 16384 \
        --mixture 50000 --no-exact --ms 32 64 --top-rs 0 --first two_level

The default measures the default of ``large_k_kmeans``: per-point top-3
candidates, no centre graph (``--ms 0 --top-rs 3``). ``mean_s_per_iter`` is
the amortised cost of iterations 2.. (exact refreshes included).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def mixture(n: int, d: int, n_centers: int, seed: int) -> np.ndarray:
    """A seeded Gaussian mixture, float32 (as benchmarks/kmeans_exact.py)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_centers, d), dtype=np.float32) * 4
    X = centers[rng.integers(n_centers, size=n)]
    X += rng.standard_normal((n, d), dtype=np.float32)
    return X


def exact_eval(X: np.ndarray, centers: np.ndarray) -> tuple[float, np.ndarray]:
    """Exact SSE and nearest-centre labels, the same code for every method."""
    from clusterlens.cluster._large_k import exact_assign

    shift = np.asarray(centers, np.float64).mean(0)
    Xs = np.subtract(X, shift.astype(np.float32), dtype=np.float32)
    labels, best = exact_assign(Xs, np.asarray(centers, np.float64) - shift)
    xsq = np.einsum("ij,ij->i", Xs, Xs, dtype=np.float64)
    d2 = np.maximum(xsq - best.astype(np.float64), 0.0)
    return float(d2.sum()), labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--mixture", type=int, default=12_000, help="mixture centres")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument(
        "--ms", type=int, nargs="+", default=[0], help="graph neighbours, 0 = none"
    )
    ap.add_argument("--first", nargs="+", default=["exact"])
    ap.add_argument("--graph", default="flat", choices=["flat", "hnsw"])
    ap.add_argument("--graph-every", type=int, default=1)
    ap.add_argument(
        "--rs",
        type=int,
        nargs="+",
        default=[0],
        help="data-driven neighbours (runners-up of the points), 0 = off",
    )
    ap.add_argument(
        "--top-rs",
        type=int,
        nargs="+",
        default=[3],
        help="per-point candidates: top-r labels kept from the last pass, 0 = off",
    )
    ap.add_argument(
        "--exact-iters",
        type=int,
        nargs="+",
        default=[1],
        help="first iterations done by an exact pass (per-point mode)",
    )
    ap.add_argument(
        "--refresh",
        type=int,
        nargs="+",
        default=[0],
        help="an exact pass every T iterations (per-point mode), 0 = never",
    )
    ap.add_argument("--no-faiss", action="store_true")
    ap.add_argument("--no-exact", action="store_true", help="skip clusterlens exact")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from clusterlens.cluster import kmeans
    from clusterlens.cluster._large_k import (
        assign_candidates,
        assign_topr,
        centroid_graph,
        data_neighbours,
        large_k_kmeans,
    )

    n, d, k, iters = args.n, args.d, args.k, args.iters
    t = time.perf_counter()
    X = mixture(n, d, args.mixture, seed=0)
    rng = np.random.default_rng(1)
    C0 = X[rng.choice(n, k, replace=False)].astype(np.float32)
    print(
        f"data n={n} d={d} k={k} mixture={args.mixture} iters={iters} "
        f"({time.perf_counter() - t:.1f}s to generate)",
        flush=True,
    )
    rows: dict[str, dict] = {}

    def report(name: str, per: float, first: float | None, centers, extra=None):
        t = time.perf_counter()
        sse, exact_labels = exact_eval(X, centers)
        row = {
            "s_per_iter": per,
            "first_iter_s": first,
            "sse": sse,
            "eval_s": time.perf_counter() - t,
        }
        row.update(extra or {})
        rows[name] = row
        print(
            name,
            json.dumps(
                {
                    a: (round(b, 4) if isinstance(b, float) else b)
                    for a, b in row.items()
                }
            ),
            flush=True,
        )
        return exact_labels

    if not args.no_faiss:
        import faiss

        km = faiss.Kmeans(d, k, niter=iters, seed=1, max_points_per_centroid=10**9)
        t = time.perf_counter()
        km.train(X, init_centroids=C0)
        wall = time.perf_counter() - t
        ts = np.diff([0.0] + [s["time"] for s in km.iteration_stats])
        report(
            "faiss.Kmeans flat",
            float(np.median(ts)),
            float(ts[0]),
            km.centroids,
            {"wall_s": wall},
        )
    if not args.no_exact:
        t = time.perf_counter()
        res = kmeans(X, k, init=C0.astype(np.float64), max_iter=iters, tol=0.0)
        wall = time.perf_counter() - t
        secs = [h["seconds"] for h in res.history]
        report(
            "clusterlens exact",
            float(np.median(secs)),
            float(secs[0]),
            res.centers,
            {"wall_s": wall, "n_iter": res.n_iter},
        )
    configs = [
        (f, m, rr, tr, e, t)
        for f in args.first
        for rr in args.rs
        for m in args.ms
        for tr in args.top_rs
        for e in args.exact_iters
        for t in args.refresh
    ]
    for first, m, rr, tr, e_it, refresh in configs:
        if True:
            t = time.perf_counter()
            r = large_k_kmeans(
                X,
                C0,
                n_iter=iters,
                m=m,
                first=first,
                r=rr,
                graph=args.graph,
                graph_every=args.graph_every,
                top_r=tr,
                exact_iters=e_it,
                refresh_every=refresh,
            )
            wall = time.perf_counter() - t
            h = r["history"]
            rest = h[1:] or h
            name = f"large-k m={m} r={rr} first={first}"
            if tr:
                name = f"large-k m={m} top_r={tr} E={e_it} T={refresh}"
            # One more prototype assignment against the final centres.
            shift = r["centers"].mean(0)
            Xs = np.subtract(X, shift.astype(np.float32), dtype=np.float32)
            Cs = r["centers"] - shift
            tq = time.perf_counter()
            cand = centroid_graph(Cs, m, args.graph) if m else None
            if tr:
                lab, _ = assign_topr(Xs, Cs, r["labels"], r["top"], cand)
            elif rr:
                cand = np.concatenate(
                    [cand, data_neighbours(r["labels"], r["second"], k, rr)], axis=1
                )
            if not tr:
                lab, _ = assign_candidates(Xs, Cs, r["labels"], cand)
            tq = time.perf_counter() - tq
            del Xs
            extra = {
                "wall_s": wall,
                "graph_s": float(np.median([x["graph_s"] for x in rest])),
                "assign_s": float(np.median([x["assign_s"] for x in rest])),
                "update_s": float(np.median([x["update_s"] for x in rest])),
                "moved_last": h[-1]["moved"],
                "empty_last": h[-1]["empty"],
                "final_pass_s": tq,
                "mean_s_per_iter": float(np.mean([x["seconds"] for x in rest])),
            }
            exact_labels = report(
                name,
                float(np.median([x["seconds"] for x in rest])),
                h[0]["seconds"],
                r["centers"],
                extra,
            )
            rows[name]["frac_differs"] = float(np.mean(lab != exact_labels))
            print("   frac_differs", rows[name]["frac_differs"], flush=True)

    ref_name = (
        "faiss.Kmeans flat" if "faiss.Kmeans flat" in rows else "clusterlens exact"
    )
    if ref_name in rows:
        ref = rows[ref_name]
        print(
            f"\nratios vs {ref_name}: speed = ref s/iter / s/iter "
            "(median of iterations 2..), total = ref wall / wall"
        )
        print(
            f"{'method':32s} {'s/iter':>8s} {'1st it':>8s} {'speedup':>8s} "
            f"{'total x':>8s} {'SSE':>14s} {'dSSE %':>8s} {'differs':>8s}"
        )
        for name, r in rows.items():
            print(
                f"{name:32s} {r['s_per_iter']:8.3f} {r['first_iter_s'] or 0:8.3f} "
                f"{ref['s_per_iter'] / r['s_per_iter']:8.1f} "
                f"{ref['wall_s'] / r['wall_s']:8.1f} {r['sse']:14.6g} "
                f"{100 * (r['sse'] / ref['sse'] - 1):+8.3f} "
                f"{r.get('frac_differs', float('nan')):8.4f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
