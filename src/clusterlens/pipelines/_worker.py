"""The map and the clusters of ``explore`` in a process of its own.

Both cost a short ``explore`` seconds of one core that are mostly imports:
umap-learn (numba, pynndescent) and scikit-learn (under the k-means
estimator), and UMAP's layout holds the GIL. In threads of the ``explore``
process they fight the views for the interpreter; in a worker process started
after ingest, the imports run while the collection is embedded, and both
stages run on the other core beside the views.

The worker is ``python -m clusterlens.pipelines._worker``: it imports what
the stages need, then reads one JSON request from stdin (the workspace and,
per job, its fingerprint and settings), makes each job's stage exactly as the
in-process path does (:func:`clusterlens.pipelines._stages.map_stage`,
:func:`~clusterlens.pipelines._stages.clusters_stage`), each in a thread, and
writes one JSON answer per job on its own copy of stdout (anything a library
prints goes to stderr). End of input before a request: nothing to do, it
exits.

A worker that cannot start, or dies without an answer, costs nothing but
time: :meth:`StageWorker.result` raises :class:`WorkerLost` and the caller
makes the stage in its own process. An error of a stage itself (a clusterlens
error) comes back as the same exception class with the same message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

from clusterlens import exceptions

__all__ = ["JOBS", "StageWorker", "WorkerLost"]

#: The stages a worker makes.
JOBS = ("map", "clusters")


class WorkerLost(RuntimeError):
    """The worker process could not start or ended without an answer."""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # the parent's import path (a source checkout, a test's sys.path), so the
    # worker runs the same clusterlens
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    # one core's worth: the views of explore use the other
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMBA_NUM_THREADS",
    ):
        env[var] = "1"
    env["CLUSTERLENS_DISABLE_PROGRESS_BARS"] = "1"
    return env


class StageWorker:
    """A started worker: :meth:`submit` once, then :meth:`result` per job
    (from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        self._asked: set[str] = set()
        #: closed by :meth:`close` (a failed or interrupted run): a lost
        #: answer is then no reason to make the stage elsewhere
        self.closed = False
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
        return [sys.executable, "-m", "clusterlens.pipelines._worker"]

    def submit(self, ws_root: str, jobs: dict[str, dict[str, Any]]) -> None:
        """Ask for ``jobs`` (name -> settings, see :data:`JOBS`) of the
        workspace at ``ws_root``."""
        self._asked = set(jobs)
        if self._proc is None or self._proc.stdin is None:
            return
        try:
            self._proc.stdin.write(json.dumps({"ws": ws_root, "jobs": jobs}) + "\n")
            self._proc.stdin.close()
        except OSError:  # the worker is gone: result() says so
            pass

    def _answer(self, name: str) -> dict[str, Any]:
        with self._lock:
            while name not in self._answers:
                proc = self._proc
                if proc is None or proc.stdout is None:
                    raise WorkerLost("the worker did not start")
                try:
                    answer = json.loads(proc.stdout.readline())
                    self._answers[str(answer["job"])] = answer
                except (ValueError, KeyError, TypeError, OSError):
                    raise WorkerLost("the worker ended without an answer") from None
            return self._answers[name]

    def result(self, name: str) -> tuple[dict[str, Any], bool]:
        """Job ``name``'s (summary, reused), or the stage's own error.

        Raises
        ------
        WorkerLost
            When the worker did not start or ended without this answer.
        """
        answer = self._answer(name)
        if answer.get("ok"):
            return dict(answer["summary"]), bool(answer["reused"])
        cls = getattr(exceptions, str(answer.get("type")), None)
        if isinstance(cls, type) and issubclass(cls, exceptions.ClusterlensError):
            raise cls(str(answer.get("message")))
        raise WorkerLost(f"the worker failed: {answer.get('message')}")

    def close(self) -> None:
        """End the worker: once it has answered every job it exits by
        itself; before that (a failed run) it is stopped at once."""
        self.closed = True
        # no lock: a thread may be waiting in _answer() holding it; killing
        # the process ends its read (EOF -> WorkerLost)
        proc = self._proc
        if proc is None:
            return
        if not self._asked or not self._asked <= set(self._answers):
            proc.kill()
        with self._lock:
            self._proc = None
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


def _job(ws: Any, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    from clusterlens.pipelines._stages import clusters_stage, map_stage

    try:
        seed = int(settings["seed"])
        if name == "map":
            summary, reused = map_stage(
                ws, settings["want"], seed, settings.get("command")
            )
        elif name == "clusters":
            summary, reused = clusters_stage(
                ws, int(settings["k"]), seed, settings["want"]
            )
        else:
            raise ValueError(f"unknown job {name!r}")
        return {"job": name, "ok": True, "summary": summary, "reused": reused}
    except exceptions.ClusterlensError as e:
        return {"job": name, "ok": False, "type": type(e).__name__, "message": str(e)}
    except Exception as e:  # reported to the parent, which makes the stage itself
        return {"job": name, "ok": False, "type": None, "message": f"{e!r}"}


def _serve(proto: Any) -> None:
    import importlib

    from clusterlens.curate._map import preload_umap

    preload_umap()
    importlib.import_module("clusterlens.cluster")  # scikit-learn
    line = sys.stdin.readline()
    if not line:
        return
    request = json.loads(line)
    from clusterlens.io import open_workspace

    lock = threading.Lock()

    def answer(a: dict[str, Any]) -> None:
        with lock:
            proto.write(json.dumps(a, default=str) + "\n")
            proto.flush()

    try:
        ws = open_workspace(request["ws"])
    except exceptions.ClusterlensError as e:
        for name in request["jobs"]:
            answer(
                {"job": name, "ok": False, "type": type(e).__name__, "message": str(e)}
            )
        return
    threads = [
        threading.Thread(
            target=lambda n=name, s=settings: answer(_job(ws, n, s)), daemon=True
        )
        for name, settings in request["jobs"].items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


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
