"""Killed jobs, dead daemons, clients that outlive the store, and neighbours under load."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import RAMBURST, assert_nothing_left, cli, processes_mentioning, unique_name
from helpers import fill, wait_until_up

pytestmark = pytest.mark.ceph


def start_run(state, name, *cmd, grace=None):
    args = [RAMBURST, "run", "--name", name, "--state-dir", str(state), "--size", "1G"]
    if grace is not None:
        args += ["--grace", str(grace)]
    return subprocess.Popen([*args, "--", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("trap,grace,expected", [(False, 10, 143), (True, 2, 137)])
def test_run_torn_down_on_sigterm(instance_dir, trap, grace, expected):
    """A scheduler's time limit: SIGTERM to `run` reaches CMD, then everything is removed."""
    name, state = instance_dir
    script = ("trap '' TERM; " if trap else "") + "sleep 600"
    proc = start_run(state, name, "sh", "-c", script, grace=grace)
    try:
        wait_until_up(state, proc)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == expected
    assert took < grace + 10
    assert_nothing_left(name, state)


def test_down_after_sigkill_of_run(instance_dir):
    name, state = instance_dir
    proc = start_run(state, name, "sleep", "600")
    wait_until_up(state, proc)
    time.sleep(0.3)
    child = [p for p in __import__("psutil").Process(proc.pid).children() if p.name() == "sleep"]
    proc.kill()
    proc.wait()
    for p in child:  # the job's own command; a scheduler would end it with the job
        p.kill()
    assert processes_mentioning(str(state / "ceph.conf"))
    r = cli("down", "--state-dir", state)
    assert r.returncode == 0, r.stderr
    assert_nothing_left(name, state)


CLIENT = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from ramburst.ceph.admin import load_rados
rados = load_rados()
c = rados.Rados(conffile=os.environ["CEPH_CONF"], name="client.admin")
c.connect(timeout=10)
io = c.open_ioctx(os.environ["RAMBURST_POOL"])
print("writing", flush=True)
i = 0
try:
    while True:
        io.write_full(f"o{i % 64}", os.urandom(65536))
        i += 1
except rados.Error as e:
    print("error:", type(e).__name__, flush=True)
    sys.exit(3)
"""


def test_client_gets_an_error_when_the_store_goes_away(instance_dir):
    name, state = instance_dir
    assert cli("up", "--name", name, "--state-dir", state, "--size", "1G").returncode == 0
    env = {**os.environ, **json.loads(cli("env", "--state-dir", state, "--json").stdout)}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    client = subprocess.Popen([sys.executable, "-c", CLIENT, root], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "writing"
        time.sleep(1)
        assert cli("down", "--state-dir", state).returncode == 0
        t0 = time.monotonic()
        out, _ = client.communicate(timeout=90)
        took = time.monotonic() - t0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 3 and "error:" in out
    assert took < 45, took  # the exported op timeout (20 s) plus slack, never a hang
    assert_nothing_left(name, state)


def test_two_instances_under_load_do_not_disturb_each_other(tmp_path):
    names = [unique_name("loadA"), unique_name("loadB")]
    states = [tmp_path / n for n in names]
    try:
        for n, s in zip(names, states):
            assert cli("up", "--name", n, "--state-dir", s, "--size", "1G").returncode == 0
        from ramburst.ceph.admin import load_rados

        rados = load_rados()
        other = rados.Rados(conffile=str(states[1] / "ceph.conf"), name="client.admin",
                            conf={"rados_osd_op_timeout": "10"})
        other.connect(timeout=10)
        failures, done = [], []
        stop = threading.Event()

        def neighbour():
            io = other.open_ioctx("ramburst")
            i = 0
            while not stop.is_set():
                data = os.urandom(256 * 1024)
                try:
                    io.write_full(f"n{i}", data)
                    if io.read(f"n{i}", len(data)) != data:
                        failures.append(f"n{i} differs")
                    done.append(i)
                except rados.Error as e:
                    failures.append(str(e))
                i = (i + 1) % 200
            io.close()

        t = threading.Thread(target=neighbour)
        t.start()
        try:
            acked, errors = fill(str(states[0] / "ceph.conf"), "ramburst", 3 * 2**30)
        finally:
            stop.set()
            t.join(60)
            other.shutdown()
        assert errors and acked  # A filled up...
        assert failures == [] and len(done) > 20  # ...while B kept working
        a, b = (json.loads(cli("status", "--state-dir", s, "--json").stdout) for s in states)
        assert a["capacity"]["state"] == "full"
        assert b["capacity"]["state"] == "ok" and b["health"] in ("HEALTH_OK", "HEALTH_WARN")
    finally:
        for s in states:
            cli("down", "--state-dir", s)
    for n, s in zip(names, states):
        assert_nothing_left(n, s)
