"""Issue 10, items 4, 5 and 8: the capacity and "no client ever hangs" promises, tested the
way outside probes broke them: fills at full speed with write/delete cycles, a pool filled
beside an fs, and daemons killed (-9) or stopped (-STOP) under an fs client.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

import ramburst
from ramburst.ceph.admin import load_rados
from ramburst.ceph.watchdog import STUCK_AFTER
from ramburst.plan import FULL_HEADROOM

from conftest import assert_nothing_left, cli

pytestmark = pytest.mark.ceph

OBJ = 4 * 2**20
# How long an fs client may wait on a dead backend: the watchdog's STUCK_AFTER, its 1 s
# check, and slack for a loaded 2-core machine. Not a timing claim: only "it ends".
CLIENT_BOUND = STUCK_AFTER + 60


def env_of(state) -> dict:
    return {**os.environ, **json.loads(cli("env", "--state-dir", state, "--json").stdout)}


def daemon_pid(state, name: str) -> int:
    for host in (Path(state) / "hosts").glob("*.json"):
        for p in json.loads(host.read_text())["processes"]:
            if p["name"] == name:
                return p["pid"]
    raise KeyError(name)


def osd_alive(state) -> bool:
    try:
        return psutil.Process(daemon_pid(state, "osd.0")).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def fill_at_full_speed(state, size: int, tag: str) -> dict[str, str]:
    """Fill the pool with the fastest writers at hand: two `rados bench -t 16 -b 4M` plus
    8 librados threads whose acknowledged objects are remembered (name -> sha256)."""
    env = env_of(state)
    seconds = str(int(size / 2**30) * 3 + 5)
    benches = [subprocess.Popen(["rados", "-p", "ramburst", "bench", seconds, "write", "-b", str(OBJ), "-t", "16",
                                 "--no-cleanup", "--run-name", f"{tag}-{i}"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
    rados = load_rados()
    cluster = rados.Rados(conffile=env["CEPH_CONF"], name="client.admin", conf={"rados_osd_op_timeout": "5"})
    cluster.connect(timeout=10)
    acked: dict[str, str] = {}
    failed = threading.Event()
    block = os.urandom(OBJ)
    counter = iter(range(10**9))
    lock = threading.Lock()

    def writer():
        io = cluster.open_ioctx("ramburst")
        try:
            while not failed.is_set():
                with lock:
                    i = next(counter)
                name = f"{tag}-acked-{i}"
                data = i.to_bytes(8, "little") + block[8:]
                try:
                    io.write_full(name, data)
                except rados.Error:
                    failed.set()
                    return
                acked[name] = hashlib.sha256(data).hexdigest()
        finally:
            io.close()

    threads = [threading.Thread(target=writer) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        for b in benches:
            b.wait(timeout=600)
    finally:
        for b in benches:
            if b.poll() is None:
                b.kill()
                b.wait()
        cluster.shutdown()
    assert failed.is_set(), "writing at full speed never failed: the store did not fill"
    return acked


def read_back(state, acked: dict[str, str]) -> list[str]:
    cluster = ramburst.attach(state_dir=state)
    bad = []
    try:
        for name, digest in acked.items():
            if hashlib.sha256(cluster.get(name)).hexdigest() != digest:
                bad.append(name)
    finally:
        cluster.close()
    return bad


def empty_and_wait_for_room(state) -> int:
    """Delete every object (deletes pass a full store), wait until writes are taken again;
    return how many objects there were."""
    rados = load_rados()
    cluster = ramburst.attach(state_dir=state)
    try:
        with cluster.ioctx() as io:
            names = [o.key for o in io.list_objects()]
        for n in names:
            cluster.delete(n)
        deadline = time.monotonic() + 120
        while True:
            try:
                cluster.put("room-again", b"x" * 4096)
                cluster.delete("room-again")
                return len(names)
            except rados.NoSpace:
                assert time.monotonic() < deadline, "no room after deleting everything"
                time.sleep(0.5)
    finally:
        cluster.close()


CYCLES = {"1G": 3, "4G": 2, "8G": 2}


@pytest.mark.parametrize("size", ["1G", "4G", "8G"])
def test_item4_fast_fill_never_aborts_the_osd(instance_dir, size):
    """Before: the second fill of a 1 GiB store aborted its OSD (`ENOSPC from bluestore,
    misconfigured cluster`). Now each fill stops near the size, the OSD lives, data reads back."""
    name, state = instance_dir
    r = cli("up", "--name", name, "--state-dir", state, "--size", size)
    assert r.returncode == 0, r.stderr
    requested = int(size[:-1]) * 2**30
    for cycle in range(CYCLES[size]):
        acked = fill_at_full_speed(state, requested, f"c{cycle}")
        assert osd_alive(state), f"cycle {cycle}: the OSD died: {(state / 'log' / 'osd.0.log').read_text()[-2000:]}"
        assert read_back(state, acked) == [], f"cycle {cycle}: acknowledged objects differ"
        stored = empty_and_wait_for_room(state) * OBJ
        assert 0.5 * requested < stored <= requested + FULL_HEADROOM, stored
        assert osd_alive(state)
    assert "ENOSPC" not in (state / "log" / "osd.0.log").read_text(errors="replace")
    assert cli("down", "--state-dir", state).returncode == 0
    assert_nothing_left(name, state)


def state_of(pid: int) -> str:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return "gone"


def ends_in_time(cmd: list[str], bound: float) -> tuple[bool, str, subprocess.Popen]:
    """Run a client; return whether it ended within `bound` and, if not, its process state."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=bound)
        return True, "", proc
    except subprocess.TimeoutExpired:
        return False, state_of(proc.pid), proc


def release(procs: list[subprocess.Popen], state, stopped: int | None) -> None:
    """Clean-up whatever the test saw: continue a stopped daemon, take the instance down
    (which ends ceph-fuse and so any client stuck on it), then reap the clients."""
    if stopped is not None:
        try:
            os.kill(stopped, signal.SIGCONT)
        except ProcessLookupError:
            pass
    cli("down", "--state-dir", state)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=60)


@pytest.mark.parametrize("daemon,sig", [("osd.0", signal.SIGKILL), ("osd.0", signal.SIGSTOP),
                                        ("mds.a", signal.SIGKILL), ("mds.a", signal.SIGSTOP),
                                        ("fuse.h0", signal.SIGSTOP)],
                         ids=["osd-kill", "osd-stop", "mds-kill", "mds-stop", "fuse-stop"])
def test_item8_fs_client_never_hangs_when_a_daemon_dies(instance_dir, tmp_path, daemon, sig):
    """Before: `dd ... conv=fsync` on the mount sat in D state until `down`. Now the watchdog
    ends ceph-fuse once a request waited STUCK_AFTER s: dd fails (ENOTCONN) and ends."""
    name, state = instance_dir
    mount = tmp_path / "m"
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "fs", "--mount", mount)
    assert r.returncode == 0, r.stderr
    (mount / "before").write_bytes(b"x" * 4096)
    pid = daemon_pid(state, daemon)
    os.kill(pid, sig)
    procs = []
    try:
        ended, how, dd = ends_in_time(["dd", "if=/dev/zero", f"of={mount}/after", "bs=4M", "count=16",
                                       "conv=fsync"], CLIENT_BOUND)
        procs.append(dd)
        assert ended, f"dd on the mount still running after {CLIENT_BOUND:.0f} s, state {how}"
        assert dd.returncode != 0
    finally:
        release(procs, state, pid if sig == signal.SIGSTOP else None)
    assert_nothing_left(name, state)


def test_item5_pool_filled_beside_fs_leaves_no_fs_client_stuck(instance_dir, tmp_path):
    """Before: filling the pool at full speed left every later dd/ls/df on the mount in D
    state until `down`. Now the pool has a quota of its own next to the fs quota, the OSD
    guard holds, and each fs client returns (an error is fine) and none is left in D state."""
    name, state = instance_dir
    mount = tmp_path / "m"
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", "--service", "pool", "--service", "fs",
            "--mount", mount)
    assert r.returncode == 0, r.stderr
    env = env_of(state)
    pools = json.loads(subprocess.run(["ceph", "osd", "pool", "ls", "detail", "-f", "json"], env=env,
                                      capture_output=True, text=True, timeout=60, check=True).stdout)
    quota = next(p["quota_max_bytes"] for p in pools if p["pool_name"] == "ramburst")
    fs_quota = int(os.getxattr(str(mount), "ceph.quota.max_bytes"))
    assert quota > 0 and quota + fs_quota < 2**30, (quota, fs_quota)
    (mount / "before").write_bytes(b"x" * 4096)

    fill_at_full_speed(state, 2**30, "p")
    assert osd_alive(state)
    procs = []
    try:
        for cmd in (["dd", "if=/dev/zero", f"of={mount}/after", "bs=4M", "count=16", "conv=fsync"],
                    ["ls", "-l", str(mount)], ["df", str(mount)]):
            ended, how, p = ends_in_time(cmd, CLIENT_BOUND)
            procs.append(p)
            assert ended, f"{cmd[0]} on the mount still running after {CLIENT_BOUND:.0f} s, state {how}"
        assert osd_alive(state)
    finally:
        release(procs, state, None)
    assert_nothing_left(name, state)
