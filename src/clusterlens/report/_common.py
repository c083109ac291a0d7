"""Formatting and resources shared by the HTML reports."""

from __future__ import annotations

import functools
import math
import numbers
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["css", "fmt_number", "fmt_value", "static_text", "template", "version"]


def fmt_number(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 1e4:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def fmt_value(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, numbers.Integral):
        return f"{int(v):,}"
    if isinstance(v, numbers.Real):
        return fmt_number(float(v))
    return str(v)


@functools.cache
def css() -> Any:
    from markupsafe import Markup

    css = (
        resources.files("clusterlens.report")
        .joinpath("static", "report.css")
        .read_text(encoding="utf-8")
    )
    # Our own file, inlined verbatim (autoescape would turn ">" into "&gt;").
    return Markup(css)


@functools.cache
def static_text(name: str) -> Any:
    """``static/NAME`` (our own script or style), to inline verbatim."""
    from markupsafe import Markup

    text = (
        resources.files("clusterlens.report")
        .joinpath("static", name)
        .read_text(encoding="utf-8")
    )
    if "</" in text:  # would end the <script>/<style> element early
        raise ValueError(f"static/{name} must not contain '</'.")
    return Markup(text)


def version() -> str:
    from clusterlens import __version__

    return __version__


@functools.cache
def template(name: str) -> Any:
    """The Jinja2 template ``templates/NAME``, autoescaping, loaded once."""
    import jinja2

    def read(name: str) -> str:
        return (
            resources.files("clusterlens.report")
            .joinpath("templates", name)
            .read_text(encoding="utf-8")
        )

    source = read(name)
    env = jinja2.Environment(
        # shared macros: {% from "_macros.html.j2" import ... %}
        loader=jinja2.FunctionLoader(read),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.from_string(source)
