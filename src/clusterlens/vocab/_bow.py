"""Bags of visual words: per-image word counts, tf-idf, L2 rows, sparse CSR."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from clusterlens.exceptions import DataValidationError
from clusterlens.utils.validation import check_int

__all__ = [
    "bow_counts",
    "idf_weights",
    "spatial_cells",
    "tfidf_transform",
]


def _check_offsets(offsets: Any, n_rows: int) -> npt.NDArray[np.int64]:
    off = np.asarray(offsets, dtype=np.int64)
    if (
        off.ndim != 1
        or off.size < 1
        or off[0] != 0
        or off[-1] != n_rows
        or (np.diff(off) < 0).any()
    ):
        raise DataValidationError(
            f"offsets must be non-decreasing int64 of shape (n_items + 1,), from 0 "
            f"to the number of descriptors ({n_rows}); got shape {off.shape} "
            f"ending at {int(off[-1]) if off.size else 'nothing'}."
        )
    return off


def bow_counts(
    words: npt.ArrayLike, offsets: npt.ArrayLike, n_words: int
) -> sp.csr_matrix:
    """Count each image's visual words.

    Parameters
    ----------
    words : array-like of shape (n_descriptors,)
        Word id of each descriptor (``VisualVocabulary.transform``), in the
        order of the descriptor file.
    offsets : array-like of shape (n_items + 1,)
        Item ``i`` owns descriptors ``offsets[i]:offsets[i + 1]``.
    n_words : int
        Vocabulary size.

    Returns
    -------
    counts : scipy.sparse.csr_matrix of shape (n_items, n_words), float64
        An item without descriptors has an empty row.

    Examples
    --------
    >>> bow_counts([2, 0, 2, 1], [0, 3, 3, 4], 3).toarray()
    array([[1., 0., 2.],
           [0., 0., 0.],
           [0., 1., 0.]])
    """
    w = np.asarray(words, dtype=np.int64).reshape(-1)
    n_words = check_int(n_words, "n_words", "bow_counts", low=1)
    off = _check_offsets(offsets, w.shape[0])
    if w.size and (w.min() < 0 or w.max() >= n_words):
        raise DataValidationError(
            f"words must lie in [0, {n_words}); got [{w.min()}, {w.max()}]."
        )
    n_items = off.shape[0] - 1
    rows = np.repeat(np.arange(n_items, dtype=np.int64), np.diff(off))
    m = sp.csr_matrix(
        (np.ones(w.shape[0], dtype=np.float64), (rows, w)), shape=(n_items, n_words)
    )
    m.sum_duplicates()
    return m


def spatial_cells(
    words: npt.ArrayLike,
    offsets: npt.ArrayLike,
    xy: npt.ArrayLike,
    n_words: int,
    grid: int,
) -> tuple[sp.csr_matrix, npt.NDArray[np.int64]]:
    """Word counts per spatial cell: each image cut into a ``grid x grid`` mesh.

    Parameters
    ----------
    words, offsets, n_words
        As in :func:`bow_counts`.
    xy : array-like of shape (n_descriptors, 2)
        Keypoint position as fractions of the image width and height.
    grid : int
        Cells per side.

    Returns
    -------
    counts : csr_matrix of shape (n_items * grid**2, n_words)
        Row ``i * grid**2 + cy * grid + cx`` counts the words of item ``i``
        whose keypoints fall in cell ``(cx, cy)``.
    item : ndarray of shape (n_items * grid**2,)
        The item of each row.
    """
    grid = check_int(grid, "grid", "spatial_cells", low=1)
    w = np.asarray(words, dtype=np.int64).reshape(-1)
    off = _check_offsets(offsets, w.shape[0])
    pos = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if pos.shape[0] != w.shape[0]:
        raise DataValidationError(
            f"xy has {pos.shape[0]} rows but words has {w.shape[0]}."
        )
    n_items = off.shape[0] - 1
    cell = np.clip((pos * grid).astype(np.int64), 0, grid - 1)
    item = np.repeat(np.arange(n_items, dtype=np.int64), np.diff(off))
    rows = item * grid * grid + cell[:, 1] * grid + cell[:, 0]
    m = sp.csr_matrix(
        (np.ones(w.shape[0], dtype=np.float64), (rows, w)),
        shape=(n_items * grid * grid, n_words),
    )
    m.sum_duplicates()
    return m, np.repeat(np.arange(n_items, dtype=np.int64), grid * grid)


def idf_weights(counts: sp.spmatrix | npt.ArrayLike, *, smooth: bool = True) -> Any:
    """Inverse document frequency, scikit-learn's ``TfidfTransformer`` formula.

    ``idf = ln((1 + n) / (1 + df)) + 1`` with ``smooth`` (else
    ``ln(n / df) + 1``), where ``df`` counts the documents that hold a word.
    """
    m = sp.csr_matrix(counts)
    n = m.shape[0]
    df = np.bincount(m.indices[m.data != 0], minlength=m.shape[1]).astype(np.float64)
    if smooth:
        return np.log((1.0 + n) / (1.0 + df)) + 1.0
    with np.errstate(divide="ignore"):
        return np.log(n / df) + 1.0


def tfidf_transform(
    counts: sp.spmatrix | npt.ArrayLike,
    idf: npt.ArrayLike | None = None,
    *,
    sublinear_tf: bool = False,
    norm: str | None = "l2",
) -> sp.csr_matrix:
    """Weight word counts by idf and L2-normalise each row.

    Equals ``TfidfTransformer(norm, use_idf=True, smooth_idf=True,
    sublinear_tf).fit_transform(counts)`` when ``idf`` is None (it is then
    computed from ``counts``). Empty rows stay empty.

    Parameters
    ----------
    counts : sparse matrix or array of shape (n_items, n_words)
    idf : array-like of shape (n_words,), default=None
        Weights learnt on other data (to transform new images alike).
    sublinear_tf : bool, default=False
        Use ``1 + ln(tf)`` instead of ``tf``.
    norm : {"l2", "l1"} or None, default="l2"

    Returns
    -------
    tfidf : csr_matrix of shape (n_items, n_words), float64
    """
    m = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    w = idf_weights(m) if idf is None else np.asarray(idf, dtype=np.float64)
    if w.shape != (m.shape[1],):
        raise DataValidationError(
            f"idf has shape {w.shape}; expected ({m.shape[1]},) for {m.shape[1]} words."
        )
    if sublinear_tf:
        np.log(m.data, out=m.data)
        m.data += 1.0
    m.data *= w[m.indices]
    if norm is not None:
        if norm == "l2":
            row = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        elif norm == "l1":
            row = np.asarray(abs(m).sum(axis=1)).ravel()
        else:
            raise DataValidationError(f"norm must be 'l2', 'l1' or None; got {norm!r}.")
        row[row == 0] = 1.0
        m.data /= np.repeat(row, np.diff(m.indptr))
    m.eliminate_zeros()
    return m
