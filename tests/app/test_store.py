"""The review store: every action, undo, resume, two writers."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics import adjusted_rand_score

from clusterlens.app import ReviewStore, open_review
from clusterlens.app._store import POOL
from clusterlens.exceptions import DataValidationError, InvalidParameterError


def _state(store):
    return (
        store.labels(),
        store.assignment().tolist(),
        [(c["id"], c["name"], c["size"]) for c in store.clusters()],
        [(s["index"], s["status"]) for s in store.suspects(None)],
    )


def test_name_cluster_labels_every_item_of_it(digits_ws):
    data, store = open_review(digits_ws[0])
    members = np.flatnonzero(data.cluster == 1)
    out = store.name_cluster(1, "one")
    assert out["n_labelled"] == members.size
    labels = np.array(store.labels(), dtype=object)
    assert (labels[members] == "one").all()
    assert (labels[data.cluster != 1] == None).all()  # noqa: E711
    assert store.clusters()[1]["name"] == "one"
    assert store.clusters()[1]["n_unlabelled"] == 0


def test_reject_moves_item_to_nearest_other_cluster(digits_ws):
    data, store = open_review(digits_ws[0])
    store.name_cluster(0, "a")
    item = int(store.cluster_items(0)[-1])
    X = data.features.astype(np.float64)
    cents = {c: X[data.cluster == c].mean(0) for c in (1, 2)}
    want = min(cents, key=lambda c: ((X[item] - cents[c]) ** 2).sum())
    out = store.reject(item)
    assert out["moved_to"] == {item: want}
    assert store.assignment()[item] == want
    assert store.labels()[item] is None


def test_reject_to_pool_without_features(tmp_path):
    from tests.app.conftest import make_ws

    ws, _ = make_ws(tmp_path, features=False)
    data, store = open_review(ws)
    assert data.features is None
    store.reject([0, 1])
    assert store.assignment()[:2].tolist() == [POOL, POOL]
    assert store.progress()["n_pool"] == 2
    with pytest.raises(InvalidParameterError, match="needs the clustering's features"):
        store.reject(2, to="nearest")


def test_grid_is_closest_to_centre_first(digits_ws):
    data, store = open_review(digits_ws[0])
    items = store.cluster_items(2)
    X = data.features[items].astype(np.float64)
    d = np.sqrt(((X - X.mean(0)) ** 2).sum(1))
    assert np.all(np.diff(d) >= -1e-9)
    assert sorted(items.tolist()) == np.flatnonzero(data.cluster == 2).tolist()


def test_grid_uses_results_distance_without_features(tmp_path):
    from tests.app.conftest import make_ws

    ws, _ = make_ws(tmp_path, features=False)
    data, store = open_review(ws)
    items = store.cluster_items(0)
    assert np.all(np.diff(data.distance[items]) >= 0)


def test_merge_moves_items_and_names_them(digits_ws):
    data, store = open_review(digits_ws[0])
    store.name_cluster(0, "zero")
    n0, n1 = (int((data.cluster == c).sum()) for c in (0, 1))
    out = store.merge(0, 1)
    assert out["n_moved"] == n1
    sizes = {c["id"]: c["size"] for c in store.clusters()}
    assert 1 not in sizes and sizes[0] == n0 + n1
    assert all(lab == "zero" for lab in np.array(store.labels())[data.cluster <= 1])
    with pytest.raises(InvalidParameterError, match="merged into cluster 0"):
        store.name_cluster(1, "x")


def test_split_is_2means_of_the_cluster_features(tmp_path):
    from tests.app.conftest import make_ws

    ws, truth = make_ws(tmp_path, k=2)  # 3 classes in 2 clusters: one is mixed
    data, store = open_review(ws)
    mixed = max((0, 1), key=lambda c: len(set(truth[data.cluster == c])))
    members = np.flatnonzero(data.cluster == mixed)
    out = store.split(mixed)
    new = out["new_cluster"]
    assert new == 2 and out["n_moved"] > 0
    after = store.assignment()[members]
    ref = SkKMeans(2, n_init=10, random_state=0).fit_predict(data.features[members])
    assert adjusted_rand_score(ref, after) == 1.0
    # the split separates the two classes the cluster mixed
    assert adjusted_rand_score(truth[members], after) == 1.0


def test_suspects_accept_keep_fix(digits_ws):
    ws = digits_ws[0]
    data, _ = open_review(ws)
    suspects = {
        "index": np.array([3, 5, 7]),
        "issue_rank": np.array([1, 2, 3]),
        "given": np.array(["a", "b", "c"]),
        "suggested": np.array(["x", "y", "z"]),
    }
    store = ReviewStore(ws / "other.sqlite", cluster=data.cluster, suspects=suspects)
    assert [s["index"] for s in store.suspects()] == [3, 5, 7]
    store.resolve_suspect(3, "accept")
    store.resolve_suspect(5, "keep")
    store.resolve_suspect(7, "fix", "w")
    labels = store.labels()
    assert (labels[3], labels[5], labels[7]) == ("x", "b", "w")
    assert store.suspects() == []
    # a cluster name does not overwrite what the annotator fixed by hand
    store.name_cluster(int(data.cluster[3]), "other")
    assert store.labels()[3] == "x"
    with pytest.raises(InvalidParameterError, match="not in the suspects queue"):
        store.resolve_suspect(0, "accept")
    with pytest.raises(InvalidParameterError, match="'decision' parameter"):
        store.resolve_suspect(3, "maybe")


def test_undo_restores_every_action_exactly(digits_ws, global_random_seed):
    _data, store = open_review(digits_ws[0], random_state=global_random_seed)
    states = [_state(store)]
    store.name_cluster(0, "a")
    states.append(_state(store))
    store.reject(int(store.cluster_items(0)[-1]))
    states.append(_state(store))
    store.split(1)
    states.append(_state(store))
    store.merge(2, 0)
    states.append(_state(store))
    store.label_items([4, 9], "hand")
    states.append(_state(store))
    store.name_cluster(2, "b")
    assert store.n_actions() == 6
    undone = store.undo(2)
    assert [u["kind"] for u in undone] == ["name_cluster", "label_items"]
    assert _state(store) == states[-2]
    for want in reversed(states[:-2]):
        store.undo()
        assert _state(store) == want
    assert store.undo() == []  # nothing left
    assert store.n_actions() == 0
    with pytest.raises(InvalidParameterError, match="'n' parameter of undo"):
        store.undo(0)


def test_reopening_resumes(digits_ws):
    ws = digits_ws[0]
    _, store = open_review(ws)
    store.name_cluster(2, "two")
    store.reject(int(store.cluster_items(2)[-1]))
    store.set_cursor(2)
    before = _state(store)
    store.close()
    _, again = open_review(ws)
    assert _state(again) == before
    assert again.cursor() == "2"
    assert again.n_actions() == 2


def test_two_writers_last_write_wins(digits_ws):
    ws = digits_ws[0]
    _, a = open_review(ws)
    _, b = open_review(ws)
    a.name_cluster(0, "from-a")
    assert b.labels() == a.labels()  # b sees a's commit
    b.name_cluster(0, "from-b")
    assert a.clusters()[0]["name"] == "from-b"
    assert set(np.array(a.labels())[a.cluster_items(0)]) == {"from-b"}

    errors = []

    def work(store, name):
        try:
            for i in range(15):
                store.name_cluster(i % 3, f"{name}{i}")
                members = store.cluster_items((i + 1) % 3)
                store.reject(int(members[0]) if members.size else i, to="pool")
        except Exception as e:
            errors.append(e)

    ts = [threading.Thread(target=work, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    con = sqlite3.connect(ws / "review.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM actions").fetchone()[0] == 2 + 60
    # every item's label is its cluster's name or None (pool), never half-written
    names = a.cluster_names()
    for lab, c in zip(a.labels(), a.assignment(), strict=True):
        assert (c == POOL and lab is None) or lab == names[int(c)]


def test_store_errors(digits_ws, tmp_path):
    ws = digits_ws[0]
    data, store = open_review(ws)
    with pytest.raises(InvalidParameterError, match="Cluster 99 does not exist"):
        store.name_cluster(99, "x")
    with pytest.raises(InvalidParameterError, match="non-empty string"):
        store.name_cluster(0, "  ")
    with pytest.raises(InvalidParameterError, match=r"must lie in \[0, 60\)"):
        store.reject(60)
    with pytest.raises(InvalidParameterError, match="with itself"):
        store.merge(1, 1)
    with pytest.raises(DataValidationError, match="review of 60 items"):
        ReviewStore(ws / "review.sqlite", cluster=np.zeros(5, dtype=int))
    bad = tmp_path / "junk.sqlite"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(DataValidationError, match="is not a review store"):
        ReviewStore(bad, cluster=data.cluster)
    assert store.n_actions() == 0  # failed actions leave nothing behind
