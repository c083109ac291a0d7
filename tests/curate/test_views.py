"""Curation views on planted cases with known answers: duplicates, outliers,
the map, search by example and the covering sample."""

from __future__ import annotations

import numpy as np
import pytest

from clusterlens.curate import (
    SimilarityIndex,
    embed_2d,
    find_duplicates,
    outlier_scores,
    select_sample,
)
from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.features._knn import knn_graph, l2_normalize


def planted(seed=0, n_clusters=6, per=40, d=32):
    """Tight clusters, a few near copies, exact copies and one outlier."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d)) * 3
    X = np.repeat(centres, per, axis=0) + rng.normal(size=(n_clusters * per, d))
    y = np.repeat(np.arange(n_clusters), per)
    src = np.array([3, 50, 120])
    near = X[src] + 0.01 * rng.normal(size=(3, d))
    exact = X[[7, 8]]
    odd = rng.normal(size=(1, d)) * 0.2 + 40 * np.eye(d)[0]
    X = np.vstack([X, near, exact, odd]).astype(np.float32)
    return X, y, src


def test_knn_graph_equals_brute_force():
    X, *_ = planted()
    g = knn_graph(X, 5)
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    np.testing.assert_allclose(
        np.sort(D, axis=1)[:, :5], g.distances, rtol=1e-3, atol=1e-2
    )
    E = l2_normalize(X)
    ge = knn_graph(E, 3)
    np.testing.assert_allclose(
        ge.similarities[:, 0], (E * E[ge.indices[:, 0]]).sum(1), atol=1e-4
    )


def test_duplicates_group_copies_with_their_source():
    X, _, src = planted()
    n0 = 240
    E = l2_normalize(X)
    g = knn_graph(E, 10)
    hashes = np.array([f"h{i}" for i in range(len(X))], dtype=object)
    hashes[n0 + 3] = hashes[7]
    hashes[n0 + 4] = hashes[8]
    dup = find_duplicates(
        g.indices, g.similarities, hashes=hashes, embeddings=E, threshold=0.995
    )
    for j, s in enumerate(src):
        assert dup.group[s] >= 0 and dup.group[s] == dup.group[n0 + j]
    assert dup.group[7] == dup.group[n0 + 3] >= 0
    assert {dup.kind[7], dup.kind[n0 + 3]} == {"keep", "exact"}
    assert dup.n_groups == 5 and dup.n_redundant == 5
    assert (dup.group >= 0).sum() == 10  # nothing else is grouped
    assert dup.representative.sum() == 5
    # each group has exactly one representative, with similarity 1
    for gid in range(dup.n_groups):
        m = dup.group == gid
        assert dup.representative[m].sum() == 1
    assert np.all(dup.similarity[dup.representative] == 1.0)
    # the preferred (e.g. larger) copy is kept
    pref = np.zeros(len(X))
    pref[n0] = 10
    dup2 = find_duplicates(g.indices, g.similarities, threshold=0.995, preference=pref)
    assert dup2.representative[n0] and not dup2.representative[src[0]]
    with pytest.raises(InvalidParameterError, match=r"\(0, 1\]"):
        find_duplicates(g.indices, g.similarities, threshold=1.5)


def test_outlier_ranks_first_and_duplicates_do_not_hide_one():
    X, *_ = planted()
    E = l2_normalize(X)
    g = knn_graph(E, 10)
    o = outlier_scores(g.similarities)
    assert o.rank[0] == len(X) - 1
    assert o.flag[len(X) - 1] and o.flag.sum() <= 3
    assert o.score[len(X) - 1] == o.score.min()
    # an outlier with a copy of itself still ranks first when its
    # duplicates are excluded from the neighbours
    X2 = np.vstack([X, X[-1:]])
    E2 = l2_normalize(X2)
    g2 = knn_graph(E2, 10)
    plain = outlier_scores(g2.similarities)
    dup = find_duplicates(g2.indices, g2.similarities, threshold=0.999)
    same = dup.group[g2.indices] == dup.group[:, None]
    ex = same & (dup.group[:, None] >= 0)
    fixed = outlier_scores(g2.similarities, exclude=ex)
    assert set(fixed.rank[:2]) == {len(X2) - 1, len(X2) - 2}
    assert plain.z[-1] < fixed.z[-1]


def test_sample_covers_every_cluster_before_a_second_pick():
    X, y, _ = planted()
    n0 = 240
    Xc, yc = X[:n0], y
    s = select_sample(Xc, 6)
    assert sorted(yc[s.indices]) == list(range(6))
    assert np.all(np.diff(s.radius) <= 1e-6)  # coverage only improves
    again = select_sample(Xc, 6)
    np.testing.assert_array_equal(s.indices, again.indices)
    ok = np.ones(n0, bool)
    ok[yc == 2] = False  # e.g. junk: never picked
    s2 = select_sample(Xc, 5, eligible=ok)
    assert 2 not in yc[s2.indices] and s2.covered_by[yc == 2].max() == -1
    with pytest.raises(InvalidParameterError, match="between 1 and the 200"):
        select_sample(Xc, 201, eligible=ok)


def test_index_finds_own_copy_first_and_ivf_recall(tmp_path):
    X, _, src = planted()
    idx = SimilarityIndex.build(X)
    ids, _ = idx.search(X[240], k=3)
    assert ids[0, 0] in (240, src[0]) and set(ids[0, :2]) == {240, src[0]}
    idx.save(tmp_path / "flat", features="features.npy")
    back = SimilarityIndex.load(tmp_path / "flat", features=X)
    np.testing.assert_array_equal(back.search(X[:5], 4)[0], idx.search(X[:5], 4)[0])
    rng = np.random.default_rng(1)
    Y = (
        rng.normal(size=(50, 16))[rng.integers(0, 50, 5000)]
        + 0.3 * rng.normal(size=(5000, 16))
    ).astype(np.float32)
    ivf = SimilarityIndex.build(Y, exact_max=100)
    assert ivf.kind == "ivf" and ivf.recall >= 0.9
    ivf.save(tmp_path / "ivf", features="f.npy")
    back = SimilarityIndex.load(tmp_path / "ivf")
    assert back.kind == "ivf" and back.search(Y[:3], 5)[0].shape == (3, 5)


def test_map_is_deterministic_and_separates_clusters():
    X, y, _ = planted()
    E = l2_normalize(X[:240])
    g = knn_graph(E, 15)
    m = embed_2d(E, neighbors=(g.indices, g.distances), random_state=0)
    assert m.xy.shape == (240, 2) and m.xy.min() >= 0 and m.xy.max() <= 1
    m2 = embed_2d(E, neighbors=(g.indices, g.distances), random_state=0)
    np.testing.assert_array_equal(m.xy, m2.xy)
    # clusters stay apart on the map: each point's nearest map neighbour
    # shares its cluster
    D = ((m.xy[:, None] - m.xy[None]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    assert (y[D.argmin(1)] == y).mean() > 0.95
    tiny = embed_2d(E[:10])
    assert tiny.method.startswith("pca")


def test_duplicate_groups_never_chain():
    """A ~ B and B ~ C, but A and C are far: C only joins a group led by B."""
    ang = np.deg2rad([0.0, 20.0, 40.0])
    E = np.stack([np.cos(ang), np.sin(ang), np.zeros(3)], axis=1).astype(np.float32)
    E = np.vstack([E, [[0, 0, 1]]]).astype(np.float32)
    g = knn_graph(E, 3)
    thr = float(np.cos(np.deg2rad(25.0)))
    a_first = find_duplicates(
        g.indices, g.similarities, threshold=thr, preference=[3, 2, 1, 0], embeddings=E
    )
    assert a_first.group[0] == a_first.group[1] >= 0
    assert a_first.group[2] == -1 and a_first.group[3] == -1
    assert np.all(a_first.similarity[a_first.group >= 0] >= thr)
    b_first = find_duplicates(
        g.indices, g.similarities, threshold=thr, preference=[1, 3, 2, 0]
    )
    assert b_first.group[0] == b_first.group[1] == b_first.group[2] >= 0
    assert b_first.representative[1]


def test_thumbnail_similarity_equals_pair_by_pair_reference():
    """The per-image crop banks (and the mirrored whole instead of mirrored
    crops) give what comparing each pair directly gives: the best Pearson
    correlation of one whole thumbnail with the other's crops, itself or
    mirrored, both ways round; NaN for a flat thumbnail."""
    from clusterlens.curate._duplicates import _crop_maps, _thumb_similarity

    rng = np.random.default_rng(3)
    T = rng.integers(0, 256, (40, 24, 24), dtype=np.uint8)
    T[7] = 90  # flat
    T[8] = T[3][:, ::-1]  # a mirror copy
    a = rng.integers(0, 40, 300)
    b = rng.integers(0, 40, 300)
    a[:2], b[:2] = [3, 7], [8, 1]
    maps = _crop_maps().astype(np.float64)

    def corr(u, v):
        u, v = u - u.mean(), v - v.mean()
        return float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12))

    for crops in (False, True):
        got = _thumb_similarity(T, a, b, crops=crops, chunk=64)
        for k in range(a.size):
            x, y = T[a[k]].astype(np.float64), T[b[k]].astype(np.float64)
            if x.std() < 2.0 or y.std() < 2.0:  # _FLAT_STD
                assert np.isnan(got[k])
                continue
            best = -1.0
            pairs = ((x, y), (y, x)) if crops else ((x, y),)
            for p, q in pairs:
                whole = maps[0] @ p.ravel()
                for qq in (q, q[:, ::-1]):
                    bank = (maps if crops else maps[:1]) @ qq.ravel()
                    best = max(best, *(corr(whole, c) for c in bank))
            assert got[k] == pytest.approx(best, abs=1e-5)
        assert np.isnan(got[1])  # (7, 1): 7 is flat
    assert _thumb_similarity(T, np.array([3]), np.array([8]), crops=False)[0] == (
        pytest.approx(1.0, abs=1e-5)
    )


def test_exact_only_items_are_grouped_with_exact_copies_only():
    """Low-information items (exact_only) never form near-duplicate groups,
    though their embeddings are as close as copies; byte copies still group."""
    X, _, src = planted()
    n0 = 240
    E = l2_normalize(X)
    g = knn_graph(E, 10)
    hashes = np.array([f"h{i}" for i in range(len(X))], dtype=object)
    hashes[n0 + 3] = hashes[7]
    flat = np.zeros(len(X), dtype=bool)
    flat[[src[0], n0, 7, n0 + 3]] = True  # a near pair and an exact pair
    base = find_duplicates(g.indices, g.similarities, hashes=hashes, threshold=0.995)
    assert base.group[src[0]] == base.group[n0] >= 0
    dup = find_duplicates(
        g.indices, g.similarities, hashes=hashes, threshold=0.995, exact_only=flat
    )
    assert dup.group[src[0]] == -1 and dup.group[n0] == -1
    assert dup.group[7] == dup.group[n0 + 3] >= 0
    assert dup.kind[n0 + 3] in ("exact", "keep")
    others = ~np.isin(np.arange(len(X)), [src[0], n0])
    assert ((dup.group >= 0) == (base.group >= 0))[others].all()
    with pytest.raises(DataValidationError, match="exact_only must have one entry"):
        find_duplicates(g.indices, g.similarities, exact_only=flat[:-1])


def test_the_scan_decodes_large_jpegs_reduced_and_keeps_their_sizes(tmp_path):
    """A large JPEG is scanned from a reduced DCT-scale decode (>= twice the 512-px
    working side): its size properties stay the file's, and its content
    properties stay close to a whole decode's (the working copy is 512 px
    either way); a small image is scanned exactly as decoded whole."""
    import pyarrow.parquet as pq
    from PIL import Image

    from clusterlens.curate import image_properties
    from clusterlens.io import create_workspace
    from clusterlens.io._images import decode_image
    from clusterlens.pipelines.curate import run_scan

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:2800, 0:4200].astype(np.float32)
    photo = np.stack(
        [128 + 100 * np.sin(xx / 37.0), 128 + 90 * np.cos(yy / 23.0), (xx + yy) % 256],
        -1,
    )
    photo = np.clip(photo + rng.normal(0, 6, photo.shape), 0, 255).astype(np.uint8)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "big.jpg", quality=92)
    Image.fromarray(photo[:300, :400]).save(folder / "small.jpg", quality=92)
    ws = create_workspace(folder, tmp_path / "ws")
    run_scan(ws, tmp_path / "scan")
    got = pq.read_table(tmp_path / "scan" / "scan.parquet").to_pydict()
    names = [p.rsplit("/", 1)[-1] for p in ws.items["path"]]
    from clusterlens.pipelines.curate import ScanPass

    reduced = decode_image(folder / "big.jpg", min_size=ScanPass.MIN_SIZE)
    assert reduced.size == (2100, 1400)  # decoded at half its side
    for name, (h, w) in (("big.jpg", (2800, 4200)), ("small.jpg", (300, 400))):
        i = names.index(name)
        whole = image_properties(np.asarray(decode_image(folder / name)))
        assert (got["prop_height"][i], got["prop_width"][i]) == (h, w)
        assert got["prop_aspect"][i] == w / h
        for key in ("brightness", "contrast", "saturation", "entropy"):
            assert abs(got[f"prop_{key}"][i] - whole[key]) < 0.02 * max(1, whole[key])
        rel = abs(got["prop_sharpness"][i] - whole["sharpness"]) / whole["sharpness"]
        assert rel < (0.05 if name == "big.jpg" else 1e-12), (name, rel)
