"""Issue 13, the performance remainder: what stage-in does and does not do on the way, on a real instance.

Durations are never asserted (the machine is shared); the tests count what the daemons did instead.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from test_stage import make_tree, snapshot, stage, summary, up

import ramburst

from conftest import assert_nothing_left, cli, unique_name

pytestmark = pytest.mark.ceph
MiB = 2**20


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stageperf")
    name = unique_name("bsp")
    state = folder / name
    r = up("--name", name, "--state-dir", state, "--size", "1G", "--service", "pool", "--service", "fs",
           "--mount", folder / "mnt")
    assert r.returncode == 0, r.stderr
    try:
        yield state, folder / "mnt"
    finally:
        cli("down", "--state-dir", state)
    assert_nothing_left(name, state)


def osd_counters(state) -> dict:
    """osd.0's perf counters (its admin socket): bytes read out of and written into it so far."""
    ram_dir = json.loads((state / "hosts" / "h0.json").read_text())["ram_dir"]
    out = subprocess.run(["ceph", "--admin-daemon", f"{ram_dir}/osd.0.asok", "perf", "dump"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["osd"]


def test_item1_pool_stage_in_trusts_the_write_ack_read_back_finds_flip_and_truncation(inst, tmp_path):
    """Into the pool, the xxh3 of the bytes sent is journaled and librados's write ack is trusted: no
    byte is read back (the OSD's read counter barely moves). `--read-back` still reads everything and
    finds a bit flipped and an object truncated in the pool since; the next run copies those again."""
    state, _ = inst
    tree = make_tree(tmp_path / "src")
    before = osd_counters(state)["op_r_out_bytes"]
    s = summary(stage(state, "in", tree, "--to", "pool:ack", "--json"))
    read = osd_counters(state)["op_r_out_bytes"] - before
    assert s["errors"] == [] and s["bytes"] > 20 * MiB
    assert read < MiB, f"stage-in read {read} bytes back from the OSD"
    assert s["verify"] == "write ack"
    cluster = ramburst.attach(state_dir=state)
    with cluster.ioctx() as io:                      # a bit flipped in extent 1 of big.bin (8 MiB extents)
        io.set_namespace("ramburst-extents")
        part = bytearray(io.read("ack/tree/big.bin.1", 8 * MiB))
        part[12345] ^= 0x04
        io.write_full("ack/tree/big.bin.1", bytes(part))
        io.set_namespace("")
        io.trunc("ack/tree/sub/s20.dat", 100)        # a small file cut short
    cluster.close()
    r = stage(state, "in", tree, "--to", "pool:ack", "--read-back")
    assert r.returncode == 1, r.stderr
    assert "tree/big.bin: corrupted" in r.stderr and "tree/sub/s20.dat: truncated" in r.stderr, r.stderr
    fixed = summary(stage(state, "in", tree, "--to", "pool:ack", "--read-back", "--json"))
    assert fixed["files"] == 2 and fixed["errors"] == [] and fixed["verify"] == "read back"
    dest = tmp_path / "back"
    summary(stage(state, "out", dest, "--from", "pool:ack", "--json"))
    assert snapshot(dest) == snapshot(tree.parent)


def fuse_counters(state) -> dict:
    """The mount's ceph-fuse: bytes it sent to the OSDs and requests it made of the MDS so far."""
    ram_dir = json.loads((state / "hosts" / "h0.json").read_text())["ram_dir"]
    out = subprocess.run(["ceph", "--admin-daemon", f"{ram_dir}/fuse.h0.asok", "perf", "dump"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    dump = json.loads(out.stdout)
    return {"sent": dump["objecter"]["op_send_bytes"], "mds": dump["client"]["reply"]["avgcount"]}


def test_item2_fs_stage_in_bypasses_ceph_fuse_trusts_the_ack_read_back_finds_flip_and_truncation(inst, tmp_path):
    """Into the fs, stage writes through libcephfs in its own process, not through the mount: ceph-fuse
    sends none of the data and makes ~no MDS requests for it (before: every byte and ~4 requests per
    file went through FUSE, ~2 ms of ceph-fuse CPU per small file). As into the pool, the write ack
    is the check (writes are synchronous, each file fsynced before its rename): nothing is read back.
    The tree is whole and exact through the mount right after. `--read-back` still reads everything
    and finds a byte changed and a file cut short through the mount; the next run copies those again."""
    state, mnt = inst
    tree = make_tree(tmp_path / "src", small=200)
    fuse0, osd0 = fuse_counters(state), osd_counters(state)["op_r_out_bytes"]
    s = summary(stage(state, "in", tree, "--to", "fs:/direct", "--json"))
    fuse1, read = fuse_counters(state), osd_counters(state)["op_r_out_bytes"] - osd0
    assert s["errors"] == [] and s["files"] == 203 and s["bytes"] > 20 * MiB
    assert fuse1["sent"] - fuse0["sent"] < MiB, f"ceph-fuse sent {fuse1['sent'] - fuse0['sent']} bytes of the stage"
    assert fuse1["mds"] - fuse0["mds"] < 100, f"ceph-fuse made {fuse1['mds'] - fuse0['mds']} MDS requests for 203 files"
    assert read < MiB, f"stage-in read {read} bytes back from the OSD"
    assert s["verify"] == "write ack"
    def staged():
        return {k: v for k, v in snapshot(mnt / "direct").items() if not k.startswith(".ramburst-stage")}
    assert staged() == snapshot(tree.parent)   # through the mount, at once
    with open(mnt / "direct" / "tree" / "big.bin", "r+b") as f:  # a byte changed in extent 1 (8 MiB extents)
        f.seek(8 * MiB + 12345)
        b = f.read(1)
        f.seek(8 * MiB + 12345)
        f.write(bytes([b[0] ^ 0x04]))
    os.truncate(mnt / "direct" / "tree" / "sub" / "s20.dat", 100)
    r = stage(state, "in", tree, "--to", "fs:/direct", "--read-back")
    assert r.returncode == 1, r.stderr
    assert "tree/big.bin: corrupted" in r.stderr and "tree/sub/s20.dat: truncated" in r.stderr, r.stderr
    fixed = summary(stage(state, "in", tree, "--to", "fs:/direct", "--read-back", "--json"))
    assert fixed["files"] == 2 and fixed["errors"] == [] and fixed["verify"] == "read back"
    assert staged() == snapshot(tree.parent)


def test_item3_pipeline_bench_counts_the_bytes_over_the_slow_link(tmp_path):
    """scripts/bench_pipeline.py, small: directly on the shared filesystem the raw input crosses the
    link three times and the intermediate twice (written, read); staged, the input crosses once.
    Its storage host, mounts, instances and namespace are gone afterwards."""
    import sys
    from pathlib import Path

    import netns

    if why := netns.available():
        pytest.skip(why)
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_pipeline.py"
    r = subprocess.run([sys.executable, str(script), "--data", "16M", "--volumes", "2", "--size", "1G", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    data = 16 * MiB / 1e6
    for row in rows:
        assert row["results"] == 2
        if row["mode"] == "direct":
            assert 4 * data <= row["link_read_MB"] < 4.5 * data and data <= row["link_write_MB"] < 1.3 * data
        else:
            assert data <= row["link_read_MB"] < 1.5 * data and row["link_write_MB"] < 0.2 * data
    assert "rbmh1" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "ramburst-bench-pipeline" not in Path("/proc/mounts").read_text()
    assert not [p for p in Path("/dev/shm").iterdir() if "apipe" in p.name]
