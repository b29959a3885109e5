"""A zarr v3 store on librados: one RADOS namespace per store, one object per key.

Every request is a librados aio operation whose completion is handed to the asyncio loop
that asked for it (`loop.call_soon_threadsafe`), so zarr keeps as many requests in flight
as its `async.concurrency` setting allows, with no thread per request.

Listing never scans the pool: each store keeps an index of its keys in the omap of one
object, `/index` (zarr keys never start with "/"). RADOS has no transaction across two
objects, so the order of the two writes gives the guarantee instead:
- `set` writes the value, then adds the key to the index;
- `delete` removes the key from the index, then the value.
So every listed key has a value. A client killed between the two steps leaves a value that
`get` finds but listing misses; `rebuild_index()` (one namespace listing) repairs that.

Writes carry LIBRADOS_OPERATION_FULL_TRY: on a full cluster the OSD answers ENOSPC at once
instead of pausing the write, and `set` raises `StoreFullError`. A RADOS write replaces an
object whole or not at all, so nothing half-written is ever left under a key.
"""
from __future__ import annotations

import asyncio
import atexit
import errno
import weakref
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from ..ceph.admin import load_rados
from ..errors import RamburstError

INDEX = "/index"
FULL_TRY = 64  # LIBRADOS_OPERATION_FULL_TRY, as api.Cluster.put
CREATE_EXCLUSIVE = 1  # LIBRADOS_CREATE_EXCLUSIVE
FIRST_READ = 4 * 2**20  # bytes (+1) asked for by a whole-value read before its size is known
LIST_PAGE = 1000


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


class StoreFullError(RamburstError):
    """The cluster (or the pool's quota) is full: the value was not stored."""


class ValueTooLargeError(RamburstError, ValueError):
    """A value larger than one RADOS write may carry (osd_max_write_size, 90 MiB by default)."""


class RadosStore(Store):
    """A zarr store in RADOS namespace `namespace` of the instance's pool.

    `cluster` is a `ramburst.api.Cluster`; the store pickles as (state folder, pool,
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
        self.state_dir = Path(cluster.state_dir)
        self.pool = pool or cluster.pool
        self.namespace = namespace
        self._io = None
        self._max_value: int | None = None
        self._first_read = FIRST_READ
        self._batches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per event loop
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
                "read_only": self.read_only}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from ..api import attach

        self.__init__(attach(state_dir=state["state_dir"]), state["namespace"], state["pool"],
                      read_only=state["read_only"])

    def with_read_only(self, read_only: bool = False) -> RadosStore:
        return type(self)(self._cluster, self.namespace, self.pool, read_only=read_only)

    # -- connection --------------------------------------------------------------------
    @property
    def ioctx(self):
        """The store's rados.Ioctx, set to its namespace (opened on first use)."""
        if self._io is None:
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

    # -- aio bridge --------------------------------------------------------------------
    @staticmethod
    def _bridge() -> tuple[asyncio.Future, Any]:
        """A future on the running loop, and a librados callback that settles it from
        librados's own thread."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(value: Any) -> None:
            if not future.done():
                future.set_result(value)

        def callback(completion, *rest) -> None:
            try:
                loop.call_soon_threadsafe(settle, (completion.get_return_value(), *rest))
            except RuntimeError:  # the loop was closed meanwhile: nobody waits any more
                pass

        return future, callback

    async def _read(self, key: str, length: int, offset: int) -> bytes | None:
        future, callback = self._bridge()
        self.ioctx.aio_read(key, length, offset, callback)
        rv, data = await future
        if rv == -errno.ENOENT:
            return None
        if rv < 0:
            raise _error(rv, f"read of {key!r}")
        self.stats["reads"] += 1
        self.stats["bytes_read"] += rv
        return bytes(data[:rv]) if rv else b""

    async def _stat(self, key: str) -> int | None:
        future, callback = self._bridge()
        self.ioctx.aio_stat(key, callback)
        rv, size, _mtime = await future
        if rv == -errno.ENOENT:
            return None
        if rv < 0:
            raise _error(rv, f"stat of {key!r}")
        return size

    async def _write_op(self, key: str, build, what: str) -> int:
        rados = load_rados()
        future, callback = self._bridge()
        with rados.WriteOpCtx() as op:
            build(op)
            self.ioctx.operate_aio_write_op(op, key, callback, flags=FULL_TRY)
            (rv,) = await future
        return rv

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

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await self._ensure_open()
        data = self._check_value(key, value)
        rv = await self._write_op(key, lambda op: op.write_full(data), "write")
        if rv < 0:
            raise _error(rv, f"write of {key!r} ({len(data)} bytes)")
        self.stats["writes"] += 1
        self.stats["bytes_written"] += len(data)
        await self._index_add(key)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await self._ensure_open()
        data = self._check_value(key, value)

        def build(op) -> None:
            op.new(CREATE_EXCLUSIVE)
            op.write_full(data)

        rv = await self._write_op(key, build, "exclusive create")
        if rv == -errno.EEXIST:
            return
        if rv < 0:
            raise _error(rv, f"exclusive create of {key!r}")
        await self._index_add(key)

    async def _index_add(self, key: str) -> None:
        """Add `key` to the index once its value is stored. Keys of concurrent writes are sent
        together (group commit): one omap update in flight per store and loop, the next one
        carrying every key that arrived meanwhile, so the index costs far fewer operations
        than values when zarr writes many chunks at once."""
        loop = asyncio.get_running_loop()
        state = self._batches.setdefault(loop, {"keys": None, "future": None, "flushing": False})
        if state["keys"] is None:
            state["keys"], state["future"] = [], loop.create_future()
        state["keys"].append(key)
        future = state["future"]
        if not state["flushing"]:
            state["flushing"] = True
            loop.create_task(self._flush_index(state))
        rv = await asyncio.shield(future)
        if rv < 0:
            # Keep the promise "every listed key has a value, nothing half-stored": the value
            # without its index entry is removed again, then the error is raised.
            await self._write_op(key, lambda op: op.remove(), "remove")
            raise _error(rv, f"index update for {key!r}")

    async def _flush_index(self, state: dict) -> None:
        try:
            while state["keys"]:
                keys, future = state["keys"], state["future"]
                state["keys"], state["future"] = None, None
                try:
                    rv = await self._write_op(INDEX, lambda op, k=keys: self.ioctx.set_omap(op, k, [b""] * len(k)),
                                              "index")
                except BaseException as e:  # noqa: BLE001 - handed to every waiting writer
                    future.set_exception(e)
                    continue
                future.set_result(rv)
        finally:
            state["flushing"] = False

    async def delete(self, key: str) -> None:
        self._check_writable()
        await self._ensure_open()
        rv = await self._write_op(INDEX, lambda op: self.ioctx.remove_omap_keys(op, (key,)), "index")
        if rv < 0 and rv != -errno.ENOENT:
            raise _error(rv, f"index removal of {key!r}")
        rv = await self._write_op(key, lambda op: op.remove(), "remove")
        if rv < 0 and rv != -errno.ENOENT:
            raise _error(rv, f"delete of {key!r}")

    async def set_partial_values(self, key_start_values: Iterable[tuple[str, int, bytes]]) -> None:
        raise NotImplementedError

    # -- listing -----------------------------------------------------------------------
    def _index_page(self, start_after: str, prefix: str) -> list[str]:
        rados = load_rados()
        with rados.ReadOpCtx() as op:
            it, _ = self.ioctx.get_omap_vals(op, start_after, prefix, LIST_PAGE)
            try:
                self.ioctx.operate_read_op(op, INDEX)
            except rados.ObjectNotFound:
                return []
            return [k for k, _ in it]

    async def _keys(self, prefix: str, start_after: str = "") -> AsyncIterator[str]:
        while True:
            page = await asyncio.to_thread(self._index_page, start_after, prefix)
            for key in page:
                yield key
            if len(page) < LIST_PAGE:
                return
            start_after = page[-1]

    async def list(self) -> AsyncIterator[str]:
        async for key in self._keys(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        keys = [k async for k in self._keys(prefix)]  # whole, so that deletes while iterating are safe
        for key in keys:
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """Children of `prefix`; a sub-folder costs one index query, whatever it holds."""
        prefix = prefix.rstrip("/")
        prefix = prefix + "/" if prefix else ""
        seen: set[str] = set()
        start_after = ""
        while True:
            page = await asyncio.to_thread(self._index_page, start_after, prefix)
            jumped = False
            for key in page:
                rest = key[len(prefix):]
                name = rest.split("/", 1)[0]
                if name and name not in seen:
                    seen.add(name)
                    yield name
                start_after = key
                if "/" in rest:  # skip the rest of this sub-folder: U+10FFFF sorts after any name
                    start_after = prefix + name + "/\U0010ffff"
                    jumped = True
                    break
            if not jumped and len(page) < LIST_PAGE:
                return

    # -- repair ------------------------------------------------------------------------
    def rebuild_index(self) -> int:
        """Rebuild the key index from the namespace's objects (after a client died between a
        value write and its index update). Scans the namespace once; returns the key count."""
        rados = load_rados()
        keys = [o.key for o in self.ioctx.list_objects() if o.key != INDEX and o.nspace == self.namespace]
        with rados.WriteOpCtx() as op:
            op.remove()
            self.ioctx.operate_write_op(op, INDEX, flags=FULL_TRY)
        for start in range(0, len(keys), LIST_PAGE):
            with rados.WriteOpCtx() as op:
                part = keys[start:start + LIST_PAGE]
                self.ioctx.set_omap(op, part, [b""] * len(part))
                self.ioctx.operate_write_op(op, INDEX, flags=FULL_TRY)
        return len(keys)


def _error(rv: int, what: str) -> Exception:
    code = -rv
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(f"{what} failed: the cluster is full ({errno.errorcode.get(code, code)}); "
                              "delete arrays or deploy a bigger instance")
    if code in (errno.EFBIG, errno.E2BIG, errno.EMSGSIZE):
        return ValueTooLargeError(f"{what} failed: value too large for one RADOS object ({errno.errorcode[code]})")
    return OSError(code, f"{what} failed: {errno.errorcode.get(code, code)}")
