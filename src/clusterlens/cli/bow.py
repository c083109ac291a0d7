"""``clusterlens bow``: bag of visual words (tf-idf, L2, sparse CSR) of a workspace."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from clusterlens.cli._common import backend_options, verbosity
from clusterlens.cli._run import run_ws_command
from clusterlens.cli._ws import stage_out, workspace_argument, ws_options

EXAMPLES = """
\b
Examples:
  clusterlens vocab ws/features/sift/descriptors.npy -k 300 --out ws/vocab
  clusterlens bow ws
  clusterlens bow ws --vocab other-vocab/ --out ws/bow-other
  clusterlens bow ws --backend dask --scheduler tcp://host:8786
"""


@click.command(epilog=EXAMPLES)
@workspace_argument
@click.option(
    "--vocab",
    "vocab_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="A 'clusterlens vocab' output folder or its vocab.npz (default WS/vocab).",
)
@click.option(
    "--sift",
    "sift_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="SIFT features folder (default WS/features/sift).",
)
@click.option("--sublinear-tf", is_flag=True, help="Use 1 + ln(tf) instead of tf.")
@backend_options
@ws_options
def bow(
    ws: Path,
    vocab_path: Path | None,
    sift_dir: Path | None,
    sublinear_tf: bool,
    backend: str | None,
    scheduler: str | None,
    out: Path | None,
    overwrite: bool,
    fmt: str,
    quiet: bool,
    seed: int,
) -> None:
    """Quantize each item's SIFT descriptors to visual words; count, tf-idf, L2.

    Writes OUT (default WS/bow): counts.npz and tfidf.npz (scipy CSR, items x
    words), idf.npy, words.npy and run.json.
    """
    from clusterlens.pipelines.bow import run_bow

    dst = stage_out(ws, out, "bow")
    vocab = vocab_path if vocab_path is not None else ws / "vocab"
    run_ws_command(
        ws,
        partial(
            run_bow,
            vocab=vocab,
            sift_dir=sift_dir,
            sublinear_tf=sublinear_tf,
            verbose=verbosity(quiet, fmt),
            command={"ws": str(ws)},
        ),
        out=dst,
        kind="bow",
        overwrite=overwrite,
        inputs=[vocab, sift_dir],
        backend=(backend, scheduler),
        fmt=fmt,
        quiet=quiet,
        schema="clusterlens.bow/1",
        human=lambda s: (
            f"Bag of words: {s['n_items']:,} items x {s['n_words']:,} words "
            f"({s['words_used']:,} used; {s['empty_items']} items without "
            f"descriptors); quantized {s['descriptors_per_second']:,.0f} "
            f"descriptors/s.\nWrote {dst}/: counts.npz, tfidf.npz, idf.npy, "
            "words.npy, run.json"
        ),
    )
