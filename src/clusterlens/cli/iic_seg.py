"""``clusterlens iic-seg`` and ``iic-seg-predict``: unsupervised segmentation."""

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
  clusterlens iic-seg camvid/train/images camvid/val/images --k 3 --features cnn \\
      --epochs 20 --out seg3
  clusterlens iic-seg-predict seg3/model camvid/test/images \\
      --labels camvid/test/labels --classes camvid3 --out seg3-test
  clusterlens iic-seg photos/ --k 6 --method kmeans --features cnn --out km6
  clusterlens iic-seg photos/ --k 3 --epochs 10 --checkpoint ckpt --out seg
  clusterlens iic-seg photos/ --k 3 --epochs 20 --checkpoint ckpt --resume --out seg
"""

PREDICT_EXAMPLES = """
\b
Examples:
  clusterlens iic-seg-predict seg3/model camvid/test/images \\
      --labels camvid/test/labels --classes camvid3 --out seg3-test
"""

CLASSES_HELP = (
    "Evaluated classes: camvid3, camvid6, camvid11, or a mapping of label ids "
    "such as 'sky=0; ground=3,4; ignore=11' (ids not listed are an error). "
    "Default camvid3."
)


def _parse_hw(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().replace(",", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) != 2 or min(nums) < 16 or any(v % 16 for v in nums):
        raise click.BadParameter(
            "must be HxW with both multiples of 16 (e.g. 240x320)",
            param_hint="--image-size",
        )
    return nums[0], nums[1]


def _parse_layers(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from clusterlens.deep import CNN_LAYERS

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in names if v not in CNN_LAYERS]
    if not names or bad or len(set(names)) != len(names):
        raise click.BadParameter(
            f"must be distinct names among {', '.join(CNN_LAYERS)}, comma-separated "
            f"(e.g. s8,s16,head); got {value!r}",
            param_hint="--cnn-layers",
        )
    return names


def _images_arg(f: Any) -> Any:
    return click.argument(
        "images",
        nargs=-1,
        required=True,
        type=click.Path(exists=True, file_okay=False, readable=True, path_type=Path),
    )(f)


def _label_options(f: Any) -> Any:
    f = click.option("--classes", default="camvid3", help=CLASSES_HELP)(f)
    f = click.option(
        "--labels",
        multiple=True,
        type=click.Path(exists=True, file_okay=False, readable=True, path_type=Path),
        help="Folder of label maps (PNG of label ids, same file stems as the "
        "images); only scored, never trained on. Repeatable.",
    )(f)
    return f


def _refine_option(f: Any) -> Any:
    return click.option(
        "--refine/--no-refine",
        default=True,
        show_default=True,
        help="Move the predicted boundaries onto the photo's edges (a guided "
        "filter on the full-size photo; the networks predict on a grid 4 to 8 "
        "times coarser). CamVid val, k-means masks: +1.1 pt on CamVid-3, +2.2 pt "
        "on CamVid-6.",
    )(f)


def _threads_device(f: Any) -> Any:
    f = click.option(
        "--threads",
        type=click.IntRange(min=1, max=MAX_THREADS),
        default=2,
        show_default=True,
        help="torch CPU threads (1 to 256).",
    )(f)
    f = click.option(
        "--device",
        type=DEVICE,
        default="auto",
        show_default=True,
        help="cpu, cuda, cuda:N, mps or auto (CUDA when present).",
    )(f)
    return f


def _merged(s: Mapping[str, Any]) -> str:
    """' (merged from N k-means clusters)' when k-means over-clustered."""
    return f" (merged from {s['k_over']} k-means clusters)" if s.get("k_over") else ""


def _scores(s: Mapping[str, Any]) -> str:
    if "accuracy" not in s:
        return ""
    return (
        f" pixel accuracy {s['accuracy']:.4f}, mIoU {s['miou']:.4f} on "
        f"{s['classes']['name']} (majority class {s['majority_accuracy']:.4f});"
    )


OUTPUTS = "masks/, segments.parquet, model.npz, model.json, report.html, run.json"


@click.command("iic-seg", epilog=EXAMPLES)
@_images_arg
@click.option(
    "-k",
    "--k",
    "k",
    type=click.IntRange(min=2),
    required=True,
    help="Segments to find (the number of classes, >= 2).",
)
@click.option(
    "--method",
    type=click.Choice(["iic", "kmeans"]),
    default="iic",
    show_default=True,
    help="iic: train IIC (paper eq. 5); kmeans: k-means on the per-pixel "
    "features, no training (the baseline).",
)
@click.option(
    "--features",
    type=click.Choice(["rgb", "cnn"]),
    default="rgb",
    show_default=True,
    help="rgb: the pixels (IIC learns a network from them); cnn: the frozen "
    "ImageNet EfficientNet-Lite feature maps, upsampled (IIC trains its "
    "layers on top).",
)
@click.option(
    "--cnn-layers",
    default=None,
    metavar="LIST",
    help="With --features cnn: which frozen maps, comma-separated among s8, "
    "s16, s32 (the blocks at stride 8, 16, 32) and head (the 1280-channel "
    "conv head, stride 32). Default s8,s16,head for --method kmeans (CamVid "
    "test, unrefined: 0.859 / 0.567 on CamVid-3 / -6 against 0.765 / 0.508 "
    "without the head), s8,s16 for iic (the head lowered IIC there).",
)
@click.option(
    "--backbone",
    type=click.Choice(["lite0", "lite1", "lite2"]),
    default="lite0",
    show_default=True,
    help="With --features cnn: whose packaged ImageNet weights.",
)
@click.option(
    "--k-over",
    type=click.IntRange(min=0),
    default=None,
    help="Overclustering. iic: clusters of the overclustering head (default "
    "15; 0: none). kmeans: k-means into this many clusters, merged into --k "
    "segments by Ward linkage of their centres (default 0: plain k-means; "
    "3 x --k took CamVid-6 from 0.579 to 0.601 and CamVid-3 from 0.886 "
    "to 0.827).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Images per step (default 8).",
)
@click.option(
    "--heads",
    type=click.IntRange(min=1),
    default=None,
    help="Sub-heads per head (default 3); the lowest-loss one predicts.",
)
@click.option(
    "--window",
    "half_window",
    type=click.IntRange(min=0, max=16),
    default=None,
    help="Largest displacement between paired output pixels (default 2).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Adam learning rate (default 1e-3).",
)
@click.option(
    "--width",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Channel multiplier of the rgb network (default 0.5).",
)
@click.option(
    "--crop-min",
    type=click.FloatRange(min=0.1, max=1.0),
    default=None,
    help="Smallest crop the second view rescales to the frame (default 0.6).",
)
@click.option(
    "--sobel/--no-sobel",
    default=False,
    show_default=True,
    help="Feed Sobel edges (and the colour) to the rgb network.",
)
@click.option(
    "--flip/--no-flip",
    default=True,
    show_default=True,
    help="Random horizontal flips of the second view.",
)
@click.option(
    "--image-size",
    default=None,
    help="Network input HxW, multiples of 16 (default 120x160 for rgb, "
    "240x320 for cnn).",
)
@click.option(
    "--train-on-classes",
    is_flag=True,
    help="IIC counts only the pixels of the --classes (IIC's COCO-Stuff-3 "
    "protocol): the --labels choose which pixels enter the objective, never "
    "their cluster.",
)
@_label_options
@_refine_option
@_threads_device
@checkpoint_options("epoch")
@common_options()
def iic_seg(
    images: tuple[Path, ...],
    k: int,
    method: str,
    features: str,
    cnn_layers: str | None,
    backbone: str,
    k_over: int | None,
    epochs: int,
    batch_size: int | None,
    heads: int | None,
    half_window: int | None,
    lr: float | None,
    width: float | None,
    crop_min: float | None,
    sobel: bool,
    flip: bool,
    image_size: str | None,
    train_on_classes: bool,
    labels: tuple[Path, ...],
    classes: str,
    refine: bool,
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
    """Segment the photos in IMAGES (folders) without labels: a cluster per pixel.

    IIC for segmentation (Ji et al., ICCV 2019): a fully convolutional
    network, trained so that each pixel's cluster is predictable from its
    neighbours' in a second, transformed view (crop/scale, flip, colour
    jitter). --labels folders are only scored (Hungarian pixel accuracy and
    mIoU over the --classes). Writes OUT/masks/<stem>.png (a cluster id per
    pixel, at each image's size), segments.parquet (one row per image),
    model.npz + model.json, report.html and run.json.
    """
    from clusterlens.deep._seg import SegTransforms
    from clusterlens.pipelines.iic_seg import run_iic_seg

    checkpoint, resuming = resolve_checkpoint(checkpoint, resume)
    if method == "kmeans" and (checkpoint is not None or resuming):
        raise click.BadParameter(
            "k-means trains nothing to checkpoint; use --method iic",
            param_hint="--checkpoint",
        )
    if sobel and features == "cnn":
        raise click.BadParameter(
            "Sobel input applies to --features rgb only (the CNN reads colour)",
            param_hint="--sobel",
        )
    if features != "cnn" and (cnn_layers is not None or backbone != "lite0"):
        raise click.BadParameter(
            "--cnn-layers and --backbone apply to --features cnn only",
            param_hint="--cnn-layers/--backbone",
        )
    hw = _parse_hw(image_size)
    params: dict[str, Any] = {
        "n_clusters_over": k_over,
        "batch_size": batch_size,
        "n_heads": heads,
        "half_window": half_window,
        "lr": lr,
        "width": width,
        "cnn_layers": _parse_layers(cnn_layers),
    }
    params = {key: v for key, v in params.items() if v is not None}
    params["backbone"] = backbone
    tf_kw: dict[str, Any] = {"sobel": sobel, "flip": flip}
    if crop_min is not None:
        tf_kw["crop_min"] = crop_min
    params["transforms"] = SegTransforms(**tf_kw)
    run_command(
        lambda stage: run_iic_seg(
            list(images),
            stage,
            n_clusters=k,
            method=method,
            features=features,
            labels=list(labels) or None,
            classes=classes,
            image_size=hw,
            train_on_classes=train_on_classes,
            refine=refine,
            epochs=epochs,
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
        kind="iic-seg",
        overwrite=overwrite,
        inputs=[*images, *labels, checkpoint],
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.iic-seg/1",
        human=lambda s: (
            f"iic-seg ({s['method']} on {s['features']}): {s['n_images']} images "
            f"into k={k}{_merged(s)};{_scores(s)} {s['fit_seconds']:.0f} s to fit.\n"
            f"Wrote {out}/: {OUTPUTS}"
        ),
    )


@click.command("iic-seg-predict", epilog=PREDICT_EXAMPLES)
@click.argument("model", type=click.Path(path_type=Path))
@_images_arg
@_label_options
@_refine_option
@_threads_device
@common_options()
def iic_seg_predict(
    model: Path,
    images: tuple[Path, ...],
    labels: tuple[Path, ...],
    classes: str,
    refine: bool,
    device: str,
    threads: int,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Segment the photos in IMAGES with a saved iic-seg MODEL.

    MODEL is the model.npz/model.json pair an 'iic-seg' run wrote (give the
    path without the suffix). Writes OUT/masks/, segments.parquet,
    report.html and run.json; --labels are scored as in iic-seg.
    """
    from clusterlens.pipelines.iic_seg import run_iic_seg_predict

    run_command(
        lambda stage: run_iic_seg_predict(
            model,
            list(images),
            stage,
            labels=list(labels) or None,
            classes=classes,
            device=device,
            n_threads=threads,
            refine=refine,
            verbose=verbosity(quiet, fmt),
            command={"argv": sys.argv[1:]},
        ),
        out=out,
        kind="iic-seg-predict",
        overwrite=overwrite,
        inputs=[
            *images,
            *labels,
            model,
            model.with_suffix(".npz"),
            model.with_suffix(".json"),
        ],
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.iic-seg-predict/1",
        human=lambda s: (
            f"iic-seg-predict: {s['n_images']} images into {s['n_clusters']} "
            f"clusters{_merged(s)};{_scores(s)}\nWrote {out}/: masks/, "
            "segments.parquet, report.html, run.json"
        ),
    )
