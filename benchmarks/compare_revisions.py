"""The same k-means workloads on two source trees, alternating: before/after a refactor.

Each run is its own process with ``PYTHONPATH`` set to one tree's ``src``
(e.g. a ``git worktree`` of the older commit beside this checkout), so both
import their own clusterlens; the trees take turns, and the best of
``--repeats`` is compared (the machine is noisy: the ratio is what counts).

    git worktree add --detach /tmp/old <rev>
    python benchmarks/compare_revisions.py /tmp/old/src src --repeats 2

Workloads (seeded Gaussian mixtures, float32, ``tol=0``, the same initial
centres in both trees): exact Lloyd, 200,000 x 128, k = 1,024, 8 iterations;
large-k, 300,000 x 128, k = 4,096, 4 iterations, ``random_state=0``.

Measured for #22 (pre-#22 355259b vs 9c67575, best of 2, load 1.2):
exact 0.454 vs 0.457 s/it (1.01), large-k 0.830 vs 0.767 s/it (0.92), the
same inertia in both trees for both workloads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
from clusterlens.cluster import kmeans

rng = np.random.default_rng(0)


def mixture(n, d, c):
    C = rng.standard_normal((c, d)).astype(np.float32) * 4
    return C[rng.integers(0, c, n)] + rng.standard_normal((n, d)).astype(np.float32)


which = sys.argv[1]
if which == "exact":
    X = mixture(200_000, 128, 2000)
    init = X[rng.choice(len(X), 1024, replace=False)].astype(np.float64)
    kmeans(X[:20000], 64, init=init[:64], max_iter=2, tol=0)  # warm up
    t = time.perf_counter()
    r = kmeans(X, 1024, init=init, max_iter=8, tol=0)
    its = 8
else:
    X = mixture(300_000, 128, 20000)
    init = X[rng.choice(len(X), 4096, replace=False)].astype(np.float64)
    t = time.perf_counter()
    r = kmeans(X, 4096, init=init, max_iter=4, tol=0, mode="large", random_state=0)
    its = 4
seconds = time.perf_counter() - t
print(json.dumps({"s_per_iter": seconds / its, "inertia": float(r.inertia)}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="the older tree's src folder")
    ap.add_argument("after", help="the newer tree's src folder")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workloads", nargs="*", default=["exact", "large"])
    args = ap.parse_args(argv)
    trees = {"before": args.before, "after": args.after}
    got: dict[tuple[str, str], list[dict[str, float]]] = {}
    for rep in range(args.repeats):
        for which in args.workloads:
            for name, src in trees.items():
                env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
                p = subprocess.run(
                    [sys.executable, "-c", CHILD, which],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if p.returncode:
                    print(p.stderr[-2000:], file=sys.stderr)
                    return 1
                d = json.loads(p.stdout.strip().splitlines()[-1])
                got.setdefault((which, name), []).append(d)
                print(f"{which:6s} {name:6s} run {rep + 1}: {d}", file=sys.stderr)
    for which in args.workloads:
        b = min(r["s_per_iter"] for r in got[(which, "before")])
        a = min(r["s_per_iter"] for r in got[(which, "after")])
        same = {r["inertia"] for r in got[(which, "before")]} == {
            r["inertia"] for r in got[(which, "after")]
        }
        print(
            f"{which}: before {b:.3f} s/it, after {a:.3f} s/it, after/before "
            f"{a / b:.2f} (best of {args.repeats}); same inertia: {same}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
