"""Image sources read into memory: image folders, MNIST-style IDX folders and ``.npz``.

One reader per source (DESIGN.md "Sources"): :func:`load_image_array` returns an
:class:`ImageArray` whatever the source, and :func:`list_image_folder` /
:func:`read_image` are the building blocks the workspace ``ingest`` stage uses to
list a folder without decoding every image up front.

Every stage decodes image files through one function, :func:`decode_image`,
which applies the same rules everywhere (issue #17):

- only regular files are opened (a FIFO or device named ``x.jpg`` is
  unreadable, never opened: opening a FIFO blocks);
- an image whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels
  (178,956,970: Pillow's default decompression-bomb limit) is unreadable;
- pixels become 8-bit by the image's mode: 16-bit images (``I;16*``, and
  ``I`` holding values in [0, 65535], how Pillow opens 16-bit PNG and PGM)
  are scaled by 255 / 65535; float images (``F``) in [0, 1] are multiplied by
  255 and float images in [0, 255] are rounded; any other float range, NaN or
  infinity makes the image unreadable (never a guessed min-max stretch).

An unreadable file raises :class:`UnreadableImageError`, a
``DataValidationError`` that is also an ``OSError``, with the path and the
reason.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import stat
import struct
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import (
    DataQualityWarning,
    DataValidationError,
    InvalidParameterError,
)
from clusterlens.io._safe import (
    READ_ERRORS,
    describe_error,
    invalid_file,
)
from clusterlens.typing import PathLike
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import check_int, check_options

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "MAX_UNREADABLE_FRACTION",
    "OUTPUT_MARKERS",
    "ImageArray",
    "ImageFolderListing",
    "UnreadableImageError",
    "decode_image",
    "list_image_folder",
    "load_image_array",
    "probe_image",
    "read_idx",
    "read_image",
]

logger = logging.getLogger(__name__)

#: File suffixes (lower case) recognised as images in a folder.
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)
# Folder names taken as a split (not a class) when they sit above a class folder.
_SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test"})
_MODES: tuple[str, ...] = ("L", "RGB")
# IDX element type codes (the MNIST file format).
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_N_NAMED_SKIPS = 5

#: Images whose header declares more pixels than this are not decoded (they are
#: unreadable). Pillow's default decompression-bomb limit, fixed here so that a
#: change of ``PIL.Image.MAX_IMAGE_PIXELS`` elsewhere does not change it.
MAX_IMAGE_PIXELS = 178_956_970

#: A stage fails when more than this fraction of its items is unreadable;
#: fewer are counted, named in a ``DataQualityWarning`` and in ``run.json``.
MAX_UNREADABLE_FRACTION = 0.5

#: A sub-folder holding one of these files is a clusterlens output (a
#: workspace, an export, a run); walking a source folder skips it.
OUTPUT_MARKERS: tuple[str, ...] = ("workspace.json", ".clusterlens-output.json")


class UnreadableImageError(DataValidationError, OSError):
    """An image file that cannot be decoded; ``path`` and ``reason`` say why.

    Both a ``DataValidationError`` and an ``OSError``, so callers that skip
    undecodable files (``except OSError``) keep working.
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"Cannot read image {str(self.path)!r}: {reason}.")
        self.filename = self.path

    def __str__(self) -> str:  # OSError's would be "[Errno None] None: path"
        return f"Cannot read image {str(self.path)!r}: {self.reason}."

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Dask workers)
        return (type(self), (self.path, self.reason))


def describe_unreadable(
    bad: Sequence[tuple[str, str]], limit: int = _N_NAMED_SKIPS
) -> str:
    """``'a.png' (reason); 'b.png' (reason) and 3 more`` for a warning."""
    named = "; ".join(f"{str(p)!r} ({r})" for p, r in bad[:limit])
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return named + more


def too_many_unreadable(n_bad: int, n_total: int) -> bool:
    """The shared rule: more than :data:`MAX_UNREADABLE_FRACTION` unreadable."""
    return n_bad > MAX_UNREADABLE_FRACTION * n_total


@dataclass(frozen=True)
class ImageArray:
    """Images held in memory, with their optional labels and origin.

    Attributes
    ----------
    images : ndarray of shape (n_images, height, width) or (n_images, height, width, 3)
        uint8 pixels; 3-D for grayscale ("L"), 4-D for RGB.
    labels : ndarray of shape (n_images,) of int64 or None
        Class index of each image into ``class_names`` (``-1`` for an image of a
        folder that sits outside every class folder), or None when the source
        has no labels.
    class_names : list of str or None
        Name of each class index, or None when unknown.
    paths : list of str or None
        Source file of each image (folders only), else None.
    split : list of str or None
        Split of each image ("train", "test", "val", ...), or None when the
        source has no splits.
    skipped : list of str
        Files that could not be decoded and were left out (folders only).
    """

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64] | None = None
    class_names: list[str] | None = None
    paths: list[str] | None = None
    split: list[str] | None = None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])

    @property
    def mode(self) -> str:
        """``"L"`` for grayscale (3-D ``images``), ``"RGB"`` for colour (4-D)."""
        return "L" if self.images.ndim == 3 else "RGB"


@dataclass(frozen=True)
class ImageFolderListing:
    """The image files of a folder and the labels its sub-folders give them.

    Attributes
    ----------
    root : Path
        The folder that was listed.
    paths : list of Path
        Every image file, sorted by relative path.
    labels : ndarray of shape (n_files,) of int64 or None
        Index into ``class_names``; ``-1`` for files outside any class folder.
        None when no file is in a sub-folder.
    class_names : list of str or None
        Sorted class (immediate parent folder) names.
    split : list of str or None
        The split folder above the class folder ("train", "val", ...), or ``""``
        where there is none; None when no file has one.
    skipped : list of (Path, str)
        Entries named like images that are not read, with the reason: files
        that are not regular files (FIFOs, devices, sockets) and sub-folders
        that cannot be listed.
    output_dirs : list of Path
        Sub-folders left out because they are clusterlens outputs (they hold
        ``workspace.json`` or ``.clusterlens-output.json``).
    n_duplicates : int
        Files reached twice (through symbolic or hard links) and listed once.
    """

    root: Path
    paths: list[Path]
    labels: npt.NDArray[np.int64] | None
    class_names: list[str] | None
    split: list[str] | None
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    output_dirs: list[Path] = field(default_factory=list)
    n_duplicates: int = 0


# --------------------------------------------------------------------------- #
# Folders
# --------------------------------------------------------------------------- #
def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


def _is_within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives
        return False


def _identity(st: os.stat_result, path: str) -> tuple[Any, ...]:
    """What makes a file or folder the same one: device and inode, or real path.

    (Some file systems report inode 0 for everything; the path is used there.)
    """
    if st.st_ino:
        return (st.st_dev, st.st_ino)
    return ("path", os.path.realpath(path))


def _is_output_dir(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, m)) for m in OUTPUT_MARKERS)


def _walk_images(
    root: Path,
) -> tuple[list[tuple[str, ...]], list[tuple[Path, str]], list[Path], int]:
    """Relative parts of every image file under ``root``, each real file once.

    Symbolic links to folders inside the tree are not followed (the folder is
    walked itself); links to folders outside it are followed, each real folder
    once, so a link loop ends. Files reached twice (links) are listed once,
    under their own path when they have one. Hidden entries are ignored;
    clusterlens output folders below ``root`` are skipped.
    """
    real_root = os.path.realpath(root)
    visited: set[tuple[Any, ...]] = set()
    skipped: list[tuple[Path, str]] = []
    outputs: list[Path] = []
    # real file -> (is a link, relative parts); the first real path wins
    found: dict[tuple[Any, ...], tuple[bool, tuple[str, ...]]] = {}
    order: list[tuple[Any, ...]] = []
    broken: list[tuple[str, ...]] = []
    n_dup = 0

    def _onerror(e: OSError) -> None:
        skipped.append((Path(e.filename or root), f"cannot list it: {e.strerror}"))

    try:
        visited.add(_identity(os.stat(root), str(root)))
    except OSError as e:
        _onerror(e)
    for dirpath, dirnames, filenames in os.walk(
        root, followlinks=True, onerror=_onerror
    ):
        keep: list[str] = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if d.startswith("."):
                continue
            if os.path.islink(full) and _is_within(os.path.realpath(full), real_root):
                continue  # leads back into the tree: walked as itself
            try:
                st = os.stat(full)
            except OSError:
                continue
            ident = _identity(st, full)
            if ident in visited:
                continue
            if _is_output_dir(full):
                outputs.append(Path(full))
                continue
            visited.add(ident)
            keep.append(d)
        dirnames[:] = keep
        rel_dir = Path(dirpath).relative_to(root).parts
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            full = os.path.join(dirpath, name)
            rel = (*rel_dir, name)
            try:
                st = os.stat(full)
            except OSError:
                broken.append(rel)  # a dangling link: unreadable when decoded
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(
                    (Path(full), f"{_file_kind(st.st_mode)}, not a regular file")
                )
                continue
            ident = _identity(st, full)
            link = os.path.islink(full)
            prev = found.get(ident)
            if prev is None:
                found[ident] = (link, rel)
                order.append(ident)
                continue
            n_dup += 1
            if prev[0] and not link:
                found[ident] = (link, rel)
    rels = [found[k][1] for k in order] + broken
    return rels, skipped, outputs, n_dup


def list_image_folder(root: PathLike) -> ImageFolderListing:
    """List the images under ``root``; class sub-folders become labels.

    A file's label is its immediate parent folder (relative to ``root``); a
    folder named like a split (train, val, validation, test, ...) just above
    the class folder gives the file's split. Hidden files and folders are
    ignored, and so are sub-folders that are clusterlens outputs (holding
    ``workspace.json`` or ``.clusterlens-output.json``; ``root`` itself is
    always listed). Symbolic links to folders outside the tree are followed,
    links back into it are not, and each real file is listed once. Entries
    that are not regular files (a FIFO named ``x.jpg``) are not listed but
    reported in ``skipped``.

    Parameters
    ----------
    root : str or os.PathLike
        An existing folder.

    Returns
    -------
    listing : ImageFolderListing

    Raises
    ------
    DataValidationError
        If ``root`` is not a folder or holds no image file.
    """
    root = Path(os.fspath(root))
    if not root.is_dir():
        raise DataValidationError(
            f"Image folder {str(root)!r} does not exist or is not a folder. "
            "Pass a folder of images (class sub-folders become labels)."
        )
    rels, skipped, outputs, n_dup = _walk_images(root)
    if not rels:
        found = ""
        if skipped:
            found = f" {len(skipped)} entries were not readable files, e.g. " + (
                describe_unreadable([(str(p), r) for p, r in skipped], 1) + "."
            )
        if outputs:
            found += (
                f" {len(outputs)} clusterlens output folder(s) were skipped, e.g. "
                f"{str(outputs[0])!r}."
            )
        raise DataValidationError(
            f"Image folder {str(root)!r} holds no image files (looked for "
            f"{', '.join(IMAGE_SUFFIXES)} in it and its sub-folders).{found} "
            "Check the path, or extract the archive first."
        )
    rels.sort()
    paths = [root.joinpath(*r) for r in rels]
    parents = [r[-2] if len(r) >= 2 else None for r in rels]
    extra: dict[str, Any] = {
        "skipped": skipped,
        "output_dirs": outputs,
        "n_duplicates": n_dup,
    }
    if all(p is None for p in parents):
        return ImageFolderListing(root, paths, None, None, None, **extra)
    class_names = sorted({p for p in parents if p is not None})
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[p] if p is not None else -1 for p in parents], np.int64)
    splits = [
        r[-3] if len(r) >= 3 and r[-3].lower() in _SPLIT_NAMES else "" for r in rels
    ]
    split = splits if any(splits) else None
    return ImageFolderListing(root, paths, labels, class_names, split, **extra)


def _native_mode(pil_mode: str) -> str:
    """``"L"`` for single-channel PIL modes, ``"RGB"`` for the rest."""
    return (
        "L"
        if pil_mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "LA")
        else "RGB"
    )


def float_to_uint8(arr: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Float pixels to uint8: [0, 1] times 255, [0, 255] rounded.

    Raises
    ------
    ValueError
        If a value is NaN or infinite, or the values are in neither range
        (the message is the reason, to be prefixed with what was read).
    """
    if arr.size == 0:
        return np.zeros(arr.shape, np.uint8)
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise ValueError(
            f"pixels must be finite; found {n_nan} NaN and {n_inf} infinite values"
        )
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0:
        return np.round(arr * arr.dtype.type(255)).astype(np.uint8)
    if lo >= 0.0 and hi <= 255.0:
        return np.round(arr).astype(np.uint8)
    raise ValueError(
        f"float pixels in [{lo:g}, {hi:g}] fit neither [0, 1] nor [0, 255]; "
        "convert the image to 8 bits (or scale it to [0, 1]) first"
    )


def _to_8bit(img: Any) -> Any:
    """A PIL image in an 8-bit mode; 16-bit and float pixels scaled by mode."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img)
        if arr.ndim != 2:
            return img.convert("RGB")
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(
                f"integer pixels in [{arr.min()}, {arr.max()}] are outside the "
                "16-bit range [0, 65535]; convert the image to 8 bits first"
            )
        scaled = (arr.astype(np.uint32) * 255 + 32767) // 65535
        return Image.fromarray(scaled.astype(np.uint8))
    if mode == "F":
        return Image.fromarray(float_to_uint8(np.asarray(img, dtype=np.float64)))
    return img


# What a corrupt file can make Pillow's decoders raise.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)


def decode_image(
    path: PathLike,
    *,
    mode: str | None = None,
    min_size: tuple[int, int] | None = None,
) -> Any:
    """Decode one image file to a PIL image in mode "L" or "RGB".

    The one decoding function every stage uses (see the module docstring
    for its rules: regular files only, at most :data:`MAX_IMAGE_PIXELS`
    pixels, 16-bit and float pixels scaled by the image's mode).

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    mode : {"L", "RGB"} or None, default=None
        The mode to return; None keeps single-channel images grayscale and
        makes everything else RGB.
    min_size : (width, height), optional
        The caller needs no more than this: a JPEG is then decoded at the
        smallest of its DCT scales (1/2, 1/4, 1/8) that is still at least
        this large in both sides (Pillow's ``draft``; a 640 x 480 photo
        wanted at 64 x 64 decodes at 160 x 120, several times faster). Other
        formats decode whole. The image is not resized to it.

    Returns
    -------
    image : PIL.Image.Image
        Fully decoded, detached from the file.

    Raises
    ------
    UnreadableImageError
        If the file is missing, not a regular file, too large, corrupt, or
        holds pixels that cannot be made 8-bit.
    """
    return _decode(path, mode, min_size)[0]


def probe_image(path: PathLike) -> tuple[int, int]:
    """Check that an image file decodes, cheaply; its (width, height).

    The file goes through every check of :func:`decode_image`; a JPEG is
    decoded at its smallest DCT scale (1/8: every coefficient is still read,
    so truncated and corrupt data fail as in a full decode, at a fraction of
    the cost). The size is the one the header declares.

    Raises
    ------
    UnreadableImageError
        Where :func:`decode_image` would.
    """
    return _decode(path, None, (1, 1))[1]


def _decode(
    path: PathLike, mode: str | None, min_size: tuple[int, int] | None
) -> tuple[Any, tuple[int, int]]:
    """:func:`decode_image`, and the (width, height) its header declares."""
    from PIL import Image

    p = str(os.fspath(path))  # a plain str (not np.str_) for Pillow's messages
    try:
        st = os.stat(p)
    except OSError as e:
        raise UnreadableImageError(p, e.strerror or str(e)) from e
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableImageError(
            p, f"{_file_kind(st.st_mode)}, not a regular file; only files are read"
        )
    try:
        with Image.open(p) as img:
            n_pixels = img.width * img.height
            if n_pixels > MAX_IMAGE_PIXELS:
                raise UnreadableImageError(
                    p,
                    f"its header declares {img.width}x{img.height} = {n_pixels:,} "
                    f"pixels, over the limit of {MAX_IMAGE_PIXELS:,} pixels "
                    "(a decompression bomb, or an image to shrink first)",
                )
            header = img.size
            if min_size is not None and img.format == "JPEG":
                img.draft(
                    "L" if mode == "L" else "RGB",
                    (max(1, int(min_size[0])), max(1, int(min_size[1]))),
                )
            img.load()
            eight = _to_8bit(img)
            target = mode if mode is not None else _native_mode(img.mode)
            return eight.convert(target), header
    except UnreadableImageError:
        raise
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        declared = f"{int(found.group(1)):,}" if found else "too many"
        raise UnreadableImageError(
            p,
            f"its header declares {declared} pixels, over the limit of "
            f"{MAX_IMAGE_PIXELS:,} pixels (a decompression bomb, or an image "
            "to shrink first)",
        ) from e
    except _DECODE_ERRORS as e:
        raise UnreadableImageError(p, _decode_reason(e)) from e


def _decode_reason(e: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "Pillow cannot identify it as an image (corrupt, or not an image)"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e).strip() or type(e).__name__


def read_image(
    path: PathLike,
    *,
    mode: str | None = None,
    size: tuple[int, int] | None = None,
    min_size: tuple[int, int] | None = None,
) -> npt.NDArray[np.uint8]:
    """Decode one image file to a uint8 array (through :func:`decode_image`).

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    mode : {"L", "RGB"} or None, default=None
        "L" converts to grayscale (H, W), "RGB" to colour (H, W, 3); None keeps
        grayscale images grayscale and converts everything else to RGB.
    size : (height, width) or None, default=None
        Resize (bilinear, antialiased) to this size; None keeps the file's size.
    min_size : (height, width) or None, default=None
        No more pixels are needed than this: a JPEG decodes at its smallest
        DCT scale still at least this large (see :func:`decode_image`).

    Returns
    -------
    image : ndarray of shape (H, W) or (H, W, 3), uint8

    Raises
    ------
    UnreadableImageError
        If the file cannot be decoded (an ``OSError`` and a
        ``DataValidationError``); callers that skip corrupt files catch it.
    """
    from PIL import Image

    out = decode_image(
        path, mode=mode, min_size=None if min_size is None else min_size[::-1]
    )
    if size is not None:
        out = out.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8).copy()


def _check_size(size: Any, owner: str) -> tuple[int, int] | None:
    if size is None:
        return None
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
        raise InvalidParameterError(
            f"The 'size' parameter of {owner} must be a (height, width) pair of "
            f"ints >= 1 or None. Got {size!r} instead."
        )
    h = check_int(size[0], "size", owner, low=1)
    w = check_int(size[1], "size", owner, low=1)
    return (h, w)


def _load_folder(
    root: Path,
    *,
    size: tuple[int, int] | None,
    mode: str | None,
    n_jobs: int,
    verbose: int,
    split: str | None,
) -> ImageArray:
    listing = list_image_folder(root)
    if split is not None:
        listing = _select_split(listing, split)

    reasons: dict[Path, str] = {}

    def _one(p: Path) -> npt.NDArray[np.uint8] | None:
        try:
            return read_image(p, mode=mode, size=size)
        except UnreadableImageError as e:
            logger.debug("skipping %s: %s", p, e.reason)
            reasons[p] = e.reason
            return None

    bar = progress(total=len(listing.paths), desc="images", unit="img", verbose=verbose)
    arrays: list[npt.NDArray[np.uint8] | None] = []
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        for arr in pool.map(_one, listing.paths):
            arrays.append(arr)
            bar.update(1)
    bar.close()
    keep = np.array([a is not None for a in arrays], dtype=bool)
    bad = [(str(p), r) for p, r in listing.skipped] + [
        (str(p), reasons[p]) for p, k in zip(listing.paths, keep, strict=True) if not k
    ]
    skipped = [p for p, _ in bad]
    n_files = len(arrays) + len(listing.skipped)
    if listing.output_dirs:
        warnings.warn(
            f"Skipped {len(listing.output_dirs)} clusterlens output folder(s) under "
            f"{str(root)!r} (they hold {' or '.join(OUTPUT_MARKERS)}), e.g. "
            f"{str(listing.output_dirs[0])!r}.",
            DataQualityWarning,
            stacklevel=3,
        )
    if bad and too_many_unreadable(len(bad), n_files):
        raise DataValidationError(
            f"{len(bad)} of the {n_files} image files under {str(root)!r} could not "
            f"be decoded (more than half; first: {bad[0][0]!r}: {bad[0][1]}). "
            "Check that they are real images, or remove the broken ones."
        )
    if bad:
        warnings.warn(
            f"Skipped {len(bad)} of {n_files} image files under {str(root)!r} "
            f"that could not be decoded: {describe_unreadable(bad)}.",
            DataQualityWarning,
            stacklevel=3,
        )
    good = [a for a in arrays if a is not None]
    if (
        mode is None
        and any(a.ndim == 3 for a in good)
        and any(a.ndim == 2 for a in good)
    ):
        good = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in good]
    shapes = {a.shape[:2] for a in good}
    if len(shapes) > 1:
        example = sorted(shapes)[:3]
        raise DataValidationError(
            f"Images under {str(root)!r} have {len(shapes)} different sizes "
            f"(e.g. {', '.join(f'{h}x{w}' for h, w in example)} as height x width) "
            "and cannot be stacked. Pass size=(height, width) to resize them."
        )
    paths = [p for p, k in zip(listing.paths, keep, strict=True) if k]
    labels = listing.labels[keep] if listing.labels is not None else None
    kept_split = (
        [s for s, k in zip(listing.split, keep, strict=True) if k]
        if listing.split is not None
        else None
    )
    return ImageArray(
        images=np.stack(good),
        labels=labels,
        class_names=listing.class_names,
        paths=[str(p) for p in paths],
        split=kept_split,
        skipped=skipped,
    )


# --------------------------------------------------------------------------- #
# IDX (MNIST) and npz
# --------------------------------------------------------------------------- #
def read_idx(path: PathLike) -> npt.NDArray[Any]:
    """Read one IDX file (optionally gzipped), e.g. ``t10k-images-idx3-ubyte.gz``.

    Returns
    -------
    array : ndarray
        Of the shape and dtype the file's header declares (native byte order).

    Raises
    ------
    DataValidationError
        If the file is not a well-formed IDX file.
    """
    p = Path(os.fspath(path))
    opener: Any = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataValidationError(f"Cannot read IDX file {str(p)!r}: {e}.") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataValidationError(
            f"{str(p)!r} is not an IDX file: its first 4 bytes should be 0, 0, a "
            "type code and the number of dimensions (the MNIST file format)."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataValidationError(
            f"IDX file {str(p)!r} declares shape {tuple(int(d) for d in dims)} "
            f"({expected} bytes) but holds {len(raw)} bytes; it is truncated or "
            "corrupt. Download it again."
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(tuple(dims))
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _idx_split(name: str) -> str:
    stem = name.lower()
    if stem.startswith(("t10k", "test")):
        return "test"
    if stem.startswith("train"):
        return "train"
    return stem.split("-")[0]


def _is_idx_images(name: str) -> bool:
    n = name.lower()
    return "idx3" in n and not n.startswith(".")


def _load_idx(source: Path, split: str | None) -> ImageArray:
    files = [source] if source.is_file() else sorted(source.iterdir())
    image_files = [f for f in files if f.is_file() and _is_idx_images(f.name)]
    # train before test, as the canonical order
    image_files.sort(key=lambda f: (_idx_split(f.name) != "train", f.name))
    if split is not None:
        image_files = [f for f in image_files if _idx_split(f.name) == split]
        if not image_files:
            raise DataValidationError(
                f"IDX folder {str(source)!r} has no {split!r} images file. Pass "
                "split=None for every split, or one of the splits it holds."
            )
    images: list[npt.NDArray[Any]] = []
    labels: list[npt.NDArray[Any]] = []
    splits: list[str] = []
    for f in image_files:
        imgs = read_idx(f)
        if imgs.ndim != 3 or imgs.dtype != np.uint8:
            raise DataValidationError(
                f"IDX images file {str(f)!r} must hold uint8 of shape (n, height, "
                f"width); got {imgs.dtype} of shape {imgs.shape}."
            )
        label_name = f.name.replace("images", "labels").replace("idx3", "idx1")
        label_file = f.with_name(label_name)
        if label_file.is_file():
            lab = read_idx(label_file).astype(np.int64)
            if lab.shape != (imgs.shape[0],):
                raise DataValidationError(
                    f"IDX labels file {str(label_file)!r} has shape {lab.shape}; "
                    f"expected ({imgs.shape[0]},) to match {str(f)!r}."
                )
            labels.append(lab)
        images.append(imgs)
        splits.extend([_idx_split(f.name)] * imgs.shape[0])
    all_labels = np.concatenate(labels) if len(labels) == len(images) else None
    class_names = (
        [str(c) for c in range(int(all_labels.max()) + 1)]
        if all_labels is not None and all_labels.size
        else None
    )
    return ImageArray(
        images=np.concatenate(images),
        labels=all_labels,
        class_names=class_names,
        paths=None,
        split=splits if len(set(splits)) > 0 else None,
    )


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _load_npz(source: Path) -> ImageArray:
    try:
        with np.load(source, allow_pickle=False) as data:
            keys = list(data.keys())
            if "images" not in keys:
                raise DataValidationError(
                    f"{str(source)!r} has no 'images' array (keys: {', '.join(keys)}). "
                    "Save it with np.savez(path, images=..., labels=...)."
                )
            images = np.asarray(data["images"])
            labels = np.asarray(data["labels"]) if "labels" in keys else None
            names = (
                [str(c) for c in data["class_names"]] if "class_names" in keys else None
            )
    except READ_ERRORS as e:
        if isinstance(e, DataValidationError):
            raise
        reason = "the file is empty" if _empty(source) else describe_error(e, ".npz")
        raise DataValidationError(
            invalid_file(
                source,
                "images .npz file",
                reason,
                "write it with numpy.savez(path, images=..., labels=...)",
            )
        ) from e
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (
        images.ndim == 4 and images.shape[3] not in (3, 4)
    ):
        raise DataValidationError(
            f"'images' in {str(source)!r} must have shape (n, height, width) or "
            f"(n, height, width, 3); got {images.shape}."
        )
    if images.ndim == 4 and images.shape[3] == 4:
        images = images[..., :3]
    if images.dtype.kind == "f":
        try:
            images = float_to_uint8(images)
        except ValueError as e:
            raise DataValidationError(
                f"{str(source)!r}: its 'images' array cannot be read as 8-bit "
                f"pixels: {e}. "
                "Save finite values in [0, 1] or [0, 255] (e.g. with "
                "np.nan_to_num), or uint8."
            ) from e
    elif images.dtype.kind not in "iub":
        raise DataValidationError(
            f"'images' in {str(source)!r} must be uint8, integers in [0, 255] or "
            f"floats; got {images.dtype}."
        )
    if images.dtype != np.uint8:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise DataValidationError(
                f"'images' in {str(source)!r} must be uint8 (or values in [0, 255]); "
                f"got {images.dtype} in [{images.min()}, {images.max()}]."
            )
        images = images.astype(np.uint8)
    if labels is not None:
        if labels.shape != (images.shape[0],) or labels.dtype.kind not in "iu":
            raise DataValidationError(
                f"'labels' in {str(source)!r} must be integers of shape "
                f"({images.shape[0]},); got {labels.dtype} of shape {labels.shape}."
            )
        labels = labels.astype(np.int64)
    return ImageArray(
        images=np.ascontiguousarray(images), labels=labels, class_names=names
    )


def _convert_mode(images: npt.NDArray[np.uint8], mode: str) -> npt.NDArray[np.uint8]:
    if mode == "L" and images.ndim == 4:
        # ITU-R 601-2 luma, PIL's convert("L") formula
        w = np.array([299, 587, 114], dtype=np.uint32)
        lum = (images.astype(np.uint32) @ w + 500) // 1000
        return lum.astype(np.uint8)
    if mode == "RGB" and images.ndim == 3:
        return np.repeat(images[..., None], 3, axis=3)
    return images


def _resize_all(
    images: npt.NDArray[np.uint8], size: tuple[int, int]
) -> npt.NDArray[np.uint8]:
    if images.shape[1:3] == size:
        return images
    from PIL import Image

    out = np.empty((images.shape[0], *size, *images.shape[3:]), dtype=np.uint8)
    for i in range(images.shape[0]):  # one PIL call per image (not per pixel)
        img = Image.fromarray(images[i])
        out[i] = np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return out


# --------------------------------------------------------------------------- #
# Entry point
# --------------------------------------------------------------------------- #
def load_image_array(
    source: PathLike,
    *,
    size: tuple[int, int] | None = None,
    mode: str | None = None,
    split: str | None = None,
    n_jobs: int = 2,
    verbose: int = 0,
) -> ImageArray:
    """Read images from a folder, an MNIST-style IDX folder or an ``.npz`` into memory.

    Parameters
    ----------
    source : str or os.PathLike
        One of:

        - an image folder: every image file under it (recursively); a file's
          parent folder is its class, a split-named folder (train, val, test)
          above the class folder its split;
        - an IDX folder (files named like ``train-images-idx3-ubyte[.gz]`` and
          ``t10k-labels-idx1-ubyte[.gz]``) or a single IDX images file: every
          split it holds, train first, with labels where a labels file matches;
        - an ``.npz`` with ``images`` (n, H, W[, C]) uint8 and optional
          ``labels`` (n,) ints and ``class_names``.
    size : (height, width) or None, default=None
        Resize every image to this size. Images of a folder must all share one
        size when ``size`` is None.
    mode : {"L", "RGB"} or None, default=None
        "L" converts to grayscale, "RGB" to colour; None keeps the source's
        (a folder mixing grayscale and colour files becomes RGB).
    split : str or None, default=None
        Keep only the images of this split ("train", "test", "val", ...); None
        keeps them all. The ``split`` attribute of the result tells each image's.
    n_jobs : int, default=2
        Threads decoding the files of a folder.
    verbose : int, default=0
        1 shows a progress bar while a folder is decoded.

    Returns
    -------
    data : ImageArray
        ``images`` is (n, H, W) uint8 for grayscale or (n, H, W, 3) for RGB.

    Raises
    ------
    DataValidationError
        If ``source`` does not exist, is empty, is of an unknown kind, holds no
        decodable image, or a folder's images differ in size and ``size`` is None.
    InvalidParameterError
        If ``size`` or ``mode`` is malformed.

    Warns
    -----
    DataQualityWarning
        When files of a folder cannot be decoded; they are skipped and counted
        (``data.skipped`` lists them).

    Examples
    --------
    >>> from clusterlens.io import load_image_array
    >>> data = load_image_array("../shared/data/mnist", split="test")  # doctest: +SKIP
    >>> data.images.shape, data.labels[:3]  # doctest: +SKIP
    ((10000, 28, 28), array([7, 2, 1]))
    """
    owner = "load_image_array"
    size_ = _check_size(size, owner)
    if mode is not None:
        mode = check_options(mode, "mode", owner, _MODES)
    if split is not None and not isinstance(split, str):
        raise InvalidParameterError(
            f"The 'split' parameter of {owner} must be a str or None. "
            f"Got {split!r} instead."
        )
    n_jobs = check_int(n_jobs, "n_jobs", owner, low=1)
    src = Path(os.fspath(source))
    if not src.exists():
        raise DataValidationError(
            f"Image source {str(src)!r} does not exist. Pass an image folder, an "
            "MNIST-style IDX folder or an .npz with 'images'."
        )
    if src.is_dir() and any(
        _is_idx_images(f.name) for f in src.iterdir() if f.is_file()
    ):
        data = _load_idx(src, split)
    elif src.is_file() and _is_idx_images(src.name):
        data = _load_idx(src, split)
    elif src.is_file() and src.suffix.lower() == ".npz":
        data = _load_npz(src)
    elif src.is_dir():
        data = _load_folder(
            src, size=size_, mode=mode, n_jobs=n_jobs, verbose=verbose, split=split
        )
        size_ = None  # already resized while decoding
    else:
        raise DataValidationError(
            f"Cannot read images from {str(src)!r}: expected an image folder, an "
            "MNIST-style IDX folder or file (*-idx3-ubyte[.gz]) or an .npz with "
            "'images'."
        )
    images = data.images
    if mode is not None:
        images = _convert_mode(images, mode)
    if size_ is not None:
        images = _resize_all(images, size_)
    if images is data.images:
        return data
    return ImageArray(
        images=images,
        labels=data.labels,
        class_names=data.class_names,
        paths=data.paths,
        split=data.split,
        skipped=data.skipped,
    )


def _select_split(listing: ImageFolderListing, split: str) -> ImageFolderListing:
    names = listing.split or []
    keep = np.array([s == split for s in names], dtype=bool)
    if not keep.any():
        have = sorted({s for s in names if s})
        raise DataValidationError(
            f"Image folder {str(listing.root)!r} has no {split!r} split (splits "
            f"found: {', '.join(have) if have else 'none'}). Pass split=None for "
            "all images."
        )
    idx = np.flatnonzero(keep)
    return ImageFolderListing(
        root=listing.root,
        paths=[listing.paths[i] for i in idx],
        labels=listing.labels[idx] if listing.labels is not None else None,
        class_names=listing.class_names,
        split=[names[i] for i in idx],
        skipped=listing.skipped,
        output_dirs=listing.output_dirs,
        n_duplicates=listing.n_duplicates,
    )
