"""The key index of a RadosStore: the omap of one object, `/index` (zarr keys never start with "/"),
so that listing never scans the pool.

RADOS has no transaction across two objects, so the order of the two writes gives the guarantee instead:
- `set` writes the value, then adds the key to the index;
- `delete` removes the key from the index, then the value.
So every listed key has a value. A client killed between the two steps leaves a value that
`get` finds but listing misses; `rebuild_index()` (one namespace listing) repairs that.
"""
from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator

from ..ceph.admin import load_rados
from .bridge import FULL_TRY, aio_write_op
from .errors import rados_error

INDEX = "/index"
LIST_PAGE = 1000


class KeyIndex:
    """The index half of RadosStore (a mixin): needs the store's `ioctx`, `namespace` and `_batches`
    (a WeakKeyDictionary, one group-commit state per event loop)."""

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
            await aio_write_op(self.ioctx, key, lambda op: op.remove())
            raise rados_error(rv, f"index update for {key!r}")

    async def _flush_index(self, state: dict) -> None:
        try:
            while state["keys"]:
                keys, future = state["keys"], state["future"]
                state["keys"], state["future"] = None, None
                try:
                    rv = await aio_write_op(self.ioctx, INDEX,
                                            lambda op, k=keys: self.ioctx.set_omap(op, k, [b""] * len(k)))
                except BaseException as e:  # noqa: BLE001 - handed to every waiting writer
                    future.set_exception(e)
                    continue
                future.set_result(rv)
        finally:
            state["flushing"] = False

    async def _index_remove(self, key: str) -> None:
        """Take `key` out of the index (before its value goes)."""
        rv = await aio_write_op(self.ioctx, INDEX, lambda op: self.ioctx.remove_omap_keys(op, (key,)))
        if rv < 0 and rv != -errno.ENOENT:
            raise rados_error(rv, f"index removal of {key!r}")

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
