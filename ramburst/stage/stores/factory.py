"""From a store spec (fs:PATH, pool:PREFIX, s3://BUCKET/PREFIX) to the store object."""
from __future__ import annotations

from ...errors import UsageError
from .fs import Tree
from .pool import Pool
from .s3 import S3


def cluster_store(cluster, spec: str):
    """fs:PATH (in the instance's mount), pool:PREFIX or s3://BUCKET/PREFIX."""
    if spec.startswith("fs:"):
        if cluster.mount is None:
            raise UsageError(f"{spec}: instance {cluster.name!r} has no fs service mounted here")
        # In the RAM cluster a per-file fsync buys nothing a crash would keep (the data is in RAM
        # either way) and cost 3x in files/s; one syncfs at the end, then the verify pass.
        return Tree(cluster.mount / spec[3:].lstrip("/"), spec, durable=False)
    if spec.startswith("pool:"):
        if not cluster.pool:
            raise UsageError(f"{spec}: instance {cluster.name!r} has no pool")
        return Pool(cluster, spec[5:])
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        if not bucket:
            raise UsageError(f"{spec}: no bucket named (s3://BUCKET/PREFIX)")
        if cluster.s3 is None:
            raise UsageError(f"{spec}: instance {cluster.name!r} has no s3 service")
        return S3(cluster, bucket, prefix)
    raise UsageError(f"{spec}: a stage target is fs:PATH, pool:PREFIX or s3://BUCKET/PREFIX")


def default_spec(cluster) -> str:
    return "fs:/" if cluster.mount is not None else "pool:"
