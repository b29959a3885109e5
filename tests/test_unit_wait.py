"""wait_until: the one polling loop of `up` (no daemons)."""
from __future__ import annotations

import threading

import pytest

from ramburst.errors import DeployError
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
