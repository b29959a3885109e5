"""Where staged data lives: a local tree, the instance's pool (RADOS objects) or its S3 endpoint.

Each store can be a source (list entries, read byte ranges), a target (write an extent, make a
file final, read it back to verify) and, on the cluster side, the keeper of the stage journal
(`.ramburst-stage/<name>/` beside the data). One module a kind: fs.py (a local tree, or the fs
mount), cephfs.py (a folder of the CephFS through libcephfs), pool.py (RADOS objects), s3.py (an
S3 bucket); factory.py turns a spec into one.
"""
from .common import EXT_NS, STAGE_DIR, TMP_SUFFIX, merged_meta, walk_tree
from .factory import cluster_store, default_spec
from .fs import Sources, Tree
from .pool import Pool
from .s3 import S3

__all__ = ["EXT_NS", "STAGE_DIR", "TMP_SUFFIX", "S3", "Pool", "Sources", "Tree", "cluster_store", "default_spec",
           "merged_meta", "walk_tree"]
