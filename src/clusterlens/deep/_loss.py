"""Objectives: IIC's mutual information, SCAN's neighbour loss, SimCLR's NT-Xent.

The same code serves image clustering (one joint distribution per batch) and
IIC's segmentation variant (one joint distribution per displacement in a local
window, computed for every pixel by a convolution).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

__all__ = [
    "EPS",
    "iid_loss",
    "iid_segmentation_loss",
    "joint_distribution",
    "joint_distribution_dense",
    "mutual_information_loss",
    "nt_xent_loss",
    "scan_loss",
]

#: Floor applied to probabilities before the logarithm (IIC's choice).
EPS = sys.float_info.epsilon


def joint_distribution(z: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """Symmetrised joint distribution of two soft assignments.

    Parameters
    ----------
    z, zt : torch.Tensor of shape (n_samples, k)
        Softmax outputs for the images and for their transformed copies
        (row ``i`` of ``zt`` is a transformation of row ``i`` of ``z``).

    Returns
    -------
    P : torch.Tensor of shape (k, k)
        ``P = sym(z.T @ zt) / sum``: non-negative, symmetric, summing to 1.
    """
    if z.ndim != 2 or z.shape != zt.shape:
        raise ValueError(
            f"z and zt must both have shape (n_samples, k); got {tuple(z.shape)} "
            f"and {tuple(zt.shape)}."
        )
    p = z.t() @ zt
    p = (p + p.t()) / 2.0
    return p / p.sum()


def joint_distribution_dense(
    z: torch.Tensor, zt: torch.Tensor, half_window: int
) -> torch.Tensor:
    """Per-displacement joint distributions of dense (per-pixel) assignments.

    ``P[a, b, i, j]`` is proportional to the sum over images ``n`` and pixels
    ``u`` of ``z[n, i, u] * zt[n, j, u + t]`` for the displacement
    ``t = (a - half_window, b - half_window)``, computed for the whole window
    with one convolution (IIC's segmentation objective, paper eq. 5).

    Parameters
    ----------
    z, zt : torch.Tensor of shape (n_samples, k, H, W)
        Per-pixel softmax outputs of the images and of their transformed
        copies, already aligned (the transformation undone on ``zt``).
    half_window : int
        Largest displacement ``T``; the window is ``(2T + 1) x (2T + 1)``.

    Returns
    -------
    P : torch.Tensor of shape (2T + 1, 2T + 1, k, k)
        One symmetric joint distribution per displacement, each summing to 1.
    """
    if z.ndim != 4 or z.shape != zt.shape:
        raise ValueError(
            f"z and zt must both have shape (n_samples, k, H, W); got "
            f"{tuple(z.shape)} and {tuple(zt.shape)}."
        )
    if half_window < 0:
        raise ValueError(f"half_window must be >= 0; got {half_window}.")
    # Channels are the images: the batch is summed by the convolution itself.
    p = F.conv2d(
        z.transpose(0, 1), weight=zt.transpose(0, 1), padding=half_window
    )  # (k, k, 2T+1, 2T+1); entry [.., T + a, ..] pairs z[u + a] with zt[u]
    p = p.flip(2, 3).permute(2, 3, 0, 1)
    p = p / p.sum(dim=(2, 3), keepdim=True)
    return (p + p.transpose(2, 3)) / 2.0


def mutual_information_loss(
    P: torch.Tensor, *, lamb: float = 1.0, eps: float = EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative mutual information of joint distribution(s) ``P``.

    Parameters
    ----------
    P : torch.Tensor of shape (..., k, k)
        Joint distributions (each summing to 1) over the last two axes; any
        leading axes (displacements) are averaged over.
    lamb : float, default=1.0
        Entropy coefficient λ of the supplementary material, section 5:
        ``I_λ = sum P log(P / (P_i^λ P_j^λ))``; 1 is mutual information,
        larger values weigh the marginal entropies more.
    eps : float, default=sys.float_info.epsilon
        Probabilities are clamped to at least ``eps`` before the logarithm.

    Returns
    -------
    loss : torch.Tensor (scalar)
        ``-I_λ``, the value to minimise.
    loss_no_lamb : torch.Tensor (scalar)
        ``-I`` with λ = 1, detached, for reporting.
    """
    p_i = P.sum(dim=-1, keepdim=True).clamp(min=eps)
    p_j = P.sum(dim=-2, keepdim=True).clamp(min=eps)
    p = P.clamp(min=eps)
    log_p, log_pi, log_pj = torch.log(p), torch.log(p_i), torch.log(p_j)
    n_dist = P[..., 0, 0].numel()
    loss = -(p * (log_p - lamb * log_pi - lamb * log_pj)).sum() / n_dist
    with torch.no_grad():
        plain = -(p * (log_p - log_pi - log_pj)).sum() / n_dist
    return loss, plain


def iid_loss(
    z: torch.Tensor, zt: torch.Tensor, *, lamb: float = 1.0, eps: float = EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """IIC's clustering loss: ``-I(z; zt)`` over a batch of paired outputs.

    Parameters
    ----------
    z, zt : torch.Tensor of shape (n_samples, k)
        Softmax outputs for images and their transformed copies.
    lamb : float, default=1.0
        Entropy coefficient λ (see :func:`mutual_information_loss`).
    eps : float, default=sys.float_info.epsilon
        Probability floor before the logarithm.

    Returns
    -------
    loss, loss_no_lamb : torch.Tensor (scalars)

    Notes
    -----
    Ji, Henriques and Vedaldi, "Invariant Information Clustering for
    Unsupervised Image Classification and Segmentation", ICCV 2019, eq. 3.
    The loss is bounded below by ``-log k``, reached by a deterministic,
    balanced and perfectly invariant assignment.
    """
    return mutual_information_loss(joint_distribution(z, zt), lamb=lamb, eps=eps)


def iid_segmentation_loss(
    z: torch.Tensor,
    zt: torch.Tensor,
    *,
    half_window: int = 1,
    lamb: float = 1.0,
    eps: float = EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IIC's segmentation loss: ``-I`` averaged over a displacement window.

    Parameters
    ----------
    z, zt : torch.Tensor of shape (n_samples, k, H, W)
        Aligned per-pixel softmax outputs (see :func:`joint_distribution_dense`).
    half_window : int, default=1
        Largest displacement ``T`` between paired pixels.
    lamb, eps : float
        As for :func:`iid_loss`.

    Returns
    -------
    loss, loss_no_lamb : torch.Tensor (scalars)
        Averages over the ``(2T + 1)^2`` displacements.
    """
    P = joint_distribution_dense(z, zt, half_window)
    return mutual_information_loss(P, lamb=lamb, eps=eps)


def scan_loss(
    logits: torch.Tensor,
    logits_neighbors: torch.Tensor,
    *,
    entropy_weight: float = 5.0,
    eps: float = EPS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SCAN's clustering loss of anchors and one neighbour each, per sub-head.

    ``loss = -mean_i log <p_i, p_j(i)> - entropy_weight * H(mean_i p_i)``:
    neighbours should fall in the same cluster with confidence, and the
    entropy of the mean prediction keeps every cluster in use.

    Parameters
    ----------
    logits, logits_neighbors : torch.Tensor of shape (n_samples, ..., k)
        Logits of the anchors and of one neighbour of each anchor (row ``i``
        of ``logits_neighbors`` is a neighbour of row ``i`` of ``logits``);
        any middle axes (sub-heads) are kept.
    entropy_weight : float, default=5.0
        Weight of the entropy term (the paper's lambda; 5 for CIFAR-10).
    eps : float, default=sys.float_info.epsilon
        Probability floor before the logarithm.

    Returns
    -------
    loss, consistency, entropy : torch.Tensor of shape (...)
        The total per sub-head (to minimise), its consistency term and the
        entropy of the mean prediction (in nats, at most ``log k``).

    Notes
    -----
    Van Gansbeke, Vandenhende, Georgoulis, Proesmans and Van Gool, "SCAN:
    Learning to Classify Images without Labels", ECCV 2020, eq. 2. The
    consistency term is 0 only when anchor and neighbour agree one-hot.
    """
    if logits.shape != logits_neighbors.shape or logits.ndim < 2:
        raise ValueError(
            "logits and logits_neighbors must have the same shape (n_samples, ..., "
            f"k); got {tuple(logits.shape)} and {tuple(logits_neighbors.shape)}."
        )
    p = torch.softmax(logits, dim=-1)
    q = torch.softmax(logits_neighbors, dim=-1)
    consistency = -torch.log((p * q).sum(dim=-1).clamp(min=eps)).mean(dim=0)
    mean_p = p.mean(dim=0)
    entropy = -(mean_p * torch.log(mean_p.clamp(min=eps))).sum(dim=-1)
    return consistency - entropy_weight * entropy, consistency, entropy


def nt_xent_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float
) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross entropy (NT-Xent).

    Parameters
    ----------
    z1, z2 : torch.Tensor of shape (n_samples, d)
        Projections of two augmented views: row ``i`` of ``z1`` and row ``i``
        of ``z2`` come from the same image (the positive pair); the other
        ``2 n - 2`` rows of the batch are its negatives.
    temperature : float
        The softmax temperature ``tau`` (SimCLR: 0.1 to 0.5).

    Returns
    -------
    loss : torch.Tensor of shape ()
        The mean over all ``2 n`` rows of ``-log(exp(s_ij / tau) / sum_{k != i}
        exp(s_ik / tau))`` with ``s`` the cosine similarity and ``j`` the
        positive of ``i``; computed in float32 whatever the inputs' dtype.

    Notes
    -----
    Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations", ICML 2020. O(n^2 d) per batch.
    """
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(
            "z1 and z2 must both have shape (n_samples, d) with n_samples >= 2; "
            f"got {tuple(z1.shape)} and {tuple(z2.shape)}."
        )
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = (z @ z.t()) / temperature
    sim = sim.masked_fill(
        torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf")
    )
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)
