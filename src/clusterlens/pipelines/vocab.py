"""``clusterlens vocab`` as a library call: descriptors in, words out."""

from __future__ import annotations

import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens._config import resolve_backend
from clusterlens.io import write_results, write_run
from clusterlens.vocab import VisualVocabulary
from clusterlens.vocab._vocabulary import nearest_or_tied

__all__ = ["run_vocab"]

#: Descriptors per task when the Dask backend quantizes.
_SHARD_ROWS = 1 << 19


@lru_cache(maxsize=2)
def _cached_vocab(stem: str, mtime_ns: int) -> VisualVocabulary:
    """The vocabulary saved at ``stem``, loaded once per worker process."""
    return VisualVocabulary.load(stem)


def _quantize_rows(
    lo: int, hi: int, path: str, stem: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Worker task: words and squared distances of descriptor rows ``lo:hi``."""
    from clusterlens.io import open_descriptors

    vocab = _cached_vocab(stem, os.stat(stem + ".npz").st_mtime_ns)
    words, d2 = vocab.quantize(open_descriptors(path)[lo:hi])
    return words.astype(np.int64), d2.astype(np.float32)


def _agreement(
    vocab: VisualVocabulary,
    X: npt.NDArray[Any],
    words: npt.NDArray[Any],
    seed: int,
    sample: int = 10_000,
) -> float:
    """Share of sampled rows whose given word is an exact nearest word."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(X.shape[0], size=min(sample, X.shape[0]), replace=False))
    return float(
        np.mean(nearest_or_tied(np.asarray(X[rows]), vocab.centers_, words[rows]))
    )


def run_vocab(
    X: npt.NDArray[Any],
    out_dir: str | os.PathLike[str],
    *,
    n_words: int,
    sample: int | None = None,
    max_iter: int = 20,
    init: Any = "auto",
    mode: str = "auto",
    n_candidates: int = 3,
    refresh_every: int = 4,
    quantizer: str = "auto",
    n_probe: int | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    random_state: int = 0,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
    backend: str | None = None,
    source: Any = None,
) -> dict[str, Any]:
    """Fit a vocabulary on X (or a sample), quantize every row, write the outputs.

    Writes ``vocab.npz`` + ``vocab.json``, ``assignments.parquet`` (``index``,
    ``word``, ``distance``: Euclidean to the word) and ``run.json`` (with the
    training mode, the quantizer and its measured agreement with an exact
    search on 10,000 sampled descriptors). ``backend="dask"`` trains on a
    Dask cluster; ``source`` is X's file, which the workers then read
    themselves (else X's rows are scattered).
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    vocab = VisualVocabulary(
        n_words,
        sample=sample,
        init=init,
        max_iter=max_iter,
        mode=mode,
        n_candidates=n_candidates,
        refresh_every=refresh_every,
        quantizer=quantizer,
        n_probe=n_probe,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        random_state=random_state,
        verbose=verbose,
        backend=backend,
    ).fit(X if source is None else source)
    t_fit = time.perf_counter() - t0
    if (
        quantizer == "auto"
        and vocab.n_fit_samples_ == X.shape[0]
        and vocab.mode_ == "large"
    ):
        # the fit's last pass already assigned every descriptor (through its
        # candidates): measure how often that is the exact nearest word
        words, d2 = vocab.labels_, vocab.distances_
        used = "fit"
        quantized_on = "dask" if vocab.engine_.startswith("dask:") else "local"
        agreement = _agreement(vocab, X, words, random_state)
    elif resolve_backend(backend) == "dask" and source is not None:
        # shards of rows quantized by the workers, each reading its rows
        # from the file and the vocabulary (saved first) itself
        from clusterlens.distributed._map import map_shards, shard_bounds

        vocab.save(out / "vocab")
        words = np.empty(X.shape[0], np.int64)
        d2 = np.empty(X.shape[0], np.float32)
        bounds = shard_bounds(X.shape[0], _SHARD_ROWS)

        def put(i: int, res: tuple[Any, Any]) -> None:
            lo, hi = bounds[i]
            words[lo:hi], d2[lo:hi] = res

        map_shards(
            _quantize_rows,
            bounds,
            str(Path(os.fspath(source)).resolve()),
            str((out / "vocab").resolve()),
            consume=put,
            desc="quantize (dask)",
            unit="desc",
            verbose=verbose,
        )
        used = vocab.quantizer_
        quantized_on = "dask"
        agreement = vocab.agreement(X, sample=10_000, random_state=random_state)
    else:
        words, d2 = vocab.quantize(X)
        used = vocab.quantizer_
        quantized_on = "local"
        agreement = vocab.agreement(X, sample=10_000, random_state=random_state)
    t_quant = time.perf_counter() - t0 - t_fit
    vocab.save(out / "vocab")
    write_results(
        out / "assignments.parquet",
        {
            "index": np.arange(X.shape[0], dtype=np.int64),
            "word": words,
            "distance": np.sqrt(d2.astype(np.float64)),
        },
    )
    counts = np.bincount(words, minlength=n_words)
    summary = {
        "n_descriptors": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "dtype": str(X.dtype),
        "n_words": n_words,
        "n_fit_samples": vocab.n_fit_samples_,
        "fit_inertia": vocab.inertia_,
        "sse_all": float(d2.astype(np.float64).sum()),
        "n_iter": vocab.n_iter_,
        "mode": vocab.mode_,
        "quantizer": used,
        "quantized_on": quantized_on,
        "quantizer_agreement": agreement,
        "empty_words": int((counts == 0).sum()),
        "largest_word_share": float(counts.max() / max(1, counts.sum())),
        "fit_seconds": t_fit,
        "quantize_seconds": t_quant,
        "descriptors_per_second": float(X.shape[0] / max(t_quant, 1e-9)),
    }
    write_run(
        out,
        schema="clusterlens.vocab/1",
        command="vocab",
        invocation=command,
        parameters={
            "n_words": n_words,
            "sample": sample,
            "max_iter": max_iter,
            "init": init if isinstance(init, str) else "array",
            "mode": mode,
            "n_candidates": n_candidates,
            "refresh_every": refresh_every,
            "quantizer": quantizer,
            "n_probe": n_probe,
            "backend": "dask" if vocab.engine_.startswith("dask:") else "local",
        },
        seed=random_state,
        timings={"fit_seconds": t_fit, "quantize_seconds": t_quant},
        results=summary,
        history=vocab.history_,
        outputs=["vocab.npz", "vocab.json", "assignments.parquet", "run.json"],
    )
    return summary
