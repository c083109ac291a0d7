"""Scoring per-pixel clusterings against label maps, as IIC's paper does.

Label ids are first merged into the evaluated classes by a :class:`ClassTable`
(CamVid-3, -6, -11 or a user's mapping); pixels of ids the table ignores are
left out. The clusters are matched one-to-one to the classes by the Hungarian
method over all pixels of a data set (one matching, not one per image); pixel
accuracy and the mean intersection-over-union follow from the matched
confusion table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from clusterlens.exceptions import DataValidationError, InvalidParameterError

__all__ = [
    "CAMVID_CLASSES",
    "CLASS_PRESETS",
    "ClassTable",
    "SegmentationConfusion",
    "confusion_shares",
    "majority_accuracy",
    "parse_class_table",
    "segmentation_scores",
]

#: SegNet's CamVid label ids 0-10; 11 is "unlabelled".
CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
_CAMVID_VOID = 11

#: Presets: the evaluated classes, each the label ids it merges.
CLASS_PRESETS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "camvid3": (("sky", (0,)), ("ground", (3, 4)), ("plants", (5,))),
    "camvid6": (
        ("sky", (0,)),
        ("building+pole+sign+fence", (1, 2, 6, 7)),
        ("road", (3,)),
        ("pavement", (4,)),
        ("tree", (5,)),
        ("car+pedestrian+bicyclist", (8, 9, 10)),
    ),
    "camvid11": tuple((name, (i,)) for i, name in enumerate(CAMVID_CLASSES)),
}


@dataclass(frozen=True)
class ClassTable:
    """Evaluated classes and the label ids each merges.

    Attributes
    ----------
    name : str
        The preset's name, or "custom".
    class_names : tuple of str
    lut : ndarray of shape (256,), int64
        Label id -> evaluated class; -1 for ids that are ignored, -2 for ids
        outside the table (an error when a label map holds them).
    """

    name: str
    class_names: tuple[str, ...]
    lut: npt.NDArray[np.int64] = field(repr=False)

    @property
    def n_classes(self) -> int:
        """Number of evaluated classes."""
        return len(self.class_names)

    def describe(self) -> dict[str, Any]:
        """JSON-ready: each class with its label ids, and the ignored ids."""
        ids = np.arange(self.lut.shape[0])
        return {
            "name": self.name,
            "classes": {
                c: ids[self.lut == i].tolist() for i, c in enumerate(self.class_names)
            },
            "ignored": ids[self.lut == -1].tolist(),
        }

    def map(self, label_map: npt.NDArray[Any], what: str) -> npt.NDArray[np.int64]:
        """Label ids -> evaluated classes (-1: ignored); checks every id.

        Raises DataValidationError naming ``what`` when the map holds an id
        outside the table.
        """
        a = np.asarray(label_map)
        if not np.issubdtype(a.dtype, np.integer):
            raise DataValidationError(
                f"{what} must hold integer label ids; got dtype {a.dtype}."
            )
        bad = (a < 0) | (a >= self.lut.shape[0])
        out = np.full(a.shape, -2, dtype=np.int64)
        out[~bad] = self.lut[a[~bad]]
        if (out == -2).any():
            found = np.unique(a[out == -2])
            known = np.flatnonzero(self.lut != -2)
            raise DataValidationError(
                f"{what} holds label id(s) {', '.join(map(str, found[:8].tolist()))} "
                f"outside the class table {self.name!r} (ids "
                f"{_ranges(known)}). Check that these are label maps of that data "
                "set, or pass --classes with a mapping that lists every id."
            )
        return out


def _ranges(ids: npt.NDArray[Any]) -> str:
    parts, start, prev = [], None, None
    for i in ids.tolist():
        if start is None:
            start = prev = i
        elif i == prev + 1:  # type: ignore[operator]
            prev = i
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def _table(
    name: str, classes: Sequence[tuple[str, Sequence[int]]], ignored: Sequence[int]
) -> ClassTable:
    lut = np.full(256, -2, dtype=np.int64)
    for i in ignored:
        lut[i] = -1
    for c, (_, ids) in enumerate(classes):
        for i in ids:
            lut[i] = c
    return ClassTable(name, tuple(n for n, _ in classes), lut)


def _parse_ids(text: str, spec: str) -> list[int]:
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InvalidParameterError(
                f"--classes {spec!r}: {part!r} is not a label id or a range a-b."
            )
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo or hi > 255:
            raise InvalidParameterError(
                f"--classes {spec!r}: {part!r} is not a range of ids in 0-255."
            )
        ids.extend(range(lo, hi + 1))
    return ids


def parse_class_table(spec: str | ClassTable) -> ClassTable:
    """A preset name (``camvid3``, ``camvid6``, ``camvid11``) or a mapping.

    A mapping lists the evaluated classes with their label ids and,
    optionally, the ids to ignore:
    ``"sky=0; ground=3,4; plants=5; ignore=1-2,6-11"``. Ids not listed are
    outside the table (an error when a label map holds them). The CamVid
    presets ignore the other CamVid ids and 11 ("unlabelled").
    """
    if isinstance(spec, ClassTable):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidParameterError(
            f"--classes must be one of {', '.join(CLASS_PRESETS)} or a mapping such "
            f"as 'sky=0; ground=3,4; ignore=11'; got {spec!r}."
        )
    key = spec.strip().lower().replace("-", "")
    if key in CLASS_PRESETS:
        classes = CLASS_PRESETS[key]
        used = {i for _, ids in classes for i in ids}
        ignored = [i for i in range(_CAMVID_VOID + 1) if i not in used]
        return _table(key, classes, ignored)
    if "=" not in spec:
        import difflib

        close = difflib.get_close_matches(key, list(CLASS_PRESETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(
            f"Unknown class table {spec!r}.{hint} Use one of "
            f"{', '.join(CLASS_PRESETS)} or a mapping such as "
            "'sky=0; ground=3,4; ignore=11'."
        )
    classes_: list[tuple[str, list[int]]] = []
    ignored_: list[int] = []
    for entry in filter(None, (e.strip() for e in spec.split(";"))):
        name, _, ids = entry.partition("=")
        name = name.strip()
        if not name or not ids.strip():
            raise InvalidParameterError(
                f"--classes {spec!r}: {entry!r} is not NAME=IDS (e.g. ground=3,4)."
            )
        if name.lower() == "ignore":
            ignored_.extend(_parse_ids(ids, spec))
        else:
            classes_.append((name, _parse_ids(ids, spec)))
    seen: dict[int, str] = {}
    for cname, cids in [*classes_, ("ignore", ignored_)]:
        for i in cids:
            if i in seen and seen[i] != cname:
                raise InvalidParameterError(
                    f"--classes {spec!r}: label id {i} is in both {seen[i]!r} and "
                    f"{cname!r}."
                )
            seen[i] = cname
    if len(classes_) < 2:
        raise InvalidParameterError(
            f"--classes {spec!r} defines {len(classes_)} class(es); at least 2 are "
            "needed to score a segmentation."
        )
    return _table("custom", classes_, ignored_)


@dataclass
class SegmentationConfusion:
    """Pixel counts (class x cluster), accumulated image by image.

    Parameters
    ----------
    table : ClassTable
    n_clusters : int
    """

    table: ClassTable
    n_clusters: int
    matrix: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((self.table.n_classes, self.n_clusters), np.int64)

    def add(
        self, label_map: npt.NDArray[Any], clusters: npt.NDArray[Any], what: str
    ) -> npt.NDArray[np.int64]:
        """Count one image; returns its class x cluster counts.

        ``label_map`` holds label ids (mapped through the table, checked),
        ``clusters`` a cluster id per pixel of the same shape.
        """
        classes = self.table.map(label_map, what)
        if classes.shape != np.shape(clusters):
            raise DataValidationError(
                f"{what} is {classes.shape[1]}x{classes.shape[0]} pixels but its "
                f"image is {np.shape(clusters)[1]}x{np.shape(clusters)[0]}: a label "
                "map must have its image's size. Check that the label folder "
                "belongs to these images."
            )
        keep = classes >= 0
        flat = classes[keep] * self.n_clusters + np.asarray(clusters)[keep]
        counts = np.bincount(
            flat, minlength=self.table.n_classes * self.n_clusters
        ).reshape(self.table.n_classes, self.n_clusters)
        self.matrix += counts
        return counts


def segmentation_scores(
    matrix: npt.ArrayLike, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Hungarian-matched pixel accuracy and mIoU of a class x cluster table.

    Parameters
    ----------
    matrix : array-like of shape (n_classes, n_clusters)
        Pixel counts over the evaluated pixels of a data set.
    class_names : sequence of str, default=None

    Returns
    -------
    scores : dict
        ``accuracy`` (matched pixels / evaluated pixels), ``miou`` (mean
        over classes of the IoU of each class with its cluster; a class
        without a cluster has IoU 0), ``iou`` per class, ``match`` (class ->
        cluster, -1 for none) and ``n_pixels``.

    Notes
    -----
    As in Ji et al. (ICCV 2019): one one-to-one matching over all pixels,
    found with the Hungarian method on the counts.
    """
    m = np.asarray(matrix, dtype=np.int64)
    n_classes = m.shape[0]
    names = list(class_names or [str(i) for i in range(n_classes)])
    total = int(m.sum())
    if total == 0:
        raise DataValidationError(
            "No labelled pixel of the evaluated classes: nothing to score. Check "
            "--labels and --classes."
        )
    rows, cols = linear_sum_assignment(m, maximize=True)
    match = np.full(n_classes, -1, dtype=np.int64)
    match[rows] = cols
    correct = int(m[rows, cols].sum())
    iou = np.zeros(n_classes)
    for r, c in zip(rows, cols, strict=True):
        union = m[r].sum() + m[:, c].sum() - m[r, c]
        iou[r] = m[r, c] / union if union else 0.0
    return {
        "accuracy": correct / total,
        "miou": float(iou.mean()),
        "iou": {names[i]: float(iou[i]) for i in range(n_classes)},
        "match": {names[i]: int(match[i]) for i in range(n_classes)},
        "n_pixels": total,
    }


def majority_accuracy(matrix: npt.ArrayLike) -> float:
    """Share of evaluated pixels in the largest class (the trivial baseline)."""
    m = np.asarray(matrix, dtype=np.int64)
    return float(m.sum(axis=1).max() / m.sum())


def confusion_shares(matrix: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Row-normalised table: share of each class's pixels in each cluster."""
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    return np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
