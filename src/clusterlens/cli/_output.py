"""Rendering results: human text or versioned JSON on stdout."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click
import numpy as np

__all__ = ["emit"]


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def emit(fmt: str, schema: str, payload: Mapping[str, Any], human: str) -> None:
    """Print ``payload`` as JSON (with its schema) or the ``human`` text."""
    if fmt == "json":
        click.echo(
            json.dumps({"schema": schema, **payload}, default=_default, indent=2)
        )
    else:
        click.echo(human)
