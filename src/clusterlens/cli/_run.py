"""The skeleton every writing command shares: stage folder, run, emit."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterlens.cli._common import backend_context
from clusterlens.cli._output import emit

if TYPE_CHECKING:
    from clusterlens.io import Workspace

__all__ = ["finish", "run_command", "run_staged", "run_ws_command"]

#: What a command runs: ``run(stage)`` writes into the staging folder
#: ``stage`` and returns the summary.
Runner = Callable[[Path], Mapping[str, Any]]
#: What a workspace command runs: ``run(workspace, stage)``, the signature of
#: the ``pipelines.run_*`` functions of a workspace stage.
WsRunner = Callable[["Workspace", Path], Mapping[str, Any]]


def run_staged(
    run: Runner,
    *,
    out: Path,
    kind: str,
    overwrite: bool,
    ws: Path | None = None,
    inputs: Iterable[Path | None] = (),
    backend: tuple[str | None, str | None] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Backend, staged output, run: the body of a writing command.

    Parameters
    ----------
    run : callable
        ``run(stage) -> summary``.
    out : Path
        The output folder; written only when ``run`` returns (everything goes
        into a staging folder first, see ``utils._fs.staged_output_dir``).
    kind : str
        What the folder holds (its marker; ``--overwrite`` replaces only a
        folder of the same kind).
    overwrite : bool
        ``--overwrite``.
    ws : Path, default=None
        The workspace the command reads (``out`` may hold it only where its
        stages write).
    inputs : iterable of Path or None, default=()
        Files and folders the command reads; ``out`` may not be or hold one.
    backend : (backend, scheduler), default=None
        ``--backend`` and ``--scheduler``: ``run`` runs in their config context.
    settings : mapping, default=None
        Other settings for :func:`clusterlens.config_context` (e.g.
        ``working_memory``).

    Returns
    -------
    summary : dict
        What ``run`` returned.
    """
    from clusterlens.utils._fs import staged_output_dir

    with ExitStack() as stack:
        if backend is not None:
            stack.enter_context(backend_context(*backend))
        if settings:
            from clusterlens._config import config_context

            stack.enter_context(config_context(**settings))
        stage = stack.enter_context(
            staged_output_dir(
                out, overwrite=overwrite, kind=kind, inputs=list(inputs), workspace=ws
            )
        )
        return dict(run(stage))


def finish(
    fmt: str,
    quiet: bool,
    schema: str,
    summary: Mapping[str, Any],
    out: Path | None,
    human: Callable[[Mapping[str, Any]], str],
) -> None:
    """Emit a command's result: JSON with ``schema``, or ``human(summary)``.

    Nothing is printed with ``--quiet`` and human output. With ``out`` the
    payload carries ``out`` (the folder, absolute).
    """
    if quiet and fmt != "json":
        return
    payload = dict(summary) if out is None else {**summary, "out": str(out.absolute())}
    emit(fmt, schema, payload, human(summary))


def run_command(
    run: Runner,
    *,
    out: Path,
    kind: str,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    schema: str,
    human: Callable[[Mapping[str, Any]], str],
    ws: Path | None = None,
    inputs: Iterable[Path | None] = (),
    backend: tuple[str | None, str | None] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`run_staged`, then :func:`finish`: a whole writing command.

    Returns the summary.
    """
    summary = run_staged(
        run,
        out=out,
        kind=kind,
        overwrite=overwrite,
        ws=ws,
        inputs=inputs,
        backend=backend,
        settings=settings,
    )
    finish(fmt, quiet, schema, summary, out, human)
    return summary


def run_ws_command(
    ws: Path,
    run: WsRunner,
    *,
    out: Path,
    kind: str,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    schema: str,
    human: Callable[[Mapping[str, Any]], str],
    inputs: Iterable[Path | None] = (),
    backend: tuple[str | None, str | None] | None = None,
) -> dict[str, Any]:
    """:func:`run_command` for a stage on the workspace ``ws``.

    The workspace is opened (and so checked) before anything is written, and
    ``run(workspace, stage)`` is called with it.
    """
    from clusterlens.io import open_workspace

    wsp = open_workspace(ws)
    return run_command(
        lambda stage: run(wsp, stage),
        out=out,
        kind=kind,
        overwrite=overwrite,
        fmt=fmt,
        quiet=quiet,
        schema=schema,
        human=human,
        ws=ws,
        inputs=inputs,
        backend=backend,
    )
