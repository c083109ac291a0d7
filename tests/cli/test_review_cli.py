"""``clusterlens review`` and ``clusterlens export`` from the command line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tests.app.conftest import make_ws

from clusterlens.cli.main import cli


@pytest.fixture
def ws(tmp_path):
    return make_ws(tmp_path)[0]


def test_review_binds_localhost_unless_host_is_given(ws, monkeypatch):
    pytest.importorskip("flask")
    calls = []
    monkeypatch.setattr(
        "clusterlens.cli.review.serve",
        lambda app, host, port: calls.append((host, port)),
    )
    r = CliRunner().invoke(cli, ["review", str(ws)])
    assert r.exit_code == 0, r.output
    assert calls == [("127.0.0.1", 8765)]
    r = CliRunner().invoke(cli, ["review", str(ws), "--host", "0.0.0.0", "--port", "9"])
    assert r.exit_code == 0 and calls[-1] == ("0.0.0.0", 9)
    assert (ws / "review.sqlite").is_file()


def test_review_workspace_without_results(tmp_path):
    pytest.importorskip("flask")
    import numpy as np

    from clusterlens.io import create_workspace

    np.savez(tmp_path / "d.npz", images=np.zeros((4, 8, 8), np.uint8))
    (tmp_path / "w").mkdir()
    create_workspace(tmp_path / "d.npz", tmp_path / "w")
    r = CliRunner().invoke(cli, ["review", str(tmp_path / "w")])
    assert r.exit_code == 1
    assert "has no clustering results" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["export", str(tmp_path / "w"), "--format", "csv"])
    assert r.exit_code == 1 and "has no clustering results" in r.output


def test_review_results_of_unknown_schema(ws):
    run = ws / "clusters" / "pixels" / "run.json"
    run.write_text(json.dumps({"schema": "clusterlens.cluster-images/7"}))
    r = CliRunner().invoke(cli, ["export", str(ws), "--format", "csv"])
    assert r.exit_code == 1
    assert r.output.startswith("Error (invalid input): Results")
    assert "cluster-images/7" in r.output


@pytest.mark.parametrize("fmt", ["csv", "coco", "imagefolder", "labelstudio"])
def test_export_each_format(ws, fmt):
    from clusterlens.app import open_review

    _, store = open_review(ws)
    store.name_cluster(0, "zero")
    store.close()
    r = CliRunner().invoke(cli, ["export", str(ws), "--format", fmt, "--print", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["schema"] == "clusterlens.export/1" and out["n_labelled"] == 20
    assert (ws / "export" / fmt).is_dir()
    r = CliRunner().invoke(cli, ["export", str(ws), "--format", fmt])
    assert r.exit_code == 1 and "--overwrite" in r.output
