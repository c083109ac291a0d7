"""``clusterlens export``: labels as COCO, YOLO, ImageFolder, Label Studio or CSV."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from clusterlens.cli._run import run_command
from clusterlens.cli._ws import workspace_argument, ws_inputs

EXAMPLES = """
\b
Examples:
  clusterlens export ws --format csv
  clusterlens export ws --format coco
  clusterlens export boxes-ws --format yolo --link hardlink
  clusterlens export ws --format imagefolder --copy --out dataset/
  clusterlens export ws --format labelstudio --out ls --overwrite
"""


@click.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["coco", "yolo", "imagefolder", "labelstudio", "csv"]),
    required=True,
    help="coco: annotations.json (boxes stay boxes of their source images); "
    "yolo: images/, labels/*.txt, data.yaml (box workspaces only); imagefolder: "
    "one folder per label; labelstudio: tasks.json with the labels as "
    "annotations and cluster names / label-issue fixes as scored predictions; "
    "csv: labels.csv.",
)
@click.option(
    "--results",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Results Parquet with the clusters (default: the ones under review, or "
    "the newest under WS). Results other than the review's are refused.",
)
@click.option(
    "--copy", is_flag=True, help="imagefolder, yolo: copy the images, not links."
)
@click.option(
    "--link",
    type=click.Choice(["symlink", "hardlink"]),
    default=None,
    help="imagefolder, yolo: link the images with symbolic links (the default) "
    "or hard links (same file system only; survive moving the originals).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: WS/export/<format>).",
)
@click.option("--overwrite", is_flag=True, help="Replace the output folder.")
@click.option(
    "--print",
    "fmt",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    help="What to print on stdout.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def export(
    ws: Path,
    export_format: str,
    results: Path | None,
    copy: bool,
    link: str | None,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
) -> None:
    """Write the labels of WS (from WS/review.sqlite) in one format.

    Unlabelled items are left out of COCO annotations, YOLO labels and the
    ImageFolder tree; items marked duplicate (the review's "keep one") or
    rejected into the pool are left out of every format, and the summary says
    how many. YOLO writes an image only when every box of it is labelled.
    """
    from clusterlens.app._data import STORE_NAME, open_review
    from clusterlens.app._export import export_review
    from clusterlens.utils._fs import check_output_dir

    if copy and link is not None:
        raise click.UsageError("Pass --copy or --link, not both.")
    files = "copy" if copy else (link or "symlink")
    dst = out if out is not None else ws / "export" / export_format
    kind = f"export/{export_format}"
    inputs = [results, *ws_inputs(ws)]
    # before the review store is opened
    check_output_dir(dst, overwrite=overwrite, kind=kind, inputs=inputs, workspace=ws)
    # never creates WS/review.sqlite: exporting is not reviewing
    data, store = open_review(
        ws, results=results, issues=None, create=False, switch=False
    )
    if store is None and not quiet:
        click.echo(
            f"note: {ws / STORE_NAME} does not exist (nothing reviewed yet): "
            "exporting the clusters without labels. Label them first with: "
            f"clusterlens review {ws}",
            err=True,
        )
    try:
        run_command(
            lambda stage: export_review(
                data,
                store,
                stage,
                fmt=export_format,
                files=files,
                final=dst,
                verbose=0 if quiet or fmt == "json" else 1,
            ),
            out=dst,
            kind=kind,
            overwrite=overwrite,
            ws=ws,
            inputs=inputs,
            fmt=fmt,
            quiet=quiet,
            schema="clusterlens.export/1",
            human=lambda s: _human(s, export_format, dst),
        )
    finally:
        if store is not None:
            store.close()


def _human(s: Mapping[str, Any], export_format: str, dst: Path) -> str:
    from clusterlens.io._export import describe_skipped

    lines = [
        f"Exported {s['n_labelled']:,} labelled of {s['n_items']:,} items as "
        f"{export_format}."
    ]
    skipped = describe_skipped(s.get("skipped", {}))
    if skipped:
        lines.append(skipped[0].upper() + skipped[1:] + ".")
    if s.get("n_images_incomplete"):
        lines.append(
            f"Left out {s['n_images_incomplete']:,} images with boxes not labelled "
            "yet (YOLO would learn those objects as background); label them in "
            "the review."
        )
    if export_format == "labelstudio":
        lines.append(
            f"{s['n_tasks']:,} tasks: {s['n_annotated']:,} with annotations, "
            f"{s['n_predicted']:,} with predictions."
        )
    lines.append(f"Wrote {dst}/")
    return "\n".join(lines)
