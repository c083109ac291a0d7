"""``clusterlens export``: reviewed labels as COCO, ImageFolder, Label Studio or CSV."""

from __future__ import annotations

from pathlib import Path

import click

from clusterlens.cli._run import run_command
from clusterlens.cli._ws import workspace_argument, ws_inputs

EXAMPLES = """
\b
Examples:
  clusterlens export ws --format csv
  clusterlens export ws --format imagefolder --copy --out dataset/
  clusterlens export ws --format labelstudio --out ls --overwrite
"""


@click.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["coco", "imagefolder", "labelstudio", "csv"]),
    required=True,
    help="coco: annotations.json; imagefolder: one folder per label; "
    "labelstudio: tasks.json with cluster names as predictions; csv: labels.csv.",
)
@click.option(
    "--results",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Results Parquet with the clusters (default: the ones under review, or "
    "the newest under WS). Results other than the review's are refused.",
)
@click.option("--copy", is_flag=True, help="imagefolder: copy images, not links.")
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
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
) -> None:
    """Write the labels of WS (from WS/review.sqlite) in one format.

    Unlabelled items are left out of COCO annotations and the ImageFolder tree;
    Label Studio tasks carry their cluster's name as a prediction.
    """
    import numpy as np

    from clusterlens.app._data import STORE_NAME, open_review
    from clusterlens.io._export import export_labels
    from clusterlens.utils._fs import check_output_dir

    dst = out if out is not None else ws / "export" / export_format
    kind = f"export/{export_format}"
    inputs = [results, *ws_inputs(ws)]
    # before the review store is opened
    check_output_dir(dst, overwrite=overwrite, kind=kind, inputs=inputs, workspace=ws)
    # never creates WS/review.sqlite: exporting is not reviewing
    data, store = open_review(
        ws, results=results, issues=None, create=False, switch=False
    )
    if store is None:
        labels: list[str | None] = [None] * len(data)
        assignment = data.cluster
        names: dict[int, str | None] = {
            int(c): None for c in np.unique(data.cluster[data.cluster >= 0])
        }
        if not quiet:
            click.echo(
                f"note: {ws / STORE_NAME} does not exist (nothing reviewed yet): "
                "exporting the clusters without labels. Label them first with: "
                f"clusterlens review {ws}",
                err=True,
            )
    else:
        labels = store.labels()
        assignment = store.assignment()
        names = store.cluster_names()
    try:
        run_command(
            lambda stage: export_labels(
                data.workspace,
                labels,
                stage,
                fmt=export_format,
                cluster=assignment,
                cluster_names=names,
                copy=copy,
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
            human=lambda s: (
                f"Exported {s['n_labelled']:,} of {s['n_items']:,} items as "
                f"{export_format}.\nWrote {dst}/"
            ),
        )
    finally:
        if store is not None:
            store.close()
