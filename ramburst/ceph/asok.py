"""A Ceph daemon's admin socket, spoken directly: does the daemon itself answer?

No `ceph daemon` process (a second per query) and a hard timeout: a stopped or wedged
daemon accepts the connection into its backlog but never replies.
"""
from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path


def asok_command(path: Path, command: dict, timeout: float = 2.0) -> bytes:
    """Send one JSON command (NUL-terminated); the reply is a 4-byte big-endian length and that
    many bytes. Raises OSError (socket.timeout included) when the daemon does not answer."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(command).encode() + b"\0")
        header = _recv(s, 4, deadline)
        return _recv(s, struct.unpack(">I", header)[0], deadline)


def _recv(s: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no reply in time")
        s.settimeout(left)
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the daemon closed its admin socket")
        data += chunk
    return data
