"""``clusterlens ingest``: image folder, COCO JSON, MNIST IDX or .npz to a workspace."""

from __future__ import annotations

from pathlib import Path

import click

from clusterlens.cli._common import common_options, verbosity
from clusterlens.cli._run import finish, run_staged
from clusterlens.io._boxes import MIN_BOX_SIZE

EXAMPLES = """
\b
Examples:
  clusterlens ingest hymenoptera_data/ --out ws
  clusterlens ingest ../shared/data/mnist --split test --out mnist-ws
  clusterlens ingest ../shared/data/coco-sample/instances_coco128_train2017.json \\
      --boxes --min-class-count 10 --out coco-ws
  clusterlens ingest yolo-set/labels --boxes --out yolo-ws   # images: yolo-set/images
  clusterlens ingest VOC2007 --boxes --out voc-ws  # Annotations/ + JPEGImages/
"""


@click.command(epilog=EXAMPLES)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--boxes",
    is_flag=True,
    help="COCO JSON, YOLO labels folder or VOC annotations: one item per box "
    "crop, labelled with its category.",
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Boxes: folder of the images (default: COCO images/ beside the JSON; "
    "YOLO the images/ twin of labels/; VOC JPEGImages/).",
)
@click.option(
    "--class-names",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YOLO boxes: class names, a classes.txt (one a line) or a data.yaml "
    "(default: classes.txt in the labels folder or the dataset's data.yaml).",
)
@click.option("--split", default=None, help="Keep only this split (train, val, test).")
@click.option(
    "--min-box-size",
    type=click.FloatRange(min=0),
    default=MIN_BOX_SIZE,
    show_default=True,
    help="Boxes: drop boxes smaller than this many pixels on a side (the "
    "default of label-issues and anchors too).",
)
@click.option(
    "--include-crowd",
    is_flag=True,
    help="COCO boxes: keep iscrowd=1 boxes (dropped by default, as label-issues "
    "and anchors do).",
)
@click.option(
    "--min-class-count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Boxes: drop categories with fewer boxes.",
)
@click.option("--n-jobs", type=click.IntRange(min=1), default=2, show_default=True)
@common_options()
def ingest(
    source: Path,
    boxes: bool,
    images: Path | None,
    class_names: Path | None,
    split: str | None,
    min_box_size: float,
    min_class_count: int,
    include_crowd: bool,
    n_jobs: int,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Make a workspace from SOURCE: OUT/items.parquet + workspace.json.

    SOURCE is an image folder (sub-folders name labels, a train/val/test level
    above them names splits), a COCO instances JSON (whole images, or --boxes
    for one item per box), with --boxes a YOLO labels folder or a Pascal VOC
    annotations folder (one item per box), an MNIST-style IDX folder, or an
    .npz with 'images'. Boxes wholly outside their image, COCO crowd boxes
    and boxes under --min-box-size are dropped and counted, as label-issues
    and anchors do. Unreadable images (corrupt, over 178,956,970 pixels, or not
    regular files) are listed in OUT/skipped.txt and counted; more than half
    unreadable is an error. Sub-folders that are clusterlens outputs (holding
    workspace.json or .clusterlens-output.json) are skipped and counted, and
    each real file is read once, however many links lead to it. 16-bit images
    are scaled to 8 bits by 255/65535, float images in [0, 1] by 255.
    """
    from clusterlens.io import read_class_names
    from clusterlens.pipelines.ingest import run_ingest

    names = None if class_names is None else list(read_class_names(class_names))
    summary = run_staged(
        lambda stage: run_ingest(
            source,
            stage,
            boxes=boxes,
            images=images,
            split=split,
            min_box_size=min_box_size,
            min_class_count=min_class_count,
            include_crowd=include_crowd,
            class_names=names,
            n_jobs=n_jobs,
            verbose=verbosity(quiet, fmt),
        ),
        out=out,
        kind="workspace",
        overwrite=overwrite,
        inputs=[source, images, class_names],
    )
    bf = summary.get("box_filter")
    if bf is not None and fmt == "human" and not quiet:
        click.echo(f"Boxes: {bf['summary']}.", err=True)
    n_out = summary.get("n_skipped_output_folders", 0)
    outputs = f", {n_out} clusterlens output folder(s) skipped" if n_out else ""
    finish(
        fmt,
        quiet,
        "clusterlens.ingest/1",
        summary,
        out,
        lambda s: (
            f"Ingested {s['n_items']:,} items ({s['kind']}; "
            f"{s['n_labelled']:,} labelled in {s['n_classes']} classes; "
            f"{s['n_skipped']} unreadable skipped{outputs}) at "
            f"{s['images_per_second']:,.0f} images/s.\nWrote {out}/: items.parquet, "
            "workspace.json"
        ),
    )
