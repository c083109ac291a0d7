"""``clusterlens kmeans``: exact k-means over a descriptor or feature file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click
import numpy as np

from clusterlens._config import get_config
from clusterlens.cli._common import (
    backend_options,
    checkpoint_options,
    common_options,
    descriptor_options,
    resolve_checkpoint,
    verbosity,
)
from clusterlens.cli._run import run_command

EXAMPLES = """
\b
Examples:
  clusterlens kmeans features.npy -k 10 --out runs/km
  clusterlens kmeans sift.bvecs -k 4096 --out vocab --seed 1 --max-iter 20
  clusterlens kmeans oxford_sift.bin -k 1024 --init random --n-init 3 --out km
  clusterlens kmeans X.npy -k 8 --init centers.npy --out km --format json
  clusterlens kmeans big.bvecs -k 4096 --checkpoint ckpt --out km
  clusterlens kmeans big.bvecs -k 4096 --out km --resume ckpt
  clusterlens kmeans big.bvecs -k 4096 --out km --backend dask
  clusterlens kmeans big.bvecs -k 4096 --out km --scheduler tcp://10.0.0.5:8786
  clusterlens kmeans ../shared/data/sift/coco128_sift_opencv.npz -k 256 --out sift-km
"""


@click.command(epilog=EXAMPLES)
@click.argument(
    "data",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
)
@click.option(
    "-k",
    "--n-clusters",
    "k",
    type=click.IntRange(min=1),
    required=True,
    help="Number of clusters (1 <= k <= number of rows).",
)
@click.option(
    "--init",
    default="auto",
    show_default=True,
    help="'k-means++', 'random', a .npy file of initial centres (k, d), or 'auto' "
    "(k-means++ for exact Lloyd, random rows in the large-k mode).",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "exact", "large"]),
    default="auto",
    show_default=True,
    help="Exact Lloyd, or the large-k mode (each point compared with a few candidate "
    "centres; auto: from k = 4,096 on).",
)
@click.option(
    "--n-init",
    default="auto",
    show_default=True,
    help="Restarts with different seeds ('auto': 1 for k-means++, 10 for random).",
)
@click.option("--max-iter", type=click.IntRange(min=1), default=300, show_default=True)
@click.option(
    "--tol",
    type=click.FloatRange(min=0),
    default=1e-4,
    show_default=True,
    help="Relative centre-shift tolerance.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "numpy", "faiss"]),
    default="auto",
    show_default=True,
)
@descriptor_options
@click.option(
    "--working-memory",
    type=click.FloatRange(min=1),
    default=None,
    help="MiB for chunk buffers (default 1024).",
)
@checkpoint_options()
@backend_options
@common_options()
def kmeans(
    data: Path,
    k: int,
    init: str,
    mode: str,
    n_init: str,
    max_iter: int,
    tol: float,
    engine: str,
    format_in: str | None,
    dim: int,
    key: str | None,
    working_memory: float | None,
    checkpoint: Path | None,
    resume: str | None,
    backend: str | None,
    scheduler: str | None,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Cluster the rows of DATA (.npy, .npz, .fvecs, .bvecs, .ivecs, .bin) with k-means.

    Writes OUT/model.npz + model.json, OUT/assignments.parquet (index, cluster,
    distance) and OUT/run.json.
    """
    from clusterlens.exceptions import InvalidParameterError
    from clusterlens.io import open_descriptors
    from clusterlens.pipelines.kmeans import OUTPUTS, run_kmeans

    checkpoint, resuming = resolve_checkpoint(checkpoint, resume)
    n_init_v: int | Literal["auto"] = "auto"
    if n_init != "auto":
        if not n_init.isdigit() or int(n_init) < 1:
            raise click.BadParameter(
                "must be 'auto' or an integer >= 1", param_hint="--n-init"
            )
        n_init_v = int(n_init)
    init_v: object = init
    if init not in ("auto", "k-means++", "random"):
        path = Path(init)
        if not path.is_file():
            raise click.BadParameter(
                f"{init!r} is neither 'k-means++', 'random' nor an existing .npy file",
                param_hint="--init",
            )
        init_v = np.asarray(open_descriptors(path), dtype=np.float64)
    # Opening validates the file (size, header, dimension) before any work.
    X = open_descriptors(data, format=format_in, dim=dim, key=key)  # type: ignore[arg-type]
    if k > X.shape[0]:
        raise InvalidParameterError(
            f"-k {k} is larger than the number of rows in {data} ({X.shape[0]}). "
            "Use a smaller k."
        )
    settings = {} if working_memory is None else {"working_memory": working_memory}
    # Dask workers open the file themselves when they can read it the same way
    plain = format_in is None and key is None and dim == 128
    run_command(
        lambda stage: run_kmeans(
            X,
            stage,
            n_clusters=k,
            init=init_v,
            n_init=n_init_v,
            max_iter=max_iter,
            tol=tol,
            engine=engine,
            mode=mode,
            checkpoint_dir=checkpoint,
            resume=resuming,
            random_state=seed,
            verbose=verbosity(quiet, fmt),
            command={"data": str(data)},
            parameters={
                "init": init,
                "n_init": n_init,
                "working_memory": working_memory,
                "backend": backend,
                "scheduler": scheduler,
            },
            source=data if get_config()["backend"] == "dask" and plain else None,
        ),
        out=out,
        kind="kmeans",
        overwrite=overwrite,
        inputs=[data, checkpoint],
        backend=(backend, scheduler),
        settings=settings,
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.kmeans/1",
        human=lambda r: (
            f"k-means: {X.shape[0]} x {X.shape[1]} {X.dtype} into k={k} "
            f"({r['engine']} engine): inertia {r['inertia']:.6g} after "
            f"{r['n_iter']} iterations"
            f"{'' if r['converged'] else ' (max-iter reached)'}.\n"
            f"Wrote {out}/: {', '.join(OUTPUTS)}"
        ),
    )
