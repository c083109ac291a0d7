"""Input and parameter validation with scikit-learn's message templates."""

from __future__ import annotations

import numbers
from typing import Any, Literal, overload

import numpy as np

from clusterlens.exceptions import InvalidParameterError
from clusterlens.typing import SeedLike

__all__ = [
    "check_int",
    "check_options",
    "check_random_state",
    "check_real",
]


def check_random_state(seed: SeedLike) -> np.random.Generator:
    """Turn ``seed`` into a :class:`numpy.random.Generator`.

    Parameters
    ----------
    seed : int, numpy.random.Generator or None
        ``None`` gives fresh OS entropy; an int seeds a new PCG64 generator;
        a Generator is returned as it is (it is shared, not copied).

    Returns
    -------
    rng : numpy.random.Generator

    Examples
    --------
    >>> check_random_state(0).integers(10)
    np.int64(8)
    """
    if seed is None or isinstance(seed, numbers.Integral):
        if seed is not None and int(seed) < 0:
            raise InvalidParameterError(
                f"random_state must be a non-negative int, a numpy Generator or None. "
                f"Got {seed!r} instead."
            )
        return np.random.default_rng(None if seed is None else int(seed))
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(int(seed.randint(0, 2**31 - 1)))
    raise InvalidParameterError(
        f"random_state must be an int, a numpy Generator or None. Got {seed!r} instead."
    )


def _fmt_range(low: float | None, high: float | None, closed: str) -> str:
    left = "[" if closed in ("both", "left") and low is not None else "("
    right = "]" if closed in ("both", "right") and high is not None else ")"
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    return f"{left}{lo}, {hi}{right}"


@overload
def check_int(
    value: Any,
    name: str,
    owner: str,
    *,
    low: int | None = ...,
    high: int | None = ...,
    allow_none: Literal[False] = ...,
) -> int: ...


@overload
def check_int(
    value: Any,
    name: str,
    owner: str,
    *,
    low: int | None = ...,
    high: int | None = ...,
    allow_none: bool,
) -> int | None: ...


def check_int(
    value: Any,
    name: str,
    owner: str,
    *,
    low: int | None = None,
    high: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """Check that ``value`` is an int in ``[low, high]``.

    The message follows scikit-learn's template, e.g. ``The 'n_clusters'
    parameter of KMeans must be an int in the range [1, inf). Got 0 instead.``
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and (low is None or value >= low) and (high is None or value <= high):
        return int(value)
    extra = " or None" if allow_none else ""
    raise InvalidParameterError(
        f"The {name!r} parameter of {owner} must be an int in the range "
        f"{_fmt_range(low, high, 'both')}{extra}. Got {value!r} instead."
    )


def check_real(
    value: Any,
    name: str,
    owner: str,
    *,
    low: float | None = None,
    high: float | None = None,
    closed: str = "both",
) -> float:
    """Check that ``value`` is a real number in the given interval."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and np.isfinite(value):
        v = float(value)
        lo_ok = low is None or (v >= low if closed in ("both", "left") else v > low)
        hi_ok = high is None or (v <= high if closed in ("both", "right") else v < high)
        if lo_ok and hi_ok:
            return v
    raise InvalidParameterError(
        f"The {name!r} parameter of {owner} must be a float in the range "
        f"{_fmt_range(low, high, closed)}. Got {value!r} instead."
    )


def check_options(value: Any, name: str, owner: str, options: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``options``; suggest a close match if not."""
    if isinstance(value, str) and value in options:
        return value
    import difflib

    close = difflib.get_close_matches(str(value), options, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InvalidParameterError(
        f"The {name!r} parameter of {owner} must be a str among "
        f"{{{', '.join(repr(o) for o in options)}}}. Got {value!r} instead.{hint}"
    )
