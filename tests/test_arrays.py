"""Issue 14: zarr v3 arrays on the RAM cluster through RadosStore (real daemons)."""
from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import pickle
import re
import subprocess
import time

import numpy as np
import pytest

import ramburst

zarr = pytest.importorskip("zarr")
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest  # noqa: E402
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec  # noqa: E402
from zarr.core.buffer import default_buffer_prototype  # noqa: E402
from zarr.core.sync import sync  # noqa: E402

import ramburst.arrays as ra  # noqa: E402

from conftest import RAMBURST, cli, unique_name  # noqa: E402

pytestmark = pytest.mark.ceph


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = unique_name("ar")
    with ramburst.deploy(name=name, state_dir=str(tmp_path_factory.mktemp("arrays") / name), size="1G",
                         services=("pool", "s3")) as c:
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


def test_item_open_by_instance_name(cluster, monkeypatch):
    root = ra.open(state_dir=cluster.state_dir, namespace="byname", mode="w")
    root.create_array("v", shape=(10,), chunks=(5,), dtype="i4")[:] = np.arange(10)
    ro = ra.open(state_dir=cluster.state_dir, namespace="byname", mode="r")
    assert list(ro.array_keys()) == ["v"] and ro["v"][7] == 7
    with pytest.raises(ValueError, match="read-only"):
        ro["v"][0] = 5
    # after eval "$(ramburst env ...)": the instance of the environment
    monkeypatch.setenv("RAMBURST_STATE_DIR", str(cluster.state_dir))
    assert ra.open(namespace="byname", mode="r")["v"][3] == 3
    r = cli("array", "ls", "--namespace", "byname", env={"RAMBURST_STATE_DIR": str(cluster.state_dir)})
    assert r.returncode == 0 and r.stdout.split("\t")[0] == "v", r.stderr


def test_item_partial_read_of_a_sharded_array_reads_only_the_slice(cluster):
    """A 2-D slice through a 3-D array: sharded, only the inner chunks it touches (and the shard
    index) are read; unsharded, every whole chunk it touches."""
    data = np.random.default_rng(3).random((32, 256, 256)).astype("f4")  # 8 MiB
    slice_bytes = 256 * 256 * 4
    sharded = cluster.zarr_store(namespace="partial-sharded")
    a = zarr.create_array(sharded, name="v", shape=data.shape, chunks=(4, 64, 64), shards=(32, 256, 256),
                          dtype="f4", compressors=None)
    a[...] = data
    plain = cluster.zarr_store(namespace="partial-plain")
    b = zarr.create_array(plain, name="v", shape=data.shape, chunks=(32, 64, 64), dtype="f4", compressors=None)
    b[...] = data
    results = {}
    for label, store in (("sharded", sharded), ("plain", plain)):
        ro = zarr.open_array(store.with_read_only(True), path="v", mode="r")
        ro.store.stats.update(reads=0, bytes_read=0)
        np.testing.assert_array_equal(ro[5], data[5])
        results[label] = dict(ro.store.stats)
    # sharded: 16 inner chunks of 4x64x64 (64 KiB each) + the shard index (16 bytes per chunk + crc32c)
    assert results["sharded"]["bytes_read"] <= 4 * slice_bytes + 128 * 16 + 4, results
    assert results["plain"]["bytes_read"] >= data.nbytes, results  # whole 32-deep chunks
    assert results["sharded"]["bytes_read"] * 4 < results["plain"]["bytes_read"]


def _writer(store, rows: slice, seed: int) -> None:
    a = zarr.open_array(store, path="w", mode="r+")
    a[rows] = np.full((rows.stop - rows.start, 64), seed, dtype="i4")


def _claimer(store, who: int) -> None:
    from zarr.core.buffer import default_buffer_prototype as proto
    sync(store.set_if_not_exists("claim", proto().buffer.from_bytes(str(who).encode())))


def test_item_concurrent_writers_in_separate_processes(cluster):
    store = cluster.zarr_store(namespace="concurrent")
    zarr.create_array(store, name="w", shape=(400, 64), chunks=(10, 64), dtype="i4", fill_value=-1)
    ctx = multiprocessing.get_context("spawn")  # each process unpickles the store and connects itself
    procs = [ctx.Process(target=_writer, args=(store, slice(i * 100, (i + 1) * 100), i)) for i in range(4)]
    procs += [ctx.Process(target=_claimer, args=(store, i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    got = zarr.open_array(store, path="w", mode="r")[...]
    np.testing.assert_array_equal(got, np.repeat(np.arange(4, dtype="i4"), 100)[:, None] * np.ones(64, "i4"))
    claim = sync(store.get("claim", default_buffer_prototype())).to_bytes()
    assert claim in {b"0", b"1", b"2", b"3"}
    assert sorted(keys(store.list_prefix("w/c/"))) == sorted(f"w/c/{i}/0" for i in range(40))


def test_item_values_above_one_rados_write_are_refused_before_sending(cluster):
    store = cluster.zarr_store(namespace="toolarge")
    assert store.max_value_size == 90 * 2**20  # osd_max_write_size (90 MiB) < osd_max_object_size (128 MiB)
    a = zarr.create_array(store, name="big", shape=(100 * 2**20,), chunks=(100 * 2**20,), dtype="u1",
                          compressors=None)
    with pytest.raises(ra.ValueTooLargeError, match="osd_max_write_size"):
        a[...] = 1
    assert keys(store.list_prefix("big/c")) == [] and sync(store.get("big/c/0", default_buffer_prototype())) is None


def test_item_s3_store_on_radosgw_in_one_call(cluster):
    s3 = ra.s3_store(cluster, bucket="arrays-test")
    a = zarr.create_array(s3, name="s", shape=(100, 100), chunks=(30, 30), dtype="f8")
    data = np.random.default_rng(4).random((100, 100))
    a[...] = data
    np.testing.assert_array_equal(zarr.open_array(ra.s3_store(cluster, bucket="arrays-test", read_only=True),
                                                  path="s", mode="r")[...], data)
    objs = cluster.s3_client().list_objects_v2(Bucket="arrays-test")["Contents"]
    assert {o["Key"] for o in objs} >= {"s/zarr.json", "s/c/0/0", "s/c/3/3"}


def state_args(cluster) -> list[str]:
    return ["--state-dir", str(cluster.state_dir)]


def test_item_cli_import_export_ls_info_and_interop(cluster, tmp_path):
    """npy and HDF5 in, zarr folder (byte-identical to the stored objects, opens with plain zarr
    and tensorstore), npy and HDF5 out."""
    h5py = pytest.importorskip("h5py")
    data = np.random.default_rng(5).random((30, 40, 50)).astype("f4")
    np.save(tmp_path / "v.npy", data)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["grid"] = np.arange(120 * 70, dtype="i8").reshape(120, 70)
    ns = ["--namespace", "cli"]
    r = cli("array", "import", *state_args(cluster), *ns, tmp_path / "v.npy", "vol",
            "--chunks", "5,20,25", "--shards", "10,40,50")
    assert r.returncode == 0, r.stderr
    r = cli("array", "import", *state_args(cluster), *ns, tmp_path / "m.h5", "sub/grid", "--chunks", "50,70")
    assert r.returncode == 0, r.stderr
    ls = cli("array", "ls", *state_args(cluster), *ns, "--json")
    assert ls.returncode == 0, ls.stderr
    listed = {d["name"]: d for d in json.loads(ls.stdout)}
    assert listed["vol"]["shards"] == [10, 40, 50] and listed["sub/grid"]["shape"] == [120, 70]
    info = cli("array", "info", *state_args(cluster), *ns, "vol", "--json")
    assert info.returncode == 0 and '"nchunks_initialized": 24' in info.stdout, info.stdout
    # export
    for dest in ("out.zarr", "out.npy", "out.h5"):
        r = cli("array", "export", *state_args(cluster), *ns, "vol", tmp_path / dest)
        assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), data)
    with h5py.File(tmp_path / "out.h5") as f:
        np.testing.assert_array_equal(f["vol"][...], data)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[...], data)
    store = cluster.zarr_store(namespace="cli", read_only=True)
    stored = keys(store.list_prefix("vol/"))
    files = sorted(str(p.relative_to(tmp_path / "out.zarr")) for p in (tmp_path / "out.zarr").rglob("*")
                   if p.is_file())
    assert files == sorted(k[len("vol/"):] for k in stored)
    for k in stored:
        assert (tmp_path / "out.zarr" / k[len("vol/"):]).read_bytes() == \
            sync(store.get(k, default_buffer_prototype())).to_bytes(), k
    ts = pytest.importorskip("tensorstore")
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "out.zarr")}}).result()
    np.testing.assert_array_equal(t.read().result(), data)


def test_item_cli_import_resumes_skipping_units_present_and_equal(cluster, tmp_path):
    data = np.random.default_rng(6).random((40, 64)).astype("f8")
    np.save(tmp_path / "r.npy", data)
    args = ["array", "import", *state_args(cluster), "--namespace", "resume", tmp_path / "r.npy", "r",
            "--chunks", "10,32"]
    assert cli(*args).returncode == 0
    store = cluster.zarr_store(namespace="resume")
    # as if the first run died: two units never written, one written with other values
    sync(store.delete("r/c/0/0"))
    sync(store.delete("r/c/3/1"))
    zarr.open_array(store, path="r", mode="r+")[10:20, 0:32] = 0.5
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "3 units written, 5 already present and equal" in r.stderr
    np.testing.assert_array_equal(zarr.open_array(store, path="r", mode="r")[...], data)


def test_item_cli_bad_input_one_line_exit_2_nothing_created(cluster, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    ns = ["--namespace", "badinput"]
    cases = [
        ("import", tmp_path / "missing.npy", "x"),
        ("import", tmp_path / "x.npy", "x", "--chunks", "2"),
        ("import", tmp_path / "x.npy", "x", "--chunks", "2,a"),
        ("import", tmp_path / "x.npy", "x", "--shards", "4,4"),
        ("info", "nope"),
        ("export", "nope", tmp_path / "o.npy"),
    ]
    for case in cases:
        r = cli("array", case[0], *state_args(cluster), *ns, *case[1:])
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (case, r.stderr)
    assert keys(cluster.zarr_store(namespace="badinput").list()) == []
    assert not (tmp_path / "o.npy").exists()


def test_item_full_store_clear_error_nothing_half_written(tmp_path):
    """Writes at full speed into a 1 GiB cluster until it is full: StoreFullError at once,
    every listed key reads back, the refused key is absent, and deleting makes room again."""
    name = unique_name("arf")
    with ramburst.deploy(name=name, state_dir=str(tmp_path / name), size="1G") as c:
        store = c.zarr_store(namespace="fill")
        a = zarr.create_array(store, name="f", shape=(1024, 2**20), chunks=(1, 2**20), dtype="f4",
                              compressors=None)  # 4 GiB of 4 MiB chunks
        rng = np.random.default_rng(7)
        digests = {}
        with pytest.raises(ra.StoreFullError, match="full"):
            for i in range(0, 1024, 16):
                block = rng.random((16, 2**20), dtype="f4")
                a[i:i + 16] = block
                digests.update({f"f/c/{i + j}/0": hashlib.sha256(block[j].tobytes()).hexdigest()
                                for j in range(16)})
        proto = default_buffer_prototype()
        with pytest.raises(ra.StoreFullError):
            sync(store.set("refused", proto.buffer.from_bytes(b"x" * 2**22)))
        assert sync(store.get("refused", proto)) is None
        listed = keys(store.list_prefix("f/c/"))
        assert listed and "refused" not in keys(store.list())
        for k in listed:  # every listed key has a whole value
            v = sync(store.get(k, proto)).to_bytes()
            assert len(v) == 2**22 and (k not in digests or hashlib.sha256(v).hexdigest() == digests[k])
        sync(store.delete_dir("f"))  # deletes pass on a full cluster
        deadline = time.monotonic() + 60
        while True:
            try:
                sync(store.set("after", proto.buffer.from_bytes(b"y" * 2**22)))
                break
            except ra.StoreFullError:
                assert time.monotonic() < deadline, "still full a minute after deleting"
                time.sleep(1)
        assert sync(store.get("after", proto)).to_bytes() == b"y" * 2**22


def test_item_import_killed_mid_way_then_resumed(cluster, tmp_path):
    """`kill -9` of an import while it writes: every listed unit reads back whole, and the
    re-run writes only what is missing."""
    data = np.random.default_rng(9).random((256, 256, 64)).astype("f4")  # 16 MiB, 256 units of 64 KiB
    np.save(tmp_path / "k.npy", data)
    args = ["array", "import", *state_args(cluster), "--namespace", "killed", tmp_path / "k.npy", "k",
            "--chunks", "1,256,64", "--jobs", "2"]
    proc = subprocess.Popen([RAMBURST, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = cluster.zarr_store(namespace="killed", read_only=True)
    deadline = time.monotonic() + 60
    while len(keys(store.list_prefix("k/c/"))) < 20:
        assert proc.poll() is None and time.monotonic() < deadline, "import ended before it could be killed"
        time.sleep(0.02)
    proc.kill()
    proc.wait(30)
    listed = keys(store.list_prefix("k/c/"))
    assert 20 <= len(listed) < 256, len(listed)
    a = zarr.open_array(store, path="k", mode="r")
    for key in listed:  # every listed unit holds its whole, right values
        i = int(key.split("/")[2])
        np.testing.assert_array_equal(a[i], data[i])
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    written, skipped = (int(w) for w in re.search(r"(\d+) units written, (\d+) already", r.stderr).groups())
    assert written + skipped == 256 and skipped >= len(listed), r.stderr
    np.testing.assert_array_equal(zarr.open_array(store, path="k", mode="r")[...], data)
