"""``clusterlens topics``: LDA topics over a workspace's visual words."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import click

from clusterlens.cli._run import run_ws_command
from clusterlens.cli._ws import stage_out, workspace_argument, ws_options

EXAMPLES = """
\b
Examples:
  clusterlens topics ws -k 20
  clusterlens topics ws -k 2 --spatial 2 --out ws/topics-spatial
"""


def _scores_text(summary: Mapping[str, Any]) -> str:
    if "accuracy" not in summary:
        return ""
    return (
        f"\nAgainst {summary['n_labelled']:,} labels: accuracy "
        f"{summary['accuracy']:.4f}, "
        f"NMI {summary['nmi']:.4f}, ARI {summary['ari']:.4f}, purity "
        f"{summary['purity']:.4f}."
    )


@click.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "-k", "--n-topics", type=click.IntRange(min=1), default=20, show_default=True
)
@click.option(
    "--bow",
    "bow_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Bag-of-words folder (default WS/bow).",
)
@click.option(
    "--spatial",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Documents are the cells of a GRID x GRID mesh over each image (0: whole "
    "images); an image's topic mixes its cells' weighted by word count.",
)
@click.option(
    "--learning-method",
    type=click.Choice(["online", "batch"]),
    default="online",
    show_default=True,
)
@click.option("--max-iter", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=128, show_default=True
)
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@ws_options
def topics(
    ws: Path,
    n_topics: int,
    bow_dir: Path | None,
    spatial: int,
    learning_method: str,
    max_iter: int,
    batch_size: int,
    no_report: bool,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Fit LDA on visual-word counts; each image's cluster is its top topic.

    Writes OUT (default WS/topics): results.parquet, doc_topic.npy,
    topic_word.npy, divergence.npy (symmetric KL between topics), topics.json
    (top words and images per topic), report.html and run.json.
    """
    from clusterlens.pipelines.topics import run_topics

    dst = stage_out(ws, out, "topics")
    run_ws_command(
        ws,
        partial(
            run_topics,
            n_topics=n_topics,
            bow_dir=bow_dir,
            spatial=spatial,
            learning_method=learning_method,
            max_iter=max_iter,
            batch_size=batch_size,
            random_state=seed,
            report=not no_report,
            command={"ws": str(ws)},
        ),
        out=dst,
        kind="topics",
        overwrite=overwrite,
        inputs=[bow_dir],
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.topics/1",
        human=lambda s: (
            f"LDA: {n_topics} topics ({s['topics_used']} used as an image's top "
            f"topic), perplexity {s['perplexity']:.6g}, mean symmetric KL "
            f"{s['mean_symmetric_kl']:.4g}, {s['seconds']:.1f} s."
            f"{_scores_text(s)}\nWrote {dst}/"
        ),
    )
