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


def _capture_serve(monkeypatch):
    apps = []
    monkeypatch.setattr(
        "clusterlens.cli.review.serve",
        lambda app, host, port: apps.append(app),
    )
    return apps


def test_review_off_loopback_prints_a_token_once_and_checks_it(ws, monkeypatch):
    pytest.importorskip("flask")
    apps = _capture_serve(monkeypatch)
    r = CliRunner().invoke(
        cli, ["review", str(ws), "--host", "0.0.0.0", "--port", "80"]
    )
    assert r.exit_code == 0, r.output
    token = apps[0].config["TOKEN"]
    assert token and len(token) >= 24
    assert r.output.count(token) == 1
    import socket

    host = socket.gethostname().lower()
    assert f"http://{host}:80/?token={token}" in r.output
    c = apps[0].test_client()
    assert c.get("/cluster/0").status_code == 401
    assert (
        c.get("/cluster/0", headers={"X-Clusterlens-Token": token}).status_code == 200
    )
    # loopback: no token
    r = CliRunner().invoke(cli, ["review", str(ws)])
    assert apps[1].config["TOKEN"] is None and "token" not in r.output


def test_review_switches_results_keeping_labels(ws, monkeypatch):
    pytest.importorskip("flask")
    from tests.app.test_flow import _second_results

    from clusterlens.app import open_review

    apps = _capture_serve(monkeypatch)
    _, store = open_review(ws)
    store.name_cluster(0, "zero")
    store.close()
    other = _second_results(ws)
    r = CliRunner().invoke(cli, ["review", str(ws), "--results", str(other)])
    assert r.exit_code == 0, r.output
    assert "Switched the review" in r.output and "kept 20 labels" in r.output
    assert str(other) in r.output
    store = apps[0].config["STORE"]
    assert sum(lab == "zero" for lab in store.labels()) == 20
    assert len(store.clusters()) == 2
    store.close()
    # next time, no --results: still the new results, no switch
    r = CliRunner().invoke(cli, ["review", str(ws)])
    assert "Switched" not in r.output and str(other) in r.output


def test_review_reset_asks_first(ws, monkeypatch):
    pytest.importorskip("flask")
    from clusterlens.app import open_review

    apps = _capture_serve(monkeypatch)
    _, store = open_review(ws)
    store.name_cluster(0, "zero")
    store.close()
    r = CliRunner().invoke(cli, ["review", str(ws), "--reset"], input="n\n")
    assert r.exit_code == 1 and "Start the review of" in r.output
    assert apps == [] and (ws / "review.sqlite").is_file()
    r = CliRunner().invoke(cli, ["review", str(ws), "--reset"], input="y\n")
    assert r.exit_code == 0, r.output
    assert "The old review is in" in r.output
    assert apps[0].config["STORE"].progress()["n_labelled"] == 0
    apps[0].config["STORE"].close()
    assert len(list(ws.glob("review-*.sqlite.bak"))) == 1
    r = CliRunner().invoke(cli, ["review", str(ws), "--reset", "--yes"])
    assert r.exit_code == 0 and len(list(ws.glob("review-*.sqlite.bak"))) == 2


def test_serve_uses_waitress(monkeypatch):
    pytest.importorskip("waitress")
    import waitress

    from clusterlens.cli.review import serve

    seen = {}

    class Server:
        def run(self):
            seen["ran"] = True

    def create_server(app, **kw):
        seen.update(kw, app=app)
        return Server()

    monkeypatch.setattr(waitress, "create_server", create_server)
    serve("APP", "127.0.0.1", 8765)
    assert seen == {
        "app": "APP",
        "host": "127.0.0.1",
        "port": 8765,
        "threads": 8,
        "ran": True,
    }


def test_export_never_switches_the_review(ws):
    from tests.app.test_flow import _second_results

    from clusterlens.app import open_review

    _, store = open_review(ws)
    src = store.source()
    store.name_cluster(0, "zero")
    store.close()
    other = _second_results(ws)
    r = CliRunner().invoke(
        cli, ["export", str(ws), "--format", "csv", "--results", str(other)]
    )
    assert r.exit_code == 1 and "--results" in r.output
    assert "clusterlens review" in r.output
    _, store = open_review(ws)
    assert store.source() == src and store.n_actions() == 1
    store.close()
    # without --results: the review's own results, though newer ones exist
    r = CliRunner().invoke(cli, ["export", str(ws), "--format", "csv"])
    assert r.exit_code == 0, r.output
    text = (ws / "export" / "csv" / "labels.csv").read_text()
    assert text.count(",zero,") == 20


def test_export_says_what_it_skipped(ws):
    """#19: duplicates (keep one) and rejected items are left out, and counted."""
    from clusterlens.app import open_review

    _, store = open_review(ws)
    store.name_cluster(0, "zero")
    a, b = (int(i) for i in store.cluster_items(0)[:2])
    store.keep_one(a, [a, b])
    store.reject([int(store.cluster_items(1)[0])], to="pool")
    store.close()
    r = CliRunner().invoke(cli, ["export", str(ws), "--format", "imagefolder"])
    assert r.exit_code == 0, r.output
    assert "Skipped 2 items: 1 marked duplicate (keep one), 1 rejected." in r.output
    assert "Exported 19 labelled of 60 items" in r.output
    r = CliRunner().invoke(cli, ["export", str(ws), "--format", "yolo"])
    assert r.exit_code == 1 and "YOLO labels are boxes" in r.output
    assert "Traceback" not in r.output and not (ws / "export" / "yolo").exists()
    r = CliRunner().invoke(
        cli,
        [
            "export",
            str(ws),
            "--format",
            "imagefolder",
            "--copy",
            "--link",
            "hardlink",
            "--out",
            str(ws / "x"),
        ],
    )
    assert r.exit_code == 2 and "--copy or --link" in r.output
