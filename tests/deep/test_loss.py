"""The IID objective against a direct NumPy computation of mutual information."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clusterlens.deep import (  # noqa: E402
    iid_loss,
    iid_segmentation_loss,
    joint_distribution,
    joint_distribution_dense,
    mutual_information_loss,
)


def _softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


EPS64 = np.finfo(np.float64).eps


def _numpy_mi(z, zt, lamb=1.0, eps=EPS64):
    """I_λ(z; z') from the definition: sum_cc' P log(P / (P_c^λ P_c'^λ))."""
    n, k = z.shape
    P = np.zeros((k, k))
    for i in range(n):  # the definition, sample by sample
        P += np.outer(z[i], zt[i])
    P = (P + P.T) / 2
    P /= P.sum()
    pi, pj = P.sum(axis=1), P.sum(axis=0)
    total = 0.0
    for c in range(k):
        for d in range(k):
            p = max(P[c, d], eps)
            total += p * (
                math.log(p)
                - lamb * math.log(max(pi[c], eps))
                - lamb * math.log(max(pj[d], eps))
            )
    return total


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("lamb", [1.0, 1.5])
def test_iid_loss_equals_numpy_mutual_information(global_random_seed, k, lamb):
    rng = np.random.default_rng(global_random_seed)
    z = _softmax(rng.normal(size=(13, k)) * 2)
    zt = _softmax(rng.normal(size=(13, k)) * 2)
    loss, plain = iid_loss(torch.from_numpy(z), torch.from_numpy(zt), lamb=lamb)
    np.testing.assert_allclose(-loss.item(), _numpy_mi(z, zt, lamb), rtol=1e-10)
    np.testing.assert_allclose(-plain.item(), _numpy_mi(z, zt, 1.0), rtol=1e-10)


def test_mutual_information_matches_sklearn_for_hard_assignments(global_random_seed):
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(global_random_seed)
    a = rng.integers(0, 4, 200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(0, 4, 200))
    z = np.eye(4)[a]
    zt = np.eye(4)[b]
    _, plain = iid_loss(torch.from_numpy(z), torch.from_numpy(zt))
    # The joint is symmetrised: MI of the pairs taken in both orders.
    ref = mutual_info_score(np.r_[a, b], np.r_[b, a])
    np.testing.assert_allclose(-plain.item(), ref, rtol=1e-9)


def test_joint_distribution_is_symmetric_and_normalised(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    z = torch.from_numpy(_softmax(rng.normal(size=(9, 5))))
    zt = torch.from_numpy(_softmax(rng.normal(size=(9, 5))))
    P = joint_distribution(z, zt)
    assert P.shape == (5, 5)
    assert torch.allclose(P, P.T)
    assert P.sum().item() == pytest.approx(1.0)
    assert (P >= 0).all()


def test_loss_is_lowest_for_invariant_balanced_clustering(global_random_seed):
    """-log k for a deterministic, balanced, invariant assignment; higher otherwise."""
    k, n = 4, 40
    labels = np.arange(n) % k
    perfect = torch.from_numpy(np.eye(k)[labels])
    best, _ = iid_loss(perfect, perfect)
    assert best.item() == pytest.approx(-math.log(k), abs=1e-9)

    rng = np.random.default_rng(global_random_seed)
    unbalanced = torch.from_numpy(np.eye(k)[np.where(labels == 3, 0, labels)])
    not_invariant = torch.from_numpy(np.eye(k)[(labels + rng.integers(0, 2, n)) % k])
    soft = torch.from_numpy(_softmax(rng.normal(size=(n, k))))
    collapsed = torch.from_numpy(np.eye(k)[np.zeros(n, dtype=int)])
    for name, (a, b) in {
        "unbalanced": (unbalanced, unbalanced),
        "not invariant": (perfect, not_invariant),
        "soft": (soft, soft),
        "collapsed": (collapsed, collapsed),
    }.items():
        other, _ = iid_loss(a, b)
        assert other.item() > best.item() + 0.05, name
    assert iid_loss(collapsed, collapsed)[0].item() == pytest.approx(0.0, abs=1e-9)


def test_gradient_moves_towards_higher_information(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    logits = torch.tensor(rng.normal(size=(32, 3)), requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    first = None
    for _ in range(200):
        z = torch.softmax(logits, dim=1)
        loss, _ = iid_loss(z, z)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.3
    assert loss.item() < -math.log(3) + 0.1


def test_dense_loss_with_one_pixel_equals_image_loss(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    z = torch.from_numpy(_softmax(rng.normal(size=(11, 4))))
    zt = torch.from_numpy(_softmax(rng.normal(size=(11, 4))))
    dense = iid_segmentation_loss(
        z[:, :, None, None], zt[:, :, None, None], half_window=0
    )
    flat = iid_loss(z, zt)
    assert dense[0].item() == pytest.approx(flat[0].item(), rel=1e-12)


def test_dense_joint_matches_explicit_displacements(global_random_seed):
    """P[t] pairs pixel u of z with pixel u + t of zt (zero outside the image)."""
    rng = np.random.default_rng(global_random_seed)
    n, k, h, w, T = 2, 3, 5, 6, 1
    z = _softmax(rng.normal(size=(n, h, w, k))).transpose(0, 3, 1, 2)
    zt = _softmax(rng.normal(size=(n, h, w, k))).transpose(0, 3, 1, 2)
    P = joint_distribution_dense(
        torch.from_numpy(z.copy()), torch.from_numpy(zt.copy()), T
    )
    assert P.shape == (3, 3, k, k)
    for a, dy in enumerate(range(-T, T + 1)):
        for b, dx in enumerate(range(-T, T + 1)):
            ref = np.zeros((k, k))
            for y in range(h):
                for x in range(w):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        ref += np.einsum(
                            "ni,nj->ij", z[:, :, y, x], zt[:, :, y + dy, x + dx]
                        )
            ref = (ref + ref.T) / 2
            ref /= ref.sum()
            np.testing.assert_allclose(P[a, b].numpy(), ref, rtol=1e-10)
    loss, _ = mutual_information_loss(P)
    per = [
        mutual_information_loss(P[a, b])[0].item() for a in range(3) for b in range(3)
    ]
    assert loss.item() == pytest.approx(np.mean(per), rel=1e-12)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        joint_distribution(torch.ones(3, 2), torch.ones(3, 4))
    with pytest.raises(ValueError, match="half_window"):
        joint_distribution_dense(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 3, 3), -1)
