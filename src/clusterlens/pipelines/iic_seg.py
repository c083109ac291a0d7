"""``clusterlens iic-seg`` as a library call: photos in, a cluster per pixel out.

Two methods over two kinds of per-pixel features: IIC (a network trained on
the images, :class:`~clusterlens.deep.IICSegmenter`) and k-means (no
training: the project's k-means on the pixels' colours or on the frozen
ImageNet CNN's feature maps, upsampled). Label maps, when given, are used only
to score (Hungarian pixel accuracy and mIoU over the evaluated classes).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError
from clusterlens.io import write_results, write_run_json
from clusterlens.io._persist import read_model, write_model
from clusterlens.metrics._segmentation import (
    ClassTable,
    SegmentationConfusion,
    majority_accuracy,
    parse_class_table,
    segmentation_scores,
)
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import check_random_state

__all__ = [
    "SEG_METHODS",
    "SegImages",
    "load_seg_images",
    "read_label_map",
    "run_iic_seg",
    "run_iic_seg_predict",
]

logger = logging.getLogger(__name__)

SEG_METHODS = ("iic", "kmeans")
KMEANS_FORMAT = "clusterlens.seg-kmeans"
#: Pixels drawn (seeded) from the training images to fit k-means.
KMEANS_MAX_PIXELS = 200_000
# k-means' over-clustering (k_over clusters merged into k by Ward linkage of
# the centres) is opt-in: on CamVid val (k-means fit on train, 3 seeds) it
# lifts CamVid-6 (Lite0 maps: 0.661 plain, 0.719 at 2k, 0.725 at 3k) but
# makes CamVid-3 depend on the seed (0.86-0.95 against 0.937 at every seed
# plain), and on test the 3k default took CamVid-3 from 0.886 to 0.827 while
# CamVid-6 rose from 0.579 to 0.601 (benchmarks/iic_seg.py docstring).
KMEANS_K_OVER_DEFAULT = 0
HEAD_SELECTION = (
    "the main-head sub-head with the lowest mean loss over the last epoch "
    "(label maps are never used for training or selection)"
)


@dataclass
class SegImages:
    """Images read for segmentation.

    Attributes
    ----------
    paths : list of Path
    stems : list of str
        File names without suffix (masks and label maps are matched by them).
    images : ndarray of shape (n, h, w, 3), uint8
        Every image resized to the network's ``(h, w)``.
    sizes : ndarray of shape (n, 2), int64
        Each image's own ``(height, width)``.
    """

    paths: list[Path]
    stems: list[str]
    images: npt.NDArray[np.uint8]
    sizes: npt.NDArray[np.int64]


def load_seg_images(
    folders: Sequence[str | os.PathLike[str]],
    size: tuple[int, int],
    *,
    verbose: int = 0,
) -> SegImages:
    """Read every image of ``folders`` at ``size`` (height, width), RGB."""
    from clusterlens.io import list_image_folder, read_image
    from clusterlens.io._images import probe_image

    paths: list[Path] = []
    for folder in folders:
        paths.extend(list_image_folder(folder).paths)
    stems = [p.stem for p in paths]
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise DataValidationError(
                f"Two images share the file stem {p.stem!r} ({seen[p.stem]} and {p}): "
                "masks and label maps are matched by stem. Rename one or pass the "
                "folders separately."
            )
        seen[p.stem] = p
    images = np.empty((len(paths), size[0], size[1], 3), dtype=np.uint8)
    sizes = np.empty((len(paths), 2), dtype=np.int64)
    for i, p in enumerate(
        progress(paths, total=len(paths), desc="reading images", verbose=verbose)
    ):
        w, h = probe_image(p)
        sizes[i] = (h, w)
        images[i] = read_image(p, mode="RGB", size=size)
    return SegImages(paths, stems, images, sizes)


def read_label_map(path: Path) -> npt.NDArray[np.int64]:
    """A label map: one integer id per pixel (grey or palette PNG)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataValidationError(
            f"Label map {str(path)!r} cannot be read ({e}). Pass label maps as "
            "single-channel PNG files of label ids."
        ) from e
    if arr.ndim != 2 or mode not in ("L", "P", "I", "I;16", "1"):
        raise DataValidationError(
            f"Label map {str(path)!r} is a {mode} image; a label map holds one "
            "label id per pixel (a grey or palette PNG), not colours."
        )
    return arr.astype(np.int64)


def _label_paths(
    label_dirs: Sequence[str | os.PathLike[str]], stems: Sequence[str]
) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in label_dirs:
        d = Path(d)
        if not d.is_dir():
            raise DataValidationError(
                f"Label folder {str(d)!r} does not exist or is not a folder."
            )
        for p in sorted(d.iterdir()):
            if p.suffix.lower() in (".png", ".bmp", ".tif", ".tiff") and p.is_file():
                found.setdefault(p.stem, p)
    matched = {s: found[s] for s in stems if s in found}
    if not matched:
        raise DataValidationError(
            f"No label map in {', '.join(map(str, label_dirs))} has the file stem of "
            f"an image (e.g. {stems[0]!r}.png). Label maps are matched to images by "
            "file name without suffix."
        )
    return matched


# --------------------------------------------------------------------------- #
# Per-pixel features and the k-means method
# --------------------------------------------------------------------------- #
def _pixel_features(
    images: npt.NDArray[np.uint8], features: str, *, n_threads: int, cnn: Any = None
) -> Any:
    """(n, C, h, w) float32 torch tensor of per-pixel features (``cnn``: the
    :class:`~clusterlens.deep.CnnFeatureMaps` to use)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    x = x.float().div_(255.0)
    if features == "rgb":
        return x
    from clusterlens.deep import cnn_pixel_features

    return cnn_pixel_features(x, n_threads=n_threads, model=cnn)


def merge_centres(centers: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Segment (``0 .. k-1``) of each of ``centers``' clusters: Ward's
    agglomerative linkage of the centres, cut at ``k`` groups.

    Each centre counts once, whatever its cluster's size, so a small object
    class (cars, people) that got a centre of its own is not absorbed by a
    large neighbour (road, sky) for its size (weighting the centres by their
    sizes, as k-means of the centres: CamVid-6 val 0.622 against 0.700, one
    seed). Groups are numbered by their first centre, so the result does
    not depend on the linkage's internal order.
    """
    from scipy.cluster.hierarchy import cut_tree, linkage

    groups = cut_tree(linkage(centers.astype(np.float64), method="ward"), k)[:, 0]
    _, first = np.unique(groups, return_index=True)
    order = np.argsort(np.argsort(first))  # group id -> rank of its first centre
    return order[groups].astype(np.int64)  # type: ignore[no-any-return]


class _PixelKMeans:
    """k-means on per-pixel features; predicts at any size (scores upsampled).

    With ``merge`` (over-clustering): ``centers`` are the k-means centres of
    more clusters than segments, and ``merge[j]`` is the segment of centre
    ``j`` (see :func:`merge_centres`).
    """

    def __init__(
        self,
        centers: npt.NDArray[np.float32],
        features: str,
        size: tuple[int, int],
        cnn_layers: tuple[str, ...] | None = None,
        backbone: str = "lite0",
        merge: npt.NDArray[np.int64] | None = None,
    ):
        self.centers, self.features, self.image_size = centers, features, size
        self.cnn_layers, self.backbone = cnn_layers, backbone
        self.merge = merge
        self._cnn: Any = None

    @property
    def n_clusters(self) -> int:
        """Segments predicted (the merged clusters when over-clustering)."""
        if self.merge is not None:
            return int(self.merge.max()) + 1
        return int(self.centers.shape[0])

    def _model(self) -> Any:
        if self.features == "cnn" and self._cnn is None:
            from clusterlens.deep import DEFAULT_CNN_LAYERS, CnnFeatureMaps

            # loaded once, not once per image
            self._cnn = CnnFeatureMaps(
                self.cnn_layers or DEFAULT_CNN_LAYERS, self.backbone
            )
        return self._cnn

    @classmethod
    def fit(
        cls,
        images: npt.NDArray[np.uint8],
        k: int,
        features: str,
        size: tuple[int, int],
        random_state: int,
        n_threads: int,
        cnn_layers: tuple[str, ...] | None = None,
        backbone: str = "lite0",
        k_over: int = 0,
    ) -> _PixelKMeans:
        """``k_over > k``: k-means into ``k_over`` clusters, merged into ``k``
        segments by :func:`merge_centres`."""
        from clusterlens.cluster import KMeans

        model = cls(np.zeros((0, 0), np.float32), features, size, cnn_layers, backbone)
        rng = check_random_state(random_state)
        # a few images at a time: the maps of every image at once would hold
        # n x h x w x C floats (3 GB for 468 CamVid photos and the CNN head)
        chunk = 16
        parts: list[npt.NDArray[np.float32]] = []
        pick: npt.NDArray[np.int64] | None = None
        for s in range(0, images.shape[0], chunk):
            f = _pixel_features(
                images[s : s + chunk], features, n_threads=n_threads, cnn=model._model()
            )
            flat = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).numpy()
            per_image = flat.shape[0] // f.shape[0]  # the same for every image
            n_px = per_image * images.shape[0]
            if s == 0 and n_px > KMEANS_MAX_PIXELS:
                pick = np.sort(rng.choice(n_px, KMEANS_MAX_PIXELS, replace=False))
            if pick is not None:
                lo = s * per_image
                flat = flat[pick[(pick >= lo) & (pick < lo + flat.shape[0])] - lo]
            parts.append(flat)
        km = KMeans(max(k, k_over), random_state=rng).fit(
            np.ascontiguousarray(np.concatenate(parts))
        )
        model.centers = km.cluster_centers_.astype(np.float32)
        if k_over > k:
            model.merge = merge_centres(model.centers, k)
        return model

    def predict_scores(
        self, image: npt.NDArray[np.uint8], size: tuple[int, int], n_threads: int
    ) -> npt.NDArray[np.float32]:
        """``(k, *size)``: each centre's squared distance less ``|x|^2``.

        Computed on the features' grid and upsampled (bilinear): the same as
        measuring the upsampled features, since a pixel's ``|x|^2`` is the
        same for every centre and the rest is linear in ``x``.
        """
        import torch
        import torch.nn.functional as F

        f = _pixel_features(
            image[None], self.features, n_threads=n_threads, cnn=self._model()
        )[0]
        c = torch.from_numpy(self.centers)
        d = (c * c).sum(1)[:, None, None] - 2.0 * torch.einsum("chw,kc->khw", f, c)
        d = F.interpolate(d[None], size=size, mode="bilinear", align_corners=False)
        return d[0].numpy()

    def predict(
        self, image: npt.NDArray[np.uint8], size: tuple[int, int], n_threads: int
    ) -> tuple[npt.NDArray[np.int64], None]:
        d = self.predict_scores(image, size, n_threads)
        nearest = d.argmin(0).astype(np.int64)
        return (nearest if self.merge is None else self.merge[nearest]), None

    def save(self, path: Path) -> None:
        params: dict[str, Any] = {
            "features": self.features,
            "image_size": list(self.image_size),
        }
        if self.features == "cnn":
            params["cnn_layers"] = list(self._model().layers)
            params["backbone"] = self.backbone
        arrays: dict[str, npt.NDArray[Any]] = {"centers": self.centers}
        if self.merge is not None:
            arrays["merge"] = self.merge
            params["k_over"] = int(self.centers.shape[0])
        write_model(
            path,
            arrays,
            fmt=KMEANS_FORMAT,
            version=1,
            params=params,
            attributes={"n_clusters": self.n_clusters},
            kind="pixel k-means",
        )

    @classmethod
    def load(cls, path: Path) -> _PixelKMeans:
        from clusterlens.deep import LEGACY_CNN_LAYERS

        meta, arrays = read_model(
            path, fmt=KMEANS_FORMAT, version=1, what="pixel k-means model"
        )
        p = meta["params"]
        # models written before cnn_layers existed read the maps of that time
        layers = tuple(p.get("cnn_layers", LEGACY_CNN_LAYERS))
        centers = np.asarray(arrays["centers"], np.float32)
        merge = None
        if "merge" in arrays:  # over-clustering (models before it have none)
            merge = np.asarray(arrays["merge"], np.int64)
            if merge.shape != (centers.shape[0],) or merge.min() < 0:
                raise DataValidationError(
                    f"pixel k-means model {path}: its merge table does not fit its "
                    f"{centers.shape[0]} centres; write the model again."
                )
        return cls(
            centers,
            p["features"],
            tuple(p["image_size"]),
            layers,
            p.get("backbone", "lite0"),
            merge,
        )


# --------------------------------------------------------------------------- #
# Outputs shared by training and prediction
# --------------------------------------------------------------------------- #
def _write_outputs(
    out: Path,
    data: SegImages,
    predict: Callable[[int], tuple[npt.NDArray[np.int64], npt.NDArray[Any] | None]],
    n_clusters: int,
    *,
    labels: Sequence[str | os.PathLike[str]] | None,
    classes: str | ClassTable,
    verbose: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Masks, per-image Parquet, scores; returns (summary, report material)."""
    from PIL import Image

    masks_dir = out / "masks"
    masks_dir.mkdir()
    table = parse_class_table(classes) if labels else None
    label_paths = _label_paths(labels, data.stems) if labels else {}
    conf = SegmentationConfusion(table, n_clusters) if table is not None else None
    n = len(data.paths)
    shares = np.zeros((n, n_clusters), dtype=np.float64)
    confidence = np.full(n, np.nan, dtype=np.float64)
    per_image: list[npt.NDArray[np.int64] | None] = [None] * n
    report_masks: dict[int, tuple[npt.NDArray[Any], npt.NDArray[Any] | None]] = {}
    show = set(np.linspace(0, n - 1, min(n, 12)).round().astype(int).tolist())
    for i in progress(range(n), total=n, desc="masks", verbose=verbose):
        mask, conf_i = predict(i)
        shares[i] = np.bincount(mask.ravel(), minlength=n_clusters) / mask.size
        if conf_i is not None:
            confidence[i] = float(conf_i.mean())
        dtype = np.uint8 if n_clusters <= 256 else np.uint16
        Image.fromarray(mask.astype(dtype)).save(masks_dir / f"{data.stems[i]}.png")
        lab = None
        if conf is not None and data.stems[i] in label_paths:
            lp = label_paths[data.stems[i]]
            lab = read_label_map(lp)
            per_image[i] = conf.add(lab, mask, f"Label map {str(lp)!r}")
        if i in show:
            report_masks[i] = (mask, None if lab is None else table.map(lab, "label"))  # type: ignore[union-attr]
    cols: dict[str, Any] = {
        "index": np.arange(n, dtype=np.int64),
        "item_id": np.asarray([str(p) for p in data.paths]),
        "stem": np.asarray(data.stems),
        "height": data.sizes[:, 0],
        "width": data.sizes[:, 1],
        "mask": np.asarray([f"masks/{s}.png" for s in data.stems]),
        "n_clusters_present": (shares > 0).sum(axis=1).astype(np.int64),
        "largest_share": shares.max(axis=1),
    }
    if np.isfinite(confidence).any():
        cols["confidence"] = confidence
    width = len(str(n_clusters - 1))
    for c in range(n_clusters):
        cols[f"share_{c:0{width}d}"] = shares[:, c]
    summary: dict[str, Any] = {
        "n_images": n,
        "n_clusters": n_clusters,
        "n_clusters_used": int((shares.sum(axis=0) > 0).sum()),
    }
    material: dict[str, Any] = {"masks": report_masks, "table": table}
    if conf is not None and table is not None:
        scores = segmentation_scores(conf.matrix, table.class_names)
        match = np.array([scores["match"][c] for c in table.class_names])
        acc = np.full(n, np.nan)
        scored = np.zeros(n, dtype=np.int64)
        for i, counts in enumerate(per_image):
            if counts is None:
                continue
            scored[i] = counts.sum()
            ok = match >= 0
            hit = counts[np.flatnonzero(ok), match[ok]].sum()
            acc[i] = hit / scored[i] if scored[i] else np.nan
        cols["pixels_scored"] = scored
        cols["accuracy"] = acc
        summary.update(
            classes=table.describe(),
            n_images_scored=int(sum(c is not None for c in per_image)),
            accuracy=scores["accuracy"],
            miou=scores["miou"],
            iou=scores["iou"],
            match=scores["match"],
            majority_accuracy=majority_accuracy(conf.matrix),
            n_pixels_scored=scores["n_pixels"],
        )
        material.update(confusion=conf.matrix, scores=scores)
    write_results(out / "segments.parquet", cols)
    return summary, material


def _kmeans_layers(model: Any) -> tuple[str, ...]:
    """The maps k-means reads: ``cnn_layers`` when given, else the CNN's
    default with the head (IIC's default leaves the head out)."""
    from clusterlens.deep import DEFAULT_CNN_LAYERS, check_cnn_layers

    if model.cnn_layers is None:
        return tuple(DEFAULT_CNN_LAYERS)
    return check_cnn_layers(model.cnn_layers)


def _kmeans_k_over(k: int, k_over: int | None) -> int:
    """k-means' over-clustering: ``k_over`` clusters merged into ``k``
    segments (0, the default: none)."""
    if k_over is None:
        return KMEANS_K_OVER_DEFAULT
    if isinstance(k_over, bool) or not isinstance(k_over, int | np.integer):
        raise InvalidParameterError(f"k_over must be an integer; got {k_over!r}.")
    if k_over != 0 and k_over <= k:
        raise InvalidParameterError(
            f"k_over (--k-over) must be larger than k = {k} (k-means into k_over "
            f"clusters, merged into k segments), or 0 for none; got {k_over}."
        )
    return int(k_over)


def _check_k(n_clusters: Any) -> None:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer):
        raise InvalidParameterError(f"k must be an integer >= 2; got {n_clusters!r}.")
    if n_clusters < 2:
        raise InvalidParameterError(
            f"k must be >= 2 (the number of segments to find); got {n_clusters}."
        )


def run_iic_seg(
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    n_clusters: int = 3,
    method: str = "iic",
    features: str = "rgb",
    labels: Sequence[str | os.PathLike[str]] | None = None,
    classes: str | ClassTable = "camvid3",
    image_size: tuple[int, int] | None = None,
    train_on_classes: bool = False,
    refine: bool = True,
    random_state: int = 0,
    verbose: int = 0,
    n_threads: int = 2,
    command: dict[str, Any] | None = None,
    **iic_params: Any,
) -> dict[str, Any]:
    """Segment the images of ``images`` into ``n_clusters`` per-pixel clusters.

    Writes ``masks/<stem>.png`` (a cluster id per pixel, at each image's
    size), ``segments.parquet`` (one row per image: size, cluster shares,
    confidence, and accuracy under the data set's matching when labelled),
    ``model.npz`` + ``model.json``, ``report.html`` and ``run.json``.

    Parameters
    ----------
    images : path or sequence of paths
        Folders of images (searched recursively).
    out_dir : path
        Existing, empty folder to write into.
    n_clusters : int
        Segments to find (the number of evaluated classes).
    method : {"iic", "kmeans"}
        "iic" trains :class:`~clusterlens.deep.IICSegmenter`; "kmeans" runs
        k-means on the per-pixel features (no training).
    features : {"rgb", "cnn"}
        The pixels' colours, or the frozen ImageNet CNN's feature maps.
    labels : sequence of paths or None
        Folders of label maps (same file stems as the images), only scored.
    classes : str or ClassTable
        The evaluated classes (see :func:`~clusterlens.metrics.parse_class_table`).
    image_size : (height, width) or None
        Size the images are resized to for the network (multiples of 16).
    train_on_classes : bool
        IIC counts only the pixels of the evaluated classes (IIC's
        COCO-Stuff-3 protocol): the label maps choose which pixels enter the
        objective, never their cluster. Needs a label map for every image.
    refine : bool
        Move the predicted boundaries onto the photos' edges (a guided
        filter on each full-size photo, :func:`~clusterlens.deep.refine_segmentation`);
        the networks predict on a grid 4 to 8 times coarser.
    **iic_params
        Further :class:`~clusterlens.deep.IICSegmenter` parameters. With
        method "kmeans", ``n_clusters_over`` is k-means' over-clustering:
        k-means into that many clusters, merged into ``n_clusters``
        segments by Ward linkage of the centres (:func:`merge_centres`;
        default 0: plain k-means; 2-3 times ``n_clusters`` helped CamVid-6).

    Returns
    -------
    summary : dict
        What ``run.json`` holds under ``results``.
    """
    _check_k(n_clusters)
    if method not in SEG_METHODS:
        raise InvalidParameterError(
            f"method must be one of {', '.join(SEG_METHODS)}; got {method!r}."
        )
    from clusterlens.pipelines.iic import _deep
    from clusterlens.report._iic_seg import build_iic_seg_report

    deep = _deep()
    if labels:
        parse_class_table(classes)  # a bad table fails before any work
    if train_on_classes and (not labels or method != "iic"):
        raise InvalidParameterError(
            "train_on_classes (--train-on-classes) needs --labels (the label maps "
            "choose the pixels that count) and method 'iic'."
        )
    folders = [images] if isinstance(images, str | os.PathLike) else list(images)
    out = Path(out_dir)
    t0 = time.perf_counter()
    k_over = 0
    if method == "kmeans":
        k_over = _kmeans_k_over(n_clusters, iic_params.pop("n_clusters_over", None))
    model = deep.IICSegmenter(
        n_clusters,
        features=features,
        image_size=image_size,
        random_state=random_state,
        verbose=verbose,
        n_threads=n_threads,
        **iic_params,
    )
    model._validate_params()
    size = model._image_size()
    data = load_seg_images(folders, size, verbose=verbose)
    t_load = time.perf_counter() - t0
    if method == "iic":
        keep = None
        if train_on_classes:
            keep = _class_pixels(labels, classes, data)  # type: ignore[arg-type]
        model.fit(data.images, pixel_mask=keep)
        predictor: Any = model
    else:
        predictor = _PixelKMeans.fit(
            data.images,
            n_clusters,
            features,
            size,
            random_state,
            n_threads,
            _kmeans_layers(model),
            model.backbone,
            k_over,
        )
    t_fit = time.perf_counter() - t0 - t_load
    summary, material = _write_outputs(
        out,
        data,
        _predict_fn(predictor, data, n_threads, refine),
        n_clusters,
        labels=labels,
        classes=classes,
        verbose=verbose,
    )
    predictor.save(out / "model")
    history = model.history_ if method == "iic" else []
    summary.update(
        method=method,
        features=features,
        image_size=list(size),
        train_on_classes=train_on_classes,
        refine=refine,
        fit_seconds=t_fit,
    )
    if features == "cnn":
        summary["cnn_layers"] = list(
            _kmeans_layers(model) if method == "kmeans" else model._cnn_layers()
        )
    if method == "iic":
        summary.update(
            head=model.head_,
            head_selection=HEAD_SELECTION,
            epochs=model.n_epochs_,
            device=model.device_,
        )
    params = {**_params(model, method), "refine": refine}
    if method == "kmeans":
        params["k_over"] = summary["k_over"] = k_over
    build_iic_seg_report(
        out / "report.html",
        data=data,
        material=material,
        summary=summary,
        history=history,
        params=params,
        title=f"clusterlens iic-seg: {method} on {features} features, k={n_clusters}",
    )
    write_run_json(
        out / "run.json",
        {
            "schema": "clusterlens.iic-seg/1",
            "command": command or {"name": "iic-seg"},
            "data": [str(f) for f in folders],
            "labels": None if not labels else [str(x) for x in labels],
            "parameters": params,
            "seed": random_state,
            "timings": {
                "load_seconds": t_load,
                "fit_seconds": t_fit,
                "epoch_seconds": [h["seconds"] for h in history],
                "total_seconds": time.perf_counter() - t0,
            },
            "results": summary,
            "history": history,
            "outputs": _OUTPUTS,
        },
    )
    return summary


def _class_pixels(
    labels: Sequence[str | os.PathLike[str]],
    classes: str | ClassTable,
    data: SegImages,
) -> npt.NDArray[np.bool_]:
    """Per training image, its pixels of the evaluated classes at the
    network's size (nearest-neighbour resize of the label maps)."""
    from PIL import Image

    table = parse_class_table(classes)
    paths = _label_paths(labels, data.stems)
    missing = [s for s in data.stems if s not in paths]
    if missing:
        raise DataValidationError(
            f"--train-on-classes needs a label map for every image; {len(missing)} "
            f"have none (e.g. {missing[0]!r}). Add them or leave out the option."
        )
    h, w = data.images.shape[1:3]
    out = np.empty((len(data.stems), h, w), dtype=bool)
    for i, stem in enumerate(data.stems):
        lab = read_label_map(paths[stem])
        if lab.shape != tuple(data.sizes[i]):
            raise DataValidationError(
                f"Label map {str(paths[stem])!r} is {lab.shape[1]}x{lab.shape[0]} "
                f"pixels but its image is {data.sizes[i, 1]}x{data.sizes[i, 0]}: a "
                "label map must have its image's size."
            )
        cls = table.map(lab, f"Label map {str(paths[stem])!r}") >= 0
        small = Image.fromarray(cls.astype(np.uint8)).resize(
            (w, h), Image.Resampling.NEAREST
        )
        out[i] = np.asarray(small) > 0
    return out


_OUTPUTS = [
    "masks/",
    "segments.parquet",
    "model.npz",
    "model.json",
    "report.html",
    "run.json",
]


def _params(model: Any, method: str) -> dict[str, Any]:
    p = {
        k: v
        for k, v in model.get_params().items()
        if k not in ("transforms", "checkpoint_dir", "verbose")
    }
    p["method"] = method
    p["image_size"] = list(model._image_size())
    p["cnn_layers"] = list(
        _kmeans_layers(model) if method == "kmeans" else model._cnn_layers()
    )
    if p["features"] != "cnn":  # the CNN's settings do not apply
        del p["cnn_layers"], p["backbone"]
    if method == "kmeans":  # the IIC settings do not apply
        keys: tuple[str, ...] = (
            "n_clusters",
            "features",
            "image_size",
            "random_state",
            "n_threads",
        )
        keys += ("cnn_layers", "backbone") if p["features"] == "cnn" else ()
        return {"method": method, **{k: p[k] for k in keys}}
    if method == "iic":
        p["transforms"] = model.transforms_.to_dict()
        p["checkpoint_dir"] = (
            None if model.checkpoint_dir is None else str(model.checkpoint_dir)
        )
    return p


def _predict_fn(
    predictor: Any, data: SegImages, n_threads: int, refine: bool = True
) -> Callable[[int], tuple[npt.NDArray[np.int64], npt.NDArray[Any] | None]]:
    """Cluster map (and confidence) of image ``i`` at its own size; with
    ``refine``, the boundaries moved onto the image's edges (guided filter
    on the full-size photo, :func:`~clusterlens.deep.refine_segmentation`)."""

    def one(i: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any] | None]:
        size = (int(data.sizes[i, 0]), int(data.sizes[i, 1]))
        conf: npt.NDArray[Any] | None
        if isinstance(predictor, _PixelKMeans):
            mask, conf = predictor.predict(data.images[i], size, n_threads)
            k = predictor.n_clusters
        else:
            proba = predictor.predict_proba(data.images[i : i + 1], size=size)[0]
            mask, conf = proba.argmax(axis=0).astype(np.int64), proba.max(axis=0)
            k = int(proba.shape[0])
        if refine:
            from clusterlens.deep import refine_segmentation
            from clusterlens.io import read_image

            image = read_image(data.paths[i], mode="RGB")
            if image.shape[:2] != size:  # EXIF-rotated or odd files
                image = read_image(data.paths[i], mode="RGB", size=size)
            mask = refine_segmentation(mask, image, k)
        return mask, conf

    return one


def run_iic_seg_predict(
    model_path: str | os.PathLike[str],
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    labels: Sequence[str | os.PathLike[str]] | None = None,
    classes: str | ClassTable = "camvid3",
    device: str = "auto",
    n_threads: int = 2,
    refine: bool = True,
    verbose: int = 0,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment ``images`` with a saved ``iic-seg`` model (IIC or k-means).

    Writes ``masks/``, ``segments.parquet``, ``report.html`` and ``run.json``;
    ``refine`` as for :func:`run_iic_seg`.
    """
    from clusterlens.io._persist import model_paths
    from clusterlens.io._safe import read_json
    from clusterlens.pipelines.iic import _deep
    from clusterlens.report._iic_seg import build_iic_seg_report

    deep = _deep()
    if labels:
        parse_class_table(classes)
    folders = [images] if isinstance(images, str | os.PathLike) else list(images)
    out = Path(out_dir)
    t0 = time.perf_counter()
    json_path = model_paths(model_path)[1]
    fmt = None
    if json_path.is_file():
        fmt = read_json(
            json_path, what="model description", fix="write the model again"
        ).get("format")
    predictor: Any
    history: list[dict[str, Any]] = []
    if fmt == KMEANS_FORMAT:
        predictor = _PixelKMeans.load(Path(model_path))
        size, k, method = predictor.image_size, predictor.n_clusters, "kmeans"
        feats = predictor.features
    else:
        predictor = deep.IICSegmenter.load(model_path, device=device)
        predictor.n_threads = n_threads
        size, k, method = predictor.image_size_, predictor.n_clusters, "iic"
        feats, history = predictor.features, predictor.history_
    data = load_seg_images(folders, tuple(size), verbose=verbose)
    summary, material = _write_outputs(
        out,
        data,
        _predict_fn(predictor, data, n_threads, refine),
        int(k),
        labels=labels,
        classes=classes,
        verbose=verbose,
    )
    summary.update(method=method, features=feats, image_size=list(size), refine=refine)
    if method == "kmeans":
        summary["k_over"] = 0 if predictor.merge is None else len(predictor.merge)
    if feats == "cnn":
        summary["cnn_layers"] = list(
            predictor._model().layers
            if method == "kmeans"
            else predictor.net_.frozen.layers
        )
    build_iic_seg_report(
        out / "report.html",
        data=data,
        material=material,
        summary=summary,
        history=history,
        params={
            "model": str(model_path),
            "method": method,
            "features": feats,
            "refine": refine,
        },
        title=f"clusterlens iic-seg-predict: {method} on {feats} features, k={k}",
    )
    write_run_json(
        out / "run.json",
        {
            "schema": "clusterlens.iic-seg-predict/1",
            "command": command or {"name": "iic-seg-predict"},
            "model": str(model_path),
            "data": [str(f) for f in folders],
            "labels": None if not labels else [str(x) for x in labels],
            "timings": {"total_seconds": time.perf_counter() - t0},
            "results": summary,
            "outputs": ["masks/", "segments.parquet", "report.html", "run.json"],
        },
    )
    return summary
