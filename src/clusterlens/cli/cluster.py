"""``clusterlens cluster``: k-means, Ward or a SCAN/IIC head over a feature matrix."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from clusterlens.cli._common import backend_options, verbosity
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
  clusterlens cluster ws --features cnn -k 10 --method scan
  clusterlens cluster ws --features cnn -k 50 --method scan --views cnn-mirror
  clusterlens cluster ws2 --features cnn -k 10 --method scan --head ws/clusters/cnn
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
    type=click.Choice(["kmeans", "ward", "scan", "iic"]),
    default="kmeans",
    show_default=True,
    help="k-means (the engine); Ward-linkage agglomerative clustering "
    "(scikit-learn; deterministic, memory quadratic in the items, at most "
    "20,000); scan: a clustering head trained on the embeddings so that "
    "each item and its nearest neighbours share a cluster, then "
    "self-labelled (SCAN; adds a probability column); iic: the same head "
    "trained with IIC's mutual-information objective on neighbour pairs.",
)
@click.option(
    "--neighbors",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="scan/iic: nearest neighbours mined per item.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="scan/iic: training passes of the head (default 30), then "
    "--self-label-epochs of self-labelling.",
)
@click.option(
    "--self-label-epochs",
    type=click.IntRange(min=0),
    default=None,
    help="scan/iic: self-labelling passes on the confidently clustered items "
    "(default 10; 0 skips it).",
)
@click.option(
    "--views",
    multiple=True,
    help="scan/iic: other features of the same items (e.g. the CNN on the "
    "mirrored images), used as augmentations while training; repeatable.",
)
@click.option(
    "--head",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="scan/iic: apply the head of an earlier run (its output folder or "
    "model.json) instead of training one.",
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
    neighbors: int,
    epochs: int | None,
    self_label_epochs: int | None,
    views: tuple[str, ...],
    head: Path | None,
    no_report: bool,
    backend: str | None,
    scheduler: str | None,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Cluster the items of WS (k-means, Ward, SCAN/IIC head) on one feature matrix.

    Writes OUT (default WS/clusters/<features>): results.parquet (index,
    item_id, label, cluster, distance; + probability for scan/iic),
    model.npz/json, report.html, run.json.
    """
    from clusterlens.pipelines.cluster_images import (
        HEAD_METHODS,
        METHOD_TITLES,
        run_cluster_images,
    )

    head_only = {
        "--neighbors": neighbors != 20,
        "--epochs": epochs is not None,
        "--self-label-epochs": self_label_epochs is not None,
        "--views": bool(views),
        "--head": head is not None,
    }
    if method not in HEAD_METHODS:
        used = [flag for flag, given in head_only.items() if given]
        if used:
            raise click.UsageError(
                f"{', '.join(used)} only apply to --method scan or iic."
            )
    head_params: dict[str, int] = {"n_neighbors": neighbors}
    if epochs is not None:
        head_params["epochs"] = epochs
    if self_label_epochs is not None:
        head_params["self_label_epochs"] = self_label_epochs

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
            views=views,
            head=head,
            head_params=head_params,
            verbose=verbosity(quiet, fmt),
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
            f"{METHOD_TITLES[method]}: {s['n_items']:,} items, "
            f"{s['n_features']}-d {features} features, {n_clusters} clusters, "
            + (
                f"mean probability {s['mean_probability']:.3f}"
                if method in HEAD_METHODS
                else f"inertia {s['inertia']:.6g}"
            )
            + f", {s['seconds']:.2f} s.{_scores_text(s)}\n"
            f"Wrote {dst}/"
        ),
    )
