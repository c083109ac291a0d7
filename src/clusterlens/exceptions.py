"""The clusterlens exception and warning hierarchy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "BackendError",
    "ClusterlensError",
    "ConvergenceWarning",
    "DataQualityWarning",
    "DataValidationError",
    "InvalidParameterError",
    "MissingDependencyError",
    "NotFittedError",
    "OutputExistsError",
]


class ClusterlensError(Exception):
    """Root of every error clusterlens raises on purpose."""


if TYPE_CHECKING:
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

    class NotFittedError(ClusterlensError, _SklearnNotFittedError):
        """An estimator was used before ``fit``."""


def _not_fitted_error() -> type[Exception]:
    """Make :class:`NotFittedError` on first use.

    It derives from scikit-learn's, whose import costs a second; made on
    first use, a command that never touches an estimator (``explore`` until
    its clusters) does not wait for scikit-learn to load.
    """
    cls = globals().get("NotFittedError")
    if cls is not None:
        return cls  # type: ignore[no-any-return]
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

    class NotFittedError(ClusterlensError, _SklearnNotFittedError):
        """An estimator was used before ``fit``; scikit-learn's text and contract.

        It is also scikit-learn's ``NotFittedError`` (a ValueError and an
        AttributeError), so code catching that keeps working.
        """

    NotFittedError.__module__ = __name__
    NotFittedError.__qualname__ = "NotFittedError"
    globals()["NotFittedError"] = NotFittedError
    return NotFittedError


def __getattr__(name: str) -> Any:
    if name == "NotFittedError":
        return _not_fitted_error()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class InvalidParameterError(ClusterlensError, ValueError, TypeError):
    """A parameter has the wrong type or value (scikit-learn's message template)."""


class DataValidationError(ClusterlensError, ValueError):
    """Input data is malformed: wrong shape, NaN, truncated file, too few rows."""


class MissingDependencyError(ClusterlensError, ImportError):
    """An optional dependency needed by the requested feature is not installed."""


class BackendError(ClusterlensError, RuntimeError):
    """An execution backend (threads, Dask) failed or cannot be reached."""


class OutputExistsError(ClusterlensError, FileExistsError):
    """An output path exists and overwriting was not asked for."""


class ConvergenceWarning(UserWarning):
    """An iterative method stopped early or found fewer clusters than asked."""


class DataQualityWarning(UserWarning):
    """Input is valid but odd (duplicates, constant features, ...)."""
