"""A zarr v3 store on librados: one RADOS namespace per store, one object per key.

Every request is a librados aio operation awaited on the asyncio loop that asked for it
(`bridge`), so zarr keeps as many requests in flight as its `async.concurrency` setting
allows, with no thread per request.

Listing never scans the pool: each store keeps an index of its keys in the omap of one
object (`index`, which also says why every listed key has a value).

Writes carry LIBRADOS_OPERATION_FULL_TRY: on a full cluster the OSD answers ENOSPC instead of
pausing the write, and `set` raises `StoreFullError`; it does so before writing while the watchdog
marks an OSD full (Cluster.check_room), as the OSD says ENOSPC only once the pool is flagged full.
A RADOS write replaces an object whole or not at all, so nothing half-written is ever left under a key.
"""
from __future__ import annotations

import asyncio
import atexit
import errno
import os
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from ..ceph.admin import load_rados
from .bridge import aio_read, aio_stat, aio_write_op
from .errors import StoreFullError, ValueTooLargeError, rados_error
from .index import KeyIndex

__all__ = ["RadosStore", "StoreFullError", "ValueTooLargeError"]

CREATE_EXCLUSIVE = 1  # LIBRADOS_CREATE_EXCLUSIVE
FIRST_READ = 4 * 2**20  # bytes (+1) asked for by a whole-value read before its size is known


_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Shut the librados handles of stores down before the interpreter exits: a process that
    ends with a connected handle (e.g. a worker that unpickled a store) otherwise aborts in
    librados's thread teardown ("terminate called without an active exception", SIGABRT or
    SIGSEGV), seen with spawned writers in tests/test_arrays.py."""
    for store in list(_LIVE):
        try:
            store.close()
            store._cluster.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


class RadosStore(KeyIndex, Store):
    """A zarr store in RADOS namespace `namespace` of the instance's pool.

    `cluster` is a `ramburst.api.Cluster`; the store pickles as (state folder, pool, the cluster class,
    namespace, read_only) and reconnects on first use in the process that unpickles it.
    """

    supports_writes = True
    supports_deletes = True
    supports_partial_writes = False
    supports_listing = True

    def __init__(self, cluster, namespace: str = "arrays", pool: str | None = None, *, read_only: bool = False):
        super().__init__(read_only=read_only)
        if not namespace:
            raise ValueError("a RadosStore needs a namespace of its own")
        self._cluster = cluster
        self._cluster_type = type(cluster)  # to reconnect by state folder (no import of the API here)
        self.state_dir = Path(cluster.state_dir)
        self.pool = pool or cluster.pool
        self.namespace = namespace
        self._io = None
        self._pid = os.getpid()
        self._max_value: int | None = None
        self._first_read = FIRST_READ
        self._batches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per event loop, for KeyIndex
        self.stats = {"reads": 0, "bytes_read": 0, "writes": 0, "bytes_written": 0}

    # -- identity, pickling ------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RadosStore) and self.state_dir == other.state_dir and self.pool == other.pool
                and self.namespace == other.namespace and self.read_only == other.read_only)

    def __hash__(self) -> int:
        return hash((str(self.state_dir), self.pool, self.namespace, self.read_only))

    def __str__(self) -> str:
        return f"rados://{self.pool}/{self.namespace}"

    def __repr__(self) -> str:
        return f"RadosStore({str(self)!r}, state_dir={str(self.state_dir)!r}, read_only={self.read_only})"

    def __getstate__(self) -> dict[str, Any]:
        return {"state_dir": str(self.state_dir), "pool": self.pool, "namespace": self.namespace,
                "read_only": self.read_only, "cluster_type": self._cluster_type}  # a class pickles by name

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cluster_type"](state["state_dir"]), state["namespace"], state["pool"],
                      read_only=state["read_only"])

    def with_read_only(self, read_only: bool = False) -> RadosStore:
        return type(self)(self._cluster, self.namespace, self.pool, read_only=read_only)

    # -- connection --------------------------------------------------------------------
    @property
    def ioctx(self):
        """The store's rados.Ioctx, set to its namespace (opened on first use)."""
        if self._io is not None and self._pid != os.getpid():
            # a forked child: librados handles do not survive fork; connect anew (the parent's
            # handle is left alone, it is still the parent's)
            self._io, self._cluster = None, self._cluster_type(self.state_dir)
        if self._io is None:
            self._pid = os.getpid()
            io = self._cluster.ioctx(self.pool)
            io.set_namespace(self.namespace)
            self._io = io
            _LIVE.add(self)
        return self._io

    @property
    def max_value_size(self) -> int:
        """The largest value one write can store: min(osd_max_object_size, osd_max_write_size)."""
        if self._max_value is None:
            rados = self._cluster.rados()
            self._max_value = min(int(rados.conf_get("osd_max_object_size")),
                                  int(rados.conf_get("osd_max_write_size")) * 2**20)
        return self._max_value

    async def _open(self) -> None:
        self.ioctx  # noqa: B018 - connect now, so that a wrong pool fails at open
        await super()._open()

    def close(self) -> None:
        if self._io is not None:
            self._io.close()
            self._io = None
        super().close()

    # -- requests ----------------------------------------------------------------------
    async def _read(self, key: str, length: int, offset: int) -> bytes | None:
        rv, data = await aio_read(self.ioctx, key, length, offset)
        if rv == -errno.ENOENT:
            return None
        if rv < 0:
            raise rados_error(rv, f"read of {key!r}")
        self.stats["reads"] += 1
        self.stats["bytes_read"] += rv
        return bytes(data[:rv]) if rv else b""

    async def _stat(self, key: str) -> int | None:
        rv, size, _mtime = await aio_stat(self.ioctx, key)
        if rv == -errno.ENOENT:
            return None
        if rv < 0:
            raise rados_error(rv, f"stat of {key!r}")
        return size

    # -- reads -------------------------------------------------------------------------
    async def get(self, key: str, prototype: BufferPrototype | None = None,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        await self._ensure_open()
        data = await self._get_bytes_range(key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def _get_bytes_range(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        if isinstance(byte_range, RangeByteRequest):
            if byte_range.end <= byte_range.start:
                return b"" if await self._stat(key) is not None else None
            return await self._read(key, byte_range.end - byte_range.start, byte_range.start)
        if isinstance(byte_range, SuffixByteRequest):
            size = await self._stat(key)
            if size is None:
                return None
            start = max(0, size - byte_range.suffix)
            return await self._read(key, size - start, start) if size > start else b""
        offset = byte_range.offset if isinstance(byte_range, OffsetByteRequest) else 0
        if byte_range is not None and not isinstance(byte_range, OffsetByteRequest):
            raise TypeError(f"Unexpected byte_range, got {byte_range}")
        # One round trip for a value up to the size of the largest seen so far (asking one byte
        # more tells that it was all); a longer one is finished with a stat and a second read.
        want = self._first_read + 1
        head = await self._read(key, want, offset)
        if head is None or len(head) < want:
            return head
        size = await self._stat(key)
        if size is None:
            return None
        self._first_read = min(max(self._first_read, size), self.max_value_size)
        rest = await self._read(key, size - offset - want, offset + want) if size > offset + want else b""
        return head + (rest or b"")

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        await self._ensure_open()
        return await self._stat(key) is not None

    async def getsize(self, key: str) -> int:
        await self._ensure_open()
        size = await self._stat(key)
        if size is None:
            raise FileNotFoundError(key)
        return size

    # -- writes ------------------------------------------------------------------------
    def _check_value(self, key: str, value: Buffer) -> bytes:
        if not isinstance(value, Buffer):
            raise TypeError(f"RadosStore.set(): `value` must be a Buffer instance, got {type(value)}")
        if key.startswith("/") or not key:
            raise ValueError(f"invalid key {key!r}: zarr keys are relative paths")
        data = value.to_bytes()
        if len(data) > self.max_value_size:
            raise ValueTooLargeError(
                f"value of {len(data)} bytes for {key!r} is larger than one RADOS object write "
                f"({self.max_value_size} bytes, min of osd_max_object_size and osd_max_write_size): "
                "use smaller chunks or shards")
        return data

    def _check_room(self, what: str) -> None:
        """StoreFullError as soon as the watchdog stops an OSD at the size: Ceph lets FULL_TRY
        writes through until the monitor flags the pool full (api.Cluster.check_room)."""
        check = getattr(self._cluster, "check_room", None)
        if check is None:
            return
        try:
            check()
        except load_rados().NoSpace:
            raise rados_error(-errno.ENOSPC, what) from None

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await self._ensure_open()
        data = self._check_value(key, value)
        self._check_room(f"write of {key!r} ({len(data)} bytes)")
        rv = await aio_write_op(self.ioctx, key, lambda op: op.write_full(data))
        if rv < 0:
            raise rados_error(rv, f"write of {key!r} ({len(data)} bytes)")
        self.stats["writes"] += 1
        self.stats["bytes_written"] += len(data)
        await self._index_add(key)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await self._ensure_open()
        data = self._check_value(key, value)
        self._check_room(f"exclusive create of {key!r}")

        def build(op) -> None:
            op.new(CREATE_EXCLUSIVE)
            op.write_full(data)

        rv = await aio_write_op(self.ioctx, key, build)
        if rv == -errno.EEXIST:
            return
        if rv < 0:
            raise rados_error(rv, f"exclusive create of {key!r}")
        await self._index_add(key)

    async def delete(self, key: str) -> None:
        self._check_writable()
        await self._ensure_open()
        await self._index_remove(key)
        rv = await aio_write_op(self.ioctx, key, lambda op: op.remove())
        if rv < 0 and rv != -errno.ENOENT:
            raise rados_error(rv, f"delete of {key!r}")

    async def set_partial_values(self, key_start_values: Iterable[tuple[str, int, bytes]]) -> None:
        raise NotImplementedError
