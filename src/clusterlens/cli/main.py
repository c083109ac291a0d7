"""Entry point: the ``clusterlens`` command group and its error handling."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from typing import Any

import click

from clusterlens.cli._errors import (
    COMMAND_KEY,
    HANDLED,
    debug_enabled,
    flag_names,
    format_error,
    format_unexpected,
    interrupted_message,
)

__all__ = ["cli", "main"]

EXAMPLES = """
\b
Examples:
  clusterlens explore photos/ --out ws
  clusterlens demo --out demo-out
  clusterlens kmeans descriptors.npy -k 1024 --out runs/km --seed 0
  clusterlens kmeans sift.fvecs -k 256 --out km --format json --quiet
  clusterlens anchors instances_train2017.json -k 9 --evolve 1000 --out anchors
  clusterlens vocab sift.bvecs -k 4096 --sample 500000 --out vocab
  clusterlens iic digits.npz --k 10 --epochs 3 --seed 0 --out iic
  clusterlens ingest images/ --out ws && clusterlens features sift ws
  clusterlens label-issues features.npy labels.csv --out issues --top 100
  clusterlens review ws && clusterlens export ws --format coco
"""


class _Group(click.Group):
    """A click group that turns known errors into one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HANDLED as e:
            if debug_enabled():
                raise
            click.echo(format_error(e, ctx.meta.get(COMMAND_KEY)), err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo(interrupted_message(ctx.meta.get(COMMAND_KEY)), err=True)
            ctx.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit):
            raise  # usage errors and exits: click reports them itself
        except click.exceptions.Abort:
            raise
        except Exception as e:  # a bug: still one line, never a traceback
            if debug_enabled():
                raise
            click.echo(format_unexpected(e), err=True)
            ctx.exit(1)


def _instrument(cmd: click.Command) -> None:
    """Make ``cmd`` (and a group's subcommands) record itself while it runs.

    The running command is kept in ``ctx.meta`` (shared by all contexts) for
    the error hints, and library messages name its flags (``--format-in``,
    not ``format=``) through :func:`clusterlens.utils._names.cli_names`.
    """
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _instrument(sub)
        return
    callback = cmd.callback
    if callback is None or getattr(callback, "_clusterlens_instrumented", False):
        return

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        from clusterlens.utils._names import cli_names

        ctx = click.get_current_context()
        ctx.meta[COMMAND_KEY] = ctx.command
        with cli_names(flag_names(ctx.command)):
            return callback(*args, **kwargs)

    run._clusterlens_instrumented = True  # type: ignore[attr-defined]
    cmd.callback = run


def _version() -> str:
    from clusterlens import __version__

    return __version__


@click.group(
    cls=_Group,
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(version=_version(), prog_name="clusterlens")
@click.option(
    "-v", "--verbose", count=True, help="Log INFO (-v) or DEBUG (-vv) to stderr."
)
def cli(verbose: int) -> None:
    """clusterlens: turn a pile of images into structure people act on.

    k-means at scale, visual vocabularies, and reports people can look at.
    """
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("clusterlens")
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _register() -> None:
    from clusterlens.cli.adapt import adapt
    from clusterlens.cli.anchors import anchors
    from clusterlens.cli.bow import bow
    from clusterlens.cli.cluster import cluster
    from clusterlens.cli.demo import demo
    from clusterlens.cli.evaluate import evaluate
    from clusterlens.cli.explore import VIEW_COMMANDS, explore
    from clusterlens.cli.export import export
    from clusterlens.cli.features import features
    from clusterlens.cli.iic import iic, iic_predict
    from clusterlens.cli.iic_seg import iic_seg, iic_seg_predict
    from clusterlens.cli.ingest import ingest
    from clusterlens.cli.kmeans import kmeans
    from clusterlens.cli.label_issues import label_issues
    from clusterlens.cli.review import review
    from clusterlens.cli.topics import topics
    from clusterlens.cli.vocab import vocab

    cli.add_command(anchors)
    cli.add_command(demo)
    cli.add_command(iic)
    cli.add_command(iic_predict)
    cli.add_command(iic_seg)
    cli.add_command(iic_seg_predict)
    cli.add_command(kmeans)
    cli.add_command(label_issues)
    cli.add_command(vocab)
    cli.add_command(ingest)
    cli.add_command(features)
    cli.add_command(adapt)
    cli.add_command(bow)
    cli.add_command(topics)
    cli.add_command(cluster)
    cli.add_command(evaluate)
    cli.add_command(review)
    cli.add_command(export)
    cli.add_command(explore)
    for command in VIEW_COMMANDS:
        cli.add_command(command)
    for command in cli.commands.values():
        _instrument(command)


_register()


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM ends the run as Ctrl-C does: staging folders are removed."""
    raise KeyboardInterrupt


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """Warnings as one line a user reads (``Warning: ...``), not file:line + source."""
    return f"Warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 handled error, 2 usage)."""
    import signal
    import warnings

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _terminate)
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    try:
        cli.main(args=argv, prog_name="clusterlens", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
