"""Exact k-means on one machine vs a Dask cluster: clusterlens local, clusterlens
Dask backend (LocalCluster), and dask-ml's ``KMeans``, side by side.

Every method gets the same memory-mapped ``.npy`` of SIFT-like uint8
descriptors (``benchmarks/_sift_like.py``), the same initial centres (k rows
drawn with a seed) and the same number of Lloyd iterations (``tol=0``). Each
method runs in a fresh child process with, for the Dask rows, a fresh
LocalCluster (2 worker processes x 1 thread), so peak memory is per method.

Measured per method: seconds per iteration (median, and every iteration),
final SSE (recomputed here for every method the same way: clusterlens' exact
assignment to the final centres, float64 sum), peak RSS of every process
(the client process, which also hosts the LocalCluster's scheduler, and each
worker; RSS counts the resident pages of the memory-mapped file too), and the
bytes sent over the cluster's TCP connections during each iteration (every
``distributed.comm.tcp.TCP.write`` in the client/scheduler process and in the
workers is counted, with a timestamp, and attributed to the iteration whose
time window contains it), next to the theoretical figure.

dask-ml gets the data as a persisted float32 Dask array read by the workers
from the same file (its ``KMeans`` casts its final centres to the input
dtype, so uint8 input would truncate them), the initial centres as an
``init=`` array, ``max_iter`` fixed and ``tol=0`` (its loop stops when the
shift is ``< tol``, so it runs every iteration: checked with ``n_iter_``).
Its per-iteration seconds come from its own "Lloyd loop" log timers.

    python benchmarks/distributed.py              # 2,000,000 x 128, k=4,096, 5 iters
    python benchmarks/distributed.py --smoke      # tiny, seconds (CI)
    python benchmarks/distributed.py --constants  # the figures docs/scaling.md uses
    python benchmarks/distributed.py --json       # JSON on stdout instead of tables
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
# This file shares its name with the ``distributed`` package: keep its folder
# off the import path (Python puts a script's folder first).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

METHODS = ("local", "dask", "dask-ml")


# --------------------------------------------------------------------------- #
# Helpers that also run inside the Dask workers (pickled by value)
# --------------------------------------------------------------------------- #
def _install_counter() -> bool:
    """Count (time, bytes) of every TCP message this process sends."""
    from distributed.comm import tcp

    if getattr(tcp.TCP, "_clb_orig", None) is None:
        orig = tcp.TCP.write
        log: list[tuple[float, int]] = []

        async def write(self, msg, serializers=None, on_error="message"):  # type: ignore[no-untyped-def]
            n = await orig(self, msg, serializers=serializers, on_error=on_error)
            log.append((time.monotonic(), int(n)))
            return n

        tcp.TCP._clb_orig = orig  # type: ignore[attr-defined]
        tcp.TCP.write = write  # type: ignore[method-assign]
        tcp._clb_log = log  # type: ignore[attr-defined]
    return True


def _sent_log() -> list[tuple[float, int]]:
    from distributed.comm import tcp

    return list(getattr(tcp, "_clb_log", []))


def _peak_rss() -> int:
    """Peak resident set size of this process, bytes (``VmHWM``).

    Not ``ru_maxrss``: Linux carries that over ``exec`` from the parent, so a
    fresh child would report its parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _load_f32(path: str, lo: int, hi: int) -> np.ndarray:
    return np.asarray(np.load(path, mmap_mode="r")[lo:hi], dtype=np.float32)


# --------------------------------------------------------------------------- #
# Data and the shared SSE
# --------------------------------------------------------------------------- #
def make_data(
    data_dir: Path, n: int, k: int, seed: int, real: bool = False
) -> tuple[Path, Path]:
    """The descriptor file (cached) and k initial centres (k distinct rows).

    ``real``: the first n of the 103,311 real SIFT descriptors the generator
    uses as prototypes (the smoke: no 2**20-row block to generate).
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("_sift_like", HERE / "_sift_like.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    data_dir.mkdir(parents=True, exist_ok=True)
    if real:
        path = data_dir / f"coco128_sift_n{n}.npy"
        P = mod.load_prototypes()
        if n > P.shape[0]:
            raise SystemExit(f"--smoke takes n <= {P.shape[0]}")
        np.save(path, np.clip(np.rint(P[:n]), 0, 255).astype(np.uint8))
    else:
        path = data_dir / f"sift_like_n{n}_seed{seed}.npy"
        if not path.exists():
            mod.write_sift_like(path, n, seed)
    X = np.load(path, mmap_mode="r")
    rng = np.random.default_rng(seed + 1)
    idx = np.sort(rng.choice(n, k, replace=False))
    c0 = data_dir / f"init_n{n}_k{k}_seed{seed}.npy"
    np.save(c0, np.asarray(X[idx], dtype=np.float64))
    return path, c0


def exact_sse(path: Path, centers: np.ndarray, threads: int) -> float:
    """SSE of every row to its nearest centre: clusterlens' exact assignment,
    distances summed in float64. The same code for every method."""
    from clusterlens import config_context
    from clusterlens.cluster._driver import assign_chunked
    from clusterlens.cluster._engines import get_engine

    X = np.load(path, mmap_mode="r")
    eng = get_engine("numpy", {"dtype": X.dtype, "metric": "sqeuclidean"})
    with config_context(n_threads=threads):
        _, d2 = assign_chunked(X, np.asarray(centers, np.float64), eng)
    return float(d2.astype(np.float64).sum())


def _bounds(n: int, shard_rows: int) -> list[tuple[int, int]]:
    return [(lo, min(n, lo + shard_rows)) for lo in range(0, n, shard_rows)]


def _run_summary(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("s_per_iter", "s_per_iter_mean", "sse", "load_before", "load_after")
    return {key: r[key] for key in keys}


def _bytes_in(windows, logs) -> list[dict[str, int]]:
    """Bytes sent by each process group within each (start, end) window."""
    out = []
    for lo, hi in windows:
        row = {}
        for name, log in logs.items():
            row[name] = int(sum(b for t, b in log if lo <= t <= hi))
        row["total"] = sum(row.values())
        out.append(row)
    return out


# --------------------------------------------------------------------------- #
# One method per child process
# --------------------------------------------------------------------------- #
def child_local(cfg: dict[str, Any]) -> dict[str, Any]:
    from clusterlens import config_context
    from clusterlens.cluster import kmeans

    C0 = np.load(cfg["init"])
    with config_context(n_threads=cfg["threads"]):
        t = time.perf_counter()
        res = kmeans(
            cfg["data"],
            cfg["k"],
            mode=cfg.get("mode", "exact"),
            engine="numpy" if cfg.get("mode", "exact") == "exact" else "auto",
            init=C0,
            n_init=1,
            max_iter=cfg["iters"],
            tol=0.0,
            random_state=cfg["seed"],  # the large-k index's seed
        )
        wall = time.perf_counter() - t
    np.save(cfg["out_centers"], np.asarray(res.centers, np.float64))
    return {
        "iter_seconds": [h["seconds"] for h in res.history],
        "n_iter": int(res.n_iter),
        "fit_wall_seconds": wall,
        "own_inertia": float(res.inertia),
        "peak_rss": {"process": _peak_rss()},
        "processes": f"1 process x {cfg['threads']} threads",
    }


@contextlib.contextmanager
def _cluster(cfg: dict[str, Any]) -> Iterator[Any]:
    """A fresh LocalCluster as clusterlens starts one (``dask_client``): worker
    processes x 1 thread, glibc's malloc trimming left adaptive."""
    from clusterlens.distributed import dask_client

    with dask_client(n_workers=cfg["workers"], threads_per_worker=1) as client:
        client.run(_install_counter)
        _install_counter()  # the client and the LocalCluster's scheduler live here
        yield client


def _finish(client: Any, windows: list[tuple[float, float]]) -> dict[str, Any]:
    wlogs = client.run(_sent_log)
    logs = {"client+scheduler": _sent_log()}
    for i, addr in enumerate(sorted(wlogs)):
        logs[f"worker{i}"] = wlogs[addr]
    peaks = client.run(_peak_rss)
    peak = {"client+scheduler": _peak_rss()}
    for i, addr in enumerate(sorted(peaks)):
        peak[f"worker{i}"] = peaks[addr]
    return {"bytes_per_iter": _bytes_in(windows, logs), "peak_rss": peak}


def _dask_modules(mode: str = "exact") -> tuple[Any, Any]:
    """The Dask k-means module, and the module whose loop draws the progress bar.

    Since issue #22 the one Lloyd loop of each mode lives in ``cluster/``
    (``_driver`` for the exact mode, ``_large_driver`` for large-k); before,
    ``distributed/_dask.py`` had its own loops.
    """
    try:
        import clusterlens.cluster._driver as exact
        import clusterlens.cluster._large_driver as large
        import clusterlens.distributed._kmeans as cd
    except ImportError:
        import clusterlens.distributed._dask as cd

        return cd, cd
    return cd, (exact if mode == "exact" else large)


def child_dask(cfg: dict[str, Any]) -> dict[str, Any]:
    cd, loop = _dask_modules(cfg.get("mode", "exact"))
    C0 = np.load(cfg["init"])
    with _cluster(cfg) as client:
        base = client.run(_rss_now)
        # Iteration ends: the fit's progress bar is updated once per iteration.
        marks: list[float] = []
        orig = loop.progress

        def marking_progress(*a: Any, **kw: Any) -> Any:
            bar = orig(*a, **kw)
            upd = bar.update

            def update(n: int = 1) -> Any:
                if n:  # (a resumed fit first advances by 0 or more)
                    marks.append(time.monotonic())
                return upd(n)

            bar.update = update
            return bar

        loop.progress = marking_progress
        kwargs: dict[str, Any] = {}
        if cfg.get("shard_rows"):
            kwargs["shard_rows"] = cfg["shard_rows"]
        if cfg.get("mode", "exact") != "exact":
            kwargs["mode"] = cfg["mode"]
        t = time.perf_counter()
        res = cd.dask_kmeans(
            cfg["data"],
            cfg["k"],
            init=C0,
            max_iter=cfg["iters"],
            tol=0.0,
            engine="numpy" if cfg.get("mode", "exact") == "exact" else "auto",
            client=client,
            random_state=cfg["seed"],
            **kwargs,
        )
        wall = time.perf_counter() - t
        loop.progress = orig
        secs = [h["seconds"] for h in res.history]
        windows = [(m - s, m) for m, s in zip(marks, secs, strict=True)]
        out = _finish(client, windows)
        np.save(cfg["out_centers"], np.asarray(res.centers, np.float64))
        shard_rows = cfg.get("shard_rows") or cd.DEFAULT_SHARD_ROWS
        n_shards = len(_bounds(cfg["n"], shard_rows))
        return {
            "iter_seconds": secs,
            "n_iter": int(res.n_iter),
            "fit_wall_seconds": wall,
            "own_inertia": float(res.inertia),
            "worker_rss_at_start": sorted(base.values()),
            "n_shards": n_shards,
            "processes": f"{cfg['workers']} worker processes x 1 thread",
            **out,
        }


def child_daskml(cfg: dict[str, Any]) -> dict[str, Any]:
    import logging

    import dask
    import dask.array as da
    from dask_ml.cluster import KMeans as DMKMeans

    from distributed import wait

    cd, _ = _dask_modules()

    C0 = np.load(cfg["init"]).astype(np.float32)
    # dask_client's Client is not the default one: make it current for dask-ml
    with _cluster(cfg) as client, client.as_current():
        base = client.run(_rss_now)
        n, d = cfg["n"], C0.shape[1]
        parts = [
            da.from_delayed(
                dask.delayed(_load_f32)(cfg["data"], lo, hi),
                shape=(hi - lo, d),
                dtype=np.float32,
            )
            for lo, hi in _bounds(n, cfg.get("shard_rows") or cd.DEFAULT_SHARD_ROWS)
        ]
        X = da.concatenate(parts).persist()
        wait(X)

        stamps: list[tuple[str, float]] = []

        class Stamp(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                msg = record.getMessage()
                if "Lloyd loop" in msg:
                    stamps.append((msg.split()[0], time.monotonic()))

        lg = logging.getLogger("dask_ml.cluster.k_means")
        lg.setLevel(logging.INFO)
        lg.addHandler(Stamp())
        lg.propagate = False
        km = DMKMeans(
            n_clusters=cfg["k"], init=C0, max_iter=cfg["iters"], tol=0.0, n_init=1
        )
        t = time.perf_counter()
        km.fit(X)
        wall = time.perf_counter() - t
        starts = [s for w, s in stamps if w == "Starting"]
        ends = [s for w, s in stamps if w == "Finished"]
        windows = list(zip(starts, ends, strict=True))
        out = _finish(client, windows)
        np.save(cfg["out_centers"], np.asarray(km.cluster_centers_, np.float64))
        return {
            "iter_seconds": [b - a for a, b in windows],
            "n_iter": int(km.n_iter_),
            "fit_wall_seconds": wall,
            "own_inertia": float(km.inertia_),
            "worker_rss_at_start": sorted(base.values()),
            "processes": f"{cfg['workers']} worker processes x 1 thread",
            "input": "persisted float32 dask array (same file, same shards)",
            **out,
        }


CHILDREN = {"local": child_local, "dask": child_dask, "dask-ml": child_daskml}


def run_child(method: str, cfg: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="clb-dist-") as tmp:
        cfgf = Path(tmp) / "cfg.json"
        outf = Path(tmp) / "out.json"
        cfg = {**cfg, "out_centers": str(Path(tmp) / "centers.npy")}
        cfgf.write_text(json.dumps(cfg))
        env = {**os.environ, "CLUSTERLENS_DISABLE_PROGRESS_BARS": "1"}
        r = subprocess.run(
            [sys.executable, __file__, "--child", method, str(cfgf), str(outf)],
            capture_output=True,
            text=True,
            env=env,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{method} failed:\n{r.stderr[-4000:]}")
        out = json.loads(outf.read_text())
        out["centers"] = np.load(cfg["out_centers"])
        return out


# --------------------------------------------------------------------------- #
# The comparison
# --------------------------------------------------------------------------- #
def theory_bytes(k: int, d: int, n_shards: int, workers: int) -> dict[str, int]:
    c = k * d * 8
    s = k * (d + 1) * 8
    return {
        "naive_per_shard": n_shards * (c + s),
        # centres: client -> scheduler -> one worker -> each other worker;
        # partials: at most one per cross-worker tree edge, then the total
        # worker -> scheduler -> client.
        "one_copy_per_worker": (1 + workers) * c + (workers - 1 + 2) * s,
        "centres_bytes": c,
        "sums_counts_bytes": s,
    }


def compare(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import dask_ml  # noqa: F401

        have_dml = True
    except ImportError:
        have_dml = False
    data, init = make_data(
        Path(args.data_dir), args.n, args.k, args.seed, real=args.smoke
    )
    cfg = {
        "data": str(data),
        "init": str(init),
        "n": args.n,
        "k": args.k,
        "iters": args.iters,
        "threads": args.threads,
        "workers": args.workers,
        "shard_rows": args.shard_rows,
        "mode": args.mode,
        "seed": args.seed,
    }
    methods = [m for m in args.methods.split(",") if m]
    notes = []
    if args.mode != "exact" and "dask-ml" in methods:
        methods.remove("dask-ml")
        notes.append("dask-ml runs exact Lloyd only: no dask-ml row in --mode large")
    if "dask-ml" in methods and not have_dml:
        methods.remove("dask-ml")
        notes.append("dask-ml is not installed: its row is skipped (extra 'bench')")
    rows: dict[str, Any] = {}
    # Interleaved repeats (the machine is shared): per method the run with the
    # lowest median seconds per iteration; every run's figures are kept.
    # The peer (dask-ml) runs once unless --peer-repeats says otherwise.
    for rep in range(args.repeats):
        for m in methods:
            if m == "dask-ml" and rep >= args.peer_repeats:
                continue
            load = os.getloadavg()[0]
            r = run_child(m, cfg)
            r["load_before"] = load
            r["load_after"] = os.getloadavg()[0]
            r["sse"] = exact_sse(data, r.pop("centers"), args.threads)
            r["s_per_iter"] = float(np.median(r["iter_seconds"]))
            r["s_per_iter_mean"] = float(np.mean(r["iter_seconds"]))
            if "bytes_per_iter" in r:
                tot = [b["total"] for b in r["bytes_per_iter"]]
                r["bytes_sent_per_iter_median"] = int(np.median(tot))
            runs = [*rows.get(m, {}).get("runs", []), _run_summary(r)]
            if m not in rows or r["s_per_iter"] < rows[m]["s_per_iter"]:
                rows[m] = r
            rows[m]["runs"] = runs
    ratios: dict[str, float] = {}

    def ratio(a: str, b: str, key: str) -> float:
        return float(rows[a][key] / rows[b][key])

    if "local" in rows and "dask" in rows:
        ratios["dask_over_local_time"] = ratio("dask", "local", "s_per_iter")
        ratios["dask_vs_local_sse_rel"] = ratio("dask", "local", "sse") - 1
    if "dask" in rows and "dask-ml" in rows:
        ratios["daskml_over_dask_time"] = ratio("dask-ml", "dask", "s_per_iter")
        ratios["daskml_vs_dask_sse_rel"] = ratio("dask-ml", "dask", "sse") - 1
    if "local" in rows and "dask-ml" in rows:
        ratios["daskml_vs_local_sse_rel"] = ratio("dask-ml", "local", "sse") - 1
    target = None
    if "local" in rows and "dask" in rows:
        target = {"dask_within_1.3x_local": ratios["dask_over_local_time"] <= 1.3}
        if "dask-ml" in rows:
            target["dask_faster_than_daskml"] = ratios["daskml_over_dask_time"] > 1.0
            target["dask_sse_le_daskml"] = ratios["daskml_vs_dask_sse_rel"] >= -1e-6
    n_shards = rows.get("dask", {}).get("n_shards") or len(
        _bounds(args.n, args.shard_rows or 262_144)
    )
    return {
        "n": args.n,
        "d": 128,
        "k": args.k,
        "iters": args.iters,
        "mode": args.mode,
        "seed": args.seed,
        "data": str(data),
        "repeats": args.repeats,
        "local_threads": args.threads,
        "dask_workers": f"{args.workers} processes x 1 thread",
        "uptime": os.popen("uptime").read().strip(),
        "rows": rows,
        "ratios": ratios,
        "target": target,
        "theory_bytes_per_iter": theory_bytes(args.k, 128, n_shards, args.workers),
        "notes": notes,
    }


def _mb(b: float) -> str:
    return f"{b / 2**20:,.1f} MiB"


def print_compare(out: dict[str, Any]) -> None:
    print(
        f"k-means ({out['mode']} mode), {out['n']:,} x {out['d']} uint8, "
        f"k = {out['k']:,}, "
        f"{out['iters']} iterations, same init; local: {out['local_threads']} threads, "
        f"Dask: LocalCluster {out['dask_workers']}"
    )
    print(out["uptime"])
    print(f"{'method':<9}{'s/iter':>9}{'(mean)':>9}{'n_iter':>7}{'SSE':>18}  load")
    for m, r in out["rows"].items():
        print(
            f"{m:<9}{r['s_per_iter']:>9.2f}{r['s_per_iter_mean']:>9.2f}{r['n_iter']:>7}"
            f"{r['sse']:>18.6e}  {r['load_before']:>4.2f}/{r['load_after']:.2f}"
        )
    if out["repeats"] > 1:
        print("every run, s/iter (load before/after):")
        for m, r in out["rows"].items():
            runs = ", ".join(
                f"{x['s_per_iter']:.2f} ({x['load_before']:.1f}/{x['load_after']:.1f})"
                for x in r["runs"]
            )
            print(f"  {m:<9}{runs}")
    print("\nPeak RSS per process (includes resident pages of the memmapped file):")
    for m, r in out["rows"].items():
        peaks = ", ".join(f"{p}={_mb(v)}" for p, v in r["peak_rss"].items())
        print(f"  {m:<9}{peaks}")
    print("\nBytes sent over TCP per iteration (measured, median over iterations):")
    for m, r in out["rows"].items():
        if "bytes_per_iter" not in r:
            continue
        med = {
            p: float(np.median([b[p] for b in r["bytes_per_iter"]]))
            for p in r["bytes_per_iter"][0]
        }
        parts = ", ".join(f"{p}={_mb(v)}" for p, v in med.items())
        print(f"  {m:<9}{parts}")
    th = out["theory_bytes_per_iter"]
    print(
        f"  theory: centres {_mb(th['centres_bytes'])}, sums+counts "
        f"{_mb(th['sums_counts_bytes'])}; one copy per worker "
        f"{_mb(th['one_copy_per_worker'])}; naive per shard "
        f"{_mb(th['naive_per_shard'])}"
    )
    print("\nRatios:")
    for key, v in out["ratios"].items():
        print(f"  {key:<26}{v:+.6f}" if "sse" in key else f"  {key:<26}{v:.3f}")
    if out["target"] is not None:
        print("Target:", ", ".join(f"{k}={v}" for k, v in out["target"].items()))
    for note in out["notes"]:
        print("note:", note)


# --------------------------------------------------------------------------- #
# Constants for docs/scaling.md
# --------------------------------------------------------------------------- #
def _roundtrip(a: np.ndarray) -> np.ndarray:
    return a + 0.0


def _checksum(a: np.ndarray) -> float:
    return float(a[0, 0])


def constants(args: argparse.Namespace) -> dict[str, Any]:
    """Per-core assignment throughput and per-byte transfer cost, measured here."""
    from clusterlens import config_context
    from clusterlens.cluster import kmeans
    from distributed import Client, LocalCluster

    data, _ = make_data(Path(args.data_dir), args.n, args.k, args.seed, real=args.smoke)
    X = np.load(data, mmap_mode="r")
    out: dict[str, Any] = {"uptime_start": os.popen("uptime").read().strip()}
    d = X.shape[1]
    rng = np.random.default_rng(7)

    def fit(n: int, k: int, mode: str, iters: int, threads: int) -> dict[str, Any]:
        Xs = np.ascontiguousarray(X[:n])
        C0 = Xs[np.sort(rng.choice(n, k, replace=False))].astype(np.float64)
        with config_context(n_threads=threads):
            res = kmeans(Xs, k, mode=mode, init=C0, n_init=1, max_iter=iters, tol=0.0)
        secs = [h["seconds"] for h in res.history]
        return {
            "n": n,
            "k": k,
            "d": d,
            "mode": mode,
            "threads": threads,
            "iter_seconds": secs,
            "history": res.history,
        }

    exact = []
    for threads in (1, 2):
        r = fit(args.const_n, 256 if args.smoke else 4096, "exact", 3, threads)
        s = float(np.min(r["iter_seconds"]))  # best of: load only adds time
        r.pop("history")
        r["gflops"] = 2.0 * r["n"] * r["k"] * d / s / 1e9
        r["gflops_per_thread"] = r["gflops"] / threads
        exact.append(r)
    out["exact"] = exact
    from clusterlens.cluster._large import CoarseIndex

    large = []
    # (n, k): two k at n/k ~ 15-60, and n/k ~ 1,000 as in 1e9 x 1e6
    sizes = [(args.const_n, 256), (args.const_n, 1024), (args.const_n, 20)]
    if not args.smoke:
        sizes = [(args.const_n, 4096), (args.const_n, 16384), (2_000_000, 2048)]
    for n_l, k in sizes:
        r = fit(n_l, k, "large", 9, 1)
        hist = r.pop("history")
        g = round(np.sqrt(k))
        for kind in ("index", "candidates"):
            secs = [h["seconds"] for h in hist if h.get("pass") == kind]
            r[f"{kind}_s_min"] = float(np.min(secs)) if secs else None
            r[f"{kind}_passes"] = len(secs)
        # after the first pass (which also sorts and copies the rows)
        refresh = [h["seconds"] for h in hist[1:] if h.get("pass") == "index"]
        r["refresh_index_s_min"] = float(np.min(refresh)) if refresh else None
        r["n_groups"], r["n_probe"] = g, 4
        r["index_flops_per_point"] = 2.0 * d * (g + 4 * k / g)
        C = np.asarray(X[: 4 * k][::4][:k], np.float64)
        t = time.perf_counter()
        with config_context(n_threads=1):
            index = CoarseIndex(C, n_probe=4, seed=0)
        r["index_build_s_1thread"] = time.perf_counter() - t
        r["index_pickled_bytes_per_centre"] = len(pickle.dumps(index, protocol=5)) / k
        r["index_build_flops"] = 2.0 * k * g * d * 10
        large.append(r)
    out["large"] = large

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    try:
        w0, w1 = sorted(client.scheduler_info()["workers"])
        ship = []
        for kk in (1024, 4096, 16384) if args.smoke else (4096, 65536, 262144):
            a = np.random.default_rng(0).standard_normal((kk, d))
            rt, w2w = [], []
            for _ in range(3):
                t = time.perf_counter()
                client.submit(_roundtrip, a, workers=[w0], pure=False).result()
                rt.append(time.perf_counter() - t)
                f = client.submit(_roundtrip, a, workers=[w0], pure=False)
                f.result()
                t = time.perf_counter()
                client.submit(_checksum, f, workers=[w1], pure=False).result()
                w2w.append(time.perf_counter() - t)
                del f
            ship.append(
                {
                    "k": kk,
                    "bytes": a.nbytes,
                    "client_worker_roundtrip_s": min(rt),
                    "worker_to_worker_s": min(w2w),
                }
            )
        out["transfer"] = ship
        b = np.array([s["bytes"] for s in ship], float)
        out["roundtrip_s_per_byte"] = float(
            np.polyfit(b, [s["client_worker_roundtrip_s"] for s in ship], 1)[0]
        )
        out["w2w_s_per_byte"] = float(
            np.polyfit(b, [s["worker_to_worker_s"] for s in ship], 1)[0]
        )
    finally:
        client.close()
        cluster.close()
    out["uptime_end"] = os.popen("uptime").read().strip()
    out["projection"] = projection(out)
    return out


def projection(
    c: dict[str, Any],
    n: float = 1e9,
    d: int = 128,
    k: int = 1_000_000,
    workers: tuple[int, ...] = (8, 32, 128),
    cores: int = 16,
    bandwidth: float = 10e9 / 8,
) -> list[dict[str, Any]]:
    """Per-worker memory, bytes per iteration and seconds per iteration for n
    descriptors, k centres on N workers of ``cores`` cores, from the measured
    constants ``c`` (see docs/scaling.md for the formulas). ``bandwidth`` is
    an assumption (bytes/s per link), not a measurement."""
    import math

    # best per-thread rate seen (1 or 2 threads): contention only lowers it
    F1 = max(e["gflops_per_thread"] for e in c["exact"]) * 1e9
    big = max(c["large"], key=lambda r: r["k"])  # index pass: largest g
    dense = max(c["large"], key=lambda r: r["n"] / r["k"])  # n/k as in 1e9/1e6
    t_cand = dense["candidates_s_min"] / dense["n"]  # s per point, 1 thread
    t_idx = big["refresh_index_s_min"] or big["index_s_min"]
    t_idx_pp = t_idx / big["n"]
    F_idx = big["index_flops_per_point"] / t_idx_pp  # effective flops/s, index pass
    F_build = big["index_build_flops"] / big["index_build_s_1thread"]
    s_hop = c["w2w_s_per_byte"]  # worker -> worker: serialise + loopback + load
    s_cli = c["roundtrip_s_per_byte"] / 2  # client <-> worker via the scheduler
    per_byte = 1.0 / bandwidth + s_hop  # one worker-to-worker hop
    per_cli = 2.0 / bandwidth + s_cli  # client -> scheduler -> worker, or back
    g = round(math.sqrt(k))
    C = k * d * 8  # centres, float64
    S = k * (d + 1) * 8  # sums + counts, float64
    IDX = k * big["index_pickled_bytes_per_centre"]  # the pickled CoarseIndex
    rows = []
    for N in workers:
        m = n / N  # rows per worker
        lg = math.ceil(math.log2(N))
        shard = m * d  # uint8
        exact_mem = shard + C + k * d * 4 + cores * (S + 2**30) + 2 * S
        large_rows = 2 * m * (d + 8 + 4 + 12 + 4)  # Xs, perm, labels, top(3), d2
        large_mem = large_rows + C + IDX + cores * S + 2 * S
        bytes_exact = (N + 1) * (C + S)
        bytes_cand = (N + 1) * (C + S)
        bytes_index = (N + 1) * (IDX + S)
        t_comm_exact = (C + S) * per_cli + (C + S) * lg * per_byte
        t_comm_exact_worst = (C + S) * per_cli + (C * (N - 1) + S * lg) * per_byte
        t_exact = 2.0 * n * k * d / (N * cores * F1)
        t_c = m * t_cand / cores
        t_i = m * (2.0 * d * (g + 4 * k / g)) / F_idx / cores
        t_build = 2.0 * k * g * d * 10 / (cores * F_build)
        t_comm_c = t_comm_exact
        t_comm_i = (IDX + S) * per_cli + (IDX + S) * lg * per_byte
        # refresh every 4 iterations: one index pass (+ its build) and 3 candidate
        t_large = (t_i + t_build + t_comm_i + 3 * (t_c + t_comm_c)) / 4
        rows.append(
            {
                "N": N,
                "cores_per_worker": cores,
                "rows_per_worker": m,
                "shard_bytes": shard,
                "exact_mem_per_worker": exact_mem,
                "large_mem_per_worker": large_mem,
                "exact_bytes_per_iter": bytes_exact,
                "large_bytes_per_cand_iter": bytes_cand,
                "large_bytes_per_index_iter": bytes_index,
                "exact_compute_s": t_exact,
                "exact_comm_s": t_comm_exact,
                "exact_comm_s_single_source": t_comm_exact_worst,
                "exact_s_per_iter": t_exact + t_comm_exact,
                "large_cand_compute_s": t_c,
                "large_index_compute_s": t_i,
                "large_index_build_s_client": t_build,
                "large_cand_comm_s": t_comm_c,
                "large_index_comm_s": t_comm_i,
                "large_s_per_iter_avg": t_large,
            }
        )
    consts = {
        "F1_exact_flops_per_core": F1,
        "t_cand_s_per_point_core": t_cand,
        "F_idx_flops_per_core": F_idx,
        "F_build_flops_per_core": F_build,
        "s_hop_per_byte": s_hop,
        "s_client_per_byte": s_cli,
        "index_bytes": IDX,
        "bandwidth_assumed_bytes_per_s": bandwidth,
    }
    return [consts, *rows]


# --------------------------------------------------------------------------- #
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, cfgf, outf = sys.argv[2:5]
        cfg = json.loads(Path(cfgf).read_text())
        Path(outf).write_text(json.dumps(CHILDREN[method](cfg)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="local backend threads")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster workers")
    ap.add_argument(
        "--shard-rows",
        type=int,
        default=None,
        help="rows per Dask shard (default: the library's)",
    )
    ap.add_argument(
        "--methods",
        default=None,
        help=f"default: {','.join(METHODS)} (smoke: no dask-ml)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="interleaved runs")
    ap.add_argument("--peer-repeats", type=int, default=1, help="of those, dask-ml")
    ap.add_argument(
        "--mode",
        choices=("exact", "large"),
        default="exact",
        help="clusterlens mode, local and Dask (dask-ml: exact only)",
    )
    ap.add_argument("--data-dir", default="/tmp/clb")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--constants", action="store_true")
    ap.add_argument("--const-n", type=int, default=250_000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", default=None, help="also write the JSON there")
    args = ap.parse_args()
    tmp = None
    if args.methods is None and not args.smoke:
        args.methods = ",".join(METHODS)
    if args.smoke:
        args.n, args.k, args.iters, args.shard_rows = 20_000, 64, 2, 5_000
        args.const_n = 20_000
        if args.methods is None:
            args.methods = "local,dask"
        tmp = tempfile.TemporaryDirectory(prefix="clb-dist-smoke-")
        args.data_dir = tmp.name
    try:
        if args.constants:
            out = constants(args)
        else:
            out = compare(args)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.save:
        Path(args.save).write_text(json.dumps(out, indent=1, default=float))
    if args.json or args.constants:
        print(json.dumps(out, indent=1, default=float))
    else:
        print_compare(out)


if __name__ == "__main__":
    main()
