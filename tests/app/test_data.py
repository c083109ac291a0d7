"""Bad input for the review app: no results, unknown schemas, other data sets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clusterlens.app import load_review_data
from clusterlens.exceptions import DataValidationError
from clusterlens.io import write_results


def test_workspace_without_results(tmp_path):
    from clusterlens.io import create_workspace

    np.savez(tmp_path / "d.npz", images=np.zeros((4, 8, 8), np.uint8))
    (tmp_path / "ws").mkdir()
    create_workspace(tmp_path / "d.npz", tmp_path / "ws")
    with pytest.raises(DataValidationError, match="has no clustering results"):
        load_review_data(tmp_path / "ws")


def test_not_a_workspace(tmp_path):
    with pytest.raises(DataValidationError, match="is not a clusterlens workspace"):
        load_review_data(tmp_path)


def test_results_from_unknown_schema(digits_ws):
    run = digits_ws[0] / "clusters" / "pixels" / "run.json"
    body = json.loads(run.read_text())
    body["schema"] = "clusterlens.cluster-images/0"
    run.write_text(json.dumps(body))
    with pytest.raises(
        DataValidationError, match=r"schema 'clusterlens.cluster-images/0'"
    ):
        load_review_data(digits_ws[0])


def test_results_without_cluster_column(digits_ws):
    res = digits_ws[0] / "clusters" / "pixels" / "results.parquet"
    (res.parent / "run.json").unlink()
    write_results(res, {"idx": np.arange(60), "group": np.zeros(60, int)})
    with pytest.raises(DataValidationError, match="older or unknown clusterlens"):
        load_review_data(digits_ws[0])


def test_results_of_another_workspace(digits_ws):
    res = digits_ws[0] / "clusters" / "pixels" / "results.parquet"
    write_results(res, {"index": np.arange(10), "cluster": np.zeros(10, int)})
    with pytest.raises(DataValidationError, match="10 rows but the workspace has 60"):
        load_review_data(digits_ws[0])


def test_suspects_from_label_issues_file(digits_ws):
    out = digits_ws[0] / "issues"
    out.mkdir()
    write_results(
        out / "label_issues.parquet",
        {
            "index": np.arange(60),
            "label": np.array(["a"] * 60),
            "suggested_label": np.array(["b"] * 60),
            "is_label_issue": np.arange(60) % 7 == 0,
            "issue_rank": np.arange(60)[::-1] + 1,
        },
    )
    data = load_review_data(digits_ws[0])
    assert data.suspects["index"].tolist() == [56, 49, 42, 35, 28, 21, 14, 7, 0]
    (out / "run.json").write_text(json.dumps({"schema": "clusterlens.label_issues/9"}))
    with pytest.raises(DataValidationError, match="label_issues/9"):
        load_review_data(digits_ws[0])
