"""``clusterlens explore`` and the curation views as sub-commands on a workspace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from clusterlens.cli._common import (
    backend_context,
    backend_options,
    format_option,
    quiet_option,
    seed_option,
    verbosity,
)
from clusterlens.cli._output import emit
from clusterlens.cli._run import run_staged
from clusterlens.cli._ws import workspace_argument

EXAMPLES = """
\b
Examples:
  clusterlens explore photos/ --out ws          # then open ws/report.html
  clusterlens explore ws                        # continue, or refresh, a workspace
  clusterlens explore instances.json --boxes --out coco-ws -k 60
  clusterlens review ws
"""

_FMT = format_option
_QUIET = quiet_option
_SEED = seed_option


@click.command(epilog=EXAMPLES)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The workspace to create or continue (default: SOURCE when it is one).",
)
@click.option(
    "-k",
    "--n-clusters",
    type=click.IntRange(min=2),
    default=None,
    help="Clusters (default: about sqrt(n/2), over-clustered for labelling).",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=None,
    help="Items in the sample to label (default: 2 %, 10 to 1,000).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=None,
    help="Near-duplicate cosine similarity of the embeddings (default 0.90).",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=32, max=1024),
    default=None,
    help="CNN input side in pixels (default: 224; for images under 56 px a side, "
    "four times their side, at least 160).",
)
@click.option("--boxes", is_flag=True, help="COCO: one item per box crop.")
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="COCO: folder of the images (default: images/ beside the JSON).",
)
@click.option("--split", default=None, help="Keep only this split (train, val, test).")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start over: replace the workspace --out (even one of another source) "
    "instead of continuing it.",
)
@click.option(
    "--n-jobs", type=click.IntRange(min=1, max=64), default=2, show_default=True
)
@backend_options
@_FMT
@_QUIET
@_SEED
def explore(
    source: Path,
    out: Path | None,
    n_clusters: int | None,
    budget: int | None,
    threshold: float | None,
    image_size: int | None,
    boxes: bool,
    images: Path | None,
    split: str | None,
    overwrite: bool,
    n_jobs: int,
    backend: str | None,
    scheduler: str | None,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Everything a person must look at in SOURCE, in one workspace and one report.

    SOURCE is an image folder, a COCO JSON (whole images or --boxes), an MNIST
    IDX folder, an .npz with 'images', or a workspace. Runs ingest, CNN
    embeddings, duplicates, outliers, image-quality issues, a 2-D map, a search
    index, a sample to label, clusters and (with labels) label issues, and
    writes WS/report.html. A rerun reuses every stage that is done and valid.
    With --backend dask (or --scheduler) the CNN embeddings, the neighbour
    search and the clusters run on a Dask cluster.
    """
    from clusterlens.pipelines.explore import run_explore

    with backend_context(backend, scheduler):
        summary = run_explore(
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
            random_state=seed,
            verbose=verbosity(quiet, fmt),
        )
    if quiet and fmt != "json":
        return
    st = summary["stages"]
    q = st.get("quality", {}).get("counts", {})
    issues = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in q.items() if v)
    li = st.get("label-issues", {})
    lines = [
        f"Explored {summary['n_items']:,} items in {summary['seconds']:.1f} s "
        f"({summary['images_per_second']:.1f} images/s"
        + (f"; reused: {', '.join(summary['reused'])}" if summary["reused"] else "")
        + ").",
        f"  duplicates: {st['duplicates'].get('n_groups', 0):,} groups, "
        f"{st['duplicates'].get('n_redundant', 0):,} redundant items",
        f"  outliers: {st['outliers'].get('n_outliers', 0):,}",
        f"  quality: {issues or 'no issue found'}"
        + (
            f"; {st['quality'].get('n_unreadable', 0)} unreadable"
            if st["quality"].get("n_unreadable")
            else ""
        ),
        f"  map: {st['map'].get('method', '?')}; index: {st['index'].get('kind', '?')}",
        f"  sample to label: {st['sample'].get('budget', 0):,} items",
        f"  clusters: {st['clusters'].get('n_clusters', '?')}",
        "  label issues: "
        + (li["skipped"] if "skipped" in li else f"{li.get('n_flagged', '?')} flagged"),
        f"Open {summary['report']}  (or: clusterlens review {summary['workspace']})",
    ]
    emit(fmt, "clusterlens.explore/1", summary, "\n".join(lines))


# --------------------------------------------------------------------------- #
# One view at a time
# --------------------------------------------------------------------------- #
def _run_view(
    ws: Path,
    name: str,
    fn: Callable[..., dict[str, Any]],
    fmt: str,
    human: Callable[[dict[str, Any], Path], str],
    quiet: bool,
    backend: str | None = None,
    scheduler: str | None = None,
    **kwargs: Any,
) -> None:
    from clusterlens.io import open_workspace

    wsp = open_workspace(ws)
    dst = ws / name
    summary = run_staged(
        lambda stage: fn(
            wsp,
            stage,
            verbose=verbosity(quiet, fmt),
            command={"command": name, "ws": str(ws)},
            **kwargs,
        ),
        out=dst,
        kind=name,
        overwrite=True,
        ws=ws,
        backend=(backend, scheduler),
    )
    if quiet and fmt != "json":
        return
    emit(
        fmt, f"clusterlens.{name}/1", {**summary, "out": str(dst)}, human(summary, dst)
    )


#: The views that compute WS/neighbors when it is missing (the heavy search).
_NEIGHBOR_VIEWS = ("duplicates", "outliers", "map")


def _view_command(name: str, help_text: str) -> Callable[[Any], Any]:
    def deco(f: Any) -> Any:
        f = _SEED(_QUIET(_FMT(f))) if name in ("map", "index") else _QUIET(_FMT(f))
        if name in _NEIGHBOR_VIEWS:
            f = backend_options(f)
        return click.command(name=name, help=help_text)(workspace_argument(f))

    return deco


@_view_command(
    "scan",
    "Decode every item once: content hashes and image properties (WS/scan/).",
)
@click.option(
    "--n-jobs", type=click.IntRange(min=1, max=64), default=2, show_default=True
)
def scan(ws: Path, n_jobs: int, fmt: str, quiet: bool) -> None:
    from clusterlens.pipelines.curate import run_scan

    _run_view(
        ws,
        "scan",
        run_scan,
        fmt,
        lambda s, d: (
            f"Scanned {s['n_items']:,} items ({s['n_unreadable']} "
            f"unreadable) at {s['images_per_second']:.0f} images/s.\nWrote {d}/"
        ),
        quiet,
        n_jobs=n_jobs,
    )


@_view_command(
    "duplicates",
    "Exact and near-duplicate groups, one representative each (WS/duplicates/).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=None,
    help="Near-duplicate cosine similarity of the CNN embeddings (default 0.90: "
    "resized, recompressed, mirrored or re-exposed copies pass it, different "
    "photos of one subject rarely do).",
)
def duplicates(
    ws: Path,
    threshold: float | None,
    backend: str | None,
    scheduler: str | None,
    fmt: str,
    quiet: bool,
) -> None:
    from clusterlens.pipelines.curate import run_duplicates

    _run_view(
        ws,
        "duplicates",
        run_duplicates,
        fmt,
        lambda s, d: (
            f"{s['n_groups']:,} duplicate groups ({s['n_exact_copies']:,} "
            f"exact copies); {s['n_redundant']:,} items could go.\nWrote {d}/"
        ),
        quiet,
        backend,
        scheduler,
        threshold=threshold,
    )


@_view_command("outliers", "Items far from every other item (WS/outliers/).")
@click.option(
    "--z",
    "z_threshold",
    type=click.FloatRange(min=0),
    default=None,
    help="Flag items this many robust standard deviations out (default 3.5).",
)
def outliers(
    ws: Path,
    z_threshold: float | None,
    backend: str | None,
    scheduler: str | None,
    fmt: str,
    quiet: bool,
) -> None:
    from clusterlens.pipelines.curate import run_outliers

    _run_view(
        ws,
        "outliers",
        run_outliers,
        fmt,
        lambda s, d: (
            f"{s['n_outliers']:,} outliers of {s['n_items']:,} items.\nWrote {d}/"
        ),
        quiet,
        backend,
        scheduler,
        z_threshold=z_threshold,
    )


@_view_command(
    "quality",
    "Image-quality issues: blurry, dark, bright, low information, odd aspect "
    "ratio or size, grayscale (WS/quality/; needs WS/scan).",
)
def quality(ws: Path, fmt: str, quiet: bool) -> None:
    from clusterlens.pipelines.curate import run_quality

    def human(s: dict[str, Any], d: Path) -> str:
        c = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in s["counts"].items())
        return f"{s['n_with_issue']:,} items with an issue ({c}).\nWrote {d}/"

    _run_view(ws, "quality", run_quality, fmt, human, quiet)


@_view_command("map", "A 2-D map of the embeddings (UMAP; PCA for tiny sets).")
def map_(
    ws: Path,
    backend: str | None,
    scheduler: str | None,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    from clusterlens.pipelines.curate import run_map

    _run_view(
        ws,
        "map",
        run_map,
        fmt,
        lambda s, d: f"Map of {s['n_items']:,} items ({s['method']}).\nWrote {d}/",
        quiet,
        backend,
        scheduler,
        random_state=seed,
    )


@_view_command("index", "A search index over the embeddings (WS/index/).")
def index(ws: Path, fmt: str, quiet: bool, seed: int) -> None:
    from clusterlens.pipelines.curate import run_index

    _run_view(
        ws,
        "index",
        run_index,
        fmt,
        lambda s, d: (
            f"{s['kind']} index over {s['n_items']:,} items (recall@10 "
            f"{s['recall_at_10']:.3f}).\nWrote {d}/"
        ),
        quiet,
        random_state=seed,
    )


@_view_command(
    "sample",
    "Pick items that cover the collection for labelling, skipping duplicates "
    "and junk (WS/sample/: sample.csv, label_studio.json).",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=None,
    help="How many items (default: 2 %, 10 to 1,000).",
)
def sample(ws: Path, budget: int | None, fmt: str, quiet: bool) -> None:
    from clusterlens.pipelines.curate import run_sample

    _run_view(
        ws,
        "sample",
        run_sample,
        fmt,
        lambda s, d: (
            f"Picked {s['budget']:,} of {s['n_eligible']:,} items; every "
            f"item is within cosine distance {s['covering_radius']:.3f} of one.\n"
            f"Wrote {d}/: sample.csv, label_studio.json"
        ),
        quiet,
        budget=budget,
    )


@click.command(
    epilog="\b\nExamples:\n  clusterlens similar ws query.jpg -k 5\n"
    "  clusterlens similar ws --item 17"
)
@workspace_argument
@click.argument(
    "image", required=False, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--item", type=int, default=None, help="Search by this item instead.")
@click.option("-k", type=click.IntRange(min=1, max=1000), default=10, show_default=True)
@_FMT
def similar(ws: Path, image: Path | None, item: int | None, k: int, fmt: str) -> None:
    """The K items of WS most similar to IMAGE (a file) or to --item N."""
    from clusterlens.exceptions import DataValidationError
    from clusterlens.io import open_workspace
    from clusterlens.pipelines.curate import similar_items

    if (image is None) == (item is None):
        raise DataValidationError("Give a query IMAGE file or --item N (one of them).")
    res = similar_items(open_workspace(ws), item=item, image=image, k=k)
    lines = [
        f"{r['rank']:>3}  {r['similarity']:.3f}  {r['path']}" for r in res["results"]
    ]
    emit(fmt, "clusterlens.similar/1", res, "\n".join(lines))


VIEW_COMMANDS = (scan, duplicates, outliers, quality, map_, index, sample, similar)
