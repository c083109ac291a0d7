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


def _components(n: int, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> Any:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(g, directed=False)[1].astype(np.int64)


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

    Two items are linked when they have the same content hash (exact
    duplicates), or when one is among the other's nearest neighbours with a
    cosine similarity of at least ``threshold`` (near duplicates). Groups are
    the connected components of these links. Each group keeps one
    representative: the member with the highest ``preference`` (e.g. pixel
    count, so the largest copy is kept), ties to the lowest index.

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
    Connected components can chain: A ~ B and B ~ C put A and C in one group
    even if A and C are less similar. Each member's similarity to the
    representative is reported so a reviewer sees how far a member is; with
    the default threshold chains are short (the planted tests check that
    distinct photos stay apart). Cost: ``O(n k)`` after the k-NN search.
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
    exact_key: npt.NDArray[np.int64] | None = None
    if hashes is not None:
        h = np.asarray(hashes, dtype=object)
        if h.shape != (n,):
            raise DataValidationError(
                f"hashes must have one entry per item ({n}); got shape {h.shape}."
            )
        known = np.array([bool(x) for x in h])
        _, exact_key = np.unique(np.where(known, h, ""), return_inverse=True)
        exact_key = np.where(known, exact_key, -1 - np.arange(n))
        order = np.argsort(exact_key, kind="stable")
        same = exact_key[order][1:] == exact_key[order][:-1]
        a = np.concatenate([a, order[:-1][same]])
        b = np.concatenate([b, order[1:][same]])
    comp = _components(n, a, b)
    sizes = np.bincount(comp, minlength=n)
    in_group = sizes[comp] > 1
    pref = (
        np.zeros(n) if preference is None else np.asarray(preference, dtype=np.float64)
    )
    # representative: highest preference, then lowest index, per component
    order = np.lexsort((np.arange(n), -pref, comp))
    first = np.ones(n, dtype=bool)
    first[1:] = comp[order][1:] != comp[order][:-1]
    rep_of_comp = np.full(n, -1, dtype=np.int64)
    rep_of_comp[comp[order][first]] = order[first]
    rep = rep_of_comp[comp]
    representative = in_group & (rep == np.arange(n))
    # group ids: largest groups first, then by representative index
    gcomps = np.unique(comp[in_group])
    gorder = np.lexsort((rep_of_comp[gcomps], -sizes[gcomps]))
    gid = np.full(n, -1, dtype=np.int64)
    gid[gcomps[gorder]] = np.arange(gcomps.size)
    group = np.where(in_group, gid[comp], -1)
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
