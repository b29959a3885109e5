"""The Python API from a thread that is not the main thread (a web server's worker), with real
daemons: it deploys, works, goes down; cancelling it from outside rolls it back."""
from __future__ import annotations

import threading

import pytest

import ramburst
from ramburst.errors import DeployError

from conftest import assert_nothing_left, mon_port, unique_name
from helpers import run_in_thread

pytestmark = pytest.mark.ceph


def test_item4_deploy_works_off_the_main_thread(tmp_path):
    name = unique_name("thr")
    state = tmp_path / name
    seen: dict = {}

    def use():
        with ramburst.deploy(name=name, state_dir=str(state), size="1G") as cluster:
            seen["port"] = mon_port(state)
            with cluster.ioctx() as io:
                io.write_full("x", b"2" * 4096)
                return io.read("x")

    t, out = run_in_thread(use)
    t.join(240)
    assert not t.is_alive()
    assert "error" not in out, repr(out.get("error"))  # before: ValueError, signal only works in main thread
    assert out["value"] == b"2" * 4096
    assert_nothing_left(name, state, seen["port"])


def test_item4_cancel_from_outside_rolls_that_deployment_back(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAMBURST_HANG_AT", "osd-up")  # read by the deploying thread's steps
    name = unique_name("thc")
    state = tmp_path / name
    cancel = threading.Event()
    t, out = run_in_thread(lambda: ramburst.up(name=name, state_dir=str(state), size="1G", cancel=cancel))
    said = ""
    for _ in range(1200):  # until it hangs at osd-up: the instance is half made, its daemons run
        said += capsys.readouterr().err
        if "hanging at step osd-up" in said:
            break
        t.join(0.1)
    assert "hanging at step osd-up" in said
    port = mon_port(state)
    cancel.set()
    t.join(120)
    assert not t.is_alive()
    assert isinstance(out.get("error"), DeployError), out
    assert "step osd-up cancelled; rolled back" in str(out["error"])
    assert_nothing_left(name, state, port)
