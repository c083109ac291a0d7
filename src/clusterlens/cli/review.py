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
  clusterlens review ws --reset            # start over (asks first)
  clusterlens review ws --host 0.0.0.0     # reachable from other machines, with a token
"""


def serve(app: Any, host: str, port: int, *, threads: int = 8) -> None:
    """Run the app with waitress (a production WSGI server) until interrupted."""
    from clusterlens.utils._optional import import_optional

    waitress = import_optional("waitress", extra="app", feature="clusterlens review")
    server = waitress.create_server(app, host=host, port=port, threads=threads)
    server.run()


@click.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--results",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Results Parquet with the clusters. Default: the results the review "
    "already reviews, or for a new review the newest under WS. Other results "
    "switch the review to them, keeping the labels already given.",
)
@click.option(
    "--issues",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="label_issues.parquet for the suspects queue (default: the newest under WS).",
)
@click.option(
    "--reset",
    is_flag=True,
    help="Start the review over: WS/review.sqlite is moved aside (to "
    "WS/review-<time>.sqlite.bak) after you confirm.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --reset.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but a loopback address exposes the app to the "
    "network, so it then needs an access token (printed once at start). The app "
    "answers only requests addressed to this host and port.",
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
    reset: bool,
    yes: bool,
    host: str,
    port: int,
    thumb_size: int,
    seed: int,
) -> None:
    """Review the clusters of WS in the browser: name whole clusters, reject the
    images that do not belong, merge, split, settle label-issue suspects, keep
    one copy of each duplicate group, browse every item with filters.

    Every action is saved at once to WS/review.sqlite; reopening resumes (with
    undo and redo). Only the app's own page can change the review: requests
    from other sites or for other host names get 403, and a request body is at
    most 2 MiB. Export the labels with: clusterlens export WS --format csv
    """
    import secrets

    from clusterlens.app._data import STORE_NAME, reset_review, stored_source
    from clusterlens.app._server import create_app, is_loopback

    if reset and (ws / STORE_NAME).exists():
        from clusterlens.app import ReviewStore  # noqa: F401  (the [app] code exists)

        src = stored_source(ws / STORE_NAME) or "?"
        if not yes:
            click.confirm(
                f"Start the review of {ws} over? Its labels and history (reviewing "
                f"{src}) are moved aside to a .bak file.",
                abort=True,
                err=True,
            )
        backup = reset_review(ws)
        click.echo(f"The old review is in {backup}; starting over.", err=True)
    token = None if is_loopback(host) else secrets.token_urlsafe(24)
    app = create_app(
        ws,
        results=results,
        issues=issues,
        thumb_size=thumb_size,
        random_state=seed,
        host=host,
        port=port or None,  # --port 0: a free port, known only once bound
        token=token,
    )
    store = app.config["STORE"]
    data = app.config["DATA"]
    if store.switched is not None:
        sw = store.switched
        click.echo(
            f"Switched the review from {sw['from']} to {sw['to']}: kept "
            f"{sw['n_kept']:,} labels given to items; {sw['n_clusters']} clusters "
            "to review (actions before the switch can no longer be undone).",
            err=True,
        )
    p = store.progress()
    shown = f"[{host}]" if ":" in host else host
    if host.strip("[]") in ("0.0.0.0", "::"):  # every address: name this machine
        import socket

        shown = socket.gethostname().lower()
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    click.echo(
        f"Reviewing {data.results_path} of {ws} ({p['n_items']:,} items, "
        f"{p['n_labelled']:,} labelled, {p['n_actions']} actions so far) at {url}  "
        "(Ctrl+C stops; nothing is lost)",
        err=True,
    )
    thumbs = app.config.get("THUMBS")
    if thumbs is not None and thumbs.progress()["running"]:
        click.echo(
            f"Making the grid's thumbnails of all {p['n_items']:,} items in the "
            f"background (kept in {thumbs.path.parent}; the pages work meanwhile).",
            err=True,
        )
    if token:
        click.echo(
            "The app is reachable from the network: only this address (with its "
            "access token, shown once) opens it.",
            err=True,
        )
    serve(app, host, port)
