"""Exact and near duplicates: groups of items with a representative each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError

__all__ = ["DEFAULT_NEAR_THRESHOLD", "DuplicateGroups", "find_duplicates"]

#: Cosine similarity of L2-normalised CNN embeddings at or above which two
#: items are near duplicates. Measured on real photos with planted copies
#: (``tests/curate/test_duplicates.py``): a resized crop, a JPEG
#: recompression, a mirror image or a brightness change of a photo scores
#: 0.93 to 0.99 with it, while two different photos of the same subject
#: rarely pass 0.90.
DEFAULT_NEAR_THRESHOLD = 0.92


@dataclass(frozen=True)
class DuplicateGroups:
    """Duplicate groups over ``n`` items.

    Attributes
    ----------
    group : ndarray of shape (n,), int64
        Group id (0, 1, ...; largest groups first), -1 for an item with no
        duplicate.
    kind : ndarray of shape (n,), object
        "keep" for the representative, "exact" when the item's pixels equal
        the representative's, "near" for the other members, "" outside groups.
    similarity : ndarray of shape (n,), float32
        Cosine similarity to the group's representative (1 for the
        representative and exact copies; NaN outside groups).
    representative : ndarray of shape (n,), bool
        The one item of each group to keep.
    threshold : float
        The near-duplicate threshold used.
    """

    group: npt.NDArray[np.int64]
    kind: npt.NDArray[Any]
    similarity: npt.NDArray[np.float32]
    representative: npt.NDArray[np.bool_]
    threshold: float

    @property
    def n_groups(self) -> int:
        """How many groups."""
        return int(self.group.max()) + 1 if self.group.size else 0

    @property
    def n_redundant(self) -> int:
        """Items that could go: group members that are not representatives."""
        return int(((self.group >= 0) & ~self.representative).sum())


def _leaders(
    n: int,
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    pref: npt.NDArray[np.float64],
    tie: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Leader of each of ``n`` nodes linked by edges ``a[i] - b[i]``.

    Nodes are taken best first (highest ``pref``, then lowest ``tie``); an
    unassigned node with links becomes a leader and takes every unassigned
    node linked to it. Unlike connected components this never chains: every
    member is linked to its leader itself. The loop runs over linked nodes
    only (duplicates are few), each visiting its own links.
    """
    from scipy.sparse import coo_matrix

    leader = np.arange(n, dtype=np.int64)
    same = a == b
    a, b = a[~same], b[~same]
    if a.size == 0:
        return leader
    adj = coo_matrix(
        (np.ones(2 * a.size, dtype=np.int8), (np.r_[a, b], np.r_[b, a])), shape=(n, n)
    ).tocsr()
    linked = np.flatnonzero(np.diff(adj.indptr) > 0)
    linked = linked[np.lexsort((tie[linked], -pref[linked]))]
    assigned = np.zeros(n, dtype=bool)
    for v in linked:
        if assigned[v]:
            continue
        assigned[v] = True
        nbrs = adj.indices[adj.indptr[v] : adj.indptr[v + 1]]
        take = nbrs[~assigned[nbrs]]
        leader[take] = v
        assigned[take] = True
    return leader


def find_duplicates(
    neighbors: npt.ArrayLike,
    similarities: npt.ArrayLike,
    *,
    hashes: npt.ArrayLike | None = None,
    embeddings: npt.ArrayLike | None = None,
    threshold: float = DEFAULT_NEAR_THRESHOLD,
    preference: npt.ArrayLike | None = None,
) -> DuplicateGroups:
    """Group items that are copies of each other.

    Items with the same content hash are exact duplicates of each other.
    Two items are near duplicates when one is among the other's nearest
    neighbours with a cosine similarity of at least ``threshold``. Groups
    are formed leader-first: taking items best first (highest
    ``preference``, e.g. pixel count, so the largest copy is kept; ties to
    the lowest index), an item not yet in a group that has near duplicates
    leads a new group of itself, its exact copies and every near duplicate of
    it not yet taken (with their exact copies). The leader is the group's
    representative.

    Parameters
    ----------
    neighbors : array-like of shape (n_samples, n_neighbors), int
        Each item's nearest other items (from ``knn_graph``).
    similarities : array-like of shape (n_samples, n_neighbors), float
        Their cosine similarities.
    hashes : array-like of shape (n_samples,), optional
        A content hash per item (``""`` or None for unknown); equal hashes
        are exact duplicates whatever the embeddings say.
    embeddings : array-like of shape (n_samples, n_features), optional
        L2-normalised embeddings, to report each member's similarity to its
        representative (otherwise the best similarity along the links).
    threshold : float, default=DEFAULT_NEAR_THRESHOLD
        The near-duplicate cosine similarity, in (0, 1].
    preference : array-like of shape (n_samples,), optional
        Higher is a better representative.

    Returns
    -------
    DuplicateGroups

    Notes
    -----
    Unlike connected components (fastdup's grouping), leader grouping never
    chains: A ~ B and B ~ C do not put A and C together unless one of them is
    the leader, so every member passed the threshold against its
    representative (or is its exact copy). Cost: ``O(n k)`` after the k-NN
    search.
    """
    nb = np.asarray(neighbors, dtype=np.int64)
    sim = np.asarray(similarities, dtype=np.float32)
    if nb.ndim != 2 or nb.shape != sim.shape:
        raise DataValidationError(
            "neighbors and similarities must be 2-D arrays of the same shape; got "
            f"{nb.shape} and {sim.shape}."
        )
    if not (0.0 < float(threshold) <= 1.0):
        raise InvalidParameterError(
            f"The duplicate threshold must be a cosine similarity in (0, 1]; got "
            f"{threshold}."
        )
    n = nb.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), nb.shape[1])
    keep = (sim.ravel() >= threshold) & (nb.ravel() >= 0) & (nb.ravel() != rows)
    a, b = rows[keep], nb.ravel()[keep]
    # exact classes: items with one content hash are one node
    ex = np.arange(n, dtype=np.int64)
    if hashes is not None:
        h = np.asarray(hashes, dtype=object)
        if h.shape != (n,):
            raise DataValidationError(
                f"hashes must have one entry per item ({n}); got shape {h.shape}."
            )
        known = np.array([bool(x) for x in h], dtype=bool)
        _, key = np.unique(np.where(known, h, "").astype(str), return_inverse=True)
        key = np.where(known, key, key.max(initial=0) + 1 + np.arange(n))
        _, ex = np.unique(key, return_inverse=True)
        ex = ex.astype(np.int64)
    n_cls = int(ex.max()) + 1 if n else 0
    pref = (
        np.zeros(n) if preference is None else np.asarray(preference, dtype=np.float64)
    )
    # each class's best item (highest preference, then lowest index)
    order = np.lexsort((np.arange(n), -pref, ex))
    first = np.ones(n, dtype=bool)
    first[1:] = ex[order][1:] != ex[order][:-1]
    cls_rep = np.empty(n_cls, dtype=np.int64)
    cls_rep[ex[order][first]] = order[first]
    leader = _leaders(n_cls, ex[a], ex[b], pref[cls_rep], cls_rep)
    rep = cls_rep[leader[ex]]
    sizes = np.bincount(rep, minlength=n)
    in_group = sizes[rep] > 1
    representative = in_group & (rep == np.arange(n))
    # group ids: largest groups first, then by representative index
    reps = np.flatnonzero(representative)
    gorder = np.lexsort((reps, -sizes[reps]))
    gid = np.full(n, -1, dtype=np.int64)
    gid[reps[gorder]] = np.arange(reps.size)
    group = np.where(in_group, gid[rep], -1)
    exact_key = ex
    similarity = np.full(n, np.nan, dtype=np.float32)
    if embeddings is not None:
        E = np.asarray(embeddings, dtype=np.float32)
        members = np.flatnonzero(in_group)
        for lo in range(0, members.size, 65_536):
            m = members[lo : lo + 65_536]
            similarity[m] = np.einsum("ij,ij->i", E[m], E[rep[m]])
    else:
        best = np.where(nb == rep[:, None], sim, -np.inf).max(axis=1)
        similarity[in_group] = np.where(np.isfinite(best), best, threshold)[in_group]
    kind = np.full(n, "", dtype=object)
    kind[in_group] = "near"
    if exact_key is not None:
        kind[in_group & (exact_key == exact_key[rep])] = "exact"
        similarity[in_group & (exact_key == exact_key[rep])] = 1.0
    similarity[representative] = 1.0
    kind[representative] = "keep"
    return DuplicateGroups(
        group=group,
        kind=kind,
        similarity=np.clip(similarity, -1.0, 1.0),
        representative=representative,
        threshold=float(threshold),
    )
