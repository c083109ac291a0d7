"""``clusterlens vocab``: a visual vocabulary over local descriptors (exact k-means)."""

from __future__ import annotations

from pathlib import Path

import click

from clusterlens.cli._common import common_options, descriptor_options, verbosity
from clusterlens.cli._output import emit

EXAMPLES = """
\b
Examples:
  clusterlens vocab ../shared/data/sift/coco128_sift_opencv.npz -k 1024 --out vocab
  clusterlens vocab oxford5k_sift.bin -k 16384 --sample 1000000 --max-iter 10 --out v
  clusterlens vocab sift.bvecs -k 4096 --out vocab --format json --quiet
"""


@click.command(epilog=EXAMPLES)
@click.argument(
    "data", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
)
@click.option(
    "-k",
    "--n-words",
    "k",
    type=click.IntRange(min=1),
    required=True,
    help="Number of visual words.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Fit on this many randomly chosen descriptors; assign all.",
)
@click.option("--max-iter", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--init",
    type=click.Choice(["k-means++", "random"]),
    default="k-means++",
    show_default=True,
)
@descriptor_options
@common_options()
def vocab(
    data: Path,
    k: int,
    sample: int | None,
    max_iter: int,
    init: str,
    format_in: str | None,
    dim: int,
    key: str | None,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Build a visual vocabulary of K words from DATA and assign every descriptor.

    Writes OUT/vocab.npz + vocab.json (load with VisualVocabulary.load),
    OUT/assignments.parquet (index, word, distance) and OUT/run.json. Training
    is exact Lloyd; a large-k mode is being built (issue #4).
    """
    from clusterlens.exceptions import InvalidParameterError
    from clusterlens.io import open_descriptors
    from clusterlens.pipelines import run_vocab
    from clusterlens.utils._fs import staged_output_dir

    X = open_descriptors(data, format=format_in, dim=dim, key=key)  # type: ignore[arg-type]
    n_fit = min(X.shape[0], sample or X.shape[0])
    if k > n_fit:
        raise InvalidParameterError(
            f"-k {k} is larger than the number of descriptors to fit on ({n_fit} of "
            f"{data}). Use a smaller k or a larger --sample."
        )
    with staged_output_dir(out, overwrite=overwrite) as stage:
        summary = run_vocab(
            X,
            stage,
            n_words=k,
            sample=sample,
            max_iter=max_iter,
            init=init,
            random_state=seed,
            verbose=verbosity(quiet, fmt),
            command={"data": str(data)},
        )
    if quiet and fmt != "json":
        return
    emit(
        fmt,
        "clusterlens.vocab/1",
        {**summary, "out": str(out.absolute())},
        f"Vocabulary of {k:,} words from {summary['n_fit_samples']:,} of "
        f"{summary['n_descriptors']:,} descriptors ({summary['dtype']}, "
        f"{summary['n_features']}-d); SSE of all descriptors {summary['sse_all']:.6g}; "
        f"{summary['empty_words']} empty words; quantized at "
        f"{summary['descriptors_per_second']:,.0f} descriptors/s.\nWrote {out}/: "
        "vocab.npz, vocab.json, assignments.parquet, run.json",
    )
