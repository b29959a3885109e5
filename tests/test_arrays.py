"""Issue 14: zarr v3 arrays on the RAM cluster through RadosStore (real daemons)."""
from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest

import ramburst

zarr = pytest.importorskip("zarr")
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest  # noqa: E402
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec  # noqa: E402
from zarr.core.buffer import default_buffer_prototype  # noqa: E402
from zarr.core.sync import sync  # noqa: E402

import ramburst.arrays as ra  # noqa: E402

from conftest import unique_name  # noqa: E402

pytestmark = pytest.mark.ceph


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = unique_name("ar")
    with ramburst.deploy(name=name, state_dir=str(tmp_path_factory.mktemp("arrays") / name), size="1G") as c:
        yield c


def keys(it) -> list[str]:
    async def collect():
        return [k async for k in it]
    return sync(collect())


CASES = [
    ("f4-3d-sharded-zstd", (40, 50, 60), "f4", (10, 10, 15), (20, 50, 30), [ZstdCodec(level=1)]),
    ("i2-1d-gzip", (10_001,), "i2", (999,), None, [GzipCodec()]),
    ("u1-2d-raw", (33, 77), "u1", (8, 8), None, []),
    ("c16-2d-blosc", (20, 30), "c16", (7, 11), None, [BloscCodec(cname="lz4")]),
    ("bool-2d-sharded", (64, 64), "bool", (8, 8), (32, 64), [ZstdCodec()]),
    ("f8-0d", (), "f8", (), None, []),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_item_roundtrip_dtypes_shapes_chunkings(cluster, case):
    label, shape, dtype, chunks, shards, compressors = case
    store = cluster.zarr_store(namespace="rt-" + label)
    rng = np.random.default_rng(1)
    data = (rng.random(shape) * 1000).astype(dtype) if dtype != "c16" else \
        (rng.random(shape) + 1j * rng.random(shape)).astype(dtype)
    a = zarr.create_array(store, name="a", shape=shape, chunks=chunks, shards=shards, dtype=dtype,
                          compressors=compressors, fill_value=0)
    a[...] = data
    again = zarr.open_array(cluster.zarr_store(namespace="rt-" + label, read_only=True), path="a", mode="r")
    np.testing.assert_array_equal(again[...], data)
    assert again.dtype == np.dtype(dtype) and again.shape == shape
    if shape:
        sl = tuple(slice(1, max(2, n // 2), 3 if i == 0 else 1) for i, n in enumerate(shape))  # steps too
        np.testing.assert_array_equal(again[sl], data[sl])


def test_item_byte_ranges_exists_getsize_and_missing_keys(cluster):
    store = cluster.zarr_store(namespace="ranges")
    proto = default_buffer_prototype()
    value = bytes(range(256)) * 40  # 10240 bytes
    sync(store.set("k/v", proto.buffer.from_bytes(value)))

    def get(r):
        b = sync(store.get("k/v", proto, r))
        return None if b is None else b.to_bytes()

    assert get(None) == value
    assert get(RangeByteRequest(10, 20)) == value[10:20]
    assert get(OffsetByteRequest(10_000)) == value[10_000:]
    assert get(SuffixByteRequest(7)) == value[-7:]
    assert get(SuffixByteRequest(10**6)) == value
    assert sync(store.get("nope", proto)) is None
    assert sync(store.get("nope", proto, SuffixByteRequest(3))) is None
    assert sync(store.exists("k/v")) and not sync(store.exists("nope"))
    assert sync(store.getsize("k/v")) == len(value)
    # a value longer than the first read's guess comes back whole
    big = np.random.default_rng(2).bytes(9 * 2**20 + 5)
    sync(store.set("big", proto.buffer.from_bytes(big)))
    assert sync(store.get("big", proto)).to_bytes() == big
    got = sync(store.get_partial_values(proto, [("k/v", RangeByteRequest(0, 3)), ("nope", None),
                                                 ("big", SuffixByteRequest(4))]))
    assert [g and g.to_bytes() for g in got] == [value[:3], None, big[-4:]]


def test_item_set_if_not_exists_is_exclusive(cluster):
    store = cluster.zarr_store(namespace="excl")
    proto = default_buffer_prototype()
    sync(store.set_if_not_exists("a", proto.buffer.from_bytes(b"first")))
    sync(store.set_if_not_exists("a", proto.buffer.from_bytes(b"second")))
    assert sync(store.get("a", proto)).to_bytes() == b"first"
    assert keys(store.list()) == ["a"]


def test_item_listing_and_deletes_use_the_index(cluster):
    store = cluster.zarr_store(namespace="listing")
    proto = default_buffer_prototype()
    names = ["zarr.json", "g/zarr.json", "g/a/zarr.json"] + [f"g/a/c/{i}/{j}" for i in range(40) for j in range(30)]
    names += ["g/b.x", "h"]

    async def put_all():
        await asyncio.gather(*(store.set(n, proto.buffer.from_bytes(n.encode())) for n in names))
    sync(put_all())
    assert sorted(keys(store.list())) == sorted(names)  # > one index page of 1000
    assert sorted(keys(store.list_prefix("g/a/c/3/"))) == sorted(n for n in names if n.startswith("g/a/c/3/"))
    assert sorted(keys(store.list_dir(""))) == ["g", "h", "zarr.json"]
    assert sorted(keys(store.list_dir("g"))) == ["a", "b.x", "zarr.json"]
    assert sorted(keys(store.list_dir("g/a/"))) == ["c", "zarr.json"]
    assert len(keys(store.list_dir("g/a/c"))) == 40
    # another namespace on the same pool is not listed here
    other = cluster.zarr_store(namespace="listing-other")
    sync(other.set("zzz", proto.buffer.from_bytes(b"1")))
    assert "zzz" not in keys(store.list())
    sync(store.delete("h"))
    sync(store.delete("never-there"))  # no error, as zarr expects
    assert sync(store.get("h", proto)) is None and "h" not in keys(store.list())
    sync(store.delete_dir("g/a"))
    assert sorted(keys(store.list())) == ["g/b.x", "g/zarr.json", "zarr.json"]
    # the index repair after a client died between value and index: a value written behind its back
    store.ioctx.write_full("orphan", b"x")
    assert "orphan" not in keys(store.list())
    assert store.rebuild_index() == 4
    assert "orphan" in keys(store.list())


def test_item_pickle_equality_and_read_only(cluster):
    store = cluster.zarr_store(namespace="pick")
    again = pickle.loads(pickle.dumps(store))
    assert again == store and hash(again) == hash(store)
    assert again != cluster.zarr_store(namespace="other") and again != store.with_read_only(True)
    proto = default_buffer_prototype()
    sync(again.set("k", proto.buffer.from_bytes(b"v")))
    assert sync(store.get("k", proto)).to_bytes() == b"v"
    ro = cluster.zarr_store(namespace="pick", read_only=True)
    with pytest.raises(ValueError, match="read-only"):
        sync(ro.set("k", proto.buffer.from_bytes(b"w")))
    with pytest.raises(ValueError, match="read-only"):
        sync(ro.delete("k"))
    assert sync(ro.get("k", proto)).to_bytes() == b"v"


def test_item_open_by_instance_name(cluster):
    root = ra.open(state_dir=cluster.state_dir, namespace="byname", mode="w")
    root.create_array("v", shape=(10,), chunks=(5,), dtype="i4")[:] = np.arange(10)
    ro = ra.open(state_dir=cluster.state_dir, namespace="byname", mode="r")
    assert list(ro.array_keys()) == ["v"] and ro["v"][7] == 7
    with pytest.raises(ValueError, match="read-only"):
        ro["v"][0] = 5
