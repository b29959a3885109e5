"""A failure or an interrupt at any step of `up` removes everything made so far."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import psutil
import pytest

from ramburst.lifecycle.phases import step_names

from conftest import RAMBURST, assert_nothing_left, cli, processes_mentioning

pytestmark = pytest.mark.ceph

STEPS = step_names(("pool",))  # from the code: a new step is covered without editing a list


@pytest.mark.parametrize("step", STEPS)
def test_failure_at_each_step_rolls_back(instance_dir, step):
    name, state = instance_dir
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G", env={"RAMBURST_FAIL_AT": step})
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ramburst: error: ") and f"failure injected at step {step}" in last
    assert "rolled back" in last
    assert_nothing_left(name, state)
    # The logs of what ran are kept beside the state folder, and named in the error.
    log = state.with_name(state.name + ".failed.log")
    if log.exists():
        assert str(log) in last and log.stat().st_mode & 0o777 == 0o600


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never saw {text!r}: {''.join(seen)}")


@pytest.mark.parametrize("step,sig", [("mon-ready", signal.SIGINT), ("osd-up", signal.SIGTERM),
                                      ("pool-verify", signal.SIGTERM), ("osd-mkfs", signal.SIGINT)])
def test_interrupt_rolls_back(instance_dir, step, sig):
    name, state = instance_dir
    proc = subprocess.Popen([RAMBURST, "up", "--name", name, "--state-dir", str(state), "--size", "1G"],
                            stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "RAMBURST_HANG_AT": step})
    try:
        wait_for_line(proc, f"hanging at step {step}")
        assert state.exists()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "interrupted by" in err and "removed" in err
    assert_nothing_left(name, state)


def test_down_after_kill_9_of_every_daemon(instance_dir):
    name, state = instance_dir
    assert cli("up", "--name", name, "--state-dir", state, "--size", "1G").returncode == 0
    meta = json.loads(cli("status", "--state-dir", state, "--json").stdout)
    for d in meta["daemons"]:
        psutil.Process(d["pid"]).kill()
    for d in meta["daemons"]:
        try:
            psutil.Process(d["pid"]).wait(10)
        except psutil.NoSuchProcess:
            pass
    st = cli("status", "--state-dir", state, "--json")
    assert st.returncode == 1
    assert {d["state"] for d in json.loads(st.stdout)["daemons"]} == {"dead"}
    r = cli("down", "--state-dir", state)
    assert r.returncode == 0, r.stderr
    assert_nothing_left(name, state)


def test_up_after_kill_9_of_up_cleans_the_stale_instance(instance_dir):
    name, state = instance_dir
    proc = subprocess.Popen([RAMBURST, "up", "--name", name, "--state-dir", str(state), "--size", "1G"],
                            stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "RAMBURST_HANG_AT": "osd-up"})
    wait_for_line(proc, "hanging at step osd-up")
    proc.kill()
    proc.wait()
    assert processes_mentioning(str(state / "ceph.conf")), "daemons should outlive a killed up"
    r = cli("up", "--name", name, "--state-dir", state, "--size", "1G")
    assert r.returncode == 0, r.stderr
    assert "remains of a dead instance" in r.stderr
    assert cli("down", "--state-dir", state).returncode == 0
    assert_nothing_left(name, state)


def test_pid_reuse_is_never_signalled(tmp_path):
    """A record whose pid now belongs to another process is ignored by down."""
    from ramburst.process import ProcessRecord, stop_processes

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        rec = ProcessRecord("osd.0", sleeper.pid, psutil.Process(sleeper.pid).create_time() - 5,
                            "/usr/bin/ceph-osd", "/nowhere/ceph.conf")
        assert rec.process() is None
        stop_processes([rec])
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
