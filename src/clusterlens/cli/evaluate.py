"""``clusterlens evaluate``: accuracy / NMI / ARI / purity of a run against labels."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clusterlens.cli._output import emit

EXAMPLES = """
\b
Examples:
  clusterlens evaluate ws/topics
  clusterlens evaluate ws/clusters/cnn --format json
  clusterlens evaluate run/results.parquet --labels ws/items.parquet
"""


@click.command(epilog=EXAMPLES)
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Parquet with index and label columns (default: the run's label column).",
)
@click.option(
    "--column", default=None, help="Prediction column (default: cluster, else topic)."
)
@click.option(
    "--save",
    is_flag=True,
    help="Also write evaluation.json beside the results.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
)
def evaluate(
    run: Path, labels: Path | None, column: str | None, save: bool, fmt: str
) -> None:
    """Score the clustering in RUN (a folder with results.parquet) against labels.

    Prints accuracy (Hungarian matching; majority when there are more clusters
    than classes), NMI, ARI, purity and each cluster's size and purity.
    """
    from clusterlens.pipelines.evaluate import evaluate_run
    from clusterlens.utils._fs import atomic_write_text

    scores = evaluate_run(run, labels=labels, column=column)
    if save:
        target = (run if run.is_dir() else run.parent) / "evaluation.json"
        atomic_write_text(target, json.dumps(scores, indent=2) + "\n")
    lines = [
        f"{scores['n_labelled']:,} labelled items, {scores['n_clusters']} clusters, "
        f"{scores['n_classes']} classes: accuracy {scores['accuracy']:.4f}, NMI "
        f"{scores['nmi']:.4f}, ARI {scores['ari']:.4f}, purity {scores['purity']:.4f}",
        "cluster  size  majority  purity",
    ]
    for c in sorted(scores["clusters"], key=lambda c: -c["size"]):
        lines.append(
            f"{c['cluster']:>7}  {c['size']:>4}  {c['majority']!s:>8}  "
            f"{c['purity']:.3f}"
        )
    emit(fmt, "clusterlens.evaluate/1", scores, "\n".join(lines))
