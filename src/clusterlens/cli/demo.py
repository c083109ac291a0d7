"""``clusterlens demo``: explore real photos shipped inside installed packages
(or, with --digits, the k-means run on scikit-learn's digits)."""

from __future__ import annotations

from pathlib import Path

import click

from clusterlens.cli._common import common_options, verbosity
from clusterlens.cli._output import emit
from clusterlens.cli._run import run_command, run_staged

EXAMPLES = """
\b
Examples:
  clusterlens demo                      # then open clusterlens-demo/ws/report.html
  clusterlens demo --out my-demo --seed 3
  clusterlens demo --digits --out digits-demo --overwrite
"""


@click.command(epilog=EXAMPLES)
@click.option(
    "-k",
    "--n-clusters",
    "k",
    type=click.IntRange(min=2, max=100),
    default=None,
    help="Clusters (default: automatic for the photos, 10 for --digits).",
)
@click.option(
    "--digits",
    is_flag=True,
    help="The k-means demo on scikit-learn's 1,797 digits instead of explore.",
)
@common_options(default_out="clusterlens-demo")
def demo(
    k: int | None,
    digits: bool,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """The main job on real photos that ship with the installed packages.

    Copies the photos of scikit-image and scikit-learn (plus four planted
    variants: a small JPEG copy, a mirror image, a blurred and a darkened
    photo) to OUT/photos and runs clusterlens explore on them into OUT/ws:
    duplicates, outliers, image-quality issues, a map, a search index, a sample
    to label and clusters, all in OUT/ws/report.html. A second run reuses
    what is done. With --digits: the 1,797 digits of scikit-learn clustered
    with k-means and scored against their hidden labels.
    """
    if digits:
        _digits(k or 10, out, overwrite, fmt, quiet, seed)
        return
    from clusterlens.pipelines.demo import build_demo_folder
    from clusterlens.pipelines.explore import run_explore
    from clusterlens.utils._fs import output_kind

    photos = out / "photos"
    if output_kind(photos) != "demo-photos" or overwrite:
        run_staged(
            build_demo_folder, out=photos, kind="demo-photos", overwrite=overwrite
        )
    summary = run_explore(
        photos,
        out / "ws",
        n_clusters=k,
        overwrite=overwrite,
        random_state=seed,
        verbose=verbosity(quiet, fmt),
    )
    if quiet and fmt != "json":
        return
    st_ = summary["stages"]
    q = st_["quality"].get("counts", {})
    emit(
        fmt,
        "clusterlens.demo-explore/1",
        summary,
        f"Explored {summary['n_items']} photos in {summary['seconds']:.0f} s: "
        f"{st_['duplicates'].get('n_groups', 0)} duplicate groups, "
        f"{st_['outliers'].get('n_outliers', 0)} outliers, "
        f"{sum(q.values())} image-quality flags, a sample of "
        f"{st_['sample'].get('budget', 0)} to label, "
        f"{st_['clusters'].get('n_clusters', '?')} clusters.\n"
        f"Open {summary['report']}  (or: clusterlens review {summary['workspace']})",
    )


def _digits(
    k: int, out: Path, overwrite: bool, fmt: str, quiet: bool, seed: int
) -> None:
    from clusterlens.pipelines.demo import run_demo

    run_command(
        lambda stage: run_demo(
            stage, n_clusters=k, random_state=seed, verbose=verbosity(quiet, fmt)
        ),
        out=out,
        kind="demo",
        overwrite=overwrite,
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.demo/1",
        human=lambda s: (
            f"Clustered {s['n_samples']:,} digits into {k} clusters: "
            f"accuracy {s['accuracy']:.3f}, NMI {s['nmi']:.3f}, "
            f"ARI {s['ari']:.3f}, purity {s['purity']:.3f}.\n"
            f"Open {out / 'report.html'} to look at the clusters."
        ),
    )
