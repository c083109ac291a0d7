"""The shared neighbour search (duplicates, outliers, the map) at scale: local
vs a 2-worker Dask LocalCluster, seconds and peak memory.

The data: ``--n`` x ``--d`` float32 rows, a seeded mixture (rows around
``sqrt(n)`` random directions, random lengths), written chunk by chunk to a
memory-mapped ``.npy``. The search: ``knn_graph(path, 15, normalize=True)``,
what ``run_neighbors`` runs on a workspace's embeddings (L2-normalised rows;
above 120,000 rows the approximate cell search). Each method runs in a fresh
child process (for Dask: a fresh LocalCluster of 2 worker processes x 1
thread, started before the clock); the parent samples the child's process
tree every 0.2 s: the sum of RSS (which counts the page cache pages of the
memory-mapped file that each process touched, once per process) and of PSS
(shared pages split between the processes that map them). The two graphs
are compared: the Dask one must equal the local one.

    python benchmarks/knn_scale.py           # 1,000,000 x 512, k=15
    python benchmarks/knn_scale.py --smoke   # tiny, seconds (CI)
    python benchmarks/knn_scale.py --json    # JSON on stdout instead of a table

Measured on 2 cores shared with other jobs (23 GiB), so timings are noisy:

    --n 200000 --d 128 (447 cells, 6 probed per cell)
                seconds   peak RSS (tree)   peak PSS (tree)
      local        41.9           580 MiB           525 MiB
      dask         52.7         1,183 MiB           785 MiB  (+3.4 s cluster start)
      dask/local: 1.26x time, 2.04x RSS, 1.50x PSS
      same indices (all); distances equal up to rounding

    1,000,000 x 512 (the default; 1,000 cells, 6 probed per cell), measured
    2026-12-06 on a quiet machine (load < 0.1 at the start):
                seconds   peak RSS (tree)   peak PSS (tree)
      local       677.1         6,402 MiB         6,395 MiB
      dask        387.9         8,436 MiB         4,364 MiB  (+0.9 s cluster start)
      dask/local: 0.57x time, 1.32x RSS, 0.68x PSS
      same graph: all indices equal, distances differ by at most 8.3e-07
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

METHODS = ("local", "dask")


def make_data(path: Path, n: int, d: int, seed: int, chunk: int = 65_536) -> Path:
    """The seeded mixture as a ``.npy`` file (reused when it exists)."""
    if path.is_file():
        X = np.load(path, mmap_mode="r")
        if X.shape == (n, d) and X.dtype == np.float32:
            return path
    rng = np.random.default_rng(seed)
    n_dirs = max(2, round(np.sqrt(n)))
    dirs = rng.normal(size=(n_dirs, d)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for lo in range(0, n, chunk):
        m = min(n, lo + chunk) - lo
        rows = dirs[rng.integers(0, n_dirs, m)]
        rows += rng.normal(scale=0.5, size=(m, d)).astype(np.float32)
        rows *= rng.uniform(0.5, 2.0, size=(m, 1)).astype(np.float32)
        out[lo : lo + m] = rows
    out.flush()
    del out
    return path


# --------------------------------------------------------------------------- #
# One method per child process
# --------------------------------------------------------------------------- #
def child(method: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from clusterlens.features._knn import knn_graph

    kw = {"normalize": True, "exact_max_samples": cfg["exact_max_samples"]}
    if method == "local":
        t = time.perf_counter()
        g = knn_graph(cfg["data"], cfg["k"], backend="local", **kw)
        wall = time.perf_counter() - t
        startup = 0.0
    else:
        from clusterlens.distributed import dask_client

        t = time.perf_counter()
        with dask_client(n_workers=cfg["workers"], threads_per_worker=1) as c:
            c.wait_for_workers(cfg["workers"])
            startup = time.perf_counter() - t
            with c.as_current():
                t = time.perf_counter()
                g = knn_graph(cfg["data"], cfg["k"], backend="dask", **kw)
                wall = time.perf_counter() - t
    np.save(cfg["out"], g.indices)
    np.save(cfg["out"] + ".d.npy", g.distances)
    return {"seconds": wall, "startup_seconds": startup, "method": g.method}


def _tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) summed over ``pid`` and its descendants, bytes."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0, 0
    rss = pss = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            pss += getattr(p.memory_full_info(), "pss", 0)
        except psutil.Error:
            continue
    return rss, pss


def run_child(method: str, cfg: dict[str, Any], tmp: str) -> dict[str, Any]:
    cfgf, outf = Path(tmp) / f"{method}.json", Path(tmp) / f"{method}.out.json"
    cfg = {**cfg, "out": str(Path(tmp) / f"{method}.idx.npy")}
    cfgf.write_text(json.dumps(cfg))
    env = {**os.environ, "CLUSTERLENS_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", method, str(cfgf), str(outf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    peak = {"rss": 0, "pss": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, pss = _tree_memory(proc.pid)
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            done.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    done.set()
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{err[-4000:]}")
    out = json.loads(outf.read_text())
    out["peak_tree_rss"], out["peak_tree_pss"] = peak["rss"], peak["pss"]
    out["indices"] = np.load(cfg["out"])
    out["distances"] = np.load(cfg["out"] + ".d.npy")
    return out


def compare(args: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    path = make_data(
        Path(data_dir) / f"mix-{args.n}x{args.d}-s{args.seed}.npy",
        args.n,
        args.d,
        args.seed,
    )
    cfg = {
        "data": str(path),
        "k": args.k,
        "workers": args.workers,
        "exact_max_samples": args.exact_max_samples,
    }
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="clb-knn-") as tmp:
        for m in METHODS:
            rows[m] = run_child(m, cfg, tmp)
    same_idx = float((rows["dask"]["indices"] == rows["local"]["indices"]).mean())
    dd = np.abs(rows["dask"]["distances"] - rows["local"]["distances"])
    same_d = bool(not dd.any())
    for r in rows.values():
        del r["indices"], r["distances"]
    return {
        "n": args.n,
        "d": args.d,
        "k": args.k,
        "seed": args.seed,
        "workers": args.workers,
        "file_bytes": int(args.n * args.d * 4),
        "rows": rows,
        "equal": {
            "indices_fraction": same_idx,
            "distances_identical": same_d,
            "distances_max_abs_diff": float(dd.max()),
        },
        "ratios": {
            "dask_over_local_seconds": rows["dask"]["seconds"]
            / rows["local"]["seconds"],
            "dask_over_local_peak_rss": rows["dask"]["peak_tree_rss"]
            / rows["local"]["peak_tree_rss"],
            "dask_over_local_peak_pss": rows["dask"]["peak_tree_pss"]
            / rows["local"]["peak_tree_pss"],
        },
    }


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def print_compare(out: dict[str, Any]) -> None:
    print(
        f"k-NN graph, {out['n']:,} x {out['d']} float32 ({_mb(out['file_bytes'])}), "
        f"k={out['k']}, seed {out['seed']}"
    )
    print(f"  {out['rows']['local']['method']}")
    print(f"  {'':<7}{'seconds':>10}{'peak RSS (tree)':>18}{'peak PSS (tree)':>18}")
    for m, r in out["rows"].items():
        extra = (
            f"  (+{r['startup_seconds']:.1f} s cluster start)" if m == "dask" else ""
        )
        print(
            f"  {m:<7}{r['seconds']:>10.1f}{_mb(r['peak_tree_rss']):>18}"
            f"{_mb(r['peak_tree_pss']):>18}{extra}"
        )
    q = out["ratios"]
    print(
        f"  dask/local: {q['dask_over_local_seconds']:.2f}x time, "
        f"{q['dask_over_local_peak_rss']:.2f}x RSS, "
        f"{q['dask_over_local_peak_pss']:.2f}x PSS"
    )
    e = out["equal"]
    print(
        f"  same graph: {e['indices_fraction']:.6f} of indices equal, distances "
        f"{'identical' if e['distances_identical'] else 'differ'} (max "
        f"|diff| {e['distances_max_abs_diff']:.1e})"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, cfgf, outf = sys.argv[2:5]
        cfg = json.loads(Path(cfgf).read_text())
        Path(outf).write_text(json.dumps(child(method, cfg)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--exact-max-samples", type=int, default=120_000)
    ap.add_argument("--data-dir", default="/tmp/clb")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = None
    if args.smoke:  # the approximate mode, as at 1,000,000 rows
        args.n, args.d, args.exact_max_samples = 3_000, 16, 1_000
        tmp = tempfile.TemporaryDirectory(prefix="clb-knn-smoke-")
        args.data_dir = tmp.name
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    try:
        out = compare(args, args.data_dir)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        print(json.dumps(out, indent=1, default=float))
    else:
        print_compare(out)


if __name__ == "__main__":
    main()
