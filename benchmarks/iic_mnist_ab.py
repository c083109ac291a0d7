"""A/B of IIC settings on a short MNIST run: what gets the sub-heads furthest.

Every variant trains from scratch on the same random subset of MNIST (train +
test pooled) for the same number of epochs, once per seed, on this CPU. For
each run it prints the accuracy (Hungarian, labels used only to score) of the
sub-head IIC picks (lowest loss), of the best and the worst sub-head, how many
sub-heads pass 90 %, and the seconds; then the mean per variant and its ratio
to today's defaults. Variants (all at the CPU speed settings: width 0.25, 3x3
convolutions, batch 32 x 4 repeats, Adam lr 2e-3, unless the name says):

- ``defaults``: IIC() as today: its transformations, overclustering head (50).
- ``ji-tf``: the authors' MNIST transformations and no overclustering head
  (what ``preset="ji2019-mnist"`` sets, less its full-width slow net).
- ``ji-tf-25h``: the same with 25 sub-heads.
- ``ji-tf-25h-restart``: the same, re-initialising the 8 worst sub-heads
  after every epoch.
- ``preset``: ``preset="ji2019-mnist"`` exactly (width 1, 5x5, batch 140 x 5,
  lr 1e-4); slow on a CPU, only with ``--with-preset``.

    nice -n 19 python benchmarks/iic_mnist_ab.py --n 10000 --epochs 3 --seeds 0 1
    python benchmarks/iic_mnist_ab.py --smoke --json        # seconds, for CI

Measured 2026-12-06 with that first command (10,000 digits, 3 epochs, seeds 0
and 1, 2 torch threads; the 2-core machine was shared with other benchmarks,
so the seconds are loose). Accuracy of the chosen (lowest-loss) sub-head:

    variant              seed 0  seed 1  mean    best sub-head  s/run  ratio
    defaults             0.8703  0.9447  0.9075  0.9075         244    1.000
    ji-tf                0.7767  0.8569  0.8168  0.8648         234    0.900
    ji-tf-25h            0.9313  0.9464  0.9388  0.9388         244    1.035
    ji-tf-25h-restart    0.8758  0.9432  0.9095  0.9097         227    1.002

- 25 sub-heads instead of 5 (same trunk, same transformations): +12.2
  points, at no measurable cost in time; the chosen sub-head was the best one
  in both seeds (with 5 it was not, in either: 0.777 against 0.861 and 0.857
  against 0.869), and 2-3 sub-heads per run passed 90 % against 0.
- Restarting the 8 worst of 25 sub-heads after every epoch: -2.9 points here
  (seed 0 lost 5.6, seed 1 0.3): this early, the fresh heads' gradients
  disturb the trunk. Restarts are meant for the plateau, which a 3-epoch run
  on 10,000 digits does not reach; untested there on this CPU.
- The authors' transformations without the overclustering head (ji-tf)
  scored 9 points below IIC's defaults at this length; the issue's one-seed
  check (20,000 digits, 3 epochs) had found the reverse, so neither is
  settled at this scale.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"

FAST = {"width": 0.25, "kernel_size": 3, "batch_size": 32, "n_repeats": 4, "lr": 2e-3}
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ji-tf": {"preset": "ji2019-mnist", **FAST},
    "ji-tf-25h": {"preset": "ji2019-mnist", **FAST, "n_heads": 25},
    "ji-tf-25h-restart": {
        "preset": "ji2019-mnist",
        **FAST,
        "n_heads": 25,
        "head_restarts": 8,
    },
}
PRESET = {"preset": "ji2019-mnist"}


def _data(data_dir: Path, n: int, seed: int, smoke: bool):
    if not data_dir.is_dir():
        if not smoke:
            raise SystemExit(f"MNIST not found in {data_dir}")
        rng = np.random.default_rng(seed)
        y = np.repeat(np.arange(4), 100)
        X = rng.integers(0, 40, (400, 28, 28), dtype=np.uint8)
        for c in range(4):
            r, q = 4 + 10 * (c // 2), 4 + 10 * (c % 2)
            X[y == c, r : r + 10, q : q + 10] = 230
        return X, y, "synthetic (no ../shared/data/mnist)"
    from clusterlens.io import load_image_array

    d = load_image_array(data_dir)
    X, y = d.images, np.asarray(d.labels)
    keep = np.random.default_rng(seed).choice(len(X), min(n, len(X)), replace=False)
    return X[keep], y[keep], f"{data_dir}: {len(keep)} of {len(X)} digits"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.add_argument("--n", type=int, default=10000, help="digits in the subset")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--with-preset", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", type=Path, default=MNIST)
    p.add_argument("--log", type=Path, default=None, help="append JSON lines here")
    a = p.parse_args(argv)

    from clusterlens.deep import IIC

    variants = {v: VARIANTS[v] for v in a.variants}
    if a.with_preset:
        variants["preset"] = PRESET
    n, epochs, seeds = a.n, a.epochs, a.seeds
    if a.smoke:
        n, epochs, seeds = 400, 1, [0]
        variants = {
            name: {**v, "n_heads": min(int(v.get("n_heads", 5)), 4)}
            | ({"head_restarts": 1} if "head_restarts" in v else {})
            for name, v in VARIANTS.items()
        }
    X, y, source = _data(a.data_dir, n, 0, a.smoke)
    log = (lambda *m: None) if a.json else (lambda *m: print(*m, flush=True))
    log(f"data: {source}; {epochs} epochs; seeds {seeds}; {a.threads} threads")
    rows = []
    for name, params in variants.items():
        for seed in seeds:
            t0 = time.perf_counter()
            extra = {"batch_size": 50, "n_repeats": 2, "width": 0.25} if a.smoke else {}
            model = IIC(
                len(np.unique(y)),
                epochs=epochs,
                random_state=seed,
                n_threads=a.threads,
                device=a.device,
                cluster_head="iic",  # the sub-heads' settings are compared
                **{**params, **extra},
            ).fit(X, y)
            last = model.history_[-1]
            accs = np.asarray(last["head_accuracies"])
            row = {
                "variant": name,
                "seed": seed,
                "chosen_accuracy": last["accuracy"],
                "best_subhead_accuracy": float(accs.max()),
                "worst_subhead_accuracy": float(accs.min()),
                "subheads_over_90": int((accs >= 0.9).sum()),
                "n_heads": len(accs),
                "chosen_is_best": bool(accs.argmax() == last["head"]),
                "curve": [h["accuracy"] for h in model.history_],
                "head_accuracies": accs.tolist(),
                "head_losses": last["head_losses"],
                "seconds": time.perf_counter() - t0,
                "params": {**params, **extra},
            }
            rows.append(row)
            if a.log is not None:
                with a.log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            log(
                f"{name:20s} seed {seed}: chosen {row['chosen_accuracy']:.4f}  "
                f"best {row['best_subhead_accuracy']:.4f}  worst "
                f"{row['worst_subhead_accuracy']:.4f}  >=90%: "
                f"{row['subheads_over_90']}/{row['n_heads']}  "
                f"{row['seconds']:.0f} s  curve "
                + " ".join(f"{c:.3f}" for c in row["curve"])
            )
    summary = {}
    for name in variants:
        mine = [r for r in rows if r["variant"] == name]
        summary[name] = {
            "mean_chosen_accuracy": float(
                np.mean([r["chosen_accuracy"] for r in mine])
            ),
            "mean_best_subhead": float(
                np.mean([r["best_subhead_accuracy"] for r in mine])
            ),
            "mean_seconds": float(np.mean([r["seconds"] for r in mine])),
        }
    base = summary[next(iter(variants))]["mean_chosen_accuracy"]
    for s in summary.values():
        s["ratio_to_first"] = s["mean_chosen_accuracy"] / base
    out = {"data": source, "epochs": epochs, "seeds": seeds, "runs": rows}
    out["summary"] = summary
    if a.json:
        print(json.dumps(out, indent=2, default=float))
    else:
        log("\nvariant               chosen   best sub-head  seconds  ratio")
        for name, s in summary.items():
            log(
                f"{name:20s}  {s['mean_chosen_accuracy']:.4f}   "
                f"{s['mean_best_subhead']:.4f}        {s['mean_seconds']:6.0f}   "
                f"{s['ratio_to_first']:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
