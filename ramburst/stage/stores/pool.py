"""The instance's pool as a store: RADOS objects named PREFIX+rel.

A file up to one extent is one object written by one write_full (atomic in RADOS); a larger file
is its extents, objects `PREFIX+rel.K` in the RADOS namespace `ramburst-extents`, and once all are
written an empty head object `PREFIX+rel` whose xattr `ramburst.extents` holds
{"size", "extent", "n"}: the head appears last (osd_max_object_size is 128 MiB).
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from ..model import Entry
from .common import EXT_NS, STAGE_DIR, ObjectStore, journal_lines, merged_meta, with_manifest_entries


class Pool(ObjectStore):
    """RADOS objects named PREFIX+rel in the instance's pool (layout in the module docstring)."""

    kind = "pool"
    # As a target, an acknowledged write is the check (no read-back unless --read-back): the xxh3
    # journaled is of the very bytes handed to librados; msgr2 frames carry a crc32c on the wire,
    # and the OSD acks write_full only once the whole object is committed (atomically: all or
    # nothing). A read-back would re-read what the OSD has just confirmed from the same RAM, and cost
    # as much again as the write. Stage-out reads every byte anyway and checks its destination.
    trusts_ack = True

    def __init__(self, cluster, prefix: str):
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.cluster, self.prefix = cluster, prefix
        self.label = f"pool:{prefix}"
        self.io = cluster.ioctx()
        self.ext = cluster.ioctx()
        self.ext.set_namespace(EXT_NS)
        self.extent = 0  # the layout's extent size for large files read back (from the manifest)

    def _op(self, io, name: str, fill) -> None:
        from ...ceph.admin import load_rados

        self.cluster.check_room()  # NoSpace as soon as the watchdog stops an OSD at the size
        with load_rados().WriteOpCtx() as op:
            fill(op)
            io.operate_write_op(op, name, flags=self.cluster.FULL_TRY)

    def obj(self, rel: str) -> str:
        return self.prefix + rel

    def xobj(self, rel: str, k: int) -> str:
        return f"{self.prefix}{rel}.{k}"

    # -- source
    def entries(self, errors: list[str]) -> list[Entry]:
        meta = self.meta_get("in")
        self.extent = meta.get("extent", 0)
        names = [o.key for o in self.io.list_objects() if o.key.startswith(self.prefix)]
        names = [n for n in names if not n[len(self.prefix):].startswith(STAGE_DIR + "/")]

        def one(name: str) -> Entry:
            rel = name[len(self.prefix):]
            size, mtime = self.io.stat(name)
            mt = int(time.mktime(mtime)) * 10**9
            known = meta.get("entries", {}).get(rel)
            if known and known["kind"] == "f" and size == 0 and known["size"] > self.extent > 0:
                e = Entry(**known)
                e.src = "extents"
                return e
            m = merged_meta(meta, rel, size)
            return Entry(rel=rel, kind="f", size=size, mtime_ns=m["mtime_ns"] if m else mt,
                         mode=m["mode"] if m else 0o644, ident=f"{size}:{mt}", src=name)

        with ThreadPoolExecutor(16) as ex:
            out = list(ex.map(one, names))
        return with_manifest_entries(out, meta)

    def read(self, e: Entry, off: int, n: int) -> bytes:
        if e.src != "extents":
            return self.io.read(e.src or self.obj(e.rel), n, off) if n else b""
        return self._read_extents(e, off, n, self.extent)

    def _read_extents(self, e: Entry, off: int, n: int, extent: int) -> bytes:
        out = []
        while n > 0:
            k, inner = divmod(off, extent)
            take = min(n, extent - inner)
            out.append(self.ext.read(self.xobj(e.rel, k), take, inner))
            if len(out[-1]) < take:
                break
            off, n = off + take, n - take
        return b"".join(out)

    # -- target
    def prepare(self, entries: list[Entry]) -> None:
        pass

    def write_whole(self, e: Entry, data: bytes) -> str:
        self._op(self.io, self.obj(e.rel), lambda op: op.write_full(data))
        return ""

    def begin(self, e: Entry) -> str:
        return ""

    def write_part(self, e: Entry, k: int, off: int, data: bytes, upload: str) -> str:
        self._op(self.ext, self.xobj(e.rel, k), lambda op: op.write_full(data))
        return ""

    def finish(self, e: Entry, tokens: dict, upload: str) -> None:
        n = e.extents(self.extent)
        head = json.dumps({"size": e.size, "extent": self.extent, "n": n}).encode()

        def fill(op):
            op.write_full(b"")
            op.set_xattr("ramburst.extents", head)
        self._op(self.io, self.obj(e.rel), fill)

    def size_of(self, e: Entry) -> int | None:
        try:
            if e.extents(self.extent) == 1:
                return self.io.stat(self.obj(e.rel))[0]
            self.io.stat(self.obj(e.rel))
            return sum(self.ext.stat(self.xobj(e.rel, k))[0] for k in range(e.extents(self.extent)))
        except Exception as err:  # noqa: BLE001 - rados.ObjectNotFound; the binding is loaded lazily
            if type(err).__name__ == "ObjectNotFound":
                return None
            raise

    def read_final(self, e: Entry, off: int, n: int) -> bytes:
        if e.extents(self.extent) == 1:
            return self.io.read(self.obj(e.rel), n, off) if n else b""
        return self._read_extents(e, off, n, self.extent)

    # -- journal
    def _get(self, name: str) -> bytes | None:
        try:
            size = self.io.stat(name)[0]
        except Exception as err:  # noqa: BLE001
            if type(err).__name__ == "ObjectNotFound":
                return None
            raise
        return self.io.read(name, size) if size else b""

    def state_lines(self, name: str) -> list[str]:
        base = self._state(name)
        journals = sorted(o.key for o in self.io.list_objects() if o.key.startswith(base + "journal."))
        return journal_lines(self._get, [base + "manifest"] + journals)

    def state_append(self, name: str, tag: str, text: str) -> None:
        self._op(self.io, f"{self._state(name)}journal.{tag}", lambda op: op.append(text.encode()))

    def state_compact(self, name: str, lines: list[str]) -> None:
        base = self._state(name)
        old = [o.key for o in self.io.list_objects() if o.key.startswith(base + "journal.")]
        data = "".join(line + "\n" for line in lines).encode()
        self._op(self.io, base + "manifest", lambda op: op.write_full(data))
        for obj in old:
            self.cluster.delete(obj)

    def meta_get(self, name: str) -> dict:
        data = self._get(self._state(name) + "entries.json")
        return json.loads(data) if data else {}

    def meta_put(self, name: str, meta: dict) -> None:
        data = json.dumps(meta).encode()
        self._op(self.io, self._state(name) + "entries.json", lambda op: op.write_full(data))
