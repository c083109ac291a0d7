"""``clusterlens label-issues``: rank samples by how likely their label is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clusterlens.cli._common import common_options, verbosity
from clusterlens.cli._output import emit
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
    help="COCO input: folder of the images (boxes are cropped from them).",
)
@click.option(
    "--embed",
    type=click.Choice(["cnn", "pixels"]),
    default="cnn",
    show_default=True,
    help="COCO input: what describes a box: cnn = the CNN embedding of its crop "
    "with 10%% context (EfficientNet-Lite0, as `features cnn` on an `ingest "
    "--boxes` workspace; cached), pixels = its crop resized to --crop-size.",
)
@click.option(
    "--features",
    "box_features",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="COCO input: precomputed features (.npy, one row per kept box in "
    "annotation order) instead of --embed.",
)
@click.option(
    "--crop-size",
    type=click.IntRange(min=4, max=256),
    default=32,
    show_default=True,
    help="COCO input with --embed pixels: crops are resized to this many pixels "
    "a side.",
)
@click.option(
    "--min-box-size",
    type=click.FloatRange(min=0),
    default=MIN_BOX_SIZE,
    show_default=True,
    help="COCO input: drop boxes narrower or lower than this many pixels (the "
    "default of ingest --boxes and anchors too).",
)
@click.option(
    "--include-crowd",
    is_flag=True,
    help="COCO input: keep iscrowd=1 boxes (dropped by default, as ingest "
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

    DATA is FEATURES LABELS (features .npy/.parquet; labels .npy/.csv/.parquet),
    a workspace WS (`clusterlens ingest`, labelled; its CNN embeddings from
    `features cnn`), or one COCO instances JSON with --images (one sample per
    box: crowd boxes, boxes outside their image and boxes under
    --min-box-size are dropped and counted, as in ingest --boxes and anchors;
    each box is described by the CNN embedding of its crop unless --embed
    pixels or --features). The flagged share is at most confident learning's
    estimate of the noise rate. Writes OUT/label_issues.parquet (index, label, every
    score, issue_rank), suspected.csv (the flagged, worst first), report.html,
    run.json and with --export label_studio.json.
    """
    import numpy as np

    from clusterlens.exceptions import DataValidationError
    from clusterlens.pipelines.label_issues import (
        box_cnn_features,
        coco_box_samples,
        crop_features,
        read_features,
        read_labels,
        run_label_issues,
    )
    from clusterlens.utils._fs import check_output_dir, staged_output_dir
    from clusterlens.utils._names import cli_names

    ws_dir = data[0] if len(data) == 1 and data[0].is_dir() else None
    if ws_dir is not None and not (ws_dir / "workspace.json").is_file():
        raise DataValidationError(
            f"{str(ws_dir)!r} is a folder but not a clusterlens workspace (no "
            "workspace.json). Pass a workspace (clusterlens ingest SOURCE --out WS), "
            "FEATURES LABELS, or a COCO JSON with --images."
        )
    if out is None:
        if ws_dir is None:
            raise click.UsageError("Missing option '-o' / '--out'.")
        out = ws_dir / "label-issues"
    guard: dict[str, Any] = {
        "overwrite": overwrite,
        "kind": "label-issues",
        "inputs": [
            *(p for p in data if p != ws_dir),
            images_dir,
            box_features,
            pred_probs,
        ],
        "workspace": ws_dir,
    }
    check_output_dir(out, **guard)  # before the crops are embedded
    verbose = verbosity(quiet, fmt)
    features_name = "the box features"
    features_used = None
    features_info: dict[str, Any] = {}
    boxes = None
    class_names = None
    if ws_dir is not None:
        from clusterlens.io import open_workspace
        from clusterlens.pipelines.label_issues import workspace_inputs

        wsp = open_workspace(ws_dir)
        labels: Any
        X, labels, boxes = workspace_inputs(wsp)
        class_names = wsp.class_names
        features_name = f"the embeddings of {str(ws_dir)!r}"
        features_used = (
            f"the workspace's CNN {'crop ' if boxes is not None else ''}embeddings "
            f"({X.shape[1]}-d, features/cnn)"
        )
        source: dict[str, Any] = {"workspace": str(ws_dir)}
    elif len(data) == 1 and data[0].suffix.lower() == ".json":
        if images_dir is None:
            raise DataValidationError(
                "COCO input needs --images DIR, the folder that holds its images "
                "(boxes are cropped from them)."
            )
        if box_features is None and embed == "cnn":
            X, boxes, features_info = box_cnn_features(
                data[0],
                images_dir,
                min_size=min_box_size,
                include_crowd=include_crowd,
                verbose=verbose,
            )
            features_used = features_info["features"]
            features_name = "the CNN crop embeddings"
        else:
            boxes = coco_box_samples(
                data[0],
                images_dir,
                min_size=min_box_size,
                include_crowd=include_crowd,
            )
            if box_features is not None:
                features_name = f"--features {str(box_features)!r}"
                features_used = f"--features {box_features.name}"
                X = read_features(box_features)
                if X.shape[0] != len(boxes):
                    kept = boxes.filter_summary()["summary"]
                    raise DataValidationError(
                        f"--features has {X.shape[0]:,} rows but {data[0].name} has "
                        f"{len(boxes):,} boxes kept ({kept}); it needs one row per "
                        "kept box, in annotation order."
                    )
            else:
                X = crop_features(boxes, crop_size, verbose=verbose)
                features_name = "the box crops"
                features_used = f"crop pixels ({crop_size}x{crop_size} RGB)"
        class_names = list(boxes.class_names)
        labels = boxes.labels
        source = {"annotations": str(data[0]), "images": str(images_dir)}
        if fmt == "human" and not quiet:
            click.echo(
                f"Boxes of {data[0].name}: {boxes.filter_summary()['summary']}.",
                err=True,
            )
    elif len(data) == 2 and not any(p.is_dir() for p in data):
        features_name = f"FEATURES {str(data[0])!r}"
        features_used = f"FEATURES {data[0].name}"
        X = read_features(data[0])
        labels = read_labels(data[1])
        source = {"features": str(data[0]), "labels": str(data[1])}
    else:
        raise DataValidationError(
            "Pass FEATURES LABELS (two files), a workspace folder, or one COCO "
            f"JSON file with --images; got {len(data)} path(s): "
            f"{', '.join(p.name for p in data)}."
        )
    probs = None
    if pred_probs is not None:
        try:
            probs = np.load(pred_probs, allow_pickle=False)
        except ValueError as e:
            raise DataValidationError(
                f"Cannot read --pred-probs {str(pred_probs)!r}: {e}."
            ) from e
    with staged_output_dir(out, **guard) as stage:
        with cli_names({"features": features_name}):
            summary = run_label_issues(
                X,
                labels,
                stage,
                pred_probs=probs,
                class_name=None if class_name == "all" else class_name,
                top=top,
                export=export,
                boxes=boxes,
                class_names=class_names,
                features=features_used,
                features_info=features_info,
                random_state=seed,
                verbose=verbose,
                command={"data": [str(p) for p in data], "source": source},
                n_folds=folds,
                n_neighbors=neighbors,
                n_components=components,
            )
    if quiet and fmt != "json":
        return
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
    emit(
        fmt,
        "clusterlens.label_issues/1",
        {**summary, "out": str(out.absolute())},
        "\n".join(lines),
    )
