"""``clusterlens anchors``: anchor boxes for detectors by k-means under 1 - IoU."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from clusterlens.cli._common import common_options, verbosity
from clusterlens.cli._run import run_command
from clusterlens.io._boxes import MIN_BOX_SIZE

if TYPE_CHECKING:
    from clusterlens.io import BoxTable

EXAMPLES = """
\b
Examples:
  clusterlens anchors instances_train2017.json instances_val2017.json -k 9 --out anchors
  clusterlens anchors ../shared/data/voc2007/annotations/pascal_train2007.json \\
      ../shared/data/voc2007/annotations/pascal_val2007.json -k 9 --evolve 1000 \\
      --out voc-anchors
  clusterlens anchors datasets/coco128/labels -k 9 --img-size 640 --levels 3 --out a
  clusterlens anchors VOCdevkit/VOC2007/Annotations -k 5 --normalized --out a
  clusterlens anchors data.json --evaluate "10,13, 16,30, 33,23, 30,61, 62,45, \\
      59,119, 116,90, 156,198, 373,326" --out yolov3-eval
"""


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _refuse_duplicates(data: tuple[Path, ...]) -> None:
    """The same file twice would count each of its boxes twice: a usage error."""
    seen: dict[Path, Path] = {}
    for p in data:
        key = p.resolve()
        if key in seen:
            same = "" if str(seen[key]) == str(p) else f" and {str(p)!r}"
            raise click.BadParameter(
                f"{str(seen[key])!r}{same} name the same file ({key}) twice; its "
                "boxes would count twice. Give each annotation file once.",
                param_hint="DATA",
            )
        seen[key] = p


@click.command(epilog=EXAMPLES)
@click.argument(
    "data",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, readable=True, path_type=Path),
)
@click.option(
    "-k",
    "--n-anchors",
    "k",
    type=click.IntRange(min=1),
    default=9,
    show_default=True,
    help="Number of anchors.",
)
@click.option(
    "--img-size",
    type=click.IntRange(min=1),
    default=640,
    show_default=True,
    help="Detector input size; boxes are letterboxed to it.",
)
@click.option(
    "--normalized",
    is_flag=True,
    help="Cluster w/img_w, h/img_h instead of letterboxed pixels.",
)
@click.option(
    "--levels",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Detection levels to split the anchors over (by area).",
)
@click.option(
    "--n-init",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="k-means restarts; the highest mean IoU is kept.",
)
@click.option(
    "--update",
    type=click.Choice(["mean", "median"]),
    default="mean",
    show_default=True,
    help="Move each anchor to the mean or median w, h.",
)
@click.option(
    "--evolve",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Generations of genetic refinement after k-means.",
)
@click.option(
    "--fitness",
    type=click.Choice(["iou", "ratio", "both"]),
    default="both",
    show_default=True,
    help="What --evolve maximises.",
)
@click.option(
    "--ratio-thr",
    type=click.FloatRange(min=1, min_open=True),
    default=4.0,
    show_default=True,
    help="Ultralytics anchor_t for BPR and fitness.",
)
@click.option(
    "--categories",
    default=None,
    help="Comma-separated category names to keep (default: all).",
)
@click.option("--include-crowd", is_flag=True, help="Keep COCO iscrowd boxes.")
@click.option(
    "--min-size",
    type=click.FloatRange(min=0),
    default=MIN_BOX_SIZE,
    show_default=True,
    help="Drop boxes narrower or lower than this many pixels (the default of "
    "ingest --boxes and label-issues too).",
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="YOLO: folder of the images (for their sizes).",
)
@click.option(
    "--label-img-size",
    default=None,
    type=click.IntRange(min=1),
    help="YOLO without images: the size of every image, in pixels.",
)
@click.option(
    "--evaluate",
    default=None,
    help="Evaluate these anchors ('w1,h1, w2,h2, ...', pixels at --img-size) "
    "instead of fitting.",
)
@common_options()
def anchors(
    data: tuple[Path, ...],
    k: int,
    img_size: int,
    normalized: bool,
    levels: int,
    n_init: int,
    update: str,
    evolve: int,
    fitness: str,
    ratio_thr: float,
    categories: str | None,
    include_crowd: bool,
    min_size: float,
    images_dir: Path | None,
    label_img_size: int | None,
    evaluate: str | None,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Anchor boxes from COCO JSON file(s), a YOLO labels folder or VOC XMLs.

    Writes OUT/anchors.json, anchors.cfg (YOLOv3 line), anchors.yaml (YOLOv5/v8
    block), boxes.parquet, report.html and run.json, and prints the anchors
    with their mean IoU, BPR, anchors-above-threshold and fitness.
    """
    from clusterlens.anchors import parse_anchors
    from clusterlens.io import read_boxes
    from clusterlens.pipelines import run_anchors

    _refuse_duplicates(data)
    given = parse_anchors(evaluate) if evaluate is not None else None
    filters: dict[str, object] = {"min_size": min_size}
    if categories is not None:
        filters["categories"] = _csv(categories)
    suffixes = {p.suffix.lower() for p in data}
    if suffixes == {".json"}:
        filters["include_crowd"] = include_crowd
    if images_dir is not None:
        filters["images_dir"] = images_dir
    if label_img_size is not None:
        filters["img_size"] = label_img_size
    source = list(data) if len(data) > 1 else data[0]
    table = read_boxes(source, **filters)  # validates before any output
    run_command(
        lambda stage: run_anchors(
            table,
            stage,
            n_anchors=k,
            img_size=img_size,
            normalized=normalized,
            levels=levels,
            n_init=n_init,
            update=update,
            evolve=evolve,
            fitness=fitness,
            ratio_thr=ratio_thr,
            evaluate=given,
            random_state=seed,
            verbose=verbosity(quiet, fmt),
            command={"data": [str(p) for p in data]},
        ),
        out=out,
        kind="anchors",
        overwrite=overwrite,
        inputs=[*data, images_dir],
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.anchors/1",
        human=lambda s: _human(s, table, out),
    )


def _human(summary: Mapping[str, Any], table: BoxTable, out: Path) -> str:
    """The anchors, their scores and the two config snippets, for a person."""
    f = summary["figures"]
    rows = "\n".join(
        f"  {i:>2}  {w:8.1f} {h:8.1f}" for i, (w, h) in enumerate(summary["anchors"])
    )
    fixed = ""
    if table.n_clipped or table.n_outside:
        fixed = (
            f" ({table.n_clipped:,} clipped to their image, {table.n_outside:,} "
            "outside it dropped)"
        )
    return (
        f"{summary['n_boxes']:,} boxes{fixed} ({table.source}; "
        f"{summary['box_filter']['summary']}); anchors in "
        f"{summary['units']}, sorted by area:\n   #         w        h\n{rows}\n"
        f"mean IoU {f['mean_iou']:.4f}  BPR {f['bpr']:.4f}  anchors above thr "
        f"{f['aat']:.2f}  fitness {f['fitness']:.4f}\n\n"
        f"{summary['darknet_cfg']}\n\n{summary['yolov5_yaml']}\n\n"
        f"Wrote {out}/: anchors.json, anchors.cfg, anchors.yaml, boxes.parquet, "
        "report.html, run.json"
    )
