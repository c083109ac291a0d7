"""``clusterlens label-issues``: rank samples by how likely their label is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from clusterlens.cli._common import common_options, verbosity
from clusterlens.cli._run import run_command
from clusterlens.io._boxes import MIN_BOX_SIZE

EXAMPLES = """
\b
Examples:
  clusterlens label-issues features.npy labels.csv --out issues --top 100
  clusterlens label-issues emb.parquet labels.parquet --class orange --out issues
  clusterlens label-issues features.npy labels.npy --pred-probs probs.npy --out i
  clusterlens label-issues coco-ws          # a workspace: writes coco-ws/label-issues
  clusterlens label-issues \\
      ../shared/data/coco-sample/instances_coco128_train2017.json \\
      --images ../shared/data/coco-sample/images --out coco-issues --export
  clusterlens label-issues yolo-set/labels --out yolo-issues  # images: yolo-set/images
  clusterlens label-issues VOC2007 --out voc-issues  # Annotations/ + JPEGImages/
"""


@click.command("label-issues", epilog=EXAMPLES)
@click.argument(
    "data",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, readable=True, path_type=Path),
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Box input: folder of the images (boxes are cropped from them; "
    "required for COCO, default YOLO the images/ twin of labels/, VOC "
    "JPEGImages/). FEATURES LABELS input: the folder the labels file's 'path' "
    "column is relative to (default: the labels file's folder); the report shows each "
    "sample's image.",
)
@click.option(
    "--embed",
    type=click.Choice(["cnn", "pixels"]),
    default="cnn",
    show_default=True,
    help="Box input: what describes a box: cnn = the CNN embedding of its crop "
    "with 10 % context (EfficientNet-Lite0, as `features cnn` on an `ingest "
    "--boxes` workspace; cached), pixels = its crop resized to --crop-size.",
)
@click.option(
    "--features",
    "box_features",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Box input: precomputed features (.npy, one row per kept box in "
    "annotation order) instead of --embed.",
)
@click.option(
    "--crop-size",
    type=click.IntRange(min=4, max=256),
    default=32,
    show_default=True,
    help="Box input with --embed pixels: crops are resized to this many pixels a side.",
)
@click.option(
    "--min-box-size",
    type=click.FloatRange(min=0),
    default=MIN_BOX_SIZE,
    show_default=True,
    help="Box input: drop boxes narrower or lower than this many pixels (the "
    "default of ingest --boxes and anchors too).",
)
@click.option(
    "--class-names",
    "class_names_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YOLO input: class names, a classes.txt (one a line) or a data.yaml "
    "(default: classes.txt in the labels folder or the dataset's data.yaml).",
)
@click.option(
    "--include-crowd",
    is_flag=True,
    help="COCO boxes: keep iscrowd=1 boxes (dropped by default, as ingest "
    "--boxes and anchors do).",
)
@click.option(
    "--pred-probs",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Out-of-sample predicted probabilities (.npy, n_samples x n_classes, "
    "classes in sorted order) instead of cross-validation.",
)
@click.option(
    "--class",
    "class_name",
    default="auto",
    show_default=True,
    help="Class to show: a label, 'auto' (most off-diagonal confusion) or 'all'.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Samples in the top and bottom galleries.",
)
@click.option(
    "--export",
    is_flag=True,
    help="Also write the flagged samples as a Label Studio task file.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="Cross-validation folds for the out-of-sample pred_probs.",
)
@click.option(
    "--neighbors",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Neighbours per sample for neighbour disagreement.",
)
@click.option(
    "--components",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="PCA components the scores work in.",
)
@common_options(
    out_required=False,
    out_help="Output folder (written only when the run succeeds); required "
    "unless DATA is a workspace (default WS/label-issues, where the review app "
    "and explore read it).",
)
def label_issues(
    data: tuple[Path, ...],
    images_dir: Path | None,
    embed: str,
    box_features: Path | None,
    crop_size: int,
    min_box_size: float,
    class_names_file: Path | None,
    include_crowd: bool,
    pred_probs: Path | None,
    class_name: str,
    top: int,
    export: bool,
    folds: int,
    neighbors: int,
    components: int,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Rank samples by how likely their label is wrong, and flag the likely wrong.

    DATA is FEATURES LABELS (features .npy/.parquet; labels .npy/.csv/.parquet,
    whose 'path' column, if any, names each sample's image for the report),
    a workspace WS (`clusterlens ingest`, labelled; its CNN embeddings from
    `features cnn`), or boxes: one COCO instances JSON with --images, a YOLO
    labels folder (or dataset root with labels/ and images/) or a Pascal VOC
    annotations folder (or year root with Annotations/ and JPEGImages/); one
    sample per box: crowd boxes, boxes outside their image and boxes under
    --min-box-size are dropped and counted, as in ingest --boxes and anchors;
    each box is described by the CNN embedding of its crop unless --embed
    pixels or --features. The flagged share is at most confident learning's
    estimate of the noise rate. Writes OUT/label_issues.parquet (index, label, every
    score, issue_rank), suspected.csv (the flagged, worst first), report.html,
    run.json and with --export label_studio.json.
    """
    from clusterlens.io import read_class_names
    from clusterlens.pipelines.label_issues import (
        label_issue_workspace,
        read_label_issue_inputs,
        read_pred_probs,
        run_label_issues,
    )
    from clusterlens.utils._fs import check_output_dir
    from clusterlens.utils._names import cli_names

    ws_dir = label_issue_workspace(data)
    if out is None:
        if ws_dir is None:
            raise click.UsageError("Missing option '-o' / '--out'.")
        out = ws_dir / "label-issues"
    inputs = [*(p for p in data if p != ws_dir), images_dir, box_features, pred_probs]
    inputs.append(class_names_file)
    check_output_dir(  # before the crops are embedded
        out, overwrite=overwrite, kind="label-issues", inputs=inputs, workspace=ws_dir
    )
    verbose = verbosity(quiet, fmt)
    names = None
    if class_names_file is not None:
        names = list(read_class_names(class_names_file))
    with cli_names({"min_size": "--min-box-size"}):  # as ingest --boxes says it
        got = read_label_issue_inputs(
            data,
            images_dir=images_dir,
            embed=embed,
            box_features=box_features,
            crop_size=crop_size,
            min_box_size=min_box_size,
            include_crowd=include_crowd,
            class_names=names,
            verbose=verbose,
        )
    if got.boxes is not None and ws_dir is None and fmt == "human" and not quiet:
        click.echo(
            f"Boxes of {data[0].name}: {got.boxes.filter_summary()['summary']}.",
            err=True,
        )
    probs = read_pred_probs(pred_probs)
    with cli_names({"features": got.features_name}):
        run_command(
            lambda stage: run_label_issues(
                got.X,
                got.labels,
                stage,
                pred_probs=probs,
                class_name=None if class_name == "all" else class_name,
                top=top,
                export=export,
                boxes=got.boxes,
                item_image=got.item_image,
                class_names=got.class_names,
                features=got.features,
                features_info=got.features_info,
                random_state=seed,
                verbose=verbose,
                command={"data": [str(p) for p in data], "source": got.source},
                n_folds=folds,
                n_neighbors=neighbors,
                n_components=components,
            ),
            out=out,
            kind="label-issues",
            overwrite=overwrite,
            ws=ws_dir,
            inputs=inputs,
            fmt=fmt,
            quiet=quiet,
            schema="clusterlens.label_issues/1",
            human=lambda s: _human(s, out),
        )


def _human(summary: Mapping[str, Any], out: Path) -> str:
    """The run's figures and the most likely wrong labels, for a person."""
    mc = summary["most_confused"]
    lines = [
        f"{summary['n_samples']:,} samples, {summary['n_classes']} classes, "
        f"described by {summary['features']} (cross-validated accuracy "
        f"{summary['cross_validated_accuracy']:.2f}).",
        f"Flagged {summary['n_flagged']:,} as likely mislabelled "
        f"({summary['flag_rate']:.1%}; confident learning estimates "
        f"{summary['estimated_noise_rate']:.1%} of the labels wrong); they are "
        "ranked worst first in suspected.csv.",
        f"Most confused: {mc['confused_with']} predicted as {mc['class_of_interest']}"
        f" ({mc['rate']:.1%}).",
        f"Class shown: {summary['class']} ({summary['class_samples']:,} samples, "
        f"{summary['n_flagged_in_class']:,} flagged). Most likely wrong:",
    ]
    for row in summary["top"]:
        lines.append(
            f"  #{row['issue_rank']:<6} sample {row['index']:<8} label "
            f"{row['label']!s:<14} suggested {row['suggested_label']!s:<14} "
            f"quality {row['label_quality']:.4f}"
        )
    lines.append(f"Wrote {out}/: {', '.join(summary['outputs'])}")
    return "\n".join(lines)
