"""Planted curation sets: base photos plus known copies, degradations, strangers.

``build_planted`` writes one flat folder of JPEGs with opaque, shuffled names
(``img_000123.jpg``) and a ``truth.json`` that says what each file is:

- ``base``: an untouched photo of the base set;
- ``exact``: a byte copy of a base photo (``source``);
- ``near``: an augmented copy of a base photo (``source``, ``aug``: a resized
  crop, a JPEG recompression, a horizontal flip or a brightness change);
- ``blurred``, ``darkened``, ``brightened``, ``flattened``: a base photo
  degraded in place, the original left out of the set (so a degraded photo
  has no clean twin and is no duplicate);
- ``ood``: an image from another collection (CamVid street photos, or MNIST
  digits), resized to the base set's typical size.

Each planted kind uses its own base photos (no photo is copied twice or both
copied and degraded). Everything is drawn from one seeded generator.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: The issue's counts for a base set of about 10,000 photos (CIFAR-10 test).
COUNTS: dict[str, int] = {
    "exact": 300,
    "near": 500,
    "blurred": 100,
    "darkened": 100,
    "brightened": 100,
    "flattened": 100,
    "ood": 200,
}
#: The quality kinds and the view each one belongs to.
QUALITY_VIEW = {
    "blurred": "blurry",
    "darkened": "dark",
    "brightened": "bright",
    "flattened": "low_information",
}
AUGMENTATIONS = ("crop", "jpeg", "flip", "brightness")


def default_scale(n_base: int) -> float:
    """The issue's counts at 2,000 base photos and above, proportionally fewer below."""
    return float(min(1.0, n_base / 2000.0))


# --------------------------------------------------------------------------- #
# base and out-of-distribution images
# --------------------------------------------------------------------------- #
def cifar_test_files(n: int | None, seed: int) -> list[tuple[str, bytes]]:
    """``n`` CIFAR-10 test JPEGs (all 10,000 when None), a seeded choice, as bytes."""
    with tarfile.open(DATA / "cifar10" / "cifar10-jpg.tar.gz") as tf:
        members = sorted(
            (m for m in tf.getmembers() if m.isfile() and m.name.startswith("test/")),
            key=lambda m: m.name,
        )
        if n is not None and n < len(members):
            rng = np.random.default_rng(seed)
            pick = np.sort(rng.choice(len(members), size=n, replace=False))
            members = [members[i] for i in pick]
        return [(m.name, tf.extractfile(m).read()) for m in members]  # type: ignore[union-attr]


def hymenoptera_files() -> list[tuple[str, bytes]]:
    """The 398 ant/bee photos (train and val), as bytes."""
    with tarfile.open(DATA / "hymenoptera" / "hymenoptera_data.tar") as tf:
        members = sorted(
            (
                m
                for m in tf.getmembers()
                if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg"))
            ),
            key=lambda m: m.name,
        )
        return [(m.name, tf.extractfile(m).read()) for m in members]  # type: ignore[union-attr]


def camvid_images(n: int, seed: int) -> list[Image.Image]:
    """``n`` CamVid street photos (480x360), a seeded choice over all splits."""
    with tarfile.open(DATA / "camvid" / "camvid.tar") as tf:
        members = sorted(
            (
                m
                for m in tf.getmembers()
                if m.isfile() and "/images/" in m.name and m.name.endswith(".jpg")
            ),
            key=lambda m: m.name,
        )
        rng = np.random.default_rng(seed)
        pick = np.sort(
            rng.choice(len(members), size=min(n, len(members)), replace=False)
        )
        out = []
        for i in pick:
            raw = tf.extractfile(members[i]).read()  # type: ignore[union-attr]
            out.append(Image.open(io.BytesIO(raw)).convert("RGB"))
        return out


def _idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist_images(n: int, seed: int) -> list[Image.Image]:
    """``n`` MNIST test digits (28x28, grey, as RGB), a seeded choice."""
    X = _idx(DATA / "mnist" / "t10k-images-idx3-ubyte.gz")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(X.shape[0], size=n, replace=False))
    return [Image.fromarray(X[i]).convert("RGB") for i in pick]


# --------------------------------------------------------------------------- #
# planting
# --------------------------------------------------------------------------- #
def _jpeg(img: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _augment(img: Image.Image, aug: str, rng: np.random.Generator) -> bytes:
    """A near copy: one augmentation, then saved as JPEG."""
    w, h = img.size
    if aug == "crop":  # keep 80-90 % of each side, resized back to the full size
        f = rng.uniform(0.8, 0.9)
        cw, ch = max(1, round(w * f)), max(1, round(h * f))
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        out = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BICUBIC)
        return _jpeg(out)
    if aug == "jpeg":  # recompression at a low quality
        return _jpeg(img, quality=int(rng.integers(25, 45)))
    if aug == "flip":
        return _jpeg(img.transpose(Image.FLIP_LEFT_RIGHT))
    # brightness x 0.7-0.85 or x 1.15-1.3
    f = rng.uniform(0.7, 0.85) if rng.random() < 0.5 else rng.uniform(1.15, 1.3)
    a = np.asarray(img, dtype=np.float32) * f
    return _jpeg(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))


def blur_sigma(size: tuple[int, int], rng: np.random.Generator) -> float:
    """Gaussian sigma: 1-1.5 x max(1.5 px, longer side / 170).

    32-px CIFAR images get 1.5-2.25 px, 500-px photos 2.9-4.4 px: clearly blurry
    to a person at the image's own size in both.
    """
    return float(rng.uniform(1.0, 1.5) * max(1.5, max(size) / 170.0))


def _degrade(
    img: Image.Image, kind: str, rng: np.random.Generator
) -> tuple[bytes, dict[str, Any]]:
    a = np.asarray(img, dtype=np.float32)
    if kind == "blurred":
        s = blur_sigma(img.size, rng)
        return _jpeg(img.filter(ImageFilter.GaussianBlur(s))), {"sigma": round(s, 3)}
    if kind in ("darkened", "brightened"):
        # the same factor both ways: darkened x f, brightened faded towards white
        # keeping f of the distance to it (f in 0.15-0.35)
        f = float(rng.uniform(0.15, 0.35))
        out = a * f if kind == "darkened" else 255.0 - (255.0 - a) * f
        img2 = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
        return _jpeg(img2), {"factor": round(f, 3)}
    # flattened: half a heavy blur + a contrast cut to 10 %, half a near-uniform
    # image (the photo's mean colour plus faint noise)
    mean = a.reshape(-1, 3).mean(axis=0)
    if rng.random() < 0.5:
        s = max(img.size) / 8.0
        b = np.asarray(img.filter(ImageFilter.GaussianBlur(s)), dtype=np.float32)
        out = mean + 0.1 * (b - mean)
        how = "blur+contrast"
    else:
        out = mean + rng.normal(0.0, 3.0, size=a.shape)
        how = "uniform+noise"
    img2 = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    return _jpeg(img2), {"how": how}


def _typical_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    w = int(np.median([s[0] for s in sizes]))
    h = int(np.median([s[1] for s in sizes]))
    return w, h


def build_planted(
    base: list[tuple[str, bytes]],
    out: Path,
    *,
    scale: float | None = None,
    ood: str = "camvid",
    seed: int = 0,
) -> dict[str, Any]:
    """Write the set into ``out/images`` and ``out/truth.json``; return the truth.

    ``base``: (name, JPEG bytes) of the base photos. Counts: :data:`COUNTS`
    times ``scale`` (default :func:`default_scale`), rounded, at least 1.
    """
    rng = np.random.default_rng(seed)
    n_base = len(base)
    scale = default_scale(n_base) if scale is None else float(scale)
    counts = {k: max(1, round(v * scale)) for k, v in COUNTS.items()}
    used = sum(v for k, v in counts.items() if k != "ood")
    if used > n_base:
        raise ValueError(
            f"{used} base photos needed for the plants at scale {scale:g}, only "
            f"{n_base} given; lower --scale."
        )
    imgs_dir = out / "images"
    imgs_dir.mkdir(parents=True, exist_ok=True)
    perm = rng.permutation(n_base)
    pos = 0
    role: dict[int, str] = {}
    for kind in ("exact", "near", *QUALITY_VIEW):
        for i in perm[pos : pos + counts[kind]]:
            role[int(i)] = kind
        pos += counts[kind]

    # entries: (bytes, record); names are given after a shuffle
    entries: list[tuple[bytes, dict[str, Any]]] = []
    base_entry: dict[int, int] = {}
    sizes: list[tuple[int, int]] = []
    for i, (name, raw) in enumerate(base):
        kind = role.get(i, "base")
        img = Image.open(io.BytesIO(raw)).convert("RGB")
        sizes.append(img.size)
        if kind in QUALITY_VIEW:
            data, extra = _degrade(img, kind, rng)
            entries.append((data, {"kind": kind, "origin": name, **extra}))
            continue
        base_entry[i] = len(entries)
        entries.append((raw, {"kind": "base", "origin": name}))
        if kind == "exact":
            entries.append((raw, {"kind": "exact", "source_entry": len(entries) - 1}))
        elif kind == "near":
            aug = AUGMENTATIONS[int(rng.integers(len(AUGMENTATIONS)))]
            entries.append(
                (
                    _augment(img, aug, rng),
                    {"kind": "near", "aug": aug, "source_entry": len(entries) - 1},
                )
            )
    w, h = _typical_size(sizes)
    strangers = (
        camvid_images(counts["ood"], seed)
        if ood == "camvid"
        else mnist_images(counts["ood"], seed)
    )
    for img in strangers:
        entries.append(
            (_jpeg(img.resize((w, h), Image.BICUBIC)), {"kind": "ood", "origin": ood})
        )

    order = rng.permutation(len(entries))
    names = [""] * len(entries)
    for new, old in enumerate(order):
        names[old] = f"img_{new:06d}.jpg"
    items: dict[str, dict[str, Any]] = {}
    for e, (data, rec) in enumerate(entries):
        rec = dict(rec)
        if "source_entry" in rec:
            rec["source"] = names[rec.pop("source_entry")]
        (imgs_dir / names[e]).write_bytes(data)
        items[names[e]] = rec
    truth = {
        "n_base": n_base,
        "scale": scale,
        "counts": counts,
        "ood": ood,
        "seed": seed,
        "typical_size": [w, h],
        "n_items": len(items),
        "items": dict(sorted(items.items())),
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def clear(out: Path) -> None:
    """Remove a planted set folder."""
    shutil.rmtree(out, ignore_errors=True)
