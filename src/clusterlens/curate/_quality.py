"""Image-quality issues: per-image properties, then a scored, flagged rule per type."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError, InvalidParameterError

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ISSUE_TYPES",
    "PROPERTY_NAMES",
    "QualityResult",
    "image_properties",
    "properties_table",
    "quality_issues",
]

logger = logging.getLogger(__name__)
_OWNER = "quality_issues"

#: Longer side (pixels) of the working copy every content property is measured
#: on; larger images are area-downscaled to it, smaller ones are used as they are
#: (never upscaled: upscaling would itself blur). 512, not 256: a 768-px photo
#: blurred with sigma 3 keeps sigma 2 at 512 px (found) but only 1 at 256 (missed);
#: on the hymenoptera photos (median 500 px) sigma-3 blur is found in 99.5 % at
#: 512 and 96.5 % at 256, with no clean photo flagged at either, for about twice
#: the cost (a 500x375 photo: 5.5 ms at 512, 3.1 ms at 256, on a 2-core machine
#: under load ~5, so roughly 2 and 1 ms quiet; 32x32: 0.25 ms). 384 is worse than
#: both: resampling 500 -> 384 softens clean photos.
WORKING_SIDE = 512
#: Longer side of the thumbnail the information (entropy) is measured on.
THUMBNAIL_SIDE = 64
#: Scale (pixels of the working copy) of the coarse gradient in the sharpness ratio.
_SHARPNESS_SIGMA = 2.0
#: Grey levels added to both terms of the sharpness ratio: keeps it finite and
#: near 1 ("not blurry") on constant images.
_SHARPNESS_EPS = 0.5
#: Smoothing (thumbnail pixels) before the histogram: averages out pixel noise.
_THUMBNAIL_SIGMA = 1.0

#: The keys of :func:`image_properties`, with their meaning.
PROPERTY_NAMES: dict[str, str] = {
    "height": "image height in pixels",
    "width": "image width in pixels",
    "aspect": "width / height",
    "size": "linear size sqrt(height * width) in pixels",
    "brightness": "mean luma (Rec. 601, gamma-encoded) in [0, 1]",
    "brightness_p05": "5th percentile of the luma in [0, 1]: how light the darkest "
    "tones are",
    "brightness_p99": "99th percentile of the luma in [0, 1]: how light the "
    "brightest tones are",
    "contrast": "standard deviation of the luma in [0, 1]",
    "sharpness": "mean |Laplacian| of the working copy over the mean gradient "
    "magnitude of its Gaussian-smoothed (sigma=2 px) copy, each plus 0.5 grey "
    "levels: fine detail relative to the image's own coarse edges, so independent "
    "of exposure and contrast; lower = blurrier",
    "entropy": "Shannon entropy (bits, 0-8) of the 256-level luma histogram of a "
    "smoothed 64-px thumbnail: how many distinct tones, mostly blind to pixel noise",
    "saturation": "sum over pixels of HSL chroma (max - min channel) over the sum "
    "of its largest possible value min(max + min, 510 - max - min), in [0, 1]; 0 "
    "for a grayscale image, unchanged by darkening or by fading towards white",
}

#: The issue types, in report order.
ISSUE_TYPES: tuple[str, ...] = (
    "blurry",
    "dark",
    "bright",
    "low_information",
    "odd_aspect_ratio",
    "odd_size",
    "grayscale",
)

#: Cut-offs of the rules, in the units of :data:`PROPERTY_NAMES`. Measured on
#: the 396 hymenoptera photos and 2,000 CIFAR-10 training images (clean, then with
#: planted issues); the rates are in ``tests/curate/test_quality.py``.
DEFAULT_THRESHOLDS: dict[str, float] = {
    # blurry: sharpness below this. Clean photos: min 1.24 (hymenoptera), 1.5
    # (CIFAR-10); Gaussian blur sigma=3 at the original size: median 0.74.
    "blurry_sharpness": 1.2,
    # dark: the 99th luma percentile below this (cleanvision: 0.37), i.e. even
    # the highlights are dim. Brightness x 0.25 gives <= 0.25; clean photos >= 0.4.
    "dark_brightness_p99": 0.35,
    # bright: the 5th luma percentile above this, i.e. even the shadows are light
    # (cleanvision: 0.95, which misses images faded half-way to white). Fading a
    # photo by a fraction t towards white gives >= t; clean photos: 99th
    # percentile 0.44 (hymenoptera), 0.47 (CIFAR-10).
    "bright_brightness_p05": 0.6,
    # low_information: thumbnail entropy below this many bits. A uniform colour
    # plus noise (std <= 8) photo-sized: <= 1.0 bits; 32x32 (no averaging):
    # <= 1.7 (std 2), 2.0-2.5 (std 5). Clean photos >= 3.0; photos darkened
    # x 0.15 or faded 85 % to white: 1st percentile 2.2.
    "low_information_entropy": 2.0,
    # ... or the relative contrast below this: the luma's standard deviation
    # over the distance of its mean from black or white, whichever is nearer
    # (contrast / min(brightness, 1 - brightness)). Darkening (x t) or fading
    # towards white (by 1 - t) scales both alike, so a dim or washed-out
    # photo keeps its value (and is dark / bright), while one flat tone at any
    # level is low information. Clean photos: 0.10-0.20 at the 0.1st
    # percentile (12,500 CIFAR-10 training images: min 0.051; hymenoptera,
    # COCO, CamVid: min 0.18-0.6); flattened (a 10 % contrast cut after a
    # heavy blur, or one colour with faint noise): 0.007-0.08, median 0.02.
    "low_information_relative_contrast": 0.05,
    # odd_aspect_ratio: |log(aspect / median aspect)| above
    # max(log(min_factor), z * robust sigma of log aspect).
    "odd_aspect_ratio_min_factor": 3.0,
    "odd_aspect_ratio_z": 5.0,
    # odd_size: |log(size / median size)| above
    # max(log(min_factor), z * robust sigma of log size).
    "odd_size_min_factor": 6.0,
    "odd_size_z": 5.0,
    # grayscale: saturation below this (a JPEG of a grey image: < 0.005; clean
    # colour photos: 1st percentile 0.038), and only where at least this share
    # of the collection is colour.
    "grayscale_saturation": 0.015,
    "grayscale_min_color_fraction": 0.8,
}

_RULES: dict[str, str] = {
    "blurry": "sharpness < {blurry_sharpness:g} (fine detail over coarse edges on "
    "the <= 512-px grayscale working copy), and not low_information",
    "dark": "99th percentile of the luma < {dark_brightness_p99:g} (even the "
    "highlights are dim), and not low_information",
    "bright": "5th percentile of the luma > {bright_brightness_p05:g} (even the "
    "shadows are light), and not low_information",
    "low_information": "entropy of the smoothed 64-px thumbnail's luma histogram "
    "< {low_information_entropy:g} bits, or the luma's standard deviation < "
    "{low_information_relative_contrast:g} of its mean's distance to black or "
    "white, whichever is nearer (almost one flat tone, however light or dark)",
    "odd_aspect_ratio": "width/height differs from the collection's median by a "
    "factor above max({odd_aspect_ratio_min_factor:g}, exp({odd_aspect_ratio_z:g} "
    "robust sigmas of log aspect))",
    "odd_size": "sqrt(height*width) differs from the collection's median by a "
    "factor above max({odd_size_min_factor:g}, exp({odd_size_z:g} robust sigmas "
    "of log size))",
    "grayscale": "saturation < {grayscale_saturation:g} (no colour), only when at "
    "least {grayscale_min_color_fraction:.0%} of the collection is colour, and not "
    "low_information",
}


@dataclass(frozen=True)
class QualityResult:
    """Image-quality scores and flags of a collection, one entry per image.

    Attributes
    ----------
    scores : dict of str to ndarray of shape (n_images,), float64
        Per issue type, a score in [0, 1]; lower = more suspicious. 0.5 lies on
        the rule's cut-off, so ``scores[t] < 0.5`` where the rule is met.
    issues : dict of str to ndarray of shape (n_images,), bool
        Per issue type, True where the image is flagged.
    issue_types : tuple of str
        The issue types, in report order (:data:`ISSUE_TYPES`).
    rules : dict of str to str
        The human-readable rule of each issue type, with the cut-offs used.
    thresholds : dict of str to float
        The cut-offs used: :data:`DEFAULT_THRESHOLDS` updated by the caller's.
    info : dict
        Collection-level figures the relative rules used: median aspect and
        size, their robust sigmas, the share of colour images and whether the
        grayscale rule applied.
    """

    scores: dict[str, npt.NDArray[np.float64]]
    issues: dict[str, npt.NDArray[np.bool_]]
    issue_types: tuple[str, ...] = ISSUE_TYPES
    rules: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(next(iter(self.scores.values())).shape[0]) if self.scores else 0

    @property
    def any_issue(self) -> npt.NDArray[np.bool_]:
        """Bool mask of shape (n_images,): True where any issue type is flagged."""
        return np.logical_or.reduce([self.issues[t] for t in self.issue_types])


# --------------------------------------------------------------------------- #
# per-image properties
# --------------------------------------------------------------------------- #
def _check_image(image: Any) -> npt.NDArray[np.uint8]:
    if not isinstance(image, np.ndarray):
        raise DataValidationError(
            f"image must be a numpy array of dtype uint8; got {type(image).__name__}. "
            "Decode the file first, e.g. np.asarray(PIL.Image.open(path))."
        )
    if image.dtype != np.uint8:
        raise DataValidationError(
            f"image must have dtype uint8; got {image.dtype}. Scale it to 0-255 and "
            "use image.astype(np.uint8)."
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise DataValidationError(
            "image must be of shape (height, width) or (height, width, 3) with RGB "
            f"channels; got shape {image.shape}."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DataValidationError(f"image must not be empty; got shape {image.shape}.")
    return image


def _downscale(image: npt.NDArray[np.uint8], side: int) -> npt.NDArray[np.uint8]:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.asarray(out, dtype=np.uint8)


def _percentile_from_hist(cdf: npt.NDArray[np.int64], q: float) -> float:
    """Lowest grey level whose cumulative count reaches ``q`` of the pixels."""
    return float(np.searchsorted(cdf, q * cdf[-1], side="left")) / 255.0


def _entropy_bits(hist: npt.NDArray[np.float64]) -> float:
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no -0.0


def image_properties(image: npt.NDArray[np.uint8]) -> dict[str, float]:
    """Measure the raw quality properties of one decoded image.

    Parameters
    ----------
    image : ndarray of shape (height, width) or (height, width, 3), uint8
        One decoded image, RGB channel order (as PIL gives it; OpenCV's BGR only
        changes the luma weights slightly). A fourth (alpha) channel is ignored.

    Returns
    -------
    properties : dict of str to float
        The keys of :data:`PROPERTY_NAMES`: ``height``, ``width``, ``aspect``,
        ``size``, ``brightness``, ``brightness_p05``, ``brightness_p99``,
        ``contrast``, ``sharpness``, ``entropy``, ``saturation``.

    Raises
    ------
    DataValidationError
        If ``image`` is not a non-empty uint8 array of a supported shape.

    See Also
    --------
    properties_table : Stack the dicts of a collection into arrays.
    quality_issues : Score and flag the issues from the properties.

    Notes
    -----
    Content properties are measured on a working copy whose longer side is at
    most 512 pixels (area interpolation; smaller images are used as they are), so
    each image costs a few milliseconds after decoding (about as much as decoding
    a 500x375 JPEG), and sharpness does not depend on the resolution above
    512 px. Saturation is summed over a point sample of the original (every
    ``ceil(longer / 512)``-th pixel of each row and column). The luma is Rec. 601
    (``cv2.COLOR_RGB2GRAY``).

    Sharpness is the mean absolute 4-neighbour Laplacian over the mean gradient
    magnitude of the working copy smoothed with a Gaussian of sigma 2 pixels. Both
    scale with contrast, so their ratio measures blur, not exposure: a darkened
    photo keeps its sharpness. It is in the spirit of the re-blur metric of Crete
    et al. (2007), "The blur effect: perception and estimation with a new
    no-reference perceptual blur metric". cleanvision instead uses the standard
    deviation of an edge filter on a 64-px copy (``calc_blurriness``), which
    falls with contrast, so it needs a "dark" correction and still calls flat or
    low-contrast photos blurry.

    Entropy is measured on a 64-px thumbnail smoothed with a Gaussian of sigma 1
    pixel (area downscaling and smoothing average pixel noise away), so a uniform
    colour with mild noise scores near 0 bits; cleanvision's PIL
    ``Image.entropy`` counts the noise as information.

    Examples
    --------
    >>> import numpy as np
    >>> from clusterlens.curate import image_properties
    >>> flat = np.full((40, 60, 3), 128, dtype=np.uint8)
    >>> p = image_properties(flat)
    >>> p["aspect"], p["entropy"], p["saturation"]
    (1.5, 0.0, 0.0)
    """
    image = _check_image(image)
    h, w = image.shape[:2]
    if image.ndim == 3:
        # Colour: every step-th pixel of the original (a point sample, ~512 px on
        # the longer side) is enough for a ratio of sums, and costs no filtering.
        step = max(1, math.ceil(max(h, w) / WORKING_SIDE))
        r, g, b = cv2.split(np.ascontiguousarray(image[::step, ::step]))
        mx = cv2.max(cv2.max(r, g), b)
        mn = cv2.min(cv2.min(r, g), b)
        total = cv2.add(mx, mn, dtype=cv2.CV_16U)  # 0..510, exact
        den = float(cv2.sumElems(np.minimum(total, 510 - total))[0])
        chroma = float(cv2.sumElems(cv2.subtract(mx, mn))[0])
        saturation = chroma / den if den > 0 else 0.0
        gray = np.asarray(
            cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY), np.uint8
        )
    else:
        gray = np.ascontiguousarray(image)
        saturation = 0.0
    # Luma first, then one area downscale of a single channel (3x cheaper).
    gray = _downscale(gray, WORKING_SIDE)

    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    cdf = np.cumsum(hist)
    levels = np.arange(256, dtype=np.float64)
    n = float(cdf[-1])
    mean = float(hist @ levels) / n
    var = max(float(hist @ (levels - mean) ** 2) / n, 0.0)

    # integer Laplacian (exact in int16), its mean absolute value
    lap = cv2.Laplacian(gray, cv2.CV_16S, ksize=1, borderType=cv2.BORDER_REFLECT)
    fine = cv2.norm(lap, cv2.NORM_L1) / gray.size
    smooth = cv2.GaussianBlur(
        gray.astype(np.float32),
        (0, 0),
        _SHARPNESS_SIGMA,
        borderType=cv2.BORDER_REFLECT,
    )
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    coarse = float(cv2.magnitude(gx, gy).mean()) / 8.0  # Sobel gain is 8
    sharpness = (fine + _SHARPNESS_EPS) / (coarse + _SHARPNESS_EPS)

    thumb = cv2.GaussianBlur(
        _downscale(gray, THUMBNAIL_SIDE).astype(np.float32),
        (0, 0),
        _THUMBNAIL_SIGMA,
        borderType=cv2.BORDER_REFLECT,
    )
    levels_t = np.clip(np.rint(thumb), 0, 255).astype(np.uint8).ravel()
    entropy = _entropy_bits(np.bincount(levels_t, minlength=256).astype(np.float64))

    return {
        "height": float(h),
        "width": float(w),
        "aspect": w / h,
        "size": math.sqrt(h * w),
        "brightness": mean / 255.0,
        "brightness_p05": _percentile_from_hist(cdf, 0.05),
        "brightness_p99": _percentile_from_hist(cdf, 0.99),
        "contrast": math.sqrt(var) / 255.0,
        "sharpness": sharpness,
        "entropy": entropy,
        "saturation": saturation,
    }


def properties_table(
    properties: Sequence[Mapping[str, float]],
) -> dict[str, npt.NDArray[np.float64]]:
    """Stack per-image property dicts into one float64 array per property.

    Parameters
    ----------
    properties : sequence of dict
        One :func:`image_properties` dict per image, in collection order.

    Returns
    -------
    table : dict of str to ndarray of shape (n_images,), float64
        One array per key of :data:`PROPERTY_NAMES`.

    Raises
    ------
    DataValidationError
        If a dict lacks a property.

    Examples
    --------
    >>> from clusterlens.curate import PROPERTY_NAMES, properties_table
    >>> row = {name: 1.0 for name in PROPERTY_NAMES}
    >>> properties_table([row, row])["sharpness"]
    array([1., 1.])
    """
    names = tuple(PROPERTY_NAMES)
    for i, row in enumerate(properties):
        missing = [k for k in names if k not in row]
        if missing:
            raise DataValidationError(
                f"properties[{i}] lacks {', '.join(map(repr, missing))}; each entry "
                "must be a dict returned by image_properties()."
            )
    return {
        k: np.fromiter((row[k] for row in properties), np.float64, len(properties))
        for k in names
    }


# --------------------------------------------------------------------------- #
# rules
# --------------------------------------------------------------------------- #
def _check_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    out = dict(DEFAULT_THRESHOLDS)
    if thresholds is None:
        return out
    if not isinstance(thresholds, Mapping):
        raise InvalidParameterError(
            f"The 'thresholds' parameter of {_OWNER} must be a dict or None. Got "
            f"{thresholds!r} instead."
        )
    import difflib

    for key, value in thresholds.items():
        if key not in DEFAULT_THRESHOLDS:
            close = difflib.get_close_matches(str(key), list(DEFAULT_THRESHOLDS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidParameterError(
                f"Unknown threshold {key!r}.{hint} Available: "
                f"{', '.join(DEFAULT_THRESHOLDS)}."
            )
        low = 1.0 if key.endswith("_min_factor") else 0.0
        ok = isinstance(
            value, (int, float, np.floating, np.integer)
        ) and not isinstance(value, bool)
        if not ok or not np.isfinite(value) or value < low or (value == low == 0.0):
            raise InvalidParameterError(
                f"The {key!r} threshold of {_OWNER} must be a float in the range "
                f"({low}, inf). Got {value!r} instead."
            )
        if key in ("grayscale_min_color_fraction",) and value > 1.0:
            raise InvalidParameterError(
                f"The {key!r} threshold of {_OWNER} must be a float in the range "
                f"(0, 1]. Got {value!r} instead."
            )
        out[key] = float(value)
    return out


def _check_props(props: Mapping[str, Any]) -> dict[str, npt.NDArray[np.float64]]:
    if not isinstance(props, Mapping):
        raise DataValidationError(
            f"props must be a dict of arrays (see properties_table); got "
            f"{type(props).__name__}."
        )
    missing = [k for k in PROPERTY_NAMES if k not in props]
    if missing:
        raise DataValidationError(
            f"props lacks {', '.join(map(repr, missing))}; build it with "
            "properties_table([image_properties(img) for img in images])."
        )
    out: dict[str, npt.NDArray[np.float64]] = {}
    n: int | None = None
    for k in PROPERTY_NAMES:
        a = np.asarray(props[k], dtype=np.float64)
        if a.ndim != 1:
            raise DataValidationError(
                f"props[{k!r}] must be 1-D of shape (n_images,); got shape {a.shape}."
            )
        if n is not None and a.shape[0] != n:
            raise DataValidationError(
                f"props[{k!r}] has {a.shape[0]} values but props['height'] has {n}; "
                "every property needs one value per image."
            )
        n = a.shape[0]
        bad = ~np.isfinite(a)
        if bad.any():
            raise DataValidationError(
                f"props[{k!r}] must be finite; {int(bad.sum())} values are NaN or "
                f"inf (first at index {int(np.flatnonzero(bad)[0])})."
            )
        out[k] = a
    if (out["height"] <= 0).any() or (out["width"] <= 0).any():
        raise DataValidationError("props['height'] and props['width'] must be > 0.")
    return out


def _low_is_bad(
    value: npt.NDArray[np.float64], cutoff: float
) -> npt.NDArray[np.float64]:
    """Score r / (1 + r) with r = value / cutoff: 0 at 0, 0.5 at the cut-off, -> 1."""
    r = np.maximum(value, 0.0) / cutoff
    return r / (1.0 + r)


def _relative(
    log_values: npt.NDArray[np.float64], min_factor: float, z: float
) -> tuple[npt.NDArray[np.float64], dict[str, float]]:
    """Score of a robust, floored deviation from the collection's median (log units)."""
    center = float(np.median(log_values))
    dev = np.abs(log_values - center)
    sigma = 1.4826 * float(np.median(dev))
    limit = max(math.log(min_factor), z * sigma)
    if limit <= 0.0:  # min_factor == 1 and every value equal
        limit = np.finfo(np.float64).tiny
    score = limit / (limit + dev)
    return score, {
        "median": math.exp(center),
        "robust_sigma": sigma,
        "factor": math.exp(limit),
    }


def quality_issues(
    props: Mapping[str, Any],
    *,
    thresholds: Mapping[str, float] | None = None,
) -> QualityResult:
    """Score and flag the image-quality issues of a collection.

    Parameters
    ----------
    props : dict of str to array-like of shape (n_images,)
        The properties of every image, as :func:`properties_table` returns them.
    thresholds : dict of str to float or None, default=None
        Cut-offs overriding :data:`DEFAULT_THRESHOLDS`, by name; ``None`` keeps
        the defaults.

    Returns
    -------
    result : QualityResult
        Per issue type a score in [0, 1] (lower = worse, 0.5 on the cut-off) and a
        bool flag; the rules in words; the cut-offs used.

    Raises
    ------
    DataValidationError
        If ``props`` lacks a property, or its arrays differ in length, are not
        1-D or are not finite.
    InvalidParameterError
        If a threshold is unknown or out of range.

    See Also
    --------
    image_properties : The per-image measurements.

    Notes
    -----
    The issue types are cleanvision's (``dark``, ``light`` here ``bright``,
    ``blurry``, ``low_information``, ``odd_aspect_ratio``, ``odd_size``,
    ``grayscale``; cleanvision ``issue_managers/image_property.py``); the rules
    differ where cleanvision's fail on data:

    - blurry: ``sharpness < 1.2``. The property is a ratio of fine to coarse
      gradients on a copy of at most 512 px, so it is blind to exposure and
      contrast (a darkened photo keeps its value) and to the original
      resolution above 512 px; images smaller than that are measured at their
      own resolution, so a set of 32x32 images is not all blurry.
    - dark: ``brightness_p99 < 0.35``; bright: ``brightness_p05 > 0.6``. Absolute,
      percentiles of the luma (cleanvision's dark rule uses the same percentile at
      0.37; its light rule asks ``p05 > 0.95`` and so misses photos faded half way
      to white).
    - low_information: ``entropy < 2`` bits, or relative contrast
      ``contrast / min(brightness, 1 - brightness) < 0.05``; the thumbnail's
      smoothing makes noise on a flat colour count as no information, and the
      relative contrast catches a flattened image whose few grey levels are
      spread over many histogram bins (a photo at a tenth of its contrast: 3-4
      bits). Darkening a photo or fading it towards white scales its contrast
      and its room to black or white alike: it keeps its relative contrast and
      is flagged dark or bright (which a fix of the exposure undoes), not low
      information. The score is the lower of the two rules' scores.
    - odd_aspect_ratio, odd_size: relative to the collection, because what is odd
      depends on it (a 32x32 image is normal in CIFAR-10, odd among photos): the
      absolute log deviation from the median is compared with
      ``max(log(min_factor), z * sigma)``, sigma = 1.4826 * MAD. The floor keeps a
      near-uniform collection (MAD = 0) from flagging the slightest difference;
      the z term widens the band in a varied one. The score is
      ``limit / (limit + deviation)``.
    - grayscale: ``saturation < 0.015``, flagged only when at least 80 % of the
      collection is colour: in a grayscale or mixed set it is not an anomaly
      (scores are then 1).
    - blurry, dark, bright and grayscale are not flagged on a low_information
      image: a flat image has no sharpness, exposure or colour to judge, and
      low_information names the problem. Their scores are left as measured.

    Scores for an absolute rule with property value ``v`` and cut-off ``c`` are
    ``r / (1 + r)``, ``r = v / c`` (``r = (1 - v) / (1 - c)`` for bright), so every
    score is 0.5 on its rule's boundary. The cost is O(n_images).

    Examples
    --------
    >>> import numpy as np
    >>> from clusterlens.curate import image_properties, properties_table
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    >>> images = [noise, noise // 4, np.full((48, 64, 3), 90, np.uint8)]
    >>> result = quality_issues(properties_table([image_properties(i) for i in images]))
    >>> result.issues["dark"], result.issues["low_information"]
    (array([False,  True, False]), array([False, False,  True]))
    """
    t = _check_thresholds(thresholds)
    p = _check_props(props)
    n = p["height"].shape[0]
    scores: dict[str, npt.NDArray[np.float64]] = {}
    issues: dict[str, npt.NDArray[np.bool_]] = {}
    info: dict[str, Any] = {"n_images": n}

    scores["blurry"] = _low_is_bad(p["sharpness"], t["blurry_sharpness"])
    scores["dark"] = _low_is_bad(p["brightness_p99"], t["dark_brightness_p99"])
    bright_cut = t["bright_brightness_p05"]
    if bright_cut >= 1.0:  # the rule can never fire
        scores["bright"] = np.ones(n)
    else:
        scores["bright"] = _low_is_bad(1.0 - p["brightness_p05"], 1.0 - bright_cut)
    # contrast relative to the room the exposure leaves: a dark or faded photo
    # keeps its value (flagged dark / bright, where re-exposing brings it
    # back), one flat tone has none at any level
    room = np.maximum(np.minimum(p["brightness"], 1.0 - p["brightness"]), 1e-3)
    relative = p["contrast"] / room
    cut_rel = t["low_information_relative_contrast"]
    scores["low_information"] = np.minimum(
        _low_is_bad(p["entropy"], t["low_information_entropy"]),
        _low_is_bad(relative, cut_rel),
    )
    low_info = (p["entropy"] < t["low_information_entropy"]) | (relative < cut_rel)
    issues["low_information"] = low_info
    issues["blurry"] = (p["sharpness"] < t["blurry_sharpness"]) & ~low_info
    issues["dark"] = (p["brightness_p99"] < t["dark_brightness_p99"]) & ~low_info
    issues["bright"] = (p["brightness_p05"] > bright_cut) & ~low_info

    if n:
        aspect_score, info["aspect"] = _relative(
            np.log(p["width"] / p["height"]),
            t["odd_aspect_ratio_min_factor"],
            t["odd_aspect_ratio_z"],
        )
        size_score, info["size"] = _relative(
            0.5 * np.log(p["width"] * p["height"]),
            t["odd_size_min_factor"],
            t["odd_size_z"],
        )
    else:
        aspect_score = size_score = np.ones(0)
    scores["odd_aspect_ratio"] = aspect_score
    scores["odd_size"] = size_score
    issues["odd_aspect_ratio"] = aspect_score < 0.5
    issues["odd_size"] = size_score < 0.5

    colorless = p["saturation"] < t["grayscale_saturation"]
    color_fraction = float(1.0 - colorless.mean()) if n else 1.0
    applies = bool(n) and color_fraction >= t["grayscale_min_color_fraction"]
    info["color_fraction"] = color_fraction
    info["grayscale_rule_applied"] = applies
    if applies:
        scores["grayscale"] = _low_is_bad(p["saturation"], t["grayscale_saturation"])
        issues["grayscale"] = colorless & ~low_info
    else:
        scores["grayscale"] = np.ones(n)
        issues["grayscale"] = np.zeros(n, dtype=bool)

    rules = {k: _RULES[k].format(**t) for k in ISSUE_TYPES}
    result = QualityResult(
        scores={k: scores[k] for k in ISSUE_TYPES},
        issues={k: issues[k] for k in ISSUE_TYPES},
        issue_types=ISSUE_TYPES,
        rules=rules,
        thresholds=t,
        info=info,
    )
    logger.info(
        "Image quality of %d images: %s",
        n,
        ", ".join(f"{k}={int(result.issues[k].sum())}" for k in ISSUE_TYPES),
    )
    return result
