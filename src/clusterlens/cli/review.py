"""``clusterlens review``: the local web app for cluster-then-label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clusterlens.cli._ws import workspace_argument

EXAMPLES = """
\b
Examples:
  clusterlens review ws
  clusterlens review ws --results ws/clusters/pixels-pca50/results.parquet --port 8765
  clusterlens review ws --host 0.0.0.0   # reachable from other machines
"""


def serve(app: Any, host: str, port: int) -> None:
    """Run the app with Werkzeug's threaded server until interrupted."""
    app.run(host=host, port=port, threaded=True, use_reloader=False, debug=False)


@click.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--results",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Results Parquet with the clusters (default: the newest under WS).",
)
@click.option(
    "--issues",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="label_issues.parquet for the suspects queue (default: the newest under WS).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but 127.0.0.1 exposes the app to the network. "
    "The app answers only requests addressed to this host and port (or localhost, "
    "on a loopback address; any IP address or this machine's name on 0.0.0.0).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--thumb-size", type=click.IntRange(16, 512), default=96, show_default=True
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def review(
    ws: Path,
    results: Path | None,
    issues: Path | None,
    host: str,
    port: int,
    thumb_size: int,
    seed: int,
) -> None:
    """Review the clusters of WS in the browser: name whole clusters, reject the
    images that do not belong, merge, split, settle label-issue suspects.

    Every action is saved at once to WS/review.sqlite; reopening resumes.
    Only the app's own page can change the review: requests from other sites or
    for other host names get 403, and a request body is at most 2 MiB.
    Export the labels with: clusterlens export WS --format csv
    """
    from clusterlens.app._server import create_app

    app = create_app(
        ws,
        results=results,
        issues=issues,
        thumb_size=thumb_size,
        random_state=seed,
        host=host,
        port=port or None,  # --port 0: a free port, known only once bound
    )
    store = app.config["STORE"]
    p = store.progress()
    click.echo(
        f"Reviewing {ws} ({p['n_items']:,} items, {p['n_labelled']:,} labelled, "
        f"{p['n_actions']} actions so far) at http://{host}:{port}/  (Ctrl+C stops; "
        "nothing is lost)",
        err=True,
    )
    serve(app, host, port)
