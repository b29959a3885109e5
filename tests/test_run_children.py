"""Issue 10 item 9: nothing CMD starts outlives the storage, however it detaches itself."""
from __future__ import annotations

import signal
import subprocess
import time

import psutil
import pytest

from conftest import RAMBURST, assert_nothing_left
from helpers import wait_until_up

pytestmark = pytest.mark.ceph


def start_run(state, name, *options, cmd, grace=None):
    args = [RAMBURST, "run", "--name", name, "--state-dir", str(state), "--size", "1G", *options]
    if grace is not None:
        args += ["--grace", str(grace)]
    return subprocess.Popen([*args, "--", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def alive(pidfile) -> list[int]:
    """The pids CMD's children wrote, still running (zombies do not count)."""
    pids = [int(x) for x in pidfile.read_text().split()] if pidfile.exists() else []
    left = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            pass
    return left


def kill_all(pids) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass


def test_item9_setsid_and_double_fork_children_end_before_down(instance_dir, tmp_path):
    """CMD exits at once, leaving a `setsid` child and a double-forked grandchild behind."""
    name, state = instance_dir
    pidfile = tmp_path / "pids"
    script = (f"exec >/dev/null 2>&1; setsid sleep 600 & echo $! >> {pidfile}; "
              f"( sleep 601 & echo $! >> {pidfile} ); "
              f"( setsid sh -c 'trap \"\" TERM; echo $$ >> {pidfile}; exec sleep 602' & ); "
              f"sleep 0.5; exit 3")
    proc = start_run(state, name, cmd=["sh", "-c", script])
    try:
        out, err = proc.communicate(timeout=120)
        left = alive(pidfile)
    finally:
        kill_all(alive(pidfile))
    assert proc.returncode == 3, err
    assert len(pidfile.read_text().split()) == 3
    assert left == [], f"CMD's children outlived `run`: {left}"
    assert_nothing_left(name, state)


def test_item9_daemonised_child_with_open_file_on_mount_ends_on_sigterm(instance_dir, tmp_path):
    """SIGTERM path: a double-forked child that ignores SIGTERM and holds a file open on the
    fs mount is killed (after the grace) before the unmount, and nothing is left."""
    name, state = instance_dir
    pidfile, mnt = tmp_path / "pids", tmp_path / "mnt"
    script = (f"( exec >/dev/null 2>&1; setsid sh -c 'trap \"\" TERM; exec 3>\"$RAMBURST_MOUNT/held\"; "
              f"echo $$ >> {pidfile}; "
              f"while :; do sleep 1; done' & ); sleep 600")
    proc = start_run(state, name, "--service", "fs", "--mount", str(mnt), cmd=["sh", "-c", script], grace=2)
    try:
        wait_until_up(state, proc)
        deadline = time.monotonic() + 30
        while not alive(pidfile):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
        left = alive(pidfile)
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(alive(pidfile))
    assert left == [], f"the daemonised child outlived `run`: {left}"
    assert proc.returncode in (143, 137), err
    assert_nothing_left(name, state)
    assert str(mnt) not in open("/proc/mounts").read()
