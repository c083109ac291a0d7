"""Search by example in the review app: the workspace's saved index, loaded once.

Both kinds of query go through :func:`clusterlens.pipelines.curate.similar_items`,
the code behind ``clusterlens similar``: an item of the workspace, or an
uploaded image file, which is written to a private temporary file and decoded
by the project's one image reader (regular file, at most ``MAX_IMAGE_PIXELS``
pixels, 8-bit) before the workspace's CNN embeds it with the settings that
made the workspace's embeddings.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import ClusterlensError, DataValidationError
from clusterlens.io._workspace import Workspace

__all__ = ["MAX_UPLOAD_BYTES", "SearchUnavailable", "Searcher"]

logger = logging.getLogger(__name__)

#: Largest image file the app takes as a query (16 MiB: a 24-megapixel JPEG
#: is well under it; anything larger is no photo of a collection's item).
MAX_UPLOAD_BYTES = 16 * 1024 * 1024


class SearchUnavailable(DataValidationError):
    """The workspace cannot be searched (no index, no embeddings, no network)."""


class Searcher:
    """The workspace's similarity index and image embedder, loaded on first use.

    Parameters
    ----------
    ws : Workspace
    embed : callable, optional
        Embeds one decoded image (H, W, 3) uint8 to a (1, d) float32 row;
        default: the workspace's CNN (``WS/features/cnn/run.json``).
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        embed: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.float32]] | None = None,
    ) -> None:
        self.ws = ws
        self._embed = embed
        self._index: Any = None
        self._lock = threading.Lock()

    def unavailable(self) -> str | None:
        """Why the workspace cannot be searched, or None when it can."""
        if not (self.ws.root / "index" / "index.json").is_file():
            return (
                f"This workspace has no search index: make one with `clusterlens "
                f"index {self.ws.root}` (or `clusterlens explore`), then reopen "
                "the review."
            )
        return None

    def _loaded(self) -> Any:
        why = self.unavailable()
        if why is not None:
            raise SearchUnavailable(why)
        with self._lock:
            if self._index is None:
                from clusterlens.curate import SimilarityIndex
                from clusterlens.pipelines.curate import embeddings

                try:
                    self._index = SimilarityIndex.load(
                        self.ws.root / "index", features=embeddings(self.ws)
                    )
                except DataValidationError as e:
                    raise SearchUnavailable(str(e)) from e
            return self._index

    def load(self) -> None:
        """Load the index now when there is one (a server warming up)."""
        if self.unavailable() is None:
            self._loaded()

    def _embedder(self) -> Any:
        with self._lock:
            if self._embed is None:
                from clusterlens.pipelines.curate import workspace_embedder

                try:
                    self._embed = workspace_embedder(self.ws)
                except ClusterlensError as e:  # no CNN run, no torch
                    raise SearchUnavailable(
                        f"Search by image needs the network that made the "
                        f"workspace's embeddings: {e}"
                    ) from e
            return self._embed

    def by_item(self, item: int, k: int) -> list[dict[str, Any]]:
        """The query item first (similarity 1), then its ``k`` most similar items."""
        from clusterlens.pipelines.curate import similar_items

        res = similar_items(self.ws, item=item, k=k, index=self._loaded())
        return [
            {"index": int(item), "similarity": 1.0, "query": True},
            *(
                {"index": r["index"], "similarity": r["similarity"]}
                for r in res["results"]
            ),
        ]

    def by_image(self, data: bytes, k: int) -> list[dict[str, Any]]:
        """The ``k`` items most similar to an image file's bytes.

        Raises
        ------
        DataValidationError
            If the bytes are empty, over :data:`MAX_UPLOAD_BYTES`, or not an
            image the project's reader decodes.
        """
        from clusterlens.io._images import UnreadableImageError, read_image
        from clusterlens.pipelines.curate import similar_items

        if not data:
            raise DataValidationError(
                "The upload is empty: send an image file (JPEG, PNG, WebP...)."
            )
        if len(data) > MAX_UPLOAD_BYTES:
            raise DataValidationError(
                f"The upload is {len(data):,} bytes; the review app takes image "
                f"files of at most {MAX_UPLOAD_BYTES:,} bytes. Shrink it first."
            )
        index = self._loaded()
        embed = self._embedder()
        side = getattr(embed, "image_size", None)
        fd, tmp = tempfile.mkstemp(prefix="clusterlens-query-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                pixels = read_image(
                    tmp, mode="RGB", min_size=None if side is None else (side, side)
                )
            except UnreadableImageError as e:
                raise DataValidationError(
                    f"The upload is not an image clusterlens can read: {e.reason}."
                ) from e
        finally:
            os.unlink(tmp)
        res = similar_items(self.ws, pixels=pixels, k=k, embed=embed, index=index)
        return [
            {"index": r["index"], "similarity": r["similarity"]} for r in res["results"]
        ]
