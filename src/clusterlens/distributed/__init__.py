"""Scale-out backends: the same fits with the data sharded on a Dask cluster.

Importing this package registers the ``"dask"`` k-means backend
(:class:`DaskBackend`, with :func:`clusterlens.cluster.register_backend`) and
the ``"dask"`` kNN search (:func:`dask_knn_search`).
"""

from __future__ import annotations

from clusterlens.distributed._client import dask_client
from clusterlens.distributed._kmeans import DaskBackend, dask_kmeans
from clusterlens.distributed._knn import dask_knn_search

__all__ = ["DaskBackend", "dask_client", "dask_kmeans", "dask_knn_search"]
