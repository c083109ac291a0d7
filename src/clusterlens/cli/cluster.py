"""``clusterlens cluster``: k-means over a workspace's BoVW, CNN or pixel features."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from clusterlens.cli._common import backend_options
from clusterlens.cli._run import run_ws_command
from clusterlens.cli._ws import stage_out, workspace_argument, ws_options
from clusterlens.cli.topics import _scores_text

EXAMPLES = """
\b
Examples:
  clusterlens cluster ws --features bow -k 2
  clusterlens cluster ws --features cnn -k 2 --l2
  clusterlens cluster coco-ws --features cnn-pca50 -k 21 --l2 --method ward
  clusterlens cluster mnist-ws --features ws/features/pixels-pca50 -k 10
"""


@click.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--features",
    default="bow",
    show_default=True,
    help="bow (WS/bow/tfidf.npz), cnn, pixels (WS/features/<name>), or a "
    "features folder / .npy file.",
)
@click.option("-k", "--n-clusters", type=click.IntRange(min=1), required=True)
@click.option("--n-init", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--max-iter", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--l2", is_flag=True, help="L2-normalise each feature row first.")
@click.option(
    "--method",
    type=click.Choice(["kmeans", "ward"]),
    default="kmeans",
    show_default=True,
    help="k-means (the engine), or Ward-linkage agglomerative clustering "
    "(scikit-learn; deterministic, memory quadratic in the items, at most "
    "20,000).",
)
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@backend_options
@ws_options
def cluster(
    ws: Path,
    features: str,
    n_clusters: int,
    n_init: int,
    max_iter: int,
    l2: bool,
    method: str,
    no_report: bool,
    backend: str | None,
    scheduler: str | None,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Cluster the items of WS (k-means or Ward) on one of their feature matrices.

    Writes OUT (default WS/clusters/<features>): results.parquet (index,
    item_id, label, cluster, distance), model.npz/json, report.html, run.json.
    """
    from clusterlens.pipelines.cluster_images import run_cluster_images

    dst = stage_out(ws, out, "clusters", Path(features).name.replace(".npy", ""))
    run_ws_command(
        ws,
        partial(
            run_cluster_images,
            features=features,
            n_clusters=n_clusters,
            n_init=n_init,
            max_iter=max_iter,
            l2_normalize=l2,
            method=method,
            random_state=seed,
            report=not no_report,
            command={"ws": str(ws)},
        ),
        out=dst,
        kind="clusters",
        overwrite=overwrite,
        inputs=[Path(features) if Path(features).exists() else None],
        backend=(backend, scheduler),
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.cluster-images/1",
        human=lambda s: (
            f"{'Ward' if method == 'ward' else 'k-means'}: {s['n_items']:,} items, "
            f"{s['n_features']}-d {features} features, {n_clusters} clusters, "
            f"inertia {s['inertia']:.6g}, {s['seconds']:.2f} s.{_scores_text(s)}\n"
            f"Wrote {dst}/"
        ),
    )
