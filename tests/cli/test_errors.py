"""The CLI's last line of defence: an error no check caught is one line, exit 1."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from clusterlens.cli.main import cli


@pytest.fixture
def boom():
    @click.command("boom")
    @click.argument("what")
    def _boom(what):
        if what == "eof":
            raise EOFError("Ran out of input")
        if what == "bad":
            raise click.BadParameter("nope", param_hint="WHAT")
        raise ValueError("an unforeseen case\nsecond line")

    cli.add_command(_boom)
    yield
    cli.commands.pop("boom")


def test_unexpected_error_is_one_line_not_a_traceback(boom, monkeypatch):
    monkeypatch.delenv("CLUSTERLENS_DEBUG", raising=False)
    r = CliRunner().invoke(cli, ["boom", "value"])
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    assert "Error (unexpected): ValueError: an unforeseen case." in r.output
    assert "second line" not in r.output
    r = CliRunner().invoke(cli, ["boom", "eof"])
    assert r.exit_code == 1 and "Aborted" not in r.output
    assert "empty or cut off" in r.output
    r = CliRunner().invoke(cli, ["boom", "bad"])  # click's own usage errors stay
    assert r.exit_code == 2 and "Invalid value for WHAT" in r.output


def test_debug_shows_the_traceback(boom, monkeypatch):
    monkeypatch.setenv("CLUSTERLENS_DEBUG", "1")
    r = CliRunner().invoke(cli, ["boom", "value"])
    assert r.exit_code == 1 and isinstance(r.exception, ValueError)
