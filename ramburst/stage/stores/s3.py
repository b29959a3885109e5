"""The instance's S3 endpoint as a store: objects PREFIX+rel in a bucket.

One PUT per small file; a large file is a multipart upload whose parts are its extents, visible
only when completed. S3 has no append, so each journal flush is an object of its own.
"""
from __future__ import annotations

import json
import time

from ...errors import UsageError
from ..model import Entry
from .common import STAGE_DIR, ObjectStore, journal_lines, merged_meta, with_manifest_entries


class S3(ObjectStore):
    """Objects PREFIX+rel in a bucket of the instance's S3 endpoint; large files as multipart uploads."""

    kind = "s3"
    max_parts = 10_000  # S3's limit on a multipart upload (one part per extent)

    def __init__(self, cluster, bucket: str, prefix: str):
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.client, self.bucket, self.prefix = cluster.s3_client(), bucket, prefix
        self.label = f"s3://{bucket}/{prefix}"
        self.extent = 0

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def _keys(self, prefix: str) -> list[dict]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o for page in pages for o in page.get("Contents", [])]

    # -- source
    def entries(self, errors: list[str]) -> list[Entry]:
        meta = self.meta_get("in")
        out = []
        for o in self._keys(self.prefix):
            rel = o["Key"][len(self.prefix):]
            if rel.startswith(STAGE_DIR + "/"):
                continue
            mt = int(o["LastModified"].timestamp()) * 10**9
            m = merged_meta(meta, rel, o["Size"])
            out.append(Entry(rel=rel, kind="f", size=o["Size"], mtime_ns=m["mtime_ns"] if m else mt,
                             mode=m["mode"] if m else 0o644, ident=f"{o['Size']}:{o['ETag']}", src=o["Key"]))
        return with_manifest_entries(out, meta)

    def _range(self, key: str, off: int, n: int) -> bytes:
        if n == 0:
            return b""
        r = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={off}-{off + n - 1}")
        return r["Body"].read()

    def read(self, e: Entry, off: int, n: int) -> bytes:
        return self._range(e.src or self.key(e.rel), off, n)

    # -- target
    def prepare(self, entries: list[Entry]) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self.client.exceptions.ClientError:  # 404: make it
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except self.client.exceptions.ClientError as e:
                raise UsageError(f"{self.label}: cannot create bucket {self.bucket!r}: "
                                 f"{e.response['Error'].get('Code')}") from None

    def write_whole(self, e: Entry, data: bytes) -> str:
        return self.client.put_object(Bucket=self.bucket, Key=self.key(e.rel), Body=data)["ETag"]

    def begin(self, e: Entry) -> str:
        return self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key(e.rel))["UploadId"]

    def write_part(self, e: Entry, k: int, off: int, data: bytes, upload: str) -> str:
        return self.client.upload_part(Bucket=self.bucket, Key=self.key(e.rel), UploadId=upload,
                                       PartNumber=k + 1, Body=data)["ETag"]

    def finish(self, e: Entry, tokens: dict, upload: str) -> None:
        parts = [{"ETag": tokens[k], "PartNumber": k + 1} for k in sorted(tokens)]
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key(e.rel), UploadId=upload,
                                              MultipartUpload={"Parts": parts})

    def open_uploads(self) -> list[tuple[str, str]]:
        """(key, upload id) of every multipart upload begun under PREFIX and not completed or aborted."""
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix)
        try:
            return [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])]
        except self.client.exceptions.NoSuchBucket:
            return []

    def abort(self, key: str, upload: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
        except self.client.exceptions.NoSuchUpload:
            pass  # already gone: what abort wants

    def size_of(self, e: Entry) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(e.rel))["ContentLength"]
        except self.client.exceptions.ClientError:
            return None

    sized_reads = True  # a whole-object GET returns all its bytes: the length check is the size check

    def read_final(self, e: Entry, off: int, n: int) -> bytes:
        if off == 0 and n == e.size:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(e.rel))["Body"].read()
        return self._range(self.key(e.rel), off, n)

    # -- journal: S3 has no append, so each flush is an object of its own
    def _get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def state_lines(self, name: str) -> list[str]:
        base = self._state(name)
        try:
            journals = sorted(o["Key"] for o in self._keys(base + "journal."))
        except self.client.exceptions.NoSuchBucket:
            return []
        return journal_lines(self._get, [base + "manifest"] + journals)

    def state_append(self, name: str, tag: str, text: str) -> None:
        key = f"{self._state(name)}journal.{tag}.{time.time_ns():020d}"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=text.encode())

    def state_compact(self, name: str, lines: list[str]) -> None:
        base = self._state(name)
        old = [o["Key"] for o in self._keys(base + "journal.")]
        self.client.put_object(Bucket=self.bucket, Key=base + "manifest",
                               Body="".join(line + "\n" for line in lines).encode())
        for key in old:
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def meta_get(self, name: str) -> dict:
        try:
            data = self._get(self._state(name) + "entries.json")
        except self.client.exceptions.NoSuchBucket:
            return {}
        return json.loads(data) if data else {}

    def meta_put(self, name: str, meta: dict) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._state(name) + "entries.json",
                               Body=json.dumps(meta).encode())
