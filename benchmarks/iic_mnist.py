"""IIC on MNIST (70,000 digits, train + test as in the paper) on this machine's CPU.

Trains clusterlens's IIC from scratch (no pretrained weights) and reports, after
every epoch, the accuracy (Hungarian), NMI and ARI of the chosen sub-head
(lowest loss) and the accuracy of every sub-head against the hidden labels
(never used for training or selection), with the wall time; at the end a
per-seed table and, per seed, every sub-head's loss and accuracy. Side by side
in the same run: k-means on the raw pixels (clusterlens KMeans, 10 k-means++
starts), the baseline a user would try first, and the paper's figure (Ji et
al., ICCV 2019: 99.2 %). Ratios are printed. ``--minutes`` is a budget per
seed: no epoch starts that would end past it (the last epoch's duration as
the estimate).

    nice -n 19 python benchmarks/iic_mnist.py --minutes 60     # today's defaults
    # the best settings measured on this CPU (benchmarks/iic_mnist_ab.py): the
    # authors' transformations, no overclustering, 25 sub-heads, CPU-sized net
    nice -n 19 python benchmarks/iic_mnist.py --preset ji2019-mnist --width 0.25 \
        --kernel-size 3 --batch-size 32 --repeats 4 --lr 2e-3 --heads 25 --minutes 60
    # the authors' setup exactly, 5 seeds, on a GPU (the issue's >= 99 % target)
    python benchmarks/iic_mnist.py --preset ji2019-mnist --device cuda \
        --seeds 0 1 2 3 4 --epochs 1000 --minutes 60
    # the same, the last 5 minutes for the SCAN head (--cluster-head scan)
    python benchmarks/iic_mnist.py --preset ji2019-mnist --width 0.25 \
        --kernel-size 3 --batch-size 32 --repeats 4 --lr 2e-3 --heads 25 \
        --minutes 60 --scan-head-minutes 5
    # 2 IIC epochs, the SCAN head, then a 5-epoch student (>= 99 %, 5 seeds)
    python benchmarks/iic_mnist.py --preset ji2019-mnist --width 0.25 \
        --kernel-size 3 --batch-size 32 --repeats 4 --lr 2e-3 --heads 25 \
        --epochs 2 --scan-head-minutes 5 --student-epochs 5 --seeds 0 1 2 3 4
    python benchmarks/iic_mnist.py --smoke --json              # seconds, for CI

Measured 2026-12-06, 14:59-15:55 UTC, the second command (seed 0, 2 torch
threads, nice 19; the 2-core machine was shared: load average 9 to 13 from
other sessions' benchmarks and tests throughout, so the epochs ran about 1.5x
slower than alone):

    epoch  minutes  chosen sub-head  best sub-head  sub-heads >= 96 %
      1       7.8       0.9663          0.9671            7 / 25
      2      17.0       0.9717          0.9717           15 / 25
      3      26.3       0.9695          0.9716           15 / 25
      4      36.4       0.9709          0.9715           15 / 25
      5      45.8       0.9740          0.9750           15 / 25
      6      54.1       0.9731          0.9744           15 / 25
    (a 7th epoch would have ended past 60 min; k-means on pixels: 0.5331)

Against the figure before this change (today's defaults, 60 min: 97.49 %, on
a quieter machine) this is no gain: 25 sub-heads get there faster (96.6 %
after one epoch) but sit on the same plateau. After epoch 2 the sub-heads
split into two groups that never change: 15 within 96.9-97.5 % of each other
(the lowest-loss one is one of them, but not the best of them: the losses
differ in the 4th digit) and 10 stuck at 83-89 %. That every healthy sub-head
plateaus at the same accuracy says the limit is the shared trunk, not a
sub-head's start; re-initialising sub-heads (``--head-restarts``) can move the
10 stuck ones to the 97 % group but not past it. The >= 99 % target needs the
authors' hundreds of epochs (their log: one sub-head left 97.9 % between
epochs 36 and 100), i.e. a GPU (the third command; not run: no GPU was lent),
for IIC alone: with the SCAN head and a student network it is reached on
the CPU (session 14, below).

Self-labelling after the plateau (``--self-label-minutes M``: the last M
minutes of the budget run ``IIC(self_label_epochs=...)``, resumed from the
IIC checkpoint). Measured with the CLI on all 70,000 digits, seed 0, the
second command's settings (session 8, load 5-8): 2 IIC epochs (``clusterlens
iic ../shared/data/mnist --k 10 --preset ji2019-mnist --width 0.25
--kernel-size 3 --batch-size 32 --repeats 4 --lr 2e-3 --heads 25 --epochs 2
--checkpoint CK``, 14.5 min) reach 97.17 %; resumed with
``--self-label-epochs 3`` (2.7 min): 96.83 / 96.68 / 96.82 %; resumed instead
with one more IIC epoch (``--epochs 3``, 6.5 min): 96.95 %. No gain: 98 % of
the digits are above the 0.99 confidence after IIC, so the targets already
hold the errors (the plateau's mistakes are confident ones), and
self-labelling only re-teaches them. Without the entropy term or at IIC's
full learning rate the step collapsed clusters in tests; it stays opt-in.

The SCAN head (session 10, ``--cluster-head scan``: after IIC, SCAN with its
defaults on the trunk's embeddings of all 70,000 digits; the fourth command
above, seed 0, 2 torch threads, a quiet machine: load 1-2, other work of
this session only now and then). IIC ran 21 epochs in 52.9 minutes, the SCAN
head 149 s, 55.4 minutes in all:

    epoch  minutes  chosen sub-head  best sub-head
      2       6.0       0.8818          0.8862     (3 and 5 merged, a junk cluster)
      4      11.2       0.9010          0.9080
      7      19.2       0.9273          0.9329
     10      26.9       0.9752          0.9759     (escaped to the 97.5 % plateau)
     21      52.9       0.9757          0.9768
    SCAN head on the epoch-21 trunk: 0.9779 (NMI 0.9567, ARI 0.9529)

(k-means on pixels 0.5331.) The best within 60 minutes on this CPU is now
97.79 % against 97.49 % before; the >= 99 % target is not reached. Where
the sub-heads are stuck below the plateau the SCAN head gains most: on the
trunks of 2-epoch runs (library calls, SCAN seed 0), 0.882 -> 0.988 (this
seed; the trunk's 10-NN purity 0.987), 0.963 -> 0.976 (seed 1), 0.970 ->
0.975 (seed 2); another SCAN seed on the first trunk 0.974. At the plateau
the trunk's neighbourhoods hold the same confusions as the sub-heads, and
the SCAN head adds 0.2 points.

Session 11 (the SCAN head is the default of ``clusterlens iic`` now; this
benchmark still trains with ``cluster_head="iic"`` and times the head
apart). On that 2-epoch seed-0 trunk the SCAN head lands in one of two
modes, 0.975 or 0.988, by its own seed (library calls, one thread): 5 heads,
seeds 0 / 1 / 2: 0.9875 / 0.9743 / 0.9751 (losses -11.4077 / -11.4047 /
-11.4066); 15 heads, seeds 1 / 2: 0.9880 (-11.4051) / 0.9755 (-11.4117, the
lowest), so the loss does not pick the good mode. Distilling the head's
confident labels into the trunk (4 epochs, 178 s) and refitting moved one
seed of three to the good mode (0.9884 / 0.9748 / 0.9880); none reached 0.99.

Session 12: what the two modes are, and pixel neighbours for the head. The
0.975 mode is one group: 900-950 of the 7s, those written with a crossbar
(1.4 % of the digits; the same images on every trunk). On each 2-epoch trunk
98 % of their 20 nearest trunk neighbours are each other; the rest split
between 2s (214 edges), 7s (177), 4s (118) and 3s (115), and every one of
the 25 IIC sub-heads also keeps them apart (0.5 % with the 7s), so a head
with k = 10 must join them to some cluster and its seed decides which (the
5s, 6s or 3s: 0.975; the 7s: 0.988). Lowering SCAN's entropy weight does
not help (5 -> 2 -> 1 on trunk 0, head seed 1: 0.974 / 0.975 / 0.989; on
trunk 1 weight 1 sends them to the 6s, 0.976). On the pixels (L2-normalised)
42 % of their 20 neighbours are other 7s and 2 % are 2s. So the SCAN head
now takes 5 of each image's 20 neighbours from the images themselves
(``IIC(pixel_neighbors=5)``, ``--pixel-neighbors``; thumbnails of at most 32
px, centred, PCA 128, L2). A/B on the saved 2-epoch trunks of seeds 0-4
(``clusterlens iic ../shared/data/mnist --k 10 --preset ji2019-mnist --width
0.25 --kernel-size 3 --batch-size 32 --repeats 4 --lr 2e-3 --heads 25
--epochs 2 --seed S``: 6-7 minutes each; the head as ``IIC._fit_scan_head``
runs it, with the seed the run gives it; 3.5-6 minutes a head, two at once
on the 2 cores):

    trunk seed                     0       1       2       3       4
    IIC sub-head                 0.8818  0.9628  0.9698  0.9665  0.9690
    SCAN head, trunk neighbours  0.9752  0.9755  0.9749  0.9871  0.9897
    + 5 pixel neighbours         0.9883  0.9884  0.9869  0.9879  0.9894

Every trunk lands in the good mode (2 of 5 before); the best is 0.989, not
the 0.99 of the target. What is left is mostly 140-150 1s with a base stroke
(0.2 %) put with the 2s: 73 % of their trunk neighbours are each other, 20 %
2s and 5 % other 1s; 20 % of their pixel neighbours are 2s. On
scikit-learn's digits (IIC 10 epochs, trunk seeds 0-2 x head seeds 0-2) the
pixel neighbours take the mean from 0.927 to 0.949 and the lowest from 0.860
to 0.951; on CIFAR-10's 10,000 test photos (IIC from scratch, 3 epochs, head
seeds 0-2) 0.250 / 0.254 / 0.258 -> 0.248 / 0.242 / 0.267, within the
seeds' spread (32-px colour pixels are as weak neighbours as that trunk's:
10-NN purity 0.285 against 0.246).

Session 13: a student network (``IIC(student_epochs=3)``, ``--student-epochs
3``; with this script ``--scan-head-minutes 15 --student-epochs 3``). On the
seed-0 run above the SCAN head is sure (> 0.99) of 96.5 % of the digits
with 0.36 % of them wrong (241), and of the other 3.5 % it gets 23.6 %
wrong (580). Fine-tuning IIC's own trunk with a new linear layer on the sure
ones (IIC's transformations, 3 epochs) fell to 0.983; a fresh CNN (five 3x3
conv layers, 32-64-128 channels, global average pooling) trained on them
with small rotations / scalings / shifts, AdamW one-cycle, label smoothing
0.1 predicts every digit instead. Same saved 2-epoch runs, the student as
``IIC._fit_student`` runs it with the seed the run gives it (3 epochs,
5.5-9 minutes each with two at once on the 2 cores, about 2.3 minutes an
epoch alone):

    run seed                     0       1       2       3       4
    SCAN head (+ 5 pixel nbrs)   0.9883  0.9884  0.9869  0.9879  0.9894
    student, 3 epochs            0.9896  0.9897  0.9893  0.9897  0.9904

(A width of 16 instead of 32: 0.9887 on seed 0; shifts only, no rotation or
scaling: 0.9903; 4 epochs: 0.9905, single runs.) The gain is real and small:
the student is taught the head's 241 sure mistakes as they are (the
base-stroke 1s put with the 2s among them) and fixes only part of the
doubtful rest. On smaller sets it gains more: 3,000 digits with the CLI
defaults 0.940 -> 0.963; scikit-learn's digits (IIC 10 epochs, seeds 0-2)
0.980 / 0.961 / 0.946 -> 0.986 / 0.969 / 0.959.

Session 14: 5 student epochs instead of 3 (the one-cycle schedule over 5).
Same saved runs and seeds, the student as ``IIC._fit_student`` runs it (one
torch thread each, two or three runs at once); seeds 4 and 2 end to end
with the CLI (``clusterlens iic ../shared/data/mnist --k 10 --preset
ji2019-mnist --width 0.25 --kernel-size 3 --batch-size 32 --repeats 4 --lr
2e-3 --heads 25 --epochs 2 --student-epochs 5 --seed S``), the same
figures: seed 4 in 34 minutes beside two other runs (IIC 8, the SCAN head
4, the student 21), seed 2 in 27 beside the test suite (its last IIC epoch
alone 3.8 minutes, a student epoch alone 81 s): about 18 minutes alone:

    run seed                     0       1       2       3       4
    SCAN head (+ 5 pixel nbrs)   0.9883  0.9884  0.9869  0.9879  0.9894
    student, 3 epochs            0.9896  0.9897  0.9893  0.9897  0.9904
    student, 5 epochs            0.9904  0.9905  0.9902  0.9904  0.9910

Five seeds of five at >= 0.99 (the issue's target: four). Also measured
and not better (seeds 0 / 2, 3 epochs): a second student taught the first
student's images above 0.85 (0.9870 / 0.9868: the sure images leave out the
hard ones it must learn from); --confidence 0.999 (0.9892 / 0.9885) or 0.9
(0.9905 / 0.9892); the average of three students (0.9901 / 0.9895); the
student's prediction averaged over augmented copies (+0.0002 / 0.0000).
The ~150 base-stroke 1s that every sub-head and the SCAN head put with the
2s stay there: the student is taught them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"
PAPER_ACCURACY = 0.992
TARGET = 0.990


class _TimeUp(Exception):
    """Raised from the epoch callback once the time budget is spent."""


def _load(data_dir: Path, smoke: bool, seed: int):
    if data_dir.is_dir():
        from clusterlens.io import load_image_array

        d = load_image_array(data_dir)
        X, y = d.images, np.asarray(d.labels)
        source = f"{data_dir} (train + test)"
    else:  # no shared data: synthetic strokes keep the smoke run meaningful
        if not smoke:
            raise SystemExit(f"MNIST not found in {data_dir}")
        rng = np.random.default_rng(seed)
        y = np.repeat(np.arange(4), 150)
        X = rng.integers(0, 40, (600, 28, 28), dtype=np.uint8)
        for c in range(4):
            X[
                y == c,
                4 + 10 * (c // 2) : 14 + 10 * (c // 2),
                4 + 10 * (c % 2) : 14 + 10 * (c % 2),
            ] = 230
        source = "synthetic (no ../shared/data/mnist)"
    if smoke:
        rng = np.random.default_rng(seed)
        keep = rng.choice(len(X), min(len(X), 600), replace=False)
        X, y = X[keep], y[keep]
    return X, y, source


def _kmeans_baseline(X, y, seed):
    from clusterlens.cluster import KMeans
    from clusterlens.metrics import evaluate_clustering

    t0 = time.perf_counter()
    flat = X.reshape(len(X), -1).astype(np.float32) / 255.0
    km = KMeans(len(np.unique(y)), n_init=10, random_state=seed).fit(flat)
    s = evaluate_clustering(y, km.labels_)
    return {
        "accuracy": s["accuracy"],
        "nmi": s["nmi"],
        "ari": s["ari"],
        "seconds": time.perf_counter() - t0,
    }


def _params(a: argparse.Namespace) -> dict[str, Any]:
    """IIC arguments given on the command line (the rest: preset or defaults)."""
    params: dict[str, Any] = {}
    for name, key in (
        ("preset", "preset"),
        ("batch_size", "batch_size"),
        ("repeats", "n_repeats"),
        ("width", "width"),
        ("lr", "lr"),
        ("heads", "n_heads"),
        ("head_restarts", "head_restarts"),
        ("kernel_size", "kernel_size"),
        ("k_over", "n_clusters_over"),
    ):
        if getattr(a, name) is not None:
            params[key] = getattr(a, name)
    if a.smoke:
        params.update(width=0.25, batch_size=50, n_heads=2, n_repeats=2)
        params.pop("kernel_size", None)
    return params


def _run_seed(a, X, y, k, seed, params, log, budget):
    from clusterlens.deep import IIC

    t0 = time.perf_counter()

    sl_budget = 60.0 * a.self_label_minutes
    sh_budget = 60.0 * a.scan_head_minutes  # kept for the SCAN head
    iic_budget = budget - sl_budget - sh_budget
    sl_end = [budget - sh_budget]  # when self-labelling stops (set after IIC)

    def append_log(entry):
        if a.log is not None:
            with a.log.open("a") as f:
                f.write(json.dumps({"seed": seed, **entry}, default=float) + "\n")

    def on_epoch(entry):
        elapsed = time.perf_counter() - t0
        entry["elapsed_seconds"] = elapsed
        if entry.get("phase") == "self-label":
            log(
                f"seed {seed} epoch {entry['epoch']:3d}  {elapsed:7.0f} s  "
                f"self-labelling: cross-entropy {entry['self_label_loss'] or 0:.4f}"
                f"  confident {entry['confident_share']:.3f}  acc "
                f"{entry['accuracy']:.4f}  NMI {entry['nmi']:.4f}  ARI "
                f"{entry['ari']:.4f}"
            )
            append_log(entry)
            if elapsed + 1.02 * entry["seconds"] > sl_end[0]:
                raise _TimeUp
            return
        accs = np.asarray(entry["head_accuracies"])
        log(
            f"seed {seed} epoch {entry['epoch']:3d}  {elapsed:7.0f} s  loss "
            f"{entry['loss']:.4f}  acc {entry['accuracy']:.4f}  NMI {entry['nmi']:.4f}"
            f"  ARI {entry['ari']:.4f}  head {entry['head']}  best sub-head "
            f"{accs.max():.4f}  sub-heads >= 99 %: {int((accs >= TARGET).sum())}/"
            f"{accs.size}  restarted {entry.get('restarted', [])}"
        )
        append_log(entry)
        # Stop before an epoch that would end past the budget (the last
        # epoch's duration as the estimate), so the figures are within it.
        if elapsed + 1.02 * entry["seconds"] > iic_budget:
            raise _TimeUp

    ckpt = None if a.checkpoint is None else a.checkpoint / f"seed{seed}"
    if (sl_budget or sh_budget) and ckpt is None:  # later steps resume the run
        ckpt = Path(tempfile.mkdtemp(prefix="iic-mnist-")) / f"seed{seed}"
    model = IIC(
        k,
        epochs=1 if a.smoke else a.epochs,
        random_state=seed,
        n_threads=a.threads,
        device=a.device,
        checkpoint_dir=ckpt,
        resume=bool(ckpt and (ckpt / "iic-checkpoint.json").is_file()),
        verbose=0 if a.json else 1,
        cluster_head="iic",  # the SCAN head is timed apart (--scan-head-minutes)
        **params,
    )
    stopped = "epochs"
    try:
        model.fit(X, y, callback=on_epoch)
    except _TimeUp:
        stopped = "time budget"

    def resumed(**kw):
        """This seed's IIC resuming its checkpoint, with ``kw`` changed."""
        kw.setdefault("cluster_head", "iic")
        return IIC(
            k,
            random_state=seed,
            n_threads=a.threads,
            device=a.device,
            checkpoint_dir=ckpt,
            resume=True,
            verbose=0 if a.json else 1,
            **params,
            **kw,
        )

    if sl_budget:
        # the IIC epochs done, then at most --self-label-minutes of
        # self-labelling (IIC may have stopped early, at --epochs)
        sl_end[0] = min(budget - sh_budget, time.perf_counter() - t0 + sl_budget)
        model = resumed(
            epochs=len(model.history_), self_label_epochs=1000, confidence=a.confidence
        )
        try:
            model.fit(X, y, callback=on_epoch)
        except _TimeUp:
            stopped = "time budget"
    scan_head = None
    if sh_budget:
        # `clusterlens iic ... --resume --cluster-head scan` on the finished run:
        # the trunk's embeddings of every digit, then the SCAN head
        t_sh = time.perf_counter()
        hist = model.history_
        n_sl = sum(h.get("phase") == "self-label" for h in hist)
        model = resumed(
            epochs=len(hist) - n_sl,
            self_label_epochs=n_sl,
            confidence=a.confidence,
            cluster_head="scan",
            student_epochs=a.student_epochs,
        )
        model.fit(X, y)
        from clusterlens.metrics import evaluate_clustering

        sc = evaluate_clustering(y, model.labels_)
        head_only = model.scan_head_.history_[-1]
        scan_head = {
            "accuracy": sc["accuracy"],
            "nmi": sc["nmi"],
            "ari": sc["ari"],
            "head": model.head_,
            "seconds": time.perf_counter() - t_sh,
            "elapsed_seconds": time.perf_counter() - t0,
            "head_accuracy": head_only.get("accuracy"),
            "student": model.student_history_,
        }
        if model.student_history_:
            log(
                f"seed {seed} SCAN head on the trunk: acc "
                f"{head_only.get('accuracy', float('nan')):.4f}; the student "
                f"after {len(model.student_history_)} epochs: acc "
                f"{sc['accuracy']:.4f}  NMI {sc['nmi']:.4f}  ARI {sc['ari']:.4f}  "
                f"({scan_head['seconds']:.0f} s for both)"
            )
        else:
            log(
                f"seed {seed} SCAN head on the trunk: acc {sc['accuracy']:.4f}  "
                f"NMI {sc['nmi']:.4f}  ARI {sc['ari']:.4f}  "
                f"({scan_head['seconds']:.0f} s)"
            )
    wall = time.perf_counter() - t0
    hist = model.history_
    final = hist[-1]
    iic_last = [h for h in hist if h.get("phase") != "self-label"][-1]
    best = max(hist, key=lambda h: h["accuracy"])
    reached = next((h for h in hist if h["accuracy"] >= TARGET), None)
    return {
        "seed": seed,
        "device": model.device_,
        "settings": model.settings_,
        "stopped_by": stopped,
        "wall_seconds": wall,
        "epochs": len(hist),
        "curve": [
            {
                key: h[key]
                for key in (
                    "epoch",
                    "elapsed_seconds",
                    "loss",
                    "accuracy",
                    "nmi",
                    "ari",
                    "head",
                    "head_losses",
                    "head_accuracies",
                    "restarted",
                    "phase",
                    "self_label_loss",
                    "confident_share",
                )
                if key in h
            }
            for h in hist
        ],
        "final": {key: final[key] for key in ("accuracy", "nmi", "ari", "head")},
        "iic_final_accuracy": iic_last["accuracy"],
        "scan_head": scan_head,
        "self_label_epochs": sum(h.get("phase") == "self-label" for h in hist),
        "subheads": [
            {"index": i, "loss": loss, "accuracy": acc, "chosen": i == final["head"]}
            for i, (loss, acc) in enumerate(
                zip(iic_last["head_losses"], iic_last["head_accuracies"], strict=True)
            )
        ],
        "best_epoch": {"epoch": best["epoch"], "accuracy": best["accuracy"]},
        "target_0.99_reached_at_seconds": (
            reached.get("elapsed_seconds") if reached else None
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.add_argument(
        "--minutes",
        type=float,
        default=60.0,
        help="training budget per seed: no epoch starts that would end past it",
    )
    p.add_argument("--epochs", type=int, default=100, help="upper bound on epochs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--preset", default=None, help="e.g. ji2019-mnist")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--kernel-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--head-restarts", type=int, default=None)
    p.add_argument("--k-over", type=int, default=None)
    p.add_argument(
        "--self-label-minutes",
        type=float,
        default=0.0,
        help="the last M minutes of the budget: self-labelling (IIC before)",
    )
    p.add_argument("--confidence", type=float, default=0.99)
    p.add_argument(
        "--scan-head-minutes",
        type=float,
        default=0.0,
        help="keep the last M minutes for --cluster-head scan (a SCAN head on the "
        "trunk's embeddings, from the finished run's checkpoint); 0: none",
    )
    p.add_argument(
        "--student-epochs",
        type=int,
        default=0,
        help="with --scan-head-minutes: then a student network trained this many "
        "epochs on the SCAN head's confident digits predicts (IIC student_epochs)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", type=Path, default=MNIST)
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--log", type=Path, default=None, help="append epochs (JSON)")
    a = p.parse_args(argv)
    if a.student_epochs and not a.scan_head_minutes:
        p.error("--student-epochs needs --scan-head-minutes (the student follows it)")

    X, y, source = _load(a.data_dir, a.smoke, a.seeds[0])
    k = len(np.unique(y))
    log = (lambda *m: None) if a.json else (lambda *m: print(*m, flush=True))
    params = _params(a)
    log(
        f"data: {source}: {X.shape} uint8, k={k}; seeds {a.seeds}; "
        f"{a.threads} torch threads; budget {a.minutes} min per seed; {params}"
    )
    budget = 60.0 * a.minutes
    runs = [_run_seed(a, X, y, k, seed, params, log, budget) for seed in a.seeds]
    km = _kmeans_baseline(X, y, a.seeds[0])
    accs = np.asarray([(r["scan_head"] or r["final"])["accuracy"] for r in runs])
    out = {
        "data": source,
        "n_images": len(X),
        "threads": a.threads,
        "device": runs[0]["device"],
        "params": params,
        "settings": runs[0]["settings"],
        "runs": runs,
        "seeds_at_target": int((accs >= TARGET).sum()),
        "mean_accuracy": float(accs.mean()),
        "kmeans_pixels": km,
        "paper_accuracy": PAPER_ACCURACY,
        "ratios": {
            "iic_mean_over_paper": float(accs.mean()) / PAPER_ACCURACY,
            "iic_mean_over_kmeans": float(accs.mean()) / km["accuracy"],
        },
    }
    if a.json:
        print(json.dumps(out, indent=2, default=float))
        return 0
    log(
        "\nseed  epochs  minutes  stopped by    accuracy  NMI     ARI     head"
        "  (IIC alone; self-labelling epochs)"
        + (
            "  [the student's figures]"
            if a.student_epochs
            else "  [the SCAN head's figures]"
            if a.scan_head_minutes
            else ""
        )
    )
    for r in runs:
        f = r["scan_head"] or r["final"]
        log(
            f"{r['seed']:4d}  {r['epochs']:6d}  {r['wall_seconds'] / 60:7.1f}  "
            f"{r['stopped_by']:12s}  {f['accuracy']:.4f}    {f['nmi']:.4f}  "
            f"{f['ari']:.4f}  {f['head']}  ({r['iic_final_accuracy']:.4f}; "
            f"{r['self_label_epochs']})"
        )
    for r in runs:
        log(f"\nseed {r['seed']}: sub-heads after the last epoch, lowest loss first")
        for h in sorted(r["subheads"], key=lambda h: h["loss"]):
            mark = "  <- chosen" if h["chosen"] else ""
            log(
                f"  sub-head {h['index']:3d}  loss {h['loss']:.4f}  "
                f"accuracy {h['accuracy']:.4f}{mark}"
            )
    log(
        f"\nk-means on pixels: accuracy {km['accuracy']:.4f}, NMI {km['nmi']:.4f}, "
        f"ARI {km['ari']:.4f} ({km['seconds']:.0f} s)"
    )
    log(
        f"IIC mean accuracy {out['mean_accuracy']:.4f} over {len(runs)} seed(s); "
        f"seeds at >= 99 %: {out['seeds_at_target']}/{len(runs)}; ratios: IIC / "
        f"paper (99.2 %) = {out['ratios']['iic_mean_over_paper']:.3f}, IIC / "
        f"k-means = {out['ratios']['iic_mean_over_kmeans']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
