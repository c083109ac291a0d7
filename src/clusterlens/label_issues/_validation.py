"""Input checks for label-issue detection: labels, features, pred_probs."""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError

__all__ = ["check_class_name", "check_pred_probs", "encode_labels"]

#: How far a row of ``pred_probs`` may sum from 1.
PROB_SUM_TOL = 1e-3


def encode_labels(
    labels: npt.ArrayLike, n_samples: int | None = None, *, what: str = "labels"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Return ``(codes, classes)`` with ``classes[codes] == labels``.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Given labels: integers or strings.
    n_samples : int, default=None
        Expected length (the number of feature rows).
    what : str, default="labels"
        How to name the input in messages.

    Raises
    ------
    DataValidationError
        If ``labels`` is not 1-D, is empty, has missing values, does not have
        ``n_samples`` entries, or holds a single class.
    """
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataValidationError(
            f"{what} must be 1-D of shape (n_samples,), one label per sample; got "
            f"shape {arr.shape}."
        )
    if arr.size == 0:
        raise DataValidationError(f"{what} is empty; there is nothing to rank.")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise DataValidationError(
            f"{what} has {arr.shape[0]:,} entries but the features have "
            f"{n_samples:,} rows; they must have one label per feature row, in the "
            "same order."
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            bad = int(np.argmax(~np.isfinite(arr)))
            raise DataValidationError(
                f"{what} has {int((~np.isfinite(arr)).sum()):,} missing (NaN) "
                f"labels (first at row {bad}); every sample needs a label."
            )
        if np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
    elif arr.dtype == object:
        if any(v is None for v in arr.tolist()):
            raise DataValidationError(
                f"{what} has missing (None) labels; every sample needs a label."
            )
        arr = arr.astype(str)
    elif arr.dtype.kind not in "iubU":
        raise DataValidationError(
            f"{what} must hold integers or strings; got dtype {arr.dtype}."
        )
    classes, codes = np.unique(arr, return_inverse=True)
    if classes.size < 2:
        raise DataValidationError(
            f"{what} holds one class only ({classes[0]!r}); finding label issues "
            "needs at least two classes to tell apart."
        )
    return codes.reshape(-1).astype(np.int64), classes


def check_pred_probs(
    pred_probs: npt.ArrayLike, n_samples: int, n_classes: int
) -> npt.NDArray[np.float64]:
    """Check user-supplied out-of-sample predicted probabilities.

    Raises
    ------
    DataValidationError
        If the shape is not ``(n_samples, n_classes)``, a value is not finite
        or outside [0, 1], or a row does not sum to 1 (within 1e-3).
    """
    p = np.asarray(pred_probs)
    if p.ndim != 2:
        raise DataValidationError(
            f"pred_probs must be 2-D of shape (n_samples, n_classes); got shape "
            f"{p.shape}."
        )
    if p.shape != (n_samples, n_classes):
        raise DataValidationError(
            f"pred_probs has shape {p.shape} but the data has {n_samples:,} samples "
            f"and {n_classes} classes; it needs one row per sample and one column "
            "per class, classes in sorted order."
        )
    if not np.issubdtype(p.dtype, np.floating) and not np.issubdtype(
        p.dtype, np.integer
    ):
        raise DataValidationError(f"pred_probs must be numeric; got dtype {p.dtype}.")
    p = p.astype(np.float64, copy=False)
    finite = np.isfinite(p)
    if not finite.all():
        row = int(np.argmax(~finite.all(axis=1)))
        raise DataValidationError(
            f"pred_probs has non-finite values (NaN or inf), first in row {row}."
        )
    if p.min() < 0 or p.max() > 1:
        raise DataValidationError(
            f"pred_probs must lie in [0, 1]; got values in [{p.min():.4g}, "
            f"{p.max():.4g}]. Pass probabilities (a softmax), not logits."
        )
    err = np.abs(p.sum(axis=1) - 1.0)
    if err.max() > PROB_SUM_TOL:
        row = int(np.argmax(err))
        raise DataValidationError(
            f"pred_probs rows must sum to 1; {int((err > PROB_SUM_TOL).sum()):,} "
            f"rows do not (row {row} sums to {p[row].sum():.6g}). Pass "
            "probabilities (a softmax over all classes), not logits or scores."
        )
    return p


def check_class_name(
    name: Any, classes: npt.NDArray[Any], names: list[str] | None = None
) -> int:
    """Return the index of class ``name`` among ``classes`` (or display ``names``).

    Raises
    ------
    DataValidationError
        If no class has this name; the message lists close matches.
    """
    shown = names if names is not None else [str(c) for c in classes.tolist()]
    key = str(name)
    if key in shown:
        return shown.index(key)
    close = difflib.get_close_matches(key, shown, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listed = ", ".join(repr(c) for c in shown[:20])
    more = f", ... ({len(shown)} in all)" if len(shown) > 20 else ""
    raise DataValidationError(
        f"Class {key!r} is not in the data.{hint} Classes present: {listed}{more}."
    )


def check_weight(value: Any, name: str, owner: str) -> float:
    """A weight in [0, 1]."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and 0.0 <= float(value) <= 1.0:
        return float(value)
    raise InvalidParameterError(
        f"The {name!r} parameter of {owner} must be a float in the range [0, 1]. "
        f"Got {value!r} instead."
    )
