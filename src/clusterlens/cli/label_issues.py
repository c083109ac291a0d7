"""``clusterlens label-issues``: rank samples by how likely their label is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clusterlens.cli._common import common_options, verbosity
from clusterlens.cli._output import emit

EXAMPLES = """
\b
Examples:
  clusterlens label-issues features.npy labels.csv --out issues --top 100
  clusterlens label-issues emb.parquet labels.parquet --class orange --out issues
  clusterlens label-issues features.npy labels.npy --pred-probs probs.npy --out i
  clusterlens label-issues \\
      ../shared/data/coco-sample/instances_coco128_train2017.json \\
      --images ../shared/data/coco-sample/images --out coco-issues --export
"""


@click.command("label-issues", epilog=EXAMPLES)
@click.argument(
    "data",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="COCO input: folder of the images (boxes are cropped from them).",
)
@click.option(
    "--features",
    "box_features",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="COCO input: precomputed features (.npy, one row per non-crowd box in "
    "annotation order, e.g. CNN embeddings) instead of crop pixels.",
)
@click.option(
    "--crop-size",
    type=click.IntRange(min=4, max=256),
    default=32,
    show_default=True,
    help="COCO input: crops are resized to this many pixels a side.",
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
@common_options()
def label_issues(
    data: tuple[Path, ...],
    images_dir: Path | None,
    box_features: Path | None,
    crop_size: int,
    pred_probs: Path | None,
    class_name: str,
    top: int,
    export: bool,
    folds: int,
    neighbors: int,
    components: int,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Rank samples by how likely their label is wrong.

    DATA is FEATURES LABELS (features .npy/.parquet; labels .npy/.csv/.parquet)
    or one COCO instances JSON with --images (one sample per non-crowd box).
    Writes OUT/label_issues.parquet (index, label, every score, issue_rank),
    suspected.csv, report.html, run.json and with --export label_studio.json.
    """
    import numpy as np

    from clusterlens.exceptions import DataValidationError
    from clusterlens.pipelines.label_issues import (
        coco_box_samples,
        crop_features,
        read_features,
        read_labels,
        run_label_issues,
    )
    from clusterlens.utils._fs import check_output_dir, staged_output_dir
    from clusterlens.utils._names import cli_names

    guard: dict[str, Any] = {
        "overwrite": overwrite,
        "kind": "label-issues",
        "inputs": [*data, images_dir, box_features, pred_probs],
    }
    check_output_dir(out, **guard)  # before the crops are embedded
    verbose = verbosity(quiet, fmt)
    features_name = "the box features"
    boxes = None
    class_names = None
    if len(data) == 1 and data[0].suffix.lower() == ".json":
        if images_dir is None:
            raise DataValidationError(
                "COCO input needs --images DIR, the folder that holds its images "
                "(boxes are cropped from them)."
            )
        boxes = coco_box_samples(data[0], images_dir)
        class_names = list(boxes.class_names)
        labels: Any = boxes.labels
        if box_features is not None:
            features_name = f"--features {str(box_features)!r}"
            X: Any = read_features(box_features)
            if X.shape[0] != len(boxes):
                raise DataValidationError(
                    f"--features has {X.shape[0]:,} rows but {data[0].name} has "
                    f"{len(boxes):,} non-crowd boxes; it needs one row per box, in "
                    "annotation order."
                )
        else:
            X = crop_features(boxes, crop_size, verbose=verbose)
            features_name = "the box crops"
        source = {"annotations": str(data[0]), "images": str(images_dir)}
    elif len(data) == 2:
        features_name = f"FEATURES {str(data[0])!r}"
        X = read_features(data[0])
        labels = read_labels(data[1])
        source = {"features": str(data[0]), "labels": str(data[1])}
    else:
        raise DataValidationError(
            "Pass FEATURES LABELS (two files) or one COCO JSON file with --images; "
            f"got {len(data)} file(s): {', '.join(p.name for p in data)}."
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
        f"{summary['n_samples']:,} samples, {summary['n_classes']} classes; "
        f"{summary['n_flagged']:,} flagged as likely mislabelled.",
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
