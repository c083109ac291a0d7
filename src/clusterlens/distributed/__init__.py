"""Scale-out backends: the same fits with the data sharded on a Dask cluster."""

from __future__ import annotations

from clusterlens.distributed._dask import dask_client, dask_kmeans

__all__ = ["dask_client", "dask_kmeans"]
