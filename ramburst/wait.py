"""Waiting for a daemon or an endpoint: one polling loop, and every timeout of `up` by name."""
from __future__ import annotations

import math
import threading
import time
from typing import Callable, TypeVar

from .errors import DeployError

T = TypeVar("T")


class Timeouts:
    """Seconds; the values of the literals they replace."""

    MON_ANSWERS = 30
    OSDS_UP = 60
    MDS_ACTIVE = 60
    RGW_HTTP = 60
    S3_SIGNED = 60
    MOUNTED = 60
    METRICS_HTTP = 60
    UNMOUNT = 5
    LOCK_AFTER_MKDIR = 5
    DASHBOARD_STARTED = 10
    PROCESSES_GONE = 10   # after SIGKILL, until the kernel has reaped them
    NEVER = math.inf      # RAMBURST_HANG_AT: until the deployment is cancelled


def http_status(url: str, timeout: float) -> int:
    """The HTTP status `url` answers with: an error status is an answer too (the server
    serves). OSError when nothing answers within `timeout` s."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def http_answers(url: str, timeout: float = 2, status: int | None = None) -> bool:
    """Whether `url` answers HTTP now (with `status`, when given): a probe for wait_until."""
    try:
        code = http_status(url, timeout)
    except OSError:
        return False
    return status is None or code == status


def wait_until(predicate: Callable[[], T], timeout: float, what: str, *, interval: float = 0.02,
               check: Callable[[], None] | None = None, cancel: threading.Event | None = None,
               failure: Callable[[], str] | None = None) -> T:
    """Poll `predicate` until it returns a truthy value, and return that. `check` may raise
    early (a daemon died); `cancel` set stops the wait; past `timeout` a DeployError says
    `failure()`, or that the wait for `what` timed out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if check is not None:
            check()
        if cancel is not None and cancel.is_set():
            raise DeployError(f"waiting for {what} cancelled")
        if time.monotonic() > deadline:
            raise DeployError(failure() if failure else f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
