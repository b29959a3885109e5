"""Issue 14: RadosStore through zarr's own store conformance suite (zarr.testing.store.StoreTests),
against real daemons; each test gets a fresh namespace. Needs pytest-asyncio (skipped without)."""
from __future__ import annotations

import itertools

import pytest

import ramburst

pytest.importorskip("zarr")
pytest_asyncio = pytest.importorskip("pytest_asyncio")

from zarr.core.buffer import Buffer, cpu  # noqa: E402
from zarr.testing.store import StoreTests  # noqa: E402

from ramburst.arrays import RadosStore  # noqa: E402
from ramburst.ceph.admin import load_rados  # noqa: E402

from conftest import unique_name  # noqa: E402

pytestmark = [pytest.mark.ceph, pytest.mark.asyncio(loop_scope="function")]
_counter = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = unique_name("arc")
    with ramburst.deploy(name=name, state_dir=str(tmp_path_factory.mktemp("conf") / name), size="1G") as c:
        yield c


class TestRadosStore(StoreTests[RadosStore, cpu.Buffer]):
    store_cls = RadosStore
    buffer_cls = cpu.Buffer

    @pytest.fixture
    def store_kwargs(self, cluster) -> dict:
        return {"cluster": cluster, "namespace": f"conf{next(_counter)}"}

    @pytest_asyncio.fixture
    async def store(self, open_kwargs) -> RadosStore:
        return await self.store_cls.open(**open_kwargs)

    @pytest.fixture
    def store_not_open(self, store_kwargs) -> RadosStore:
        return self.store_cls(**store_kwargs)

    async def set(self, store: RadosStore, key: str, value: Buffer) -> None:
        """Write the object and its index entry with plain librados, not through the store."""
        store.ioctx.write_full(key, value.to_bytes())
        with load_rados().WriteOpCtx() as op:
            store.ioctx.set_omap(op, (key,), (b"",))
            store.ioctx.operate_write_op(op, "/index")

    async def get(self, store: RadosStore, key: str) -> Buffer:
        size, _ = store.ioctx.stat(key)
        return self.buffer_cls.from_bytes(store.ioctx.read(key, size))

    def test_store_repr(self, store: RadosStore) -> None:
        assert repr(store).startswith("RadosStore('rados://")

    def test_store_supports_writes(self, store: RadosStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: RadosStore) -> None:
        assert store.supports_listing

