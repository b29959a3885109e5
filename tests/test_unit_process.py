"""ProcessRecord's idea of "gone": only when every thread has ended, so the process's files
and sockets are closed. A process whose main thread has ended while others still run reads as
a zombie with an empty command line, yet still holds its listening socket (a killed ceph-mon
is in that state for a moment: its main thread exits first)."""
from __future__ import annotations

import platform
import subprocess
import sys

import psutil
import pytest

from ramburst.process import ProcessRecord, stop_processes
from ramburst.wait import wait_until

SYS_EXIT = {"x86_64": 60, "aarch64": 93}.get(platform.machine())

# Listens, starts a thread that keeps running, then ends ONLY the main thread (the raw exit
# system call, not exit_group): the process stays with its socket open and no command line.
CHILD = f"""
import ctypes, socket, sys, threading, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
threading.Thread(target=time.sleep, args=(60,)).start()
ctypes.CDLL(None).syscall({SYS_EXIT}, 0)
"""


def listening(port: int) -> bool:
    return any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in psutil.net_connections("tcp"))


@pytest.mark.skipif(SYS_EXIT is None, reason=f"no exit system call number known for {platform.machine()}")
def test_a_process_whose_main_thread_ended_is_alive_until_its_socket_is_closed(tmp_path):
    conf = str(tmp_path / "ceph.conf")
    child = subprocess.Popen([sys.executable, "-c", CHILD, conf], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        port = int(child.stdout.readline())
        record = ProcessRecord("mon.a", child.pid, psutil.Process(child.pid).create_time(), sys.executable, conf)
        leader = psutil.Process(child.pid)
        wait_until(lambda: leader.status() == psutil.STATUS_ZOMBIE, 5, "the main thread to end", interval=0.01)
        assert listening(port)
        assert record.alive(), "a process still holding its socket counted as gone"
        assert stop_processes([record]) == ["mon.a"]
        assert not listening(port), f"port {port} still bound after stop_processes returned"
        assert not record.alive()
    finally:
        child.kill()
        child.wait()
