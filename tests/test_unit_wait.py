"""wait_until: the one polling loop of `up` (no daemons)."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

import ramburst
from ramburst.errors import DeployError, UsageError
from ramburst.instance import InstanceLock
from ramburst.process import ProcessRecord, stop_processes
from ramburst.wait import Timeouts, wait_until


def test_returns_the_first_truthy_value():
    values = iter([0, None, "", {"up": 3}])
    assert wait_until(lambda: next(values), 5, "x", interval=0) == {"up": 3}


def test_timeout_says_what_it_waited_for():
    with pytest.raises(DeployError, match=r"^timed out after 0 s waiting for the mount at /m$"):
        wait_until(lambda: False, 0.05, "the mount at /m", interval=0.01)


def test_failure_text_replaces_the_default():
    with pytest.raises(DeployError, match=r"^only 0 of 2 OSDs came up within 0 s$"):
        wait_until(lambda: False, 0.05, "the OSDs", interval=0.01,
                   failure=lambda: "only 0 of 2 OSDs came up within 0 s")


def test_check_raising_stops_early():
    def dead():
        raise DeployError("mon.a exited")

    with pytest.raises(DeployError, match="mon.a exited"):
        wait_until(lambda: False, 60, "the monitor", check=dead)


def test_cancel_stops_the_wait():
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    with pytest.raises(DeployError, match="waiting for the metrics endpoint cancelled"):
        wait_until(lambda: False, 60, "the metrics endpoint", cancel=cancel)


def test_timeouts_keep_the_values_of_the_literals():
    assert (Timeouts.MON_ANSWERS, Timeouts.OSDS_UP, Timeouts.MDS_ACTIVE, Timeouts.RGW_HTTP, Timeouts.S3_SIGNED,
            Timeouts.MOUNTED, Timeouts.UNMOUNT, Timeouts.LOCK_AFTER_MKDIR) == (30, 60, 60, 60, 60, 60, 5, 5)


# Loops that are not waits for a condition: the watchdog's and `run`'s supervision ticks (run's
# sweep escalates SIGTERM to SIGKILL, it never gives up), an admin socket's reply deadline
# (socket timeouts, no polling), a benchmark's fixed duration; stage's pauses, not waits: rank 0's
# hand-out tick (handout.py), a retry's back-off (rank.py), a test-only delay (engine.py).
NOT_WAITS = {"ceph/watchdog.py", "run.py", "ceph/asok.py", "bench/workloads.py", "wait.py",
             "stage/handout.py", "stage/rank.py", "stage/engine.py"}


def test_item3_every_wait_loop_goes_through_wait_until():
    package = Path(ramburst.__file__).parent
    loops = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel in NOT_WAITS:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "time.sleep(" in line or "deadline" in line:
                loops.append(f"{rel}:{n}: {line.strip()}")
    assert not loops, "hand-written wait loops:\n" + "\n".join(loops)


def test_item3_stop_processes_waits_until_the_process_is_gone(tmp_path):
    conf = str(tmp_path / "ceph.conf")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", conf], start_new_session=True)
    try:
        record = ProcessRecord("fake.0", child.pid, psutil.Process(child.pid).create_time(), sys.executable, conf)
        wait_until(record.alive, 5, "the child", interval=0.01)
        assert stop_processes([record]) == ["fake.0"]
        assert child.poll() is not None or not record.alive()
        assert stop_processes([record]) == []  # gone: nothing signalled again
    finally:
        child.kill()
        child.wait()


def test_item3_lock_waits_for_a_holder_that_lets_go(tmp_path):
    holder = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    threading.Timer(0.2, os.close, [holder]).start()
    with pytest.raises(UsageError, match=r"^instance 'x' is being deployed or removed by pid \d+; nothing was"):
        InstanceLock(tmp_path, "x").acquire()
    lock = InstanceLock(tmp_path, "x").acquire(wait=Timeouts.LOCK_AFTER_MKDIR)
    assert lock.fd is not None
    lock.release()
