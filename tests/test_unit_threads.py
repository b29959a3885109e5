"""Deploying from threads: signals only on the main thread, per-deployment cancel, per-thread
locks (no daemons; the Ceph version is tests/test_threads.py)."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from ramburst.errors import DeployError, Interrupted, UsageError
from ramburst.instance import InstanceLock
from ramburst.lifecycle.bringup import signals_raise
from ramburst.progress import Steps

from helpers import in_thread


def test_signals_raise_off_the_main_thread_touches_no_handler():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def body():
        with signals_raise(threading.Event()):
            return {s: signal.getsignal(s) for s in before}

    out = in_thread(body)
    assert "error" not in out, out.get("error")  # signal.signal there raises ValueError
    assert out["value"] == before
    assert {s: signal.getsignal(s) for s in before} == before


def test_signals_raise_on_the_main_thread_sets_its_cancel():
    cancel = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted), signals_raise(cancel):
        signal.raise_signal(signal.SIGTERM)
    assert cancel.is_set()
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_cancel_stops_one_deployment_not_another(monkeypatch):
    monkeypatch.setenv("RAMBURST_HANG_AT", "osd-up")
    a, b = Steps(False), Steps(False)
    results: dict = {}

    def hang(name, steps):
        try:
            with steps.step("osd-up"):
                pass
        except DeployError as e:
            results[name] = str(e)

    threads = [threading.Thread(target=hang, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    a.cancel.set()
    threads[0].join(10)
    time.sleep(0.2)
    assert results == {"a": "step osd-up cancelled"}  # b still hangs
    b.cancel.set()
    threads[1].join(10)
    assert results["b"] == "step osd-up cancelled"


def test_no_step_starts_once_cancelled():
    steps = Steps(False)
    steps.cancel.set()
    with pytest.raises(DeployError, match="step keys cancelled"), steps.step("keys"):
        raise AssertionError("the step body must not run")


def test_lock_is_per_thread(tmp_path):
    with InstanceLock(tmp_path, "t1"):
        assert InstanceLock(tmp_path, "t1").acquire().nested  # re-entrant in this thread (up -> down)
        out = in_thread(lambda: InstanceLock(tmp_path, "t1").acquire())
        assert isinstance(out.get("error"), UsageError)
        assert "is being deployed or removed" in str(out["error"])
    out = in_thread(lambda: InstanceLock(tmp_path, "t1").acquire().release())
    assert "error" not in out
