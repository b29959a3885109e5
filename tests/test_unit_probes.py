"""The two probes `up`, `status` and the watchdog share: HTTP and a daemon's admin socket (no daemons)."""
from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ramburst.ceph import fullmark, watchdog
from ramburst.ceph.asok import asok_command
from ramburst.status import check_http
from ramburst.wait import http_answers, http_status


@pytest.fixture
def http_server():
    """127.0.0.1 on a free port: answers with the status in `codes` (503 until told 200)."""
    codes = [503]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(codes[0])
            self.end_headers()
            self.wfile.write(b"x")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics", codes
    server.shutdown()
    server.server_close()


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_item4_one_http_probe_for_radosgw_metrics_and_status(http_server):
    url, codes = http_server
    assert http_status(url, 2) == 503
    assert http_answers(url)                       # radosgw: any HTTP answer means it serves
    assert not http_answers(url, status=200)       # metrics: 503 until the first collection
    assert check_http(url, 2) == ("running", f"answers HTTP at {url}")
    codes[0] = 200
    assert http_answers(url, status=200)


def test_item4_http_probe_without_a_server():
    url = free_url()
    assert not http_answers(url)
    with pytest.raises(OSError):
        http_status(url, 1)
    state, text = check_http(url, 1)
    assert state == "not answering" and text.startswith(f"no HTTP answer at {url} within 1 s (")


class FakeAdminSocket:
    """A daemon's admin socket: answers each JSON command with `reply(command)`, or never (`mute`)."""

    def __init__(self, path, reply):
        self.path, self.reply, self.mute = path, reply, False
        self.released = threading.Event()
        self.commands: list[dict] = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(8)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\0"):
                    data += conn.recv(4096)
                self.commands.append(json.loads(data[:-1]))
                if self.mute:
                    self.released.wait()  # holds the connection open, unanswered, until closed
                    continue
                body = json.dumps(self.reply(self.commands[-1])).encode()
                conn.sendall(struct.pack(">I", len(body)) + body)

    def close(self):
        self.released.set()
        self.server.close()


def test_item4_watchdog_guard_speaks_through_asok_command(tmp_path):
    assert not hasattr(watchdog, "asok"), "the watchdog has its own admin-socket client again"
    used = [100]
    osd = FakeAdminSocket(tmp_path / "osd.0.asok", lambda c: {"bluestore": {"bluestore_allocated": used[0]}}
                          if c["prefix"] == "perf dump" else {})
    try:
        answer = json.loads(asok_command(osd.path, {"prefix": "perf dump"}))
        assert answer == {"bluestore": {"bluestore_allocated": 100}}
        (tmp_path / "run").mkdir()
        guard = watchdog.OsdGuard("osd.0", osd.path, limit=1000, run_dir=tmp_path / "run")
        marks = fullmark.Marks(tmp_path / "run")
        guard.check()
        assert not guard.holding and marks.full() == []
        used[0] = 1000
        guard.check()
        assert guard.holding and osd.commands[-1] == {"prefix": "injectfull", "type": "failsafe", "count": -1}
        assert marks.full() == ["osd.0"]  # ramburst's FULL_TRY writers refuse from now on
        used[0] = 900
        guard.check()
        assert not guard.holding and osd.commands[-1]["type"] == "none"
        assert marks.full() == []
        osd.mute = True  # stopped (SIGSTOP) or wedged: accepts, never answers; the poll gives up
        assert guard.allocated() is None  # (after ASOK_TIMEOUT; without one this call would hang)
    finally:
        osd.close()
    assert guard.allocated() is None  # gone: nothing to guard


def test_item4_mount_watch_reads_ceph_fuse_requests(tmp_path):
    fuse = FakeAdminSocket(tmp_path / "fuse.h0.asok",
                           lambda c: {"ops": [{"age": 25.0}]} if c["prefix"] == "objecter_requests" else {})
    try:
        assert watchdog.oldest_request_age(fuse.path) == 25.0
        assert watchdog.MountWatch(fuse.path).stuck() == "a ceph-fuse request has waited 25 s"
    finally:
        fuse.close()
    assert watchdog.MountWatch(tmp_path / "none.asok").stuck() is None  # not mounted (yet)


def test_item_s11_full_marks_are_seen_at_once_and_cheaply(tmp_path, monkeypatch):
    """Clients read the marks before every write: a mark made or removed is seen by the next
    look, even within one timestamp tick; an unchanged, settled folder costs one stat."""
    run = tmp_path / "run"
    run.mkdir()
    marks = fullmark.Marks(run)
    assert marks.full() == []  # no folder yet
    fullmark.mark(run, "osd.1")
    assert marks.full() == ["osd.1"]
    fullmark.mark(run, "osd.0")
    assert marks.full() == ["osd.0", "osd.1"]
    fullmark.unmark(run, "osd.1")
    fullmark.unmark(run, "osd.1")  # twice: no error
    assert marks.full() == ["osd.0"]
    old = time.time() - 60
    os.utime(run / "full", (old, old))
    assert marks.full() == ["osd.0"]
    listed = []
    monkeypatch.setattr(fullmark.os, "listdir", lambda p: listed.append(p) or [])
    assert marks.full() == ["osd.0"] and listed == []  # settled and unchanged: not listed again
    fullmark.mark(tmp_path / "gone", "osd.0")  # the instance is being removed: no error, nothing made
    assert not (tmp_path / "gone").exists()
