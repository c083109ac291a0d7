"""``clusterlens vocab``: a visual vocabulary over local descriptors."""

from __future__ import annotations

from pathlib import Path

import click

from clusterlens.cli._common import (
    backend_options,
    checkpoint_options,
    common_options,
    descriptor_options,
    resolve_backend_options,
    resolve_checkpoint,
    verbosity,
)
from clusterlens.cli._run import run_command

EXAMPLES = """
\b
Examples:
  clusterlens vocab ../shared/data/sift/coco128_sift_opencv.npz -k 1024 --out vocab
  clusterlens vocab oxford5k_sift.bin -k 16384 --sample 1000000 --max-iter 10 --out v
  clusterlens vocab oxford5k_sift.bin -k 16384 --max-iter 10 --out v --backend dask
  clusterlens vocab sift.bvecs -k 4096 --out vocab --format json --quiet
  clusterlens vocab oxford5k.npy -k 131072 --max-iter 12 --checkpoint ck --out v
  clusterlens vocab oxford5k.npy -k 131072 --max-iter 12 --resume ck --out v
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
    type=click.Choice(["auto", "k-means++", "random"]),
    default="auto",
    show_default=True,
    help="auto: k-means++ for exact training, random rows in the large-k mode.",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "exact", "large"]),
    default="auto",
    show_default=True,
    help="Training: exact Lloyd, or the large-k mode (auto: from 4,096 words).",
)
@click.option(
    "--candidates",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Large-k mode: candidate words kept per descriptor.",
)
@click.option(
    "--refresh-every",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Large-k mode: new candidates from the index every N iterations "
    "(0: first pass only; faster, larger SSE).",
)
@click.option(
    "--quantizer",
    type=click.Choice(["auto", "exact", "index"]),
    default="auto",
    show_default=True,
    help="Word search: exact, or a two-level index (auto: from 4,096 words; "
    "after a large-k fit on all descriptors, its own last assignment).",
)
@click.option(
    "--probe",
    type=click.IntRange(min=1),
    default=None,
    help="Index quantizer: groups of words searched per descriptor.",
)
@checkpoint_options()
@descriptor_options
@backend_options
@common_options()
def vocab(
    data: Path,
    k: int,
    sample: int | None,
    max_iter: int,
    init: str,
    mode: str,
    candidates: int,
    refresh_every: int,
    quantizer: str,
    probe: int | None,
    checkpoint: Path | None,
    resume: str | None,
    format_in: str | None,
    dim: int,
    key: str | None,
    backend: str | None,
    scheduler: str | None,
    out: Path,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Build a visual vocabulary of K words from DATA and assign every descriptor.

    Writes OUT/vocab.npz + vocab.json (load with VisualVocabulary.load),
    OUT/assignments.parquet (index, word, distance) and OUT/run.json. From
    4,096 words on, training runs the large-k mode (each descriptor is
    compared with a few candidate words) and quantization a two-level index
    whose agreement with an exact search is measured and written to run.json.
    With --checkpoint, an interrupted fit continues with --resume and ends as
    an uninterrupted one would.
    """
    from clusterlens.exceptions import InvalidParameterError
    from clusterlens.io import open_descriptors
    from clusterlens.pipelines import run_vocab

    checkpoint, resuming = resolve_checkpoint(checkpoint, resume)
    X = open_descriptors(data, format=format_in, dim=dim, key=key)  # type: ignore[arg-type]
    n_fit = min(X.shape[0], sample or X.shape[0])
    if k > n_fit:
        raise InvalidParameterError(
            f"-k {k} is larger than the number of descriptors to fit on ({n_fit} of "
            f"{data}). Use a smaller k or a larger --sample."
        )
    backend = resolve_backend_options(backend, scheduler)
    plain = format_in is None and key is None and dim == 128
    run_command(
        lambda stage: run_vocab(
            X,
            stage,
            n_words=k,
            sample=sample,
            max_iter=max_iter,
            init=init,
            mode=mode,
            n_candidates=candidates,
            refresh_every=refresh_every,
            quantizer=quantizer,
            n_probe=probe,
            checkpoint_dir=checkpoint,
            resume=resuming,
            random_state=seed,
            verbose=verbosity(quiet, fmt),
            command={"data": str(data)},
            backend=backend,
            # Dask workers open the file themselves when they read it the same way
            source=data if backend == "dask" and plain else None,
        ),
        out=out,
        kind="vocab",
        overwrite=overwrite,
        inputs=[data, checkpoint],
        backend=(backend, scheduler),
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.vocab/1",
        human=lambda s: (
            f"Vocabulary of {k:,} words from {s['n_fit_samples']:,} of "
            f"{s['n_descriptors']:,} descriptors ({s['dtype']}, "
            f"{s['n_features']}-d); SSE of all descriptors {s['sse_all']:.6g}; "
            f"{s['empty_words']} empty words; {s['mode']} training in "
            f"{s['fit_seconds']:.1f} s; "
            + (
                "descriptors assigned by the fit's last pass "
                if s["quantizer"] == "fit"
                else f"{s['quantizer']} quantization at "
                f"{s['descriptors_per_second']:,.0f} descriptors/s "
            )
            + f"({100 * s['quantizer_agreement']:.2f} % exact).\nWrote {out}/: "
            "vocab.npz, vocab.json, assignments.parquet, run.json"
        ),
    )
