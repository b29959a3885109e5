"""One rank's side of a phase: its counters, its journal buffer, its errors, its retries."""
from __future__ import annotations

import threading
import time

TRANSIENT = {"TimedOut", "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
             "ConnectTimeoutError"}


class Rank:
    """Per-rank counters, journal buffer and errors of one stage."""

    def __init__(self, keeper, state_name: str, comm):
        self.keeper, self.state_name, self.comm = keeper, state_name, comm
        self.tag = f"{time.time_ns():020d}.{comm.rank}"
        self.lock = threading.Lock()
        self.pending: list[str] = []
        self.records: list[str] = []
        self.bytes = self.files = self.retries = self.extents = 0
        self.unsent = [0, 0]
        self.errors: list[str] = []   # per-file problems (the rest goes on)
        self.fatal: str | None = None

    def note(self, line: str, nbytes: int, files: int) -> None:
        with self.lock:
            if line:
                self.pending.append(line)
                self.records.append(line)
            self.bytes += nbytes
            self.files += files
            self.extents += 1 if line else 0
            self.unsent[0] += nbytes
            self.unsent[1] += files

    def flush(self) -> None:
        with self.lock:
            lines, self.pending = self.pending, []
        if not lines:
            return
        try:
            self.keeper.state_append(self.state_name, self.tag, "".join(x + "\n" for x in lines))
        except Exception as e:  # noqa: BLE001 - e.g. a full store: these extents are copied again next time
            if self.fatal is None:
                self.fatal = f"{type(e).__name__}: {e}"

    def take_unsent(self) -> tuple[int, int]:
        with self.lock:
            out, self.unsent = tuple(self.unsent), [0, 0]
        return out

    def check(self, finished) -> None:
        """The first exception of a work item ends this rank's share (the others are told)."""
        for f in finished:
            if f.exception() is not None and self.fatal is None:
                err = f.exception()
                self.fatal = f"{type(err).__name__}: {err}"

    def retry(self, fn, *args):
        for attempt in range(3):
            try:
                return fn(*args)
            except Exception as e:
                if type(e).__name__ not in TRANSIENT or attempt == 2:
                    raise
                with self.lock:
                    self.retries += 1
                time.sleep(0.5 * (attempt + 1))
