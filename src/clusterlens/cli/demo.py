"""``clusterlens demo``: the end-to-end run on scikit-learn's digits."""

from __future__ import annotations

from pathlib import Path

import click

from clusterlens.cli._common import common_options, verbosity
from clusterlens.cli._output import emit

EXAMPLES = """
\b
Examples:
  clusterlens demo
  clusterlens demo --out my-demo --seed 3 --overwrite
  clusterlens demo --format json --quiet --out /tmp/demo
"""


@click.command(epilog=EXAMPLES)
@click.option(
    "-k",
    "--n-clusters",
    "k",
    type=click.IntRange(min=2, max=100),
    default=10,
    show_default=True,
)
@common_options(default_out="clusterlens-demo")
def demo(k: int, out: Path, overwrite: bool, fmt: str, quiet: bool, seed: int) -> None:
    """Cluster the 1,797 handwritten digits shipped with scikit-learn, end to end.

    Pixels -> k-means -> accuracy / NMI / ARI against the hidden labels ->
    OUT/report.html (a thumbnail grid per cluster), assignments.parquet,
    model.npz + model.json and run.json.
    """
    from clusterlens.pipelines.demo import run_demo
    from clusterlens.utils._fs import staged_output_dir

    with staged_output_dir(out, overwrite=overwrite, kind="demo") as stage:
        summary = run_demo(
            stage, n_clusters=k, random_state=seed, verbose=verbosity(quiet, fmt)
        )
    if not quiet or fmt == "json":
        emit(
            fmt,
            "clusterlens.demo/1",
            {**summary, "out": str(out.absolute())},
            f"Clustered {summary['n_samples']:,} digits into {k} clusters: "
            f"accuracy {summary['accuracy']:.3f}, NMI {summary['nmi']:.3f}, "
            f"ARI {summary['ari']:.3f}, purity {summary['purity']:.3f}.\n"
            f"Open {out / 'report.html'} to look at the clusters.",
        )
