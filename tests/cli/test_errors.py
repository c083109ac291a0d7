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


def test_console_script_prints_warnings_as_one_line(tmp_path):
    """A data warning reaches the user as 'Warning: ...', not file:line + source."""
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 60, 10, 10)).save(src / f"{i}.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    exe = Path(sys.executable).with_name("clusterlens")
    r = subprocess.run(
        [str(exe), "ingest", str(src), "--out", str(tmp_path / "ws"), "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert lines and all(x.startswith("Warning: ") for x in lines), r.stderr
    assert "broken.jpg" in r.stderr and ".py:" not in r.stderr
