"""The map stage of ``explore`` in a process of its own.

UMAP costs a short ``explore`` seconds of one core: importing umap-learn
(numba, pynndescent; ~2 s) and a layout whose numba kernels hold the GIL.
In a thread of the ``explore`` process both fight the views and the clusters
for the interpreter; in a worker process started early, the imports run while
the collection is ingested and embedded, and the layout runs on the other core
beside the views.

The worker is ``python -m clusterlens.pipelines._map_worker``: it imports
what the map needs, then reads one JSON request from stdin (the workspace,
the seed, the stage's fingerprint), makes the map stage exactly as the
in-process path does (:func:`clusterlens.pipelines.curate.run_map` into the
staged ``map`` folder) and writes one JSON answer on its own copy of stdout
(anything a library prints goes to stderr). End of input before a request:
nothing to do, it exits.

A worker that cannot start, or dies without an answer, costs nothing but
time: :class:`MapWorker` then says so and the caller makes the map in its own
process. An error of the stage itself (a clusterlens error) comes back as the
same exception class with the same message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from clusterlens import exceptions

__all__ = ["MapWorker", "WorkerLost"]


class WorkerLost(RuntimeError):
    """The worker process could not start or ended without an answer."""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # the parent's import path (a source checkout, a test's sys.path), so the
    # worker runs the same clusterlens
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    # one core's worth: the other stages of explore use the rest
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMBA_NUM_THREADS",
    ):
        env[var] = "1"
    env["CLUSTERLENS_DISABLE_PROGRESS_BARS"] = "1"
    return env


class MapWorker:
    """A started worker process; :meth:`submit` once, then :meth:`result`."""

    def __init__(self) -> None:
        try:
            self._proc: subprocess.Popen[str] | None = subprocess.Popen(
                self._command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_child_env(),
                text=True,
            )
        except OSError:
            self._proc = None

    @staticmethod
    def _command() -> list[str]:
        return [sys.executable, "-m", "clusterlens.pipelines._map_worker"]

    def submit(self, ws_root: str, seed: int, want: Any, command: Any) -> None:
        """Ask for the map of the workspace at ``ws_root``."""
        if self._proc is None or self._proc.stdin is None:
            return
        request = {"ws": ws_root, "seed": seed, "want": want, "command": command}
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.close()
        except OSError:  # the worker is gone: result() says so
            pass

    def result(self) -> tuple[dict[str, Any], bool]:
        """The stage's (summary, reused), or the stage's own error.

        Raises
        ------
        WorkerLost
            When the worker did not start or ended without an answer.
        """
        if self._proc is None or self._proc.stdout is None:
            raise WorkerLost("the map worker did not start")
        line = self._proc.stdout.readline()
        self.close(answered=True)
        try:
            answer = json.loads(line)
        except ValueError:
            raise WorkerLost("the map worker ended without an answer") from None
        if answer.get("ok"):
            return dict(answer["summary"]), bool(answer["reused"])
        cls = getattr(exceptions, str(answer.get("type")), None)
        if isinstance(cls, type) and issubclass(cls, exceptions.ClusterlensError):
            raise cls(str(answer.get("message")))
        raise WorkerLost(f"the map worker failed: {answer.get('message')}")

    def close(self, answered: bool = False) -> None:
        """End the worker: once it has answered it exits by itself; before
        that (a failed run) it is stopped at once."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if not answered:
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serve(proto: Any) -> None:
    from pathlib import Path

    from clusterlens.curate._map import preload_umap

    preload_umap()
    line = sys.stdin.readline()
    if not line:
        return
    request = json.loads(line)
    from clusterlens.io import open_workspace
    from clusterlens.pipelines import curate as cv
    from clusterlens.pipelines._stages import run_stage

    try:
        ws = open_workspace(request["ws"])
        seed = int(request["seed"])
        summary, reused = run_stage(
            ws,
            Path(ws.root) / "map",
            "map",
            request["want"],
            lambda st: cv.run_map(
                ws, st, random_state=seed, command=request["command"]
            ),
        )
        answer: dict[str, Any] = {"ok": True, "summary": summary, "reused": reused}
    except exceptions.ClusterlensError as e:
        answer = {"ok": False, "type": type(e).__name__, "message": str(e)}
    except Exception as e:  # reported to the parent, which makes the map itself
        answer = {"ok": False, "type": None, "message": f"{type(e).__name__}: {e}"}
    proto.write(json.dumps(answer, default=str) + "\n")
    proto.flush()


def main() -> None:
    # answers on a private copy of stdout; whatever a library prints goes to
    # stderr and cannot garble them
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        _serve(proto)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group
        pass


if __name__ == "__main__":
    main()
