"""``clusterlens bow``: SIFT descriptors quantized to visual words, tf-idf, CSR."""

from __future__ import annotations

import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.exceptions import DataValidationError
from clusterlens.io._results import write_run
from clusterlens.io._safe import invalid_file, load_npy
from clusterlens.io._workspace import Workspace
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import check_int

__all__ = ["load_sift", "load_vocabulary", "run_bow"]

_QUANT_CHUNK = 1 << 17  # descriptors per quantization call (progress granularity)
_SHARD_CHUNKS = 4  # quantization calls per Dask task (default shard size)


def load_sift(ws: Workspace, sift_dir: str | os.PathLike[str] | None = None) -> Any:
    """``(descriptors memmap, offsets, keypoints, folder)`` of a SIFT stage."""
    d = (
        Path(os.fspath(sift_dir))
        if sift_dir is not None
        else ws.root / "features" / "sift"
    )
    files = [d / "descriptors.npy", d / "offsets.npy", d / "keypoints.npy"]
    if not all(f.is_file() for f in files):
        raise DataValidationError(
            f"{str(d)!r} holds no SIFT features (descriptors.npy, offsets.npy, "
            "keypoints.npy). Run: clusterlens features sift WS"
        )
    fix = "re-create it with `clusterlens features sift WS`"
    desc = load_npy(
        files[0], what="SIFT descriptor file", fix=fix, mmap=True, ndim=2, kinds="u"
    )
    offsets = load_npy(files[1], what="SIFT offsets file", fix=fix, ndim=1, kinds="iu")
    kp = load_npy(
        files[2], what="SIFT keypoints file", fix=fix, mmap=True, ndim=2, kinds="f"
    )
    if offsets.shape != (len(ws) + 1,):
        raise DataValidationError(
            f"SIFT features in {str(d)!r} are for {offsets.shape[0] - 1} items but the "
            f"workspace has {len(ws)}. Re-run clusterlens features sift."
        )
    n = desc.shape[0]
    if (
        desc.shape[1] != 128
        or kp.shape != (n, 4)
        or offsets[0] != 0
        or offsets[-1] != n
        or (np.diff(offsets) < 0).any()
    ):
        raise DataValidationError(
            invalid_file(
                d,
                "SIFT features folder",
                f"descriptors {desc.shape}, keypoints {kp.shape} and offsets from "
                f"{int(offsets[0])} to {int(offsets[-1])} do not agree (expected "
                "(n, 128), (n, 4) and non-decreasing offsets from 0 to n)",
                fix,
            )
        )
    return desc, offsets, kp, d


def load_vocabulary(path: str | os.PathLike[str]) -> Any:
    """A ``VisualVocabulary`` from a ``clusterlens vocab`` folder or its vocab file."""
    from clusterlens.vocab import VisualVocabulary

    p = Path(os.fspath(path))
    stem = p / "vocab" if p.is_dir() else p.with_suffix("")
    if not stem.with_suffix(".npz").is_file():
        raise DataValidationError(
            f"No vocabulary at {str(p)!r} (looked for "
            f"{str(stem.with_suffix('.npz'))!r}). "
            "Build one with: clusterlens vocab WS/features/sift/descriptors.npy -k 300 "
            "--out WS/vocab"
        )
    return VisualVocabulary.load(stem)


def run_bow(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    vocab: str | os.PathLike[str],
    sift_dir: str | os.PathLike[str] | None = None,
    sublinear_tf: bool = False,
    backend: str | None = None,
    shard_rows: int | None = None,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Quantize every descriptor to its nearest word; write counts and tf-idf.

    Writes ``counts.npz`` (raw counts), ``tfidf.npz`` (idf-weighted, rows
    L2-normalised, scikit-learn's ``TfidfTransformer`` formula), ``idf.npy``,
    ``words.npy`` (int32 word per descriptor) and ``run.json`` into ``stage``.

    With ``backend="dask"`` (or that configured default, see
    :func:`clusterlens.config_context`) the descriptors are quantized on a
    Dask cluster, one task per shard of ``shard_rows`` consecutive rows
    (default 524,288): each worker loads the vocabulary once and reads its
    rows from ``descriptors.npy`` itself (same path on every worker); only
    the int32 words come back. The words, and so every output, equal the
    local backend's.
    """
    import scipy.sparse as sp

    from clusterlens._config import resolve_backend
    from clusterlens.vocab import bow_counts, idf_weights, tfidf_transform

    which = resolve_backend(backend)

    stage = Path(os.fspath(stage))
    desc, offsets, _, sift_path = load_sift(ws, sift_dir)
    voc = load_vocabulary(vocab)
    n_words = int(voc.centers_.shape[0])
    dim = int(voc.n_features_in_)
    if desc.shape[1] != dim:
        raise DataValidationError(
            f"The vocabulary {str(vocab)!r} has {dim}-d words but the descriptors in "
            f"{str(sift_path)!r} are {desc.shape[1]}-d. Build the vocabulary from "
            "these descriptors: clusterlens vocab "
            f"{sift_path / 'descriptors.npy'} -k K --out DIR"
        )
    t0 = time.perf_counter()
    n_desc = desc.shape[0]
    words = np.empty(n_desc, dtype=np.int32)
    size = (
        _QUANT_CHUNK * _SHARD_CHUNKS
        if shard_rows is None
        else int(check_int(shard_rows, "shard_rows", "run_bow", low=1) or 1)
    )
    if which == "dask":
        from clusterlens.distributed._map import map_shards, shard_bounds

        bounds = shard_bounds(n_desc, size)

        def _put(i: int, w: np.ndarray) -> None:
            lo, hi = bounds[i]
            words[lo:hi] = w

        map_shards(
            _quantize_shard,
            bounds,
            str((sift_path / "descriptors.npy").resolve()),
            str(Path(os.fspath(vocab)).resolve()),
            consume=_put,
            desc="quantize (dask)",
            unit="desc",
            verbose=verbose,
        )
    else:
        bar = progress(total=n_desc, desc="quantize", unit="desc", verbose=verbose)
        for s in range(0, n_desc, _QUANT_CHUNK):
            chunk = desc[s : s + _QUANT_CHUNK]
            words[s : s + chunk.shape[0]] = voc.transform(chunk)
            bar.update(chunk.shape[0])
        bar.close()
    t_quant = time.perf_counter() - t0
    counts = bow_counts(words, offsets, n_words)
    idf = idf_weights(counts)
    tfidf = tfidf_transform(counts, idf, sublinear_tf=sublinear_tf)
    sp.save_npz(stage / "counts.npz", counts.astype(np.float32))
    sp.save_npz(stage / "tfidf.npz", tfidf.astype(np.float32))
    np.save(stage / "idf.npy", idf)
    np.save(stage / "words.npy", words)
    seconds = time.perf_counter() - t0
    per_item = np.diff(offsets)
    summary = {
        "n_items": len(ws),
        "n_descriptors": int(n_desc),
        "n_words": n_words,
        "empty_items": int((per_item == 0).sum()),
        "words_used": int((np.bincount(words, minlength=n_words) > 0).sum()),
        "quantize_seconds": t_quant,
        "seconds": seconds,
        "descriptors_per_second": float(n_desc / max(t_quant, 1e-9)),
        "images_per_second": float(len(ws) / max(seconds, 1e-9)),
    }
    write_run(
        stage,
        schema="clusterlens.bow/1",
        command="bow",
        invocation=command,
        parameters={
            "workspace": str(ws.root.resolve()),
            "sift": str(sift_path.resolve()),
            "vocab": str(Path(os.fspath(vocab)).resolve()),
            "sublinear_tf": sublinear_tf,
            "norm": "l2",
            "smooth_idf": True,
            "backend": which,
            **({"shard_rows": size} if which == "dask" else {}),
        },
        results=summary,
        outputs=["counts.npz", "tfidf.npz", "idf.npy", "words.npy", "run.json"],
    )
    return summary


# --------------------------------------------------------------------------- #
# The Dask backend's task: one shard of descriptor rows
# --------------------------------------------------------------------------- #
def _mtime(p: Path) -> int:
    try:
        return os.stat(p).st_mtime_ns
    except OSError:
        return 0


@lru_cache(maxsize=2)
def _cached_vocabulary(path: str, mtime_ns: int) -> Any:
    """The vocabulary at ``path``, loaded once per worker process (and version)."""
    return load_vocabulary(path)


def _quantize_shard(lo: int, hi: int, desc_path: str, vocab: str) -> np.ndarray:
    """Worker task: int32 words of descriptor rows ``lo:hi`` (a pure function).

    Quantizes ``_QUANT_CHUNK`` rows at a time, as the local backend does.
    """
    p = Path(vocab)
    stem = p / "vocab" if p.is_dir() else p.with_suffix("")
    voc = _cached_vocabulary(vocab, _mtime(stem.with_suffix(".npz")))
    desc = np.load(desc_path, mmap_mode="r")
    words = np.empty(hi - lo, dtype=np.int32)
    for s in range(lo, hi, _QUANT_CHUNK):
        e = min(hi, s + _QUANT_CHUNK)
        words[s - lo : e - lo] = voc.transform(desc[s:e])
    return words
