"""From a store spec (fs:PATH, pool:PREFIX, s3://BUCKET/PREFIX) to the store object."""
from __future__ import annotations

import os
from pathlib import Path

from ...errors import UsageError
from ...layout import Layout
from .cephfs import CephFSTree
from .fs import Tree
from .pool import Pool
from .s3 import S3


def cluster_store(cluster, spec: str):
    """fs:PATH (in the instance's mount), pool:PREFIX or s3://BUCKET/PREFIX."""
    if spec.startswith("fs:"):
        if cluster.mount is None:
            raise UsageError(f"{spec}: instance {cluster.name!r} has no fs service mounted here")
        return fs_store(cluster, spec)
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


def fs_store(cluster, spec: str):
    """fs:PATH: a folder of the instance's CephFS, PATH inside its mount. Written through libcephfs
    in this process (stores/cephfs.py) when this user can read the instance's admin key; else (a
    second user of a shared mount) or with RAMBURST_STAGE_FS=mount, through the mount. A PATH that
    leads out of the mount (`..`, a symlink to elsewhere) is refused: it is not in the fs."""
    mount = cluster.mount
    path = mount / spec[3:].lstrip("/")
    real, top = os.path.realpath(path), os.path.realpath(mount)
    if real != top and not real.startswith(top.rstrip("/") + "/"):
        raise UsageError(f"{spec}: {path} leads to {real}, outside the fs mounted at {mount}")
    how = os.environ.get("RAMBURST_STAGE_FS", "direct")
    if how not in ("direct", "mount"):
        raise UsageError(f"RAMBURST_STAGE_FS={how}: must be direct or mount")
    if how == "mount" or not os.access(Layout.of_conf(cluster.conf).keyring("client.admin"), os.R_OK):
        # In the RAM cluster a per-file fsync buys nothing a crash would keep (the data is in RAM
        # either way) and cost 3x in files/s; one syncfs at the end, then the verify pass.
        return Tree(path, spec, durable=False)
    inside = os.path.relpath(real, top)
    return CephFSTree(cluster, path, "" if inside == "." else "/" + Path(inside).as_posix(), spec)


def default_spec(cluster) -> str:
    return "fs:/" if cluster.mount is not None else "pool:"
