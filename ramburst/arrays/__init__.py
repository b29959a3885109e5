"""Chunked N-d arrays on the RAM cluster: zarr v3 on librados (RadosStore), on radosgw (S3),
and collective helpers over MPI (ramburst.arrays.mpi). Needs the `arrays` extra.

    import ramburst.arrays
    root = ramburst.arrays.open("default", mode="a")          # a zarr.Group
    a = root.create_array("t", shape=(100, 100), chunks=(10, 10), dtype="f4")
"""
from __future__ import annotations

import os
from pathlib import Path

try:  # imported before the function `store` below is defined, so that the name stays the function
    from .store import RadosStore, StoreFullError, ValueTooLargeError
except ModuleNotFoundError as e:  # without the arrays extra the `ramburst` CLI must still start
    if (e.name or "").split(".")[0] not in ("zarr", "numpy", "numcodecs"):
        raise
    _MISSING = e.name

__all__ = ["RadosStore", "StoreFullError", "ValueTooLargeError", "open", "s3_store", "store"]

MODES = ("r", "r+", "a", "w", "w-")


def __getattr__(name: str):
    if name in ("RadosStore", "StoreFullError", "ValueTooLargeError"):
        raise ImportError(f"ramburst.arrays needs {_MISSING}: pip install 'ramburst[arrays]'")
    raise AttributeError(name)


def store(name: str | None = None, state_dir: str | Path | None = None, namespace: str = "arrays",
          read_only: bool = False) -> RadosStore:
    """The RadosStore of `namespace` on an instance that is up (e.g. made with `ramburst up`):
    by name or state folder; with neither, the one `eval "$(ramburst env)"` selected
    ($RAMBURST_STATE_DIR), else the instance named "default"."""
    from ..api import attach

    if name is None and state_dir is None:
        state_dir = os.environ.get("RAMBURST_STATE_DIR")
    return attach(name or "default", state_dir).zarr_store(namespace=namespace, read_only=read_only)


def open(name: str | None = None, state_dir: str | Path | None = None, namespace: str = "arrays",  # noqa: A001
         mode: str = "a"):
    """The root zarr group of `namespace` on an instance that is up; mode as zarr's
    (r: read only, r+: must exist, a: create if missing, w: replace, w-: fail if present)."""
    import zarr

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return zarr.open_group(store(name, state_dir, namespace, read_only=(mode == "r")), mode=mode)


def s3_store(cluster, bucket: str = "arrays", prefix: str = "", read_only: bool = False, create: bool = True):
    """A zarr store on the instance's radosgw (zarr's ObjectStore over obstore), with the
    instance's own credentials; makes the bucket unless `create` is false."""
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    from ..errors import RamburstError

    if cluster.s3 is None:
        raise RamburstError(f"instance {cluster.name!r} has no s3 service (ramburst up --service s3)")
    if create and not read_only:
        client = cluster.s3_client()
        try:
            client.head_bucket(Bucket=bucket)
        except client.exceptions.ClientError:
            client.create_bucket(Bucket=bucket)
    s3 = S3Store(bucket, prefix=prefix or None, endpoint=cluster.s3["endpoint"],
                 access_key_id=cluster.s3["access_key"], secret_access_key=cluster.s3["secret_key"],
                 region="us-east-1", virtual_hosted_style_request=False,
                 client_options={"allow_http": True})
    return ObjectStore(s3, read_only=read_only)
