"""``clusterlens iic`` and ``clusterlens iic-predict``: deep clustering with IIC."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from clusterlens.cli._common import (
    DEVICE,
    MAX_THREADS,
    checkpoint_options,
    common_options,
    resolve_checkpoint,
    verbosity,
)
from clusterlens.cli._run import run_command

EXAMPLES = """
\b
Examples:
  clusterlens iic digits.npz --k 10 --epochs 3 --seed 0 --out runs/iic
  clusterlens iic ../shared/data/mnist --k 10 --k-over 50 --epochs 20 --out iic-mnist
  clusterlens iic ../shared/data/mnist --k 10 --preset ji2019-mnist --epochs 300 \\
      --out ji
  clusterlens iic ../shared/data/mnist --k 10 --preset ji2019-mnist --width 0.25 \\
      --kernel-size 3 --batch-size 32 --repeats 4 --lr 2e-3 --heads 25 --out fast
  clusterlens iic digits.npz --k 10 --epochs 10 --cluster-head iic --out iic-paper
  clusterlens iic photos/ --k 10 --size 32x32 --mode RGB --backbone resnet --out iic
  clusterlens iic digits.npz --k 10 --epochs 10 --checkpoint ckpt --out iic
  clusterlens iic digits.npz --k 10 --epochs 10 --checkpoint ckpt --resume --out iic
  clusterlens iic-predict iic/model new_digits.npz --out iic-new
"""

#: Largest --input-size: IIC's networks are small, and the activations of a
#: batch grow with the square of the side (24 to 64 is what the paper uses).
MAX_INPUT_SIZE = 256

PREDICT_EXAMPLES = """
\b
Examples:
  clusterlens iic-predict runs/iic/model more_digits.npz --out runs/iic-more
"""


def _parse_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().replace(",", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 1:
        raise click.BadParameter(
            "must be HxW (e.g. 28x28) or one side (32)", param_hint="--size"
        )
    return nums[0], nums[1]


def _data_arg() -> Any:
    return click.argument(
        "data",
        type=click.Path(exists=True, readable=True, path_type=Path),
    )


def _size_mode(f: Any) -> Any:
    f = click.option(
        "--mode",
        type=click.Choice(["L", "RGB"]),
        default=None,
        help="Convert images to grey (L) or colour (RGB); default: as stored.",
    )(f)
    f = click.option(
        "--size",
        default=None,
        help="Resize every image to HxW (needed when a folder mixes sizes).",
    )(f)
    return f


@click.command(epilog=EXAMPLES)
@_data_arg()
@click.option(
    "-k",
    "--k",
    "k",
    type=int,
    required=True,
    help="Clusters of the main head (the number of classes, >= 2).",
)
@click.option(
    "--preset",
    default=None,
    metavar="NAME",
    help="A named configuration: ji2019-mnist (the authors' MNIST run: full "
    "width, 5x5 convs, 5 sub-heads, no overclustering, batch 140 x 5, lr 1e-4, "
    "their transformations). Options given explicitly override it.",
)
@click.option(
    "--k-over",
    type=click.IntRange(min=0),
    default=None,
    help="Clusters of the auxiliary overclustering head (0: none; default 50, "
    "or the preset's).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(min=2),
    default=None,
    help="Images per batch before repeats (default 32).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=None,
    help="Random transformations per image and batch (default 4).",
)
@click.option(
    "--heads",
    type=click.IntRange(min=1),
    default=None,
    help="Sub-heads per head (default 5); the lowest-loss one is IIC's choice "
    "(it predicts with --cluster-head iic). "
    "Each is one linear layer: dozens cost little.",
)
@click.option(
    "--head-restarts",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Re-initialise this many of the worst-loss sub-heads after every "
    "epoch (never the chosen one).",
)
@click.option(
    "--self-label-epochs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="After --epochs of IIC, this many epochs of self-labelling (SCAN's "
    "last step): images the chosen sub-head is sure of (--confidence) train "
    "the network as targets of a class-balanced cross-entropy on their random "
    "transformations. Resume a finished run (--resume) to add them.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=0.99,
    show_default=True,
    help="Probability above which an image is a self-labelling (or "
    "--student-epochs) target.",
)
@click.option(
    "--cluster-head",
    type=click.Choice(["scan", "iic"]),
    default="scan",
    show_default=True,
    help="What gives the clusters: scan = after IIC, a SCAN head trained on the "
    "trunk's embeddings (mined neighbours, neighbour consistency, "
    "self-labelling, as `cluster --method scan`), saved in the model; iic = "
    "the lowest-loss sub-head (the paper's). The sub-heads can merge two "
    "classes that the trunk keeps apart (MNIST after 2 epochs, 3 seeds: 0.882 "
    "/ 0.963 / 0.970 with the sub-head, 0.988 / 0.988 / 0.987 with the SCAN "
    "head; CIFAR-10 from scratch: 0.236 / 0.264). 2-3 minutes more on 70,000 "
    "images; --resume adds it to a finished run.",
)
@click.option(
    "--pixel-neighbors",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    help="With --cluster-head scan: how many of the 20 neighbours the SCAN head "
    "learns from per image come from the images themselves (thumbnails of at "
    "most 32 px, PCA, L2) rather than the trunk (0: the trunk's only). A "
    "briefly trained trunk can keep one style of a class apart (MNIST: the 7s "
    "with a crossbar), and the head then joins it to any cluster; the pixels "
    "tie it back.",
)
@click.option(
    "--student-epochs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Then train a fresh CNN this many epochs on the images the clusters "
    "hold above --confidence (small rotations, scalings, shifts), and let it "
    "predict: it fixes doubtful images from the sure ones (all 70,000 MNIST "
    "digits after 2 IIC epochs, 5 seeds: 0.987-0.989 -> 0.9902-0.9910 with 5 "
    "epochs, 1.5-3 minutes an epoch on 2 cores; 3,000 digits, 3 epochs: "
    "0.940 -> 0.963). 0: none.",
)
@click.option(
    "--aux",
    "aux_mode",
    type=click.Choice(["alternate", "joint"]),
    default=None,
    help="Train main and overclustering heads on alternate batches "
    "(the paper) or jointly on every batch (default: joint).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Adam learning rate (default 2e-3).",
)
@click.option(
    "--lamb",
    type=click.FloatRange(min=0),
    default=None,
    help="Entropy coefficient λ of the objective (default 1).",
)
@click.option(
    "--backbone",
    type=click.Choice(["vgg4", "vgg6", "resnet"]),
    default=None,
    help="vgg4 (paper's net B, default), vgg6 (net C), resnet (large images).",
)
@click.option(
    "--width",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Channel multiplier (default 0.25; 1.0 = the paper's).",
)
@click.option(
    "--kernel-size",
    type=click.IntRange(min=1, max=15),
    default=None,
    help="Convolution side of the vgg backbones, odd (default 3; the authors' "
    "MNIST net: 5).",
)
@click.option(
    "--sobel/--no-sobel",
    default=None,
    help="Feed Sobel edges instead of pixels (default: on for RGB).",
)
@click.option(
    "--flip/--no-flip",
    default=None,
    help="Random horizontal flips (default: on for RGB, off for grey).",
)
@click.option(
    "--input-size",
    type=click.IntRange(min=8, max=MAX_INPUT_SIZE),
    default=None,
    help="Network input side, 8 to 256 pixels (default 24 for 28-px grey, 32 for RGB).",
)
@_size_mode
@click.option(
    "--device",
    type=DEVICE,
    default="auto",
    show_default=True,
    help="cpu, cuda, cuda:N, mps or auto (CUDA when present).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1, max=MAX_THREADS),
    default=2,
    show_default=True,
    help="torch CPU threads (1 to 256).",
)
@checkpoint_options("epoch")
@common_options()
def iic(
    data: Path,
    k: int,
    preset: str | None,
    k_over: int | None,
    epochs: int,
    batch_size: int | None,
    repeats: int | None,
    heads: int | None,
    head_restarts: int,
    self_label_epochs: int,
    confidence: float,
    cluster_head: str,
    pixel_neighbors: int,
    student_epochs: int,
    aux_mode: str | None,
    lr: float | None,
    lamb: float | None,
    backbone: str | None,
    width: float | None,
    kernel_size: int | None,
    sobel: bool | None,
    flip: bool | None,
    input_size: int | None,
    size: str | None,
    mode: str | None,
    device: str,
    threads: int,
    checkpoint: Path | None,
    resume: str | None,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Cluster the images of DATA with Invariant Information Clustering (IIC).

    DATA is an image folder, an MNIST-style IDX folder or an .npz with
    'images' (N, H, W[, C]) uint8 and optional 'labels'. Labels are only
    reported (accuracy, NMI, ARI per epoch), never used for training.
    Writes OUT/model.npz + model.json, assignments.parquet (cluster,
    probability, prob_<c>, label), report.html and run.json.
    """
    from clusterlens.exceptions import InvalidParameterError
    from clusterlens.pipelines.iic import run_iic

    if k < 2:
        raise InvalidParameterError(
            f"--k must be >= 2 (the number of clusters to find); got {k}."
        )
    checkpoint, resuming = resolve_checkpoint(checkpoint, resume)
    hw = _parse_size(size)
    params: dict[str, Any] = {
        "preset": preset,
        "n_heads": heads,
        "kernel_size": kernel_size,
        "n_repeats": repeats,
        "batch_size": batch_size,
        "aux_mode": aux_mode,
        "lr": lr,
        "lamb": lamb,
        "backbone": backbone,
        "width": width,
    }
    params = {key: v for key, v in params.items() if v is not None}
    if head_restarts:
        params["head_restarts"] = head_restarts
    params["cluster_head"] = cluster_head
    params["pixel_neighbors"] = pixel_neighbors
    if student_epochs:
        params["student_epochs"] = student_epochs
    if self_label_epochs or student_epochs:
        params["confidence"] = confidence
    if self_label_epochs:
        params["self_label_epochs"] = self_label_epochs
    tf_overrides = {"sobel": sobel, "flip": flip, "input_size": input_size}
    tf_overrides = {key: v for key, v in tf_overrides.items() if v is not None}
    if tf_overrides:
        params["transform_overrides"] = tf_overrides
    run_command(
        lambda stage: run_iic(
            data,
            stage,
            n_clusters=k,
            n_clusters_over=k_over,
            epochs=epochs,
            size=hw,
            mode=mode,
            random_state=seed,
            verbose=verbosity(quiet, fmt),
            device=device,
            n_threads=threads,
            checkpoint_dir=checkpoint,
            resume=resuming,
            command={"argv": sys.argv[1:]},
            **params,
        ),
        out=out,
        kind="iic",
        overwrite=overwrite,
        inputs=[data, checkpoint],
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.iic/1",
        human=lambda s: (
            f"IIC: {s['n_images']} images into k={k} after {s['epochs']} epochs "
            f"{_self_label_note(s)}on {s['device']};{_scores(s)} "
            f"{_predictor(s)}."
            f"{_subheads(s)}\n"
            + (f"Note: {s['hint']}\n" if s.get("hint") else "")
            + f"Wrote {out}/: model.npz, model.json, assignments.parquet, "
            "report.html, run.json"
        ),
    )


def _predictor(summary: Mapping[str, Any]) -> str:
    """What gives the clusters: the chosen sub-head, or the SCAN head over it,
    or a student network that learnt from either."""
    scan = summary.get("cluster_head") == "scan"
    acc = summary.get("iic_head_accuracy")
    alone = "" if acc is None else f", accuracy {acc:.4f}"
    n = summary.get("student_epochs") or 0
    if n:
        teacher = summary.get("teacher_accuracy")
        was = "" if teacher is None else f" (accuracy {teacher:.4f})"
        whose = "the SCAN head's" if scan else f"sub-head {summary['head']}'s"
        own = f"; IIC's own: sub-head {summary['head']}, lowest loss{alone}"
        return (
            f"predicted by a student network ({n} epoch{'s' if n > 1 else ''}) "
            f"that learnt {whose} clusters{was}{own if scan else ''}"
        )
    if not scan:
        return f"sub-head {summary['head']} (lowest loss)"
    return (
        "clusters from the SCAN head on the trunk's embeddings (IIC's own: "
        f"sub-head {summary['head']}, lowest loss{alone})"
    )


def _self_label_note(summary: Mapping[str, Any]) -> str:
    n = summary.get("self_label_epochs") or 0
    if not n:
        return ""
    return (
        f"({n} of them self-labelling, {summary['confident_share']:.1%} of the "
        "images confident in the last) "
    )


def _subheads(summary: Mapping[str, Any]) -> str:
    """Every sub-head's last-epoch loss (and accuracy), lowest loss first."""
    losses = summary.get("head_losses") or []
    accs = summary.get("head_accuracies") or [None] * len(losses)
    if len(losses) < 2:
        return ""
    rows = sorted(zip(losses, accs, range(len(losses)), strict=False))
    lines = [
        f"  sub-head {i}: loss {loss:.4f}"
        + ("" if acc is None else f", accuracy {acc:.4f}")
        for loss, acc, i in rows
    ]
    return "\nSub-heads (lowest loss first):\n" + "\n".join(lines)


def _scores(summary: Mapping[str, Any]) -> str:
    if "accuracy" not in summary:
        return ""
    return (
        f" accuracy {summary['accuracy']:.4f}, NMI {summary['nmi']:.4f}, "
        f"ARI {summary['ari']:.4f};"
    )


@click.command("iic-predict", epilog=PREDICT_EXAMPLES)
@click.argument("model", type=click.Path(path_type=Path))
@_data_arg()
@_size_mode
@click.option(
    "--device",
    type=DEVICE,
    default="auto",
    show_default=True,
    help="cpu, cuda, cuda:N, mps or auto (CUDA when present).",
)
@common_options()
def iic_predict(
    model: Path,
    data: Path,
    size: str | None,
    mode: str | None,
    device: str,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Assign the images of DATA to the clusters of a saved IIC MODEL.

    MODEL is the model.npz/model.json pair written by 'clusterlens iic'
    (give the path without the suffix). Writes OUT/assignments.parquet and
    OUT/run.json.
    """
    from clusterlens.pipelines.iic import run_iic_predict

    hw = _parse_size(size)
    run_command(
        lambda stage: run_iic_predict(
            model,
            data,
            stage,
            size=hw,
            mode=mode,
            device=device,
            verbose=verbosity(quiet, fmt),
            command={"argv": sys.argv[1:]},
        ),
        out=out,
        kind="iic-predict",
        overwrite=overwrite,
        inputs=[data, model, model.with_suffix(".npz"), model.with_suffix(".json")],
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.iic-predict/1",
        human=lambda s: (
            f"IIC predict: {s['n_images']} images into {s['n_clusters']} clusters.\n"
            f"Wrote {out}/: assignments.parquet, run.json"
        ),
    )
