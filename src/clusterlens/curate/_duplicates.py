"""Exact and near duplicates: groups of items with a representative each."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError

__all__ = [
    "CROP_CANDIDATE_THRESHOLD",
    "CROP_THUMB_THRESHOLD",
    "DEFAULT_CANDIDATE_THRESHOLD",
    "DEFAULT_NEAR_THRESHOLD",
    "DEFAULT_THUMB_THRESHOLD",
    "THUMB_OUT",
    "THUMB_SIDE",
    "DuplicateGroups",
    "find_duplicates",
    "thumbnail",
]

#: Cosine similarity of L2-normalised CNN embeddings (EfficientNet-Lite0,
#: pooled) at or above which two items are near duplicates on the embeddings
#: alone. On 200 ant/bee photos with 50 planted copies, different photos
#: reached at most 0.76; mirror images and brightness changes of a photo 0.90
#: to 0.99, resized crops 0.78 to 0.97, half-size JPEG-q40 copies 0.60 to 0.98.
DEFAULT_NEAR_THRESHOLD = 0.90
#: Below the embedding threshold, a pair whose embeddings are at least this
#: similar is still a near duplicate when its thumbnails show the same
#: picture (:data:`DEFAULT_THUMB_THRESHOLD`): copies that keep the picture's
#: geometry (recompressed, resized, re-exposed, mirrored) whatever they did to
#: the network's features.
DEFAULT_CANDIDATE_THRESHOLD = 0.60
#: Correlation of the two thumbnails (grayscale, :data:`THUMB_OUT` pixels a
#: side, each standardised; the better of as-is and mirrored) at or above
#: which the picture is the same. Geometry-keeping copies score 0.98 to 1.0;
#: different photos with similar embeddings at most 0.82.
DEFAULT_THUMB_THRESHOLD = 0.90
#: Pairs at least this similar in the embeddings are also searched for a crop:
#: one thumbnail against the other's crops (:data:`_CROP_GRID`: 95 to 60 % of
#: its side, each on a 3x3 or 5x5 grid of offsets from corner to corner), as-is
#: and mirrored, both ways round; :data:`CROP_THUMB_THRESHOLD` confirms.
#: Measured on planted resized crops keeping 80-90 % of each side at a random
#: offset, every one whose embeddings reach 0.70 scored 0.93 or more (596
#: ant/bee photos and 3,000 CIFAR-10 images with planted copies; a 3x3 grid at
#: 90/80/70/60 % passed 70 % and 68 % of them); different photos whose
#: embeddings reach 0.70 scored at most 0.85 (ant/bee).
CROP_CANDIDATE_THRESHOLD = 0.70
CROP_THUMB_THRESHOLD = 0.93
#: Side of the stored duplicate thumbnails (pixels, box-filtered grayscale),
#: and of the compared ones (a whole thumbnail or a crop of it, resampled).
THUMB_SIDE = 24
THUMB_OUT = 12
#: Thumbnails whose grey levels vary less than this (standard deviation, of
#: 255) are flat: their correlation means nothing and is not used.
_FLAT_STD = 2.0


def thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The duplicate thumbnail of one image: grayscale, box-filtered, 24 x 24."""
    from PIL import Image

    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    img = img.convert("L") if img.mode != "L" else img
    small = img.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def _box_matrix(n_in: int, n_out: int, lo: float, hi: float) -> npt.NDArray[np.float64]:
    """Linear map averaging ``[lo, hi)`` of ``n_in`` pixels into ``n_out`` bins."""
    M = np.zeros((n_out, n_in))
    edges = np.linspace(lo, hi, n_out + 1)
    for o in range(n_out):
        a, b = edges[o], edges[o + 1]
        for i in range(int(np.floor(a)), int(np.ceil(b))):
            w = min(b, i + 1) - max(a, i)
            if w > 0:
                M[o, i] += w
        M[o] /= M[o].sum()
    return M


#: The crops searched: (share of the side, offsets along each axis as
#: fractions of the room left: 0 = top/left edge, 1 = bottom/right edge).
#: Finer where near-duplicate crops are (80-90 % of the picture kept): there a
#: crop a pixel off the grid costs the correlation 0.05-0.2. The offsets are
#: symmetric (a mirrored crop is a crop of the mirror image) and hold the
#: centre (centre crops are the commonest).
_FINE = (0.0, 1 / 3, 1 / 2, 2 / 3, 1.0)
_COARSE = (0.0, 1 / 2, 1.0)
_CROP_GRID = (
    (1.0, (0.0,)),
    (0.95, _COARSE),
    (0.9, _FINE),
    (0.85, _FINE),
    (0.8, _FINE),
    (0.7, _COARSE),
    (0.6, _COARSE),
)


@functools.cache
def _crop_maps() -> npt.NDArray[np.float32]:
    """(K, THUMB_OUT**2, THUMB_SIDE**2): the whole thumbnail, then its crops.

    Built once per process (read-only).
    """
    maps = []
    for s, fractions in _CROP_GRID:
        size = s * THUMB_SIDE
        offs = [f * (THUMB_SIDE - size) for f in fractions]
        for oy in offs:
            for ox in offs:
                R = _box_matrix(THUMB_SIDE, THUMB_OUT, oy, oy + size)
                C = _box_matrix(THUMB_SIDE, THUMB_OUT, ox, ox + size)
                maps.append(np.kron(R, C))
    out = np.stack(maps).astype(np.float32)
    out.flags.writeable = False
    return out


def _standardize(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    v = v - v.mean(axis=-1, keepdims=True)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def _thumb_similarity(
    T: npt.NDArray[np.uint8],
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    *,
    crops: bool,
    chunk: int = 2048,
) -> npt.NDArray[np.float64]:
    """Thumbnail correlation of pairs (a, b); NaN where either is flat.

    The better of b as-is and mirrored; with ``crops`` also each against the
    other's crops (:func:`_crop_maps`), both ways round.

    Each image's crop bank is computed once per chunk of pairs (an image is
    in many pairs), and never for its mirror image: the crop offsets are
    symmetric, so the best correlation of a mirrored image's crops with a
    whole thumbnail equals that of the image's own crops with the mirrored
    whole thumbnail (the max runs over all crops either way).
    """
    maps = _crop_maps()
    if not crops:
        maps = maps[:1]
    K, o2, i2 = maps.shape
    side = THUMB_OUT
    flat_maps = maps.reshape(K * o2, i2)
    out = np.full(a.size, np.nan)
    for lo in range(0, a.size, chunk):
        ia, ib = a[lo : lo + chunk], b[lo : lo + chunk]
        u, inv = np.unique(np.r_[ia, ib], return_inverse=True)
        pa, pb = inv[: ia.size], inv[ia.size :]
        tu = np.asarray(T[u], dtype=np.float32).reshape(u.size, -1)
        flat_u = tu.reshape(u.size, T.shape[1], T.shape[2]).std(axis=(1, 2)) < _FLAT_STD
        bank = _standardize((tu @ flat_maps.T).reshape(u.size, K, o2))
        whole = bank[:, 0]  # crop 0 is the whole thumbnail
        mirror = whole.reshape(u.size, side, side)[:, :, ::-1].reshape(u.size, o2)
        best = np.full(ia.size, -1.0, dtype=np.float32)
        for x, y in ((pa, pb), (pb, pa)):
            for w in (whole, mirror):
                best = np.maximum(best, np.einsum("nkd,nd->nk", bank[y], w[x]).max(1))
            if not crops:
                break
        out[lo : lo + chunk] = np.where(flat_u[pa] | flat_u[pb], np.nan, best)
    return out


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
    thumbnails: npt.ArrayLike | None = None,
    candidate_threshold: float = DEFAULT_CANDIDATE_THRESHOLD,
    thumb_threshold: float = DEFAULT_THUMB_THRESHOLD,
    preference: npt.ArrayLike | None = None,
    exact_only: npt.ArrayLike | None = None,
) -> DuplicateGroups:
    """Group items that are copies of each other.

    Items with the same content hash are exact duplicates of each other.
    Two items are near duplicates when one is among the other's nearest
    neighbours with a cosine similarity of at least ``threshold``, or of at
    least ``candidate_threshold`` and thumbnails (:func:`thumbnail`) that
    correlate at ``thumb_threshold`` or more (a copy that keeps the
    picture's geometry: recompressed, resized, re-exposed, mirrored), or of at
    least :data:`CROP_CANDIDATE_THRESHOLD` and one thumbnail matching a crop
    of the other (:data:`CROP_THUMB_THRESHOLD`: a resized crop). Groups
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
    embeddings : ndarray or memmap of shape (n_samples, n_features), optional
        The embeddings (normalised here, member rows only), to report each
        member's cosine similarity to its representative (otherwise the best
        similarity along the links).
    threshold : float, default=DEFAULT_NEAR_THRESHOLD
        The near-duplicate cosine similarity on the embeddings alone, in
        (0, 1].
    thumbnails : array-like of shape (n_samples, h, w), uint8, optional
        Each item's :func:`thumbnail`; without them only ``threshold`` counts.
    candidate_threshold : float, default=DEFAULT_CANDIDATE_THRESHOLD
        The least cosine similarity for the thumbnail check.
    thumb_threshold : float, default=DEFAULT_THUMB_THRESHOLD
        The thumbnail correlation that confirms a candidate pair.
    preference : array-like of shape (n_samples,), optional
        Higher is a better representative.
    exact_only : array-like of shape (n_samples,), bool, optional
        Items whose embedding says nothing of their content (low-information
        images: every flat colour looks alike to the network): they are
        grouped with their exact copies only, never as near duplicates.

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
    valid = (nb.ravel() >= 0) & (nb.ravel() != rows)
    if exact_only is not None:
        flat = np.asarray(exact_only, dtype=bool)
        if flat.shape != (n,):
            raise DataValidationError(
                f"exact_only must have one entry per item ({n}); got shape "
                f"{flat.shape}."
            )
        valid &= ~flat[rows] & ~flat[np.maximum(nb.ravel(), 0)]
    keep = valid & (sim.ravel() >= threshold)
    if thumbnails is not None:
        T = np.asarray(thumbnails)
        if T.ndim != 3 or T.shape[0] != n:
            raise DataValidationError(
                f"thumbnails must have shape (n_samples, h, w) with n_samples={n}; "
                f"got {T.shape}."
            )
        cand = np.flatnonzero(
            valid & ~keep & (sim.ravel() >= min(candidate_threshold, threshold))
        )
        ts = _thumb_similarity(T, rows[cand], nb.ravel()[cand], crops=False)
        same = np.nan_to_num(ts, nan=-1.0) >= thumb_threshold
        keep[cand[same]] = True
        # the rest: is one a crop of the other?
        cand = cand[~same & (sim.ravel()[cand] >= CROP_CANDIDATE_THRESHOLD)]
        ts = _thumb_similarity(T, rows[cand], nb.ravel()[cand], crops=True)
        keep[cand[np.nan_to_num(ts, nan=-1.0) >= CROP_THUMB_THRESHOLD]] = True
    a, b = rows[keep], nb.ravel()[keep]
    # exact classes: items with one content hash are one node
    ex = np.arange(n, dtype=np.int64)
    if hashes is not None:
        h = np.asarray(hashes, dtype=object)
        if h.shape != (n,):
            raise DataValidationError(
                f"hashes must have one entry per item ({n}); got shape {h.shape}."
            )
        known = (h != "") & (h != None)  # noqa: E711 (elementwise)
        known = np.asarray(known, dtype=bool)
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
        from clusterlens.features._knn import l2_normalize

        # only the group members' rows are read (a memory map stays on disk)
        emb = (
            embeddings if isinstance(embeddings, np.ndarray) else np.asarray(embeddings)
        )
        members = np.flatnonzero(in_group)
        for lo in range(0, members.size, 65_536):
            m = members[lo : lo + 65_536]
            a = l2_normalize(np.asarray(emb[m], dtype=np.float32))
            b = l2_normalize(np.asarray(emb[rep[m]], dtype=np.float32))
            similarity[m] = np.einsum("ij,ij->i", a, b)
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
