"""Search by example: the items most similar to a vector, from a saved index."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.features._knn import l2_normalize
from clusterlens.utils._fs import atomic_write_text
from clusterlens.utils.validation import check_random_state

__all__ = ["EXACT_INDEX_MAX", "SimilarityIndex"]

#: Up to this many items the index is exact (a flat inner-product scan over
#: the workspace's embeddings, nothing extra stored); above it an IVF index.
EXACT_INDEX_MAX = 200_000
_SCHEMA = "clusterlens.similarity-index/1"


@dataclass
class SimilarityIndex:
    """Cosine nearest-neighbour search over L2-normalised embeddings.

    Build with :meth:`build`, save with :meth:`save` (``index.json``, plus
    ``index.faiss`` for IVF: faiss's own format, never a pickle), load with
    :meth:`load`. ``recall`` is the share of the true 10 nearest neighbours
    that the index returns, measured on up to 1,000 items when it is built
    (1.0 for the exact index).
    """

    kind: str
    n_items: int
    dim: int
    recall: float
    n_probe: int = 0
    _index: Any = None

    @classmethod
    def build(
        cls,
        Z: npt.ArrayLike,
        *,
        exact_max: int = EXACT_INDEX_MAX,
        random_state: int | np.random.Generator | None = 0,
    ) -> SimilarityIndex:
        """Index the rows of ``Z`` (normalised here)."""
        import faiss

        E = l2_normalize(Z)
        n, d = E.shape
        if n < 1:
            raise DataValidationError("Cannot build a search index over no items.")
        index: Any
        if n <= exact_max:
            index = faiss.IndexFlatIP(d)
            index.add(E)
            return cls("flat", n, d, 1.0, 0, index)
        rng = check_random_state(random_state)
        nlist = int(min(65_536, max(64, round(4 * np.sqrt(n)))))
        train = E[np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False))]
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(rng.integers(2**31 - 1))
        index.train(train)
        index.add(E)
        probe = 16
        index.nprobe = probe
        q = E[np.sort(rng.choice(n, size=min(n, 1000), replace=False))]
        _, truth = faiss.knn(q, E, 10, metric=faiss.METRIC_INNER_PRODUCT)
        _, got = index.search(q, 10)
        hits = sum(len(set(a) & set(b)) for a, b in zip(truth, got, strict=True))
        return cls("ivf", n, d, float(hits / truth.size), probe, index)

    def search(
        self, queries: npt.ArrayLike, k: int = 10
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ``k`` most similar items of each query row: (indices, cosine)."""
        Q = l2_normalize(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if Q.shape[1] != self.dim:
            raise DataValidationError(
                f"Query vectors have {Q.shape[1]} features; the index holds "
                f"{self.dim}-d embeddings."
            )
        sims, ids = self._index.search(Q, int(min(k, self.n_items)))
        return ids.astype(np.int64), sims.astype(np.float32)

    def save(self, folder: str | os.PathLike[str], *, features: str) -> None:
        """Write ``index.json`` (and ``index.faiss`` for IVF) into ``folder``.

        ``features`` names the embeddings file the flat index is rebuilt from.
        """
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.kind == "ivf":
            faiss.write_index(self._index, str(folder / "index.faiss"))
        meta = {
            "schema": _SCHEMA,
            "kind": self.kind,
            "n_items": self.n_items,
            "dim": self.dim,
            "recall_at_10": self.recall,
            "n_probe": self.n_probe,
            "features": features,
            "metric": "cosine (inner product of L2-normalised rows)",
        }
        atomic_write_text(folder / "index.json", json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(
        cls, folder: str | os.PathLike[str], features: npt.ArrayLike | None = None
    ) -> SimilarityIndex:
        """Read an index written by :meth:`save` (the flat kind needs ``features``)."""
        import faiss

        folder = Path(folder)
        try:
            meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or meta.get("schema") != _SCHEMA:
                raise ValueError("not a clusterlens similarity index")
            kind, n, d = str(meta["kind"]), int(meta["n_items"]), int(meta["dim"])
        except FileNotFoundError as e:
            raise DataValidationError(
                f"{folder} holds no search index (index.json). Build it with: "
                "clusterlens explore WS (or clusterlens similar WS --build)."
            ) from e
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataValidationError(
                f"{folder / 'index.json'} is not a valid search index ({e}); "
                "rebuild it with: clusterlens explore WS."
            ) from e
        index: Any
        if kind == "ivf":
            try:
                index = faiss.read_index(str(folder / "index.faiss"))
            except RuntimeError as e:
                raise DataValidationError(
                    f"{folder / 'index.faiss'} cannot be read ({e}); rebuild it "
                    "with: clusterlens explore WS."
                ) from e
            index.nprobe = int(meta.get("n_probe", 16))
        else:
            if features is None:
                raise DataValidationError("A flat index needs the embeddings.")
            E = l2_normalize(features)
            if E.shape != (n, d):
                raise DataValidationError(
                    f"The search index in {folder} was built over {n} x {d} "
                    f"embeddings, but the workspace now has {E.shape[0]} x "
                    f"{E.shape[1]}; rerun clusterlens explore WS."
                )
            index = faiss.IndexFlatIP(d)
            index.add(E)
        if index.ntotal != n or index.d != d:
            raise DataValidationError(
                f"{folder / 'index.faiss'} holds {index.ntotal} x {index.d}, not the "
                f"{n} x {d} its index.json says; rebuild it."
            )
        return cls(
            kind,
            n,
            d,
            float(meta.get("recall_at_10", 1.0)),
            int(meta.get("n_probe", 0)),
            index,
        )
