"""Issue 16, the rest: `stage in --codec` (volumes in as compressed zarr arrays, out byte-identical),
`array info` showing the whole codec chain, and a resumed lossy import skipping its done units."""
from __future__ import annotations

import json
import re
import subprocess
import time

import numpy as np
import pytest

import ramburst
import ramburst.api

zarr = pytest.importorskip("zarr")
pytest.importorskip("ramburst.arrays")
from zarr.core.sync import sync  # noqa: E402

import ramburst.codecs  # noqa: E402, F401  (registers the codecs with zarr in this process too)

from conftest import RAMBURST, cli, unique_name  # noqa: E402
from helpers import kill_9_once, volume_like  # noqa: E402

pytestmark = pytest.mark.ceph


def up_waiting(name, state_dir):
    """ramburst.api.up, waiting while other test runs on this shared machine hold the RAM."""
    deadline = time.monotonic() + 300
    while True:
        try:
            return ramburst.api.up(name=name, state_dir=str(state_dir), size="512M", services=("pool",))
        except ramburst.errors.UsageError as e:
            if "promised to other instances" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = unique_name("cst")
    c = up_waiting(name, tmp_path_factory.mktemp("cstage") / name)
    try:
        yield c
    finally:
        c.down()


def keys(store, prefix: str) -> list[str]:
    async def collect():
        return [k async for k in store.list_prefix(prefix)]
    return sync(collect())


def test_item2_array_info_shows_the_serializer_and_the_whole_codec_chain(cluster, tmp_path):
    np.save(tmp_path / "v.npy", volume_like((32, 32, 32), "uint16", seed=1))
    r = cli("array", "import", "--state-dir", cluster.state_dir, "--namespace", "info", tmp_path / "v.npy", "v",
            "--chunks", "16,16,16", "--shards", "32,32,32", "--codec", "volume")
    assert r.returncode == 0, r.stderr
    r = cli("array", "info", "--state-dir", cluster.state_dir, "--namespace", "info", "v", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["serializer"] == {"name": "ramburst.volume", "configuration": {"level": 3, "neighbours": 2}}
    outer = d["codecs"]
    assert [c["name"] for c in outer] == ["sharding_indexed"], outer
    assert outer[0]["configuration"]["codecs"][0]["name"] == "ramburst.volume"


def test_item3_resumed_lossy_import_skips_the_units_already_done(cluster, tmp_path):
    """`kill -9` of a lossy import mid-way; the re-run must not rewrite what is stored within the bound
    (it compared decoded values with the source for equality, which a lossy unit never passes)."""
    data = np.random.default_rng(3).random((256, 256, 256), dtype=np.float32)  # 64 MiB, 256 units of 256 KiB
    np.save(tmp_path / "k.npy", data)
    args = ["array", "import", "--state-dir", cluster.state_dir, "--namespace", "lossy", tmp_path / "k.npy", "k",
            "--chunks", "1,256,256", "--jobs", "1", "--codec", "sz3:0.01"]
    proc = subprocess.Popen([RAMBURST, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = cluster.zarr_store(namespace="lossy", read_only=True)
    kill_9_once(proc, lambda: len(keys(store, "k/c/")) >= 10, "import")
    listed = len(keys(store, "k/c/"))
    assert 10 <= listed < 256, listed
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    written, skipped = (int(w) for w in re.search(r"(\d+) units written, (\d+) already", r.stderr).groups())
    assert written + skipped == 256 and skipped >= listed and written <= 256 - listed, r.stderr
    out = zarr.open_array(store, path="k", mode="r")[...]
    assert np.max(np.abs(out.astype(np.float64) - data)) <= 0.01
    again = cli(*args)
    assert again.returncode == 0 and "0 units written, 256 already" in again.stderr, again.stderr


# -- item 1: stage in --codec ------------------------------------------------------------------------------------
def make_volumes(root):
    """A tree as a scientist has it: volumes (smooth uint16, Fortran-order int16, big-endian uint16), a
    float64 volume the volume codec does not take, a text file, a nested folder with odd mtimes and modes."""
    import os

    t = root / "run1"
    (t / "raw").mkdir(parents=True)
    vol = volume_like((96, 128, 112), "uint16", seed=5)                      # 2.6 MiB, smooth + noise
    np.save(t / "vol.npy", vol)
    np.save(t / "raw" / "fortran.npy", np.asfortranarray(volume_like((20, 30, 40), "int16", seed=6)))
    np.save(t / "raw" / "big_endian.npy", volume_like((16, 24, 8), ">u2", seed=7))
    np.save(t / "raw" / "f64.npy", np.random.default_rng(8).random((10, 10, 10)))
    import h5py

    with h5py.File(t / "raw" / "scan.h5", "w") as f:          # contiguous: its bytes are the array's
        f.create_dataset("entry/data", data=volume_like((24, 32, 40), "<i2", seed=9))
        f.create_dataset("entry/angles", data=np.linspace(0, 180, 24))
        f.attrs["instrument"] = "beamline 13"
    with h5py.File(t / "raw" / "chunked.h5", "w") as f:       # chunked + gzip: staged as a plain file
        f.create_dataset("data", data=volume_like((8, 16, 16), "uint16", seed=10), chunks=(4, 16, 16),
                         compression="gzip")
    (t / "notes.txt").write_text("acquired 2026-11-26\n")
    os.chmod(t / "raw" / "fortran.npy", 0o600)
    os.utime(t / "vol.npy", ns=(1_500_000_000_123_456_789,) * 2)
    os.utime(t / "raw", ns=(1_400_000_000_000_000_000,) * 2)
    return t, vol


def snapshot(root):
    import os
    import stat

    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = p.relative_to(root).as_posix()
        body = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_mtime_ns, body)
    assert os.sep == "/"
    return out


def stage(cluster, *args):
    return cli("stage", *args, "--state-dir", cluster.state_dir, "--extent", "1M")


@pytest.mark.parametrize("codec", ["volume", "zstd"])
def test_item1_stage_in_codec_round_trip_byte_identical_and_smaller(cluster, tmp_path, codec):
    tree, vol = make_volumes(tmp_path / "src")
    before = snapshot(tree.parent)
    prefix = f"cin-{codec}"
    dry = json.loads(stage(cluster, "in", tree, "--to", f"pool:{prefix}", "--codec", codec, "--dry-run",
                           "--json").stdout)
    assert dry["files_total"] == 7 and dry["volumes"]["files_total"] == (4 if codec == "volume" else 5), dry
    assert keys(cluster.zarr_store(namespace="arrays", read_only=True), prefix) == []
    r = stage(cluster, "in", tree, "--to", f"pool:{prefix}", "--codec", codec, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    v = s["volumes"]
    coded = {"run1/vol.npy", "run1/raw/fortran.npy", "run1/raw/big_endian.npy", "run1/raw/scan.h5"}
    coded |= {"run1/raw/f64.npy"} if codec == "zstd" else set()              # volume does not take float64
    assert v["files"] == len(coded) and v["skipped"] == 0 and set(v["arrays"]) == coded, s
    total = sum((tree / rel.split("/", 1)[1]).stat().st_size for rel in v["arrays"])
    assert v["bytes"] == total and v["stored_bytes"] < total * (0.5 if codec == "volume" else 0.9), v
    from ramburst.layout import Layout

    report = json.loads(Layout(cluster.state_dir).stage_progress.read_text())   # what the dashboard shows
    assert report["target"] == f"pool:{prefix}/ (volumes)" and report["phase"] == "done", report
    assert report["bytes_done"] == report["bytes_total"] == 2 * total and report["files_done"] == len(coded)
    print(f"stage in --codec {codec}: {total} bytes of volumes stored in {v['stored_bytes']} "
          f"({total / v['stored_bytes']:.2f}x)")
    # the job reads the volume as an array (plain zarr once ramburst.codecs is imported) ...
    root = zarr.open_group(cluster.zarr_store(namespace="arrays", read_only=True), mode="r")
    a = root[f"{prefix}/run1/vol.npy"]
    assert (a.serializer.to_dict()["name"] == "ramburst.volume") == (codec == "volume")
    np.testing.assert_array_equal(a[10:20], vol[10:20])
    import h5py

    with h5py.File(tree / "raw" / "scan.h5", "r") as f:
        np.testing.assert_array_equal(root[f"{prefix}/run1/raw/scan.h5"][...], f["entry/data"][...])
    # ... and it is not in the pool a second time as a plain object
    io = cluster.ioctx()
    names = {o.key for o in io.list_objects() if o.key.startswith(prefix + "/")}
    assert f"{prefix}/run1/notes.txt" in names
    assert not any(n.endswith(tuple(coded)) for n in names), names
    # stage out: every file byte for byte, with its mode and mtime, folders' mtimes too
    r = stage(cluster, "out", "--from", f"pool:{prefix}", tmp_path / "back", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["volumes"]["files"] == len(coded) and out["errors"] == []
    assert snapshot(tmp_path / "back") == before
    # again: nothing to do either way
    again = json.loads(stage(cluster, "in", tree, "--to", f"pool:{prefix}", "--codec", codec, "--json").stdout)
    assert again["volumes"]["skipped"] == len(coded) and again["volumes"]["files"] == 0
    again = json.loads(stage(cluster, "out", "--from", f"pool:{prefix}", tmp_path / "back", "--json").stdout)
    assert again["volumes"]["skipped"] == len(coded) and again["volumes"]["files"] == 0


def test_item1_corrupt_stored_chunk_detected_on_stage_out(cluster, tmp_path):
    tree, _ = make_volumes(tmp_path / "src")
    r = stage(cluster, "in", tree / "vol.npy", "--to", "pool:ccor", "--codec", "volume")
    assert r.returncode == 0, r.stderr
    io = cluster.ioctx()
    io.set_namespace("arrays")
    chunk = sorted(o.key for o in io.list_objects() if o.key.startswith("ccor/vol.npy/c/"))[0]
    data = bytearray(io.read(chunk, 2**24))
    data[len(data) // 2] ^= 0x10                                             # one bit flipped in RAM
    io.write_full(chunk, bytes(data))
    r = stage(cluster, "out", "--from", "pool:ccor", tmp_path / "back")
    assert r.returncode == 1, r.stderr
    assert "vol.npy: not restored" in r.stderr and "CodecError" in r.stderr, r.stderr
    assert not (tmp_path / "back" / "vol.npy").exists()
    assert list((tmp_path / "back").iterdir()) == [] if (tmp_path / "back").exists() else True


def test_item1_bad_or_lossy_codec_one_line_exit_2_nothing_created(cluster, tmp_path):
    tree, _ = make_volumes(tmp_path / "src")
    for spec in ["nope", "sz3:0.01", "zfp:1e-3", "quant:1", "volume:x", "zstd:99", ""]:
        r = stage(cluster, "in", tree, "--to", "pool:cbad", "--codec", spec)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (spec, r.stderr)
        assert r.stderr.startswith("ramburst: error: --codec"), r.stderr
    assert "lossy" in stage(cluster, "in", tree, "--codec", "sz3:0.01").stderr
    io = cluster.ioctx()
    assert [o.key for o in io.list_objects() if o.key.startswith("cbad")] == []
    io.set_namespace("arrays")
    assert [o.key for o in io.list_objects() if o.key.startswith("cbad")] == []


def test_item1_stage_in_codec_killed_then_resumed_writes_only_the_rest(cluster, tmp_path):
    """`kill -9` of `stage in --codec` mid-volume: the re-run keeps the chunks already stored (read back
    and equal), writes the rest, and stage out still gives the file back byte for byte."""
    z, y, x = np.ogrid[0:3:128j, 0:3:512j, 0:3:512j]
    noise = np.random.default_rng(9).integers(0, 16, (128, 512, 512), dtype=np.uint16)
    vol = (np.sin(z + y + x) * 1000 + 2000).astype(np.uint16) + noise       # 64 MiB: 16 chunks (8, 512, 512)
    (tmp_path / "src").mkdir()
    np.save(tmp_path / "src" / "k.npy", vol)
    args = ["stage", "in", tmp_path / "src" / "k.npy", "--to", "pool:ckill", "--codec", "volume",
            "--threads", "1", "--state-dir", cluster.state_dir]
    proc = subprocess.Popen([RAMBURST, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = cluster.zarr_store(namespace="arrays", read_only=True)
    kill_9_once(proc, lambda: len(keys(store, "ckill/k.npy/c/")) >= 1, "stage")
    listed = len(keys(store, "ckill/k.npy/c/"))
    total = 16
    assert 1 <= listed < total, listed
    r = cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)["volumes"]
    assert v["files"] == 1 and v["units_skipped"] >= listed and v["units_written"] <= total - listed, v
    r = stage(cluster, "out", "--from", "pool:ckill", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back" / "k.npy").read_bytes() == (tmp_path / "src" / "k.npy").read_bytes()


JOB = """
import sys, numpy as np, ramburst.arrays, ramburst.codecs
a = ramburst.arrays.open(mode="r")["job/run1/vol.npy"]          # the instance from the job's environment
assert a.serializer.to_dict()["name"] == "ramburst.volume"
np.save(sys.argv[1], np.asarray(a[5:7]))
"""


def test_item1_run_stage_codec_job_reads_the_array_and_stage_out_restores(tmp_path):
    """`ramburst run --stage-in --stage-codec volume`: the job reads its volume as a zarr array from the
    cluster; `--stage-out` gives back every file byte for byte."""
    import sys

    tree, vol = make_volumes(tmp_path / "src")
    before = snapshot(tree.parent)
    name = unique_name("crun")
    deadline = time.monotonic() + 300
    while True:
        r = cli("run", "--name", name, "--state-dir", tmp_path / name, "--size", "512M", "--service", "pool",
                "--stage-in", tree, "--stage-to", "pool:job", "--stage-codec", "volume", "--stage-out",
                tmp_path / "back", "--", sys.executable, "-c", JOB, tmp_path / "slab.npy", timeout=300)
        if "promised to other instances" not in r.stderr or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert r.returncode == 0, r.stderr
    assert "4 volume(s) compressed with volume" in r.stderr and "4 volume(s) rebuilt" in r.stderr, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "slab.npy"), vol[5:7])
    assert snapshot(tmp_path / "back") == before


def test_item1_run_with_a_lossy_stage_codec_refused_before_deploying(tmp_path):
    from conftest import ram_roots

    name = unique_name("crun")
    (tmp_path / "in").mkdir()
    r = cli("run", "--name", name, "--state-dir", tmp_path / name, "--size", "1G", "--service", "pool",
            "--stage-in", tmp_path / "in", "--stage-codec", "zfp:0.1", "--", "true")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "lossy" in r.stderr, r.stderr
    assert ram_roots(name) == [] and not (tmp_path / name).exists()


def test_item1_plain_stage_in_after_a_coded_one_wins_on_stage_out(cluster, tmp_path):
    """A volume staged with --codec, then changed and staged again without: stage out must give the new
    file, not rebuild the old one from its array over it."""
    (tmp_path / "src").mkdir()
    f = tmp_path / "src" / "m.npy"
    np.save(f, volume_like((8, 16, 16), "uint16", seed=1))
    assert stage(cluster, "in", f, "--to", "pool:cmix", "--codec", "volume").returncode == 0
    np.save(f, volume_like((8, 16, 16), "uint16", seed=2))
    r = stage(cluster, "in", f, "--to", "pool:cmix")
    assert r.returncode == 0, r.stderr
    r = stage(cluster, "out", "--from", "pool:cmix", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back" / "m.npy").read_bytes() == f.read_bytes()


def test_item1_stage_in_codec_with_two_mpi_ranks(cluster, tmp_path):
    """`stage in --mpi --codec`: the ranks share the plain files, rank 0 compresses the volumes, every rank
    agrees on the summary; stage out gives everything back byte for byte. Two ranks on this host (loopback)."""
    import os
    import shutil

    if shutil.which("mpirun") is None:
        pytest.skip("no mpirun")
    tree, _ = make_volumes(tmp_path / "src")
    for i in range(4):
        (tree / f"plain{i}.bin").write_bytes(os.urandom(3 * 2**20))
    before = snapshot(tree.parent)
    cmd = ["mpirun", "--allow-run-as-root", "-np", "2", "--oversubscribe", "--mca", "btl", "self,tcp",
           "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo",
           RAMBURST, "stage", "in", str(tree), "--to", "pool:cmpi", "--codec", "volume", "--mpi",
           "--state-dir", str(cluster.state_dir), "--extent", "1M", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PMIX_MCA_gds": "hash"})
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads(r.stdout)
    assert s["volumes"]["files"] == 4 and s["errors"] == [] and len(s["per_rank"]) == 2, s
    assert all(b > 0 for b in s["per_rank"]), s["per_rank"]
    r = stage(cluster, "out", "--from", "pool:cmpi", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    assert snapshot(tmp_path / "back") == before
