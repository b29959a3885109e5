"""librados aio requests as asyncio awaitables.

Each request's completion is handed to the asyncio loop that asked for it (`loop.call_soon_threadsafe`),
so zarr keeps as many requests in flight as its `async.concurrency` setting allows, with no thread per
request. The awaitables return librados's own return codes; the store turns them into errors.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..ceph.admin import load_rados

FULL_TRY = 64  # LIBRADOS_OPERATION_FULL_TRY, as api.Cluster.put


def bridge() -> tuple[asyncio.Future, Any]:
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


async def aio_read(ioctx, key: str, length: int, offset: int) -> tuple[int, Any]:
    """(return code, data) of reading `length` bytes of `key` from `offset`."""
    future, callback = bridge()
    ioctx.aio_read(key, length, offset, callback)
    return await future


async def aio_stat(ioctx, key: str) -> tuple[int, int, Any]:
    """(return code, size, mtime) of `key`."""
    future, callback = bridge()
    ioctx.aio_stat(key, callback)
    return await future


async def aio_write_op(ioctx, key: str, build) -> int:
    """Return code of a write operation on `key` that `build(op)` fills in; with FULL_TRY, so that a
    full cluster answers ENOSPC at once instead of pausing the write."""
    rados = load_rados()
    future, callback = bridge()
    with rados.WriteOpCtx() as op:
        build(op)
        ioctx.operate_aio_write_op(op, key, callback, flags=FULL_TRY)
        (rv,) = await future
    return rv
