"""A documented, seeded generator of SIFT-like uint8 descriptors (128-d).

Real Oxford5k SIFT (16.3 M descriptors) is not available offline here, so the
full-size vocabulary benchmark runs on descriptors made to look like SIFT:

1. *Prototypes*: the 103,311 real OpenCV SIFT descriptors of the COCO-128
   photos in ``../shared/data/sift/coco128_sift_opencv.npz``.
2. Each generated descriptor mixes two random prototypes,
   ``v = (1 - a) p_i + a p_j`` with ``a ~ U(0, 0.5)``, so the data fills the
   space between real descriptors instead of forming 103 k tight clumps,
   then adds Gaussian noise of a per-descriptor scale ``s ~ U(4, 16)``
   (on the 0-255 scale).
3. SIFT's own normalisation: negative values to 0, unit L2 norm, clip at
   0.2, renormalise, times 512, round, clip to 0-255, uint8 (OpenCV's
   ``SIFT_DESCR_MAG_THR = 0.2`` and ``SIFT_INT_DESCR_FCTR = 512``).

The same ``seed`` and ``n`` give the same file, written chunk by chunk into a
memory-mapped ``.npy`` (never held whole in memory).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

PROTOTYPES = Path(__file__).resolve().parents[1] / (
    "../shared/data/sift/coco128_sift_opencv.npz"
)


def load_prototypes(path: Path = PROTOTYPES) -> np.ndarray:
    with np.load(path) as z:
        return np.asarray(z["descriptors"], dtype=np.float32)


def sift_like(
    n: int, seed: int = 0, prototypes: np.ndarray | None = None, start: int = 0
) -> np.ndarray:
    """Rows ``start .. start + n`` of the stream for ``seed`` (uint8, (n, 128)).

    Each block of 2**20 rows has its own generator, seeded by (seed, block),
    so any block can be produced alone and the result does not depend on the
    chunking.
    """
    P = load_prototypes() if prototypes is None else prototypes
    block = 1 << 20
    out = np.empty((n, P.shape[1]), np.uint8)
    pos = start
    while pos < start + n:
        b = pos // block
        rng = np.random.default_rng([seed, b])
        m = block  # generate the whole block, keep the part asked for
        i = rng.integers(0, P.shape[0], m)
        j = rng.integers(0, P.shape[0], m)
        a = rng.uniform(0.0, 0.5, (m, 1)).astype(np.float32)
        v = (1 - a) * P[i] + a * P[j]
        s = rng.uniform(4.0, 16.0, (m, 1)).astype(np.float32)
        v += s * rng.standard_normal((m, P.shape[1]), dtype=np.float32)
        np.maximum(v, 0, out=v)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)
        np.minimum(v, 0.2, out=v)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)
        v = np.clip(np.rint(v * 512), 0, 255).astype(np.uint8)
        lo = pos - b * block
        hi = min(block, start + n - b * block)
        out[pos - start : pos - start + hi - lo] = v[lo:hi]
        pos += hi - lo
    return out


def write_sift_like(path: Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` SIFT-like descriptors to a ``.npy`` file, a block at a time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 128))
    P = load_prototypes()
    step = 1 << 20
    for a in range(0, n, step):
        mm[a : a + step] = sift_like(min(step, n - a), seed, P, start=a)
    mm.flush()
    del mm
    tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("-n", type=int, default=16_334_970)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t = time.perf_counter()
    write_sift_like(args.out, args.n, args.seed)
    dt = time.perf_counter() - t
    print(f"wrote {args.n:,} x 128 uint8 to {args.out} in {dt:.1f} s")


if __name__ == "__main__":
    main()
